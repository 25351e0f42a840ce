//! `menshen::fuzz::h2_request` under libFuzzer (`make fuzz`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| menshen::fuzz::h2_request(data));
