//! Residency: at most `node.max-resident` instances are in memory at once. Starting one more
//! asks the instance parked longest to leave: it is evicted (its store dropped) and rebuilt
//! by replaying its journal when its wait ends. Memory then bounds the resident instances,
//! not the parked ones.

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
    /// Evictions asked for when nobody was parked: the next instances to park leave at once.
    wanted: usize,
}

/// One instance's place in memory; given back on drop.
pub struct Resident {
    _permit: OwnedSemaphorePermit,
}

/// What a parking instance must do.
pub enum Parking<'a> {
    /// Stay resident, unless the receiver fires: then leave.
    Stay(EvictionTicket<'a>),
    /// Someone waits for a place: leave now.
    Leave,
}

/// A parked instance's registration as evictable; removed on drop.
pub struct EvictionTicket<'a> {
    residency: &'a Residency,
    key: u64,
    /// Fires when this instance is asked to leave.
    pub leave: oneshot::Receiver<()>,
}

impl Drop for EvictionTicket<'_> {
    fn drop(&mut self) {
        self.residency.lock().parked.remove(&self.key);
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
        if let Some(r) = self.try_acquire() {
            return r;
        }
        let counted = self.request_eviction();
        // The semaphore is never closed.
        let permit = match self.permits.clone().acquire_owned().await {
            Ok(p) => p,
            Err(_) => unreachable!("residency semaphore closed"),
        };
        if counted {
            // Someone else's exit made room first: take back the eviction we asked for.
            let mut ev = self.lock();
            ev.wanted = ev.wanted.saturating_sub(1);
        }
        self.note_peak();
        Resident { _permit: permit }
    }

    /// Ask the longest-parked instance to leave; returns true when nobody was parked and
    /// the request was left for the next instance to park.
    fn request_eviction(&self) -> bool {
        let mut ev = self.lock();
        while let Some((_, leave)) = ev.parked.pop_first() {
            if leave.send(()).is_ok() {
                self.evictions.fetch_add(1, Ordering::Relaxed);
                return false;
            }
        }
        ev.wanted += 1;
        true
    }

    /// An instance parks: it leaves at once when an eviction is pending, else it registers.
    pub fn park(&self) -> Parking<'_> {
        let mut ev = self.lock();
        if ev.wanted > 0 {
            ev.wanted -= 1;
            self.evictions.fetch_add(1, Ordering::Relaxed);
            return Parking::Leave;
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
    use std::time::Duration;

    use super::*;

    /// Fail with `what` unless `future` ends within a generous deadline.
    async fn within<F: Future>(what: &str, future: F) -> F::Output {
        tokio::time::timeout(Duration::from_secs(10), future)
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
    }

    #[tokio::test]
    async fn a_start_beyond_the_bound_evicts_the_longest_parked() {
        let residency = Residency::new(2);
        let a = residency.acquire().await;
        let b = residency.acquire().await;
        let Parking::Stay(mut first) = residency.park() else {
            panic!("nobody waits yet")
        };
        let Parking::Stay(mut second) = residency.park() else {
            panic!("nobody waits yet")
        };
        let third = residency.acquire();
        tokio::pin!(third);
        assert!(futures::poll!(&mut third).is_pending());
        assert!(
            within("the oldest asked to leave", &mut first.leave)
                .await
                .is_ok(),
            "oldest asked to leave"
        );
        assert!(second.leave.try_recv().is_err(), "the other stays");
        drop(a); // the evicted one's place
        let _c = within("the evicted one's place", third).await;
        assert_eq!(residency.resident(), 2);
        assert_eq!(residency.peak(), 2);
        drop(b);
    }

    #[tokio::test]
    async fn an_eviction_asked_while_nobody_is_parked_goes_to_the_next_to_park() {
        let residency = Residency::new(1);
        let held = residency.acquire().await;
        let waiter = residency.acquire();
        tokio::pin!(waiter);
        // Its first poll finds no free place and nobody parked: the eviction is left pending.
        assert!(futures::poll!(&mut waiter).is_pending());
        assert!(matches!(residency.park(), Parking::Leave));
        drop(held);
        let _got = within("the freed place", waiter).await;
        assert!(matches!(residency.park(), Parking::Stay(_)));
    }
}
