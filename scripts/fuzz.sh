#!/bin/sh
# Runs the libFuzzer targets of fuzz/ (see docs/FUZZING.md) for SECONDS each,
# one after another, under nice -n 19 (FUZZ_NICE=N to change); every target
# by default.
#   scripts/fuzz.sh SECONDS [TARGET...]
# Needs the nightly toolchain and cargo-fuzz (cargo install cargo-fuzz).
# Corpora grow in fuzz/corpus/<target>/, crashes land in fuzz/artifacts/<target>/,
# each run's log in fuzz/logs/<target>.log, and one line per run (target,
# seconds, executions, executions per second, CPU seconds, result) is
# appended to fuzz/logs/summary.tsv. Exits 1 if any target crashed.
set -eu
if [ $# -lt 1 ]; then
  echo "usage: $0 SECONDS [TARGET...]" >&2
  exit 2
fi
secs=$1
shift
nice="${FUZZ_NICE:-19}"
cd "$(dirname "$0")/../fuzz"
if [ $# -eq 0 ]; then
  set -- $(cargo +nightly fuzz list)
fi
nice -n "$nice" cargo +nightly fuzz build -a >/dev/null
mkdir -p logs
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
failed=0
for t in "$@"; do
  mkdir -p "corpus/$t"
  case "$t" in
    emu_exec|loader_*) max_len=16384 ;;
    snapshot) max_len=65536 ;;
    *) max_len=4096 ;;
  esac
  log="logs/$t.log"
  result=ok
  # -malloc_limit_mb: one allocation larger than this is a bug (a guest- or
  # client-sized buffer); -rss_limit_mb bounds the whole process.
  if ! /usr/bin/time -f 'cpu_seconds %U %S' -o "logs/$t.time" \
      nice -n "$nice" cargo +nightly fuzz run -a "$t" "corpus/$t" -- \
      -max_total_time="$secs" -max_len="$max_len" -timeout=20 \
      -rss_limit_mb=2048 -malloc_limit_mb=512 -print_final_stats=1 \
      >"$log" 2>&1; then
    result=CRASH
    failed=1
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cpu=$(awk '/^cpu_seconds/ {printf "%.0f", $2 + $3}' "logs/$t.time")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$secs" "${execs:-?}" "${rate:-?}" "${cpu:-?}" "$result" "$commit" \
    | tee -a logs/summary.tsv
done
exit $failed
