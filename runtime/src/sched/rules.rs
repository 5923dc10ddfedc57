//! The built-in mapping rules: which pool a new instance goes to when no mapper component
//! is configured. In order, the first that applies wins:
//!
//! 1. the flow's `pool` tag, when that pool exists; a tag naming a missing pool sends the
//!    flow to `default` (warned about at startup);
//! 2. priority `high` → `high-priority`, when that pool exists (otherwise the instance
//!    jumps its pool's queue instead);
//! 3. a child of a `parallel(…)` fan-out → `parallel`, when that pool exists;
//! 4. started by a counterparty → `Peer-Origin`, when that pool exists;
//! 5. started over the API or CLI → `RPC-Origin`, when that pool exists;
//! 6. `default`.

use std::sync::Arc;

use crate::model::{Origin, Priority};

use super::{Pool, Pools};

/// Pool for high-priority instances.
pub const HIGH_PRIORITY_POOL: &str = "high-priority";
/// Pool for children of a `parallel` fan-out.
pub const PARALLEL_POOL: &str = "parallel";
/// Pool for instances started by a counterparty.
pub const PEER_ORIGIN_POOL: &str = "Peer-Origin";
/// Pool for instances started over the API or CLI.
pub const RPC_ORIGIN_POOL: &str = "RPC-Origin";

/// What the rules look at.
#[derive(Debug, Clone, Copy)]
pub struct Placement<'a> {
    /// The flow's pool tag.
    pub tag: Option<&'a str>,
    /// Who started the instance.
    pub origin: &'a Origin,
    /// Its priority.
    pub priority: Priority,
    /// Whether it is a child of a `parallel` fan-out.
    pub fan_out: bool,
}

/// Apply the built-in rules.
pub fn builtin_pool<'p>(pools: &'p Pools, placement: Placement<'_>) -> &'p Arc<Pool> {
    if let Some(tag) = placement.tag {
        return pools.get(tag).unwrap_or(pools.default_pool());
    }
    let candidates = [
        (placement.priority == Priority::High).then_some(HIGH_PRIORITY_POOL),
        placement.fan_out.then_some(PARALLEL_POOL),
        matches!(placement.origin, Origin::Peer(_)).then_some(PEER_ORIGIN_POOL),
        matches!(placement.origin, Origin::Rpc(_)).then_some(RPC_ORIGIN_POOL),
    ];
    candidates
        .into_iter()
        .flatten()
        .find_map(|name| pools.get(name))
        .unwrap_or(pools.default_pool())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NodeConfig;
    use std::path::Path;

    fn pools(names: &[&str]) -> Pools {
        let text: String = names
            .iter()
            .map(|n| format!("[pools.\"{n}\"]\nsize = 1\n"))
            .collect();
        Pools::from_config(&NodeConfig::parse(&text, Path::new("t.toml"), Path::new(".")).unwrap())
            .unwrap()
    }

    fn place<'a>(
        tag: Option<&'a str>,
        origin: &'a Origin,
        priority: Priority,
        fan_out: bool,
    ) -> Placement<'a> {
        Placement {
            tag,
            origin,
            priority,
            fan_out,
        }
    }

    const ALL: &[&str] = &[
        "reporting",
        "high-priority",
        "parallel",
        "Peer-Origin",
        "RPC-Origin",
    ];

    #[test]
    fn the_tag_wins_when_its_pool_exists() {
        let p = pools(ALL);
        let rpc = Origin::Rpc("cli".into());
        assert_eq!(
            builtin_pool(&p, place(Some("reporting"), &rpc, Priority::High, true)).name(),
            "reporting"
        );
    }

    #[test]
    fn a_tag_naming_a_missing_pool_goes_to_default() {
        let p = pools(ALL);
        let rpc = Origin::Rpc("cli".into());
        assert_eq!(
            builtin_pool(&p, place(Some("gone"), &rpc, Priority::High, false)).name(),
            "default"
        );
    }

    #[test]
    fn high_priority_then_parallel_then_peer_then_rpc_then_default() {
        let p = pools(ALL);
        let (peer, rpc, sub) = (
            Origin::Peer("PartyB".into()),
            Origin::Rpc("cli".into()),
            Origin::Subflow("x".into()),
        );
        assert_eq!(
            builtin_pool(&p, place(None, &peer, Priority::High, true)).name(),
            "high-priority"
        );
        assert_eq!(
            builtin_pool(&p, place(None, &peer, Priority::Normal, true)).name(),
            "parallel"
        );
        assert_eq!(
            builtin_pool(&p, place(None, &peer, Priority::Normal, false)).name(),
            "Peer-Origin"
        );
        assert_eq!(
            builtin_pool(&p, place(None, &rpc, Priority::Normal, false)).name(),
            "RPC-Origin"
        );
        assert_eq!(
            builtin_pool(&p, place(None, &sub, Priority::Normal, false)).name(),
            "default"
        );
    }

    #[test]
    fn each_rule_is_skipped_when_its_pool_is_missing() {
        let p = pools(&["reporting"]);
        let peer = Origin::Peer("PartyB".into());
        assert_eq!(
            builtin_pool(&p, place(None, &peer, Priority::High, true)).name(),
            "default"
        );
        let rpc = Origin::Rpc("cli".into());
        assert_eq!(
            builtin_pool(&p, place(None, &rpc, Priority::Normal, false)).name(),
            "default"
        );
    }
}
