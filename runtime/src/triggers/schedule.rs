//! Schedule triggers: a cron expression read in a time zone starts a flow at each fire.
//!
//! Each fire has a deterministic instance id, `s_<trigger>_<scheduled unix ms>`, and the
//! trigger keeps a durable cursor in the store: the last fire it decided and whether it
//! started that fire. The cursor is written (durably) *before* the instance is started, so
//! after a crash at a fire the next start finds a fire it meant to start without an
//! instance and starts it: once, because its id is the fire's.
//!
//! Fires missed while the node was down — after the cursor, up to now, within the
//! catch-up window — follow the missed-run policy (`skip`, `run-once`: the latest of them,
//! `run-all`: each, in order, one after the other unless `overlap = allow`). A fire while the previous run has not ended follows the
//! overlap policy (`skip`; `buffer-one`: keep the first such fire until the run ends, skip
//! the others; `allow`). A paused schedule skips its fires.
//!
//! Time comes from a [`Clock`]: the system's, or in tests a file ([`FileClock`]) the test
//! writes, so no test waits for a real minute.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeZone};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::state::{TriggerKind, TriggerState};
use crate::config::{MissedRun, Overlap, ScheduleTriggerConfig};
use crate::error::StartError;
use crate::host::BoxFuture;
use crate::model::names::fire_instance_id;
use crate::model::{Origin, Outcome, StartRequest};
use crate::node::Node;
use crate::store::{StoreError, Write};

/// Most missed fires one catch-up considers (a schedule firing every minute, down a week).
const MAX_MISSED: usize = 10_080;

/// The time schedules run on.
pub trait Clock: Send + Sync + 'static {
    /// Now, unix ms.
    fn now_ms(&self) -> u64;
    /// Resolves once [`Clock::now_ms`] has reached `at_ms`.
    fn sleep_until(&self, at_ms: u64) -> BoxFuture<()>;
}

/// The system's clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        crate::model::unix_ms()
    }

    fn sleep_until(&self, at_ms: u64) -> BoxFuture<()> {
        let wait = at_ms.saturating_sub(self.now_ms());
        Box::pin(tokio::time::sleep(Duration::from_millis(wait)))
    }
}

/// A clock read from a file holding unix ms (for tests: `sluice serve` uses it when
/// `SLUICE_TEST_CLOCK` names the file). Re-read every 10 ms; it never goes back.
pub struct FileClock {
    now: watch::Receiver<u64>,
}

impl FileClock {
    /// A clock following `path`; reads it once now. Needs a tokio runtime.
    pub fn new(path: PathBuf) -> std::io::Result<Self> {
        let read = |path: &PathBuf| -> std::io::Result<u64> {
            let text = std::fs::read_to_string(path)?;
            text.trim().parse().map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: not unix ms: {e}", path.display()),
                )
            })
        };
        let (tx, now) = watch::channel(read(&path)?);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                if let Ok(ms) = read(&path) {
                    tx.send_if_modified(|now| {
                        let later = ms > *now;
                        if later {
                            *now = ms;
                        }
                        later
                    });
                }
                if tx.is_closed() {
                    return;
                }
            }
        });
        Ok(FileClock { now })
    }
}

impl Clock for FileClock {
    fn now_ms(&self) -> u64 {
        *self.now.borrow()
    }

    fn sleep_until(&self, at_ms: u64) -> BoxFuture<()> {
        let mut now = self.now.clone();
        Box::pin(async move {
            let _ = now.wait_for(|ms| *ms >= at_ms).await;
        })
    }
}

/// A schedule's durable cursor: the last fire it decided, and whether it started it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Cursor {
    at: u64,
    start: bool,
}

/// Start a task per schedule of `configs` on `node`.
pub(super) fn start(
    node: &Node,
    configs: &[ScheduleTriggerConfig],
    clock: Arc<dyn Clock>,
    paused: &HashSet<String>,
    stopping: &Arc<AtomicBool>,
) -> Result<Vec<Arc<TriggerState>>, StoreError> {
    let mut states = Vec::new();
    for config in configs {
        let state = TriggerState::new(
            TriggerKind::Schedule,
            config.name.get_ref().as_str(),
            config.flow.get_ref(),
            format!("cron {} ({})", config.cron.text, config.zone.0.name()),
        );
        if paused.contains(&state.name) {
            state.pause();
        }
        let key = format!("schedule:{}", state.name);
        // In a cluster the schedule runs on the leading node only, from the cursor as the
        // previous leader left it: read when this node takes the lead.
        let clustered = node.member_name().is_some();
        let cursor = if clustered {
            None
        } else {
            read_cursor(node, &key)?
        };
        let schedule = Schedule {
            node: node.clone(),
            config: config.clone(),
            state: state.clone(),
            clock: clock.clone(),
            key,
            running: None,
            buffered: None,
            stopping: stopping.clone(),
        };
        if clustered {
            tokio::spawn(async move {
                schedule.node.leadership().await;
                let cursor = loop {
                    match read_cursor(&schedule.node, &schedule.key) {
                        Ok(cursor) => break cursor,
                        Err(e) => {
                            tracing::warn!(trigger = %schedule.name(), "cannot read the schedule's cursor, retrying: {e}");
                            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        }
                    }
                };
                tracing::info!(trigger = %schedule.name(), "schedule `{}` runs on this node (the cluster's leader)", schedule.name());
                schedule.run(cursor).await;
            });
        } else {
            // Shown from the start: the task sets it again once it has caught up.
            if let Some(next) = schedule.next_after(clock.now_ms()) {
                state.next_at(next);
            }
            tokio::spawn(schedule.run(cursor));
        }
        states.push(state);
    }
    Ok(states)
}

