//! What an instance comes to: its output, or why it has none.

use thiserror::Error;

/// Why a flow instance produced no output. Mirrors the WIT `flow-error`.
#[derive(Debug, Clone, PartialEq, Eq, Error, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FlowError {
    /// The flow returned an error or trapped.
    #[error("failed: {0}")]
    Failed(String),
    /// The instance was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// The instance ran past its wall-clock timeout.
    #[error("timed out")]
    TimedOut,
    /// The start was refused.
    #[error("rejected: {0}")]
    Rejected(String),
}

/// What a finished instance produced: its output bytes, or why there are none.
pub type Outcome = Result<Vec<u8>, FlowError>;
