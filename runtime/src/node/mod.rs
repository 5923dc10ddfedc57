//! A node: an engine, its flows, its pools, and the one way in for work: [`Node::start`].

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::config::NodeConfig;
use crate::engine::{self, CacheOutcome, ComponentCache, FlowEngine, FlowRegistry, Metering};
use crate::error::{LoadError, StartError};
use crate::host::{BoxFuture, Cancellations, Completions, Services, Starter};
use crate::instance::Flow;
use crate::messaging::Messaging;
use crate::model::{FlowHandle, FlowSettings, Invocation, Limits, StartRequest, WallClock};
use crate::observe::{Events, Metrics, NodeFigures};
use crate::peers::Peers;
use crate::sched::rules::{self, Placement};
use crate::sched::{ComponentMapper, Fallback, Pool, Pools, Residency};
use crate::store::{self, DirLock, Journal, JournalStore};

mod cancel;
mod cluster;
mod hospital;
mod peers;
mod publish;
mod recovery;
mod start;

pub use crate::host::CancelError;
pub use hospital::HospitalError;
pub use peers::PeerError;

/// A running Sluice node. Cheap to clone; all clones are the same node.
#[derive(Clone)]
pub struct Node {
    inner: Arc<NodeInner>,
}

struct NodeInner {
    /// What its instances share.
    services: Arc<Services>,
    mapper: Option<ComponentMapper>,
    default_limits: Limits,
    /// Components of instances pinned to a build other than the registered one, by hash.
    pinned: Mutex<HashMap<String, Arc<Flow>>>,
    /// Hashes of components already kept in the store by this process.
    stored: Mutex<HashSet<String>>,
    /// Its place in a cluster, when its store is shared (PostgreSQL).
    membership: Option<cluster::Membership>,
    /// The data dir, held while the node lives (see [`DirLock`]).
    _lock: Option<DirLock>,
}

