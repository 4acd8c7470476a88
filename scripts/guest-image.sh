#!/usr/bin/env bash
# Builds the qemu guest image of the catalogue into OUT (default: .streamfleet/images/linux-busybox):
# the kernel of Debian's linux-image-amd64 (vmlinuz) and an initramfs of busybox-static with the
# virtio modules and a tiny app. Debian packages only; nothing is downloaded from elsewhere.
# Rebuilt only when missing.
#
# The guest reads its settings from the kernel command line: sf.id=<instance id>,
# sf.ip=<address/prefix>, sf.pub=<second address/32>, sf.gw=<gateway>. Its app answers on TCP
# port 7000 with one line, `id=<id> boots=<n> counter=<m> disks=<vda,vdb,…> nics=<eth0,…>`: the
# boot count and a request counter kept in the first block of its first disk (/dev/vda, raw), and
# the disks and interfaces it sees, so a test sees a real guest with real persistent data and a
# hot-attached disk or interface.
# A connection to port 7001 reboots the guest from inside (`reboot -f`), as a customer would; a
# background writer rewrites a random 64 KiB block between 1 and 5 MiB of the disk every second,
# so a migration's sync has a guest that keeps writing.
# `acpid` turns a power button press (QMP system_powerdown) into a clean poweroff: the ACPI
# button and evdev modules give it the button as an input device.
#
# The same image for crun (OUT/rootfs, an OCI bundle's root): busybox and the same app, its state
# in /data/state (the root volume, bind-mounted), its settings in /etc/sf.env.
set -euo pipefail
OUT="${1:-.streamfleet/images/linux-busybox}"
# Bumped when the image changes, so a cached older build is replaced.
FORMAT=9
built() {
  [ -s "$OUT/vmlinuz" ] && [ -s "$OUT/initramfs.cpio.gz" ] && [ -x "$OUT/rootfs/bin/busybox" ] &&
    [ "$(cat "$OUT/format" 2>/dev/null)" = "$FORMAT" ]
}
built && exit 0
# Tests run side by side and each asks for the image: one builds it, the others wait for it.
mkdir -p "$(dirname "$OUT")"
exec 9>"$OUT.lock"
flock 9
built && exit 0
command -v busybox >/dev/null 2>&1 && busybox --list | grep -qx insmod || {
  echo "busybox-static is required (apt-get install busybox-static)" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
kernel_pkg="$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}')"
if [ -z "$kernel_pkg" ]; then
  apt-get update -qq
  kernel_pkg="$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/{print $2; exit}')"
fi
# The package lists may be empty on a fresh machine: fetch them once and try again.
(cd "$work" && apt-get download -q "$kernel_pkg" >/dev/null 2>&1) ||
  { apt-get update -qq && (cd "$work" && apt-get download -q "$kernel_pkg" >/dev/null 2>&1); }
dpkg-deb -x "$work"/linux-image-*.deb "$work/k"
version="$(ls "$work/k/lib/modules")"
mods="$work/k/lib/modules/$version/kernel"
root="$work/root"
mkdir -p "$root"/{bin,dev,proc,sys,run,lib/modules}
cp "$(command -v busybox)" "$root/bin/busybox"
for m in drivers/virtio/virtio.ko drivers/virtio/virtio_ring.ko \
         drivers/virtio/virtio_pci_modern_dev.ko drivers/virtio/virtio_pci_legacy_dev.ko \
         drivers/virtio/virtio_pci.ko net/core/failover.ko drivers/net/net_failover.ko \
         drivers/net/virtio_net.ko drivers/block/virtio_blk.ko \
         drivers/acpi/button.ko drivers/input/evdev.ko; do
  cp "$mods/$m" "$root/lib/modules/"
done
cat > "$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
# In dependency order (the package ships no modules.dep; each module's own `depends=` says it).
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover \
         net_failover virtio_net virtio_blk button evdev; do
  insmod /lib/modules/$m.ko
done
for word in $(cat /proc/cmdline); do
  case "$word" in
    sf.id=*) echo "${word#sf.id=}" > /run/id ;;
    sf.ip=*) ip="${word#sf.ip=}" ;;
    sf.gw=*) gw="${word#sf.gw=}" ;;
    sf.pub=*) pub="${word#sf.pub=}" ;;
  esac
