//! One instance's side of the journal: host calls are answered from its recorded entries
//! while any remain (replay), then run live and appended, durably, before their effect is
//! visible to the guest. A call that differs from the recorded one is nondeterminism.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use thiserror::Error;

use super::calls::{Call, Written};
use crate::store::{Entry, Journal, StoreError, Write, decode, encode};

/// A replayed call that does not match the journal: the instance goes to the hospital.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("nondeterminism at journal position {position}: {detail}")]
pub struct Nondeterminism {
    /// Position of the first call that differs.
    pub position: u64,
    /// What differs.
    pub detail: String,
}

impl Nondeterminism {
    /// The flow made `call` where the journal has `recorded`.
    pub fn differs(position: u64, recorded: &Entry, call: &str, args: &Value) -> Self {
        Nondeterminism {
            position,
            detail: format!(
                "the journal has `{}` but the flow now calls `{}`",
                describe(&recorded.call, &recorded.args),
                describe(call, args)
            ),
        }
    }

    /// The flow returned while the journal still had `left` calls.
    pub fn ended_early(left: &[Entry]) -> Option<Self> {
        let next = left.first()?;
        Some(Nondeterminism {
            position: next.position,
            detail: format!(
                "the flow returned, but the journal has {} more call(s), the next `{}`",
                left.len(),
                describe(&next.call, &next.args)
            ),
        })
    }
}

/// `call(args)` as one line, long payloads shortened.
pub fn describe(call: &str, args: &Value) -> String {
    let mut line = String::new();
    let _ = write!(line, "{call}(");
    match args {
        Value::Null => {}
        Value::Object(map) => {
            let parts: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{k}: {}", shorten(v)))
                .collect();
            line.push_str(&parts.join(", "));
        }
        other => line.push_str(&shorten(other)),
    }
    line.push(')');
    line
}

fn shorten(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() <= 120 {
        return text;
    }
    let cut: String = text.chars().take(117).collect();
    format!("{cut}...")
}

/// Writes that must reach the store before anything else of an instance: its record, when
/// it was started by [`crate::Node::run`] (whose caller learns nothing before the end).
/// `None` (no allocation) for the usual instance, whose record is written already.
pub type PendingRecord = Option<Arc<Mutex<Option<Vec<Write>>>>>;

/// The journal of one instance as its host sees it.
pub struct Recorder {
    id: String,
    journal: Journal,
    recorded: VecDeque<Entry>,
    next: u64,
    pending: PendingRecord,
    first_life: bool,
    resumed_wait: Option<tokio::time::Instant>,
}

impl Recorder {
    /// The recorder of instance `id`, replaying `recorded` first.
    pub fn new(id: &str, journal: Journal, recorded: Vec<Entry>) -> Self {
        Recorder {
            id: id.into(),
            journal,
            recorded: recorded.into(),
            next: 0,
            pending: PendingRecord::default(),
            first_life: false,
            resumed_wait: None,
        }
    }

    /// The same recorder for an instance evicted in a timed wait that ends at `until` on
    /// the monotonic clock: its last recorded wait, replayed, waits only for what is left.
    pub fn resuming_wait(mut self, until: Option<tokio::time::Instant>) -> Self {
        self.resumed_wait = until;
        self
    }

    /// When the wait of the last recorded call ends on the monotonic clock, if this process
    /// knows (see [`Recorder::resuming_wait`]).
    pub fn resumed_wait(&self) -> Option<tokio::time::Instant> {
        self.resumed_wait
    }

    /// The same recorder for an instance in its first life: created just now, never run
    /// before, so nothing it derives an id for can exist yet.
    pub fn in_first_life(mut self, first: bool) -> Self {
        self.first_life = first;
        self
    }

    /// Whether the instance is in its first life (see [`Recorder::in_first_life`]).
    pub fn first_life(&self) -> bool {
        self.first_life
    }

    /// The same recorder, writing `pending` before its first entry.
    pub fn with_pending(mut self, pending: PendingRecord) -> Self {
        self.pending = pending;
        self
    }

    /// Queue the instance's pending record, if any, so what follows may refer to it.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        match take_pending(&self.pending) {
            Some(batch) => self.journal.append(batch),
            None => Ok(()),
        }
    }

    /// The position the next host call takes: children's ids derive from it.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// Whether recorded calls remain to be replayed.
    pub fn replaying(&self) -> bool {
        !self.recorded.is_empty()
    }

    /// The recorded answer to `call` while replaying; `None` once live. A call that differs
    /// from the recorded one is [`Nondeterminism`].
    pub fn replay(&mut self, call: &Call<'_>) -> Result<Option<Value>, Nondeterminism> {
        let Some(entry) = self.recorded.front() else {
            return Ok(None);
        };
        if entry.call != call.name() || !call.args_match(&entry.args) {
            return Err(Nondeterminism::differs(
                entry.position,
                entry,
                call.name(),
                &call.args(),
            ));
        }
        let entry = self.recorded.pop_front().map(|e| e.result);
        self.next += 1;
        Ok(entry)
    }

    /// [`Recorder::replay`], the answer read back as a `T`; for host calls, whose errors trap
    /// the guest ([`Nondeterminism`] stays the error's root, so the run loop can tell it).
    pub fn replay_as<T: DeserializeOwned>(
        &mut self,
        call: &Call<'_>,
    ) -> wasmtime::Result<Option<T>> {
        match self.replay(call)? {
            Some(answer) => Ok(Some(decode(&answer)?)),
            None => Ok(None),
        }
    }

    /// Append a live call and its answer to the journal, in order (see [`Journal::append`]
    /// for when it becomes durable).
    pub fn record<T: Serialize>(&mut self, call: &Call<'_>, answer: &T) -> Result<(), StoreError> {
        self.record_written(call.journaled(), encode(answer), Vec::new())
    }

    /// [`Recorder::record`] with `effects` committed in the same transaction as the entry.
    pub fn record_with<T: Serialize>(
        &mut self,
        call: &Call<'_>,
        answer: &T,
        effects: Vec<Write>,
    ) -> Result<(), StoreError> {
        self.record_written(call.journaled(), encode(answer), effects)
    }

    /// [`Recorder::record`] of a call already in its journaled form (see [`Call::journaled`]).
    pub fn record_written(
        &mut self,
        call: Written,
        answer: Value,
        effects: Vec<Write>,
    ) -> Result<(), StoreError> {
        let entry = Entry {
            position: self.next,
            call: call.kind.name().into(),
            args: call.args,
            result: answer,
            at_ms: Some(crate::model::unix_ms()),
        };
        let mut batch = take_pending(&self.pending).unwrap_or_default();
        batch.push(Write::Append {
            id: self.id.clone(),
            entry,
        });
        batch.extend(effects);
        self.journal.append(batch)?;
        self.next += 1;
        Ok(())
    }

    /// The calls left unreplayed when the flow returned: nondeterminism unless empty.
    pub fn leftover(&self) -> Option<Nondeterminism> {
        let left: Vec<Entry> = self.recorded.iter().cloned().collect();
        Nondeterminism::ended_early(&left)
    }
}

/// The pending record's writes, taken (so they are written once).
pub fn take_pending(pending: &PendingRecord) -> Option<Vec<Write>> {
    pending
        .as_ref()?
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
}
