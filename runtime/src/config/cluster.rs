//! `[cluster]`: how a node takes part when several share one PostgreSQL database.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::HumanDuration;

/// `[cluster]`: this node's name among the nodes sharing its `[store] url`, and its lease.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ClusterSection {
    /// Unique among the nodes of one database; a restarted node keeps its name (and so
    /// resumes its own instances at once). Default: the node's identity.
    #[serde(default)]
    pub name: Option<String>,
    /// How long the node's lease lasts unrenewed (it renews five times as often). Another
    /// node takes over this one's instances once it lapses; a node that cannot renew stops
    /// writing before that. Default 10 s.
    #[serde(default)]
    pub lease: Option<HumanDuration>,
}

/// The lease when `[cluster] lease` is not set.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);

impl ClusterSection {
    /// The lease duration.
    pub fn lease(&self) -> Duration {
        self.lease.as_ref().map_or(DEFAULT_LEASE, |l| l.0)
    }

    pub(super) fn validate(&self, shared_store: bool) -> Result<(), String> {
        if !shared_store && (self.name.is_some() || self.lease.is_some()) {
            return Err(
                "cluster: needs `[store] url` (nodes share a PostgreSQL database; a data dir's SQLite file belongs to one node)"
                    .into(),
            );
        }
        if self.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
            return Err("cluster.name: must not be empty".into());
        }
        if self.lease() < Duration::from_secs(1) {
            return Err(format!(
                "cluster.lease = {}: must be at least 1s",
                humantime::format_duration(self.lease())
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::NodeConfig;

    fn parse(text: &str) -> Result<NodeConfig, String> {
        NodeConfig::parse(text, Path::new("node.toml"), Path::new(".")).map_err(|e| e.to_string())
    }

    #[test]
    fn a_cluster_needs_a_shared_store_and_sane_values() {
        let e = parse("[cluster]\nname = \"a\"\n").unwrap_err();
        assert!(e.contains("cluster: needs `[store] url`"), "{e}");
        let pg = "[store]\nurl = \"postgres://u@h/db\"\n";
        let e = parse(&format!("{pg}[cluster]\nlease = \"200ms\"\n")).unwrap_err();
        assert!(
            e.contains("cluster.lease = 200ms: must be at least 1s"),
            "{e}"
        );
        let e = parse(&format!("{pg}[cluster]\nname = \" \"\n")).unwrap_err();
        assert!(e.contains("cluster.name: must not be empty"), "{e}");
        let e = parse(&format!("{pg}[cluster]\nnmae = \"a\"\n")).unwrap_err();
        assert!(e.contains("nmae"), "{e}");
        let c = parse(&format!("{pg}[cluster]\nname = \"a\"\nlease = \"3s\"\n")).unwrap();
        assert_eq!(c.cluster.name.as_deref(), Some("a"));
        assert_eq!(c.cluster.lease(), std::time::Duration::from_secs(3));
        assert_eq!(parse(pg).unwrap().cluster.lease(), super::DEFAULT_LEASE);
    }
}
