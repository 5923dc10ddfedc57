//! One trigger's figures (fires, starts, refusals, last and next fire) and whether it is
//! paused: lock-free counters its task updates and the API reads.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::Serialize;

/// What kind of trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TriggerKind {
    /// A URL trigger.
    Http,
    /// An event trigger.
    Event,
    /// A schedule trigger.
    Schedule,
}

/// One trigger's state.
#[derive(Debug)]
pub struct TriggerState {
    /// What kind.
    pub kind: TriggerKind,
    /// Its name.
    pub name: String,
    /// The flow it starts.
    pub flow: String,
    /// What fires it: `POST /hooks/x`, `topic orders`, `cron 0 2 * * * (UTC)`.
    pub source: String,
    paused: AtomicBool,
    fired: AtomicU64,
    started: AtomicU64,
    refused: AtomicU64,
    skipped: AtomicU64,
    pending: AtomicU64,
    /// Unix ms of the last fire; 0: never.
    last_fire: AtomicU64,
    /// Unix ms of the next fire (schedules); 0: none known.
    next_fire: AtomicU64,
}

/// A trigger's figures at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TriggerSnapshot {
    /// What kind.
    pub kind: TriggerKind,
    /// Its name.
    pub name: String,
    /// The flow it starts.
    pub flow: String,
    /// What fires it.
    pub source: String,
    /// `active` or `paused`.
    pub state: &'static str,
    /// Requests, events or schedule fires it saw.
    pub fired: u64,
    /// Instances it started.
    pub started: u64,
    /// Starts the node refused for good (unknown flow, input too large) or, for URL
    /// triggers, requests refused (paused, draining, queue full, bad body).
    pub refused: u64,
    /// Fires skipped (paused, overlap or missed-run policy).
    pub skipped: u64,
    /// Events waiting for this trigger's instance (event triggers).
    pub pending: u64,
    /// Unix ms of the last fire.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_fire_ms: Option<u64>,
    /// Unix ms of the next fire (schedules).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_fire_ms: Option<u64>,
}

impl TriggerState {
    /// A new, active trigger.
    pub fn new(kind: TriggerKind, name: &str, flow: &str, source: String) -> Arc<Self> {
        Arc::new(TriggerState {
            kind,
            name: name.into(),
            flow: flow.into(),
            source,
            paused: AtomicBool::new(false),
            fired: AtomicU64::new(0),
            started: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            last_fire: AtomicU64::new(0),
            next_fire: AtomicU64::new(0),
        })
    }

    /// Whether it is paused.
    pub fn paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    /// Pause it (idempotent): a paused URL trigger answers 503, a paused event trigger
    /// lets events pass without starting anything, a paused schedule skips its fires.
    /// Not kept across a restart by itself: see `Triggers::set_paused`.
    pub fn pause(&self) {
        self.paused.store(true, Ordering::Release);
    }

    /// Resume it (idempotent).
    pub fn resume(&self) {
        self.paused.store(false, Ordering::Release);
    }

    /// It fired at `at_ms`.
    pub fn fired(&self, at_ms: u64) {
        self.fired.fetch_add(1, Ordering::Relaxed);
        self.last_fire.fetch_max(at_ms, Ordering::Relaxed);
    }

    /// It started an instance.
    pub fn started(&self) {
        self.started.fetch_add(1, Ordering::Relaxed);
    }

    /// A start or request was refused.
    pub fn refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// A fire was skipped.
    pub fn skipped(&self) {
        self.skipped.fetch_add(1, Ordering::Relaxed);
    }

    /// `delta` more (or fewer) events wait for this trigger.
    pub fn pending_add(&self, delta: i64) {
        if delta >= 0 {
            self.pending.fetch_add(delta as u64, Ordering::AcqRel);
        } else {
            self.pending
                .fetch_sub(delta.unsigned_abs(), Ordering::AcqRel);
        }
    }

    /// The next fire is at `at_ms` (0: none).
    pub fn next_at(&self, at_ms: u64) {
        self.next_fire.store(at_ms, Ordering::Relaxed);
    }

    /// Its figures now.
    pub fn snapshot(&self) -> TriggerSnapshot {
        let some = |v: u64| (v > 0).then_some(v);
        TriggerSnapshot {
            kind: self.kind,
            name: self.name.clone(),
            flow: self.flow.clone(),
            source: self.source.clone(),
            state: if self.paused() { "paused" } else { "active" },
            fired: self.fired.load(Ordering::Relaxed),
            started: self.started.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            pending: self.pending.load(Ordering::Acquire),
            last_fire_ms: some(self.last_fire.load(Ordering::Relaxed)),
            next_fire_ms: some(self.next_fire.load(Ordering::Relaxed)),
        }
    }
}
