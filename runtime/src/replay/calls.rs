//! Every journaled host call, once: its name in the journal ([`Kind`]), how its arguments
//! are written ([`Call::args`]), and how its answer is written and read back. The node's
//! host, the replay host of `sluice replay` and the mailbox rebuild all go through here, so
//! a journal means the same to each of them.

use serde_json::{Value, json};

use crate::model::{FlowError, Outcome, Priority};
use crate::store::{Payload, StoreError, decode, encode};

/// Which host call a journal entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `start(flow, input, options)`: answered with the child's id or why it was refused.
    Start,
    /// `join(id)`: the child's outcome.
    Join,
    /// `call(flow, input)`: the child's outcome.
    Call,
    /// `parallel(flow, inputs)`: the children's outcomes, in order.
    Parallel,
    /// `cancel(id)`: done, or why not.
    Cancel,
    /// `now()`: unix milliseconds.
    Now,
    /// `sleep(ms)`: the deadline, journaled before the wait.
    Sleep,
    /// `random()`.
    Random,
    /// `progress(step)`.
    Progress,
    /// `publish(topic, payload)`.
    Publish,
    /// `wait-event(topic, timeout)`, first entry: the deadline, journaled before the wait.
    WaitEvent,
    /// `wait-event`, second entry: the event taken, if any.
    TakeEvent,
    /// A session's constructor: the session opened.
    Session,
    /// A session's `send`.
    Send,
    /// A session's `receive`.
    Receive,
    /// `initiator()`: the session that started a responder, if any.
    Initiator,
}

impl Kind {
    /// Every kind, for tests and tools.
    pub const ALL: [Kind; 16] = [
        Kind::Start,
        Kind::Join,
        Kind::Call,
        Kind::Parallel,
        Kind::Cancel,
        Kind::Now,
        Kind::Sleep,
        Kind::Random,
        Kind::Progress,
        Kind::Publish,
        Kind::WaitEvent,
        Kind::TakeEvent,
        Kind::Session,
        Kind::Send,
        Kind::Receive,
        Kind::Initiator,
    ];

