//! Durability figures: throughput and latency with the SQLite store (fsync on) against the
//! in-memory store, fan-out end to end, replay speed, the cost of rebuilding an evicted
//! instance, and (separately) a million parked flows.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{percentile, rss_bytes, sequential, throughput};
use sluice::store::{InstanceRecord, Status, Write};
use sluice::{Node, NodeConfig, StartRequest};

/// Store-dependent figures, durable and in memory.
#[derive(Debug, Clone, Serialize)]
pub struct StoreFigures {
    /// Trivial flows per second with concurrent starters.
    pub flows_per_sec: f64,
    /// Sequential start-to-output median of a trivial flow.
    pub sequential_median: Duration,
    /// Store writes per commit during the throughput run (the batching achieved).
    pub writes_per_commit: f64,
    /// One parent starting 100 children and joining them, end to end (median).
    pub fan_out_100: Duration,
    /// Ten such parents at once, until all ten end (median).
    pub ten_fan_outs: Duration,
}

/// Figures of replay and rebuilding.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayFigures {
    /// Journal entries replayed per second when an instance is rebuilt.
    pub entries_per_sec: f64,
    /// Entries in the journal replayed.
    pub entries: usize,
    /// Wake-to-end of a sleeper that stayed resident (median).
    pub resident_wake: Duration,
    /// Wake-to-end of a sleeper that was evicted and is rebuilt (median).
    pub evicted_wake: Duration,
}

async fn durable_node(
    guests: &Path,
    data_dir: Option<&Path>,
    max_resident: u32,
    queue: usize,
) -> anyhow::Result<Node> {
    let mut config = NodeConfig::parse(
        &format!(
            "[node]\nmax-resident = {max_resident}\n[pools.default]\nsize = 2\nqueue = {queue}\n"
        ),
        Path::new("<bench>"),
        Path::new("."),
    )?;
    config.node.data_dir = data_dir.map(Path::to_path_buf);
    let node = Node::new(&config).await?;
    node.add_search_dir(guests.to_path_buf());
    Ok(node)
}

pub(super) fn scratch_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sluice-bench-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The store figures for the SQLite store in a scratch directory (`durable`) or in memory.
pub async fn store(
    guests: &Path,
    durable: bool,
    iterations: usize,
    starters: usize,
) -> anyhow::Result<StoreFigures> {
    let dir = scratch_dir("durable");
    let node = durable_node(guests, durable.then_some(dir.as_path()), 20_000, 2_000_000).await?;
    let noop = StartRequest::rpc("noop", b"{}".to_vec(), "bench");
    node.run(noop.clone()).await??;

    let (c0, w0) = node.journal().commit_stats();
    let flows_per_sec = throughput(&node, &noop, starters, iterations.max(20_000)).await?;
    let (c1, w1) = node.journal().commit_stats();
    let writes_per_commit = (w1 - w0) as f64 / (c1 - c0).max(1) as f64;

    let seq = sequential(&node, &noop, iterations.min(2000)).await?;

    let fan = StartRequest::rpc(
        "fanout",
        br#"{"n":100,"child":"noop","input":{}}"#.to_vec(),
        "bench",
    );
    node.run(fan.clone()).await??;
    let mut one = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        node.run(fan.clone()).await??;
        one.push(t.elapsed());
    }
    one.sort();
    let mut ten = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        let mut handles = Vec::new();
        for _ in 0..10 {
            handles.push(node.start(fan.clone()).await?);
        }
        for h in handles {
            h.outcome().await?;
        }
        ten.push(t.elapsed());
    }
    ten.sort();
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(StoreFigures {
        flows_per_sec,
        sequential_median: percentile(&seq, 0.5),
        writes_per_commit,
        fan_out_100: percentile(&one, 0.5),
        ten_fan_outs: percentile(&ten, 0.5),
    })
}

/// Replays timed for the replay figure (the median is reported).
const REPLAYS: usize = 5;

