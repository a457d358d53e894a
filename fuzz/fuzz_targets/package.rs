//! Fuzz target: see [`checks/package.rs`](../checks/package.rs), shared with the regression tests.
#![no_main]

#[path = "../checks/package.rs"]
mod package;

libfuzzer_sys::fuzz_target!(|data: &[u8]| package::check(data));
