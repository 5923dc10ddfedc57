#![no_main]
//! `cargo +nightly fuzz run stored_record`: see `sluice::store::fuzzing::stored_record`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice::store::fuzzing::stored_record(data));
