#!/usr/bin/env bash
# A Linux shell inside a Kite VM, in one command: fetch Debian's kernel and
# busybox (scripts/guests.sh, cached in $KITE_GUEST_CACHE or
# ~/.cache/kite-guests), build Kite if needed, and boot on the emu engine.
#
#   scripts/linux-shell.sh [amd64|686|686-pae] [extra kite run flags...]
#
# `poweroff -f` in the guest, or Ctrl-A x, ends it.
set -euo pipefail
cd "$(dirname "$0")/.."
flavour="${1:-amd64}"
[ $# -gt 0 ] && shift
case "$flavour" in
    amd64|686|686-pae) ;;
    *) echo "usage: $0 [amd64|686|686-pae] [kite run flags...]" >&2; exit 2 ;;
esac
cache="${KITE_GUEST_CACHE:-$HOME/.cache/kite-guests}"
KITE_GUEST_CACHE="$cache" scripts/guests.sh "$flavour"
[ -x target/release/kite ] || cargo build --release
exec target/release/kite run --engine emu --memory 512M \
    --kernel "$cache/$flavour/vmlinuz" --initrd "$cache/$flavour/initrd.gz" \
    --cmdline "console=ttyS0" "$@"
