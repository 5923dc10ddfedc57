//! The `sluice:flow/host` imports: what a running flow can ask of the node.
//!
//! Subflows, time and logging are here; events in [`events`], sessions in [`sessions`].
//! What the host reaches of the node is [`Services`]; the one way up is [`Starter`].
//! Each suspension point (`join`, `call`, `parallel`, `sleep`, `wait-event`, `receive`) goes
//! through
//! [`HostState::park`]: the instance's slot is released before waiting and re-taken
//! (as a resumption, ahead of new starts) before guest code runs again. While parked,
//! the instance's fiber is suspended: it holds no slot and no OS thread.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

pub mod cancel;
pub mod completions;
mod events;
pub mod services;
mod sessions;

pub use cancel::{CancelError, CancelSignal, Cancellations};
pub use completions::Completions;
pub use services::{BoxFuture, Services, Starter};

use crate::engine::sandbox::{self, GuestOutput, Owner, Stream};
use crate::engine::{Meter, stacks};
use crate::model::{
    FlowError, FlowHandle, FlowSettings, IdScheme, Outcome, Priority, StartRequest, ids, wait_left,
};
use crate::observe::EventKind;
use crate::replay::Recorder;
use crate::replay::calls::{self, Call};
use crate::sched::{Parking, Pool, QueueClass, Slot};
use crate::store::encode;
use crate::wit::host::{self, StartOptions};
use crate::wit::{self, LogLevel, WitFlowError, types};

/// The slot an instance holds, shared with the epoch callback that may give it up.
#[derive(Debug, Clone, Default)]
pub struct SlotHolder(Arc<Mutex<Option<Slot>>>);

impl SlotHolder {
    /// A holder with `slot` in it.
    pub fn new(slot: Slot) -> Self {
        SlotHolder(Arc::new(Mutex::new(Some(slot))))
    }

    fn cell(&self) -> std::sync::MutexGuard<'_, Option<Slot>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Give the slot back to the pool (dropping it outside the lock).
    pub fn release(&self) {
        let slot = self.cell().take();
        drop(slot);
    }

    /// Hold `slot` again.
    pub fn put(&self, slot: Slot) {
        *self.cell() = Some(slot);
    }
}

/// Who this instance is, as the host needs it for every call.
#[derive(Debug, Clone)]
pub struct InstanceInfo {
    /// Instance id.
    pub id: String,
    /// Registered flow name.
    pub flow: String,
    /// The instance's priority, inherited by its children.
    pub priority: Priority,
    /// The party that started it, when a counterparty's session did.
    pub peer: Option<String>,
    /// How it derives its children's ids.
    pub ids: IdScheme,
}

/// Per-instance host state: the `T` of the instance's `Store<T>`.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    stderr: GuestOutput,
    services: Arc<Services>,
    starter: Arc<dyn Starter>,
    /// Its priority, inherited by its children.
    priority: Priority,
    /// The party that started it, when a counterparty's session did.
    peer: Option<String>,
    /// How it derives its children's ids.
    ids: IdScheme,
    pool: Arc<Pool>,
    slot: SlotHolder,
    /// Started and not yet joined children, by id, with their handle when started in this
    /// life of the instance (a replayed start has none: its outcome comes from the node).
    children: HashMap<String, Option<FlowHandle>>,
    meter: Meter,
    recorder: Recorder,
    /// The wait an evicted instance left behind; its run loop awaits it before the rebuild.
    evicted_wait: Option<EvictedWait>,
    /// When the last timed wait (a sleep, a wait-event timeout) ends on the monotonic
    /// clock: an instance evicted in it is rebuilt to wait for what is left, not again.
    wait_end: Option<tokio::time::Instant>,
    /// Whether it gave back its stack's deeper pages once in this store (see `park`).
    stack_trimmed: bool,
    /// Its flow, id and pool; its log lines name them.
    owner: Arc<Owner>,
}

/// What an evicted instance was waiting for.
pub type EvictedWait = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The host call's way out of an instance that was evicted while parked: it traps the
/// guest, and the run loop rebuilds the instance by replay once the wait is over.
#[derive(Debug, thiserror::Error)]
#[error("evicted while parked (node.max-resident reached)")]
pub struct Evicted;

