#!/usr/bin/env bash
# Benchmarks of Kite's emu engine against QEMU TCG, on the same machine in
# the same run (issue 6). Not a test: it prints figures for BENCHMARKS.md.
#
#   scripts/bench.sh [boot|compute|os|idle|loop|display|all]...     (default: all)
#
# Environment:
#   RUNS=3            runs of each engine per benchmark (medians are printed)
#   KITE=path         the kite binary (default: target/release/kite, built if missing)
#   KITE_GUEST_CACHE  guest kernels/initrds (default /var/cache/kite-guests if it
#                     holds amd64, else ~/.cache/kite-guests; made by scripts/guests.sh)
#   ROUNDS=6000       rounds of the CPU-bound kernel (about 1-3 s on kite)
#   LOOPS=300         iterations of the OS-bound shell loop
#   SHELL_LOOPS=20000 iterations of the shell loop of the `loop` benchmark
#   FLAVOURS="amd64 686-pae 686"  guests of the `loop` benchmark
#
# Benchmarks (each prints medians of wall seconds, CPU seconds, peak RSS, and
# the ratio kite/QEMU):
#   boot     Linux (Debian amd64 kernel + busybox initrd) boot to power-off,
#            kite_cmd="true".
#   compute  A long-mode multiboot kernel (crates/testkernels compute kernel,
#            repeated ROUNDS times) run to its debug-exit port write.
#   os       Inside Linux: a shell loop of fork/exec and file operations; the
#            guest prints /proc/uptime before and after, the loop time is the
#            difference (guest clock, which follows the host's on both).
#   idle     Inside Linux: `sleep 10`; host CPU seconds the engine process
#            used during it (its /proc/PID/stat CPU time sampled when the
#            guest prints a marker before and after the sleep).
#   loop     Per guest flavour (Debian amd64, 686-pae, 686 kernels, each with
#            its busybox initrd): boot, a shell loop of SHELL_LOOPS
#            iterations (`i=$((i+1))`, no fork), power-off. amd64 runs under
#            qemu-system-x86_64, the i386 kernels under qemu-system-i386; the
#            32-bit lines also print their ratio to the amd64 guest on kite.
#            `no_timer_check` on both: under load QEMU TCG can miss the
#            kernel's IO-APIC timer check and panic.
#   display  The cost of the screen (issue 12): the Debian 686 guest loads
#            bochs-drm (1024x768 framebuffer console) and sleeps 10 s; host
#            CPU seconds during the sleep with the VGA on VNC and no client,
#            then with a connected idle viewer (crates/vnc/tests/programs/
#            idle_client.py: raw encoding, an incremental request after each
#            update, as real viewers do). QEMU: qemu-system-i386 -vga std
#            -display vnc. Then the time to encode a full 1024x768 update
#            (kite-vnc's pattern server, --bench-encode).
# Any failure (a guest that does not reach `kite-guest: done, status 0`, a
# wrong checksum, a missing tool that cannot be installed) stops the script
# with a message: nothing is skipped silently.
set -euo pipefail

cd "$(dirname "$0")/.."
RUNS="${RUNS:-3}"
SHELL_LOOPS="${SHELL_LOOPS:-20000}"
FLAVOURS="${FLAVOURS:-amd64 686-pae 686}"
ROUNDS="${ROUNDS:-6000}"
LOOPS="${LOOPS:-300}"
work="$(mktemp -d /tmp/kite-bench.XXXXXX)"
trap 'rm -rf "$work"' EXIT

die() {
    echo "bench: $*" >&2
    exit 1
}

apt_install() {
    local pkg="$1"
    command -v apt-get >/dev/null || die "$pkg is missing and apt-get is not available: install it"
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "bench: installing $pkg" >&2
    $sudo apt-get install -y -qq "$pkg" >&2 || die "could not install $pkg"
}

[ -x /usr/bin/time ] || apt_install time
command -v qemu-system-x86_64 >/dev/null || apt_install qemu-system-x86
QEMU="$(command -v qemu-system-x86_64)" || die "qemu-system-x86_64 not found after installing"
QEMU32="$(command -v qemu-system-i386)" || die "qemu-system-i386 not found (package qemu-system-x86)"

KITE="${KITE:-target/release/kite}"
if [ ! -x "$KITE" ]; then
    echo "bench: building kite (cargo build --release)" >&2
    cargo build --release -p kite >&2
