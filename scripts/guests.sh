#!/usr/bin/env bash
# Fetch Debian's stock kernels and busybox with the system's package manager,
# into a cache outside the checkout, and build a busybox initramfs for each
# architecture. Guest images are never committed to the repo.
#
#   scripts/guests.sh [amd64|686|686-pae|all]     (default: amd64)
#
# Prints nothing but progress on stderr; the results are:
#   $KITE_GUEST_CACHE/<flavour>/vmlinuz
#   $KITE_GUEST_CACHE/<flavour>/initrd.gz     (busybox sh on the console; `poweroff` ends the VM;
#                                             the kernel's virtio modules, loaded by /init; the ACPI
#                                             power button powers it off)
# KITE_GUEST_CACHE defaults to ~/.cache/kite-guests.
set -euo pipefail

cache="${KITE_GUEST_CACHE:-$HOME/.cache/kite-guests}"
want="${1:-amd64}"
mkdir -p "$cache/debs"
for tool in cpio dpkg-deb gzip xz; do
    if ! command -v "$tool" >/dev/null; then
        echo "guests: installing $tool" >&2
        apt-get install -y -qq "$tool" >&2
    fi
done

need_i386() {
    if ! dpkg --print-foreign-architectures | grep -qx i386; then
        echo "guests: enabling the i386 architecture for apt (dpkg --add-architecture i386)" >&2
        dpkg --add-architecture i386
        apt-get update -qq || true
    fi
}

# download PACKAGE: fetch the .deb of PACKAGE (following a metapackage to the
# real kernel image) into $cache/debs and print its path.
download() {
    local pkg="$1" arch name real
    arch="${pkg#*:}"; [ "$arch" = "$pkg" ] && arch="$(dpkg --print-architecture)"
    name="${pkg%%:*}"
    real="$(apt-cache depends "$pkg" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')"
    [ -n "$real" ] && name="${real%%:*}"
    if ! ls "$cache/debs/${name}"_*_"$arch".deb >/dev/null 2>&1; then
        (cd "$cache/debs" && apt-get download -q "$name:$arch" >&2) ||
            { echo "guests: cannot download $name:$arch (run apt-get update?)" >&2; exit 1; }
    fi
    ls "$cache/debs/${name}"_*_"$arch".deb | head -1
}

