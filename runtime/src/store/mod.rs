//! Durable state of flow instances: their records, journals, kept components and untaken
//! events, behind the [`JournalStore`] trait.
//!
//! Layers above write through [`Journal`], which batches writes from every instance into
//! one transaction per commit (group commit), so fsync does not cap throughput, and read
//! through [`Journal::store`]. Two stores exist: [`SqliteStore`] (a data dir's
//! [`STORE_FILE`]) and [`MemoryStore`] (no data dir). Nothing above this module knows which
//! one it has; a PostgreSQL store is one more implementation of the trait.

pub mod cluster;
mod codec;
#[cfg(test)]
mod conformance;
#[doc(hidden)]
pub mod fuzzing;
pub mod lock;
mod memory;
mod postgres;
mod refusable;
mod sqlite;
mod writer;

pub use cluster::{ClusterStore, Member, Signal};
pub use codec::{Payload, decode, encode};
pub use lock::{DirLock, LOCK_FILE};
pub use memory::MemoryStore;
pub use postgres::PostgresStore;
#[doc(hidden)]
pub use refusable::Refusable;
pub use sqlite::SqliteStore;
pub use writer::Journal;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::model::{FlowError, Outcome, PeerMessage, Side};

/// The store file inside a data directory.
pub const STORE_FILE: &str = "sluice.db";

/// Where an instance stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Admitted and not yet ended.
    Running,
    /// Returned output.
    Completed,
    /// Failed (error, trap, limit, timeout, killed by an operator).
    Failed,
    /// Held for an operator (nondeterminism, retries exhausted).
    Hospital,
    /// Cancelled (by an operator, its parent, or its ancestor's cancellation or timeout).
    Cancelled,
}

impl Status {
    /// The name stored and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Hospital => "hospital",
            Status::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "running" => Status::Running,
            "completed" => Status::Completed,
            "failed" => Status::Failed,
            "hospital" => Status::Hospital,
            "cancelled" => Status::Cancelled,
            _ => return None,
        })
    }

    /// Whether the instance has ended for good. A final status is never overwritten: the
    /// stores skip a later status write to an instance that has one (the first end wins).
    pub fn is_final(self) -> bool {
        matches!(self, Status::Completed | Status::Failed | Status::Cancelled)
    }
}

/// What the store keeps about one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// Instance id.
    pub id: String,
    /// Registered flow name.
    pub flow: String,
    /// SHA-256 of the component it runs on (it stays pinned to it).
    pub component: String,
    /// Its input.
    pub input: Payload,
    /// Where it stands.
    pub status: Status,
    /// How it was started (origin, priority, fan-out), as JSON; see `model::StartMeta`.
    pub meta: String,
    /// Its output, once completed.
    pub output: Option<Payload>,
    /// Why it failed or is held in the hospital.
    pub message: Option<String>,
    /// Failed attempts so far (retries).
    pub attempts: u32,
    /// The instance that started it (from the start meta's `Origin::Subflow`); indexed, so
    /// a cancellation finds the descendants of an instance in the store.
    pub parent: Option<String>,
    /// When it was recorded, unix ms (`None`: not known, or not recorded yet).
    pub created_ms: Option<u64>,
    /// When it reached a final status, unix ms; set by the store on that write (`None`
    /// while unfinished, and for instances that ended before the store kept it).
    pub ended_ms: Option<u64>,
}

impl InstanceRecord {
    /// A new running instance, created now. Its parent is read from `meta`.
    pub fn new(id: &str, flow: &str, component: &str, input: &[u8], meta: String) -> Self {
        let parent =
            crate::model::StartMeta::parse(&meta).and_then(|m| m.origin.parent().map(String::from));
        Self::with_parent(id, flow, component, input, meta, parent)
    }

    /// [`InstanceRecord::new`] for a caller that knows the parent `meta` names (a start):
    /// the meta is not parsed again.
    pub fn with_parent(
        id: &str,
        flow: &str,
        component: &str,
        input: &[u8],
        meta: String,
        parent: Option<String>,
    ) -> Self {
        InstanceRecord {
            id: id.into(),
            flow: flow.into(),
            component: component.into(),
            input: Payload(input.to_vec()),
            status: Status::Running,
            meta,
            output: None,
            message: None,
            attempts: 0,
            parent,
            created_ms: Some(crate::model::unix_ms()),
            ended_ms: None,
        }
    }

