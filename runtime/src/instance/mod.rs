//! One flow instance from admission to its end: attempts (retries), and within an attempt,
//! segments: a store, an instance and one `run` call, replaying the journal first. An
//! instance evicted while parked ends its segment and its episode (its task); a small task
//! waits for what it waited for, then the next episode rebuilds it by replay.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use wasmtime::{Store, UpdateDeadline};

mod end;

pub use end::End;

use crate::engine::Metering;
use crate::host::{
    CancelSignal, EvictedWait, HostState, InstanceInfo, Services, SlotHolder, Starter,
};
use crate::model::{FlowError, IdScheme, Invocation, Origin};
use crate::observe::EventKind;
use crate::replay::{Nondeterminism, PendingRecord, Recorder, take_pending};
use crate::sched::{Admission, Pool, QueueClass, Resident, Slot};
use crate::store::{Entry, StoreError, Write};
use crate::wit;

/// A flow as the node's host runs it.
pub type Flow = crate::engine::RegisteredFlow<HostState>;

/// Why an attempt stopped without output.
enum Stop {
    Failed(FlowError),
    Held(String),
}

/// What one segment (one store and instance) came to.
enum Segment {
    Done(Result<Vec<u8>, Stop>),
    /// Evicted while parked: what it waited for, and when its timed wait (if any) ends.
    Evicted(EvictedWait, Option<tokio::time::Instant>),
}

/// Run an admitted instance to its end and record the end. Never panics on guest
/// behaviour: every trap, error, timeout or instantiation failure ends this instance only.
///
/// The future is boxed, and is the episode's own: the task that runs it holds one pointer,
/// not room for the start (every parked instance would pay for that room).
pub fn run(start: Admitted) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    start.flow.in_flight.fetch_add(1, Ordering::Relaxed);
    // A child whose parent was cancelled while starting it (after the cancellation looked
    // for descendants) cancels itself before any of its code runs.
    let cancelled_parent = match &start.invocation.origin {
        Origin::Subflow(parent) if start.services.is_cancelled(parent) => Some(parent.clone()),
        _ => None,
    };
    let life = Life {
        cancel: start.cancel,
        pending: start.pending.map(|batch| Arc::new(Mutex::new(Some(batch)))),
        pool: start.admission.pool().clone(),
        services: start.services,
        starter: start.starter,
        flow: start.flow,
        invocation: start.invocation,
        input: start.input,
        attempts: start.attempts,
        ids: start.ids,
        admitted: Instant::now(),
        attempt_deadline: None,
        fresh: AtomicBool::new(start.fresh),
        started: false,
        wait_end: None,
    };
    let Some(parent) = cancelled_parent else {
        return life.begin(start.admission);
    };
    Box::pin(async move {
        let (flow, id, pool) = life.labels();
        tracing::info!(flow = %flow, id = %id, pool = %pool, "parent {parent} was cancelled; so is {id}");
        if let Err(e) = life.services.cancel_with(id, false).await {
            tracing::warn!(flow = %flow, id = %id, pool = %pool, "cannot cancel {id} with its parent: {e}");
        }
        life.begin(start.admission).await;
    })
}

/// An instance admitted to a pool, as [`run`] takes it.
pub struct Admitted {
    /// Its cancellation signal, from registering its id with the node's cancellations
    /// (before its record was written, so a cancellation that finds the record finds it).
    pub cancel: CancelSignal,
    /// What every instance of the node shares.
    pub services: Arc<Services>,
    /// How its children are started: the node.
    pub starter: Arc<dyn Starter>,
    /// The flow, on the build the instance is pinned to.
    pub flow: Arc<Flow>,
    /// Its place in the pool's queue.
    pub admission: Admission,
    /// What the guest is told about itself.
    pub invocation: Invocation,
    /// Its input.
    pub input: Vec<u8>,
    /// Failed attempts in earlier lives of the node.
    pub attempts: u32,
    /// How it derives its children's ids (as its stored start says).
    pub ids: IdScheme,
    /// Just created: its journal is empty.
    pub fresh: bool,
    /// Its record, when not written yet (see [`PendingRecord`]).
    pub pending: Option<Vec<Write>>,
}

