//! Fuzz target: `ringmaster::fuzz::client_hello` on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringmaster::fuzz::client_hello(data));