/// Children start through the node like any other start: the host's one way up.
impl Starter for NodeInner {
    fn start_child(
        self: Arc<Self>,
        request: StartRequest,
        may_exist: bool,
    ) -> BoxFuture<Result<FlowHandle, StartError>> {
        Box::pin(async move {
            Node { inner: self }
                .start_with(request, true, may_exist)
                .await
        })
    }
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
        Self::build(config, metering, NodeParts::default()).await
    }

    /// [`Node::new`] with `parts` in place of what the config would open; for tests of
    /// faults (a store that fails, a clock that jumps).
    #[doc(hidden)]
    pub async fn with_parts(config: &NodeConfig, parts: NodeParts) -> Result<Self, LoadError> {
        Self::build(config, Metering::Epoch, parts).await
    }

    async fn build(
        config: &NodeConfig,
        metering: Metering,
        parts: NodeParts,
    ) -> Result<Self, LoadError> {
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
        let location = match (&config.store.url, &config.node.data_dir) {
            (Some(url), _) => store::Location::Postgres(url),
            (None, Some(dir)) => store::Location::Dir(dir),
            (None, None) => store::Location::Memory,
        };
        let (journal, lock) = match parts.store {
            Some(store) => (journal_over(store)?, None),
            None => open_journal(location)?,
        };
        let membership = match journal.store().cluster() {
            Some(cluster) => {
                let name = config
                    .cluster
                    .name
                    .as_ref()
                    .unwrap_or(&config.node.identity);
                Some(cluster::Membership::join(
                    cluster,
                    name,
                    config.cluster.lease(),
                )?)
            }
            None => None,
        };
        let defaults = FlowSettings {
            limits: config.default_limits(),
            ..FlowSettings::default()
        };
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
        let services = Services {
            engine: Arc::new(engine),
            registry: FlowRegistry::new(defaults),
            pools,
            journal,
            residency: Residency::new(config.node.max_resident),
            messaging: Messaging::default(),
            completions: Completions::default(),
            cancels: Cancellations::default(),
            events: Events::default(),
            metrics: Metrics::default(),
            identity: config.node.identity.clone(),
            peers: Arc::new(
                Peers::from_config(&config.node.identity, &config.peers, &config.base_dir)
                    .map_err(LoadError::Startup)?,
            ),
            clock: parts.clock,
        };
        let node = Node {
            inner: Arc::new(NodeInner {
                services: Arc::new(services),
                default_limits: config.default_limits(),
                mapper,
                pinned: Mutex::default(),
                stored: Mutex::default(),
                membership,
                _lock: lock,
            }),
        };
        node.start_membership();
        node.start_peer_delivery();
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
            && self.inner.services.pools.get(tag).is_none()
        {
            tracing::warn!(flow = name, pool = %tag, "flow `{name}` is tagged to pool `{tag}`, which does not exist; it runs in `default`");
        }
        let services = &self.inner.services;
        Ok(services
            .registry
            .register(&services.engine, name, path, settings)?
            .component
            .cache)
    }

    /// Resolve unregistered flow names as `<name>.wasm` in `dir`.
    pub fn add_search_dir(&self, dir: PathBuf) {
        self.inner.services.registry.add_search_dir(dir);
    }

    /// The node's pools.
    pub fn pools(&self) -> &Pools {
        &self.inner.services.pools
    }

    /// This node's identity.
    pub fn identity(&self) -> &str {
        &self.inner.services.identity
    }

    /// What the node's instances share (for tools that build host state, like benchmarks).
    pub fn services(&self) -> &Arc<Services> {
        &self.inner.services
    }

    /// The node as its instances' way to start children.
    pub fn starter(&self) -> Arc<dyn Starter> {
        self.inner.clone()
    }

    /// The flow registered (or findable) as `name`, loaded.
    pub async fn flow(&self, name: &str) -> Result<Arc<Flow>, StartError> {
        let services = self.services();
        services.registry.resolve(&services.engine, name).await
    }

    fn engine_arc(&self) -> Arc<FlowEngine<crate::host::HostState>> {
        self.services().engine.clone()
    }

    /// How a flow with no `[[flows]]` entry runs.
    fn default_settings(&self) -> FlowSettings {
        FlowSettings {
            limits: self.inner.default_limits,
            ..FlowSettings::default()
        }
    }

    /// The node's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.services.metrics
    }

    /// The node's metrics in Prometheus text format.
    pub fn render_metrics(&self) -> String {
        let services = self.services();
        let messaging = &services.messaging;
        let figures = NodeFigures {
            resident: u64::from(services.residency.resident()),
            evictions: services.residency.evictions(),
            live_sessions: messaging.sessions.live() as u64,
            waiting_events: messaging.topics.waiting() as u64,
            store_writable: services.journal.unavailable().is_none(),
            store_refused_commits: services.journal.refused_commits(),
        };
        let mut text = services.metrics.render(&services.pools, figures);
        text.push_str(&self.render_cluster_metrics());
        text.push_str(&self.render_peer_metrics());
        text
    }

    /// The node's instance events.
    pub fn events(&self) -> &Events {
        &self.inner.services.events
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
        &self.inner.services.journal
    }

    /// The node's sessions and event topics.
    pub fn messaging(&self) -> &Messaging {
        &self.inner.services.messaging
    }

    /// The flow that answers sessions opened by `initiator`, if one is registered.
    pub fn responder_for(&self, initiator: &str) -> Option<String> {
        self.inner.services.registry.responder_for(initiator)
    }

    /// The node's bound on resident instances.
    pub fn residency(&self) -> &Residency {
        &self.inner.services.residency
    }

    /// Instances with a run under way in this node (held ones excluded).
    pub fn running(&self) -> usize {
        self.inner.services.completions.running()
    }

    fn completions(&self) -> &Completions {
        &self.inner.services.completions
    }

    /// Builds other than the registered ones that instances of this node were resumed on
    /// (pinned by an upgrade, a retry on another build, or a build registered since), each
    /// with its flow name, component hash and instances in flight.
    pub fn pinned_builds(&self) -> Vec<Arc<Flow>> {
        let mut builds: Vec<Arc<Flow>> = self.pinned().values().cloned().collect();
        builds.sort_by(|a, b| a.name.cmp(&b.name));
        builds
    }

    fn pinned(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Flow>>> {
        self.inner.pinned.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The mapper component's choice when one is configured, else the built-in rules.
    async fn choose_pool(&self, flow: &Flow, invocation: &Invocation, fan_out: bool) -> &Arc<Pool> {
        let pools = &self.inner.services.pools;
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
            self.inner
                .services
                .metrics
                .mapper_fallback(fallback.cause());
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

/// The journal over the store at `location` (held by this node).
fn open_journal(location: store::Location<'_>) -> Result<(Journal, Option<DirLock>), LoadError> {
    let (store, lock) = store::open(location)?;
    Ok((journal_over(store)?, lock))
}

fn journal_over(store: Arc<dyn JournalStore>) -> Result<Journal, LoadError> {
    Journal::new(store)
        .map_err(|e| LoadError::Startup(format!("cannot start the journal writer: {e}")))
}

/// What a test may give a node in place of what its config opens.
#[doc(hidden)]
#[derive(Default)]
pub struct NodeParts {
    /// The store, instead of the config's data dir or database (no data-dir lock is taken).
    pub store: Option<Arc<dyn JournalStore>>,
    /// The wall clock, instead of the system's.
    pub clock: WallClock,
}