/// Everything an instance needs between its episodes: while it is evicted this (and the
/// wait it left) is all that is kept of it.
struct Life {
    services: Arc<Services>,
    /// Fires when the instance is cancelled: whatever it is doing then stops.
    cancel: CancelSignal,
    starter: Arc<dyn Starter>,
    flow: Arc<Flow>,
    invocation: Invocation,
    input: Vec<u8>,
    pool: Arc<Pool>,
    /// Failed attempts so far.
    attempts: u32,
    /// How it derives its children's ids.
    ids: IdScheme,
    admitted: Instant,
    /// When the current attempt times out (its start plus the flow's or pool's timeout).
    attempt_deadline: Option<tokio::time::Instant>,
    /// Set until the first segment: the journal is known to be empty.
    fresh: AtomicBool,
    /// Whether it got its first slot.
    started: bool,
    /// When the timed wait it was evicted in ends (monotonic): the rebuild waits the rest.
    wait_end: Option<tokio::time::Instant>,
    /// Its record, until something makes it go to the store.
    pending: PendingRecord,
}

/// What a segment starts from (see [`Life::take_places`]).
struct Ready {
    slot: Slot,
    /// Held for the whole segment.
    resident: Resident,
    recorded: Result<Vec<Entry>, StoreError>,
    first_life: bool,
}

/// How an episode ended.
enum Episode {
    End(End),
    Evicted(EvictedWait),
}

