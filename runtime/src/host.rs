//! The `sluice:flow/host` imports: what a running flow can ask of the node.
//!
//! Each suspension point (`join`, `call`, `parallel`, `sleep`) goes through
//! [`HostState::park`]: the instance's slot is released before waiting and re-taken
//! (as a resumption, ahead of new starts) before guest code runs again. While parked,
//! the instance's fiber is suspended: it holds no slot and no OS thread.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::sluice::flow::host::{self, StartOptions};
use crate::bindings::sluice::flow::types;
use crate::bindings::{LogLevel, Priority, WitFlowError};
use crate::error::FlowError;
use crate::events::EventKind;
use crate::meter::Meter;
use crate::node::{FlowHandle, Node, StartRequest};
use crate::registry::FlowSettings;
use crate::sandbox::{self, GuestOutput, Stream};
use crate::scheduler::{Pool, QueueClass, Slot};

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
    pub priority: types::Priority,
}

/// Per-instance host state: the `T` of the instance's `Store<T>`.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    stderr: GuestOutput,
    node: Node,
    info: InstanceInfo,
    pool: Arc<Pool>,
    slot: SlotHolder,
    children: HashMap<String, FlowHandle>,
    meter: Meter,
}

impl HostState {
    /// State for one instance of `flow` holding `slot` of `pool`: its sandbox (see
    /// [`crate::sandbox`]) and its meter. Fails when a granted directory cannot be opened.
    pub fn new(
        node: Node,
        info: InstanceInfo,
        pool: Arc<Pool>,
        slot: SlotHolder,
        settings: &FlowSettings,
    ) -> Result<Self, String> {
        let stderr = GuestOutput::new(Stream::Stderr);
        let wasi = sandbox::wasi_ctx(
            &settings.grants,
            GuestOutput::new(Stream::Stdout),
            stderr.clone(),
        )?;
        Ok(HostState {
            wasi,
            table: ResourceTable::new(),
            stderr,
            node,
            info,
            pool,
            slot,
            children: HashMap::new(),
            meter: Meter::new(settings.limits),
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

    /// Wait for `wait` parked: no slot held meanwhile; re-take one as a resumption.
    async fn park<T>(&mut self, wait: impl Future<Output = T>) -> T {
        self.slot.release();
        let out = {
            let _parked = Parked::new(&self.pool);
            wait.await
        };
        self.slot.put(self.pool.acquire(QueueClass::Resume).await);
        self.node.events().send(
            &self.info.id,
            &self.info.flow,
            self.pool.name(),
            EventKind::Resumed,
        );
        out
    }

    /// Start a subflow. The outer error (the `children` limit) traps this instance; the
    /// inner one (a refused start) is the guest's to handle.
    async fn start_child(
        &mut self,
        request: StartRequest,
    ) -> wasmtime::Result<Result<FlowHandle, FlowError>> {
        self.meter.child_started()?;
        Ok(self.node.start(request).await.map_err(FlowError::from))
    }

    async fn start_and_keep(
        &mut self,
        flow: String,
        input: Vec<u8>,
        priority: types::Priority,
    ) -> wasmtime::Result<Result<String, FlowError>> {
        let request = StartRequest::subflow(flow, input, self.info.id.clone(), priority);
        Ok(self.start_child(request).await?.map(|handle| {
            let id = handle.id().to_string();
            self.children.insert(id.clone(), handle);
            id
        }))
    }

    fn take_child(&mut self, id: &str) -> Result<FlowHandle, FlowError> {
        self.children.remove(id).ok_or_else(|| {
            FlowError::Rejected(format!(
                "join: `{id}` is not an unjoined child of this instance"
            ))
        })
    }
}

/// Counts an instance as parked for as long as it lives, even if the wait is cancelled
/// (a timeout drops the instance mid-wait).
struct Parked<'a>(&'a Pool);

impl<'a> Parked<'a> {
    fn new(pool: &'a Pool) -> Self {
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
        let priority = options.priority.unwrap_or(self.info.priority);
        Ok(self
            .start_and_keep(flow, input, priority)
            .await?
            .map_err(Into::into))
    }

    async fn join(&mut self, id: String) -> wasmtime::Result<Result<Vec<u8>, WitFlowError>> {
        self.meter.journaled(1)?;
        let child = match self.take_child(&id) {
            Ok(child) => child,
            Err(e) => return Ok(Err(e.into())),
        };
        Ok(self.park(child.outcome()).await.map_err(Into::into))
    }

    async fn call(
        &mut self,
        flow: String,
        input: Vec<u8>,
    ) -> wasmtime::Result<Result<Vec<u8>, WitFlowError>> {
        self.meter.journaled(2)?;
        let id = match self.start_and_keep(flow, input, self.info.priority).await? {
            Ok(id) => id,
            Err(e) => return Ok(Err(e.into())),
        };
        self.join(id).await
    }

    async fn parallel(
        &mut self,
        flow: String,
        inputs: Vec<Vec<u8>>,
    ) -> wasmtime::Result<Vec<Result<Vec<u8>, WitFlowError>>> {
        self.meter.journaled(2 * inputs.len())?;
        let mut started = Vec::with_capacity(inputs.len());
        for input in inputs {
            let mut request = StartRequest::subflow(
                flow.clone(),
                input,
                self.info.id.clone(),
                self.info.priority,
            );
            request.fan_out = true;
            started.push(self.start_child(request).await?);
        }
        let results = self
            .park(futures::future::join_all(started.into_iter().map(
                |s| async move {
                    match s {
                        Ok(handle) => handle.outcome().await,
                        Err(e) => Err(e),
                    }
                },
            )))
            .await;
        Ok(results.into_iter().map(|r| r.map_err(Into::into)).collect())
    }

    async fn now(&mut self) -> wasmtime::Result<u64> {
        self.meter.journaled(1)?;
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Ok(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
    }

    async fn sleep(&mut self, ms: u64) -> wasmtime::Result<()> {
        self.meter.journaled(1)?;
        if ms == 0 {
            // Still a real park and resume: gives the slot to whoever waits for it.
            self.park(tokio::task::yield_now()).await;
        } else {
            self.park(tokio::time::sleep(Duration::from_millis(ms)))
                .await;
        }
        Ok(())
    }

    async fn random(&mut self) -> wasmtime::Result<u64> {
        self.meter.journaled(1)?;
        Ok(rand::random())
    }

    async fn log(&mut self, level: LogLevel, message: String) -> wasmtime::Result<()> {
        self.meter.host_call();
        // The instance span (flow, id, pool) is entered around every guest call.
        match level {
            LogLevel::Trace => tracing::trace!(target: "sluice::guest", "{message}"),
            LogLevel::Debug => tracing::debug!(target: "sluice::guest", "{message}"),
            LogLevel::Info => tracing::info!(target: "sluice::guest", "{message}"),
            LogLevel::Warn => tracing::warn!(target: "sluice::guest", "{message}"),
            LogLevel::Error => tracing::error!(target: "sluice::guest", "{message}"),
        }
        Ok(())
    }

    async fn progress(&mut self, step: String) -> wasmtime::Result<()> {
        self.meter.journaled(1)?;
        tracing::debug!(target: "sluice::progress", step = %step, "progress");
        Ok(())
    }
}

impl From<FlowError> for WitFlowError {
    fn from(e: FlowError) -> Self {
        match e {
            FlowError::Failed(m) => WitFlowError::Failed(m),
            FlowError::Cancelled => WitFlowError::Cancelled,
            FlowError::TimedOut => WitFlowError::TimedOut,
            FlowError::Rejected(m) => WitFlowError::Rejected(m),
        }
    }
}

impl From<Priority> for QueueClass {
    fn from(p: Priority) -> Self {
        match p {
            Priority::High => QueueClass::High,
            Priority::Normal => QueueClass::Normal,
        }
    }
}