/// Replay speed, and the wake-to-end cost of an evicted instance against a resident one.
pub async fn replay(guests: &Path, entries: usize) -> anyhow::Result<ReplayFigures> {
    let dir = scratch_dir("replay");
    let node = durable_node(guests, Some(&dir), 1000, 2_000_000).await?;
    let long = StartRequest::rpc(
        "sleeper",
        format!("{{\"ms\":0,\"times\":{entries}}}").into_bytes(),
        "bench",
    );
    let handle = node.start(long).await?;
    let id = handle.id().to_string();
    handle.outcome().await?;
    // Unfinished copies of it, as a crash before its end would have left them (an ended
    // instance's status is final), resumed one at a time. Each is timed from `recover` to
    // its end as signalled by the node (not by polling the store, whose 1 ms timer ticks
    // are a tenth of a replay), and the median is kept.
    let store = node.journal().store().clone();
    let done = store
        .record(&id)?
        .ok_or_else(|| anyhow::anyhow!("instance {id} not recorded"))?;
    let journal = store.journal(&done.id)?;
    let mut times = Vec::new();
    for k in 0..REPLAYS {
        let copy_id = format!("{id}-unfinished-{k}");
        let mut copy = InstanceRecord::new(
            &copy_id,
            &done.flow,
            &done.component,
            &done.input.0,
            done.meta.clone(),
        );
        copy.attempts = done.attempts;
        let mut batch = vec![Write::Create(copy)];
        for entry in &journal {
            batch.push(Write::Append {
                id: copy_id.clone(),
                entry: entry.clone(),
            });
        }
        node.journal().write(batch).await?;
        let t = Instant::now();
        anyhow::ensure!(node.recover().await? == 1, "{copy_id} was not resumed");
        node.services().outcome_of(&copy_id).await?;
        times.push(t.elapsed());
        anyhow::ensure!(
            store
                .record(&copy_id)?
                .is_some_and(|r| r.status == Status::Completed),
            "{copy_id} did not complete"
        );
    }
    times.sort();
    let replayed = percentile(&times, 0.5);
    drop(node);

    // Wake-to-end: a 50 ms sleeper, resident vs evicted (max-resident 1, a second start
    // evicts it while it sleeps).
    let node = durable_node(guests, None, 1, 2_000_000).await?;
    let nap = StartRequest::rpc("sleeper", b"{\"ms\":50}".to_vec(), "bench");
    let noop = StartRequest::rpc("noop", b"{}".to_vec(), "bench");
    node.run(nap.clone()).await??;
    node.run(noop.clone()).await??;
    let (mut resident, mut evicted) = (Vec::new(), Vec::new());
    for _ in 0..50 {
        let t = Instant::now();
        node.run(nap.clone()).await??;
        resident.push(t.elapsed().saturating_sub(Duration::from_millis(50)));
        let evictions = node.residency().evictions();
        let t = Instant::now();
        let h = node.start(nap.clone()).await?;
        tokio::time::sleep(Duration::from_millis(10)).await;
        node.run(noop.clone()).await??;
        h.outcome().await?;
        anyhow::ensure!(
            node.residency().evictions() > evictions,
            "the sleeper was not evicted"
        );
        evicted.push(t.elapsed().saturating_sub(Duration::from_millis(50)));
    }
    resident.sort();
    evicted.sort();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(ReplayFigures {
        entries_per_sec: entries as f64 / replayed.as_secs_f64(),
        entries,
        resident_wake: percentile(&resident, 0.5),
        evicted_wake: percentile(&evicted, 0.5),
    })
}

/// What the scale run found.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleFigures {
    /// Flows started.
    pub flows: usize,
    /// Time to start them all (each recorded durably and admitted).
    pub start_phase: Duration,
    /// Time until every one was parked (resident or evicted); `None` if some woke first.
    pub all_parked: Option<Duration>,
    /// Largest node RSS seen, bytes.
    pub peak_rss: u64,
    /// Resident instances at most.
    pub peak_resident: u32,
    /// Flows completed.
    pub completed: usize,
    /// From the first start to the last end.
    pub total: Duration,
}

/// Park `flows` sleepers (each sleeps `sleep_ms`) on a durable node with `max_resident`,
/// then let all wake and complete.
pub async fn scale(
    guests: &Path,
    flows: usize,
    sleep_ms: u64,
    max_resident: u32,
    queue: usize,
) -> anyhow::Result<ScaleFigures> {
    let dir = scratch_dir("scale");
    // With the default queue starters meet backpressure as an API client does (a 429);
    // with one as large as `flows`, every start is admitted at once into a backlog.
    let node = durable_node(guests, Some(&dir), max_resident, queue).await?;
    node.run(StartRequest::rpc(
        "sleeper",
        b"{\"ms\":0}".to_vec(),
        "bench",
    ))
    .await??;
    let input = format!("{{\"ms\":{sleep_ms}}}").into_bytes();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let t = Instant::now();
    let sampler = {
        let peak = peak.clone();
        let pool = node.pools().default_pool().clone();
        tokio::spawn(async move {
            let mut all_parked = None;
            loop {
                if let Ok(rss) = rss_bytes() {
                    peak.fetch_max(rss, std::sync::atomic::Ordering::Relaxed);
                }
                if all_parked.is_none() && pool.stats().snapshot().parked >= flows {
                    all_parked = Some(t.elapsed());
                }
                if all_parked.is_some() && pool.stats().snapshot().parked < flows {
                    return all_parked;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    // Concurrent starters: each start waits for its record to be durable. Nobody holds a
    // handle: a node's callers do not wait on a million flows; their ends go to the store.
    const STARTERS: usize = 64;
    let started = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks: Vec<_> = (0..STARTERS)
        .map(|k| {
            let (node, input, started) = (node.clone(), input.clone(), started.clone());
            let count = flows / STARTERS + usize::from(k < flows % STARTERS);
            tokio::spawn(async move {
                for _ in 0..count {
                    loop {
                        let request = StartRequest::rpc("sleeper", input.clone(), "bench");
                        match node.submit(request).await {
                            Ok(_) => break,
                            Err(sluice::StartError::QueueFull { .. }) => {
                                tokio::time::sleep(Duration::from_millis(1)).await;
                            }
                            Err(e) => return Err(e.into()),
                        }
                    }
                    let n = started.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                    if n % 100_000 == 0 {
                        eprintln!(
                            "  started {n} flows in {:.1}s, RSS {} MiB",
                            t.elapsed().as_secs_f64(),
                            rss_bytes()? >> 20
                        );
                    }
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    let start_phase = t.elapsed();
    let pool = node.pools().default_pool().clone();
    let before = pool.stats().snapshot();
    let ended = |s: &sluice::sched::PoolSnapshot| s.completed + s.failed;
    while ended(&pool.stats().snapshot()) - ended(&before) < flows as u64 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let completed = (pool.stats().snapshot().completed - before.completed) as usize;
    let total = t.elapsed();
    // Ended once the first woke after all had parked; never ended if some woke first.
    let all_parked = if sampler.is_finished() {
        sampler.await?
    } else {
        sampler.abort();
        None
    };
    let figures = ScaleFigures {
        flows,
        start_phase,
        all_parked,
        peak_rss: peak.load(std::sync::atomic::Ordering::Relaxed),
        peak_resident: node.residency().peak(),
        completed,
        total,
    };
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(figures)
}