impl Life {
    /// The first episode at once when a slot and a place in memory are free; else a small
    /// task waits for them first (see [`Life::queued`]).
    fn begin(self, admission: Admission) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        if admission.is_ready()
            && let Some(resident) = self.services.residency.try_acquire()
        {
            return self.episode(Some(admission), Some(resident));
        }
        Box::pin(self.queued(admission))
    }

    /// A start that waits for its slot, then for a place in memory if none is free, holding
    /// only what it will need: a backlog of a million queued starts then costs a million of
    /// these, not a million episodes (an episode's future is over a KiB). The episode is
    /// spawned once both are there, and this task ends.
    async fn queued(self, mut admission: Admission) {
        let cancel = self.cancel.clone();
        let executor = self.services.pools.executor(self.pool.name()).handle();
        let turn = tokio::select! {
            biased;
            // The episode ends it at once as cancelled, holding nothing.
            () = cancel.fired() => false,
            () = admission.ready() => true,
        };
        if !turn {
            executor.spawn(self.episode(None, None));
            return;
        }
        if let Some(resident) = self.services.residency.try_acquire() {
            executor.spawn(self.episode(Some(admission), Some(resident)));
            return;
        }
        // Never wait for a place in memory while holding a slot (see `segment_with_slot`):
        // the episode takes one again, as a resumption does.
        drop(admission);
        let resident = tokio::select! {
            biased;
            () = cancel.fired() => None,
            // Boxed: only a start that meets a full node pays for this wait.
            resident = Box::pin(self.services.residency.acquire()) => Some(resident),
        };
        executor.spawn(self.episode(None, resident));
    }

    /// One episode: resident from a slot until the instance ends or is evicted. An evicted
    /// instance leaves only a small task behind, which waits and then starts the next episode.
    /// `resident`: a place in memory taken already (by the waiting task of an evicted one).
    fn episode(
        mut self,
        admission: Option<Admission>,
        resident: Option<Resident>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            // Cancelled: dropping the attempts drops whatever they hold (a queue place, a
            // slot, the store and its guest, a wait), as a timeout does.
            let cancel = self.cancel.clone();
            let episode = tokio::select! {
                biased;
                () = cancel.fired() => Episode::End(End::Failed(FlowError::Cancelled)),
                episode = self.attempts(admission, resident) => episode,
            };
            match episode {
                // Boxed, here and below: a task holds no room for its end until it ends.
                Episode::End(end) => Box::pin(self.conclude(end)).await,
                Episode::Evicted(wait) => {
                    let executor = self.services.pools.executor(self.pool.name()).handle();
                    // Past its deadline the next episode times out at once. (Decided here, so
                    // the waiting task below holds one boxed future, not room for both.)
                    let wait: EvictedWait = match self.attempt_deadline {
                        Some(d) => Box::pin(async move {
                            let _ = tokio::time::timeout_at(d, wait).await;
                        }),
                        None => wait,
                    };
                    executor.clone().spawn(async move {
                        self.pool.stats().parked();
                        let cancel = self.cancel.clone();
                        let woke = tokio::select! {
                            biased;
                            () = cancel.fired() => false,
                            () = wait => true,
                        };
                        self.pool.stats().unparked();
                        if !woke {
                            let end = End::Failed(FlowError::Cancelled);
                            Box::pin(self.conclude(end)).await;
                            return;
                        }
                        // The place in memory first: until it has one, only this small task
                        // exists, however many evicted instances wake at once.
                        // Boxed: the waiting task holds no room for this until it wakes.
                        let resident = Box::pin(self.services.residency.acquire()).await;
                        executor.spawn(self.episode(None, Some(resident)));
                    });
                }
            }
        })
    }

    /// What every log line of this instance names: its flow, id and pool. (Fields on the
    /// few lines it logs, not a span around it: a span per instance cost more than a
    /// trivial flow's whole run in the node, measured by `sluice bench --only core`.)
    fn labels(&self) -> (&str, &str, &str) {
        (&self.flow.name, &self.invocation.id, self.pool.name())
    }

    /// Attempts until one completes, the retry policy gives up, the instance is held, or it
    /// is evicted.
    async fn attempts(
        &mut self,
        mut admission: Option<Admission>,
        mut resident: Option<Resident>,
    ) -> Episode {
        loop {
            let limit = self.flow.settings.timeout.or(self.pool.timeout());
            if self.attempt_deadline.is_none() {
                self.attempt_deadline = limit.map(|l| tokio::time::Instant::now() + l);
            }
            let deadline = self.attempt_deadline;
            let work = self.segment_with_slot(admission.take(), resident.take());
            let result = match deadline {
                None => Some(work.await),
                // Dropping the work on time-out drops the store: the instance and its slot go.
                // Boxed: without a time limit (the usual case) the attempt holds no timer.
                Some(deadline) => Box::pin(tokio::time::timeout_at(deadline, work)).await.ok(),
            };
            let result = result.unwrap_or_else(|| {
                let (flow, id, pool) = self.labels();
                tracing::error!(
                    flow = %flow, id = %id, pool = %pool,
                    "flow `{}` instance {} in pool `{}` timed out after {:.3}s (limit {})",
                    self.flow.name,
                    self.invocation.id,
                    self.pool.name(),
                    self.admitted.elapsed().as_secs_f64(),
                    humantime::format_duration(limit.unwrap_or_default())
                );
                Segment::Done(Err(Stop::Failed(FlowError::TimedOut)))
            });
            let error = match result {
                Segment::Evicted(wait, wait_end) => {
                    self.wait_end = wait_end;
                    return Episode::Evicted(wait);
                }
                Segment::Done(Ok(output)) => return Episode::End(End::Completed(output)),
                Segment::Done(Err(Stop::Held(why))) => return Episode::End(End::Held(why)),
                Segment::Done(Err(Stop::Failed(e))) => e,
            };
            let Some(policy) = self.flow.settings.retry else {
                return Episode::End(End::Failed(error));
            };
            self.attempts += 1;
            self.attempt_deadline = None;
            let (id, attempts) = (self.invocation.id.clone(), self.attempts);
            let mut batch = take_pending(&self.pending).unwrap_or_default();
            batch.push(Write::Attempted { id, attempts });
            // Boxed, as the sleep below: only a failed attempt needs their room.
            if let Err(e) = Box::pin(self.services.journal.write(batch)).await {
                let (flow, id, pool) = self.labels();
                tracing::error!(flow = %flow, id = %id, pool = %pool, "cannot record attempt {attempts}: {e}");
            }
            if attempts >= policy.attempts {
                return Episode::End(End::Held(format!(
                    "retries exhausted: {attempts} attempts failed, the last with: {error}"
                )));
            }
            let backoff = policy.backoff(attempts);
            let (flow, id, pool) = self.labels();
            tracing::warn!(
                flow = %flow, id = %id, pool = %pool,
                "attempt {attempts} of {} failed ({error}); retrying from the journal in {}",
                policy.attempts,
                humantime::format_duration(backoff)
            );
            Box::pin(tokio::time::sleep(backoff)).await;
        }
    }

    /// A slot (the admission's first, else as a resumption) and a place in memory, then one
    /// segment.
    async fn segment_with_slot(
        &mut self,
        admission: Option<Admission>,
        resident: Option<Resident>,
    ) -> Segment {
        // Boxed, and over before the guest runs: a parked instance keeps no room for the
        // journal read and the waits for a slot and a place (this future is part of every
        // episode's, which lives as long as the instance is resident).
        let ready = Box::pin(self.take_places(admission, resident)).await;
        let Ready {
            slot,
            resident: _resident,
            recorded,
            first_life,
        } = ready;
        // Boxed: only a running segment needs the room a call into the guest takes.
        Box::pin(self.segment(slot, recorded, first_life)).await
    }

    /// The journal to replay, a slot and a place in memory: what a segment needs first.
    async fn take_places(
        &mut self,
        admission: Option<Admission>,
        resident: Option<Resident>,
    ) -> Ready {
        let services = self.services.clone();
        let pool = self.pool.clone();
        // The journal to replay, read before taking a slot: the wait for earlier writes to
        // commit must not hold one.
        let first_life = self.fresh.swap(false, Ordering::Relaxed);
        let recorded = if first_life {
            Ok(Vec::new())
        } else {
            let journal = &services.journal;
            match journal.sync().await {
                Ok(()) => journal.store().journal(&self.invocation.id),
                Err(e) => Err(e),
            }
        };
        let slot = match admission {
            Some(admission) => admission.wait().await,
            None => pool.acquire(QueueClass::Resume).await,
        };
        // Never wait for a place in memory while holding a slot: slot holders must be able
        // to finish or park, or everyone could wait on everyone.
        let (slot, resident) = match resident.or_else(|| services.residency.try_acquire()) {
            Some(resident) => (slot, resident),
            None => {
                drop(slot);
                let resident = services.residency.acquire().await;
                (pool.acquire(QueueClass::Resume).await, resident)
            }
        };
        if !self.started {
            self.started = true;
            pool.stats().started();
            services
                .metrics
                .started(pool.name(), self.admitted.elapsed());
            services.events.send(
                &self.invocation.id,
                &self.flow.name,
                pool.name(),
                EventKind::Started,
            );
        }
        Ready {
            slot,
            resident,
            recorded,
            first_life,
        }
    }

    /// Record the end, count it, and tell whoever waits.
    async fn conclude(self, end: End) {
        let (services, flow, pool) = (&self.services, &self.flow, &self.pool);
        let label = match &end {
            End::Completed(_) => "completed",
            End::Failed(FlowError::TimedOut) => "timed-out",
            End::Failed(FlowError::Cancelled) => "cancelled",
            End::Failed(_) => "failed",
            End::Held(_) => "held",
        };
        pool.stats().finished(matches!(end, End::Completed(_)));
        flow.in_flight.fetch_sub(1, Ordering::Relaxed);
        services
            .metrics
            .finished(&flow.name, pool.name(), label, self.admitted.elapsed());
        let (name, id, pool_name) = self.labels();
        match &end {
            End::Completed(out) => {
                tracing::debug!(flow = %name, id = %id, pool = %pool_name, bytes = out.len(), "completed")
            }
            End::Failed(FlowError::TimedOut) => {}
            End::Failed(FlowError::Cancelled) => {
                tracing::debug!(flow = %name, id = %id, pool = %pool_name, "cancelled")
            }
            End::Failed(e) => tracing::warn!(flow = %name, id = %id, pool = %pool_name, "{e}"),
            End::Held(why) => tracing::error!(
                flow = %name, id = %id, pool = %pool_name,
                "flow `{}` instance {} is held in the flow hospital: {why}",
                flow.name,
                self.invocation.id
            ),
        }
        let kind = match end {
            End::Held(_) => EventKind::Held,
            _ => EventKind::Finished,
        };
        let child = matches!(self.invocation.origin, Origin::Subflow(_));
        let pending = take_pending(&self.pending).unwrap_or_default();
        end::conclude(services, &self.invocation.id, end, child, pending).await;
        services
            .events
            .send(&self.invocation.id, &flow.name, pool.name(), kind);
        services.cancels.forget(&self.invocation.id);
    }

    /// The store of one segment: the host state over the journal `recorded`, with the
    /// engine's metering set up.
    fn store(
        &self,
        slot: Slot,
        recorded: Result<Vec<Entry>, StoreError>,
        first_life: bool,
    ) -> Result<Store<HostState>, Stop> {
        let services = &self.services;
        let failed = |e: String| Stop::Failed(FlowError::Failed(e));
        let recorded = match recorded {
            Ok(entries) => entries,
            // A journal this build cannot read is held for an operator: replaying a guess
            // could redo what the instance did.
            Err(StoreError::Decode(why)) => {
                return Err(Stop::Held(format!("its journal cannot be read: {why}")));
            }
            Err(e) => return Err(failed(e.to_string())),
        };
        let recorder = Recorder::new(&self.invocation.id, services.journal.clone(), recorded)
            .with_pending(self.pending.clone())
            .in_first_life(first_life)
            .resuming_wait(self.wait_end);
        let info = InstanceInfo {
            id: self.invocation.id.clone(),
            flow: self.flow.name.clone(),
            priority: self.invocation.priority,
            ids: self.ids,
            peer: match &self.invocation.origin {
                Origin::Peer(party) => Some(party.clone()),
                _ => None,
            },
        };
        let holder = SlotHolder::new(slot);
        let state = HostState::new(
            services.clone(),
            self.starter.clone(),
            info,
            self.pool.clone(),
            holder,
            &self.flow.settings,
            recorder,
        )
        .map_err(failed)?;
        // The engine of the component's size class (see `engine::LARGE_COMPONENT_BYTES`).
        let mut store = Store::new(self.flow.component.pre.engine(), state);
        store.limiter(|state| state.meter());
        match services.engine.metering() {
            Metering::Epoch => {
                store.set_epoch_deadline(1);
                store.epoch_deadline_callback(time_slice);
            }
            Metering::Fuel => {
                store
                    .set_fuel(u64::MAX)
                    .and_then(|()| store.fuel_async_yield_interval(Some(10_000_000)))
                    .map_err(|e| failed(e.to_string()))?;
            }
            Metering::Off => {}
        }
        Ok(store)
    }

    /// One store and instance: replay the journal, then run live until the end or an eviction.
    async fn segment(
        &self,
        slot: Slot,
        recorded: Result<Vec<Entry>, StoreError>,
        first_life: bool,
    ) -> Segment {
        // Built outside this future: a parked instance's segment then holds no room for
        // the host state (over a KiB) that moved into the store.
        let mut store = match self.store(slot, recorded, first_life) {
            Ok(store) => store,
            Err(stop) => return Segment::Done(Err(stop)),
        };
        let outcome = execute(&mut store, &self.flow, &self.invocation, &self.input).await;
        let failed = |e: String| Segment::Done(Err(Stop::Failed(FlowError::Failed(e))));
        let state = store.data_mut();
        if let Some(wait) = state.take_evicted_wait() {
            return Segment::Evicted(wait, state.wait_end());
        }
        if let Err(Failure::Trapped(e)) = &outcome
            && let Some(n) = e.downcast_ref::<Nondeterminism>()
        {
            return Segment::Done(Err(Stop::Held(n.to_string())));
        }
        if let Some(exceeded) = state.meter().exceeded() {
            // A broken limit explains the failure better than the trap it caused.
            return failed(exceeded.to_string());
        }
        let output = match outcome {
            Ok(output) => output,
            Err(e) => return Segment::Done(Err(Stop::Failed(explain(e, state.stderr_tail())))),
        };
        if let Some(n) = state.recorder().leftover() {
            return Segment::Done(Err(Stop::Held(n.to_string())));
        }
        if let Err(e) = state.meter().check_output(output.len()) {
            return failed(e.to_string());
        }
        Segment::Done(Ok(output))
        // The store drops here: the instance and its slot are freed before anyone learns the outcome.
    }
}