impl HostState {
    /// State for one instance of `flow` holding `slot` of `pool`: its sandbox (see
    /// [`sandbox`]) and its meter. Fails when a granted directory cannot be opened.
    pub fn new(
        services: Arc<Services>,
        starter: Arc<dyn Starter>,
        info: InstanceInfo,
        pool: Arc<Pool>,
        slot: SlotHolder,
        settings: &FlowSettings,
        recorder: Recorder,
    ) -> Result<Self, String> {
        // Named in every line logged for the instance (a span per instance costs more
        // than a flow that logs nothing takes to run).
        let InstanceInfo {
            id,
            flow,
            priority,
            peer,
            ids,
        } = info;
        let owner = Arc::new(Owner {
            flow,
            id,
            pool: pool.name().to_string(),
        });
        let stderr = GuestOutput::of(Stream::Stderr, owner.clone());
        let wasi = sandbox::wasi_ctx(
            &settings.grants,
            GuestOutput::of(Stream::Stdout, owner.clone()),
            stderr.clone(),
        )?;
        Ok(HostState {
            wasi,
            table: ResourceTable::new(),
            stderr,
            services,
            starter,
            priority,
            peer,
            ids,
            pool,
            slot,
            children: HashMap::new(),
            meter: Meter::new(settings.limits),
            recorder,
            evicted_wait: None,
            wait_end: None,
            stack_trimmed: false,
            owner,
        })
    }

    /// The instance's meter: the store's resource limiter, and its CPU and children counts.
    pub fn meter(&mut self) -> &mut Meter {
        &mut self.meter
    }

    /// The pool this instance runs in.
    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// The instance's slot, for the epoch callback.
    pub fn slot(&self) -> &SlotHolder {
        &self.slot
    }

    /// The last few lines the guest wrote to stderr, on one line (a panic message, typically).
    pub fn stderr_tail(&self) -> Option<String> {
        self.stderr.tail()
    }

    /// The instance's journal.
    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// When the instance's last timed wait ends on the monotonic clock, if it made one.
    pub fn wait_end(&self) -> Option<tokio::time::Instant> {
        self.wait_end
    }

    /// How long a replayed timed wait of `requested_ms`, journaled to end at wall-clock
    /// `deadline_ms`, waits now; `None` when it ended in an earlier life (later calls are
    /// journaled). See `model::clock` for why the wall clock alone never decides.
    fn replayed_wait(&self, requested_ms: u64, deadline_ms: u64) -> Option<Duration> {
        if self.recorder.replaying() {
            return None;
        }
        Some(match self.recorder.resumed_wait() {
            // Evicted in this wait: the rest of it on the monotonic clock.
            Some(until) => until.saturating_duration_since(tokio::time::Instant::now()),
            // After a restart: the journaled deadline, capped by the requested duration.
            None => Duration::from_millis(wait_left(
                requested_ms,
                deadline_ms,
                self.services.clock.now_ms(),
            )),
        })
    }

    /// What the instance was waiting for when it was evicted, if it was.
    pub fn take_evicted_wait(&mut self) -> Option<EvictedWait> {
        self.evicted_wait.take()
    }

