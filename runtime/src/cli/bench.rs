//! `sluice bench`: the core figures (start overhead, park/resume, memory per parked flow).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::ValueEnum;

use crate::bench;

/// Measure the runtime's core figures on this machine (build with --release).
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Directory holding the built guest components.
    #[arg(long, default_value_os_t = bench::default_guests_dir())]
    guests: PathBuf,
    /// Samples for each latency figure (at least 1).
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..))]
    iterations: u32,
    /// Concurrent starters for the throughput figure (at least 1).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    starters: u32,
    /// Counts of parked instances to measure memory at.
    #[arg(long, value_delimiter = ',', default_values_t = [10_000u64, 20_000])]
    parked: Vec<u64>,
    /// Which figures.
    #[arg(long, value_enum, default_value_t = Part::All)]
    only: Part,
    /// Flows parked at once by `--only scale`.
    #[arg(long, default_value_t = 1_000_000)]
    flows: usize,
    /// Resident instances at most in `--only scale` (the rest are evicted while parked).
    #[arg(long, default_value_t = 20_000)]
    max_resident: u32,
    /// Queue of the pool in `--only scale`: the node's default makes starters meet
    /// backpressure (and retry); one as large as `--flows` admits every start at once.
    #[arg(long, default_value_t = sluice::config::DEFAULT_QUEUE)]
    queue: usize,
    /// How long each `--only scale` flow sleeps, in ms (long enough for all to park).
    #[arg(long, default_value_t = 240_000)]
    sleep_ms: u64,
    /// The PostgreSQL server `--only cluster` makes its databases on.
    #[arg(
        long,
        env = "SLUICE_BENCH_POSTGRES",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    postgres: String,
    /// Chain depths measured by `--only chain`.
    #[arg(long, value_delimiter = ',', default_values_t = [1_000u64, 10_000, 100_000])]
    depths: Vec<u64>,
    /// Internal: measure one parked count in this process and print it as JSON.
    #[arg(long, hide = true)]
    parked_child: Option<u64>,
    /// Internal: run one chain depth in this process and print its figures as JSON.
    #[arg(long, hide = true)]
    chain_child: Option<u64>,
}

/// A part of the benchmark, as `--only` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Part {
    /// core, pools, sandbox, durable and messaging
    All,
    /// (a)–(d): bare wasmtime against a flow through the node; park/resume; parked memory
    Core,
    /// (m), (s): the mapper's cost; a pool's latency while another is saturated
    Pools,
    /// (x): metering by epoch against fuel and none
    Sandbox,
    /// (D), (R): the SQLite store against memory; fan-out; replay; eviction
    Durable,
    /// (T): trades over a session, with an event
    Messaging,
    /// (l): the Rust, Python and JS builds of hello and sleeper
    Languages,
    /// (S): `--flows` parked sleepers, evicted beyond `--max-resident`
    Scale,
    /// (C): a chain of each of `--depths` with every pool of size 1: peak RSS per level
    Chain,
    /// (E): event trigger latency and throughput, a URL trigger against an API start, over
    /// HTTP to a node served in its own process
    Triggers,
    /// (W): W1 and W2 through the HTTP API of a node served in its own process, beside the
    /// same figures in process
    Api,
    /// (K): W1 and W2 on one, two and three nodes sharing PostgreSQL (`--postgres`), against
    /// one on SQLite; the takeover of a killed node's parked instances
    Cluster,
    /// (P): sessions between two nodes served in their own processes (SQLite, fsync):
    /// round trip, messages per second, a crashed peer's backlog drained
    Peers,
}

