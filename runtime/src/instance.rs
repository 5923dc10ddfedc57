//! One flow instance from its first slot to its outcome: a store, an instance, one `run` call.

use std::sync::Arc;
use std::time::Instant;

use tracing::Instrument;
use wasmtime::{Store, UpdateDeadline};

use crate::bindings::Invocation;
use crate::engine::Metering;
use crate::error::FlowError;
use crate::events::EventKind;
use crate::host::{HostState, InstanceInfo, SlotHolder};
use crate::node::{Node, Outcome};
use crate::registry::RegisteredFlow;
use crate::scheduler::{Admission, QueueClass};

/// Run an admitted instance to its end. Never panics on guest behaviour: every trap,
/// error, timeout or instantiation failure becomes a [`FlowError`] of this instance only.
pub(crate) async fn run(
    node: Node,
    flow: Arc<RegisteredFlow>,
    admission: Admission,
    invocation: Invocation,
    input: Vec<u8>,
) -> Outcome {
    let pool = admission.pool().clone();
    let admitted = Instant::now();
    let span =
        tracing::info_span!("flow", flow = %flow.name, id = %invocation.id, pool = %pool.name());
    async move {
        let work = run_admitted(&node, &flow, admission, &invocation, input, admitted);
        let outcome = match flow.settings.timeout.or(pool.timeout()) {
            None => work.await,
            Some(limit) => match tokio::time::timeout(limit, work).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    // Dropping the work dropped the store: the instance and its slot are gone.
                    let elapsed = admitted.elapsed();
                    tracing::error!(
                        "flow `{}` instance {} in pool `{}` timed out after {:.3}s (limit {})",
                        flow.name,
                        invocation.id,
                        pool.name(),
                        elapsed.as_secs_f64(),
                        humantime::format_duration(limit)
                    );
                    Err(FlowError::TimedOut)
                }
            },
        };
        let label = match &outcome {
            Ok(_) => "completed",
            Err(FlowError::TimedOut) => "timed-out",
            Err(FlowError::Cancelled) => "cancelled",
            Err(_) => "failed",
        };
        pool.stats().finished(outcome.is_ok());
        node.metrics()
            .finished(&flow.name, pool.name(), label, admitted.elapsed());
        node.events()
            .send(&invocation.id, &flow.name, pool.name(), EventKind::Finished);
        match &outcome {
            Ok(out) => tracing::debug!(bytes = out.len(), "completed"),
            Err(FlowError::TimedOut) => {}
            Err(e) => tracing::warn!("{e}"),
        }
        outcome
    }
    .instrument(span)
    .await
}

/// From the admission queue to the outcome: first slot, store, instance, `run`.
async fn run_admitted(
    node: &Node,
    flow: &RegisteredFlow,
    admission: Admission,
    invocation: &Invocation,
    input: Vec<u8>,
    admitted: Instant,
) -> Outcome {
    let pool = admission.pool().clone();
    let slot = SlotHolder::new(admission.wait().await);
    pool.stats().started();
    node.metrics().started(pool.name(), admitted.elapsed());
    node.events()
        .send(&invocation.id, &flow.name, pool.name(), EventKind::Started);
    let Some(_resident) = node.engine().reserve_resident() else {
        let max = node.engine().max_resident();
        let e = FlowError::Failed(format!(
            "node.max-resident ({max}) instances are alive; raise node.max-resident"
        ));
        tracing::error!("{e}");
        return Err(e);
    };
    let info = InstanceInfo {
        id: invocation.id.clone(),
        flow: flow.name.clone(),
        priority: invocation.priority,
    };
    let state = HostState::new(node.clone(), info, pool, slot, &flow.settings)
        .map_err(FlowError::Failed)?;
    // The engine of the component's size class (see `engine::LARGE_COMPONENT_BYTES`).
    let mut store = Store::new(flow.component.pre.engine(), state);
    store.limiter(|state| state.meter());
    match node.engine().metering() {
        Metering::Epoch => {
            store.set_epoch_deadline(1);
            store.epoch_deadline_callback(time_slice);
        }
        Metering::Fuel => {
            store
                .set_fuel(u64::MAX)
                .map_err(|e| FlowError::Failed(e.to_string()))?;
            store
                .fuel_async_yield_interval(Some(10_000_000))
                .map_err(|e| FlowError::Failed(e.to_string()))?;
        }
        Metering::Off => {}
    }
    let outcome = execute(&mut store, flow, invocation, &input).await;
    let state = store.data_mut();
    if let Some(exceeded) = state.meter().exceeded() {
        // A broken limit explains the failure better than the trap it caused.
        return Err(FlowError::Failed(exceeded.to_string()));
    }
    let output = outcome.map_err(|e| explain(e, state.stderr_tail()))?;
    state
        .meter()
        .check_output(output.len())
        .map_err(|e| FlowError::Failed(e.to_string()))?;
    Ok(output)
    // The store drops here: the instance and its slot are freed before anyone learns the outcome.
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