fi
[ -x "$KITE" ] || die "no kite binary at $KITE"

if [ -z "${KITE_GUEST_CACHE:-}" ]; then
    if [ -f /var/cache/kite-guests/amd64/vmlinuz ]; then
        KITE_GUEST_CACHE=/var/cache/kite-guests
    else
        KITE_GUEST_CACHE="$HOME/.cache/kite-guests"
    fi
fi
export KITE_GUEST_CACHE
guest="$KITE_GUEST_CACHE/amd64"
if [ ! -f "$guest/vmlinuz" ] || [ ! -f "$guest/initrd.gz" ]; then
    echo "bench: fetching the amd64 guest (scripts/guests.sh amd64)" >&2
    scripts/guests.sh amd64
fi
[ -f "$guest/vmlinuz" ] && [ -f "$guest/initrd.gz" ] || die "no guest in $guest"

# measure OUT_PREFIX CMD...: runs CMD with stdout+stderr to OUT_PREFIX.log and
# "wall user sys maxrss_kib exit" to OUT_PREFIX.time.
measure() {
    local out="$1"
    shift
    /usr/bin/time -f '%e %U %S %M %x' -o "$out.time" "$@" >"$out.log" 2>&1 </dev/null || true
    # /usr/bin/time prints "Command exited with non-zero status" first then.
    tail -1 "$out.time" >"$out.t" && mv "$out.t" "$out.time"
    return 0
}

median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) {print "nan"} else if (NR%2) {print a[(NR+1)/2]} else {printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}}'; }

# CPU seconds (user + sys) of one .time file.
cpu_of() { awk '{printf "%.3f\n", $2+$3}' "$1"; }

linux_kite() {
    measure "$1" "$KITE" run --engine emu --memory 512M --kernel "$guest/vmlinuz" \
        --initrd "$guest/initrd.gz" --cmdline "console=ttyS0 panic=-1 kite_cmd=\"$2\"" --no-reboot
}
linux_qemu() {
    measure "$1" "$QEMU" -accel tcg -m 512M -nographic -no-reboot -kernel "$guest/vmlinuz" \
        -initrd "$guest/initrd.gz" -append "console=ttyS0 panic=-1 kite_cmd=\"$2\""
}

check_linux() {
    grep -q "kite-guest: done, status 0" "$1.log" ||
        die "$1: the guest did not finish with status 0 (log: $(tail -5 "$1.log" | tr -d '\r'))"
}

# run_pair NAME KIND ARG: RUNS runs of kite and QEMU, interleaved.
run_pair() {
    local name="$1" kind="$2" arg="$3"
    for i in $(seq 1 "$RUNS"); do
        for eng in kite qemu; do
            local p="$work/$name.$eng.$i"
            "${kind}_$eng" "$p" "$arg"
            "check_$kind" "$p"
            echo "bench: $name $eng run $i: $(cat "$p.time")" >&2
        done
    done
}

# stats NAME ENG: "wall cpu rss" medians.
stats() {
    local name="$1" eng="$2" f
    local walls cpus rsss
    walls=$(for f in "$work/$name.$eng".*.time; do awk '{print $1}' "$f"; done | median)
    cpus=$(for f in "$work/$name.$eng".*.time; do cpu_of "$f"; done | median)
    rsss=$(for f in "$work/$name.$eng".*.time; do awk '{print $4}' "$f"; done | median)
    echo "$walls $cpus $rsss"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "inf" }'; }

report() {
    local title="$1" name="$2"
    read -r kw kc kr <<<"$(stats "$name" kite)"
    read -r qw qc qr <<<"$(stats "$name" qemu)"
    printf '%-8s kite: wall %7.2f s  cpu %7.2f s  rss %7d KiB | qemu: wall %7.2f s  cpu %7.2f s  rss %7d KiB | kite/qemu wall %s cpu %s\n' \
        "$title" "$kw" "$kc" "$kr" "$qw" "$qc" "$qr" "$(ratio "$kw" "$qw")" "$(ratio "$kc" "$qc")"
}

bench_boot() {
    run_pair boot linux "true"
    report boot boot
}

