//! How payloads and host-call values are written into the journal: JSON a person can read
//! (`sluice status`, `sluice export`) that still round-trips every byte exactly.

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::StoreError;

/// Bytes that serialize as a JSON string when they are UTF-8 (flow payloads are JSON by
/// convention), else as `{"hex": "…"}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Payload(pub Vec<u8>);

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(text) => s.serialize_str(text),
            Err(_) => {
                let mut map = serde_json::Map::new();
                map.insert("hex".into(), Value::String(hex::encode(&self.0)));
                map.serialize(s)
            }
        }
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(text) => Ok(Payload(text.into_bytes())),
            Value::Object(map) => match map.get("hex").and_then(Value::as_str) {
                Some(h) => hex::decode(h).map(Payload).map_err(D::Error::custom),
                None => Err(D::Error::custom("payload object without `hex`")),
            },
            other => Err(D::Error::custom(format!(
                "payload must be a string or {{\"hex\": …}}, got {other}"
            ))),
        }
    }
}

impl std::fmt::Display for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match std::str::from_utf8(&self.0) {
            Ok(text) => f.write_str(text),
            Err(_) => write!(f, "0x{}", hex::encode(&self.0)),
        }
    }
}

/// A value as journal JSON.
pub fn encode<T: Serialize>(value: &T) -> Value {
    // Every journaled type is plain data (strings, numbers, maps): it always serializes.
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// Journal JSON back into a value.
pub fn decode<T: DeserializeOwned>(value: &Value) -> Result<T, StoreError> {
    T::deserialize(value).map_err(|e| StoreError::Decode(format!("{e} in {value}")))
}

/// A peer message's body as a row keeps it: its kind (`message` or `end`) and its bytes
/// (the payload, or the end's reason as UTF-8).
pub(crate) fn peer_row(body: &crate::model::PeerBody) -> (&'static str, &[u8]) {
    match body {
        crate::model::PeerBody::Message(payload) => ("message", payload),
        crate::model::PeerBody::End(why) => ("end", why.as_bytes()),
    }
}

/// A peer message read back from its row's columns.
pub(crate) fn peer_message(
    peer: String,
    session: String,
    side: &str,
    seq: i64,
    kind: &str,
    bytes: Vec<u8>,
) -> Result<crate::model::PeerMessage, StoreError> {
    use crate::model::{PeerBody, PeerMessage, Side};
    let to = Side::parse(side)
        .ok_or_else(|| StoreError::Decode(format!("peer message side `{side}` in {session}")))?;
    let body = match kind {
        "message" => PeerBody::Message(bytes),
        "end" => PeerBody::End(String::from_utf8_lossy(&bytes).into_owned()),
        other => {
            return Err(StoreError::Decode(format!(
                "peer message kind `{other}` in {session}"
            )));
        }
    };
    Ok(PeerMessage {
        peer,
        session,
        to,
        seq: seq as u64,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_text_and_binary() {
        for bytes in [b"{\"n\": 1}".to_vec(), vec![0xff, 0x00, 0x7f], vec![]] {
            let p = Payload(bytes);
            let v = encode(&p);
            assert_eq!(decode::<Payload>(&v).unwrap(), p);
        }
        assert_eq!(encode(&Payload(b"hi".to_vec())), Value::String("hi".into()));
        assert_eq!(
            encode(&Payload(vec![0xff])),
            serde_json::json!({"hex": "ff"})
        );
    }
}