build() {
    local flavour="$1" kpkg="$2" bpkg="$3"
    local out="$cache/$flavour"
    # The stamp says the initramfs has this script's current layout (virtio
    # modules, IDE/ATA/CD modules, the ACPI power button listener, input
    # modules, the on-demand bochs-drm modules and the tty1 shell).
    if [ -s "$out/vmlinuz" ] && [ -s "$out/initrd.gz" ] && [ -e "$out/.layout-display" ]; then
        echo "guests: $flavour ready in $out" >&2
        return
    fi
    echo "guests: building $flavour in $out" >&2
    rm -rf "$out" && mkdir -p "$out/kernel" "$out/busybox" "$out/root"
    dpkg-deb -x "$(download "$kpkg")" "$out/kernel"
    dpkg-deb -x "$(download "$bpkg")" "$out/busybox"
    cp "$(ls "$out"/kernel/boot/vmlinuz-* | head -1)" "$out/vmlinuz"
    local r="$out/root"
    mkdir -p "$r"/{bin,sbin,etc,proc,sys,dev,tmp,root,usr/bin,usr/sbin,mnt}
    cp "$out/busybox/bin/busybox" "$r/bin/busybox"
    for app in $("$r/bin/busybox" --list 2>/dev/null || echo sh); do
        [ -e "$r/bin/$app" ] || ln -s busybox "$r/bin/$app"
    done
    # Debian builds virtio as modules; copy them (in dependency order, as the
    # modules' own depends= say) for /init to insmod. Compressed modules are
    # decompressed here: busybox insmod takes plain .ko files.
    local kmods
    kmods="$( (ls -d "$out"/kernel/lib/modules/*/kernel "$out"/kernel/usr/lib/modules/*/kernel 2>/dev/null || true) | head -1)"
    [ -n "$kmods" ] || echo "guests: warning: no kernel modules in the $flavour package; no virtio" >&2
    mkdir -p "$r/lib/modules"
    : > "$r/lib/modules/load-order"
    : > "$r/lib/modules/drm-order"
    # add_module LIST PATH: copy module PATH (relative to the kernel's
    # module tree) if this flavour has it and name it in LIST.
    add_module() {
        local list="$1" m="$2" name="${2##*/}"
        if [ -f "$kmods/$m.ko" ]; then
            cp "$kmods/$m.ko" "$r/lib/modules/$name.ko"
        elif [ -f "$kmods/$m.ko.xz" ]; then
            xz -dc "$kmods/$m.ko.xz" > "$r/lib/modules/$name.ko"
        else
            return 0   # built in, or absent from this flavour
        fi
        echo "$name" >> "$r/lib/modules/$list"
    }
    for m in drivers/virtio/virtio_ring drivers/virtio/virtio \
             drivers/virtio/virtio_pci_modern_dev drivers/virtio/virtio_pci_legacy_dev \
             drivers/virtio/virtio_pci drivers/block/virtio_blk \
             drivers/char/hw_random/virtio-rng net/core/failover \
             drivers/net/net_failover drivers/net/virtio_net \
             drivers/scsi/scsi_common drivers/scsi/scsi_mod \
             drivers/ata/libata drivers/ata/ata_piix drivers/ata/ata_generic \
             crypto/crct10dif_common crypto/crct10dif_generic lib/crc-t10dif \
             lib/crc64 crypto/crc64_rocksoft_generic lib/crc64-rocksoft \
             block/t10-pi drivers/scsi/sd_mod \
             drivers/cdrom/cdrom drivers/scsi/sr_mod fs/isofs/isofs \
             drivers/input/evdev drivers/acpi/button \
             drivers/input/mousedev drivers/input/mouse/psmouse \
             drivers/virtio/virtio_input; do
        add_module load-order "$m"
    done
    # bochs-drm (the standard VGA's KMS driver) and what it needs, loaded
    # on demand by kite-drm so a guest can start on the text console and
    # switch mode later. The cloud kernel has no DRM: the list stays empty.
    for m in drivers/video/fbdev/core/fb_sys_fops drivers/video/fbdev/core/syscopyarea \
             drivers/video/fbdev/core/sysfillrect drivers/video/fbdev/core/sysimgblt \
             drivers/gpu/drm/drm drivers/gpu/drm/drm_kms_helper drivers/gpu/drm/ttm/ttm \
             drivers/gpu/drm/drm_ttm_helper drivers/gpu/drm/drm_vram_helper \
             drivers/gpu/drm/tiny/bochs; do
        add_module drm-order "$m"
    done
    cat > "$r/bin/kite-drm" <<'DRM'
#!/bin/sh
# Load bochs-drm: the console moves to its framebuffer (1024x768 by default).
[ -s /lib/modules/drm-order ] || { echo "kite-drm: this kernel has no DRM modules"; exit 1; }
for m in $(cat /lib/modules/drm-order); do
    insmod "/lib/modules/$m.ko" || { echo "kite-drm: cannot load $m"; exit 1; }
done
DRM
    chmod +x "$r/bin/kite-drm"
    cat > "$r/init" <<'INIT'
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
for m in $(cat /lib/modules/load-order); do
    insmod "/lib/modules/$m.ko" 2>/dev/null || echo "kite-guest: cannot load $m"
done
# The ACPI power button (QMP system_powerdown): the kernel's button driver
# reports a press as an input event, and nothing in busybox acts on it, so a
# background reader of the button's event device powers off on the first one.
for ev in /sys/class/input/event*; do
    [ "$(cat "$ev/device/name" 2>/dev/null)" = "Power Button" ] || continue
    (dd if="/dev/input/${ev##*/}" of=/dev/null bs=64 count=1 2>/dev/null &&
        echo "kite-guest: power button pressed, powering off" && sync && poweroff -f) &
done
# kite_vt=1 on the kernel command line puts a second shell on the screen
# and keyboard (tty1), for the VGA/VNC tests and for people.
if [ -n "$kite_vt" ]; then
    setsid sh -c 'exec sh </dev/tty1 >/dev/tty1 2>&1' &
fi
# kite.cmd="..." on the kernel command line runs those commands instead of
# an interactive shell (tests and benchmarks), then powers off.
if [ -n "$kite_cmd" ]; then
    echo "kite-guest: running: $kite_cmd"
    sh -c "$kite_cmd"
    echo "kite-guest: done, status $?"
    poweroff -f
fi
echo "kite-guest: busybox shell ready"
setsid sh -c 'exec sh </dev/ttyS0 >/dev/ttyS0 2>&1'
poweroff -f
INIT
    chmod +x "$r/init"
    (cd "$r" && find . | cpio -o -H newc --quiet | gzip -9) > "$out/initrd.gz"
    rm -rf "$out/kernel" "$out/busybox" "$r"
    # Older stamps, which tests look for, and this layout's.
    touch "$out/.layout-virtio" "$out/.layout-ide" "$out/.layout-button" "$out/.layout-pc" "$out/.layout-display"
    echo "guests: $flavour ready in $out" >&2
}

case "$want" in
    amd64) build amd64 linux-image-cloud-amd64 busybox-static ;;
    686) need_i386; build 686 linux-image-686:i386 busybox-static:i386 ;;
    686-pae) need_i386; build 686-pae linux-image-686-pae:i386 busybox-static:i386 ;;
    all)
        build amd64 linux-image-cloud-amd64 busybox-static
        need_i386
        build 686 linux-image-686:i386 busybox-static:i386
        build 686-pae linux-image-686-pae:i386 busybox-static:i386
        ;;
    *) echo "usage: $0 [amd64|686|686-pae|all]" >&2; exit 2 ;;
esac
