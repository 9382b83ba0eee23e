//! Fuzz target: `ringmaster::fuzz::config` on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringmaster::fuzz::config(data));
