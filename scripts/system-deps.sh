# Sourced by up.sh and test.sh: installs the system packages Streamfleet needs when missing.
# Debian packages only; nothing is downloaded from anywhere else.
ensure_system_deps() {
  local missing=()
  command -v nats-server >/dev/null 2>&1 || missing+=(nats-server)
  command -v cc >/dev/null 2>&1 || missing+=(gcc)
  command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing from the distribution: ${missing[*]}" >&2
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  command -v cargo >/dev/null 2>&1 || { echo "cargo (Rust stable) is required: https://rustup.rs" >&2; return 1; }
}
