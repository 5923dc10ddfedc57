//! One flow instance from admission to its end: attempts (retries), and within an attempt,
//! segments: a store, an instance and one `run` call, replaying the journal first. An
//! instance evicted while parked ends its segment; the next one rebuilds it by replay.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tracing::Instrument;
use wasmtime::{Store, UpdateDeadline};

use crate::bindings::Invocation;
use crate::bindings::sluice::flow::types::Origin;
use crate::engine::Metering;
use crate::error::FlowError;
use crate::events::EventKind;
use crate::host::{EvictedWait, HostState, InstanceInfo, Parked, SlotHolder};
use crate::journal::Write;
use crate::node::Node;
use crate::recorder::{Nondeterminism, Recorder};
use crate::registry::RegisteredFlow;
use crate::scheduler::{Admission, Pool, QueueClass, Slot};

/// How an instance's run ended.
#[derive(Debug)]
pub(crate) enum End {
    /// It returned output.
    Completed(Vec<u8>),
    /// It failed, with no retries left to try (or no retry policy).
    Failed(FlowError),
    /// It is held in the flow hospital for an operator; the message says why.
    Held(String),
}

/// Why an attempt stopped without output.
enum Stop {
    Failed(FlowError),
    Held(String),
}

/// What one segment (one store and instance) came to.
enum Segment {
    Done(Result<Vec<u8>, Stop>),
    Evicted(EvictedWait),
}

/// Run an admitted instance to its end and record the end. Never panics on guest
/// behaviour: every trap, error, timeout or instantiation failure ends this instance only.
/// `attempts` counts the failed attempts of earlier lives of the node; `fresh` says the
/// instance was just created, so its journal is empty.
pub(crate) async fn run(
    node: Node,
    flow: Arc<RegisteredFlow>,
    admission: Admission,
    invocation: Invocation,
    input: Vec<u8>,
    attempts: u32,
    fresh: bool,
) {
    let pool = admission.pool().clone();
    let admitted = Instant::now();
    let span =
        tracing::info_span!("flow", flow = %flow.name, id = %invocation.id, pool = %pool.name());
    async move {
        let run = Run {
            node: &node,
            flow: &flow,
            invocation: &invocation,
            input: &input,
            pool: pool.clone(),
            admitted,
            fresh: AtomicBool::new(fresh),
        };
        let end = run.attempts(admission, attempts).await;
        let label = match &end {
            End::Completed(_) => "completed",
            End::Failed(FlowError::TimedOut) => "timed-out",
            End::Failed(FlowError::Cancelled) => "cancelled",
            End::Failed(_) => "failed",
            End::Held(_) => "held",
        };
        pool.stats().finished(matches!(end, End::Completed(_)));
        node.metrics()
            .finished(&flow.name, pool.name(), label, admitted.elapsed());
        match &end {
            End::Completed(out) => tracing::debug!(bytes = out.len(), "completed"),
            End::Failed(FlowError::TimedOut) => {}
            End::Failed(e) => tracing::warn!("{e}"),
            End::Held(why) => tracing::error!(
                "flow `{}` instance {} is held in the flow hospital: {why}",
                flow.name,
                invocation.id
            ),
        }
        let kind = match end {
            End::Held(_) => EventKind::Held,
            _ => EventKind::Finished,
        };
        let child = matches!(invocation.origin, Origin::Subflow(_));
        node.conclude(&invocation.id, end, child).await;
        node.events()
            .send(&invocation.id, &flow.name, pool.name(), kind);
    }
    .instrument(span)
    .await
}

/// One instance's run: what every attempt and segment needs.
struct Run<'a> {
    node: &'a Node,
    flow: &'a Arc<RegisteredFlow>,
    invocation: &'a Invocation,
    input: &'a [u8],
    pool: Arc<Pool>,
    admitted: Instant,
    /// Set until the first segment: the journal is known to be empty.
    fresh: AtomicBool,
}

