//! Fuzz target: see [`checks/update_messages.rs`](../checks/update_messages.rs), shared with the regression tests.
#![no_main]

#[path = "../checks/update_messages.rs"]
mod update_messages;

libfuzzer_sys::fuzz_target!(|data: &[u8]| update_messages::check(data));
