//! Node configuration: TOML, kebab-case keys, unknown keys rejected, validated once at load.
//!
//! ```toml
//! [node]
//! identity = "PartyA"
//! max-resident = 10000
//!
//! [pools.default]
//! size = 4
//! [pools.reporting]
//! size = 3
//! queue = 100
//!
//! [[flows]]
//! name = "daily-report"
//! component = "flows/report.wasm"   # relative to this file
//! pool = "reporting"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::model::{DirGrant, FlowSettings, HumanDuration, Limits, LimitsConfig, RetryPolicy};

mod cluster;
mod peers;
mod server;
mod triggers;

pub use cluster::{ClusterSection, DEFAULT_LEASE};
pub use peers::PeerConfig;
pub use server::{DEFAULT_LISTEN, ServerSection, TokenConfig};
pub use triggers::{
    CronExpr, EventTriggerConfig, ExecuteMode, HttpMethod, HttpTriggerConfig, MissedRun, Overlap,
    ScheduleTriggerConfig, TriggersSection, Zone,
};

/// Name of the pool that always exists and takes every flow no rule places elsewhere.
pub const DEFAULT_POOL: &str = "default";
/// Queue capacity of a pool that does not set one.
pub const DEFAULT_QUEUE: usize = 10_000;
/// Instances alive at once (running or parked) when `[node] max-resident` is not set.
/// A resident instance costs ~60 KiB and 3 memory mappings: 10,000 bound resident flows to
/// ~600 MiB and 30,000 mappings, half the kernel's default `vm.max_map_count` (65,530), so
/// larger components (5 mappings each) still fit. Temporal's workers cache 10,000 too.
pub const DEFAULT_MAX_RESIDENT: u32 = 10_000;

/// A configuration error naming the file, the key and the reason.
#[derive(Debug, Error)]
#[error("config {}: {message}", path.display())]
pub struct ConfigError {
    /// The file the error is in (or `<inline>`).
    pub path: PathBuf,
    /// What is wrong and where.
    pub message: String,
}

/// The whole node configuration.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NodeConfig {
    /// This node's identity and node-wide limits.
    #[serde(default)]
    pub node: NodeSection,
    /// Named pools. A `default` pool is added when missing.
    #[serde(default)]
    pub pools: BTreeMap<String, PoolConfig>,
    /// Flows registered by name.
    #[serde(default)]
    pub flows: Vec<FlowConfig>,
    /// A custom scheduler mapper component, replacing the built-in rules.
    #[serde(default)]
    pub mapper: Option<MapperConfig>,
    /// Node-wide default limits of every flow.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// `sluice serve`: listen address, drain grace, API tokens.
    #[serde(default)]
    pub server: ServerSection,
    /// URL, event and schedule triggers (see `docs/triggers.md`).
    #[serde(default)]
    pub triggers: TriggersSection,
    /// `[store]`: a PostgreSQL database instead of the data dir's SQLite file.
    #[serde(default)]
    pub store: StoreSection,
    /// `[cluster]`: this node's name and lease among nodes sharing the store.
    #[serde(default)]
    pub cluster: ClusterSection,
    /// `[peers.<party>]`: other nodes this node's flows hold sessions with.
    #[serde(default)]
    pub peers: BTreeMap<String, PeerConfig>,
    /// Where the file was read from; relative component paths resolve against its directory.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// `[store]`: where the node keeps its instances when not in the data dir.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StoreSection {
    /// `postgres://user[:password]@host[:port]/database`: keep every instance in this
    /// PostgreSQL database (the data dir's SQLite file is then not used).
    #[serde(default)]
    pub url: Option<String>,
}

impl StoreSection {
    fn validate(&self) -> Result<(), String> {
        match &self.url {
            Some(url) if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) => {
                Err(format!(
                    "store.url: `{}` is not a PostgreSQL URL (postgres://user@host:port/database)",
                    crate::model::urls::without_password(url)
                ))
            }
            _ => Ok(()),
        }
    }
}

