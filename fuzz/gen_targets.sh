#!/bin/sh
# Regenerates fuzz_targets/<name>.rs and the [[bin]] list of Cargo.toml from
# kite_fuzz::TARGETS (run from fuzz/ after adding a harness).
set -eu
cd "$(dirname "$0")"
names=$(grep -o '^    ("[a-z0-9_]*"' ../crates/fuzz/src/lib.rs | tr -d ' ("')
mkdir -p fuzz_targets
rm -f fuzz_targets/*.rs
{
  sed '/^# --- targets ---$/q' Cargo.toml
  for n in $names; do
    cat > "fuzz_targets/$n.rs" <<RS
//! libFuzzer entry for \`kite_fuzz::$n\` (the harness and its invariants live there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kite_fuzz::$n(data));
RS
    printf '\n[[bin]]\nname = "%s"\npath = "fuzz_targets/%s.rs"\ntest = false\ndoc = false\nbench = false\n' "$n" "$n"
  done
} > Cargo.toml.new
mv Cargo.toml.new Cargo.toml