done
ip link set lo up
ip link set eth0 up
[ -n "${ip:-}" ] && ip addr add "$ip" dev eth0
[ -n "${pub:-}" ] && ip addr add "$pub" dev eth0
[ -n "${gw:-}" ] && ip route add default via "$gw"
echo /dev/vda > /run/disk
/bin/state boot
# acpid logs to /var/log/acpid.log and dies without the folder.
mkdir -p /var/log /var/run
acpid
nc -ll -p 7000 -e /bin/app &
nc -ll -p 7001 -e /bin/reboot-now &
( while true; do
    dd if=/dev/urandom of=/dev/vda bs=65536 count=1 seek=$((16 + RANDOM % 64)) conv=notrunc,fsync 2>/dev/null
    sleep 1
  done ) &
# Ready once the app listens (a connection before would find the port closed).
until netstat -ltn 2>/dev/null | grep -q ':7000 '; do usleep 10000; done
echo "streamfleet guest ready"
while true; do sleep 3600; done
INIT
cat > "$root/bin/app" <<'APP'
#!/bin/sh
# One answer per connection; the counter moves on the disk.
disk=$(cat /run/disk)
set -- $(dd if=$disk bs=64 count=1 2>/dev/null | tr -d '\000') 0 0
boots=$1; counter=$(($2 + 1))
printf '%-63s\n' "$boots $counter" | dd of=$disk bs=64 count=1 conv=notrunc,fsync 2>/dev/null
# A container's state is a file and its /sys the host's: it has no disks of its own.
case $disk in
  /dev/*) disks=$(ls /sys/block 2>/dev/null | grep '^vd' | tr '\n' ',' | sed 's/,$//') ;;
  *) disks=none ;;
esac
# Its network interfaces (a hot-attached one shows up here).
nics=$(ls /sys/class/net 2>/dev/null | grep -vx lo | tr '\n' ',' | sed 's/,$//')
echo "id=$(cat /run/id) boots=$boots counter=$counter disks=${disks:-none} nics=${nics:-none}"
APP
# The boot counter: one more at every boot.
cat > "$root/bin/state" <<'STATE'
#!/bin/sh
disk=$(cat /run/disk)
set -- $(dd if=$disk bs=64 count=1 2>/dev/null | tr -d '\000') 0 0
boots=$(($1 + 1)); counter=$2
printf '%-63s\n' "$boots $counter" | dd of=$disk bs=64 count=1 conv=notrunc,fsync 2>/dev/null
STATE
cat > "$root/bin/reboot-now" <<'REBOOT'
#!/bin/sh
echo rebooting
sync
reboot -f
REBOOT
chmod +x "$root/bin/reboot-now"
mkdir -p "$root/etc/acpi/PWRF"
printf '#!/bin/sh\npoweroff -f\n' > "$root/etc/acpi/PWRF/00000080"
chmod +x "$root/init" "$root/bin/app" "$root/bin/state" "$root/etc/acpi/PWRF/00000080"
# The crun form: busybox, the same app and boot counter, an init that reads /etc/sf.env
# (written by the host at create) and keeps its state in /data/state.
bundle="$work/rootfs"
mkdir -p "$bundle"/{bin,proc,sys,dev,run,data,etc,tmp}
cp "$(command -v busybox)" "$bundle/bin/busybox"
cp "$root/bin/app" "$root/bin/state" "$bundle/bin/"
cat > "$bundle/bin/init" <<'CINIT'
#!/bin/busybox sh
. /etc/sf.env
echo "$SF_ID" > /run/id
echo /data/state > /run/disk
touch /data/state
/bin/state boot
nc -ll -p 7000 -e /bin/app &
until netstat -ltn 2>/dev/null | grep -q ':7000 '; do usleep 10000; done
echo "streamfleet guest ready"
trap 'exit 0' TERM
# A sleep in the background, waited for: TERM is handled at once, not after the sleep.
while true; do sleep 1 & wait $!; done
CINIT
chmod +x "$bundle/bin/init" "$bundle/bin/app" "$bundle/bin/state"
# The root is read-only in the container: busybox's applets are linked here, once.
for applet in $(busybox --list); do
  [ -e "$bundle/bin/$applet" ] || ln -s busybox "$bundle/bin/$applet"
done
mkdir -p "$OUT"
rm -rf "$OUT/rootfs.tmp" "$OUT/rootfs"
cp -a "$bundle" "$OUT/rootfs"
cp "$work/k/boot/vmlinuz-$version" "$OUT/vmlinuz.tmp"
(cd "$root" && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1) > "$OUT/initramfs.cpio.gz.tmp"
mv "$OUT/vmlinuz.tmp" "$OUT/vmlinuz"
mv "$OUT/initramfs.cpio.gz.tmp" "$OUT/initramfs.cpio.gz"
echo "$FORMAT" > "$OUT/format"
echo "built $OUT (kernel $version)"
