# Sourced by up.sh and test.sh: installs the system packages Streamfleet needs when missing.
# Debian packages only; nothing is downloaded from anywhere else.
ensure_system_deps() {
  local missing=()
  command -v nats-server >/dev/null 2>&1 || missing+=(nats-server)
  command -v cc >/dev/null 2>&1 || missing+=(gcc)
  command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
  # The media plane: nasm makes openh264's encoder about 3x faster (its assembly); Chromium and
  # its WebDriver play a session in the browser test; iproute2 and nftables shape a link for
  # the loss and bandwidth test.
  command -v nasm >/dev/null 2>&1 || missing+=(nasm)
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
  command -v tc >/dev/null 2>&1 || missing+=(iproute2)
  command -v nft >/dev/null 2>&1 || missing+=(nftables)
  # The app's sound is Opus through the distribution's libopus, found with pkg-config.
  command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
  [ -f /usr/include/opus/opus.h ] || missing+=(libopus-dev)
  # Instances (issue 14): QEMU for virtual machines, busybox-static for the guest image's
  # initramfs (scripts/guest-image.sh). Debian 12's qemu-system-x86 (7.2) needs its own
  # qemu-utils: the image's newer preinstalled one gives way (hence --allow-downgrades).
  command -v qemu-system-x86_64 >/dev/null 2>&1 || missing+=(qemu-system-x86 qemu-utils/bookworm)
  busybox --list 2>/dev/null | grep -qx insmod || missing+=(busybox-static)
  # crun runs the catalogue's OCI containers (one per crun instance).
  command -v crun >/dev/null 2>&1 || missing+=(crun)
  # File-system nodes (issue 16): MooseFS's master, chunk server and client, arping to announce
  # a moved address, mkfs.ext4 for the network volumes.
  command -v mfsmaster >/dev/null 2>&1 || missing+=(moosefs-master)
  command -v mfschunkserver >/dev/null 2>&1 || missing+=(moosefs-chunkserver)
  command -v mfsmount >/dev/null 2>&1 || missing+=(moosefs-client)
  command -v mfscli >/dev/null 2>&1 || missing+=(moosefs-cli)
  command -v arping >/dev/null 2>&1 || missing+=(iputils-arping)
  command -v mkfs.ext4 >/dev/null 2>&1 || missing+=(e2fsprogs)
  command -v fuser >/dev/null 2>&1 || missing+=(psmisc)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing from the distribution: ${missing[*]}" >&2
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --allow-downgrades "${missing[@]}" >/dev/null
  fi
  command -v cargo >/dev/null 2>&1 || { echo "cargo (Rust stable) is required: https://rustup.rs" >&2; return 1; }
}
