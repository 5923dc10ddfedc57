//! What travels between nodes: a session's messages and ends, and the request that opens a
//! session with a responder on another node. The same types are kept in the sending node's
//! outbox, sent over HTTP, and kept in the receiving node's inbox.

use serde::{Deserialize, Serialize};

use super::session::Side;

/// The sequence number a session end is kept under: after every message its sender sent.
pub const END_SEQ: u64 = i64::MAX as u64;

/// One message of a session, or its end, between this node and party `peer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerMessage {
    /// The other node: where an outgoing message goes, or where an incoming one came from.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub peer: String,
    /// The session (`<initiator id>.<journal position>` on the initiator's node).
    pub session: String,
    /// The end that receives it.
    pub to: Side,
    /// Its place among the messages its sender sent on the session, from 0; [`END_SEQ`]
    /// for the end. With `session` and `to`, the id the receiver deduplicates by.
    pub seq: u64,
    /// The message, or why its sender's flow ended.
    pub body: PeerBody,
}

/// What a [`PeerMessage`] carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerBody {
    /// A message, as the sending flow passed it to `send`.
    Message(#[serde(with = "base64_bytes")] Vec<u8>),
    /// The sender's flow ended (completed, failed, cancelled): why.
    End(String),
}

impl PeerMessage {
    /// Message `seq` of `session` to its `to` end on `peer`.
    pub fn message(peer: &str, session: &str, to: Side, seq: u64, payload: Vec<u8>) -> Self {
        PeerMessage {
            peer: peer.to_string(),
            session: session.to_string(),
            to,
            seq,
            body: PeerBody::Message(payload),
        }
    }

    /// The end of `session`'s sender, for its `to` end on `peer`.
    pub fn end(peer: &str, session: &str, to: Side, why: String) -> Self {
        PeerMessage {
            peer: peer.to_string(),
            session: session.to_string(),
            to,
            seq: END_SEQ,
            body: PeerBody::End(why),
        }
    }
}

/// Asks a peer to start the responder of a session (`POST /v1/peers/open`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenSession {
    /// The asking node's identity.
    pub from: String,
    /// The session.
    pub session: String,
    /// The initiating flow's name: the responder is the flow registered `initiated-by` it.
    pub flow: String,
}

/// Messages from one peer (`POST /v1/peers/messages`), in the order they were sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The sending node's identity.
    pub from: String,
    /// The messages, oldest first.
    pub messages: Vec<PeerMessage>,
}

/// What a peer answers a [`Delivery`] with, once what it kept is durable.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// How many messages it kept (new or already kept: both need no resend).
    pub kept: u64,
    /// Messages it will never take, each with why (their session is unknown there).
    #[serde(default)]
    pub refused: Vec<RefusedMessage>,
}

/// A message a peer will never take.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedMessage {
    /// Its session.
    pub session: String,
    /// The end it was for.
    pub to: Side,
    /// Its sequence number.
    pub seq: u64,
    /// Why.
    pub why: String,
}

/// What a peer answers an [`OpenSession`] with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Opened {
    /// The responder's instance id there.
    pub responder: String,
    /// The responder's flow there.
    pub flow: String,
}

mod base64_bytes {
    //! Bytes as standard base64 in JSON (a message is any bytes, not only UTF-8).
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD
            .decode(text)
            .map_err(|e| serde::de::Error::custom(format!("not standard base64: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_as_json_with_any_bytes() {
        for payload in [
            vec![],
            vec![0u8],
            vec![1, 2],
            vec![255, 0, 7],
            b"hello world".to_vec(),
        ] {
            let m = PeerMessage::message("B", "01A.3", Side::Responder, 2, payload);
            let text = serde_json::to_string(&m).unwrap();
            assert_eq!(
                serde_json::from_str::<PeerMessage>(&text).unwrap(),
                m,
                "{text}"
            );
        }
        let end = PeerMessage::end("", "01A.3", Side::Initiator, "done".into());
        let text = serde_json::to_string(&end).unwrap();
        assert!(!text.contains("peer"), "{text}");
        assert_eq!(serde_json::from_str::<PeerMessage>(&text).unwrap(), end);
        assert!(
            serde_json::from_str::<PeerMessage>(
                r#"{"session":"s","to":"initiator","seq":0,"body":{"message":"!!"}}"#
            )
            .is_err()
        );
    }
}
