//! Fuzz target: see [`checks/wire_decode.rs`](../checks/wire_decode.rs), shared with the regression tests.
#![no_main]

#[path = "../checks/wire_decode.rs"]
mod wire_decode;

libfuzzer_sys::fuzz_target!(|data: &[u8]| wire_decode::check(data));
