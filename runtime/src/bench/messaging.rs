//! Sessions and events: a trade is `buyer` opening a session, sending two messages and
//! receiving one from the `seller` it starts, then publishing an event. Measured end to end,
//! one at a time and many at once, with the SQLite store (fsync on) and in memory.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use super::durable::scratch_dir;
use super::{percentile, sequential, throughput};
use sluice::{Node, NodeConfig, StartRequest};

/// Figures of one store.
#[derive(Debug, Clone, Serialize)]
pub struct TradeFigures {
    /// Trades per second with concurrent starters (each trade: two instances, three messages,
    /// one event).
    pub trades_per_sec: f64,
    /// One trade at a time, start of the buyer to its output (median).
    pub trade_median: Duration,
}

async fn trading_node(guests: &Path, data_dir: Option<&Path>) -> anyhow::Result<Node> {
    let component = |name: &str| guests.join(format!("{name}.wasm")).display().to_string();
    let text = format!(
        "[node]\nidentity = \"PartyA\"\n[pools.default]\nsize = 2\nqueue = 1000000\n\
         [[flows]]\nname = \"buyer\"\ncomponent = \"{}\"\n\
         [[flows]]\nname = \"seller\"\ncomponent = \"{}\"\ninitiated-by = \"buyer\"\n",
        component("buyer"),
        component("seller")
    );
    let mut config = NodeConfig::parse(&text, Path::new("<bench>"), Path::new("."))?;
    config.node.data_dir = data_dir.map(Path::to_path_buf);
    Ok(Node::new(&config).await?)
}

/// Trades with the SQLite store when `durable`, else in memory.
pub async fn trades(
    guests: &Path,
    durable: bool,
    iterations: usize,
    starters: usize,
) -> anyhow::Result<TradeFigures> {
    let dir = durable.then(|| scratch_dir("trades"));
    let node = trading_node(guests, dir.as_deref()).await?;
    let input = serde_json::to_vec(&serde_json::json!({ "item": "bond", "bid": 45 }))?;
    let request = StartRequest::rpc("buyer", input, "bench");
    sequential(&node, &request, 50).await?; // warm up
    let samples = sequential(&node, &request, iterations).await?;
    let trades_per_sec = throughput(&node, &request, starters, iterations * 4).await?;
    drop(node);
    if let Some(dir) = dir {
        std::fs::remove_dir_all(dir).ok();
    }
    Ok(TradeFigures {
        trades_per_sec,
        trade_median: percentile(&samples, 0.5),
    })
}