/// `[node]`: identity and node-wide settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NodeSection {
    /// The identity flows see as `our-identity`.
    #[serde(default = "default_identity")]
    pub identity: String,
    /// Most instances alive at once (running plus parked); sizes the instance allocator.
    #[serde(default = "default_max_resident")]
    pub max_resident: u32,
    /// Directory for compiled components (by content hash). Default: the user cache dir.
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// Directory of the durable store (`sluice.db`). Without it, instances are journaled in
    /// memory only and do not survive the process.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
}

impl Default for NodeSection {
    fn default() -> Self {
        NodeSection {
            identity: default_identity(),
            max_resident: default_max_resident(),
            cache_dir: None,
            data_dir: None,
        }
    }
}

fn default_identity() -> String {
    "local".into()
}

fn default_max_resident() -> u32 {
    DEFAULT_MAX_RESIDENT
}

/// `[pools.NAME]`: one named, bounded pool.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PoolConfig {
    /// Most instances of this pool executing guest code at once.
    pub size: i64,
    /// Most admitted instances waiting for a slot; a start beyond it is rejected.
    #[serde(default = "default_queue")]
    pub queue: i64,
    /// Wall-clock limit of every instance in this pool, from admission (e.g. "30s").
    #[serde(default)]
    pub timeout: Option<HumanDuration>,
    /// Whether a CPU-bound instance gives its slot up to waiting work at every epoch tick.
    #[serde(default = "yes")]
    pub preempt: bool,
}

fn yes() -> bool {
    true
}

/// `[mapper]`: a component implementing the `mapper` world.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MapperConfig {
    /// Path of the mapper component, relative to the config file.
    pub component: PathBuf,
}

fn default_queue() -> i64 {
    DEFAULT_QUEUE as i64
}

/// `[[flows]]`: a flow registered by name.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FlowConfig {
    /// The name subflow calls and start requests use.
    pub name: String,
    /// Path of the component, relative to the config file.
    pub component: PathBuf,
    /// The pool this flow is tagged to (the `@FlowThreadPool` of Corda).
    #[serde(default)]
    pub pool: Option<String>,
    /// Wall-clock limit of each instance of this flow; overrides its pool's.
    #[serde(default)]
    pub timeout: Option<HumanDuration>,
    /// Limits of this flow, overriding `[limits]` key by key.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Directories granted to this flow: guest path → `host/dir:ro` or `host/dir:rw`.
    #[serde(default)]
    pub dirs: BTreeMap<String, String>,
    /// Retries of a failed instance, from its journal; when exhausted it is held in the
    /// flow hospital. Without it a failure is final.
    #[serde(default)]
    pub retry: Option<RetryConfig>,
    /// The initiating flow this flow answers: a session opened by that flow starts this
    /// one (Corda's `@InitiatedBy`).
    #[serde(default)]
    pub initiated_by: Option<String>,
}

/// `retry = { attempts = 3, backoff = "1s" }` of a flow.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RetryConfig {
    /// Attempts in all, the first included.
    pub attempts: i64,
    /// Wait before the first retry; doubles for each further one.
    #[serde(default = "default_backoff")]
    pub backoff: HumanDuration,
}

fn default_backoff() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(1))
}

impl NodeConfig {
    /// The limits of a flow that sets none of its own.
    pub fn default_limits(&self) -> Limits {
        Limits::default().overridden_by(&self.limits)
    }

    /// How the flow `flow` (an entry of `flows`) is run. Call on a validated config.
    pub fn flow_settings(&self, flow: &FlowConfig) -> Result<FlowSettings, String> {
        Ok(FlowSettings {
            pool: flow.pool.clone(),
            timeout: flow.timeout.map(|t| t.0),
            limits: self.default_limits().overridden_by(&flow.limits),
            grants: DirGrant::parse_all(&flow.dirs, &self.base_dir)?,
            retry: flow.retry.map(|r| RetryPolicy {
                attempts: u32::try_from(r.attempts).unwrap_or(u32::MAX),
                backoff: r.backoff.0,
            }),
            initiated_by: flow.initiated_by.clone(),
        })
    }

