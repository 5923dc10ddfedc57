//! One named pool: `size` slots, a bounded admission queue, and waiters served by class.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use thiserror::Error;
use tokio::sync::oneshot;

use super::stats::PoolStats;
use crate::model::Priority;

/// Order in which waiters get a freed slot: every `High` waiter before any `Resume`
/// waiter before any `Normal` waiter; first come, first served within a class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueClass {
    /// New starts with high priority.
    High = 0,
    /// Instances waking from a suspension point (a parent whose child finished).
    Resume = 1,
    /// New starts, and running instances that gave up their slot at a time-slice.
    Normal = 2,
}

const CLASSES: usize = 3;

impl From<Priority> for QueueClass {
    fn from(p: Priority) -> Self {
        match p {
            Priority::High => QueueClass::High,
            Priority::Normal => QueueClass::Normal,
        }
    }
}

/// A start was refused because the pool's queue is at capacity.
#[derive(Debug, Error)]
#[error("pool `{pool}` queue is full ({capacity} waiting)")]
pub struct QueueFull {
    /// The pool that refused.
    pub pool: String,
    /// Its queue capacity.
    pub capacity: usize,
}

/// A named executor: at most `size` instances hold a slot at once.
#[derive(Debug)]
pub struct Pool {
    name: String,
    timeout: Option<Duration>,
    preempt: bool,
    state: Mutex<PoolState>,
    stats: PoolStats,
}

#[derive(Debug)]
struct PoolState {
    /// Most slots held at once; an operator may change it live.
    size: usize,
    /// Most admitted starts waiting; an operator may change it live.
    queue_capacity: usize,
    /// Slots held now. Above `size` after a shrink, until enough are given back.
    held: usize,
    waiters: [VecDeque<oneshot::Sender<Slot>>; CLASSES],
    /// Admitted new starts that have not had their first slot yet.
    queued: usize,
}

impl PoolState {
    fn has_waiters(&self) -> bool {
        self.waiters.iter().any(|q| !q.is_empty())
    }

    fn slot_free(&self) -> bool {
        self.held < self.size
    }
}

impl Pool {
    /// A pool of `size` slots admitting at most `queue_capacity` waiting starts.
    pub fn new(name: impl Into<String>, size: usize, queue_capacity: usize) -> Arc<Self> {
        Self::with_options(name, size, queue_capacity, None, true)
    }

