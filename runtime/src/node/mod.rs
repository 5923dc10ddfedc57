//! A node: an engine, its flows, its pools, and the one way in for work: [`Node::start`].

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::bindings::sluice::flow::types::Invocation;
use crate::completions::Completions;
use crate::component_cache::{CacheOutcome, ComponentCache};
use crate::config::NodeConfig;
use crate::engine::{self, FlowEngine, Metering};
use crate::error::{FlowError, LoadError, StartError};
use crate::events::Events;
use crate::journal::{Journal, JournalStore, MemoryStore, SqliteStore};
use crate::limits::Limits;
use crate::messaging::Messaging;
use crate::metrics::Metrics;
use crate::registry::{FlowRegistry, FlowSettings, RegisteredFlow};
use crate::residency::Residency;
use crate::scheduler::rules::{self, Placement};
use crate::scheduler::{ComponentMapper, Fallback, Pool, Pools};

mod ends;
mod request;
mod start;

pub use request::{FlowHandle, StartRequest};

/// What a finished instance produced.
pub type Outcome = Result<Vec<u8>, FlowError>;

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
    messaging: Messaging,
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
                messaging: Messaging::default(),
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
        let messaging = &self.inner.messaging;
        let figures = crate::metrics::NodeFigures {
            resident: u64::from(self.inner.residency.resident()),
            evictions: self.inner.residency.evictions(),
            live_sessions: messaging.sessions.live() as u64,
            waiting_events: messaging.topics.waiting() as u64,
        };
        self.inner.metrics.render(&self.inner.pools, figures)
    }

    /// The node's instance events.
    pub fn events(&self) -> &Events {
        &self.inner.events
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

    /// The node's sessions and event topics.
    pub fn messaging(&self) -> &Messaging {
        &self.inner.messaging
    }

    /// The flow that answers sessions opened by `initiator`, if one is registered.
    pub fn responder_for(&self, initiator: &str) -> Option<String> {
        self.inner.registry.responder_for(initiator)
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