    /// Wait for `wait` parked: no slot held meanwhile; re-take one as a resumption. When
    /// the node needs this instance's place in memory meanwhile, it is evicted: the guest
    /// traps with [`Evicted`] and the run loop takes the wait over.
    fn park<T: Send + 'static>(
        &mut self,
        wait: impl Future<Output = T> + Send + 'static,
    ) -> impl Future<Output = wasmtime::Result<T>> + Send + '_ {
        // Boxed before the parking future exists: it then holds a pointer, not room for
        // the wait as well as the box (every parked instance would keep both).
        self.park_boxed(Box::pin(wait))
    }

    /// [`HostState::park`], for a boxed `wait`.
    async fn park_boxed<T: Send + 'static>(
        &mut self,
        mut wait: Pin<Box<dyn Future<Output = T> + Send>>,
    ) -> wasmtime::Result<T> {
        self.slot.release();
        let waited = {
            let _parked = Parked::new(&self.pool);
            match self.services.residency.park() {
                // Not for a wait that is over already: rebuilt at once, the instance would
                // reach this call again while others still wait for places, and could be
                // sent away again, and again.
                Parking::Leave(departure) => {
                    match futures::FutureExt::now_or_never(wait.as_mut()) {
                        Some(out) => {
                            departure.stay();
                            Some(out)
                        }
                        None => {
                            departure.leave();
                            None
                        }
                    }
                }
                Parking::Stay(mut ticket) => {
                    let waiting = async {
                        tokio::select! {
                            // A wait that ends as the ask comes wins: the ask passes on.
                            biased;
                            out = &mut wait => Some(out),
                            () = ticket.asked() => None,
                        }
                    };
                    // Parked for real (not ready at once), for the first time in this store:
                    // the stack pages below this frame go back (see `engine::stacks`). Once
                    // only, so a flow that waits often pays one `madvise`, not one per wait;
                    // and not on a full node, which is about to evict parked instances
                    // anyway (the `madvise` interrupts every core to flush its TLB).
                    let trimmed = std::mem::replace(&mut self.stack_trimmed, true);
                    let mut trim = !trimmed && !self.services.residency.full();
                    let mut waiting = std::pin::pin!(waiting);
                    std::future::poll_fn(|cx| {
                        let polled = waiting.as_mut().poll(cx);
                        if polled.is_pending() && std::mem::take(&mut trim) {
                            stacks::trim_below_here();
                        }
                        polled
                    })
                    .await
                }
            }
        };
        let Some(out) = waited else {
            self.evicted_wait = Some(Box::pin(async move {
                wait.await;
            }));
            return Err(Evicted.into());
        };
        self.slot.put(self.pool.acquire(QueueClass::Resume).await);
        self.services.events.send(
            &self.owner.id,
            &self.owner.flow,
            self.pool.name(),
            EventKind::Resumed,
        );
        Ok(out)
    }

    /// The id of the child started by the call at the current journal position (`index`
    /// for each child of a `parallel`): a re-run derives the same id, so it never
    /// starts a child twice.
    fn child_id(&self, index: Option<usize>) -> String {
        ids::child_id(self.ids, &self.owner.id, self.recorder.position(), index)
    }

    /// Start a subflow. The outer error (the `children` limit) traps this instance; the
    /// inner one (a refused start) is the guest's to handle.
    async fn start_child(
        &mut self,
        request: StartRequest,
    ) -> wasmtime::Result<Result<FlowHandle, FlowError>> {
        let may_exist = !self.recorder.first_life();
        self.start_child_with(request, may_exist).await
    }

    /// [`HostState::start_child`]; `may_exist`: the child's id may be known already (then
    /// it is attached to, wherever it runs).
    async fn start_child_with(
        &mut self,
        request: StartRequest,
        may_exist: bool,
    ) -> wasmtime::Result<Result<FlowHandle, FlowError>> {
        self.meter.child_started()?;
        // The parent's record goes to the store before its child's.
        self.recorder.flush()?;
        Ok(self
            .starter
            .clone()
            .start_child(request, may_exist)
            .await
            .map_err(FlowError::from))
    }
}

/// Counts an instance as parked for as long as it lives, even if the wait is cancelled
/// (a timeout drops the instance mid-wait).
pub(crate) struct Parked<'a>(&'a Pool);

impl<'a> Parked<'a> {
    /// Count one more parked instance of `pool` until dropped.
    pub(crate) fn new(pool: &'a Pool) -> Self {
        pool.stats().parked();
        Parked(pool)
    }
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        self.0.stats().unparked();
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for HostState {}

impl host::Host for HostState {
    async fn start(
        &mut self,
        flow: String,
        input: Vec<u8>,
        options: StartOptions,
    ) -> wasmtime::Result<Result<String, WitFlowError>> {
        self.meter.journaled(1)?;
        let asked = options.priority.map(Priority::from);
        let call = Call::Start {
            flow: &flow,
            input: &input,
            priority: asked,
        };
        if let Some(started) = self
            .recorder
            .replay_as::<Result<String, FlowError>>(&call)?
        {
            self.meter.child_started()?;
            if let Ok(id) = &started {
                self.children.insert(id.clone(), None);
            }
            return Ok(started.map_err(Into::into));
        }
        let written = call.journaled();
        let priority = asked.unwrap_or(self.priority);
        let request = StartRequest::subflow(flow, input, self.owner.id.clone(), priority)
            .with_id(self.child_id(None));
        let started = self.start_child(request).await?;
        let id = started
            .as_ref()
            .map(|h| h.id().to_string())
            .map_err(Clone::clone);
        self.recorder
            .record_written(written, encode(&id), Vec::new())?;
        if let Ok(handle) = started {
            self.children.insert(handle.id().to_string(), Some(handle));
        }
        Ok(id.map_err(Into::into))
    }

