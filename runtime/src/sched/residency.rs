//! Residency: at most `node.max-resident` instances are in memory at once. Starting one more
//! asks the instance parked longest to leave: it is evicted (its store dropped) and rebuilt
//! by replaying its journal when its wait ends. Memory then bounds the resident instances,
//! not the parked ones.
//!
//! Each waiter for a place asks for one departure: a parked instance is asked to leave, or
//! the want stays open for the next instance to park. A place can come from elsewhere first
//! (an instance ends), and which waiter a departure's place goes to is the semaphore's
//! choice; so wants are counted, not matched: open wants never exceed the waiters, and are
//! trimmed only when they do. An over-count costs an eviction; an under-count, a waiter
//! that waits until something ends.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

/// The node's resident places and the parked instances that could give theirs up.
pub struct Residency {
    max: u32,
    permits: Arc<Semaphore>,
    evictable: Mutex<Evictable>,
    peak: AtomicU32,
    evictions: AtomicU64,
}

#[derive(Default)]
struct Evictable {
    /// Parked instances by the order they parked in: the oldest leaves first.
    parked: BTreeMap<u64, oneshot::Sender<()>>,
    next: u64,
    /// Instances waiting for a place.
    waiting: usize,
    /// Departures asked for when nobody was parked: the next instances to park leave at
    /// once. Never more than `waiting`.
    wanted: usize,
}

impl Evictable {
    /// One departure for a waiter: ask the longest-parked instance to leave, or leave the
    /// want for the next instance to park.
    fn ask_departure(&mut self) {
        while let Some((_, leave)) = self.parked.pop_first() {
            if leave.send(()).is_ok() {
                return;
            }
        }
        self.wanted = (self.wanted + 1).min(self.waiting);
    }

    /// A departure asked of an instance that stays: someone else's, while anyone waits.
    fn pass_on(&mut self) {
        if self.waiting > 0 {
            self.ask_departure();
        }
    }
}

/// One instance's place in memory; given back on drop.
pub struct Resident {
    _permit: OwnedSemaphorePermit,
}

/// What a parking instance must do.
pub enum Parking<'a> {
    /// Stay resident, until asked to leave ([`EvictionTicket::asked`]).
    Stay(EvictionTicket<'a>),
    /// Someone waits for a place: leave now (or, when the wait is over already, stay and
    /// pass the departure on).
    Leave(Departure<'a>),
}

/// A departure asked of a parking instance.
#[must_use = "an instance asked to leave either leaves or passes the ask on"]
pub struct Departure<'a> {
    residency: &'a Residency,
}

impl Departure<'_> {
    /// The instance leaves: it is evicted.
    pub fn leave(self) {
        self.residency.evictions.fetch_add(1, Ordering::Relaxed);
    }

    /// The instance stays (its wait is over already): the next one to park, or the one
    /// parked longest, leaves instead.
    pub fn stay(self) {
        self.residency.lock().pass_on();
    }
}

/// A parked instance's registration as evictable; removed on drop. An instance asked to
/// leave that stays all the same (its wait ended at that moment, or it was cancelled) passes
/// the ask on when its ticket drops, so no waiter is forgotten.
pub struct EvictionTicket<'a> {
    residency: &'a Residency,
    key: u64,
    leave: oneshot::Receiver<()>,
}

impl EvictionTicket<'_> {
    /// Ends when this instance is asked to leave: it is evicted then, and counted.
    pub async fn asked(&mut self) {
        // An error means no ask can come any more (the node is going): leave all the same.
        let _ = (&mut self.leave).await;
        self.residency.evictions.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for EvictionTicket<'_> {
    fn drop(&mut self) {
        let mut ev = self.residency.lock();
        if ev.parked.remove(&self.key).is_none() && self.leave.try_recv().is_ok() {
            ev.pass_on();
        }
    }
}

/// A waiter for a place, counted while it waits.
struct Waiting<'a>(&'a Residency);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut ev = self.0.lock();
        ev.waiting -= 1;
        // A place that came from elsewhere leaves its want behind: trim the surplus.
        ev.wanted = ev.wanted.min(ev.waiting);
    }
}