impl Run<'_> {
    /// Attempts until one completes, the retry policy gives up, or the instance is held.
    async fn attempts(&self, admission: Admission, mut attempts: u32) -> End {
        let pool = admission.pool().clone();
        let mut first = Some(admission);
        loop {
            let work = self.segments(&mut first);
            let result = match self.flow.settings.timeout.or(pool.timeout()) {
                None => work.await,
                Some(limit) => match tokio::time::timeout(limit, work).await {
                    Ok(result) => result,
                    Err(_) => {
                        // Dropping the work dropped the store: the instance and its slot are gone.
                        tracing::error!(
                            "flow `{}` instance {} in pool `{}` timed out after {:.3}s (limit {})",
                            self.flow.name,
                            self.invocation.id,
                            pool.name(),
                            self.admitted.elapsed().as_secs_f64(),
                            humantime::format_duration(limit)
                        );
                        Err(Stop::Failed(FlowError::TimedOut))
                    }
                },
            };
            let error = match result {
                Ok(output) => return End::Completed(output),
                Err(Stop::Held(why)) => return End::Held(why),
                Err(Stop::Failed(e)) => e,
            };
            let Some(policy) = self.flow.settings.retry else {
                return End::Failed(error);
            };
            attempts += 1;
            let id = self.invocation.id.clone();
            if let Err(e) = self
                .node
                .journal()
                .write(vec![Write::Attempted { id, attempts }])
                .await
            {
                tracing::error!("cannot record attempt {attempts}: {e}");
            }
            if attempts >= policy.attempts {
                return End::Held(format!(
                    "retries exhausted: {attempts} attempts failed, the last with: {error}"
                ));
            }
            let backoff = policy.backoff(attempts);
            tracing::warn!(
                "attempt {attempts} of {} failed ({error}); retrying from the journal in {}",
                policy.attempts,
                humantime::format_duration(backoff)
            );
            tokio::time::sleep(backoff).await;
        }
    }

    /// Segments until the instance ends: after an eviction, wait parked and rebuild.
    async fn segments(&self, first: &mut Option<Admission>) -> Result<Vec<u8>, Stop> {
        let node = self.node;
        loop {
            let fresh = first.is_some();
            let (pool, slot) = match first.take() {
                Some(admission) => {
                    let pool = admission.pool().clone();
                    (pool, admission.wait().await)
                }
                None => {
                    let pool = self.pool.clone();
                    let slot = pool.acquire(QueueClass::Resume).await;
                    (pool, slot)
                }
            };
            // Never wait for a place in memory while holding a slot: slot holders must be
            // able to finish or park, or everyone could wait on everyone.
            let (slot, _resident) = match node.residency().try_acquire() {
                Some(resident) => (slot, resident),
                None => {
                    drop(slot);
                    let resident = node.residency().acquire().await;
                    (pool.acquire(QueueClass::Resume).await, resident)
                }
            };
            if fresh {
                pool.stats().started();
                node.metrics().started(pool.name(), self.admitted.elapsed());
                node.events().send(
                    &self.invocation.id,
                    &self.flow.name,
                    pool.name(),
                    EventKind::Started,
                );
            }
            // Boxed: an evicted instance waiting below keeps only this loop's small state,
            // not the room a running instance's call needs.
            match Box::pin(self.segment(slot)).await {
                Segment::Done(result) => return result,
                Segment::Evicted(wait) => {
                    let _parked = Parked::new(&pool);
                    drop(_resident);
                    wait.await;
                }
            }
        }
    }

    /// One store and instance: replay the journal, then run live until the end or an eviction.
    async fn segment(&self, slot: Slot) -> Segment {
        let node = self.node;
        let failed = |e: String| Segment::Done(Err(Stop::Failed(FlowError::Failed(e))));
        let recorded = if self.fresh.swap(false, Ordering::Relaxed) {
            Vec::new()
        } else {
            // What this instance queued before must be readable: wait until it is committed.
            let journal = node.journal();
            match journal
                .sync()
                .await
                .and_then(|()| journal.store().journal(&self.invocation.id))
            {
                Ok(entries) => entries,
                Err(e) => return failed(e.to_string()),
            }
        };
        let recorder = Recorder::new(&self.invocation.id, node.journal().clone(), recorded);
        let info = InstanceInfo {
            id: self.invocation.id.clone(),
            flow: self.flow.name.clone(),
            priority: self.invocation.priority,
        };
        let holder = SlotHolder::new(slot);
        let state = match HostState::new(
            node.clone(),
            info,
            self.pool.clone(),
            holder,
            &self.flow.settings,
            recorder,
        ) {
            Ok(state) => state,
            Err(e) => return failed(e),
        };
        // The engine of the component's size class (see `engine::LARGE_COMPONENT_BYTES`).
        let mut store = Store::new(self.flow.component.pre.engine(), state);
        store.limiter(|state| state.meter());
        match node.engine().metering() {
            Metering::Epoch => {
                store.set_epoch_deadline(1);
                store.epoch_deadline_callback(time_slice);
            }
            Metering::Fuel => {
                let fuel = store
                    .set_fuel(u64::MAX)
                    .and_then(|()| store.fuel_async_yield_interval(Some(10_000_000)));
                if let Err(e) = fuel {
                    return failed(e.to_string());
                }
            }
            Metering::Off => {}
        }
        let outcome = execute(&mut store, self.flow, self.invocation, self.input).await;
        let state = store.data_mut();
        if let Some(wait) = state.take_evicted_wait() {
            return Segment::Evicted(wait);
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
    flow: &RegisteredFlow,
    invocation: &Invocation,
    input: &[u8],
) -> Result<Vec<u8>, Failure> {
    let instance = flow
        .component
        .pre
        .instantiate_async(&mut *store)
        .await
        .map_err(Failure::Trapped)?;
    match instance.call_run(&mut *store, invocation, input).await {
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
