//! A node: an engine, its flows, its pools, and the one way in for work: [`Node::start`].

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::bindings::sluice::flow::types::{Invocation, Origin, Priority};
use crate::completions::Completions;
use crate::component_cache::{CacheOutcome, ComponentCache};
use crate::config::NodeConfig;
use crate::engine::{self, FlowEngine, Metering};
use crate::error::{FlowError, LoadError, StartError};
use crate::events::Events;
use crate::instance::{self, Admitted, End};
use crate::journal::{
    InstanceRecord, Journal, JournalStore, MemoryStore, SqliteStore, Status, Write, encode,
};
use crate::limits::{LimitExceeded, Limits};
use crate::metrics::Metrics;
use crate::recovery::{StartMeta, outcome_of_record};
use crate::registry::{FlowRegistry, FlowSettings, RegisteredFlow};
use crate::residency::Residency;
use crate::scheduler::rules::{self, Placement};
use crate::scheduler::{ComponentMapper, Fallback, Pool, Pools, QueueClass};

/// What a finished instance produced.
pub type Outcome = Result<Vec<u8>, FlowError>;

/// A request to start one flow instance.
#[derive(Debug, Clone)]
pub struct StartRequest {
    /// Registered flow name.
    pub flow: String,
    /// Input bytes (JSON by convention).
    pub input: Vec<u8>,
    /// Who asks.
    pub origin: Origin,
    /// Scheduling priority.
    pub priority: Priority,
    /// Whether this is a child of a `parallel` fan-out (placed in the `parallel` pool).
    pub fan_out: bool,
    /// The instance id; `None` for a fresh one. Starting an id the node already knows
    /// attaches to that instance instead (an idempotency key).
    pub id: Option<String>,
}

impl StartRequest {
    /// A start over the API or CLI by `caller`, normal priority.
    pub fn rpc(
        flow: impl Into<String>,
        input: impl Into<Vec<u8>>,
        caller: impl Into<String>,
    ) -> Self {
        StartRequest {
            flow: flow.into(),
            input: input.into(),
            origin: Origin::Rpc(caller.into()),
            priority: Priority::Normal,
            fan_out: false,
            id: None,
        }
    }

    /// A start by counterparty `party`, normal priority.
    pub fn peer(
        flow: impl Into<String>,
        input: impl Into<Vec<u8>>,
        party: impl Into<String>,
    ) -> Self {
        StartRequest {
            origin: Origin::Peer(party.into()),
            ..Self::rpc(flow, input, "")
        }
    }

    /// The same request with `priority`.
    pub fn with_priority(self, priority: Priority) -> Self {
        StartRequest { priority, ..self }
    }

    /// The same request for instance `id`: started once, however often it is requested.
    pub fn with_id(self, id: impl Into<String>) -> Self {
        StartRequest {
            id: Some(id.into()),
            ..self
        }
    }

    /// A subflow started by instance `parent`.
    pub fn subflow(flow: String, input: Vec<u8>, parent: String, priority: Priority) -> Self {
        StartRequest {
            flow,
            input,
            origin: Origin::Subflow(parent),
            priority,
            fan_out: false,
            id: None,
        }
    }
}

/// A started instance: its id, and its outcome when it ends.
#[derive(Debug)]
pub struct FlowHandle {
    id: String,
    pool: String,
    outcome: oneshot::Receiver<Outcome>,
}

impl FlowHandle {
    /// A handle on instance `id` whose outcome arrives on `outcome`.
    pub(crate) fn new(id: String, pool: String, outcome: oneshot::Receiver<Outcome>) -> Self {
        FlowHandle { id, pool, outcome }
    }

    /// The instance id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The pool the instance was admitted to.
    pub fn pool(&self) -> &str {
        &self.pool
    }

    /// Wait for the instance to end.
    pub async fn outcome(self) -> Outcome {
        self.outcome.await.unwrap_or_else(|_| {
            Err(FlowError::Failed(format!(
                "instance {} ended without a result",
                self.id
            )))
        })
    }
}

/// A running Sluice node. Cheap to clone; all clones are the same node.
#[derive(Clone)]
pub struct Node {
    inner: Arc<NodeInner>,
}