    /// The outcome of an ended instance; `None` while it is running or held.
    pub fn outcome(&self) -> Option<Outcome> {
        match self.status {
            Status::Completed => Some(Ok(self.output.clone().unwrap_or_default().0)),
            Status::Failed => {
                let stored = self
                    .output
                    .as_ref()
                    .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.0).ok())
                    .and_then(|v| decode::<FlowError>(&v).ok());
                Some(Err(stored.unwrap_or_else(|| {
                    FlowError::Failed(self.message.clone().unwrap_or_default())
                })))
            }
            Status::Cancelled => Some(Err(FlowError::Cancelled)),
            Status::Running | Status::Hospital => None,
        }
    }
}

/// One journaled host call: which call, its arguments, and what the host answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Position in the instance's journal, from 0.
    pub position: u64,
    /// The host function (`call`, `now`, `sleep`, …).
    pub call: String,
    /// Its arguments, as JSON.
    pub args: serde_json::Value,
    /// The host's answer, as JSON.
    pub result: serde_json::Value,
    /// When the call was made, unix ms (`None` for entries journaled before the store kept
    /// it). Replay ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_ms: Option<u64>,
}

/// One write to the store. A batch of them commits atomically.
#[derive(Debug, Clone)]
pub enum Write {
    /// Record a new instance; nothing happens when the id is already recorded.
    Create(InstanceRecord),
    /// Append the next entry of an instance's journal.
    Append { id: String, entry: Entry },
    /// Set an instance's status, with its output or the reason. Nothing happens when the
    /// instance already has a final status ([`Status::is_final`]): the first end stays.
    Status {
        id: String,
        status: Status,
        output: Option<Vec<u8>>,
        message: Option<String>,
    },
    /// Count one more failed attempt.
    Attempted { id: String, attempts: u32 },
    /// Keep a component's bytes (nothing happens when the hash is known).
    Component { hash: String, bytes: Vec<u8> },
    /// Run the instance on another component from now on (operator action).
    Pin { id: String, component: String },
    /// Keep a published event until it is taken (nothing happens when the id is known).
    Publish(StoredEvent),
    /// An event was taken: forget it.
    Take { id: String },
    /// Keep a published event for the event triggers of its topic until each has started
    /// its instance for it (nothing happens when the id is known). Written in the same
    /// batch as the publish, so a crash keeps both or neither.
    Outbox(StoredEvent),
    /// Every event trigger has its instance for event `id`: forget it.
    Dispatched { id: String },
    /// Set a named cursor (a schedule's last decided fire), replacing its value.
    Cursor { key: String, value: String },
    /// Keep a session's message (or end) for its peer until the peer has it (nothing
    /// happens when its session, side and sequence number are known). Written in the same
    /// batch as the sender's journaled `send` or end.
    PeerOut(PeerMessage),
    /// The peer has message `seq` of `session` for its `to` end: forget it.
    PeerSent { session: String, to: Side, seq: u64 },
    /// Keep a message (or end) a peer sent for a flow of this node (nothing happens when
    /// it is known: a peer resends what it did not hear was received).
    PeerIn(PeerMessage),
}

/// A published event not taken yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// `<publisher id>.<journal position>`: a re-run publishes the same id.
    pub id: String,
    /// Its topic.
    pub topic: String,
    /// Its payload.
    pub payload: Payload,
}

