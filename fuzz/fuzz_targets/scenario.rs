#![no_main]
//! `cargo +nightly fuzz run scenario`: see `sluice::testing::fuzz::scenario`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice::testing::fuzz::scenario(data));
