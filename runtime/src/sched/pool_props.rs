//! Properties of a [`Pool`] under random interleavings of admit, resume after a restart,
//! park (give the slot up and ask again as a resumption), preempt, finish, abandon (a
//! waiter dropped) and resize, checked against a model of the rules: a slot is granted only
//! below `size`; waiters are served high, then resumed, then new, first come first served
//! within each class; a full queue refuses; the counters agree.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures::FutureExt;
use proptest::prelude::*;
use proptest::sample::Index;

use super::{Pool, QueueClass, Slot};

#[derive(Debug, Clone)]
enum Op {
    Admit(QueueClass),
    Readmit,
    Park(Index),
    Preempt(Index),
    Finish(Index),
    Abandon(Index),
    Resize(usize, usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop_oneof![Just(QueueClass::High), Just(QueueClass::Normal)].prop_map(Op::Admit),
        1 => Just(Op::Readmit),
        3 => any::<Index>().prop_map(Op::Park),
        1 => any::<Index>().prop_map(Op::Preempt),
        3 => any::<Index>().prop_map(Op::Finish),
        1 => any::<Index>().prop_map(Op::Abandon),
        1 => (1usize..5, 1usize..6).prop_map(|(s, q)| Op::Resize(s, q)),
    ]
}

type Wait = Pin<Box<dyn Future<Output = Slot> + Send>>;

/// A waiter: its future, and whether it holds a place in the admission queue.
struct Waiter {
    wait: Wait,
    admitted: bool,
}

/// The rules, as plain data.
struct Model {
    size: usize,
    capacity: usize,
    held: usize,
    /// Waiter ids by class, dropped ones included (the pool skips them when it gets to them).
    lines: [VecDeque<u64>; 3],
    dropped: BTreeSet<u64>,
    /// Admitted starts (and readmissions) not granted yet, alive.
    queued: usize,
}

impl Model {
    fn has_waiters(&self) -> bool {
        self.lines.iter().any(|l| !l.is_empty())
    }

    /// Whether a new waiter gets a slot at once (else it queues).
    fn free_now(&self) -> bool {
        self.held < self.size && !self.has_waiters()
    }

    /// The waiters granted a slot now, in the order the rules grant them.
    fn hand_out(&mut self) -> Vec<u64> {
        let mut granted = Vec::new();
        for line in &mut self.lines {
            while self.held < self.size {
                let Some(id) = line.pop_front() else { break };
                if !self.dropped.remove(&id) {
                    self.held += 1;
                    granted.push(id);
                }
            }
        }
        granted
    }
}

struct World {
    pool: Arc<Pool>,
    model: Model,
    running: BTreeMap<u64, Slot>,
    waiting: BTreeMap<u64, Waiter>,
    next: u64,
}

impl World {
    fn new(size: usize, capacity: usize) -> Self {
        World {
            pool: Pool::new("p", size, capacity),
            model: Model {
                size,
                capacity,
                held: 0,
                lines: Default::default(),
                dropped: BTreeSet::new(),
                queued: 0,
            },
            running: BTreeMap::new(),
            waiting: BTreeMap::new(),
            next: 0,
        }
    }

    fn pick(map_len: usize, at: &Index) -> Option<usize> {
        (map_len > 0).then(|| at.index(map_len))
    }

