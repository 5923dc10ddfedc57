//! Replay: an instance's host calls are answered from its journal while entries remain,
//! then run live and recorded. [`calls`] says how each call is journaled; [`Recorder`] is
//! one instance's side of the journal.

pub mod calls;
#[cfg(test)]
mod props;
pub mod recorder;

pub use calls::{Call, Kind, Written};
pub use recorder::{Nondeterminism, PendingRecord, Recorder, describe, take_pending};
