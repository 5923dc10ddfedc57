//! Operator actions on a node's store: the flow hospital (list, retry, kill), an instance's
//! status and journal, its export for `sluice replay`, and moving it to another build.
//! They act on the store only; a node resumes what they set running when it next starts.

use std::path::Path;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::engine::component_cache::{check_header, content_hash};
use crate::model::FlowError;
use crate::store::{
    DirLock, Entry, InstanceRecord, JournalStore, STORE_FILE, SqliteStore, Status, StoreError,
    Write, encode,
};

/// Why an operator action was refused.
#[derive(Debug, Error)]
pub enum OperatorError {
    /// No instance has that id.
    #[error("no instance `{0}` in the store")]
    Unknown(String),
    /// The action does not apply to an instance in this state.
    #[error("instance `{id}` is {status}; {action} applies to {applies}")]
    WrongStatus {
        id: String,
        status: &'static str,
        action: &'static str,
        applies: &'static str,
    },
    /// The file given as a component is not one.
    #[error("{0}")]
    NotComponent(String),
    /// There is no store in the data directory.
    #[error("no store in {0} (no {STORE_FILE}); give the --data-dir a node ran with")]
    NoStore(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An instance's record and journal, as `sluice export` writes them and `sluice replay`
/// reads them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Export {
    /// Format version of this file.
    pub sluice_journal: u32,
    /// The instance.
    pub record: InstanceRecord,
    /// Its journal, in order.
    pub journal: Vec<Entry>,
}

/// The store a node with `data_dir` uses; refused when there is none.
pub fn open_store(data_dir: &Path) -> Result<SqliteStore, OperatorError> {
    let path = data_dir.join(STORE_FILE);
    if !path.is_file() {
        return Err(OperatorError::NoStore(data_dir.display().to_string()));
    }
    Ok(SqliteStore::open(&path)?)
}

/// [`open_store`] for a verb that writes: the data dir is held until the lock is dropped,
/// and refused (naming the holder) while a node or another verb holds it. Reading verbs
/// need no lock.
pub fn open_store_to_write(data_dir: &Path) -> Result<(SqliteStore, DirLock), OperatorError> {
    if !data_dir.join(STORE_FILE).is_file() {
        return Err(OperatorError::NoStore(data_dir.display().to_string()));
    }
    let lock = DirLock::acquire(data_dir)?;
    Ok((open_store(data_dir)?, lock))
}

fn record(store: &dyn JournalStore, id: &str) -> Result<InstanceRecord, OperatorError> {
    store
        .record(id)?
        .ok_or_else(|| OperatorError::Unknown(id.into()))
}

/// Instances held in the hospital, oldest first.
pub fn hospital(store: &dyn JournalStore) -> Result<Vec<InstanceRecord>, OperatorError> {
    Ok(store.with_status(Status::Hospital)?)
}

/// Let a held instance run again from its journal (attempts start over), optionally on
/// another build of its flow (`component`: the bytes of a `.wasm`).
pub fn retry(
    store: &dyn JournalStore,
    id: &str,
    component: Option<(&Path, &[u8])>,
) -> Result<(), OperatorError> {
    let r = record(store, id)?;
    if r.status != Status::Hospital {
        return Err(OperatorError::WrongStatus {
            id: id.into(),
            status: r.status.as_str(),
            action: "retry",
            applies: "instances held in the hospital",
        });
    }
    let mut batch = Vec::new();
    if let Some((path, bytes)) = component {
        batch.extend(pin_writes(id, path, bytes)?);
    }
    batch.push(Write::Attempted {
        id: id.into(),
        attempts: 0,
    });
    batch.push(Write::Status {
        id: id.into(),
        status: Status::Running,
        output: None,
        message: None,
    });
    Ok(store.write(&batch)?)
}

/// End an unfinished instance as failed; whoever waits for it gets the failure.
pub fn kill(store: &dyn JournalStore, id: &str) -> Result<(), OperatorError> {
    let r = record(store, id)?;
    if r.status.is_final() {
        return Err(OperatorError::WrongStatus {
            id: id.into(),
            status: r.status.as_str(),
            action: "kill",
            applies: "running or held instances",
        });
    }
    let error = FlowError::Failed("killed by an operator".into());
    Ok(store.write(&[Write::Status {
        id: id.into(),
        status: Status::Failed,
        output: Some(encode(&error).to_string().into_bytes()),
        message: Some(error.to_string()),
    }])?)
}

/// Move an unfinished instance to another build of its flow: it replays its journal on it
/// when a node next runs it (check first with `sluice replay`). Returns the build's hash.
pub fn upgrade(
    store: &dyn JournalStore,
    id: &str,
    path: &Path,
    bytes: &[u8],
) -> Result<String, OperatorError> {
    let r = record(store, id)?;
    if r.status.is_final() {
        return Err(OperatorError::WrongStatus {
            id: id.into(),
            status: r.status.as_str(),
            action: "upgrade",
            applies: "running or held instances",
        });
    }
    store.write(&pin_writes(id, path, bytes)?)?;
    Ok(content_hash(bytes))
}

fn pin_writes(id: &str, path: &Path, bytes: &[u8]) -> Result<Vec<Write>, OperatorError> {
    check_header(bytes, path).map_err(|e| OperatorError::NotComponent(e.to_string()))?;
    let hash = content_hash(bytes);
    Ok(vec![
        Write::Component {
            hash: hash.clone(),
            bytes: bytes.to_vec(),
        },
        Write::Pin {
            id: id.into(),
            component: hash,
        },
    ])
}

/// An instance's record and journal.
pub fn export(store: &dyn JournalStore, id: &str) -> Result<Export, OperatorError> {
    Ok(Export {
        sluice_journal: 1,
        record: record(store, id)?,
        journal: store.journal(id)?,
    })
}
