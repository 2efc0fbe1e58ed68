//! libFuzzer entry for `kite_fuzz::ide` (the harness and its invariants live there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kite_fuzz::ide(data));
