//! Durable state of flow instances: their records and journals, behind a [`JournalStore`].
//!
//! This is the storage layer of the durability issue (#4): records, append-only journals,
//! the list of unfinished instances, and an embedded SQLite implementation with versioned
//! migrations that refuses a corrupt or truncated file without touching it. The engine does
//! not journal host calls or replay yet; that is the next step of #4.

mod sqlite;

pub use sqlite::SqliteStore;

use std::path::PathBuf;

use thiserror::Error;

/// Where an instance stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Admitted and not yet ended.
    Running,
    /// Returned output.
    Completed,
    /// Failed (error, trap, limit).
    Failed,
    /// Held for an operator (nondeterminism, retries exhausted).
    Hospital,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Hospital => "hospital",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "running" => Status::Running,
            "completed" => Status::Completed,
            "failed" => Status::Failed,
            "hospital" => Status::Hospital,
            _ => return None,
        })
    }
}

/// What the store keeps about one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRecord {
    /// Instance id.
    pub id: String,
    /// Registered flow name.
    pub flow: String,
    /// SHA-256 of the component it started with (it stays pinned to it).
    pub component: String,
    /// Its input.
    pub input: Vec<u8>,
    /// Where it stands.
    pub status: Status,
}

/// One journaled host call: which call, its arguments, and what the host answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Position in the instance's journal, from 0.
    pub position: u64,
    /// The host function (`call`, `now`, `sleep`, …).
    pub call: String,
    /// Its arguments, encoded (JSON).
    pub args: Vec<u8>,
    /// The host's answer, encoded (JSON).
    pub result: Vec<u8>,
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
    /// The database failed.
    #[error("store: {0}")]
    Database(String),
}

/// Durable records and journals of flow instances. Layers above use only this trait, so a
/// PostgreSQL implementation can replace SQLite without changing them.
pub trait JournalStore: Send + Sync {
    /// Record a new instance.
    fn create(&self, record: &InstanceRecord) -> Result<(), StoreError>;
    /// Append the next entry of an instance's journal.
    fn append(&self, id: &str, entry: &Entry) -> Result<(), StoreError>;
    /// The journal of an instance, in order.
    fn journal(&self, id: &str) -> Result<Vec<Entry>, StoreError>;
    /// Set an instance's status, with its output when it completed.
    fn finish(&self, id: &str, status: Status, output: Option<&[u8]>) -> Result<(), StoreError>;
    /// Every instance not yet ended, oldest first: what recovery resumes.
    fn unfinished(&self) -> Result<Vec<InstanceRecord>, StoreError>;
}