impl Residency {
    /// Places for `max` resident instances.
    pub fn new(max: u32) -> Self {
        Residency {
            max,
            permits: Arc::new(Semaphore::new(max as usize)),
            evictable: Mutex::default(),
            peak: AtomicU32::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Evictable> {
        self.evictable.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place now, if one is free.
    pub fn try_acquire(&self) -> Option<Resident> {
        let permit = self.permits.clone().try_acquire_owned().ok()?;
        self.note_peak();
        Some(Resident { _permit: permit })
    }

    /// A place, evicting the longest-parked instance if none is free. Never hold a pool
    /// slot while waiting here: the slot holders must be able to finish or park.
    pub async fn acquire(&self) -> Resident {
        // The first poll takes a free place, or puts this waiter in the semaphore's queue;
        // only then is a departure asked, so the place it frees goes to a queued waiter.
        // Asked first, it could free before this waiter queued, and a start passing by with
        // `try_acquire` would take it; this waiter would then wait for an end, however many
        // instances park meanwhile.
        let mut permit = std::pin::pin!(self.permits.clone().acquire_owned());
        let at_once = futures::FutureExt::now_or_never(permit.as_mut());
        let _waiting = at_once.is_none().then(|| self.wait());
        // The semaphore is never closed.
        let permit = match at_once {
            Some(p) => p,
            None => permit.await,
        };
        let Ok(permit) = permit else {
            unreachable!("residency semaphore closed")
        };
        self.note_peak();
        Resident { _permit: permit }
    }

    /// Count a waiter and ask a departure for it.
    fn wait(&self) -> Waiting<'_> {
        let mut ev = self.lock();
        ev.waiting += 1;
        ev.ask_departure();
        Waiting(self)
    }

    /// An instance parks: it leaves at once when an eviction is pending, else it registers.
    pub fn park(&self) -> Parking<'_> {
        let mut ev = self.lock();
        if ev.wanted > 0 {
            ev.wanted -= 1;
            return Parking::Leave(Departure { residency: self });
        }
        let key = ev.next;
        ev.next += 1;
        let (tx, leave) = oneshot::channel();
        ev.parked.insert(key, tx);
        Parking::Stay(EvictionTicket {
            residency: self,
            key,
            leave,
        })
    }

    /// Whether every place is taken: the next start or wake-up evicts a parked instance.
    pub fn full(&self) -> bool {
        self.permits.available_permits() == 0
    }

    /// The most instances that may be resident.
    pub fn max(&self) -> u32 {
        self.max
    }

    /// Instances resident now.
    pub fn resident(&self) -> u32 {
        self.max - self.permits.available_permits() as u32
    }

    /// Instances evicted so far.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// The most instances resident at once so far.
    pub fn peak(&self) -> u32 {
        self.peak.load(Ordering::Relaxed)
    }

    fn note_peak(&self) {
        self.peak.fetch_max(self.resident(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::time::Duration;

    use super::*;

    /// Fail with `what` unless `future` ends within a generous deadline.
    async fn within<F: Future>(what: &str, future: F) -> F::Output {
        tokio::time::timeout(Duration::from_secs(10), future)
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
    }

    /// A node of `N` places, every one taken.
    async fn full<const N: usize>() -> (Residency, [Resident; N]) {
        let residency = Residency::new(N as u32);
        let mut places = Vec::new();
        for _ in 0..N {
            places.push(residency.acquire().await);
        }
        let Ok(places) = places.try_into() else {
            unreachable!("N places taken")
        };
        (residency, places)
    }

    /// A start waiting for a place: polled once, so it is queued and asked for a departure.
    fn waiter(residency: &Residency) -> Pin<Box<impl Future<Output = Resident> + '_>> {
        let mut waiter = Box::pin(residency.acquire());
        let polled = futures::FutureExt::now_or_never(waiter.as_mut());
        assert!(polled.is_none(), "a place was free");
        waiter
    }

    /// The instance parking now stays (nobody waits for a place).
    fn stays(residency: &Residency) -> EvictionTicket<'_> {
        match residency.park() {
            Parking::Stay(ticket) => ticket,
            Parking::Leave(_) => panic!("told to leave, with nobody waiting"),
        }
    }

    /// The instance parking now is told to leave; `why` it should be.
    fn leaves<'a>(residency: &'a Residency, why: &str) -> Departure<'a> {
        match residency.park() {
            Parking::Leave(departure) => departure,
            Parking::Stay(_) => panic!("told to stay, but {why}"),
        }
    }

    #[tokio::test]
    async fn a_start_beyond_the_bound_evicts_the_longest_parked() {
        let (residency, [a, b]) = full::<2>().await;
        let mut first = stays(&residency);
        let mut second = stays(&residency);
        let third = waiter(&residency);
        within("the oldest asked to leave", first.asked()).await;
        assert!(second.leave.try_recv().is_err(), "the other stays");
        drop(a); // the evicted one's place
        let _c = within("the evicted one's place", third).await;
        assert_eq!(residency.resident(), 2);
        assert_eq!(residency.peak(), 2);
        drop(b);
    }