compute_kite() {
    measure "$1" "$KITE" run --engine emu --memory 64M --kernel "$2"
}
compute_qemu() {
    measure "$1" "$QEMU" -accel tcg -m 64M -nographic -no-reboot -kernel "$2" \
        -device isa-debug-exit,iobase=0xf4,iosize=4
}
check_compute() {
    local want
    want="$(cat "$work/compute.expected")"
    grep -q "checksum=$want" "$1.log" || die "$1: no 'checksum=$want' (log: $(tail -3 "$1.log"))"
    # Debug-exit value 0x21: both exit with (0x21 << 1) | 1 = 67.
    [ "$(awk '{print $5}' "$1.time")" = 67 ] || die "$1: exit status $(awk '{print $5}' "$1.time"), expected 67"
}

bench_compute() {
    local k="$work/compute.elf"
    cargo run -q --release -p kite-testkernels --example bench_kernel -- "$k" "$ROUNDS" >&2
    # The expected checksum: one plain run of the same kernel family on QEMU
    # must agree with kite's, so take it from the 1-round kernel on kite and
    # check both engines print it.
    cargo run -q --release -p kite-testkernels --example bench_kernel -- "$work/one.elf" 1 >&2
    "$KITE" run --engine emu --memory 64M --kernel "$work/one.elf" </dev/null 2>&1 |
        sed -n 's/.*checksum=\([0-9a-f]\{16\}\).*/\1/p' | head -1 >"$work/compute.expected"
    [ -s "$work/compute.expected" ] || die "the 1-round compute kernel printed no checksum"
    run_pair compute compute "$k"
    report compute compute
}

# The guest prints /proc/uptime around the loop; the loop time is the difference.
uptime_delta() {
    tr -d '\r' <"$1.log" | awk '/^bench-t[01] / {t[$1]=$2} END { if (("bench-t0" in t) && ("bench-t1" in t)) printf "%.2f\n", t["bench-t1"]-t["bench-t0"]; else print "missing" }'
}

bench_os() {
    local cmd="echo bench-t0 \$(cut -d' ' -f1 /proc/uptime); i=0; while [ \$i -lt $LOOPS ]; do /bin/true; echo x > /tmp/f; cat /tmp/f >/dev/null; i=\$((i+1)); done; echo bench-t1 \$(cut -d' ' -f1 /proc/uptime)"
    run_pair os linux "$cmd"
    local eng f
    for eng in kite qemu; do
        local vals
        vals=$(for f in "$work/os.$eng".*.log; do uptime_delta "${f%.log}"; done)
        if echo "$vals" | grep -q missing; then die "os: a $eng run printed no loop timestamps"; fi
        eval "os_$eng=$(echo "$vals" | median)"
    done
    # shellcheck disable=SC2154
    printf '%-8s loop of %d fork/exec+file ops (guest clock): kite %.2f s | qemu %.2f s | kite/qemu %s\n' \
        os "$LOOPS" "$os_kite" "$os_qemu" "$(ratio "$os_kite" "$os_qemu")"
    report os-total os
}

# idle_run ENG OUT: boots Linux running `sleep 10` between two markers and
# samples the engine process's CPU time (utime + stime from /proc) when
# each marker appears on the console; writes the difference in seconds.
# The markers are computed by the guest shell so that the echoed command
# line itself does not match.
idle_run() {
    local eng="$1" out="$2" cmd pid t0="" t1="" tick
    tick="$(getconf CLK_TCK)"
    # The trailing sleep keeps the VM alive while the second sample is taken.
    cmd="echo idle-mark-\$((10+1)); sleep 10; echo idle-mark-\$((20+2)); sleep 2"
    if [ "$eng" = kite ]; then
        "$KITE" run --engine emu --memory 512M --kernel "$guest/vmlinuz" --initrd "$guest/initrd.gz" \
            --cmdline "console=ttyS0 panic=-1 kite_cmd=\"$cmd\"" --no-reboot >"$out.log" 2>&1 </dev/null &
    else
        "$QEMU" -accel tcg -m 512M -nographic -no-reboot -kernel "$guest/vmlinuz" -initrd "$guest/initrd.gz" \
            -append "console=ttyS0 panic=-1 kite_cmd=\"$cmd\"" >"$out.log" 2>&1 </dev/null &
    fi
    pid=$!
    cpu_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null; }
    while kill -0 "$pid" 2>/dev/null; do
        if [ -z "$t0" ] && grep -qs "idle-mark-11" "$out.log"; then t0="$(cpu_ticks)"; fi
        if [ -n "$t0" ] && grep -qs "idle-mark-22" "$out.log"; then
            t1="$(cpu_ticks)"
            break
        fi
        sleep 0.05
    done
    wait "$pid" || die "$out: $eng exited with an error (log: $(tail -3 "$out.log" | tr -d '\r'))"
    check_linux "$out"
    [ -n "$t0" ] && [ -n "$t1" ] || die "$out: the idle markers were not seen while $eng ran"
    awk -v a="$t0" -v b="$t1" -v t="$tick" 'BEGIN { printf "%.2f\n", (b - a) / t }' >"$out.idle"
    echo "bench: idle $eng: $(cat "$out.idle") s CPU during the guest's sleep 10" >&2
}