/// The cursor a schedule saved last (`None`: a new schedule, or an unreadable cursor).
fn read_cursor(node: &Node, key: &str) -> Result<Option<Cursor>, StoreError> {
    Ok(match node.journal().store().cursor(key)? {
        Some(text) => serde_json::from_str::<Cursor>(&text).ok(),
        None => None,
    })
}

/// One schedule's task.
struct Schedule {
    node: Node,
    config: ScheduleTriggerConfig,
    state: Arc<TriggerState>,
    clock: Arc<dyn Clock>,
    key: String,
    /// The end of the last run started, while it goes on.
    running: Option<BoxFuture<Outcome>>,
    /// A fire waiting for the running one to end (`buffer-one`).
    buffered: Option<u64>,
    /// Set by a drain: fire nothing more.
    stopping: Arc<AtomicBool>,
}

impl Schedule {
    fn name(&self) -> &str {
        &self.state.name
    }

    /// The fires after `after_ms` up to `until_ms`, in order (at most [`MAX_MISSED`]).
    fn fires_between(&self, after_ms: u64, until_ms: u64) -> Vec<u64> {
        let mut fires = Vec::new();
        let mut at = after_ms;
        while fires.len() < MAX_MISSED {
            match self.next_after(at) {
                Some(next) if next <= until_ms => {
                    fires.push(next);
                    at = next;
                }
                _ => break,
            }
        }
        fires
    }

    /// The first fire after `ms`.
    fn next_after(&self, ms: u64) -> Option<u64> {
        let zone = self.config.zone.0;
        let from = DateTime::from_timestamp_millis(i64::try_from(ms).ok()?)?;
        let from = zone.from_utc_datetime(&from.naive_utc());
        let next = self
            .config
            .cron
            .cron
            .find_next_occurrence(&from, false)
            .ok()?;
        u64::try_from(next.timestamp_millis()).ok()
    }