    /// Read, parse and validate a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.into(),
            message: format!("cannot read: {e}"),
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::parse(&text, path, &base)
    }

    /// Parse and validate TOML text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path, base_dir: &Path) -> Result<Self, ConfigError> {
        let mut config: NodeConfig = toml::from_str(text).map_err(|e| ConfigError {
            path: path.into(),
            message: one_line(&e, text),
        })?;
        config.base_dir = base_dir.to_path_buf();
        config.validate().map_err(|message| ConfigError {
            path: path.into(),
            message,
        })?;
        config
            .triggers
            .check(&config.flows, text)
            .map_err(|message| ConfigError {
                path: path.into(),
                message,
            })?;
        Ok(config)
    }

    /// Check values serde cannot, and add the `default` pool when missing.
    fn validate(&mut self) -> Result<(), String> {
        for (name, pool) in &self.pools {
            if name.is_empty() {
                return Err("pools: a pool name must not be empty".into());
            }
            check_pool_size(pool.size).map_err(|why| format!("pools.{name}.{why}"))?;
            check_pool_queue(pool.queue).map_err(|why| format!("pools.{name}.{why}"))?;
        }
        self.server.validate()?;
        self.store.validate()?;
        self.cluster.validate(self.store.url.is_some())?;
        for (party, peer) in &self.peers {
            peer.validate(party, &self.node.identity)?;
        }
        if self.node.max_resident < 1 {
            return Err("node.max-resident = 0: must be at least 1".into());
        }
        self.default_limits().validate("limits")?;
        let mut seen = std::collections::HashSet::new();
        for (i, flow) in self.flows.iter().enumerate() {
            self.default_limits()
                .overridden_by(&flow.limits)
                .validate(&format!("flows[{i}].limits"))?;
            DirGrant::parse_all(&flow.dirs, &self.base_dir)
                .map_err(|e| format!("flows[{i}].dirs: {e}"))?;
            if flow.name.is_empty() {
                return Err(format!("flows[{i}].name: must not be empty"));
            }
            if let Some(retry) = flow.retry
                && !(1..=1000).contains(&retry.attempts)
            {
                return Err(format!(
                    "flows[{i}].retry.attempts = {}: must be from 1 to 1000",
                    retry.attempts
                ));
            }
            if let Some(initiator) = &flow.initiated_by
                && let Some((j, other)) = self.flows[..i]
                    .iter()
                    .enumerate()
                    .find(|(_, f)| f.initiated_by.as_ref() == Some(initiator))
            {
                return Err(format!(
                    "flows[{i}].initiated-by = \"{initiator}\": `{}` (flows[{j}]) already \
                     responds to `{initiator}`; a flow has at most one responder",
                    other.name
                ));
            }
            if !seen.insert(flow.name.as_str()) {
                return Err(format!(
                    "flows[{i}].name = \"{}\": duplicate flow name",
                    flow.name
                ));
            }
        }
        self.pools.entry(DEFAULT_POOL.into()).or_insert(PoolConfig {
            size: default_pool_size(),
            queue: default_queue(),
            timeout: None,
            preempt: true,
        });
        Ok(())
    }

    /// A path from this file, resolved against the file's directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        self.base_dir.join(path)
    }
}

/// A TOML error on one line: `line L, column C (`the line`): message`.
pub fn one_line(error: &toml::de::Error, text: &str) -> String {
    let message = error.message().trim_end();
    let Some(span) = error.span() else {
        return message.to_string();
    };
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    let source = text.lines().nth(line - 1).unwrap_or("").trim();
    format!("line {line}, column {column} (`{source}`): {message}")
}

/// A pool's size, in the config or in a live resize: 1 to 4096.
pub fn check_pool_size(size: i64) -> Result<(), String> {
    match size {
        1..=4096 => Ok(()),
        _ => Err(format!("size = {size}: must be 1 to 4096")),
    }
}