    #[tokio::test]
    async fn an_eviction_asked_while_nobody_is_parked_goes_to_the_next_to_park() {
        let (residency, [held]) = full::<1>().await;
        // Its first poll finds no free place and nobody parked: the eviction is left pending.
        let waiter = waiter(&residency);
        assert!(matches!(residency.park(), Parking::Leave(_)));
        drop(held);
        let _got = within("the freed place", waiter).await;
        assert!(matches!(residency.park(), Parking::Stay(_)));
    }

    #[tokio::test]
    async fn every_waiter_keeps_its_departure_when_several_ask_while_nobody_is_parked() {
        let (residency, [a, _b]) = full::<2>().await;
        let first = waiter(&residency);
        let _second = waiter(&residency);
        // One instance leaves for a waiter; then another ends, and the first waiter takes
        // that place: the second waiter's departure must still be asked for.
        assert!(matches!(residency.park(), Parking::Leave(_)));
        drop(a);
        let _first = within("a place for the first waiter", first).await;
        assert!(
            matches!(residency.park(), Parking::Leave(_)),
            "the second waiter's departure was forgotten"
        );
    }

    #[tokio::test]
    async fn a_waiter_served_by_an_end_leaves_no_departure_behind() {
        let (residency, [held]) = full::<1>().await;
        let waiter = waiter(&residency);
        drop(held); // it ended
        let _got = within("the ended one's place", waiter).await;
        assert!(matches!(residency.park(), Parking::Stay(_)));
        assert_eq!(residency.evictions(), 0);
    }

    #[tokio::test]
    async fn an_instance_asked_to_leave_that_stays_passes_the_ask_on() {
        let (residency, [_a, _b]) = full::<2>().await;
        let first = stays(&residency);
        let mut second = stays(&residency);
        let mut waiter = waiter(&residency);
        // The first was asked, but its wait ended as it was: it stays, and the ask moves on.
        drop(first);
        within("the ask passed on", second.asked()).await;
        drop(second);
        // Nobody else is parked: the next to park leaves. Nothing ended, so the waiter waits.
        let third = stays(&residency);
        drop(third);
        assert!(futures::poll!(&mut waiter).is_pending());
    }

    #[tokio::test]
    async fn an_ask_that_finds_nobody_parked_when_passed_on_waits_for_the_next_to_park() {
        let (residency, [_held]) = full::<1>().await;
        let ticket = stays(&residency);
        let _waiter = waiter(&residency);
        drop(ticket); // asked, and stayed
        assert!(matches!(residency.park(), Parking::Leave(_)));
    }

    #[tokio::test]
    async fn an_instance_told_to_leave_whose_wait_is_over_passes_the_departure_on() {
        let (residency, [_held]) = full::<1>().await;
        let _waiter = waiter(&residency);
        let departure = leaves(&residency, "a waiter wants a place");
        departure.stay();
        assert_eq!(residency.evictions(), 0, "nobody left");
        let departure = leaves(&residency, "the departure was not passed on");
        departure.leave();
        assert_eq!(residency.evictions(), 1);
    }

    /// Starts that race through few places, each parked until asked to leave (or leaving at
    /// once when told): every one must get a place. A departure lost anywhere leaves the last
    /// waiter without one, since nothing parked ever leaves unasked.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_starts_through_few_places_all_get_one() {
        let residency = Arc::new(Residency::new(4));
        let placed = Arc::new(AtomicU64::new(0));
        // As on a node, a start tries for a place while it holds one of its pool's slots,
        // and lets the slot go before it waits for one: few wait at a time.
        let slots = Arc::new(Semaphore::new(2));
        let n = 20_000;
        for _ in 0..n {
            let (residency, placed, slots) = (residency.clone(), placed.clone(), slots.clone());
            tokio::spawn(async move {
                let slot = slots.acquire_owned().await;
                let resident = residency.try_acquire();
                drop(slot);
                let resident = match resident {
                    Some(r) => r,
                    None => residency.acquire().await,
                };
                placed.fetch_add(1, Ordering::Relaxed);
                tokio::task::yield_now().await;
                match residency.park() {
                    Parking::Leave(departure) => departure.leave(),
                    Parking::Stay(mut ticket) => ticket.asked().await,
                }
                drop(resident);
            });
            // Starts keep arriving while others wait, as on a node.
            tokio::task::yield_now().await;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while placed.load(Ordering::Relaxed) < n {
            if tokio::time::Instant::now() >= deadline {
                let (waiting, wanted) = {
                    let ev = residency.lock();
                    (ev.waiting, ev.wanted)
                };
                panic!(
                    "{} of {n} starts got a place; {waiting} waiting, {wanted} departures open",
                    placed.load(Ordering::Relaxed)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
