#![no_main]
//! `cargo +nightly fuzz run journal_export`: see `sluice::testing::fuzz::journal_export`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice::testing::fuzz::journal_export(data));
