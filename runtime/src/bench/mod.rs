//! `sluice bench`: the core figures in one run, printed as medians and ratios.
//!
//! (a) bare wasmtime: new store, instantiate, call a trivial `run`, drop — the baseline;
//! (b) a trivial flow started and awaited through the node, sequentially and with many
//!     concurrent starters; (c) one park/resume round trip; (d) resident memory and memory
//!     mappings per parked instance (measured in a child process per count, so each count
//!     starts from a clean heap). Durability figures are in [`durable`], deep chains in
//!     [`chain`].

pub mod api;
pub mod chain;
pub mod cluster;
pub mod durable;
pub mod messaging;
pub mod peers;
pub mod triggers;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use wasmtime::Store;

use sluice::NodeConfig;
use sluice::host::{HostState, InstanceInfo, SlotHolder};
use sluice::model::{IdScheme, Invocation, Origin, Priority};
use sluice::replay::Recorder;
use sluice::sched::{Pool, QueueClass};
use sluice::{Node, StartRequest};

/// Figures of (a)–(c).
#[derive(Debug, Clone, Copy)]
pub struct CoreFigures {
    /// (a) median of new store + instantiate + call + drop, bare.
    pub bare_median: Duration,
    /// (a) 99th percentile of the same.
    pub bare_p99: Duration,
    /// (b) median of one trivial flow started and awaited through the node.
    pub flow_median: Duration,
    /// (b) 99th percentile of the same.
    pub flow_p99: Duration,
    /// (b) median when the caller runs on the pool's own threads (as a parent flow does):
    /// no hand-off between threads.
    pub flow_local_median: Duration,
    /// (b) trivial flows per second with `starters` concurrent starters.
    pub flows_per_sec: f64,
    /// (c) one park/resume round trip (a `sleep(0)` inside a running flow).
    pub park_resume: Duration,
}

/// Figures of (d) for one count of parked instances.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct ParkedFigures {
    /// Instances parked at once.
    pub parked: u64,
    /// Resident memory added per parked instance, bytes.
    pub rss_per_instance: u64,
    /// Memory mappings added per parked instance.
    pub maps_per_instance: f64,
    /// Whether every instance parked (false: the figure is for those that did).
    pub all_parked: bool,
}

async fn node_for(guests: &Path, max_resident: u32) -> anyhow::Result<Node> {
    let text = format!(
        "[node]\nmax-resident = {max_resident}\n[pools.default]\nsize = 2\nqueue = {}\n",
        max_resident.max(10_000)
    );
    let config = NodeConfig::parse(&text, Path::new("<bench>"), Path::new("."))?;
    let node = Node::new(&config).await?;
    node.add_search_dir(guests.to_path_buf());
    Ok(node)
}

/// Start `request` and await it `n` times in a row; the sorted latencies.
async fn sequential(
    node: &Node,
    request: &StartRequest,
    n: usize,
) -> anyhow::Result<Vec<Duration>> {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        node.run(request.clone()).await??;
        samples.push(t.elapsed());
    }
    samples.sort();
    Ok(samples)
}

