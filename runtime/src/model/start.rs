//! A start: what it asks for ([`StartRequest`]), what it gives back ([`FlowHandle`]),
//! and what the store keeps of it to rebuild the instance ([`StartMeta`]).

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::ids::IdScheme;
use super::invocation::{Invocation, Origin, Priority};
use super::outcome::{FlowError, Outcome};

/// A request to start one flow instance.
#[derive(Debug, Clone)]
pub struct StartRequest {
    /// Registered flow name.
    pub flow: String,
    /// Input bytes (JSON by convention).
    pub input: Vec<u8>,
    /// Who asks.
    pub origin: Origin,
    /// Scheduling priority.
    pub priority: Priority,
    /// Whether this is a child of a `parallel` fan-out (placed in the `parallel` pool).
    pub fan_out: bool,
    /// The instance id; `None` for a fresh one. Starting an id the node already knows
    /// attaches to that instance instead (an idempotency key).
    pub id: Option<String>,
}

impl StartRequest {
    /// A start over the API or CLI by `caller`, normal priority.
    pub fn rpc(
        flow: impl Into<String>,
        input: impl Into<Vec<u8>>,
        caller: impl Into<String>,
    ) -> Self {
        StartRequest {
            flow: flow.into(),
            input: input.into(),
            origin: Origin::Rpc(caller.into()),
            priority: Priority::Normal,
            fan_out: false,
            id: None,
        }
    }

    /// A start by counterparty `party`, normal priority.
    pub fn peer(
        flow: impl Into<String>,
        input: impl Into<Vec<u8>>,
        party: impl Into<String>,
    ) -> Self {
        StartRequest {
            origin: Origin::Peer(party.into()),
            ..Self::rpc(flow, input, "")
        }
    }

    /// The same request with `priority`.
    pub fn with_priority(self, priority: Priority) -> Self {
        StartRequest { priority, ..self }
    }

    /// The same request for instance `id`: started once, however often it is requested.
    pub fn with_id(self, id: impl Into<String>) -> Self {
        StartRequest {
            id: Some(id.into()),
            ..self
        }
    }

    /// A subflow started by instance `parent`.
    pub fn subflow(flow: String, input: Vec<u8>, parent: String, priority: Priority) -> Self {
        StartRequest {
            flow,
            input,
            origin: Origin::Subflow(parent),
            priority,
            fan_out: false,
            id: None,
        }
    }
}

/// A started instance: its id, and its outcome when it ends.
#[derive(Debug)]
pub struct FlowHandle {
    id: String,
    pool: String,
    outcome: oneshot::Receiver<Outcome>,
}

impl FlowHandle {
    /// A handle on instance `id` whose outcome arrives on `outcome`.
    pub(crate) fn new(id: String, pool: String, outcome: oneshot::Receiver<Outcome>) -> Self {
        FlowHandle { id, pool, outcome }
    }

    /// The instance id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The pool the instance was admitted to.
    pub fn pool(&self) -> &str {
        &self.pool
    }

    /// Wait for the instance to end.
    pub async fn outcome(self) -> Outcome {
        self.outcome.await.unwrap_or_else(|_| {
            Err(FlowError::Failed(format!(
                "instance {} ended without a result",
                self.id
            )))
        })
    }
}

/// The stored form of a [`StartMeta`], borrowed: the same JSON its derived `Serialize`
/// makes, without `flatten` (which serializes through a map, slowly).
#[derive(Serialize)]
struct Stored<'a> {
    origin: &'static str,
    by: &'a str,
    priority: Priority,
    pool: &'a str,
    fan_out: bool,
    identity: &'a str,
    ids: IdScheme,
}

/// How an instance was started: enough to rebuild its invocation and find its pool.
/// Stored as JSON in the instance's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartMeta {
    /// Who started it (`origin` and `by` in the stored form).
    #[serde(flatten)]
    pub origin: Origin,
    /// Its priority.
    pub priority: Priority,
    /// The pool it was admitted to.
    pub pool: String,
    /// Whether it is a child of a `parallel`.
    #[serde(default)]
    pub fan_out: bool,
    /// The node identity the instance saw (`our-identity`); empty in records that predate it.
    #[serde(default)]
    pub identity: String,
    /// How it derives its children's ids; [`IdScheme::Dotted`] in records that predate it.
    #[serde(default)]
    pub ids: IdScheme,
}

impl StartMeta {
    /// The meta of `invocation`, admitted to `pool`.
    pub fn new(invocation: &Invocation, pool: &str, fan_out: bool) -> Self {
        StartMeta {
            origin: invocation.origin.clone(),
            priority: invocation.priority,
            pool: pool.into(),
            fan_out,
            identity: invocation.our_identity.clone(),
            ids: IdScheme::Bounded,
        }
    }

    /// An API start at normal priority, for records that kept no meta.
    pub fn new_rpc() -> Self {
        StartMeta {
            origin: Origin::Rpc("recovery".into()),
            priority: Priority::Normal,
            pool: String::new(),
            fan_out: false,
            identity: String::new(),
            ids: IdScheme::Dotted,
        }
    }

    /// As stored.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(&Stored {
            origin: self.origin.kind(),
            by: self.origin.by(),
            priority: self.priority,
            pool: &self.pool,
            fan_out: self.fan_out,
            identity: &self.identity,
            ids: self.ids,
        })
    }

    /// [`StartMeta::new`] as stored, without building it first: every start makes one.
    pub fn json_of(
        invocation: &Invocation,
        pool: &str,
        fan_out: bool,
    ) -> Result<String, serde_json::Error> {
        serde_json::to_string(&Stored {
            origin: invocation.origin.kind(),
            by: invocation.origin.by(),
            priority: invocation.priority,
            pool,
            fan_out,
            identity: &invocation.our_identity,
            ids: IdScheme::Bounded,
        })
    }

    /// From the store; `None` when the text is not a start meta.
    pub fn parse(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }

    /// The invocation of instance `id` of `flow` on a node called `identity`.
    pub fn invocation(&self, id: &str, flow: &str, identity: &str) -> Invocation {
        Invocation {
            id: id.into(),
            flow: flow.into(),
            origin: self.origin.clone(),
            priority: self.priority,
            our_identity: identity.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_meta_reads_the_stored_form() {
        let stored = r#"{"origin":"subflow","by":"A.3","priority":"high","pool":"p","fan_out":true,"identity":"PartyA"}"#;
        let meta = StartMeta::parse(stored).expect("stored meta parses");
        assert_eq!(meta.origin, Origin::Subflow("A.3".into()));
        assert_eq!(meta.priority, Priority::High);
        assert!(meta.fan_out);
        let again = StartMeta::parse(&meta.to_json().unwrap()).unwrap();
        assert_eq!(again, meta);
        // The borrowed form writes what the derived one writes.
        assert_eq!(
            meta.to_json().unwrap(),
            serde_json::to_string(&meta).unwrap()
        );
        let invocation = meta.invocation("A.3.1", "f", "PartyA");
        let fresh = StartMeta::new(&invocation, "p", true);
        assert_eq!(
            StartMeta::json_of(&invocation, "p", true).unwrap(),
            serde_json::to_string(&fresh).unwrap()
        );
        let old = r#"{"origin":"rpc","by":"cli","priority":"normal","pool":"default"}"#;
        assert_eq!(StartMeta::parse(old).unwrap().identity, "");
        assert_eq!(StartMeta::parse(old).unwrap().ids, IdScheme::Dotted);
    }
}