/// A pool's queue capacity, in the config or in a live resize: at least 1.
pub fn check_pool_queue(queue: i64) -> Result<(), String> {
    match queue {
        1.. => Ok(()),
        _ => Err(format!("queue = {queue}: must be at least 1")),
    }
}

/// Size of the `default` pool when the config does not define it: one slot per core.
pub fn default_pool_size() -> i64 {
    std::thread::available_parallelism()
        .map(|n| n.get() as i64)
        .unwrap_or(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<NodeConfig, ConfigError> {
        NodeConfig::parse(text, Path::new("node.toml"), Path::new("."))
    }

    #[test]
    fn default_pool_is_added() {
        let c = parse("[pools.reporting]\nsize = 3\n").unwrap();
        assert_eq!(
            c.pools["reporting"],
            PoolConfig {
                size: 3,
                queue: DEFAULT_QUEUE as i64,
                timeout: None,
                preempt: true
            }
        );
        assert!(c.pools.contains_key(DEFAULT_POOL));
    }

    #[test]
    fn unknown_key_names_file_and_key() {
        let e = parse("[pools.default]\nsize = 1\nthreads = 4\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("node.toml"), "{e}");
        assert!(e.contains("threads"), "{e}");
        assert!(e.contains("line 3"), "{e}");
    }

    #[test]
    fn zero_and_negative_sizes_are_rejected() {
        let e = parse("[pools.a]\nsize = 0\n").unwrap_err().to_string();
        assert!(e.contains("pools.a.size = 0"), "{e}");
        let e = parse("[pools.a]\nsize = -2\n").unwrap_err().to_string();
        assert!(e.contains("pools.a.size = -2"), "{e}");
        let e = parse("[pools.a]\nsize = 1\nqueue = 0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("pools.a.queue = 0"), "{e}");
    }

    #[test]
    fn timeouts_parse_and_bad_ones_name_the_key() {
        let c = parse("[pools.a]\nsize = 1\ntimeout = \"1m 30s\"\n").unwrap();
        assert_eq!(
            c.pools["a"].timeout,
            Some(HumanDuration(std::time::Duration::from_secs(90)))
        );
        let e = parse("[pools.a]\nsize = 1\ntimeout = \"soon\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 3") && e.contains("`soon` is not a duration"),
            "{e}"
        );
        let e = parse("[pools.a]\nsize = 1\ntimeout = \"0s\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("longer than zero"), "{e}");
    }

    #[test]
    fn limits_and_grants_are_validated_with_their_place() {
        let e = parse("[limits]\nmemory = \"12 parsecs\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 2") && e.contains("`12 parsecs` is not a size"),
            "{e}"
        );
        let e = parse("[limits]\nmemory = \"100 KiB\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("limits.memory = 100.0 KiB: must be between"),
            "{e}"
        );
        let flow = "[[flows]]\nname = \"f\"\ncomponent = \"f.wasm\"\n";
        let e = parse(&format!(
            "{flow}limits = {{ cpu-total = \"1s\", cpu-slice = \"2s\" }}\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("flows[0].limits.cpu-total"), "{e}");
        let e = parse(&format!(
            "{flow}dirs = {{ \"/in\" = \"no/such/dir:ro\" }}\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("flows[0].dirs: `no/such/dir:ro`") && e.contains("is not a directory"),
            "{e}"
        );
        let e = parse(&format!("{flow}limits = {{ threads = 2 }}\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `threads`"), "{e}");
    }

    #[test]
    fn duplicate_pool_and_flow_names_are_rejected() {
        let e = parse("[pools.a]\nsize = 1\n[pools.a]\nsize = 2\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("duplicate"), "{e}");
        let flows = "[[flows]]\nname = \"x\"\ncomponent = \"a.wasm\"\n[[flows]]\nname = \"x\"\ncomponent = \"b.wasm\"\n";
        let e = parse(flows).unwrap_err().to_string();
        assert!(e.contains("flows[1].name = \"x\": duplicate"), "{e}");
    }
}