struct NodeInner {
    engine: Arc<FlowEngine>,
    registry: FlowRegistry,
    pools: Pools,
    mapper: Option<ComponentMapper>,
    metrics: Metrics,
    events: Events,
    identity: String,
    default_limits: Limits,
    journal: Journal,
    completions: Completions,
    residency: Residency,
    /// Components of instances pinned to a build other than the registered one, by hash.
    pinned: Mutex<HashMap<String, Arc<RegisteredFlow>>>,
    /// Hashes of components already kept in the store by this process.
    stored: Mutex<HashSet<String>>,
}

impl Node {
    /// Build a node from a validated config: create pools, compile the configured flows.
    /// Logs the pools line and a warning for every flow tagged to a missing pool.
    pub async fn new(config: &NodeConfig) -> Result<Self, LoadError> {
        Self::with_metering(config, Metering::Epoch).await
    }

    /// [`Node::new`] with another [`Metering`]; for benchmarks that compare them.
    #[doc(hidden)]
    pub async fn with_metering(config: &NodeConfig, metering: Metering) -> Result<Self, LoadError> {
        let cache_dir = config
            .node
            .cache_dir
            .clone()
            .or_else(ComponentCache::default_dir);
        let engine = FlowEngine::new(ComponentCache::new(cache_dir), metering)
            .map_err(|e| LoadError::Startup(format!("cannot create the wasmtime engine: {e:#}")))?;
        let pools = Pools::from_config(config)
            .map_err(|e| LoadError::Startup(format!("cannot start pool threads: {e}")))?;
        tracing::info!("{}", pools.describe());
        warn_if_over_map_limit(config.node.max_resident);
        let journal = open_journal(config.node.data_dir.as_deref())?;
        let mapper = match &config.mapper {
            Some(m) => {
                let path = config.resolve(&m.component);
                let mapper = ComponentMapper::load(&path, pools.names()).await?;
                tracing::info!(
                    "Using custom flow scheduler mapper: {}",
                    m.component.display()
                );
                Some(mapper)
            }
            None => None,
        };
        let node = Node {
            inner: Arc::new(NodeInner {
                engine: Arc::new(engine),
                registry: FlowRegistry::new(FlowSettings {
                    limits: config.default_limits(),
                    ..FlowSettings::default()
                }),
                default_limits: config.default_limits(),
                pools,
                mapper,
                metrics: Metrics::default(),
                events: Events::default(),
                identity: config.node.identity.clone(),
                journal,
                completions: Completions::default(),
                residency: Residency::new(config.node.max_resident),
                pinned: Mutex::default(),
                stored: Mutex::default(),
            }),
        };
        for flow in &config.flows {
            let path = config.resolve(&flow.component);
            let settings = config
                .flow_settings(flow)
                .map_err(|reason| LoadError::Invalid {
                    path: path.clone(),
                    reason,
                })?;
            node.register_with(&flow.name, &path, settings)?;
        }
        Ok(node)
    }

    /// Register `name` as the component at `path`, tagged to `pool`. Compiles it now, or
    /// loads it from the compilation cache; says which.
    pub fn register(
        &self,
        name: &str,
        path: &Path,
        pool: Option<String>,
    ) -> Result<CacheOutcome, LoadError> {
        let settings = FlowSettings {
            pool,
            limits: self.inner.default_limits,
            ..FlowSettings::default()
        };
        self.register_with(name, path, settings)
    }

    /// Register `name` as the component at `path`, run with `settings`.
    pub fn register_with(
        &self,
        name: &str,
        path: &Path,
        settings: FlowSettings,
    ) -> Result<CacheOutcome, LoadError> {
        if let Some(tag) = &settings.pool
            && self.inner.pools.get(tag).is_none()
        {
            tracing::warn!(flow = name, pool = %tag, "flow `{name}` is tagged to pool `{tag}`, which does not exist; it runs in `default`");
        }
        Ok(self
            .inner
            .registry
            .register(&self.inner.engine, name, path, settings)?
            .component
            .cache)
    }

    /// Resolve unregistered flow names as `<name>.wasm` in `dir`.
    pub fn add_search_dir(&self, dir: PathBuf) {
        self.inner.registry.add_search_dir(dir);
    }

    /// The node's pools.
    pub fn pools(&self) -> &Pools {
        &self.inner.pools
    }

