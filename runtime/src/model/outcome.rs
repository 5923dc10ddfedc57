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

/// An output (or any payload) as JSON: the bytes themselves when they are JSON, else a JSON
/// string of their text (bytes that are not UTF-8 are shown lossily). One mapping for what
/// `sluice run`, the API and the scenario host show of a flow's bytes.
pub fn json_of(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// An output as `sluice run` prints it: [`json_of`], pretty-printed.
pub fn printed_output(bytes: &[u8]) -> String {
    // A `Value` always serializes: its map keys are strings and its numbers finite.
    serde_json::to_string_pretty(&json_of(bytes)).unwrap_or_default()
}
