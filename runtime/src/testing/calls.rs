//! The host calls a flow made, as the testing host records them.

use std::fmt;

use serde_json::Value;

/// One host call, with its arguments as the flow passed them.
#[derive(Debug, Clone, PartialEq)]
pub enum HostCall {
    /// `start(flow, input)`; the host answered with child id `id`.
    Start {
        flow: String,
        input: Value,
        id: String,
    },
    /// `join(id)`.
    Join { id: String },
    /// `call(flow, input)`.
    Call { flow: String, input: Value },
    /// `parallel(flow, inputs)`.
    Parallel { flow: String, inputs: Vec<Value> },
    /// `cancel(id)`.
    Cancel { id: String },
    /// `now()`.
    Now,
    /// `sleep(ms)`.
    Sleep { ms: u64 },
    /// `random()`.
    Random,
    /// `progress(step)`.
    Progress { step: String },
    /// `publish(topic, payload)`.
    Publish { topic: String, payload: Value },
    /// `wait-event(topic, timeout-ms)`.
    WaitEvent {
        topic: String,
        timeout_ms: Option<u64>,
    },
    /// A session opened with `party`.
    Session { party: String },
    /// `send(payload)` on the session with `party`.
    Send { party: String, payload: Value },
    /// `receive()` on the session with `party`.
    Receive { party: String },
    /// `initiator()`.
    Initiator,
}

impl HostCall {
    /// Why the script could not answer this call, when that needs saying.
    pub fn unscripted_hint(&self) -> Option<String> {
        match self {
            HostCall::Receive { party } => Some(format!(
                "the script has no more messages from `{party}` (add a [[message]] from = \"{party}\")"
            )),
            HostCall::WaitEvent { topic, .. } => Some(format!(
                "the script has no more events on `{topic}` and the wait has no timeout (add an \
                 [[event]] topic = \"{topic}\")"
            )),
            _ => None,
        }
    }
}

pub use crate::model::json_of;

impl fmt::Display for HostCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostCall::Start { flow, input, .. } => write!(f, "start(\"{flow}\", {input})"),
            HostCall::Join { id } => write!(f, "join({id})"),
            HostCall::Cancel { id } => write!(f, "cancel({id})"),
            HostCall::Call { flow, input } => write!(f, "call(\"{flow}\", {input})"),
            HostCall::Parallel { flow, inputs } => {
                write!(f, "parallel(\"{flow}\", {})", Value::Array(inputs.clone()))
            }
            HostCall::Now => f.write_str("now()"),
            HostCall::Sleep { ms } => write!(f, "sleep({ms})"),
            HostCall::Random => f.write_str("random()"),
            HostCall::Progress { step } => write!(f, "progress(\"{step}\")"),
            HostCall::Publish { topic, payload } => write!(f, "publish(\"{topic}\", {payload})"),
            HostCall::WaitEvent {
                topic,
                timeout_ms: Some(ms),
            } => write!(f, "wait-event(\"{topic}\", {ms})"),
            HostCall::WaitEvent { topic, .. } => write!(f, "wait-event(\"{topic}\")"),
            HostCall::Session { party } => write!(f, "session(\"{party}\")"),
            HostCall::Send { party, payload } => write!(f, "send(\"{party}\", {payload})"),
            HostCall::Receive { party } => write!(f, "receive(\"{party}\")"),
            HostCall::Initiator => f.write_str("initiator()"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn calls_print_as_their_wit_call() {
        let c = HostCall::Call {
            flow: "hello".into(),
            input: json!({ "name": "a" }),
        };
        assert_eq!(c.to_string(), r#"call("hello", {"name":"a"})"#);
        assert_eq!(HostCall::Sleep { ms: 5 }.to_string(), "sleep(5)");
        let p = HostCall::Parallel {
            flow: "f".into(),
            inputs: vec![json!(1), json!(2)],
        };
        assert_eq!(p.to_string(), r#"parallel("f", [1,2])"#);
        assert_eq!(json_of(b"not json"), json!("not json"));
        let send = HostCall::Send {
            party: "Bob".into(),
            payload: json!({ "offer": 3 }),
        };
        assert_eq!(send.to_string(), r#"send("Bob", {"offer":3})"#);
        let wait = HostCall::WaitEvent {
            topic: "prices".into(),
            timeout_ms: None,
        };
        assert_eq!(wait.to_string(), r#"wait-event("prices")"#);
        assert!(wait.unscripted_hint().unwrap().contains("[[event]]"));
    }
}