impl Part {
    /// Whether this `--only` includes `part`.
    fn includes(self, part: Part) -> bool {
        self == part
            || (self == Part::All
                && matches!(
                    part,
                    Part::Core | Part::Pools | Part::Sandbox | Part::Durable | Part::Messaging
                ))
    }
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let runtime = super::runtime()?;
    if let Some(count) = args.parked_child {
        let figures = runtime.block_on(bench::parked(&args.guests, count))?;
        println!("{}", serde_json::to_string(&figures)?);
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(depth) = args.chain_child {
        let figures = runtime.block_on(bench::chain::chain(&args.guests, depth))?;
        println!("{}", serde_json::to_string(&figures)?);
        return Ok(ExitCode::SUCCESS);
    }
    if cfg!(debug_assertions) {
        eprintln!("warning: a debug build; figures mean little (cargo run --release -- bench)");
    }
    let us = |d: std::time::Duration| d.as_secs_f64() * 1e6;
    let iterations = args.iterations as usize;
    let starters = args.starters as usize;
    if args.only.includes(Part::Pools) {
        let p = runtime.block_on(bench::pools(&args.guests, iterations))?;
        println!(
            "(m) pool choice, built-in rules                   median {:>8.3} µs",
            us(p.builtin_choice)
        );
        println!(
            "    pool choice, example mapper component        median {:>8.3} µs",
            us(p.mapper_choice)
        );
        println!(
            "(s) transactions start→output, reporting idle     median {:>8.1} µs",
            us(p.tx_idle)
        );
        println!(
            "    transactions start→output, reporting full    median {:>8.1} µs   ratio {:.2}x",
            us(p.tx_saturated),
            us(p.tx_saturated) / us(p.tx_idle)
        );
    }
    if args.only.includes(Part::Sandbox) {
        let figures = runtime.block_on(bench::sandbox(&args.guests, iterations))?;
        let off = figures[0];
        for f in &figures {
            println!(
                "(x) {:<6} fib(30) {:>8.1} ms ({:.2}x)   sieve(5e6) {:>7.1} ms ({:.2}x)   trivial flow {:>6.1} µs ({:.2}x)",
                format!("{:?}", f.metering),
                f.fib.as_secs_f64() * 1e3,
                f.fib.as_secs_f64() / off.fib.as_secs_f64(),
                f.sieve.as_secs_f64() * 1e3,
                f.sieve.as_secs_f64() / off.sieve.as_secs_f64(),
                us(f.noop),
                us(f.noop) / us(off.noop),
            );
        }
    }
    if args.only.includes(Part::Durable) {
        durable(&runtime, &args)?;
    }
    if args.only.includes(Part::Messaging) {
        for (name, durable) in [("sqlite", true), ("memory", false)] {
            let f = runtime.block_on(bench::messaging::trades(
                &args.guests,
                durable,
                iterations.min(2000),
                starters,
            ))?;
            println!(
                "(T) {name:<6} trades (session: 3 messages, 2 instances; 1 event) {:>7.0}/s ({} starters)   one at a time median {:>6.3} ms",
                f.trades_per_sec,
                args.starters,
                f.trade_median.as_secs_f64() * 1e3
            );
        }
    }
    if args.only == Part::Api {
        api(&runtime, &args)?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.only == Part::Cluster {
        cluster(&runtime, &args)?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.only == Part::Peers {
        peers(&runtime, &args)?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.only == Part::Scale {
        let f = runtime.block_on(bench::durable::scale(
            &args.guests,
            args.flows,
            args.sleep_ms,
            args.max_resident,
            args.queue,
        ))?;
        let parked = f.all_parked.map_or("not all at once".into(), |d| {
            format!("{:.1}s", d.as_secs_f64())
        });
        println!(
            "(S) {} sleepers, max-resident {}, queue {}: started in {:.1}s, all parked {parked}, peak RSS {:.0} MiB, peak resident {}, {} completed, all done in {:.1}s",
            f.flows,
            args.max_resident,
            args.queue,
            f.start_phase.as_secs_f64(),
            f.peak_rss as f64 / (1 << 20) as f64,
            f.peak_resident,
            f.completed,
            f.total.as_secs_f64()
        );
        return Ok(ExitCode::SUCCESS);
    }
    if args.only == Part::Triggers {
        let exe = std::env::current_exe()?;
        let f = runtime.block_on(bench::triggers::triggers(&exe, &args.guests, iterations))?;
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        println!(
            "(E) event published -> subscriber recorded     median {:>7.1} ms   p99 {:>7.1} ms",
            ms(f.event_p50),
            ms(f.event_p99)
        );
        println!(
            "    events sustained, 64 publishers, to every subscriber started {:>8.0} events/s",
            f.events_per_sec
        );
        println!(
            "    URL trigger round trip                      median {:>7.3} ms   API start-and-wait {:>7.3} ms   ratio {:.2}x",
            ms(f.url_median),
            ms(f.api_median),
            ms(f.url_median) / ms(f.api_median)
        );
        return Ok(ExitCode::SUCCESS);
    }
    if args.only == Part::Chain {
        let exe = std::env::current_exe()?;
        for &depth in &args.depths {
            let f = bench::chain::chain_in_child(&exe, &args.guests, depth)?;
            println!(
                "(C) chain depth {:>7}: peak RSS {:>7.1} MiB, {:>6.1} KiB per level, {:.2}s, {} evictions, peak resident {}",
                f.depth,
                f.peak_rss as f64 / (1 << 20) as f64,
                f.per_level() as f64 / 1024.0,
                f.elapsed.as_secs_f64(),
                f.evictions,
                f.peak_resident
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.only == Part::Languages {
        let root = args.guests.join("../..");
        let builds = [
            ("rust", args.guests.clone()),
            ("python", root.join("python")),
            ("js", root.join("js")),
        ];
        let figures = runtime.block_on(bench::languages(&builds, iterations.min(500), 200))?;
        for f in figures {
            println!(
                "(l) {:<6} size {:>6.1} MiB   compile {:>7.1} ms   cached load {:>6.1} ms   run median {:>7.1} µs   parked {:>7.1} KiB",
                f.language,
                f.size as f64 / (1 << 20) as f64,
                f.compile.as_secs_f64() * 1e3,
                f.cached_load.as_secs_f64() * 1e3,
                us(f.run_median),
                f.parked_rss as f64 / 1024.0
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !args.only.includes(Part::Core) {
        return Ok(ExitCode::SUCCESS);
    }
    let c = runtime.block_on(bench::core(&args.guests, iterations, starters))?;
    println!(
        "(a) bare wasmtime: store+instantiate+run+drop   median {:>8.1} µs   p99 {:>8.1} µs",
        us(c.bare_median),
        us(c.bare_p99)
    );
    println!(
        "(b) trivial flow through sluice                  median {:>8.1} µs   p99 {:>8.1} µs",
        us(c.flow_median),
        us(c.flow_p99)
    );
    println!(
        "    ratio (b)/(a) at the median                  {:>8.2}x",
        us(c.flow_median) / us(c.bare_median)
    );
    println!(
        "    caller on the pool's threads                 median {:>8.1} µs   ratio {:.2}x",
        us(c.flow_local_median),
        us(c.flow_local_median) / us(c.bare_median)
    );
    println!(
        "    throughput, {} concurrent starters            {:>8.0} flows/s",
        args.starters, c.flows_per_sec
    );
    println!(
        "(c) park/resume round trip (sleep 0)             {:>8.2} µs",
        us(c.park_resume)
    );
    let exe = std::env::current_exe()?;
    for count in args.parked {
        let p = bench::parked_in_child(&exe, &args.guests, count)?;
        println!(
            "(d) {:>6} parked: {:>6.1} KiB RSS and {:.2} mappings per parked instance{}",
            count,
            p.rss_per_instance as f64 / 1024.0,
            p.maps_per_instance,
            if p.all_parked {
                String::new()
            } else {
                format!("  (only {} parked!)", p.parked)
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// (W): the served node from a separate process, then the same workloads in process (the
/// SQLite store figures of (D)), for the API's cost as a ratio.
fn api(runtime: &tokio::runtime::Runtime, args: &BenchArgs) -> anyhow::Result<()> {
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let (iterations, starters) = (args.iterations as usize, args.starters as usize);
    let exe = std::env::current_exe()?;
    let w = runtime.block_on(bench::api::api(&exe, &args.guests, iterations, starters))?;
    let local = runtime.block_on(bench::durable::store(
        &args.guests,
        true,
        iterations,
        starters,
    ))?;
    println!(
        "(W) W1 trivial flow over HTTP      one at a time median {:>7.3} ms  p99 {:>7.3} ms   {:>7.0} flows/s ({} clients)",
        ms(w.w1_median),
        ms(w.w1_p99),
        w.w1_per_sec,
        args.starters
    );
    println!(
        "    W2 parent of 100 over HTTP     one {:>7.1} ms   ten at once {:>7.1} ms",
        ms(w.w2_one),
        ms(w.w2_ten)
    );
    println!(
        "    node RSS at rest {:>6.1} MiB   peak {:>6.1} MiB",
        mib(w.rss_rest),
        mib(w.rss_peak)
    );
    println!(
        "    in process (sqlite)            one at a time median {:>7.3} ms   {:>7.0} flows/s   W2 one {:>6.1} ms   ten {:>6.1} ms",
        ms(local.sequential_median),
        local.flows_per_sec,
        ms(local.fan_out_100),
        ms(local.ten_fan_outs)
    );
    println!(
        "    API / in process: W1 median {:.2}x   W1 throughput {:.2}x   W2 one {:.2}x   W2 ten {:.2}x",
        ms(w.w1_median) / ms(local.sequential_median),
        local.flows_per_sec / w.w1_per_sec,
        ms(w.w2_one) / ms(local.fan_out_100),
        ms(w.w2_ten) / ms(local.ten_fan_outs)
    );
    Ok(())
}

/// Parked instances on the node `--only cluster` kills.
const ORPHANS: u64 = 2_000;

/// (K): W1/W2 by number of nodes on PostgreSQL against one on SQLite, then a takeover.
fn cluster(runtime: &tokio::runtime::Runtime, args: &BenchArgs) -> anyhow::Result<()> {
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    let exe = std::env::current_exe()?;
    let k = runtime.block_on(bench::cluster::cluster(
        &exe,
        &args.guests,
        &args.postgres,
        args.iterations as usize,
        args.starters as usize,
        ORPHANS,
    ))?;
    let base = k.setups[0].1;
    for (label, w) in &k.setups {
        println!(
            "(K) {label:<12} W1 median {:>7.3} ms  p99 {:>7.3} ms  {:>7.0} flows/s ({} clients)   W2 one {:>7.1} ms  ten {:>7.1} ms   throughput {:.2}x sqlite",
            ms(w.w1_median),
            ms(w.w1_p99),
            w.w1_per_sec,
            args.starters,
            ms(w.w2_one),
            ms(w.w2_ten),
            w.w1_per_sec / base.w1_per_sec
        );
    }
    println!(
        "    takeover: {} parked instances of a SIGKILLed node owned by the others {:.2} s after the kill (lease {} s)",
        k.orphans,
        k.takeover.as_secs_f64(),
        k.lease.as_secs()
    );
    Ok(())
}

/// (P): two nodes in a session, each on SQLite with fsync.
fn peers(runtime: &tokio::runtime::Runtime, args: &BenchArgs) -> anyhow::Result<()> {
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    let exe = std::env::current_exe()?;
    let p = runtime.block_on(bench::peers::peers(
        &exe,
        &args.guests,
        args.iterations as usize,
        args.starters as usize,
    ))?;
    println!(
        "(P) one at a time ({} buyers): a buyer (open, 2 sends, answer) median {:.2} ms p99 {:.2} ms; send -> answer median {:.0} ms p99 {:.0} ms",
        p.sequential,
        ms(p.flow_p50),
        ms(p.flow_p99),
        ms(p.rtt_p50),
        ms(p.rtt_p99)
    );
    println!(
        "    {} starters: {} buyers at {:.0} buyers/s = {:.0} session messages/s between the nodes",
        args.starters, p.flows, p.flows_per_sec, p.messages_per_sec
    );
    println!(
        "    crash: {} buyers started while PartyB was down, all answered {:.2} s after its restart",
        p.backlog,
        p.drain.as_secs_f64()
    );
    Ok(())
}

/// The durability figures: the SQLite store against memory, replay and eviction.
fn durable(runtime: &tokio::runtime::Runtime, args: &BenchArgs) -> anyhow::Result<()> {
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    let (iterations, starters) = (args.iterations as usize, args.starters as usize);
    let disk = runtime.block_on(bench::durable::store(
        &args.guests,
        true,
        iterations,
        starters,
    ))?;
    let mem = runtime.block_on(bench::durable::store(
        &args.guests,
        false,
        iterations,
        starters,
    ))?;
    for (name, f) in [("sqlite", &disk), ("memory", &mem)] {
        println!(
            "(D) {name:<6} {:>8.0} flows/s ({} starters, {:.1} writes/commit)   sequential median {:>6.3} ms   fan-out 100 {:>6.1} ms   ten at once {:>6.1} ms",
            f.flows_per_sec,
            args.starters,
            f.writes_per_commit,
            ms(f.sequential_median),
            ms(f.fan_out_100),
            ms(f.ten_fan_outs)
        );
    }
    println!(
        "    sqlite / memory: throughput {:.2}x, sequential {:.2}x",
        disk.flows_per_sec / mem.flows_per_sec,
        ms(disk.sequential_median) / ms(mem.sequential_median)
    );
    let r = runtime.block_on(bench::durable::replay(&args.guests, 10_000))?;
    println!(
        "(R) replay {:>8.0} entries/s ({} entries)   wake to end: resident {:.3} ms, evicted and rebuilt {:.3} ms",
        r.entries_per_sec,
        r.entries,
        ms(r.resident_wake),
        ms(r.evicted_wake)
    );
    Ok(())
}
