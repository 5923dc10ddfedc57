//! The node's Prometheus metrics: every name in one place, per-node registry (no global
//! state, so several nodes in one process keep separate figures).
//!
//! Gauges that mirror a pool's live counters are refreshed when rendered; histograms and
//! counters are updated where the event happens.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::sched::Pools;

/// Admitted starts waiting for a slot, all pools together.
pub const QUEUE_SIZE_TOTAL: &str = "sluice_queue_size_total";
/// Instances executing guest code now, per pool (Corda's name: they are not threads here).
pub const ACTIVE_THREADS: &str = "sluice_active_threads";
/// Admitted starts waiting for a slot, per pool.
pub const QUEUE_SIZE: &str = "sluice_queue_size";
/// Queue length seen by each admitted start, itself included when it had to wait, per pool.
pub const QUEUE_SIZE_ON_INSERT: &str = "sluice_queue_size_on_insert";
/// Time from admission to the first slot, per pool.
pub const STARTUP_QUEUE_TIME: &str = "sluice_startup_queue_time_seconds";
/// Instances parked at a suspension point now, per pool.
pub const PARKED_FLOWS: &str = "sluice_parked_flows";
/// Time from admission to the end, per flow, pool and outcome.
pub const FLOW_DURATION: &str = "sluice_flow_duration_seconds";
/// Starts refused because the pool's queue was full (`_total` is appended), per pool.
pub const REJECTED_STARTS: &str = "sluice_rejected_starts";
/// Mapper answers replaced by `default` (`_total` is appended), per cause.
pub const MAPPER_FALLBACKS: &str = "sluice_mapper_fallbacks";

/// Instances in memory now (the rest of the parked ones are evicted).
pub const RESIDENT_FLOWS: &str = "sluice_resident_flows";
/// Parked instances evicted from memory to make room (`_total` is appended).
pub const EVICTIONS: &str = "sluice_evictions";
/// Sessions between instances with at least one end still running.
pub const LIVE_SESSIONS: &str = "sluice_live_sessions";
/// Published events not yet taken, all topics.
pub const WAITING_EVENTS: &str = "sluice_waiting_events";

/// 1 while the store takes writes, 0 while its commits are refused (a full disk).
pub const STORE_WRITABLE: &str = "sluice_store_writable";
/// Commits the store refused, each retry counted (`_total` is appended).
pub const STORE_REFUSED_COMMITS: &str = "sluice_store_refused_commits";
/// New starts refused because the store could not write (`_total` is appended).
pub const STORE_REFUSED_STARTS: &str = "sluice_store_refused_starts";

/// Node-wide figures read when the metrics are rendered.
#[derive(Debug, Clone, Copy, Default)]
pub struct NodeFigures {
    /// Instances in memory.
    pub resident: u64,
    /// Evictions so far.
    pub evictions: u64,
    /// Live sessions.
    pub live_sessions: u64,
    /// Events not yet taken.
    pub waiting_events: u64,
    /// Whether the store takes writes now.
    pub store_writable: bool,
    /// Commits the store refused so far.
    pub store_refused_commits: u64,
}

/// A `pool` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabel {
    /// Pool name.
    pub pool: String,
}

/// `flow`, `pool` and `outcome` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FlowLabels {
    /// Flow name.
    pub flow: String,
    /// Pool name.
    pub pool: String,
    /// `completed`, `failed`, `timed-out`.
    pub outcome: String,
}

/// A `cause` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CauseLabel {
    /// Why the fallback happened.
    pub cause: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric of one node.
pub struct Metrics {
    registry: Registry,
    queue_total: Gauge,
    active: Family<PoolLabel, Gauge>,
    queue_size: Family<PoolLabel, Gauge>,
    parked: Family<PoolLabel, Gauge>,
    queue_on_insert: HistogramFamily<PoolLabel>,
    startup_queue_time: HistogramFamily<PoolLabel>,
    flow_duration: HistogramFamily<FlowLabels>,
    rejected: Family<PoolLabel, Counter>,
    mapper_fallbacks: Family<CauseLabel, Counter>,
    resident: Gauge,
    evictions: Counter,
    live_sessions: Gauge,
    waiting_events: Gauge,
    store_writable: Gauge,
    store_refused_commits: Counter,
    store_refused_starts: Counter,
}

fn seconds_histogram() -> Histogram {
    // 100 µs to ~55 min.
    Histogram::new(exponential_buckets(0.0001, 4.0, 13))
}

