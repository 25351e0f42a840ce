//! `menshen::fuzz::chunked` under libFuzzer (`make fuzz`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| menshen::fuzz::chunked(data));