    /// The name written in the journal.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Start => "start",
            Kind::Join => "join",
            Kind::Call => "call",
            Kind::Parallel => "parallel",
            Kind::Cancel => "cancel",
            Kind::Now => "now",
            Kind::Sleep => "sleep",
            Kind::Random => "random",
            Kind::Progress => "progress",
            Kind::Publish => "publish",
            Kind::WaitEvent => "wait-event",
            Kind::TakeEvent => "take-event",
            Kind::Session => "session",
            Kind::Send => "send",
            Kind::Receive => "receive",
            Kind::Initiator => "initiator",
        }
    }

    /// The kind named `name` in a journal, if any.
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// One host call with its arguments, as the journal compares and records it.
#[derive(Debug, Clone, Copy)]
pub enum Call<'a> {
    /// `start`; `priority` only when the flow gave one.
    Start {
        flow: &'a str,
        input: &'a [u8],
        priority: Option<Priority>,
    },
    /// `join`.
    Join { id: &'a str },
    /// `call`.
    Call { flow: &'a str, input: &'a [u8] },
    /// `parallel`.
    Parallel {
        flow: &'a str,
        inputs: &'a [Vec<u8>],
    },
    /// `cancel`.
    Cancel { id: &'a str },
    /// `now`.
    Now,
    /// `sleep`.
    Sleep { ms: u64 },
    /// `random`.
    Random,
    /// `progress`.
    Progress { step: &'a str },
    /// `publish`.
    Publish { topic: &'a str, payload: &'a [u8] },
    /// `wait-event`'s deadline.
    WaitEvent {
        topic: &'a str,
        timeout_ms: Option<u64>,
    },
    /// `wait-event`'s take.
    TakeEvent { topic: &'a str },
    /// A session opened with `party`.
    Session { party: &'a str },
    /// A `send` on session `session`.
    Send { session: &'a str, payload: &'a [u8] },
    /// A `receive` on session `session`.
    Receive { session: &'a str },
    /// `initiator`.
    Initiator,
}

impl Call<'_> {
    /// Which call this is.
    pub fn kind(&self) -> Kind {
        match self {
            Call::Start { .. } => Kind::Start,
            Call::Join { .. } => Kind::Join,
            Call::Call { .. } => Kind::Call,
            Call::Parallel { .. } => Kind::Parallel,
            Call::Cancel { .. } => Kind::Cancel,
            Call::Now => Kind::Now,
            Call::Sleep { .. } => Kind::Sleep,
            Call::Random => Kind::Random,
            Call::Progress { .. } => Kind::Progress,
            Call::Publish { .. } => Kind::Publish,
            Call::WaitEvent { .. } => Kind::WaitEvent,
            Call::TakeEvent { .. } => Kind::TakeEvent,
            Call::Session { .. } => Kind::Session,
            Call::Send { .. } => Kind::Send,
            Call::Receive { .. } => Kind::Receive,
            Call::Initiator => Kind::Initiator,
        }
    }

    /// The name written in the journal.
    pub fn name(&self) -> &'static str {
        self.kind().name()
    }

    /// The call in its journaled form, owning its arguments: for a host that hands the
    /// arguments on (a child's input) before the answer is known.
    pub fn journaled(&self) -> Written {
        Written {
            kind: self.kind(),
            args: self.args(),
        }
    }

    /// The arguments as the journal keeps them (payloads readable, see [`Payload`]).
    pub fn args(&self) -> Value {
        let payload = |bytes: &[u8]| encode(&Payload(bytes.to_vec()));
        match *self {
            Call::Start {
                flow,
                input,
                priority,
            } => {
                let mut args = json!({ "flow": flow, "input": payload(input) });
                if let Some(p) = priority {
                    args["priority"] = encode(&p);
                }
                args
            }
            Call::Call { flow, input } => json!({ "flow": flow, "input": payload(input) }),
            Call::Join { id } | Call::Cancel { id } => json!({ "id": id }),
            Call::Parallel { flow, inputs } => {
                let payloads: Vec<Payload> = inputs.iter().map(|i| Payload(i.clone())).collect();
                json!({ "flow": flow, "inputs": encode(&payloads) })
            }
            Call::Now | Call::Random | Call::Initiator => Value::Null,
            Call::Sleep { ms } => json!({ "ms": ms }),
            Call::Progress { step } => json!({ "step": step }),
            Call::Publish { topic, payload: p } => json!({ "topic": topic, "payload": payload(p) }),
            Call::WaitEvent { topic, timeout_ms } => {
                json!({ "topic": topic, "timeout_ms": timeout_ms })
            }
            Call::TakeEvent { topic } => json!({ "topic": topic }),
            Call::Session { party } => json!({ "party": party }),
            Call::Send {
                session,
                payload: p,
            } => json!({ "session": session, "payload": payload(p) }),
            Call::Receive { session } => json!({ "session": session }),
        }
    }

    /// Whether `recorded` are these arguments as the journal keeps them ([`Call::args`]).
    /// Replay asks this of every entry: the common calls compare in place, without building
    /// their arguments.
    pub fn args_match(&self, recorded: &Value) -> bool {
        let one = |key: &str, expected: &dyn Fn(&Value) -> bool| {
            recorded
                .as_object()
                .is_some_and(|o| o.len() == 1 && o.get(key).is_some_and(expected))
        };
        match *self {
            Call::Now | Call::Random | Call::Initiator => recorded.is_null(),
            Call::Sleep { ms } => one("ms", &|v| v.as_u64() == Some(ms)),
            Call::Join { id } | Call::Cancel { id } => one("id", &|v| v.as_str() == Some(id)),
            Call::Progress { step } => one("step", &|v| v.as_str() == Some(step)),
            _ => self.args() == *recorded,
        }
    }
}

/// A call in its journaled form: which call, and its arguments as the journal keeps them.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    /// Which call.
    pub kind: Kind,
    /// Its arguments.
    pub args: Value,
}

/// A subflow outcome as journaled.
pub type Journaled = Result<Payload, FlowError>;

/// A journaled session answer (`session`, `initiator`): the session id and party.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Opened {
    /// The session id.
    pub session: String,
    /// The counterparty.
    pub party: String,
}

/// A journaled `send` or `receive` answer: the message (none for a send), or why not.
pub type Exchanged = Result<Option<Payload>, String>;

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

/// A journaled subflow outcome.
pub fn outcome_from_json(value: &Value) -> Result<Outcome, StoreError> {
    let outcome: Journaled = decode(value)?;
    Ok(outcome.map(|p| p.0))
}

/// Journaled subflow outcomes.
pub fn outcomes_from_json(value: &Value) -> Result<Vec<Outcome>, StoreError> {
    let outcomes: Vec<Journaled> = decode(value)?;
    Ok(outcomes.into_iter().map(|o| o.map(|p| p.0)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_match_agrees_with_the_built_arguments() {
        let calls = [
            Call::Now,
            Call::Random,
            Call::Initiator,
            Call::Sleep { ms: 0 },
            Call::Sleep { ms: 30_000 },
            Call::Join { id: "a.0" },
            Call::Cancel { id: "a.~ff" },
            Call::Progress {
                step: "<b>step</b>",
            },
            Call::TakeEvent { topic: "orders" },
        ];
        for call in &calls {
            for other in &calls {
                // As read back from the store: parsed from its text.
                let recorded: Value = serde_json::from_str(&other.args().to_string()).unwrap();
                assert_eq!(
                    call.args_match(&recorded),
                    call.args() == recorded,
                    "{:?} against the arguments of {:?}",
                    call.name(),
                    other.name()
                );
            }
        }
        assert!(!Call::Sleep { ms: 1 }.args_match(&serde_json::json!({ "ms": 1, "x": 2 })));
        assert!(!Call::Sleep { ms: 1 }.args_match(&serde_json::json!({ "ms": 1.0 })));
    }

    #[test]
    fn every_kind_round_trips_its_name() {
        for kind in Kind::ALL {
            assert_eq!(Kind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(Kind::from_name("nope"), None);
    }

    #[test]
    fn arguments_keep_their_journaled_form() {
        let start = Call::Start {
            flow: "f",
            input: b"1",
            priority: Some(Priority::High),
        };
        assert_eq!(start.args()["priority"], "high");
        assert_eq!(start.name(), "start");
        assert_eq!(Call::Now.args(), Value::Null);
        let outcome: Outcome = Err(FlowError::Cancelled);
        assert_eq!(
            outcome_from_json(&outcome_to_json(&outcome)).unwrap(),
            outcome
        );
    }
}
