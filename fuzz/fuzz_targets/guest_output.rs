#![no_main]
//! `cargo +nightly fuzz run guest_output`: see `sluice::testing::fuzz::guest_output`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice::testing::fuzz::guest_output(data));
