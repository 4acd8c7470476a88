#!/usr/bin/env bash
# Brings the whole system up on this machine: installs what is missing, builds, starts
# nats-server (its configuration rendered into .streamfleet/nats.conf), the node, the workers, the projections (gRPC on 127.0.0.1:50051),
# host agents for three regions and a demo load. Ctrl-C stops everything. Extra arguments go to
# `streamfleet up` (see `--help`).
set -euo pipefail
cd "$(dirname "$0")"
. scripts/system-deps.sh
ensure_system_deps
# The catalogue's guest images for the compute hosts (built from Debian packages when missing).
scripts/guest-image.sh .streamfleet/images/linux-busybox
cargo build --release --bin streamfleet
exec target/release/streamfleet up "$@"
