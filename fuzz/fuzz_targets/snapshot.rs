//! libFuzzer entry for `kite_fuzz::snapshot` (the harness and its invariants live there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kite_fuzz::snapshot(data));
