//! The node's set of pools and the built-in rule that places a flow in one.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::{DEFAULT_POOL, NodeConfig};

use super::{Pool, PoolExecutor};

/// Every pool of a node, by name. A `default` pool always exists.
#[derive(Debug, Clone)]
pub struct Pools {
    by_name: BTreeMap<String, Arc<Pool>>,
    default: Arc<Pool>,
    executors: BTreeMap<String, Arc<PoolExecutor>>,
}

impl Pools {
    /// Build the pools a validated config names, each with its own worker threads.
    pub fn from_config(config: &NodeConfig) -> std::io::Result<Self> {
        let by_name: BTreeMap<_, _> = config
            .pools
            .iter()
            .map(|(name, p)| {
                let timeout = p.timeout.map(|t| t.0);
                (
                    name.clone(),
                    Pool::with_options(
                        name.clone(),
                        p.size as usize,
                        p.queue as usize,
                        timeout,
                        p.preempt,
                    ),
                )
            })
            .collect();
        let default = by_name.get(DEFAULT_POOL).cloned().unwrap_or_else(|| {
            Pool::new(
                DEFAULT_POOL,
                crate::config::default_pool_size() as usize,
                crate::config::DEFAULT_QUEUE,
            )
        });
        let mut by_name = by_name;
        by_name
            .entry(DEFAULT_POOL.into())
            .or_insert_with(|| default.clone());
        let executors = by_name
            .values()
            .map(|p| {
                Ok((
                    p.name().to_string(),
                    Arc::new(PoolExecutor::new(p.name(), p.size())?),
                ))
            })
            .collect::<std::io::Result<_>>()?;
        Ok(Pools {
            by_name,
            default,
            executors,
        })
    }

    /// The pool named `name`, if it exists.
    pub fn get(&self, name: &str) -> Option<&Arc<Pool>> {
        self.by_name.get(name)
    }

    /// The worker threads of the pool named `name` (the default pool's for an unknown name).
    pub fn executor(&self, name: &str) -> &PoolExecutor {
        self.executors
            .get(name)
            .or_else(|| self.executors.get(DEFAULT_POOL))
            .expect("the default pool always has an executor")
    }

    /// The `default` pool.
    pub fn default_pool(&self) -> &Arc<Pool> {
        &self.default
    }

    /// All pools, `default` last (the order of the startup line).
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Pool>> {
        self.by_name
            .values()
            .filter(|p| p.name() != DEFAULT_POOL)
            .chain(std::iter::once(&self.default))
    }

    /// `Created flow thread pools: reporting(3), default(2)`: the startup line.
    pub fn describe(&self) -> String {
        let list: Vec<String> = self
            .iter()
            .map(|p| format!("{}({})", p.name(), p.size()))
            .collect();
        format!("Created flow thread pools: {}", list.join(", "))
    }

    /// The names of every pool, `default` last.
    pub fn names(&self) -> Vec<String> {
        self.iter().map(|p| p.name().to_string()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn startup_line_lists_default_last() {
        let text = "[pools.reporting]\nsize = 3\n[pools.default]\nsize = 20\n[pools.RPC-Origin]\nsize = 4\n";
        let config = NodeConfig::parse(text, Path::new("n.toml"), Path::new(".")).unwrap();
        let pools = Pools::from_config(&config).unwrap();
        assert_eq!(
            pools.describe(),
            "Created flow thread pools: RPC-Origin(4), reporting(3), default(20)"
        );
    }
}