    /// This node's identity.
    pub fn identity(&self) -> &str {
        &self.inner.identity
    }

    /// A registered (or findable) flow, loaded.
    pub(crate) async fn registry_flow(
        &self,
        name: &str,
    ) -> Result<Arc<RegisteredFlow>, StartError> {
        self.inner.registry.resolve(&self.inner.engine, name).await
    }

    pub(crate) fn engine(&self) -> &FlowEngine {
        &self.inner.engine
    }

    pub(crate) fn engine_arc(&self) -> Arc<FlowEngine> {
        self.inner.engine.clone()
    }

    /// How a flow with no `[[flows]]` entry runs.
    pub(crate) fn default_settings(&self) -> FlowSettings {
        FlowSettings {
            limits: self.inner.default_limits,
            ..FlowSettings::default()
        }
    }

    /// The node's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The node's metrics in Prometheus text format.
    pub fn render_metrics(&self) -> String {
        self.inner.metrics.render(&self.inner.pools)
    }

    /// The node's instance events.
    pub fn events(&self) -> &Events {
        &self.inner.events
    }

    /// Admit a new instance: resolve the flow, choose its pool, take a queue place, record
    /// it durably, run it. Refused at once (nothing created) when the flow is unknown or the
    /// pool's queue is full. A request for an id the node knows attaches to that instance.
    pub async fn start(&self, request: StartRequest) -> Result<FlowHandle, StartError> {
        self.start_with(request, true).await
    }

    /// [`Node::start`]; `acknowledge`: return only once the instance's record is durable.
    /// Without it (for [`Node::run`], whose caller learns nothing before the end) the record
    /// is written with the instance's first write, its end included: one commit, not two.
    async fn start_with(
        &self,
        request: StartRequest,
        acknowledge: bool,
    ) -> Result<FlowHandle, StartError> {
        if let Some(id) = &request.id
            && let Some(handle) = self.attach(id)
        {
            return Ok(handle);
        }
        let flow = self
            .inner
            .registry
            .resolve(&self.inner.engine, &request.flow)
            .await?;
        let limit = flow.settings.limits.input;
        let size = request.input.len() as u64;
        if size > limit {
            return Err(StartError::Limit {
                flow: flow.name.clone(),
                source: LimitExceeded::Input { limit, size },
            });
        }
        let id = request
            .id
            .clone()
            .unwrap_or_else(|| ulid::Ulid::new().to_string());
        let invocation = Invocation {
            id: id.clone(),
            flow: flow.name.clone(),
            origin: request.origin,
            priority: request.priority,
            our_identity: self.inner.identity.clone(),
        };
        let pool = self
            .choose_pool(&flow, &invocation, request.fan_out)
            .await
            .clone();
        let admission = pool
            .admit(QueueClass::from(request.priority))
            .map_err(|full| {
                self.inner.metrics.rejected(&full.pool);
                StartError::QueueFull {
                    pool: full.pool,
                    flow: request.flow.clone(),
                    capacity: full.capacity,
                }
            })?;
        let Some(outcome) = self.inner.completions.claim(&id) else {
            // Started concurrently under the same id: that run is the one.
            let rx = self.inner.completions.watch(&id);
            return Ok(FlowHandle::new(id, pool.name().to_string(), rx));
        };
        let meta = StartMeta::new(&invocation, pool.name(), request.fan_out);
        let record = InstanceRecord::new(
            &id,
            &flow.name,
            &flow.component.hash,
            &request.input,
            meta.to_json(),
        );
        let mut batch = Vec::with_capacity(2);
        let first_use = self.first_use(&flow.component.hash);
        if first_use {
            batch.push(Write::Component {
                hash: flow.component.hash.clone(),
                bytes: flow.component.bytes.to_vec(),
            });
        }
        batch.push(Write::Create(record));
        // A child needs no wait: its parent's later writes queue after its record, so a crash
        // keeps both or neither. A caller outside the node is told only once it is durable.
        let mut pending = None;
        let recorded = if matches!(invocation.origin, Origin::Subflow(_)) {
            self.inner.journal.append(batch)
        } else if acknowledge {
            self.inner.journal.write(batch).await
        } else {
            pending = Some(batch);
            Ok(())
        };
        if let Err(source) = recorded {
            if first_use {
                self.stored_lock().remove(&flow.component.hash);
            }
            let e = StartError::Store {
                flow: flow.name.clone(),
                source,
            };
            self.inner
                .completions
                .finish(&id, &Err(FlowError::Rejected(e.to_string())));
            return Err(e);
        }
        self.inner
            .metrics
            .admitted(pool.name(), admission.queued_at_insert());
        let run = instance::run(
            self.clone(),
            Admitted {
                flow,
                admission,
                invocation,
                input: request.input,
                attempts: 0,
                fresh: true,
                pending,
            },
        );
        self.inner.pools.executor(pool.name()).spawn(run);
        Ok(FlowHandle::new(id, pool.name().to_string(), outcome))
    }