/// Why the store failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The file is not a usable store; it was not modified.
    #[error(
        "store {path} is corrupt or truncated ({reason}); refusing to start, the file was not modified"
    )]
    Corrupt { path: PathBuf, reason: String },
    /// The file was written by a newer Sluice.
    #[error("store {path} has schema version {found}, newer than this build's {supported}")]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    /// An append did not follow the journal's last position.
    #[error("journal of {id}: expected position {expected}, got {got}")]
    OutOfOrder { id: String, expected: u64, got: u64 },
    /// No such instance.
    #[error("no instance {0}")]
    Unknown(String),
    /// A stored value could not be read back.
    #[error("store: bad stored value: {0}")]
    Decode(String),
    /// The database failed.
    #[error("store: {0}")]
    Database(String),
    /// The storage cannot take writes now (disk full, an I/O error, locked): the same
    /// write may succeed later, so the journal's writer retries it (see [`Journal`]).
    #[error("store cannot write now: {0} (is the disk full?)")]
    Unavailable(String),
    /// Another process holds the data dir (a node, or an offline verb that writes).
    #[error(
        "data dir {dir} is in use by another Sluice process ({holder}); stop it first, or use another data dir"
    )]
    InUse { dir: PathBuf, holder: String },
    /// The writer thread is gone (the node is shutting down).
    #[error("store: the journal writer stopped")]
    Closed,
    /// This node is no longer a live member of its cluster: its lease lapsed (another node
    /// may have taken its work) or a newer incarnation of it joined. Nothing it writes
    /// commits any more.
    #[error(
        "node {node} lost its place in the cluster (its lease lapsed or it joined again elsewhere): it writes nothing more"
    )]
    Fenced { node: String },
}

/// Which instances [`JournalStore::list`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// Of this flow.
    pub flow: Option<String>,
    /// In this state.
    pub status: Option<Status>,
    /// Admitted to this pool.
    pub pool: Option<String>,
    /// Started by this instance.
    pub parent: Option<String>,
    /// This instance and everything it started, at any depth.
    pub root: Option<String>,
    /// Recorded after the instance with this sequence number.
    pub after: Option<u64>,
    /// Created at or after this unix ms (instances without a creation time are left out).
    pub created_from: Option<u64>,
    /// Created before this unix ms (instances without a creation time are left out).
    pub created_until: Option<u64>,
    /// At most this many.
    pub limit: usize,
}

impl ListQuery {
    /// Whether `record` matches every filter but the cursor.
    pub fn matches(&self, record: &InstanceRecord) -> bool {
        self.matches_as(&record.id, record)
    }

    /// [`ListQuery::matches`] for a record kept without its id, which is `id`.
    pub fn matches_as(&self, id: &str, record: &InstanceRecord) -> bool {
        let meta = crate::model::StartMeta::parse(&record.meta);
        self.flow.as_ref().is_none_or(|f| *f == record.flow)
            && self.status.is_none_or(|s| s == record.status)
            && self
                .pool
                .as_ref()
                .is_none_or(|p| meta.as_ref().is_some_and(|m| m.pool == *p))
            && self.parent.as_ref().is_none_or(|p| {
                meta.as_ref()
                    .is_some_and(|m| m.origin.parent() == Some(p.as_str()))
            })
            && self
                .created_from
                .is_none_or(|from| record.created_ms.is_some_and(|c| c >= from))
            && self
                .created_until
                .is_none_or(|until| record.created_ms.is_some_and(|c| c < until))
            && self.root.as_ref().is_none_or(|r| {
                id == r.as_str()
                    || id
                        .strip_prefix(r.as_str())
                        .is_some_and(|rest| rest.starts_with('.'))
            })
    }
}

