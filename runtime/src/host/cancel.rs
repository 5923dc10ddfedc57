//! Cancellation: an instance and every unfinished descendant end as `cancelled`.
//!
//! The order is what makes it safe across a crash: the instances are *marked* here first
//! (so one that is about to end by itself either has queued its end already, and is left
//! alone, or will not write one), the `cancelled` statuses are written in one durable
//! batch, and only then are waiters told and the instances' [`CancelSignal`]s fired. A
//! crash after the batch finds them cancelled (recovery resumes only `running`), and a
//! crash before it finds them as they were.
//!
//! A fired signal stops its instance wherever it is: its task races everything it does
//! against the signal (`instance::Life`), so a queued instance leaves its pool queue, a
//! parked or evicted one stops waiting, and a running one stops at its next host call or
//! epoch tick, where the guest's future yields.
//!
//! A child started while its parent is being cancelled checks its parent before it runs
//! ([`Services::is_cancelled`]): its record either reached the store before the cancellation
//! looked for descendants, or it sees the parent's mark and cancels itself.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use thiserror::Error;
use tokio::sync::Notify;

use super::Services;
use crate::model::{FlowError, Outcome, end_reason};
use crate::store::{Status, StoreError, Write, encode};

/// Why [`Services::cancel`] cancelled nothing.
#[derive(Debug, Error)]
pub enum CancelError {
    /// No instance has that id.
    #[error("no instance `{0}` on this node")]
    Unknown(String),
    /// It ended before (or while) it was asked to.
    #[error("instance `{id}` has already ended ({})", status.as_str())]
    Ended {
        /// The instance.
        id: String,
        /// How it ended.
        status: Status,
    },
    /// The store failed; nothing was cancelled.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Tells one instance's task to stop. Cheap to clone; every clone is the same signal.
#[derive(Debug, Clone, Default)]
pub struct CancelSignal(Arc<Signal>);

#[derive(Debug, Default)]
struct Signal {
    fired: AtomicBool,
    notify: Notify,
    /// Set when the instance's task is over (its guest dropped): see [`CancelSignal::stopped`].
    stopped: AtomicBool,
    stop_notify: Notify,
}

/// How long a cancellation waits for the instances it stopped to let go of their guests
/// (a running guest yields at every epoch tick, so this is only ever reached by a bug).
const STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

impl CancelSignal {
    /// Fire it: everyone awaiting [`CancelSignal::fired`] wakes, now or later.
    pub fn fire(&self) {
        self.0.fired.store(true, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }

    /// Whether it has fired.
    pub fn is_fired(&self) -> bool {
        self.0.fired.load(Ordering::SeqCst)
    }

    /// Wait until it fires (at once if it has).
    pub async fn fired(&self) {
        wait_for(&self.0.fired, &self.0.notify).await;
    }

    /// The instance's task is over: nothing of its guest runs any more.
    fn stop(&self) {
        self.0.stopped.store(true, Ordering::SeqCst);
        self.0.stop_notify.notify_waiters();
    }

    /// Wait until the instance's task is over.
    async fn stopped(&self) {
        wait_for(&self.0.stopped, &self.0.stop_notify).await;
    }
}

/// Wait until `flag` is set; whoever sets it notifies `notify` after.
async fn wait_for(flag: &AtomicBool, notify: &Notify) {
    loop {
        let notified = notify.notified();
        tokio::pin!(notified);
        // Registered before the check, so a set between the two is not missed.
        notified.as_mut().enable();
        if flag.load(Ordering::SeqCst) {
            return;
        }
        notified.await;
    }
}

/// Where an instance with a task in this node stands, as cancellation sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Running, queued, parked or evicted: cancellable.
    Live,
    /// Its own end is queued to the store: a cancellation leaves it alone.
    Ending,
    /// Marked by a cancellation, which writes its end and tells its waiters.
    Cancelled,
}

struct Entry {
    signal: CancelSignal,
    state: State,
}

/// The node's table of instances with a task here (from their claim to the end of their
/// task), each with its cancellation signal.
#[derive(Default)]
pub struct Cancellations {
    table: Mutex<HashMap<String, Entry>>,
}

impl Cancellations {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Instance `id` has a task here from now on (the node calls this when it claims the
    /// id, before its record is written, so any cancellation that finds the record finds
    /// this entry too); its signal. Registering again returns the same signal.
    pub fn register(&self, id: &str) -> CancelSignal {
        self.lock()
            .entry(id.to_string())
            .or_insert_with(|| Entry {
                signal: CancelSignal::default(),
                state: State::Live,
            })
            .signal
            .clone()
    }

    /// The task of `id` is over: nothing of its guest runs any more.
    pub fn forget(&self, id: &str) {
        let entry = self.lock().remove(id);
        if let Some(entry) = entry {
            entry.signal.stop();
        }
    }

    /// Instance `id` is about to queue its own end; false when a cancellation marked it
    /// first, which then writes its end and tells its waiters instead. Call it right
    /// before queuing the end, with no `.await` between.
    pub fn begin_end(&self, id: &str) -> bool {
        match self.lock().get_mut(id) {
            Some(entry) if entry.state == State::Cancelled => false,
            Some(entry) => {
                entry.state = State::Ending;
                true
            }
            None => true,
        }
    }

    /// Mark `id` cancelled. `None`: leave it (it is ending by itself, or another
    /// cancellation has it); `Some(None)`: it has no task here (held, say).
    fn mark(&self, id: &str) -> Option<Option<CancelSignal>> {
        match self.lock().get_mut(id) {
            Some(entry) if entry.state == State::Live => {
                entry.state = State::Cancelled;
                Some(Some(entry.signal.clone()))
            }
            Some(_) => None,
            None => Some(None),
        }
    }

    /// Undo marks whose cancellation could not be written.
    fn unmark(&self, ids: &[Marked]) {
        let mut table = self.lock();
        for (id, _) in ids {
            if let Some(entry) = table.get_mut(id)
                && entry.state == State::Cancelled
            {
                entry.state = State::Live;
            }
        }
    }

    fn state(&self, id: &str) -> Option<State> {
        self.lock().get(id).map(|e| e.state)
    }
}

/// An instance marked for cancellation, with its signal when it has a task here.
pub type Marked = (String, Option<CancelSignal>);

/// The write that ends `id` as cancelled.
pub fn cancelled_write(id: &str) -> Write {
    Write::Status {
        id: id.into(),
        status: Status::Cancelled,
        output: Some(encode(&FlowError::Cancelled).to_string().into_bytes()),
        message: Some(FlowError::Cancelled.to_string()),
    }
}

impl Services {
    /// Cancel instance `id` and all its unfinished descendants: they end as `cancelled`,
    /// durably, before anything is told or stopped. Returns how many were cancelled, once
    /// none of their guests runs any more (within a generous bound).
    pub async fn cancel(&self, id: &str) -> Result<usize, CancelError> {
        self.cancel_with(id, true).await
    }

