//! Who waits for which instance's outcome. An instance running in this node is *claimed*;
//! its waiters are told when it ends. An instance that ended earlier (or in an earlier life
//! of the node) is answered from the store instead.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::oneshot;

use crate::model::Outcome;

#[derive(Default)]
struct Waiting {
    /// A run of it is under way in this node.
    running: bool,
    waiters: Vec<oneshot::Sender<Outcome>>,
}

/// The node's table of instances with a run under way or someone waiting.
#[derive(Default)]
pub struct Completions {
    table: Mutex<HashMap<String, Waiting>>,
    /// Entries with `running` set, kept so reading it does not walk the table.
    running: AtomicUsize,
}

impl Completions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Waiting>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Mark `id` as running here, with one waiter (the starter's handle). `None` when a
    /// run of it is already under way: the caller should attach instead.
    pub fn claim(&self, id: &str) -> Option<oneshot::Receiver<Outcome>> {
        let mut table = self.lock();
        let entry = table.entry(id.to_string()).or_default();
        if entry.running {
            return None;
        }
        entry.running = true;
        self.running.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        entry.waiters.push(tx);
        Some(rx)
    }

    /// Whether a run of `id` is under way here.
    pub fn is_running(&self, id: &str) -> bool {
        self.lock().get(id).is_some_and(|w| w.running)
    }

    /// Wait for `id` if a run of it is under way here (or someone already waits for it).
    pub fn watch_if_known(&self, id: &str) -> Option<oneshot::Receiver<Outcome>> {
        let mut table = self.lock();
        let entry = table.get_mut(id)?;
        let (tx, rx) = oneshot::channel();
        entry.waiters.push(tx);
        Some(rx)
    }

    /// Wait for `id`, whether or not it runs now (a held instance, until an operator acts).
    pub fn watch(&self, id: &str) -> oneshot::Receiver<Outcome> {
        let (tx, rx) = oneshot::channel();
        self.lock()
            .entry(id.to_string())
            .or_default()
            .waiters
            .push(tx);
        rx
    }

    /// Forget the waiters of `id` that gave up (dropped their receiver), freeing their room.
    pub fn unwatch(&self, id: &str) {
        if let Some(w) = self.lock().get_mut(id) {
            w.waiters.retain(|tx| !tx.is_closed());
            w.waiters.shrink_to_fit();
        }
    }

    /// `id` ended: tell everyone waiting. Call after its outcome is in the store.
    pub fn finish(&self, id: &str, outcome: &Outcome) {
        let waiting = self.lock().remove(id);
        if waiting.as_ref().is_some_and(|w| w.running) {
            self.running.fetch_sub(1, Ordering::Relaxed);
        }
        for waiter in waiting.into_iter().flat_map(|w| w.waiters) {
            // A waiter that gave up (dropped its receiver) is fine.
            let _ = waiter.send(outcome.clone());
        }
    }

    /// `id` stopped running without an outcome (held in the hospital): waiters keep waiting.
    pub fn hold(&self, id: &str) {
        if let Some(w) = self.lock().get_mut(id)
            && w.running
        {
            w.running = false;
            self.running.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Instances someone here waits for that do not run here (in a cluster, they may run
    /// on another node: their end is looked up in the store).
    pub fn awaited_elsewhere(&self) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, w)| !w.running && !w.waiters.is_empty())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Whether someone here waits for `id` while it does not run here.
    pub fn is_awaited_elsewhere(&self, id: &str) -> bool {
        self.lock()
            .get(id)
            .is_some_and(|w| !w.running && !w.waiters.is_empty())
    }

    /// Instances with a run under way here.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Relaxed)
    }
}
