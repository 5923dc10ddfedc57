//! Why a component could not be loaded, and why a start was refused.

use std::path::PathBuf;

use thiserror::Error;

use crate::model::FlowError;

/// Why a component could not be loaded as a flow.
#[derive(Debug, Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The bytes are not WebAssembly at all.
    #[error("{path} is not a WebAssembly file (no \\0asm header)")]
    NotWasm { path: PathBuf },
    /// A core module where a component was expected.
    #[error(
        "{path} is a core WebAssembly module, not a component; build it for wasm32-wasip2 or wrap it with `wasm-tools component new`"
    )]
    CoreModule { path: PathBuf },
    /// Compilation failed (malformed or unsupported component).
    #[error("{path} is not a valid component: {reason}")]
    Invalid { path: PathBuf, reason: String },
    /// The component does not implement the `sluice:flow/flow` world.
    #[error("{path} does not implement the sluice:flow/flow world: {reason}")]
    WrongWorld { path: PathBuf, reason: String },
    /// The node itself could not start (engine, threads).
    #[error("cannot start the node: {0}")]
    Startup(String),
    /// The durable store could not be opened.
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
    /// The on-disk compilation cache failed.
    #[error("component cache at {path}: {reason}")]
    Cache { path: PathBuf, reason: String },
}

/// Why a start request was refused. Nothing of the instance exists when this is returned.
#[derive(Debug, Error)]
pub enum StartError {
    /// No flow is registered under that name, nor found as `<name>.wasm` where the node
    /// looks. Says which flows the node knows and where it looked.
    #[error("unknown flow `{flow}`: {}", unknown_flow_hint(.flow, .known, .searched))]
    UnknownFlow {
        flow: String,
        /// Flows registered, or found in the search directories, by name.
        known: Vec<String>,
        /// The directories searched for `<flow>.wasm`.
        searched: Vec<PathBuf>,
    },
    /// The flow's component failed to load.
    #[error("flow `{flow}`: {source}")]
    Load { flow: String, source: LoadError },
    /// The pool's queue is at capacity.
    #[error("pool `{pool}` queue is full ({capacity} waiting); flow `{flow}` not started")]
    QueueFull {
        pool: String,
        flow: String,
        capacity: usize,
    },
    /// The request breaks one of the flow's limits (its input is too large).
    #[error("flow `{flow}` not started: {source}")]
    Limit {
        flow: String,
        source: crate::model::LimitExceeded,
    },
    /// The node is shutting down.
    #[error("node is shutting down")]
    ShuttingDown,
    /// How the instance was started could not be encoded for the store.
    #[error("flow `{flow}` not started: its start metadata cannot be encoded: {reason}")]
    Meta { flow: String, reason: String },
    /// The store cannot take writes now (a full disk): new work is refused until it can.
    /// Work admitted before goes on and is kept; retry the start later.
    #[error(
        "flow `{flow}` not started: the node's store cannot write now ({reason}); new starts are refused until it can, retry later"
    )]
    StoreUnavailable { flow: String, reason: String },
    /// The instance could not be recorded in the store.
    #[error("flow `{flow}` not started: {source}")]
    Store {
        flow: String,
        source: crate::store::StoreError,
    },
}

impl From<StartError> for FlowError {
    fn from(e: StartError) -> Self {
        FlowError::Rejected(e.to_string())
    }
}

/// The rest of an unknown-flow message: what the node knows and where it looked.
fn unknown_flow_hint(flow: &str, known: &[String], searched: &[PathBuf]) -> String {
    const SHOWN: usize = 12;
    let mut names: Vec<String> = known.iter().take(SHOWN).map(|n| format!("`{n}`")).collect();
    if known.len() > SHOWN {
        names.push(format!("{} more", known.len() - SHOWN));
    }
    let known = match names.is_empty() {
        true => "no flows".to_string(),
        false => names.join(", "),
    };
    let looked = match searched {
        [] => "has no directory to look in".to_string(),
        dirs => {
            let dirs: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
            format!("found no {flow}.wasm in {}", dirs.join(", "))
        }
    };
    format!("the node knows {known} and {looked} (a flow's name is its component's file stem)")
}