    async fn run(mut self, cursor: Option<Cursor>) {
        let now = self.clock.now_ms();
        let mut last = now;
        match cursor {
            // A new schedule: nothing before now was missed, and from now on a restart can
            // tell what it missed.
            None => {
                self.save(Cursor {
                    at: now,
                    start: false,
                })
                .await
            }
            Some(cursor) => {
                last = cursor.at;
                if cursor.start {
                    self.resume_fire(cursor.at).await;
                }
                last = self.catch_up(last, now).await.unwrap_or(last);
            }
        }
        loop {
            let Some(next) = self.next_after(last) else {
                tracing::warn!(trigger = %self.name(), "schedule `{}` has no further fire", self.name());
                self.state.next_at(0);
                return;
            };
            self.state.next_at(next);
            let due = self.clock.sleep_until(next);
            tokio::pin!(due);
            loop {
                let ended = async {
                    match self.running.as_mut() {
                        Some(run) => {
                            let _ = run.await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                tokio::select! {
                    () = &mut due => break,
                    () = ended => {
                        self.running = None;
                        if let Some(at) = self.buffered.take() {
                            self.state.pending_add(-1);
                            self.start_fire(at).await;
                        }
                    }
                }
            }
            self.fire(next).await;
            last = next;
        }
    }

    /// Fires missed between the cursor (`after_ms`) and `now_ms`, by the missed-run policy.
    /// Returns the latest missed fire, if any.
    async fn catch_up(&mut self, after_ms: u64, now_ms: u64) -> Option<u64> {
        let missed = self.fires_between(after_ms, now_ms);
        let latest = *missed.last()?;
        let window = self.config.catch_up.0.as_millis() as u64;
        let horizon = now_ms.saturating_sub(window);
        let (due, late): (Vec<u64>, Vec<u64>) = missed.iter().partition(|&&at| at >= horizon);
        let run: Vec<u64> = match self.config.missed {
            MissedRun::Skip => Vec::new(),
            MissedRun::RunOnce => due.last().copied().into_iter().collect(),
            MissedRun::RunAll => due.clone(),
        };
        tracing::info!(
            trigger = %self.name(),
            "schedule `{}`: {} fire(s) missed while the node was down ({} within catch-up); policy {:?} runs {}",
            self.name(),
            missed.len(),
            due.len(),
            self.config.missed,
            run.len()
        );
        for _ in 0..(late.len() + due.len() - run.len()) {
            self.state.skipped();
        }
        if run.last() != Some(&latest) {
            // The decision about every missed fire is made: keep it across a restart.
            self.save(Cursor {
                at: latest,
                start: false,
            })
            .await;
        }
        for at in run {
            // Caught-up fires run one after another (all at once with `overlap = allow`),
            // so the overlap policy does not skip what the missed-run policy chose.
            if self.config.overlap != Overlap::Allow
                && let Some(previous) = self.running.take()
            {
                let _ = previous.await;
            }
            self.fire(at).await;
        }
        Some(latest)
    }

    /// The fire at `at_ms`: start it, or skip or buffer it by the pause and overlap policy.
    async fn fire(&mut self, at_ms: u64) {
        if self.stopping.load(Ordering::Acquire) {
            // Draining: the cursor stays where it was; the next start decides this fire.
            return;
        }
        let state = self.state.clone();
        if state.paused() {
            state.skipped();
            self.save(Cursor {
                at: at_ms,
                start: false,
            })
            .await;
            state.fired(at_ms);
            return;
        }
        if self.running.is_some() {
            match self.config.overlap {
                Overlap::Allow => {}
                Overlap::Skip => {
                    state.skipped();
                    self.save(Cursor {
                        at: at_ms,
                        start: false,
                    })
                    .await;
                    state.fired(at_ms);
                    return;
                }
                Overlap::BufferOne => {
                    if self.buffered.is_none() {
                        self.save(Cursor {
                            at: at_ms,
                            start: true,
                        })
                        .await;
                        self.buffered = Some(at_ms);
                        state.pending_add(1);
                    } else {
                        // The cursor stays on the buffered fire, which still must start.
                        state.skipped();
                    }
                    state.fired(at_ms);
                    return;
                }
            }
        }
        self.save(Cursor {
            at: at_ms,
            start: true,
        })
        .await;
        self.start_fire(at_ms).await;
        state.fired(at_ms);
    }

    /// The fire at `at_ms`, decided before a restart: started (running or ended), or not
    /// yet (a crash between the cursor and the start), then started now.
    async fn resume_fire(&mut self, at_ms: u64) {
        let id = fire_instance_id(self.name(), at_ms);
        match self.node.journal().store().record(&id) {
            Ok(Some(record)) if record.outcome().is_some() => {}
            Ok(Some(_)) => self.running = Some(Box::pin(self.node.services().outcome_of(&id))),
            Ok(None) => self.start_fire(at_ms).await,
            Err(e) => tracing::error!(trigger = %self.name(), "schedule fire {id}: {e}"),
        }
    }

    /// Start (or attach to) the instance of the fire at `at_ms`; watch its end.
    async fn start_fire(&mut self, at_ms: u64) {
        if self.stopping.load(Ordering::Acquire) {
            return;
        }
        let id = fire_instance_id(self.name(), at_ms);
        let request = StartRequest {
            flow: self.config.flow.get_ref().clone(),
            input: self.config.input_json(),
            origin: Origin::Trigger(self.name().to_string()),
            priority: self.config.mode.into(),
            fan_out: false,
            id: Some(id.clone()),
        };
        let mut backoff = Duration::from_millis(10);
        loop {
            match self.node.start(request.clone()).await {
                Ok(handle) => {
                    self.state.started();
                    self.running = Some(Box::pin(handle.outcome()));
                    return;
                }
                Err(StartError::ShuttingDown) => return,
                Err(
                    e @ (StartError::QueueFull { .. }
                    | StartError::Store { .. }
                    | StartError::StoreUnavailable { .. }),
                ) => {
                    tracing::debug!(trigger = %self.name(), "schedule fire {id}: {e}; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                Err(e) => {
                    tracing::error!(trigger = %self.name(), "schedule fire {id} starts nothing: {e}");
                    self.state.refused();
                    return;
                }
            }
        }
    }

    /// Keep `cursor` durably: before a fire starts, so a crash cannot lose it.
    async fn save(&mut self, cursor: Cursor) {
        let value = match serde_json::to_string(&cursor) {
            Ok(value) => value,
            Err(_) => return,
        };
        let write = Write::Cursor {
            key: self.key.clone(),
            value,
        };
        if let Err(e) = self.node.journal().write(vec![write]).await {
            tracing::error!(trigger = %self.name(), "schedule `{}`: cannot keep its cursor: {e}", self.name());
        }
    }
}
