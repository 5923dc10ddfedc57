//! One flow instance from its first slot to its outcome: a store, an instance, one `run` call.

use std::sync::Arc;

use tracing::Instrument;
use wasmtime::{Store, UpdateDeadline};

use crate::bindings::Invocation;
use crate::error::FlowError;
use crate::host::{HostState, InstanceInfo, SlotHolder};
use crate::node::{Node, Outcome};
use crate::registry::RegisteredFlow;
use crate::scheduler::{Admission, QueueClass};

/// Run an admitted instance to its end. Never panics on guest behaviour: every trap,
/// error or instantiation failure becomes a [`FlowError`] of this instance only.
pub(crate) async fn run(node: Node, flow: Arc<RegisteredFlow>, admission: Admission, invocation: Invocation, input: Vec<u8>) -> Outcome {
    let pool = admission.pool().clone();
    let span = tracing::info_span!("flow", flow = %flow.name, id = %invocation.id, pool = %pool.name());
    async move {
        let slot = SlotHolder::new(admission.wait().await);
        pool.stats().started();
        let Some(_resident) = node.engine().reserve_resident() else {
            let max = node.engine().max_resident();
            let e = FlowError::Failed(format!("node.max-resident ({max}) instances are alive; raise node.max-resident"));
            tracing::error!("{e}");
            pool.stats().finished(false);
            return Err(e);
        };
        let info = InstanceInfo { id: invocation.id.clone(), flow: flow.name.clone(), priority: invocation.priority };
        let mut store = Store::new(node.engine().engine(), HostState::new(node.clone(), info, pool.clone(), slot));
        store.limiter(|state| state.limits());
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(time_slice);
        let outcome = execute(&mut store, &flow, &invocation, &input).await;
        let outcome = outcome.map_err(|e| explain(e, store.data().stderr_tail()));
        drop(store); // frees the instance and its slot before anyone learns the outcome
        pool.stats().finished(outcome.is_ok());
        match &outcome {
            Ok(out) => tracing::debug!(bytes = out.len(), "completed"),
            Err(e) => tracing::warn!("{e}"),
        }
        outcome
    }
    .instrument(span)
    .await
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
    let instance = flow.component.pre.instantiate_async(&mut *store).await.map_err(Failure::Trapped)?;
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
fn time_slice(mut store: wasmtime::StoreContextMut<'_, HostState>) -> wasmtime::Result<UpdateDeadline> {
    let state = store.data_mut();
    let pool = state.pool().clone();
    if !pool.has_waiters() {
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