fn size_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut m = Metrics {
            registry: Registry::default(),
            queue_total: Gauge::default(),
            active: Family::default(),
            queue_size: Family::default(),
            parked: Family::default(),
            queue_on_insert: Family::new_with_constructor(size_histogram),
            startup_queue_time: Family::new_with_constructor(seconds_histogram),
            flow_duration: Family::new_with_constructor(seconds_histogram),
            rejected: Family::default(),
            mapper_fallbacks: Family::default(),
            resident: Gauge::default(),
            evictions: Counter::default(),
            live_sessions: Gauge::default(),
            waiting_events: Gauge::default(),
            store_writable: Gauge::default(),
            store_refused_commits: Counter::default(),
            store_refused_starts: Counter::default(),
        };
        let r = &mut m.registry;
        r.register(
            QUEUE_SIZE_TOTAL,
            "Admitted starts waiting for a slot, all pools",
            m.queue_total.clone(),
        );
        r.register(
            ACTIVE_THREADS,
            "Instances executing guest code, per pool",
            m.active.clone(),
        );
        r.register(
            QUEUE_SIZE,
            "Admitted starts waiting for a slot, per pool",
            m.queue_size.clone(),
        );
        r.register(
            QUEUE_SIZE_ON_INSERT,
            "Queue length seen by each admitted start",
            m.queue_on_insert.clone(),
        );
        r.register(
            STARTUP_QUEUE_TIME,
            "Seconds from admission to first slot",
            m.startup_queue_time.clone(),
        );
        r.register(
            PARKED_FLOWS,
            "Instances parked at a suspension point",
            m.parked.clone(),
        );
        r.register(
            FLOW_DURATION,
            "Seconds from admission to end, by flow, pool, outcome",
            m.flow_duration.clone(),
        );
        r.register(
            REJECTED_STARTS,
            "Starts refused because the pool's queue was full",
            m.rejected.clone(),
        );
        r.register(
            MAPPER_FALLBACKS,
            "Mapper answers replaced by default, by cause",
            m.mapper_fallbacks.clone(),
        );
        r.register(RESIDENT_FLOWS, "Instances in memory", m.resident.clone());
        r.register(
            EVICTIONS,
            "Parked instances evicted from memory to make room",
            m.evictions.clone(),
        );
        r.register(
            LIVE_SESSIONS,
            "Sessions with an end still running",
            m.live_sessions.clone(),
        );
        r.register(
            WAITING_EVENTS,
            "Published events not yet taken",
            m.waiting_events.clone(),
        );
        r.register(
            STORE_WRITABLE,
            "1 while the store takes writes, 0 while it refuses them",
            m.store_writable.clone(),
        );
        r.register(
            STORE_REFUSED_COMMITS,
            "Commits the store refused (each retry counted)",
            m.store_refused_commits.clone(),
        );
        r.register(
            STORE_REFUSED_STARTS,
            "New starts refused because the store could not write",
            m.store_refused_starts.clone(),
        );
        m
    }
}

fn pool(name: &str) -> PoolLabel {
    PoolLabel {
        pool: name.to_string(),
    }
}

impl Metrics {
    /// A start was admitted into `pool`'s queue, which then held `queued` starts.
    pub fn admitted(&self, pool_name: &str, queued: usize) {
        self.queue_on_insert
            .get_or_create(&pool(pool_name))
            .observe(queued as f64);
    }

    /// A start was refused: `pool`'s queue was full.
    pub fn rejected(&self, pool_name: &str) {
        self.rejected.get_or_create(&pool(pool_name)).inc();
    }

    /// A new start was refused: the store could not write.
    pub fn refused_for_store(&self) {
        self.store_refused_starts.inc();
    }

    /// An instance got its first slot after waiting `waited`.
    pub fn started(&self, pool_name: &str, waited: Duration) {
        self.startup_queue_time
            .get_or_create(&pool(pool_name))
            .observe(waited.as_secs_f64());
    }

    /// An instance ended with `outcome` after `took` from admission.
    pub fn finished(&self, flow: &str, pool_name: &str, outcome: &str, took: Duration) {
        let labels = FlowLabels {
            flow: flow.into(),
            pool: pool_name.into(),
            outcome: outcome.into(),
        };
        self.flow_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// The mapper's answer was replaced by `default` because of `cause`.
    pub fn mapper_fallback(&self, cause: &str) {
        self.mapper_fallbacks
            .get_or_create(&CauseLabel {
                cause: cause.into(),
            })
            .inc();
    }

    /// Everything, in the Prometheus (OpenMetrics) text format, gauges refreshed from `pools`
    /// and `node`.
    pub fn render(&self, pools: &Pools, node: NodeFigures) -> String {
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.resident.set(gauge(node.resident));
        self.live_sessions.set(gauge(node.live_sessions));
        self.waiting_events.set(gauge(node.waiting_events));
        self.store_writable.set(i64::from(node.store_writable));
        let refused = self.store_refused_commits.get();
        self.store_refused_commits
            .inc_by(node.store_refused_commits.saturating_sub(refused));
        // The counter follows the node's own count, which only grows.
        let counted = self.evictions.get();
        self.evictions
            .inc_by(node.evictions.saturating_sub(counted));
        let mut total = 0i64;
        for p in pools.iter() {
            let s = p.stats().snapshot();
            let queued = p.queued() as i64;
            total += queued;
            self.active
                .get_or_create(&pool(p.name()))
                .set(s.running as i64);
            self.queue_size.get_or_create(&pool(p.name())).set(queued);
            self.parked
                .get_or_create(&pool(p.name()))
                .set(s.parked as i64);
        }
        self.queue_total.set(total);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