    async fn join(&mut self, id: String) -> wasmtime::Result<Result<Vec<u8>, WitFlowError>> {
        self.meter.journaled(1)?;
        let call = Call::Join { id: &id };
        if let Some(answer) = self.recorder.replay(&call)? {
            self.children.remove(&id);
            return Ok(wit::outcome(calls::outcome_from_json(&answer)?));
        }
        let outcome = match self.children.remove(&id) {
            None => {
                return Ok(Err(WitFlowError::Rejected(format!(
                    "join: `{id}` is not an unjoined child of this instance"
                ))));
            }
            Some(Some(handle)) => self.park(handle.outcome()).await?,
            Some(None) => self.park(self.services.outcome_of(&id)).await?,
        };
        self.recorder.record_written(
            call.journaled(),
            calls::outcome_to_json(&outcome),
            Vec::new(),
        )?;
        Ok(wit::outcome(outcome))
    }

    async fn call(
        &mut self,
        flow: String,
        input: Vec<u8>,
    ) -> wasmtime::Result<Result<Vec<u8>, WitFlowError>> {
        self.meter.journaled(2)?;
        let call = Call::Call {
            flow: &flow,
            input: &input,
        };
        if let Some(answer) = self.recorder.replay(&call)? {
            self.meter.child_started()?;
            return Ok(wit::outcome(calls::outcome_from_json(&answer)?));
        }
        // The child gets copies; the journaled form (a JSON map, hundreds of bytes) is made
        // from these after the wait, not kept by every parked caller of a deep chain.
        let request = StartRequest::subflow(
            flow.clone(),
            input.clone(),
            self.owner.id.clone(),
            self.priority,
        )
        .with_id(self.child_id(None));
        let outcome = match self.start_child(request).await? {
            Ok(handle) => self.park(handle.outcome()).await?,
            Err(e) => Err(e),
        };
        let written = Call::Call {
            flow: &flow,
            input: &input,
        }
        .journaled();
        self.recorder
            .record_written(written, calls::outcome_to_json(&outcome), Vec::new())?;
        Ok(wit::outcome(outcome))
    }

    async fn parallel(
        &mut self,
        flow: String,
        inputs: Vec<Vec<u8>>,
    ) -> wasmtime::Result<Vec<Result<Vec<u8>, WitFlowError>>> {
        self.meter.journaled(2 * inputs.len())?;
        let call = Call::Parallel {
            flow: &flow,
            inputs: &inputs,
        };
        if let Some(answer) = self.recorder.replay(&call)? {
            for _ in &inputs {
                self.meter.child_started()?;
            }
            let outcomes = calls::outcomes_from_json(&answer)?;
            return Ok(outcomes.into_iter().map(wit::outcome).collect());
        }
        let written = call.journaled();
        let mut started = Vec::with_capacity(inputs.len());
        for (i, input) in inputs.into_iter().enumerate() {
            let mut request =
                StartRequest::subflow(flow.clone(), input, self.owner.id.clone(), self.priority)
                    .with_id(self.child_id(Some(i)));
            request.fan_out = true;
            started.push(self.start_child(request).await?);
        }
        let outcomes: Vec<Outcome> = self
            .park(futures::future::join_all(started.into_iter().map(
                |s| async move {
                    match s {
                        Ok(handle) => handle.outcome().await,
                        Err(e) => Err(e),
                    }
                },
            )))
            .await?;
        self.recorder
            .record_written(written, calls::outcomes_to_json(&outcomes), Vec::new())?;
        Ok(outcomes.into_iter().map(wit::outcome).collect())
    }

    async fn cancel(&mut self, id: String) -> wasmtime::Result<Result<(), WitFlowError>> {
        self.meter.journaled(1)?;
        let call = Call::Cancel { id: &id };
        if let Some(answer) = self.recorder.replay_as::<Result<(), FlowError>>(&call)? {
            return Ok(answer.map_err(Into::into));
        }
        // The child stays unjoined: a later `join` learns how it ended.
        let answer = if !self.children.contains_key(&id) {
            Err(FlowError::Rejected(format!(
                "cancel: `{id}` is not an unjoined child of this instance"
            )))
        } else {
            match self.services.cancel(&id).await {
                Ok(count) => {
                    let (flow, parent, pool) = (&self.owner.flow, &self.owner.id, &self.owner.pool);
                    tracing::info!(flow = %flow, id = %parent, pool = %pool, "cancelled child {id}: {count} instance(s)");
                    Ok(())
                }
                // It ended first: nothing to cancel, and `join` gives its outcome.
                Err(CancelError::Ended { .. }) => Ok(()),
                Err(CancelError::Unknown(_)) => Err(FlowError::Rejected(format!(
                    "cancel: no instance `{id}` on this node"
                ))),
                // Not journaled: a store that failed once may not fail on the next run.
                Err(CancelError::Store(e)) => return Err(e.into()),
            }
        };
        self.recorder.record(&call, &answer)?;
        Ok(answer.map_err(Into::into))
    }

