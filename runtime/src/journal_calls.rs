//! How each host call is written in the journal: its arguments and its answer. The node's
//! host and `sluice replay` both use these, so a journal means the same to both.

use serde_json::{Value, json};

use crate::bindings::WitFlowError;
use crate::bindings::sluice::flow::types::Priority;
use crate::error::FlowError;
use crate::journal::{Payload, StoreError, decode, encode};
use crate::node::Outcome;

/// A subflow outcome as journaled.
pub type Journaled = Result<Payload, FlowError>;

/// Arguments of `call` (and of `start`, without options).
pub fn flow_args(flow: &str, input: &[u8]) -> Value {
    json!({ "flow": flow, "input": encode(&Payload(input.to_vec())) })
}

/// Arguments of `start`.
pub fn start_args(flow: &str, input: &[u8], priority: Option<Priority>) -> Value {
    let mut args = flow_args(flow, input);
    if let Some(p) = priority {
        args["priority"] = json!(match p {
            Priority::High => "high",
            Priority::Normal => "normal",
        });
    }
    args
}

/// Arguments of `join`.
pub fn join_args(id: &str) -> Value {
    json!({ "id": id })
}

/// Arguments of `parallel`.
pub fn parallel_args(flow: &str, inputs: &[Vec<u8>]) -> Value {
    let payloads: Vec<Payload> = inputs.iter().map(|i| Payload(i.clone())).collect();
    json!({ "flow": flow, "inputs": encode(&payloads) })
}

/// Arguments of `sleep`.
pub fn sleep_args(ms: u64) -> Value {
    json!({ "ms": ms })
}

/// Arguments of `progress`.
pub fn progress_args(step: &str) -> Value {
    json!({ "step": step })
}

/// Arguments of a session's constructor.
pub fn session_args(party: &str) -> Value {
    json!({ "party": party })
}

/// Arguments of a session's `send`.
pub fn send_args(session: &str, payload: &[u8]) -> Value {
    json!({ "session": session, "payload": encode(&Payload(payload.to_vec())) })
}

/// Arguments of a session's `receive`.
pub fn receive_args(session: &str) -> Value {
    json!({ "session": session })
}

/// Arguments of `publish`.
pub fn publish_args(topic: &str, payload: &[u8]) -> Value {
    json!({ "topic": topic, "payload": encode(&Payload(payload.to_vec())) })
}

/// Arguments of `wait-event`.
pub fn wait_event_args(topic: &str, timeout_ms: Option<u64>) -> Value {
    json!({ "topic": topic, "timeout_ms": timeout_ms })
}

/// Arguments of the second entry of a `wait-event`: what it took from `topic`.
pub fn take_event_args(topic: &str) -> Value {
    json!({ "topic": topic })
}

/// A journaled session answer (`session`, `initiator`): the session id and party.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Opened {
    /// The session id.
    pub session: String,
    /// The counterparty.
    pub party: String,
}

/// A journaled `send` or `receive` answer.
pub type Exchanged = Result<Option<Payload>, String>;

/// A message (or why there is none), journaled.
pub fn exchanged_to_json(exchanged: &Exchanged) -> Value {
    encode(exchanged)
}

/// A journaled `send` or `receive` answer.
pub fn exchanged_from_json(value: &Value) -> Result<Exchanged, StoreError> {
    decode(value)
}

/// The payload of a journaled `send` entry's arguments, when it is one on `session`.
pub fn sent_on(args: &Value, session: &str) -> Option<Vec<u8>> {
    if args.get("session")?.as_str()? != session {
        return None;
    }
    decode::<Payload>(args.get("payload")?).ok().map(|p| p.0)
}

/// A subflow outcome, journaled.
pub fn outcome_to_json(outcome: &Outcome) -> Value {
    encode(&outcome.clone().map(Payload))
}

/// Subflow outcomes, journaled.
pub fn outcomes_to_json(outcomes: &[Outcome]) -> Value {
    let journaled: Vec<Journaled> = outcomes.iter().map(|o| o.clone().map(Payload)).collect();
    encode(&journaled)
}

/// A journaled subflow outcome, as the guest gets it.
pub fn outcome_from_json(value: &Value) -> Result<Result<Vec<u8>, WitFlowError>, StoreError> {
    let outcome: Journaled = decode(value)?;
    Ok(outcome.map(|p| p.0).map_err(Into::into))
}

/// Journaled subflow outcomes, as the guest gets them.
pub fn outcomes_from_json(value: &Value) -> Result<Vec<Result<Vec<u8>, WitFlowError>>, StoreError> {
    let outcomes: Vec<Journaled> = decode(value)?;
    Ok(outcomes
        .into_iter()
        .map(|o| o.map(|p| p.0).map_err(Into::into))
        .collect())
}

/// A journaled `start` answer: the child's id, or why it was refused.
pub fn started_from_json(value: &Value) -> Result<Result<String, FlowError>, StoreError> {
    decode(value)
}
