//! A node: an engine, its flows, its pools, and the one way in for work: [`Node::start`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::oneshot;

use crate::bindings::sluice::flow::types::{Invocation, Origin, Priority};
use crate::component_cache::{CacheOutcome, ComponentCache};
use crate::config::NodeConfig;
use crate::engine::{self, FlowEngine, Metering};
use crate::error::{FlowError, LoadError, StartError};
use crate::events::Events;
use crate::instance;
use crate::limits::{LimitExceeded, Limits};
use crate::metrics::Metrics;
use crate::registry::{FlowRegistry, FlowSettings, RegisteredFlow};
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

    /// A subflow started by instance `parent`.
    pub fn subflow(flow: String, input: Vec<u8>, parent: String, priority: Priority) -> Self {
        StartRequest {
            flow,
            input,
            origin: Origin::Subflow(parent),
            priority,
            fan_out: false,
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
        let engine = FlowEngine::new(
            config.node.max_resident,
            ComponentCache::new(cache_dir),
            metering,
        )
        .map_err(|e| LoadError::Startup(format!("cannot create the wasmtime engine: {e:#}")))?;
        let pools = Pools::from_config(config)
            .map_err(|e| LoadError::Startup(format!("cannot start pool threads: {e}")))?;
        tracing::info!("{}", pools.describe());
        warn_if_over_map_limit(config.node.max_resident);
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

    /// Admit a new instance: resolve the flow, choose its pool, take a queue place, run it.
    /// Refused at once (nothing created) when the flow is unknown or the pool's queue is full.
    pub async fn start(&self, request: StartRequest) -> Result<FlowHandle, StartError> {
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
        let id = ulid::Ulid::new().to_string();
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
        self.inner
            .metrics
            .admitted(pool.name(), admission.queued_at_insert());
        let (tx, rx) = oneshot::channel();
        let run = instance::run(self.clone(), flow, admission, invocation, request.input);
        self.inner.pools.executor(pool.name()).spawn(async move {
            // The receiver may be gone (nobody waits for this instance): that is fine.
            let _ = tx.send(run.await);
        });
        Ok(FlowHandle {
            id,
            pool: pool.name().to_string(),
            outcome: rx,
        })
    }

    /// Start and wait for the outcome.
    pub async fn run(&self, request: StartRequest) -> Result<Outcome, StartError> {
        Ok(self.start(request).await?.outcome().await)
    }

    /// The mapper component's choice when one is configured, else the built-in rules.
    async fn choose_pool(
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