    /// [`Services::cancel`]; `wait`: return only once their tasks are over (an instance
    /// cancelling itself must not wait for itself).
    pub async fn cancel_with(&self, id: &str, wait: bool) -> Result<usize, CancelError> {
        let journal = &self.journal;
        // Its record, or its end, may still be queued.
        journal.sync().await?;
        let record = journal
            .store()
            .record(id)?
            .ok_or_else(|| CancelError::Unknown(id.into()))?;
        if record.status.is_final() {
            return Err(CancelError::Ended {
                id: id.into(),
                status: record.status,
            });
        }
        let Some(signal) = self.cancels.mark(id) else {
            // It queued its own end, or another cancellation has it: what the store says
            // once that is committed is how it ended.
            journal.sync().await?;
            let status = journal.store().record(id)?.map(|r| r.status);
            return Err(CancelError::Ended {
                id: id.into(),
                status: status.filter(|s| s.is_final()).unwrap_or(Status::Cancelled),
            });
        };
        let mut marked = vec![(id.to_string(), signal)];
        let descendants = match self.mark_descendants(id).await {
            Ok(found) => found,
            Err(e) => {
                self.cancels.unmark(&marked);
                return Err(e.into());
            }
        };
        marked.extend(descendants);
        let mut batch = Vec::with_capacity(marked.len());
        for (id, _) in &marked {
            batch.push(cancelled_write(id));
            batch.extend(self.peer_ends(id, &Err(FlowError::Cancelled)));
        }
        let woken: Vec<Write> = batch.clone();
        if let Err(e) = journal.write(batch).await {
            self.cancels.unmark(&marked);
            return Err(e.into());
        }
        self.wake_peers(&woken);
        let signals: Vec<CancelSignal> = marked.iter().filter_map(|(_, s)| s.clone()).collect();
        self.ask_owners_to_stop(&marked);
        let count = self.tell_cancelled(marked);
        if wait {
            let stopped = futures::future::join_all(signals.iter().map(CancelSignal::stopped));
            if tokio::time::timeout(STOP_WAIT, stopped).await.is_err() {
                tracing::warn!("instance {id} cancelled; some of its tree still winds down");
            }
        }
        tracing::debug!("instance {id} cancelled, with its descendants: {count} in all");
        Ok(count)
    }

