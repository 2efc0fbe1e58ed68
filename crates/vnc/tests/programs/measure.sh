#!/bin/sh
# The VNC server's cost: %CPU of the server process with no client, with an
# idle client against a static screen, and with a client watching a moving
# square (30 updates/s); and the time to encode a full update.
# Usage: crates/vnc/tests/programs/measure.sh [SECONDS]   (from the repo root)
set -eu
secs=${1:-10}
cargo build --release -q -p kite-vnc --example vnc-pattern-server
bin=target/release/examples/vnc-pattern-server
here=$(dirname "$0")
ticks=$(getconf CLK_TCK)

cpu_of() { # pid -> utime+stime in ticks
    awk '{print $14 + $15}' "/proc/$1/stat"
}

run() { # label, server args..., then a client or none
    label=$1; client=$2; shift 2
    "$bin" 127.0.0.1:77 "$@" 2>/dev/null &
    pid=$!
    sleep 0.5
    if [ "$client" = yes ]; then
        python3 "$here/idle_client.py" 127.0.0.1 5977 "$((secs + 1))" > /tmp/kite-vnc-updates.$$ &
        cpid=$!
        sleep 1
    fi
    a=$(cpu_of $pid)
    sleep "$secs"
    b=$(cpu_of $pid)
    if [ "$client" = yes ]; then wait $cpid; fi
    kill $pid; wait $pid 2>/dev/null || true
    pct=$(awk -v a="$a" -v b="$b" -v t="$ticks" -v s="$secs" 'BEGIN{printf "%.2f", (b-a)*100/t/s}')
    extra=""
    if [ "$client" = yes ]; then extra=" ($(cat /tmp/kite-vnc-updates.$$) updates)"; rm -f /tmp/kite-vnc-updates.$$; fi
    echo "$label: $pct %CPU over ${secs}s$extra"
}

run "no client, static 1024x768" no
run "idle client, static 1024x768" yes
run "client, moving square every 33 ms" yes --animate 33
"$bin" --bench-encode --size 1024x768