    /// A pool with a wall-clock `timeout` for its instances, time-sliced when `preempt`.
    pub fn with_options(
        name: impl Into<String>,
        size: usize,
        queue_capacity: usize,
        timeout: Option<Duration>,
        preempt: bool,
    ) -> Arc<Self> {
        Arc::new(Pool {
            name: name.into(),
            timeout,
            preempt,
            state: Mutex::new(PoolState {
                size,
                queue_capacity,
                held: 0,
                waiters: Default::default(),
                queued: 0,
            }),
            stats: PoolStats::default(),
        })
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Most instances executing guest code at once.
    pub fn size(&self) -> usize {
        self.lock().size
    }

    /// Most admitted starts waiting for a slot.
    pub fn queue_capacity(&self) -> usize {
        self.lock().queue_capacity
    }

    /// Change the pool's size and queue capacity now. A larger size hands the new slots to
    /// waiters at once; a smaller one takes slots back as their holders give them up
    /// (nothing running is stopped). A smaller queue refuses new starts until it has room
    /// (nothing queued is dropped).
    pub fn resize(self: &Arc<Self>, size: Option<usize>, queue_capacity: Option<usize>) {
        let mut state = self.lock();
        if let Some(size) = size {
            state.size = size;
        }
        if let Some(capacity) = queue_capacity {
            state.queue_capacity = capacity;
        }
        self.hand_out(&mut state);
    }

    /// Wall-clock limit of this pool's instances, from admission.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Whether running instances give their slot up to waiting work at every epoch tick.
    pub fn preempts(&self) -> bool {
        self.preempt
    }

    /// Admitted starts waiting for their first slot now.
    pub fn queued(&self) -> usize {
        self.lock().queued
    }

    /// The pool's live counters.
    pub fn stats(&self) -> &PoolStats {
        &self.stats
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // A panic while holding this lock leaves only counters behind; keep serving.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admit a new start into the queue, or refuse at once when the queue is full.
    /// The returned [`Admission`] holds the queue place until it gets a slot or is dropped.
    pub fn admit(self: &Arc<Self>, class: QueueClass) -> Result<Admission, QueueFull> {
        let mut state = self.lock();
        let slot_free = state.slot_free() && !state.has_waiters();
        if !slot_free && state.queued >= state.queue_capacity {
            let capacity = state.queue_capacity;
            drop(state);
            self.stats.rejected();
            return Err(QueueFull {
                pool: self.name.clone(),
                capacity,
            });
        }
        // Take the place in line now, so waiters are served in admission order.
        let ticket = self.ticket(&mut state, class);
        let waits = matches!(ticket, Ticket::Waiting(_));
        if waits {
            state.queued += 1;
            self.stats.queued(state.queued);
        }
        Ok(Admission {
            pool: self.clone(),
            ticket: Some(ticket),
            queued_at_insert: state.queued,
            waiting: waits,
        })
    }

    /// Admit work admitted before (an instance recovered after a restart): never refused,
    /// queued with the resumptions.
    pub fn readmit(self: &Arc<Self>) -> Admission {
        let mut state = self.lock();
        let ticket = self.ticket(&mut state, QueueClass::Resume);
        let waits = matches!(ticket, Ticket::Waiting(_));
        if waits {
            state.queued += 1;
            self.stats.queued(state.queued);
        }
        Admission {
            pool: self.clone(),
            ticket: Some(ticket),
            queued_at_insert: state.queued,
            waiting: waits,
        }
    }

    /// Wait for a slot in `class`. Resumptions use this directly: they are never refused.
    pub async fn acquire(self: &Arc<Self>, class: QueueClass) -> Slot {
        let ticket = self.ticket(&mut self.lock(), class);
        ticket.redeem().await
    }

    /// A free slot now, or a place at the back of `class`'s line.
    fn ticket(self: &Arc<Self>, state: &mut PoolState, class: QueueClass) -> Ticket {
        if state.slot_free() && !state.has_waiters() {
            state.held += 1;
            return Ticket::Ready(self.grant());
        }
        let (tx, rx) = oneshot::channel();
        state.waiters[class as usize].push_back(tx);
        Ticket::Waiting(rx)
    }

    /// Whether any instance waits for a slot now (a running instance should then yield its slot).
    pub fn has_waiters(&self) -> bool {
        self.lock().has_waiters()
    }

    /// Waiters for a slot now, of every class: admitted starts, resumptions, preempted
    /// instances. (A waiter that gave up is counted until a freed slot passes it by.)
    pub fn waiting(&self) -> usize {
        self.lock().waiters.iter().map(VecDeque::len).sum()
    }

    fn grant(self: &Arc<Self>) -> Slot {
        self.stats.slot_granted();
        Slot {
            pool: self.clone(),
            armed: true,
        }
    }

    /// A slot was given back: hand it to the first live waiter if the size allows.
    fn release(self: &Arc<Self>) {
        self.stats.slot_released();
        let mut state = self.lock();
        state.held -= 1;
        self.hand_out(&mut state);
    }

    /// Grant free slots to live waiters, by class, while the size allows.
    fn hand_out(self: &Arc<Self>, state: &mut PoolState) {
        for class in 0..CLASSES {
            while state.slot_free() {
                let Some(tx) = state.waiters[class].pop_front() else {
                    break;
                };
                match tx.send(self.grant()) {
                    Ok(()) => state.held += 1,
                    Err(mut unwanted) => {
                        // The waiter gave up (its instance was dropped): this slot was never
                        // held, so it must not release again on drop.
                        unwanted.armed = false;
                        self.stats.slot_released();
                    }
                }
            }
        }
    }

    pub(crate) fn note_preempted(&self) {
        self.stats.preempted();
    }
}

/// A place in a pool's admission queue, turned into a [`Slot`] by [`Admission::wait`].
#[derive(Debug)]
pub struct Admission {
    pool: Arc<Pool>,
    ticket: Option<Ticket>,
    queued_at_insert: usize,
    /// Counted in the pool's queue until it gets its slot.
    waiting: bool,
}

/// A slot, or the promise of one.
#[derive(Debug)]
enum Ticket {
    Ready(Slot),
    Waiting(oneshot::Receiver<Slot>),
}

impl Ticket {
    async fn redeem(self) -> Slot {
        match self {
            Ticket::Ready(slot) => slot,
            // The sender lives in the pool's state, which outlives every waiter holding an Arc
            // to the pool; it is only dropped after a send, so the channel cannot close empty.
            Ticket::Waiting(rx) => rx
                .await
                .expect("a pool never drops a waiter without handing it a slot"),
        }
    }
}

impl Admission {
    /// Admitted starts waiting for a slot when this one was admitted, itself included when it
    /// had to wait (0 when a slot was free).
    pub fn queued_at_insert(&self) -> usize {
        self.queued_at_insert
    }

    /// The pool this start was admitted to.
    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// Whether its slot is granted already.
    pub fn is_ready(&self) -> bool {
        matches!(self.ticket, Some(Ticket::Ready(_)))
    }

    /// Wait until its slot is granted, keeping it (see [`Admission::wait`]); leaves the
    /// admission queue then. Cancel-safe.
    pub async fn ready(&mut self) {
        // Polled in place, so dropping this future midway keeps the place in line.
        if let Some(Ticket::Waiting(rx)) = &mut self.ticket {
            let slot = rx
                .await
                .expect("a pool never drops a waiter without handing it a slot");
            self.ticket = Some(Ticket::Ready(slot));
            self.leave_queue();
        }
    }

    /// Wait for the first slot; leaves the admission queue when granted.
    pub async fn wait(mut self) -> Slot {
        let ticket = self
            .ticket
            .take()
            .expect("an admission holds its ticket until it is consumed");
        let slot = ticket.redeem().await;
        self.leave_queue();
        slot
    }
}

impl Admission {
    fn leave_queue(&mut self) {
        if std::mem::take(&mut self.waiting) {
            self.pool.lock().queued -= 1;
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.leave_queue();
    }
}

/// The right to execute guest code in a pool. Dropping it frees the slot for the next waiter.
#[derive(Debug)]
pub struct Slot {
    pool: Arc<Pool>,
    armed: bool,
}

impl Slot {
    /// The pool this slot belongs to.
    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.armed {
            self.pool.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fail with `what` unless `future` ends within a generous deadline.
    async fn within<F: Future>(what: &str, future: F) -> F::Output {
        tokio::time::timeout(Duration::from_secs(10), future)
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
    }

    /// Spawn a waiter that records its label when it gets a slot, then frees the slot.
    /// Returns once the waiter is in line (its first poll found no free slot).
    async fn waiter(
        pool: &Arc<Pool>,
        class: QueueClass,
        label: &'static str,
        order: &Arc<Mutex<Vec<&'static str>>>,
    ) -> tokio::task::JoinHandle<()> {
        let (pool, order) = (pool.clone(), order.clone());
        let (in_line, queued) = oneshot::channel();
        let task = tokio::spawn(async move {
            let slot = pool.acquire(class);
            tokio::pin!(slot);
            assert!(
                futures::poll!(&mut slot).is_pending(),
                "{label} got a held slot"
            );
            in_line.send(()).unwrap();
            let slot = slot.await;
            order.lock().unwrap().push(label);
            drop(slot);
        });
        within(&format!("{label} in line"), queued)
            .await
            .expect("the waiter ended before getting in line");
        task
    }

    #[tokio::test]
    async fn high_then_resume_then_normal_fifo_within_class() {
        let pool = Pool::new("p", 1, 10);
        let held = pool.acquire(QueueClass::Normal).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (class, label) in [
            (QueueClass::Normal, "n1"),
            (QueueClass::Resume, "r1"),
            (QueueClass::Normal, "n2"),
            (QueueClass::High, "h1"),
            (QueueClass::Resume, "r2"),
        ] {
            tasks.push(waiter(&pool, class, label, &order).await);
        }
        assert_eq!(pool.waiting(), 5);
        drop(held);
        for t in tasks {
            within("every waiter served", t).await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), ["h1", "r1", "r2", "n1", "n2"]);
        assert_eq!(pool.stats().snapshot().peak_running, 1);
    }

    #[tokio::test]
    async fn full_queue_refuses_and_counts() {
        let pool = Pool::new("reporting", 1, 2);
        // The first takes the free slot and never queues; the next two wait.
        let running = pool.admit(QueueClass::Normal).unwrap().wait().await;
        let b = pool.admit(QueueClass::Normal).unwrap();
        let _c = pool.admit(QueueClass::Normal).unwrap();
        assert_eq!((b.queued_at_insert(), pool.queued()), (1, 2));
        let err = pool.admit(QueueClass::Normal).unwrap_err();
        assert_eq!(
            err.to_string(),
            "pool `reporting` queue is full (2 waiting)"
        );
        assert_eq!(pool.stats().snapshot().rejected, 1);
        // A granted admission leaves the queue, making room.
        drop(running);
        let _slot = b.wait().await;
        assert_eq!(pool.queued(), 1);
        assert!(pool.admit(QueueClass::Normal).is_ok());
    }

    #[tokio::test]
    async fn a_resize_hands_out_new_slots_at_once_and_takes_slots_back_as_they_free() {
        let pool = Pool::new("p", 1, 1);
        let first = pool.acquire(QueueClass::Normal).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut a = Box::pin(pool.acquire(QueueClass::Normal));
        let mut b = Box::pin(pool.acquire(QueueClass::Normal));
        assert!(futures::poll!(&mut a).is_pending() && futures::poll!(&mut b).is_pending());
        // Growing to 3 serves both waiters without anyone giving a slot back.
        pool.resize(Some(3), Some(5));
        let (a, b) = (within("a", a).await, within("b", b).await);
        assert_eq!((pool.size(), pool.queue_capacity()), (3, 5));
        assert_eq!(pool.stats().snapshot().running, 3);
        // Shrinking to 1 stops nothing; the slots freed meanwhile are not handed on.
        pool.resize(Some(1), None);
        let c = waiter(&pool, QueueClass::Normal, "c", &order).await;
        drop(a);
        drop(b);
        assert_eq!(pool.stats().snapshot().running, 1);
        assert_eq!(pool.waiting(), 1, "c got a slot while 1 of 1 was held");
        drop(first);
        within("c served once the size allows", c).await.unwrap();
        assert_eq!(*order.lock().unwrap(), ["c"]);
    }

    #[tokio::test]
    async fn a_smaller_queue_refuses_new_starts_and_keeps_the_queued() {
        let pool = Pool::new("p", 1, 3);
        let _running = pool.admit(QueueClass::Normal).unwrap().wait().await;
        let _b = pool.admit(QueueClass::Normal).unwrap();
        let _c = pool.admit(QueueClass::Normal).unwrap();
        pool.resize(None, Some(1));
        assert_eq!(pool.queued(), 2);
        let err = pool.admit(QueueClass::Normal).unwrap_err();
        assert_eq!(err.capacity, 1);
    }

    #[tokio::test]
    async fn abandoned_waiter_does_not_leak_the_slot() {
        let pool = Pool::new("p", 1, 10);
        let held = pool.acquire(QueueClass::Normal).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let gone = waiter(&pool, QueueClass::Normal, "gone", &order).await;
        gone.abort();
        assert!(within("the waiter aborted", gone).await.is_err());
        drop(held);
        // The only slot must be free again.
        let _again = within("the freed slot", pool.acquire(QueueClass::Normal)).await;
        assert_eq!(pool.stats().snapshot().running, 1);
        assert!(order.lock().unwrap().is_empty(), "the aborted waiter ran");
    }
}