bench_idle() {
    local i eng
    for i in $(seq 1 "$RUNS"); do
        for eng in kite qemu; do idle_run "$eng" "$work/idle.$eng.$i"; done
    done
    for eng in kite qemu; do
        eval "idle_$eng=$(cat "$work/idle.$eng".*.idle | median)"
    done
    # shellcheck disable=SC2154
    printf '%-8s host CPU seconds during a 10 s guest sleep: kite %s s | qemu %s s | kite/qemu %s\n' \
        idle "$idle_kite" "$idle_qemu" "$(ratio "$idle_kite" "$idle_qemu")"
}

# display_run ENG CLIENT OUT: the 686 guest on VNC display 57 loads bochs-drm
# and sleeps between two markers; with CLIENT=yes an idle viewer is connected
# first. Writes the CPU seconds of the engine process during the sleep.
display_run() {
    local eng="$1" client="$2" out="$3" cmd pid cpid="" t0="" t1="" tick dir="$KITE_GUEST_CACHE/686"
    tick="$(getconf CLK_TCK)"
    cmd="kite-drm; sleep 3; echo idle-mark-\$((10+1)); sleep 10; echo idle-mark-\$((20+2)); sleep 2"
    if [ "$eng" = kite ]; then
        "$KITE" run --engine emu --memory 512M --kernel "$dir/vmlinuz" --initrd "$dir/initrd.gz" \
            --cmdline "console=ttyS0 panic=-1 no_timer_check kite_cmd=\"$cmd\"" --no-reboot \
            --display vnc=127.0.0.1:57 >"$out.log" 2>&1 </dev/null &
    else
        "$QEMU32" -accel tcg -m 512M -vga std -display vnc=127.0.0.1:57 -serial stdio -monitor none \
            -no-reboot -kernel "$dir/vmlinuz" -initrd "$dir/initrd.gz" \
            -append "console=ttyS0 panic=-1 no_timer_check kite_cmd=\"$cmd\"" >"$out.log" 2>&1 </dev/null &
    fi
    pid=$!
    if [ "$client" = yes ]; then
        local i
        for i in $(seq 1 200); do
            python3 crates/vnc/tests/programs/idle_client.py 127.0.0.1 5957 600 >"$out.updates" 2>/dev/null &
            cpid=$!
            sleep 0.5
            kill -0 "$cpid" 2>/dev/null && break
            cpid=""
        done
        [ -n "$cpid" ] || die "$out: no viewer could connect to $eng's VNC server"
    fi
    cpu_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null; }
    while kill -0 "$pid" 2>/dev/null; do
        if [ -z "$t0" ] && grep -qs "idle-mark-11" "$out.log"; then t0="$(cpu_ticks)"; fi
        if [ -n "$t0" ] && grep -qs "idle-mark-22" "$out.log"; then
            t1="$(cpu_ticks)"
            break
        fi
        sleep 0.05
    done
    if [ -n "$cpid" ]; then
        kill -0 "$cpid" 2>/dev/null || die "$out: the viewer did not stay connected"
        kill "$cpid" 2>/dev/null || true
    fi
    wait "$pid" || die "$out: $eng exited with an error (log: $(tail -3 "$out.log" | tr -d '\r'))"
    check_linux "$out"
    grep -q "bochs-drm" "$out.log" || die "$out: bochs-drm did not load"
    [ -n "$t0" ] && [ -n "$t1" ] || die "$out: the idle markers were not seen while $eng ran"
    awk -v a="$t0" -v b="$t1" -v t="$tick" 'BEGIN { printf "%.2f\n", (b - a) / t }' >"$out.idle"
    echo "bench: display $eng client=$client: $(cat "$out.idle") s CPU during the guest's sleep 10" >&2
}