/// Why `execute` produced no output, before it is explained to the parent.
enum Failure {
    /// The guest returned `err(message)`.
    Returned(String),
    /// The guest trapped, or could not be instantiated.
    Trapped(wasmtime::Error),
}

async fn execute(
    store: &mut Store<HostState>,
    flow: &Flow,
    invocation: &Invocation,
    input: &[u8],
) -> Result<Vec<u8>, Failure> {
    // Boxed: instantiating takes far more room than the call, and a parked instance should
    // not keep that room.
    let instance = Box::pin(crate::engine::instantiate(&flow.component.pre, store))
        .await
        .map_err(Failure::Trapped)?;
    // Made after instantiation, so it shares room with the instantiation's future.
    let invocation = wit::types::Invocation::from(invocation);
    match instance.call_run(&mut *store, &invocation, input).await {
        Ok(Ok(output)) => Ok(output),
        Ok(Err(message)) => Err(Failure::Returned(message)),
        Err(trap) => Err(Failure::Trapped(trap)),
    }
}

fn explain(failure: Failure, stderr: Option<String>) -> FlowError {
    match failure {
        Failure::Returned(message) => FlowError::Failed(message),
        Failure::Trapped(e) => {
            let cause = match e.downcast_ref::<wasmtime::Trap>() {
                Some(trap) => trap.to_string(),
                None => format!("{:#}", e),
            };
            FlowError::Failed(match stderr {
                Some(line) => format!("{cause} ({line})"),
                None => cause,
            })
        }
    }
}

/// At every epoch tick: let the executor run other tasks, and when others wait for this
/// pool, give up the slot and queue behind them (a time slice, so a CPU-bound flow
/// cannot starve its pool).
fn time_slice(
    mut store: wasmtime::StoreContextMut<'_, HostState>,
) -> wasmtime::Result<UpdateDeadline> {
    let state = store.data_mut();
    // Running past a CPU limit ends the instance here; the meter remembers which limit.
    state.meter().tick()?;
    let pool = state.pool().clone();
    if !pool.preempts() || !pool.has_waiters() {
        return Ok(UpdateDeadline::Yield(1));
    }
    pool.note_preempted();
    let holder = state.slot().clone();
    holder.release();
    Ok(UpdateDeadline::YieldCustom(
        1,
        Box::pin(async move {
            holder.put(pool.acquire(QueueClass::Normal).await);
        }),
    ))
}
