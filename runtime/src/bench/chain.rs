//! (C) a deep chain with every pool of size 1: peak resident memory per level, for depths
//! far past `node.max-resident` (the default), so ancestors are evicted while they wait.
//! Each depth runs in its own process (`sluice bench --chain-child N`): the peak of one
//! process is its own.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use sluice::{Node, NodeConfig, StartRequest};

/// Figures of one chain depth.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ChainFigures {
    /// Levels below the root.
    pub depth: u64,
    /// Resident memory before the chain started, bytes.
    pub base_rss: u64,
    /// Largest resident memory of the process, bytes (the kernel's high-water mark).
    pub peak_rss: u64,
    /// Instances evicted while parked.
    pub evictions: u64,
    /// Most instances resident at once.
    pub peak_resident: u32,
    /// From the start to the root's output.
    pub elapsed: Duration,
}

impl ChainFigures {
    /// Peak memory the chain added, per level.
    pub fn per_level(&self) -> u64 {
        self.peak_rss.saturating_sub(self.base_rss) / self.depth.max(1)
    }
}

/// Run `chain` to `depth` in this process on a node whose every pool has one slot, with
/// the default `max-resident` and the in-memory store (as `sluice run` without a data dir).
pub async fn chain(guests: &Path, depth: u64) -> anyhow::Result<ChainFigures> {
    let config = NodeConfig::parse(
        "[pools.default]\nsize = 1\n",
        Path::new("<bench>"),
        Path::new("."),
    )?;
    let node = Node::new(&config).await?;
    node.add_search_dir(guests.to_path_buf());
    let run = |depth: u64| {
        StartRequest::rpc(
            "chain",
            format!("{{\"depth\":{depth}}}").into_bytes(),
            "bench",
        )
    };
    node.run(run(1)).await??; // compile and load before measuring
    let base_rss = super::rss_bytes()?;
    let t = Instant::now();
    let out = node.run(run(depth)).await??;
    let elapsed = t.elapsed();
    let out: serde_json::Value = serde_json::from_slice(&out)?;
    anyhow::ensure!(
        out["sum"] == depth * (depth + 1) / 2,
        "chain of depth {depth} returned {out}"
    );
    Ok(ChainFigures {
        depth,
        base_rss,
        peak_rss: peak_rss()?,
        evictions: node.residency().evictions(),
        peak_resident: node.residency().peak(),
        elapsed,
    })
}

/// The process's high-water mark of resident memory (`VmHWM`), bytes.
fn peak_rss() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmHWM in /proc/self/status"))?;
    Ok(kib * 1024)
}

/// [`chain`] in a child process (`sluice bench --chain-child N`).
pub fn chain_in_child(exe: &Path, guests: &Path, depth: u64) -> anyhow::Result<ChainFigures> {
    let out = std::process::Command::new(exe)
        .args(["bench", "--guests"])
        .arg(guests)
        .args(["--chain-child", &depth.to_string()])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "chain child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_str(
        String::from_utf8_lossy(&out.stdout).trim(),
    )?)
}
