//! `menshen::fuzz::config` under libFuzzer (`make fuzz`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| menshen::fuzz::config(data));
