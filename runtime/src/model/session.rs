//! A session as a flow holds it, and why a session ends.

use super::outcome::FlowError;

/// Which end of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The flow that opened it.
    Initiator,
    /// The flow started to answer it.
    Responder,
}

impl Side {
    /// The other end.
    pub fn other(self) -> Side {
        match self {
            Side::Initiator => Side::Responder,
            Side::Responder => Side::Initiator,
        }
    }

    /// 0 for the initiator, 1 for the responder: an index into per-side arrays.
    pub fn index(self) -> usize {
        match self {
            Side::Initiator => 0,
            Side::Responder => 1,
        }
    }

    /// Its name as stored and sent: `initiator` or `responder`.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Initiator => "initiator",
            Side::Responder => "responder",
        }
    }

    /// The side named `name` ([`Side::as_str`]).
    pub fn parse(name: &str) -> Option<Side> {
        match name {
            "initiator" => Some(Side::Initiator),
            "responder" => Some(Side::Responder),
            _ => None,
        }
    }
}

/// A session as a flow holds it: the host's side of a `sluice:flow/sessions.session`.
#[derive(Debug, Clone)]
pub struct SessionRef {
    /// The session id.
    pub id: String,
    /// The party at the other end.
    pub party: String,
    /// This flow's end.
    pub side: Side,
    /// Messages sent so far: the sequence number of the next one.
    pub sent: u64,
    /// Messages received so far: the sequence number of the next one to take.
    pub received: u64,
    /// Whether the responder was started (always true on the responder's side).
    pub initiated: bool,
}

impl SessionRef {
    /// A session just opened by its initiator, or handed to its responder.
    pub fn new(id: String, party: String, side: Side) -> Self {
        SessionRef {
            id,
            party,
            side,
            sent: 0,
            received: 0,
            initiated: side == Side::Responder,
        }
    }
}

/// Why a counterparty's `receive` finds nothing more: instance `id` ended with `outcome`.
pub fn end_reason(id: &str, outcome: &Result<Vec<u8>, FlowError>) -> String {
    match outcome {
        Ok(_) => format!("the counterparty's flow {id} completed"),
        Err(e) => format!("the counterparty's flow {id} ended: {e}"),
    }
}