bench_display() {
    local i eng client
    [ -f "$KITE_GUEST_CACHE/686/vmlinuz" ] || scripts/guests.sh 686 >&2
    for i in $(seq 1 "$RUNS"); do
        for client in no yes; do
            for eng in kite qemu; do display_run "$eng" "$client" "$work/display.$eng.$client.$i"; done
        done
    done
    for client in no yes; do
        for eng in kite qemu; do
            eval "disp_${eng}_$client=$(cat "$work/display.$eng.$client".*.idle | median)"
        done
        # shellcheck disable=SC2154
        printf '%-8s 1024x768 bochs-drm console, guest sleeping 10 s, VNC client=%s: host CPU kite %s s | qemu %s s | kite/qemu %s\n' \
            display "$client" "$(eval echo "\$disp_kite_$client")" "$(eval echo "\$disp_qemu_$client")" \
            "$(ratio "$(eval echo "\$disp_kite_$client")" "$(eval echo "\$disp_qemu_$client")")"
    done
    cargo build --release -q -p kite-vnc --example vnc-pattern-server >&2
    target/release/examples/vnc-pattern-server --bench-encode --size 1024x768 | sed 's/^/display  full update: /'
}

# The `loop` benchmark: GUEST_DIR and QEMU_BIN name the flavour being run.
loop_kite() {
    measure "$1" "$KITE" run --engine emu --memory 512M --kernel "$GUEST_DIR/vmlinuz" \
        --initrd "$GUEST_DIR/initrd.gz" --cmdline "console=ttyS0 panic=-1 no_timer_check kite_cmd=\"$2\"" --no-reboot
}
loop_qemu() {
    measure "$1" "$QEMU_BIN" -accel tcg -m 512M -nographic -no-reboot -kernel "$GUEST_DIR/vmlinuz" \
        -initrd "$GUEST_DIR/initrd.gz" -append "console=ttyS0 panic=-1 no_timer_check kite_cmd=\"$2\""
}
check_loop() {
    check_linux "$1"
    tr -d '\r' <"$1.log" | grep -q "^loop=$SHELL_LOOPS\$" || die "$1: the guest did not print loop=$SHELL_LOOPS"
}

bench_loop() {
    local fl cmd amd64_wall="" amd64_cpu=""
    cmd="i=0; while [ \$i -lt $SHELL_LOOPS ]; do i=\$((i+1)); done; echo loop=\$i"
    for fl in $FLAVOURS; do
        GUEST_DIR="$KITE_GUEST_CACHE/$fl"
        if [ ! -f "$GUEST_DIR/vmlinuz" ] || [ ! -f "$GUEST_DIR/initrd.gz" ]; then
            echo "bench: fetching the $fl guest (scripts/guests.sh $fl)" >&2
            scripts/guests.sh "$fl" >&2
        fi
        [ -f "$GUEST_DIR/vmlinuz" ] && [ -f "$GUEST_DIR/initrd.gz" ] || die "no guest in $GUEST_DIR"
        if [ "$fl" = amd64 ]; then QEMU_BIN="$QEMU"; else QEMU_BIN="$QEMU32"; fi
        run_pair "loop-$fl" loop "$cmd"
        report "$fl" "loop-$fl"
        read -r kw kc _ <<<"$(stats "loop-$fl" kite)"
        if [ "$fl" = amd64 ]; then
            amd64_wall="$kw" amd64_cpu="$kc"
        elif [ -n "$amd64_wall" ]; then
            printf '%-8s kite %s / kite amd64: wall %s cpu %s\n' "$fl" "$fl" \
                "$(ratio "$kw" "$amd64_wall")" "$(ratio "$kc" "$amd64_cpu")"
        fi
    done
}

what=("$@")
[ ${#what[@]} -gt 0 ] || what=(all)
[ "${what[0]}" = all ] && what=(boot compute os idle loop display)

echo "bench: $(uname -srm); $(nproc) CPUs; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')" >&2
echo "bench: kite binary $KITE (checkout $(git rev-parse --short HEAD 2>/dev/null || echo '?')); $("$QEMU" --version | head -1); RUNS=$RUNS; load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
results=()
for b in "${what[@]}"; do
    case "$b" in
    boot | compute | os | idle | loop | display)
        out="$("bench_$b")" || exit 1
        results+=("$out")
        ;;
    *) die "unknown benchmark '$b' (boot, compute, os, idle, loop, display, all)" ;;
    esac
done
echo "== medians of $RUNS runs (wall/CPU seconds, peak RSS) =="
printf '%s\n' "${results[@]}"
