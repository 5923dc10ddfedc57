//! Fuzz bodies for what the store reads back: payloads and journal values ([`super::codec`]),
//! stored start metas, and rows of the SQLite store written by anyone (an older build, a
//! disk that flipped a bit, an operator with `sqlite3`). Called by the `stored_record`
//! target in `fuzz/` and by the smoke test of the suite, so both run the same code.

use arbitrary::Unstructured;
use serde_json::Value;

use super::{Payload, decode, encode};
use crate::model::StartMeta;

/// Feed `data` to the store's decoders: no input panics, and what decodes round-trips.
pub fn stored_record(data: &[u8]) {
    let mut u = Unstructured::new(data);
    // Errors only mean the input ran out: whatever was read so far was checked.
    let _ = match u.int_in_range(0..=3u8) {
        Ok(0) => payload_bytes(&mut u),
        Ok(1) => payload_json(&mut u),
        Ok(2) => start_meta(&mut u),
        Ok(_) => super::sqlite::fuzzing::stored_row(&mut u),
        Err(e) => Err(e),
    };
}

/// Any bytes journal as a payload and read back the same.
fn payload_bytes(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let bytes: Vec<u8> = u.arbitrary()?;
    let journaled = encode(&Payload(bytes.clone()));
    let back: Payload = decode(&journaled).expect("an encoded payload decodes");
    assert_eq!(back.0, bytes, "payload {journaled} did not round-trip");
    // As the store writes it: the JSON text, parsed again.
    let text = journaled.to_string();
    let parsed: Value = serde_json::from_str(&text).expect("journal JSON parses");
    assert_eq!(decode::<Payload>(&parsed).expect("decodes").0, bytes);
    Ok(())
}

/// Any JSON text read as a payload: decodes or errs; what decodes encodes and decodes the same.
fn payload_json(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let text: &str = u.arbitrary()?;
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        return Ok(());
    };
    if let Ok(payload) = decode::<Payload>(&value) {
        let again: Payload = decode(&encode(&payload)).expect("an encoded payload decodes");
        assert_eq!(
            again, payload,
            "payload read from {text} did not round-trip"
        );
        let _ = payload.to_string();
    }
    Ok(())
}

/// Any text read as a stored start meta: parses or not; what parses is stored and read back the same.
fn start_meta(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let text: &str = u.arbitrary()?;
    if let Some(meta) = StartMeta::parse(text) {
        let stored = meta.to_json().expect("a start meta encodes");
        assert_eq!(
            StartMeta::parse(&stored).as_ref(),
            Some(&meta),
            "meta {text} stored as {stored} reads back otherwise"
        );
        let _ = meta.invocation("id", "flow", "node");
    }
    Ok(())
}
