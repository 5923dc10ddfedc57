//! Counters a pool keeps about itself; read by the run report and, later, metrics.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// Live counters of one pool. Cheap to update from any thread.
#[derive(Debug, Default)]
pub struct PoolStats {
    running: AtomicUsize,
    peak_running: AtomicUsize,
    parked: AtomicUsize,
    peak_parked: AtomicUsize,
    peak_queued: AtomicUsize,
    started: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    rejected: AtomicU64,
    preempted: AtomicU64,
}

/// A point-in-time copy of [`PoolStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolSnapshot {
    /// Instances executing guest code now (slots held).
    pub running: usize,
    /// Most instances ever executing at once; never above the pool's size.
    pub peak_running: usize,
    /// Instances parked at a suspension point now.
    pub parked: usize,
    /// Most instances ever parked at once.
    pub peak_parked: usize,
    /// Most admitted instances ever waiting for their first slot.
    pub peak_queued: usize,
    /// Instances that got their first slot.
    pub started: u64,
    /// Instances that returned output.
    pub completed: u64,
    /// Instances that failed (error, trap, limit).
    pub failed: u64,
    /// Starts refused because the queue was full.
    pub rejected: u64,
    /// Times a running instance gave up its slot to waiting work at an epoch tick.
    pub preempted: u64,
}

impl PoolStats {
    pub(crate) fn slot_granted(&self) {
        let now = self.running.fetch_add(1, Relaxed) + 1;
        self.peak_running.fetch_max(now, Relaxed);
    }

    pub(crate) fn slot_released(&self) {
        self.running.fetch_sub(1, Relaxed);
    }

    pub(crate) fn queued(&self, now: usize) {
        self.peak_queued.fetch_max(now, Relaxed);
    }

    /// An instance of this pool parked at a suspension point.
    pub fn parked(&self) {
        let now = self.parked.fetch_add(1, Relaxed) + 1;
        self.peak_parked.fetch_max(now, Relaxed);
    }

    /// An instance of this pool woke from a suspension point.
    pub fn unparked(&self) {
        self.parked.fetch_sub(1, Relaxed);
    }

    /// An instance got its first slot.
    pub fn started(&self) {
        self.started.fetch_add(1, Relaxed);
    }

    /// An instance ended, with output or without.
    pub fn finished(&self, ok: bool) {
        if ok { &self.completed } else { &self.failed }.fetch_add(1, Relaxed);
    }

    pub(crate) fn rejected(&self) {
        self.rejected.fetch_add(1, Relaxed);
    }

    pub(crate) fn preempted(&self) {
        self.preempted.fetch_add(1, Relaxed);
    }

    /// Copy every counter.
    pub fn snapshot(&self) -> PoolSnapshot {
        PoolSnapshot {
            running: self.running.load(Relaxed),
            peak_running: self.peak_running.load(Relaxed),
            parked: self.parked.load(Relaxed),
            peak_parked: self.peak_parked.load(Relaxed),
            peak_queued: self.peak_queued.load(Relaxed),
            started: self.started.load(Relaxed),
            completed: self.completed.load(Relaxed),
            failed: self.failed.load(Relaxed),
            rejected: self.rejected.load(Relaxed),
            preempted: self.preempted.load(Relaxed),
        }
    }
}