/// Flows per second when `starters` tasks run `request` `total` times in all, each awaiting
/// one flow after another.
async fn throughput(
    node: &Node,
    request: &StartRequest,
    starters: usize,
    total: usize,
) -> anyhow::Result<f64> {
    let per_starter = total / starters;
    let t = Instant::now();
    let tasks: Vec<_> = (0..starters)
        .map(|_| {
            let (node, request) = (node.clone(), request.clone());
            tokio::spawn(async move {
                for _ in 0..per_starter {
                    node.run(request.clone()).await??;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok((per_starter * starters) as f64 / t.elapsed().as_secs_f64())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Measure (a), (b) and (c) with `iterations` samples each and `starters` concurrent starters.
pub async fn core(
    guests: &Path,
    iterations: usize,
    starters: usize,
) -> anyhow::Result<CoreFigures> {
    let node = node_for(guests, 20_000).await?;
    let noop = StartRequest::rpc("noop", b"{}".to_vec(), "bench");
    node.run(noop.clone()).await??; // load and compile before timing

    // (a) bare: the same engine, linker and host state, without pools or tasks.
    let flow = node.flow("noop").await?;
    let pool = Pool::new("bare", 1, 1);
    let invocation = Invocation {
        id: "bench".into(),
        flow: "noop".into(),
        origin: Origin::Rpc("bench".into()),
        priority: Priority::Normal,
        our_identity: "bench".into(),
    };
    // (a) and (b) alternate, one sample of each in turn: a machine that gets busier or
    // quieter during the run shifts both alike, and the ratio stays fair.
    let mut bare = Vec::with_capacity(iterations);
    let mut through = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let slot = SlotHolder::new(pool.acquire(QueueClass::Normal).await);
        let t = Instant::now();
        let info = InstanceInfo {
            id: "bench".into(),
            flow: "noop".into(),
            priority: Priority::Normal,
            peer: None,
            ids: IdScheme::Bounded,
        };
        let mut store = Store::new(
            flow.component.pre.engine(),
            HostState::new(
                node.services().clone(),
                node.starter(),
                info,
                pool.clone(),
                slot,
                &flow.settings,
                Recorder::new("bench", node.journal().clone(), Vec::new()),
            )
            .map_err(anyhow::Error::msg)?,
        );
        store.set_epoch_deadline(u64::MAX / 2);
        let instance = flow.component.pre.instantiate_async(&mut store).await?;
        let asked = sluice::wit::types::Invocation::from(&invocation);
        let out = instance.call_run(&mut store, &asked, b"{}").await?;
        drop(store);
        bare.push(t.elapsed());
        anyhow::ensure!(out.is_ok(), "noop failed");

        // (b) sequential, through the node.
        let t = Instant::now();
        node.run(noop.clone()).await??;
        through.push(t.elapsed());
    }
    bare.sort();
    through.sort();

    // (b) again, with the caller on the pool's own threads.
    let local = node.pools().executor("default").spawn({
        let (node, noop) = (node.clone(), noop.clone());
        async move {
            anyhow::Ok(percentile(
                &sequential(&node, &noop, iterations).await?,
                0.5,
            ))
        }
    });
    let flow_local_median = local.await??;

    // (b) throughput with concurrent starters, at least 20,000 flows so the figure is stable.
    let flows_per_sec = throughput(&node, &noop, starters, iterations.max(20_000)).await?;

    // (c) park/resume: one flow sleeping 0 ms `iterations` times, minus a flow sleeping never.
    let sleeps = |times: usize| {
        StartRequest::rpc(
            "sleeper",
            format!("{{\"ms\":0,\"times\":{times}}}").into_bytes(),
            "bench",
        )
    };
    node.run(sleeps(1)).await??;
    let t = Instant::now();
    node.run(sleeps(0)).await??;
    let base = t.elapsed();
    let t = Instant::now();
    node.run(sleeps(iterations)).await??;
    let park_resume = t.elapsed().saturating_sub(base) / iterations as u32;

    Ok(CoreFigures {
        bare_median: percentile(&bare, 0.5),
        bare_p99: percentile(&bare, 0.99),
        flow_median: percentile(&through, 0.5),
        flow_p99: percentile(&through, 0.99),
        flow_local_median,
        flows_per_sec,
        park_resume,
    })
}

/// (d) in this process: park `count` sleepers and measure what they added.
pub async fn parked(guests: &Path, count: u64) -> anyhow::Result<ParkedFigures> {
    let node = node_for(guests, u32::try_from(count + 100)?).await?;
    let pool = node.pools().default_pool().clone();
    node.run(StartRequest::rpc(
        "sleeper",
        b"{\"ms\":0}".to_vec(),
        "bench",
    ))
    .await??;
    let (rss0, maps0) = (rss_bytes()?, map_count()?);
    let mut handles = Vec::with_capacity(count as usize);
    for _ in 0..count {
        handles.push(
            node.start(StartRequest::rpc(
                "sleeper",
                b"{\"ms\":3600000}".to_vec(),
                "bench",
            ))
            .await?,
        );
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let s = pool.stats().snapshot();
        if s.parked as u64 == count || s.failed > 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let parked = pool.stats().snapshot().parked as u64;
    let (rss1, maps1) = (rss_bytes()?, map_count()?);
    let per = parked.max(1);
    Ok(ParkedFigures {
        parked,
        rss_per_instance: rss1.saturating_sub(rss0) / per,
        maps_per_instance: maps1.saturating_sub(maps0) as f64 / per as f64,
        all_parked: parked == count,
    })
}

/// (d) in a child process (`sluice bench --parked-child N`), so each count starts clean.
pub fn parked_in_child(exe: &Path, guests: &Path, count: u64) -> anyhow::Result<ParkedFigures> {
    let out = std::process::Command::new(exe)
        .args(["bench", "--guests"])
        .arg(guests)
        .args(["--parked-child", &count.to_string()])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "parked child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout);
    Ok(serde_json::from_str(line.trim())?)
}

pub fn rss_bytes() -> anyhow::Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm.split_whitespace().nth(1).unwrap_or("0").parse()?;
    Ok(pages * 4096)
}

fn map_count() -> anyhow::Result<u64> {
    Ok(std::fs::read_to_string("/proc/self/maps")?.lines().count() as u64)
}

/// The default place `scripts/build-guests.sh` puts guest components.
pub fn default_guests_dir() -> PathBuf {
    PathBuf::from("guest-flows/target/wasm32-wasip2/release")
}

/// Figures of the pools benchmark.
#[derive(Debug, Clone, Copy)]
pub struct PoolFigures {
    /// Median cost of choosing a pool with the built-in rules.
    pub builtin_choice: Duration,
    /// Median cost of choosing a pool with the example mapper component.
    pub mapper_choice: Duration,
    /// Median start-to-output latency of a trivial `transactions` flow, `reporting` idle.
    pub tx_idle: Duration,
    /// The same while every `reporting` slot runs a CPU-bound flow.
    pub tx_saturated: Duration,
}

/// Mapper overhead per start, and `transactions` start latency with `reporting` idle vs saturated.
pub async fn pools(guests: &Path, iterations: usize) -> anyhow::Result<PoolFigures> {
    use sluice::sched::ComponentMapper;
    use sluice::sched::rules::{self, Placement};

    let text = "[pools.reporting]\nsize = 3\n[pools.transactions]\nsize = 2\n[pools.Peer-Origin]\nsize = 1\n";
    let config = NodeConfig::parse(text, Path::new("<bench>"), Path::new("."))?;
    let pools = sluice::sched::Pools::from_config(&config)?;
    let invocation = Invocation {
        id: "01BENCH".into(),
        flow: "tx-transfer".into(),
        origin: Origin::Rpc("bench".into()),
        priority: Priority::Normal,
        our_identity: "PartyA".into(),
    };
    let mut builtin = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let t = Instant::now();
        let placement = Placement {
            tag: None,
            origin: &invocation.origin,
            priority: invocation.priority,
            fan_out: false,
        };
        std::hint::black_box(rules::builtin_pool(&pools, placement));
        builtin.push(t.elapsed());
    }
    builtin.sort();
    let mapper = ComponentMapper::load(&guests.join("prefix_mapper.wasm"), pools.names()).await?;
    let mut mapped = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let t = Instant::now();
        let choice = mapper.choose(&invocation).await;
        mapped.push(t.elapsed());
        anyhow::ensure!(
            choice.as_deref() == Ok("transactions"),
            "mapper chose {choice:?}"
        );
    }
    mapped.sort();

    let flows = format!(
        "{text}[[flows]]\nname = \"report\"\ncomponent = \"{}\"\npool = \"reporting\"\n\
         [[flows]]\nname = \"tx\"\ncomponent = \"{}\"\npool = \"transactions\"\n",
        guests.join("spin.wasm").display(),
        guests.join("noop.wasm").display()
    );
    let node = Node::new(&NodeConfig::parse(
        &flows,
        Path::new("<bench>"),
        Path::new("."),
    )?)
    .await?;
    let tx = || StartRequest::rpc("tx", b"{}".to_vec(), "bench");
    let median_tx = |node: Node| async move {
        anyhow::Ok(percentile(
            &sequential(&node, &tx(), iterations).await?,
            0.5,
        ))
    };
    node.run(tx()).await??;
    let tx_idle = median_tx(node.clone()).await?;
    let reporting = node
        .pools()
        .get("reporting")
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no reporting pool"))?;
    let mut reports = Vec::new();
    for _ in 0..6 {
        reports.push(
            node.start(StartRequest::rpc(
                "report",
                b"{\"ms\":600000}".to_vec(),
                "bench",
            ))
            .await?,
        );
    }
    while reporting.stats().snapshot().running < 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let tx_saturated = median_tx(node.clone()).await?;
    anyhow::ensure!(
        reporting.stats().snapshot().running == 3,
        "reporting was not saturated throughout"
    );
    Ok(PoolFigures {
        builtin_choice: percentile(&builtin, 0.5),
        mapper_choice: percentile(&mapped, 0.5),
        tx_idle,
        tx_saturated,
    })
}

/// One metering mode's figures.
#[derive(Debug, Clone, Copy)]
pub struct MeteringFigures {
    /// The mode.
    pub metering: sluice::engine::Metering,
    /// Median of a call-heavy guest (`fib`).
    pub fib: Duration,
    /// Median of a loop-heavy guest (`sieve`).
    pub sieve: Duration,
    /// Median of a trivial flow.
    pub noop: Duration,
}

/// CPU-bound guests and a trivial flow under epoch interruption, fuel, and no metering.
/// Rounds interleave the three modes, so drift in the machine's speed hits all alike.
pub async fn sandbox(guests: &Path, iterations: usize) -> anyhow::Result<Vec<MeteringFigures>> {
    use sluice::engine::Metering;
    let text = format!(
        "[[flows]]\nname = \"cpu\"\ncomponent = \"{}\"\nlimits = {{ cpu-slice = \"10m\", cpu-total = \"1h\", memory = \"256 MiB\" }}\n",
        guests.join("hostile.wasm").display()
    );
    let config = NodeConfig::parse(&text, Path::new("<bench>"), Path::new("."))?;
    let modes = [Metering::Off, Metering::Epoch, Metering::Fuel];
    let mut nodes = Vec::new();
    for metering in modes {
        let node = Node::with_metering(&config, metering).await?;
        node.add_search_dir(guests.to_path_buf());
        nodes.push(node);
    }
    async fn time(node: &Node, flow: &str, input: &str) -> anyhow::Result<Duration> {
        let t = Instant::now();
        node.run(StartRequest::rpc(flow, input.as_bytes().to_vec(), "bench"))
            .await??;
        Ok(t.elapsed())
    }
    const FIB: &str = r#"{"attack":"fib","n":30}"#;
    const SIEVE: &str = r#"{"attack":"sieve","n":5000000}"#;
    let mut samples = vec![[Vec::new(), Vec::new(), Vec::new()]; modes.len()];
    for round in 0..iterations.max(11) {
        for (m, node) in nodes.iter().enumerate() {
            if round < 11 {
                samples[m][0].push(time(node, "cpu", FIB).await?);
                samples[m][1].push(time(node, "cpu", SIEVE).await?);
            }
            samples[m][2].push(time(node, "noop", "{}").await?);
        }
    }
    Ok(modes
        .iter()
        .zip(samples.iter_mut())
        .map(|(metering, s)| {
            s.iter_mut().for_each(|v| v.sort());
            MeteringFigures {
                metering: *metering,
                fib: percentile(&s[0], 0.5),
                sieve: percentile(&s[1], 0.5),
                noop: percentile(&s[2], 0.5),
            }
        })
        .collect())
}

/// One language's figures.
#[derive(Debug, Clone)]
pub struct LanguageFigures {
    /// "rust", "python" or "js".
    pub language: String,
    /// Size of the `hello` component, bytes.
    pub size: u64,
    /// Compiling `hello` from scratch.
    pub compile: Duration,
    /// Loading `hello` from the compilation cache.
    pub cached_load: Duration,
    /// Median of starting and awaiting `hello` through a node.
    pub run_median: Duration,
    /// Resident memory per parked `sleeper` instance, bytes.
    pub parked_rss: u64,
}

/// Size, compile, cached load, run and parked memory of `hello`/`sleeper` in each language.
/// `builds` maps a language to the directory holding its `hello.wasm` and `sleeper.wasm`.
pub async fn languages(
    builds: &[(&str, PathBuf)],
    iterations: usize,
    parked: u64,
) -> anyhow::Result<Vec<LanguageFigures>> {
    let mut out = Vec::new();
    for (language, dir) in builds {
        let hello = dir.join("hello.wasm");
        let size = std::fs::metadata(&hello)?.len();
        let cache_dir =
            std::env::temp_dir().join(format!("sluice-bench-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&cache_dir);
        let engine = sluice::engine::FlowEngine::<HostState>::new(
            sluice::engine::ComponentCache::new(Some(cache_dir.clone())),
            Default::default(),
        )?;
        let t = Instant::now();
        engine.load(&hello)?;
        let compile = t.elapsed();
        let t = Instant::now();
        engine.load(&hello)?;
        let cached_load = t.elapsed();
        let _ = std::fs::remove_dir_all(&cache_dir);

        let node = node_for(dir, u32::try_from(parked + 100)?).await?;
        let greet = || StartRequest::rpc("hello", br#"{"name":"bench"}"#.to_vec(), "bench");
        node.run(greet()).await??;
        let samples = sequential(&node, &greet(), iterations).await?;
        node.run(StartRequest::rpc(
            "sleeper",
            br#"{"ms":0}"#.to_vec(),
            "bench",
        ))
        .await??;
        let pool = node.pools().default_pool().clone();
        let rss0 = rss_bytes()?;
        let mut handles = Vec::new();
        for _ in 0..parked {
            handles.push(
                node.start(StartRequest::rpc(
                    "sleeper",
                    br#"{"ms":3600000}"#.to_vec(),
                    "bench",
                ))
                .await?,
            );
        }
        let deadline = Instant::now() + Duration::from_secs(600);
        while (pool.stats().snapshot().parked as u64) < parked && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let parked_rss = rss_bytes()?.saturating_sub(rss0) / parked.max(1);
        out.push(LanguageFigures {
            language: language.to_string(),
            size,
            compile,
            cached_load,
            run_median: percentile(&samples, 0.5),
            parked_rss,
        });
    }
    Ok(out)
}