    /// In a cluster, the instances cancelled here that run on no task here may run on
    /// another node: ask it to stop them (their `cancelled` status is already durable, so
    /// a missed request only lets one run on until its end, which the store ignores).
    fn ask_owners_to_stop(&self, marked: &[Marked]) {
        let Some(cluster) = self.journal.store().cluster() else {
            return;
        };
        for (id, _) in marked.iter().filter(|(_, signal)| signal.is_none()) {
            if let Err(e) = cluster.ask_cancel(id) {
                tracing::warn!(id = %id, "cannot ask the cluster to stop {id}: {e}");
            }
        }
    }

    /// Another node cancelled `id` (its `cancelled` status is in the store): stop its task
    /// here, if it runs here, and tell its waiters.
    pub fn stop_cancelled_elsewhere(&self, id: &str) {
        if let Some(Some(signal)) = self.cancels.mark(id) {
            self.tell_cancelled(vec![(id.to_string(), Some(signal))]);
        }
    }

    /// The unfinished descendants of `id`, marked for cancellation; those ending by
    /// themselves are left out. The caller writes their [`cancelled_write`]s, then calls
    /// [`Services::tell_cancelled`].
    pub async fn mark_descendants(&self, id: &str) -> Result<Vec<Marked>, StoreError> {
        // Children's records are only queued when they start: commit them first.
        self.journal.sync().await?;
        let found = self.journal.store().descendants(id)?;
        Ok(found
            .into_iter()
            .filter(|(_, status)| !status.is_final())
            .filter_map(|(child, _)| self.cancels.mark(&child).map(|s| (child, s)))
            .collect())
    }

    /// The cancellation of `marked` is durable: tell their waiters and counterparties, and
    /// stop those with a task here. Returns how many ended as cancelled.
    pub fn tell_cancelled(&self, marked: Vec<Marked>) -> usize {
        let mut count = 0;
        for (id, signal) in marked {
            let mut outcome: Outcome = Err(FlowError::Cancelled);
            if signal.is_none() {
                // No task here to keep it from ending otherwise (an operator may have
                // acted on a held one meanwhile): the store's end is the one to tell.
                if let Ok(Some(record)) = self.journal.store().record(&id)
                    && let Some(stored) = record.outcome()
                {
                    outcome = stored;
                }
            }
            if outcome == Err(FlowError::Cancelled) {
                count += 1;
            }
            self.messaging
                .sessions
                .ended(&id, || end_reason(&id, &outcome));
            self.completions.finish(&id, &outcome);
            if let Some(signal) = signal {
                signal.fire();
            }
        }
        count
    }

    /// Whether instance `id` is cancelled: marked here, or, with no task here, so
    /// recorded. A child checks its parent with this before it runs.
    pub fn is_cancelled(&self, id: &str) -> bool {
        match self.cancels.state(id) {
            Some(state) => state == State::Cancelled,
            None => matches!(
                self.journal.store().record(id),
                Ok(Some(record)) if record.status == Status::Cancelled
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_signal_fired_before_or_while_waiting_wakes_the_waiter() {
        let signal = CancelSignal::default();
        let waiter = tokio::spawn({
            let signal = signal.clone();
            async move { signal.fired().await }
        });
        tokio::task::yield_now().await;
        signal.fire();
        tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("the waiter woke")
            .expect("the waiter ran");
        tokio::time::timeout(Duration::from_secs(10), signal.fired())
            .await
            .expect("a fired signal answers at once");
    }

    #[test]
    fn an_instance_ending_by_itself_is_left_alone_and_a_marked_one_does_not_end_itself() {
        let table = Cancellations::default();
        table.register("a");
        table.register("b");
        assert!(table.begin_end("a"));
        assert!(table.mark("a").is_none(), "ending by itself");
        assert!(matches!(table.mark("b"), Some(Some(_))));
        assert!(!table.begin_end("b"), "its canceller writes its end");
        assert!(table.mark("b").is_none(), "one cancellation at a time");
        assert!(matches!(table.mark("gone"), Some(None)));
    }
}
