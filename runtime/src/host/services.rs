//! The node's parts that running flows reach ([`Services`]), and the one way up from a
//! flow to the node above: starting a child ([`Starter`]). A flow starts flows, so the loop
//! is inherent; it runs through this one narrow seam.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::HostState;
use super::cancel::Cancellations;
use super::completions::Completions;
use crate::engine::{FlowEngine, FlowRegistry};
use crate::error::StartError;
use crate::messaging::Messaging;
use crate::model::{
    FlowError, FlowHandle, Outcome, PeerMessage, StartRequest, WallClock, end_reason,
};
use crate::observe::{Events, Metrics};
use crate::peers::Peers;
use crate::sched::{Pools, Residency};
use crate::store::{Journal, Write};

/// A boxed future, as [`Starter`] returns it.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// How a flow starts a child: implemented by the node, which admits it like any start.
pub trait Starter: Send + Sync + 'static {
    /// Start a subflow. `may_exist`: the parent lived before (a crash, an eviction, a
    /// retry), so the child's id may be known already and is attached to.
    fn start_child(
        self: Arc<Self>,
        request: StartRequest,
        may_exist: bool,
    ) -> BoxFuture<Result<FlowHandle, StartError>>;
}

/// What every instance of a node shares: built once by the node.
pub struct Services {
    /// The engine flows run on.
    pub engine: Arc<FlowEngine<HostState>>,
    /// The flows by name.
    pub registry: FlowRegistry<HostState>,
    /// The pools.
    pub pools: Pools,
    /// The store, through its batching writer.
    pub journal: Journal,
    /// The bound on instances in memory.
    pub residency: Residency,
    /// Sessions and event topics.
    pub messaging: Messaging,
    /// Who waits for which instance's outcome.
    pub completions: Completions,
    /// The instances with a task here, and how to cancel each.
    pub cancels: Cancellations,
    /// The stream of instance events.
    pub events: Events,
    /// The node's metrics.
    pub metrics: Metrics,
    /// The node's identity (`our-identity`).
    pub identity: String,
    /// The other nodes flows hold sessions with.
    pub peers: Arc<Peers>,
    /// The wall clock `now()` answers and waits journal their deadlines by.
    pub clock: WallClock,
}

impl Services {
    /// What instance `id` ending with `outcome` sends its counterparties on other nodes:
    /// the end of each of its sessions with them, written in the batch that ends it.
    pub fn peer_ends(&self, id: &str, outcome: &Outcome) -> Vec<Write> {
        self.messaging
            .sessions
            .remote_ends(id)
            .into_iter()
            .map(|(session, side, party)| {
                let why = end_reason(id, outcome);
                Write::PeerOut(PeerMessage::end(&party, &session, side.other(), why))
            })
            .collect()
    }

    /// Wake the delivery of every peer `batch` queued something for.
    pub fn wake_peers(&self, batch: &[Write]) {
        for write in batch {
            if let Write::PeerOut(m) = write {
                self.peers.wake(&m.peer);
            }
        }
    }

    /// The outcome of instance `id` once it ends, whether it runs here now or ended before.
    pub fn outcome_of(
        self: &Arc<Self>,
        id: &str,
    ) -> impl Future<Output = Outcome> + Send + 'static {
        let (services, id) = (self.clone(), id.to_string());
        async move {
            let completions = &services.completions;
            let journal = &services.journal;
            let ended = || -> Result<Option<Outcome>, FlowError> {
                let record = journal.store().record(&id);
                match record.map_err(|e| FlowError::Failed(e.to_string()))? {
                    Some(record) => Ok(record.outcome()),
                    None => Ok(None),
                }
            };
            let waited = |rx: oneshot::Receiver<Outcome>| async {
                rx.await
                    .unwrap_or_else(|_| Err(FlowError::Failed(format!("instance {id} vanished"))))
            };
            if let Some(rx) = completions.watch_if_known(&id) {
                return waited(rx).await;
            }
            match ended() {
                Ok(Some(outcome)) => return outcome,
                Ok(None) => {}
                Err(e) => return Err(e),
            }
            // It may have ended with its end still queued: once that is committed, the store
            // has it.
            if let Err(e) = journal.sync().await {
                return Err(FlowError::Failed(e.to_string()));
            }
            if let Some(rx) = completions.watch_if_known(&id) {
                return waited(rx).await;
            }
            match ended() {
                Ok(Some(outcome)) => outcome,
                // Held, or not resumed yet: wait for whoever runs it next.
                Ok(None) => waited(completions.watch(&id)).await,
                Err(e) => Err(e),
            }
        }
    }
}
