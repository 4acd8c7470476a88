#!/usr/bin/env bash
# Runs the lints (fmt, clippy -D warnings, rustdoc -D warnings) and every test of the workspace
# (unit, integration against real nats-server processes, and doc tests), installing what is
# missing first.
set -euo pipefail
cd "$(dirname "$0")"
. scripts/system-deps.sh
ensure_system_deps
# The catalogue's guest images (built from Debian packages when missing; cached under target/).
scripts/guest-image.sh target/images/linux-busybox
# Lints first: a format, clippy or doc warning fails the run before any test.
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps
# Doc tests next, so the run closes on the main runner's summary.
cargo test --workspace --doc
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast --lib --bins --tests
fi
