//! Fuzz target: see [`checks/sensor_window.rs`](../checks/sensor_window.rs), shared with the regression tests.
#![no_main]

#[path = "../checks/sensor_window.rs"]
mod sensor_window;

libfuzzer_sys::fuzz_target!(|data: &[u8]| sensor_window::check(data));