    /// A handle on instance `id` if the node knows it (running here, or in the store).
    fn attach(&self, id: &str) -> Option<FlowHandle> {
        let completions = &self.inner.completions;
        if let Some(rx) = completions.watch_if_known(id) {
            return Some(FlowHandle::new(id.into(), String::new(), rx));
        }
        let record = self.inner.journal.store().record(id).ok()??;
        let pool = StartMeta::parse(&record.meta)
            .map(|m| m.pool)
            .unwrap_or_default();
        let rx = match outcome_of_record(&record) {
            Some(outcome) => {
                let (tx, rx) = oneshot::channel();
                let _ = tx.send(outcome);
                rx
            }
            None => completions.watch(id),
        };
        Some(FlowHandle::new(id.into(), pool, rx))
    }

    /// The outcome of instance `id` once it ends, whether it runs here now or ended before.
    pub(crate) fn outcome_of(&self, id: &str) -> impl Future<Output = Outcome> + Send + 'static {
        let (node, id) = (self.clone(), id.to_string());
        async move {
            let completions = &node.inner.completions;
            let journal = &node.inner.journal;
            let ended = |node: &Node| -> Result<Option<Outcome>, FlowError> {
                let record = node.inner.journal.store().record(&id);
                match record.map_err(|e| FlowError::Failed(e.to_string()))? {
                    Some(record) => Ok(outcome_of_record(&record)),
                    None => Ok(None),
                }
            };
            let waited = |rx: oneshot::Receiver<Outcome>| async {
                rx.await
                    .unwrap_or_else(|_| Err(FlowError::Failed(format!("instance {id} vanished"))))
            };
            if let Some(rx) = completions.watch_if_known(&id) {
                return waited(rx).await;
            }
            match ended(&node) {
                Ok(Some(outcome)) => return outcome,
                Ok(None) => {}
                Err(e) => return Err(e),
            }
            // It may have ended with its end still queued: once that is committed, the store
            // has it.
            if let Err(e) = journal.sync().await {
                return Err(FlowError::Failed(e.to_string()));
            }
            if let Some(rx) = completions.watch_if_known(&id) {
                return waited(rx).await;
            }
            match ended(&node) {
                Ok(Some(outcome)) => outcome,
                // Held, or not resumed yet: wait for whoever runs it next.
                Ok(None) => waited(completions.watch(&id)).await,
                Err(e) => Err(e),
            }
        }
    }

    /// Record how instance `id` ended, then tell whoever waits for it. A child's end is only
    /// queued: its parent, the one who learns it, queues its own writes after it, so a crash
    /// keeps both or neither. Anyone else learns an end only once it is durable.
    pub(crate) async fn conclude(&self, id: &str, end: End, child: bool, before: Vec<Write>) {
        let (write, outcome) = match end {
            End::Completed(output) => (
                Write::Status {
                    id: id.into(),
                    status: Status::Completed,
                    output: Some(output.clone()),
                    message: None,
                },
                Some(Ok(output)),
            ),
            End::Failed(error) => (
                Write::Status {
                    id: id.into(),
                    status: Status::Failed,
                    output: Some(encode(&error).to_string().into_bytes()),
                    message: Some(error.to_string()),
                },
                Some(Err(error)),
            ),
            End::Held(why) => (
                Write::Status {
                    id: id.into(),
                    status: Status::Hospital,
                    output: None,
                    message: Some(why),
                },
                None,
            ),
        };
        let held = outcome.is_none();
        let mut batch = before;
        batch.push(write);
        let recorded = if child && !held {
            self.inner.journal.append(batch)
        } else {
            self.inner.journal.write(batch).await
        };
        if let Err(e) = recorded {
            // Waiters still learn the outcome; after a restart the instance is replayed.
            tracing::error!("cannot record the end of instance {id}: {e}");
        }
        match outcome {
            Some(outcome) => self.inner.completions.finish(id, &outcome),
            None => self.inner.completions.hold(id),
        }
    }

    fn stored_lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.inner.stored.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether this is the first start of component `hash` in this process.
    fn first_use(&self, hash: &str) -> bool {
        let mut stored = self.stored_lock();
        if stored.contains(hash) {
            return false;
        }
        stored.insert(hash.to_string())
    }

    /// The node's store, through its batching writer.
    pub fn journal(&self) -> &Journal {
        &self.inner.journal
    }

    /// The node's bound on resident instances.
    pub fn residency(&self) -> &Residency {
        &self.inner.residency
    }

    /// Instances with a run under way in this node (held ones excluded).
    pub fn running(&self) -> usize {
        self.inner.completions.running()
    }

    pub(crate) fn completions(&self) -> &Completions {
        &self.inner.completions
    }

    pub(crate) fn pinned(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<RegisteredFlow>>> {
        self.inner.pinned.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Start an instance nobody here waits for (its end goes to the store); returns its id
    /// once its record is durable. Cheaper than [`Node::start`] for many long-lived flows.
    pub async fn submit(&self, request: StartRequest) -> Result<String, StartError> {
        let handle = self.start_with(request, true).await?;
        // Nobody waits: drop the waiter the start registered.
        self.inner.completions.unwatch(handle.id());
        Ok(handle.id().to_string())
    }

    /// Start and wait for the outcome. The instance is recorded durably before anything of
    /// it is seen outside (a child, its end); a crash before that loses a run whose caller
    /// was told nothing.
    pub async fn run(&self, request: StartRequest) -> Result<Outcome, StartError> {
        Ok(self.start_with(request, false).await?.outcome().await)
    }

    /// The mapper component's choice when one is configured, else the built-in rules.
    pub(crate) async fn choose_pool(
        &self,
        flow: &RegisteredFlow,
        invocation: &Invocation,
        fan_out: bool,
    ) -> &Arc<Pool> {
        let pools = &self.inner.pools;
        let Some(mapper) = &self.inner.mapper else {
            let placement = Placement {
                tag: flow.settings.pool.as_deref(),
                origin: &invocation.origin,
                priority: invocation.priority,
                fan_out,
            };
            return rules::builtin_pool(pools, placement);
        };
        let choice = mapper
            .choose(invocation)
            .await
            .and_then(|name| pools.get(name.as_str()).ok_or(Fallback::UnknownPool(name)));
        choice.unwrap_or_else(|fallback| {
            mapper.log_once(&fallback, &flow.name);
            self.inner.metrics.mapper_fallback(fallback.cause());
            pools.default_pool()
        })
    }
}

fn warn_if_over_map_limit(max_resident: u32) {
    if let Some(fits) = engine::resident_capacity_under_map_limit()
        && u64::from(max_resident) > fits
    {
        tracing::warn!(
            "node.max-resident = {max_resident} but vm.max_map_count allows about {fits} resident instances \
                 ({} mappings each); lower node.max-resident or raise vm.max_map_count",
            engine::MAPPINGS_PER_INSTANCE
        );
    }
}

/// The store file inside a data directory.
pub const STORE_FILE: &str = "sluice.db";

/// The journal over `data_dir/sluice.db`, or over memory without a data dir.
fn open_journal(data_dir: Option<&Path>) -> Result<Journal, LoadError> {
    let store: Arc<dyn JournalStore> = match data_dir {
        None => Arc::new(MemoryStore::new()),
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| {
                LoadError::Startup(format!("cannot create data dir {}: {e}", dir.display()))
            })?;
            let store = SqliteStore::open(&dir.join(STORE_FILE))?;
            tracing::info!("Durable store: {}", store.path().display());
            Arc::new(store)
        }
    };
    Journal::new(store)
        .map_err(|e| LoadError::Startup(format!("cannot start the journal writer: {e}")))
}
