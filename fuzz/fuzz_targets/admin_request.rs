//! Fuzz target: `ringmaster::fuzz::admin_request` on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringmaster::fuzz::admin_request(data));
