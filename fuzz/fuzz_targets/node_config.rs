#![no_main]
//! `cargo +nightly fuzz run node_config`: see `sluice::testing::fuzz::node_config`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice::testing::fuzz::node_config(data));
