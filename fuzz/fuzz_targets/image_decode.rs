//! Fuzz target: see [`checks/image_decode.rs`](../checks/image_decode.rs), shared with the regression tests.
#![no_main]

#[path = "../checks/image_decode.rs"]
mod image_decode;

libfuzzer_sys::fuzz_target!(|data: &[u8]| image_decode::check(data));
