#!/usr/bin/env bash
# Build bootable PC images around a kernel and initrd, with Debian's SYSLINUX
# tools and no root, loop devices or mounts:
#
#   scripts/pc-images.sh disk OUT.img KERNEL INITRD "APPEND"   # MBR + FAT32 partition, SYSLINUX
#   scripts/pc-images.sh iso  OUT.iso KERNEL INITRD "APPEND"   # El Torito CD, ISOLINUX
#
# APPEND is the kernel command line. The boot loaders write to the screen,
# which Kite's firmware mirrors on COM1 when there is no display. Installs syslinux, mtools, dosfstools and xorriso
# when missing (as root).
set -euo pipefail

kind="${1:-}"; out="${2:-}"; kernel="${3:-}"; initrd="${4:-}"; append="${5:-console=ttyS0}"
if [ -z "$kind" ] || [ -z "$out" ] || [ ! -f "$kernel" ] || [ ! -f "$initrd" ]; then
    echo "usage: $0 disk|iso OUT KERNEL INITRD [APPEND]" >&2
    exit 2
fi

need() {
    local missing=()
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null || missing+=("${pair##*:}")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "pc-images: installing ${missing[*]}" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
    fi
}

bios_dir=/usr/lib/syslinux/modules/bios
config() {
    cat <<CFG
DEFAULT linux
PROMPT 0
TIMEOUT 1
LABEL linux
  KERNEL vmlinuz
  INITRD initrd.gz
  APPEND $append
CFG
}

case "$kind" in
disk)
    need syslinux:syslinux mcopy:mtools mkfs.fat:dosfstools
    [ -f /usr/lib/syslinux/mbr/mbr.bin ] || need /nonexistent:syslinux-common
    # Room for the files plus slack, in MiB; the partition starts at 1 MiB.
    kb=$(( ( $(stat -c %s "$kernel") + $(stat -c %s "$initrd") ) / 1024 ))
    mib=$(( kb / 1024 + 40 ))
    total=$(( mib * 2048 ))
    start=2048
    rm -f "$out"
    truncate -s "${mib}M" "$out"
    mkfs.fat -F 32 -n KITEBOOT --offset "$start" "$out" $(( (total - start) / 2 )) >/dev/null
    img="$out@@$(( start * 512 ))"
    tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
    config > "$tmp/syslinux.cfg"
    mcopy -i "$img" "$kernel" ::vmlinuz
    mcopy -i "$img" "$initrd" ::initrd.gz
    mcopy -i "$img" "$tmp/syslinux.cfg" ::syslinux.cfg
    syslinux --offset $(( start * 512 )) --install "$out"
    # MBR: SYSLINUX's boot code, then one active FAT32 (LBA) partition.
    dd if=/usr/lib/syslinux/mbr/mbr.bin of="$out" bs=440 count=1 conv=notrunc status=none
    python3 - "$out" "$start" "$(( total - start ))" <<'PY'
import struct, sys
path, start, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
entry = struct.pack("<B3sB3sII", 0x80, b"\xfe\xff\xff", 0x0c, b"\xfe\xff\xff", start, count)
with open(path, "r+b") as f:
    f.seek(440); f.write(struct.pack("<I", 0x4b495445) + b"\0\0")
    f.seek(446); f.write(entry + b"\0" * 48)
    f.seek(510); f.write(b"\x55\xaa")
PY
    ;;
iso)
    need xorriso:xorriso
    [ -f "$bios_dir/ldlinux.c32" ] || need /nonexistent:syslinux-common
    isolinux=/usr/lib/ISOLINUX/isolinux.bin
    [ -f "$isolinux" ] || need /nonexistent:isolinux
    tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
    mkdir -p "$tmp/isolinux"
    cp "$isolinux" "$bios_dir/ldlinux.c32" "$tmp/isolinux/"
    cp "$kernel" "$tmp/vmlinuz"; cp "$initrd" "$tmp/initrd.gz"
    config | sed 's#KERNEL vmlinuz#KERNEL /vmlinuz#; s#INITRD initrd.gz#INITRD /initrd.gz#' > "$tmp/isolinux/isolinux.cfg"
    xorriso -as mkisofs -quiet -o "$out" -b isolinux/isolinux.bin -c isolinux/boot.cat \
        -no-emul-boot -boot-load-size 4 -boot-info-table -V KITECD "$tmp"
    ;;
*)
    echo "usage: $0 disk|iso OUT KERNEL INITRD [APPEND]" >&2
    exit 2
    ;;
esac