    /// Ask for a slot in `class` with `wait` (already holding its place in line when it is
    /// an admission; an `acquire` takes it at its first poll, below): it runs at once or
    /// waits, as the model says.
    fn ask(&mut self, class: QueueClass, wait: Wait, admitted: bool) -> Result<(), TestCaseError> {
        let id = self.next;
        self.next += 1;
        let free = self.model.free_now();
        let mut waiter = Waiter { wait, admitted };
        match (&mut waiter.wait).now_or_never() {
            Some(slot) => {
                prop_assert!(
                    free,
                    "waiter {id} ({class:?}) got a slot the rules keep for others"
                );
                self.model.held += 1;
                self.running.insert(id, slot);
            }
            None => {
                prop_assert!(!free, "waiter {id} ({class:?}) waits while a slot is free");
                self.model.lines[class as usize].push_back(id);
                if admitted {
                    self.model.queued += 1;
                }
                self.waiting.insert(id, waiter);
            }
        }
        Ok(())
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match op {
            Op::Admit(class) => {
                let refuses = !self.model.free_now() && self.model.queued >= self.model.capacity;
                match self.pool.admit(*class) {
                    Ok(admission) => {
                        prop_assert!(!refuses, "admitted beyond the queue's capacity");
                        self.ask(*class, Box::pin(admission.wait()), true)?;
                    }
                    Err(_) => prop_assert!(refuses, "refused with room in the queue"),
                }
            }
            Op::Readmit => {
                let admission = self.pool.readmit();
                self.ask(QueueClass::Resume, Box::pin(admission.wait()), true)?;
            }
            Op::Park(at) | Op::Preempt(at) => {
                let Some(i) = Self::pick(self.running.len(), at) else {
                    return Ok(());
                };
                let id = *self.running.keys().nth(i).expect("picked in range");
                drop(self.running.remove(&id));
                self.model.held -= 1;
                let granted = self.model.hand_out();
                self.settle(granted)?;
                let class = match op {
                    Op::Park(_) => QueueClass::Resume,
                    _ => QueueClass::Normal,
                };
                let pool = self.pool.clone();
                self.ask(
                    class,
                    Box::pin(async move { pool.acquire(class).await }),
                    false,
                )?;
                return Ok(());
            }
            Op::Finish(at) => {
                let Some(i) = Self::pick(self.running.len(), at) else {
                    return Ok(());
                };
                let id = *self.running.keys().nth(i).expect("picked in range");
                drop(self.running.remove(&id));
                self.model.held -= 1;
            }
            Op::Abandon(at) => {
                let Some(i) = Self::pick(self.waiting.len(), at) else {
                    return Ok(());
                };
                let id = *self.waiting.keys().nth(i).expect("picked in range");
                let waiter = self.waiting.remove(&id).expect("picked in range");
                if waiter.admitted {
                    self.model.queued -= 1;
                }
                self.model.dropped.insert(id);
                drop(waiter);
                return Ok(());
            }
            Op::Resize(size, capacity) => {
                self.pool.resize(Some(*size), Some(*capacity));
                self.model.size = *size;
                self.model.capacity = *capacity;
            }
        }
        let granted = self.model.hand_out();
        self.settle(granted)
    }

    /// Poll every waiter: exactly the `expected` ones (as the rules grant) have a slot now.
    fn settle(&mut self, expected: Vec<u64>) -> Result<(), TestCaseError> {
        let mut got = Vec::new();
        for (id, waiter) in &mut self.waiting {
            if let Some(slot) = (&mut waiter.wait).now_or_never() {
                got.push((*id, slot));
            }
        }
        let got_ids: BTreeSet<u64> = got.iter().map(|(id, _)| *id).collect();
        let expected_ids: BTreeSet<u64> = expected.iter().copied().collect();
        prop_assert_eq!(
            &got_ids,
            &expected_ids,
            "granted other waiters than the rules say"
        );
        for (id, slot) in got {
            let waiter = self.waiting.remove(&id).expect("a waiter that was granted");
            if waiter.admitted {
                self.model.queued -= 1;
            }
            self.running.insert(id, slot);
        }
        Ok(())
    }

    fn check_counters(&self) -> Result<(), TestCaseError> {
        let snapshot = self.pool.stats().snapshot();
        prop_assert_eq!(snapshot.running, self.running.len(), "running counter");
        prop_assert_eq!(self.model.held, self.running.len());
        prop_assert_eq!(self.pool.queued(), self.model.queued, "queued counter");
        let lined: usize = self.model.lines.iter().map(VecDeque::len).sum();
        prop_assert_eq!(self.pool.waiting(), lined, "waiters in line");
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn a_pool_follows_its_rules_under_any_interleaving(
        size in 1usize..4,
        capacity in 1usize..5,
        ops in prop::collection::vec(op(), 1..80),
    ) {
        let mut world = World::new(size, capacity);
        for op in &ops {
            let before = world.running.len();
            world.apply(op)?;
            let after = world.running.len();
            // Never more than `size` at once: a slot is only granted below the size (after a
            // shrink the holders above it run on until they give their slots back).
            prop_assert!(
                after <= world.model.size.max(before),
                "{after} running after {op:?} in a pool of {} ({before} before)", world.model.size
            );
            world.check_counters()?;
        }
        let peak = world.pool.stats().snapshot().peak_running;
        let largest = ops.iter().fold(size, |m, op| match op {
            Op::Resize(s, _) => m.max(*s),
            _ => m,
        });
        prop_assert!(peak <= largest, "peak {peak} above every size the pool had ({largest})");
    }
}