    async fn now(&mut self) -> wasmtime::Result<u64> {
        self.meter.journaled(1)?;
        if let Some(now) = self.recorder.replay_as(&Call::Now)? {
            return Ok(now);
        }
        let now = self.services.clock.now_ms();
        self.recorder.record(&Call::Now, &now)?;
        Ok(now)
    }

    async fn sleep(&mut self, ms: u64) -> wasmtime::Result<()> {
        self.meter.journaled(1)?;
        let call = Call::Sleep { ms };
        // The deadline is journaled before the wait, so it survives restarts unchanged; the
        // wait itself runs on the monotonic clock (see `model::clock`).
        let wait = match self.recorder.replay_as::<u64>(&call)? {
            Some(deadline) => match self.replayed_wait(ms, deadline) {
                Some(wait) => wait,
                None => return Ok(()),
            },
            None => {
                let deadline = self.services.clock.now_ms().saturating_add(ms);
                self.recorder.record(&call, &deadline)?;
                if ms == 0 {
                    // Still a real park and resume: gives the slot to whoever waits for it.
                    return self.park(tokio::task::yield_now()).await;
                }
                Duration::from_millis(ms)
            }
        };
        if !wait.is_zero() {
            let until = tokio::time::Instant::now() + wait;
            self.wait_end = Some(until);
            self.park(tokio::time::sleep_until(until)).await?;
        }
        Ok(())
    }

    async fn random(&mut self) -> wasmtime::Result<u64> {
        self.meter.journaled(1)?;
        if let Some(value) = self.recorder.replay_as(&Call::Random)? {
            return Ok(value);
        }
        let value: u64 = rand::random();
        self.recorder.record(&Call::Random, &value)?;
        Ok(value)
    }

    async fn publish(&mut self, topic: String, payload: Vec<u8>) -> wasmtime::Result<()> {
        self.publish_event(topic, payload)
    }

    async fn wait_event(
        &mut self,
        topic: String,
        timeout_ms: Option<u64>,
    ) -> wasmtime::Result<Option<Vec<u8>>> {
        self.take_event(topic, timeout_ms).await
    }

    async fn log(&mut self, level: LogLevel, message: String) -> wasmtime::Result<()> {
        self.meter.host_call();
        if self.recorder.replaying() {
            // Logged the first time this part of the flow ran.
            return Ok(());
        }
        let (flow, id, pool) = (&self.owner.flow, &self.owner.id, &self.owner.pool);
        match level {
            LogLevel::Trace => {
                tracing::trace!(target: "sluice::guest", flow = %flow, id = %id, pool = %pool, "{message}")
            }
            LogLevel::Debug => {
                tracing::debug!(target: "sluice::guest", flow = %flow, id = %id, pool = %pool, "{message}")
            }
            LogLevel::Info => {
                tracing::info!(target: "sluice::guest", flow = %flow, id = %id, pool = %pool, "{message}")
            }
            LogLevel::Warn => {
                tracing::warn!(target: "sluice::guest", flow = %flow, id = %id, pool = %pool, "{message}")
            }
            LogLevel::Error => {
                tracing::error!(target: "sluice::guest", flow = %flow, id = %id, pool = %pool, "{message}")
            }
        }
        Ok(())
    }

    async fn progress(&mut self, step: String) -> wasmtime::Result<()> {
        self.meter.journaled(1)?;
        let call = Call::Progress { step: &step };
        if self.recorder.replay(&call)?.is_some() {
            return Ok(());
        }
        let position = self.recorder.position();
        self.recorder.record(&call, &())?;
        let (flow, id, pool) = (&self.owner.flow, &self.owner.id, &self.owner.pool);
        tracing::debug!(target: "sluice::progress", flow = %flow, id = %id, pool = %pool, step = %step, "progress");
        (self.services.events).progress(id, flow, pool, position, &step);
        Ok(())
    }
}
