//! What a start asks for ([`StartRequest`]) and what it gives back ([`FlowHandle`]).

use tokio::sync::oneshot;

use super::Outcome;
use crate::bindings::sluice::flow::types::{Origin, Priority};
use crate::error::FlowError;

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