/// Durable records and journals of flow instances. Layers above use only this trait, so a
/// PostgreSQL implementation can replace SQLite without changing them.
pub trait JournalStore: Send + Sync {
    /// Apply `batch` atomically and durably (one transaction).
    fn write(&self, batch: &[Write]) -> Result<(), StoreError>;
    /// [`JournalStore::write`] of a batch the caller gives up: a store that keeps what it
    /// is given (the memory store) takes it without copying.
    fn write_owned(&self, batch: Vec<Write>) -> Result<(), StoreError> {
        self.write(&batch)
    }
    /// The instance `id`, if recorded.
    fn record(&self, id: &str) -> Result<Option<InstanceRecord>, StoreError>;
    /// The journal of an instance, in order.
    fn journal(&self, id: &str) -> Result<Vec<Entry>, StoreError>;
    /// Every instance with `status`, oldest first (`Running`: what recovery resumes).
    fn with_status(&self, status: Status) -> Result<Vec<InstanceRecord>, StoreError>;
    /// Unfinished instances whose stored record this build cannot read (a corrupt value, a
    /// status it does not know), each with why; held ones are left out. Reads that list
    /// instances ([`JournalStore::with_status`], [`JournalStore::list`]) skip such rows, so
    /// one bad row hides nothing else; recovery holds these in the hospital instead.
    fn unreadable(&self) -> Result<Vec<(String, String)>, StoreError> {
        Ok(Vec::new())
    }
    /// The bytes of the component with `hash`, if kept.
    fn component(&self, hash: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Events published and not yet taken, in the order they were published.
    fn untaken_events(&self) -> Result<Vec<StoredEvent>, StoreError>;
    /// Events on `topic` not yet taken, in publish order: those nobody claimed, and those
    /// `taker` claimed ([`JournalStore::claim_event`]).
    fn events_on(&self, topic: &str, taker: &str) -> Result<Vec<StoredEvent>, StoreError>;
    /// Hand event `id` to instance `taker` unless another instance has it: true when it is
    /// `taker`'s (now, or already), false when another claimed it or it was taken. Nodes
    /// sharing a store may each offer an event; this decides who takes it, once.
    fn claim_event(&self, id: &str, taker: &str) -> Result<bool, StoreError>;
    /// Events kept for event triggers and not yet dispatched ([`Write::Outbox`]), in the
    /// order they were published.
    fn outbox(&self) -> Result<Vec<StoredEvent>, StoreError>;
    /// Up to `limit` messages kept for peer `peer` ([`Write::PeerOut`]), oldest first.
    fn peer_outbox(&self, peer: &str, limit: usize) -> Result<Vec<PeerMessage>, StoreError>;
    /// How many messages are kept for each peer.
    fn peer_outbox_depth(&self) -> Result<Vec<(String, u64)>, StoreError>;
    /// The messages (and end) peers sent to the `to` end of `session` ([`Write::PeerIn`]),
    /// by sequence number.
    fn peer_inbox(&self, session: &str, to: Side) -> Result<Vec<PeerMessage>, StoreError>;
    /// The value of cursor `key` ([`Write::Cursor`]), if set.
    fn cursor(&self, key: &str) -> Result<Option<String>, StoreError>;
    /// Instances matching `query`, in the order they were recorded, each with its sequence
    /// number (a cursor: pass the last one as `query.after` for the next page).
    fn list(&self, query: &ListQuery) -> Result<Vec<(u64, InstanceRecord)>, StoreError>;
    /// Every instance started by `id` or, at any depth, by one of those, with its status
    /// (found through the indexed `parent`, not the ids).
    fn descendants(&self, id: &str) -> Result<Vec<(String, Status)>, StoreError>;
    /// How many instances of each flow are recorded (for operators and tests).
    fn count_by_flow(&self) -> Result<Vec<(String, u64)>, StoreError>;
    /// Whether a commit survives a crash of the process (false for an in-memory store).
    fn durable(&self) -> bool;
    /// What kind of store this is, for operators: `SQLite`, `PostgreSQL` or `memory`.
    fn kind(&self) -> &'static str;
    /// Membership, when several nodes may share this store (PostgreSQL); `None` for a
    /// store one node owns.
    fn cluster(&self) -> Option<&dyn ClusterStore> {
        None
    }
}

/// Where a node keeps its instances.
#[derive(Debug, Clone, Copy)]
pub enum Location<'a> {
    /// In memory: nothing survives the process.
    Memory,
    /// The data dir's SQLite file ([`STORE_FILE`]).
    Dir(&'a Path),
    /// A PostgreSQL database, by URL.
    Postgres(&'a str),
}

/// The store at `location`: a data dir's file (the directory created if missing), held by
/// this process until the returned lock is dropped; a PostgreSQL database, which several
/// nodes share as members of a cluster (a node joins it: [`ClusterStore::join`]); or memory.
pub fn open(
    location: Location<'_>,
) -> Result<(Arc<dyn JournalStore>, Option<DirLock>), StoreError> {
    let dir = match location {
        Location::Memory => return Ok((Arc::new(MemoryStore::new()), None)),
        Location::Postgres(url) => {
            let store = PostgresStore::connect(url)?;
            tracing::info!("Durable store: PostgreSQL at {}", store.shown());
            return Ok((Arc::new(store), None));
        }
        Location::Dir(dir) => dir,
    };
    let lock = DirLock::acquire(dir)?;
    let store = SqliteStore::open(&dir.join(STORE_FILE))?;
    tracing::info!("Durable store: {}", store.path().display());
    Ok((Arc::new(store), Some(lock)))
}
