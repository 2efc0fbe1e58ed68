//! libFuzzer entry for `kite_fuzz::loader_multiboot` (the harness and its invariants live there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kite_fuzz::loader_multiboot(data));
