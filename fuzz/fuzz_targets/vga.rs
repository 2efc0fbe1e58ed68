//! libFuzzer entry for `kite_fuzz::vga` (the harness and its invariants live there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kite_fuzz::vga(data));
