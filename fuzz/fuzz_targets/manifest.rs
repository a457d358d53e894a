//! Fuzz target: see [`checks/manifest.rs`](../checks/manifest.rs), shared with the regression tests.
#![no_main]

#[path = "../checks/manifest.rs"]
mod manifest;

libfuzzer_sys::fuzz_target!(|data: &[u8]| manifest::check(data));
