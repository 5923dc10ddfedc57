//! (W) The node as a service, measured from outside: `sluice serve` runs in its own process
//! (SQLite store, fsync on, pool of 2) and this process drives it over loopback HTTP, as a
//! client would. W1: a trivial flow started and awaited; W2: a parent that starts 100
//! children and awaits them. The client shares the machine's cores with the node.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::durable::scratch_dir;
use super::percentile;

/// What the API run measured.
#[derive(Debug, Clone, Copy)]
pub struct ApiFigures {
    /// W1 one at a time: median start-and-await of a trivial flow.
    pub w1_median: Duration,
    /// W1 one at a time: 99th percentile.
    pub w1_p99: Duration,
    /// W1 with `clients` concurrent clients: flows per second.
    pub w1_per_sec: f64,
    /// W2 one parent of 100 children at a time (median).
    pub w2_one: Duration,
    /// W2 ten such parents at once, until all ten end (median).
    pub w2_ten: Duration,
    /// The node's resident memory at rest: serving, its flows compiled, nothing running.
    pub rss_rest: u64,
    /// The node's largest resident memory over the run (the kernel's high-water mark).
    pub rss_peak: u64,
}

/// A `sluice serve` child, killed when dropped.
pub(super) struct ServedNode {
    child: Child,
    /// Where it serves: `http://127.0.0.1:PORT`.
    pub(super) url: String,
}

impl Drop for ServedNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServedNode {
    /// A `/proc/<pid>/status` figure in bytes (`VmRSS`, `VmHWM`).
    fn memory(&self, field: &str) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kib = status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .with_context(|| format!("no {field} in /proc status"))?;
        Ok(kib * 1024)
    }
}

/// Start `exe serve` with the `noop`, `fanout` and `sleeper` guests of `guests` and the config `extra`
/// (triggers); the token may start, read and publish. Returns once it listens.
pub(super) fn serve(
    exe: &Path,
    guests: &Path,
    dir: &Path,
    token_hash: &str,
    extra: &str,
) -> anyhow::Result<ServedNode> {
    std::fs::create_dir_all(dir)?;
    let component = |name: &str| -> anyhow::Result<String> {
        let path = guests.join(format!("{name}.wasm"));
        anyhow::ensure!(
            path.exists(),
            "{} is missing: run ./scripts/build-guests.sh",
            path.display()
        );
        Ok(std::fs::canonicalize(path)?.display().to_string())
    };
    let config = format!(
        "[node]\ndata-dir = \"{data}\"\nmax-resident = 20000\n\
         [pools.default]\nsize = 2\nqueue = 100000\n\
         [server]\nlisten = \"127.0.0.1:0\"\n\
         [[server.tokens]]\nname = \"bench\"\nsha256 = \"{token_hash}\"\npermissions = [\"start:*\", \"read\", \"publish:*\"]\n\
         [[flows]]\nname = \"noop\"\ncomponent = \"{noop}\"\n\
         [[flows]]\nname = \"fanout\"\ncomponent = \"{fanout}\"\n\
         [[flows]]\nname = \"sleeper\"\ncomponent = \"{sleeper}\"\n{extra}",
        data = dir.join("data").display(),
        noop = component("noop")?,
        fanout = component("fanout")?,
        sleeper = component("sleeper")?,
    );
    let path = dir.join("node.toml");
    std::fs::write(&path, config)?;
    serve_config(exe, &path)
}

/// Start `exe serve --config path`; returns once it listens.
pub(super) fn serve_config(exe: &Path, path: &Path) -> anyhow::Result<ServedNode> {
    let mut child = Command::new(exe)
        .args(["serve", "--config"])
        .arg(path)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start `sluice serve`")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(url) = line.strip_prefix("sluice serving on ") {
                    break url.to_string();
                }
            }
            _ => {
                let _ = child.kill();
                anyhow::bail!("`sluice serve` ended before it listened");
            }
        }
    };
    // Keep reading its stdout so the node never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Ok(ServedNode { child, url })
}

/// `total` start-and-awaits of `body` by `clients` concurrent clients, spread over `urls`
/// (each a start URL with `wait`); how long they all took.
pub(super) async fn concurrently(
    client: &reqwest::Client,
    urls: &[String],
    token: &str,
    body: &'static str,
    total: usize,
    clients: usize,
) -> anyhow::Result<Duration> {
    let issued = Arc::new(AtomicUsize::new(0));
    let t = Instant::now();
    let workers: Vec<_> = (0..clients.max(1))
        .map(|c| {
            let (client, url, token, issued) = (
                client.clone(),
                urls[c % urls.len()].clone(),
                token.to_string(),
                issued.clone(),
            );
            tokio::spawn(async move {
                while issued.fetch_add(1, Ordering::Relaxed) < total {
                    start_and_wait(&client, &url, &token, body).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for worker in workers {
        worker.await??;
    }
    Ok(t.elapsed())
}

/// One start-and-await of `flow` with `body`; fails unless the answer is 200.
pub(super) async fn start_and_wait(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    body: &'static str,
) -> anyhow::Result<()> {
    let answer = client
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    let status = answer.status();
    let text = answer.text().await?;
    anyhow::ensure!(status == 200, "{url}: {status} {text}");
    Ok(())
}

/// Run W1 and W2 against a node served from `exe` (this binary) in its own process.
pub async fn api(
    exe: &Path,
    guests: &Path,
    iterations: usize,
    clients: usize,
) -> anyhow::Result<ApiFigures> {
    let dir = scratch_dir("api");
    let (token, hash) = sluice::api::new_token();
    let node = serve(exe, guests, &dir, &hash, "")?;
    let urls = [node.url.clone()];
    let warm = warm_up(&urls, &token).await?;
    let rss_rest = node.memory("VmRSS")?;
    let w = workloads(&warm, &urls, &token, iterations, clients).await?;
    let rss_peak = node.memory("VmHWM")?;
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(ApiFigures {
        w1_median: w.w1_median,
        w1_p99: w.w1_p99,
        w1_per_sec: w.w1_per_sec,
        w2_one: w.w2_one,
        w2_ten: w.w2_ten,
        rss_rest,
        rss_peak,
    })
}

/// W1 and W2 as measured through the API of one or more nodes.
#[derive(Debug, Clone, Copy)]
pub struct Workloads {
    /// W1 one at a time: median start-and-await of a trivial flow.
    pub w1_median: Duration,
    /// W1 one at a time: 99th percentile.
    pub w1_p99: Duration,
    /// W1 with concurrent clients: flows per second.
    pub w1_per_sec: f64,
    /// W2 one parent of 100 children at a time (median).
    pub w2_one: Duration,
    /// W2 ten such parents at once, until all ten end (median).
    pub w2_ten: Duration,
}

/// A client ready to drive nodes: both flows compiled on each and run once, settled.
pub(super) async fn warm_up(urls: &[String], token: &str) -> anyhow::Result<reqwest::Client> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    for url in urls {
        for _ in 0..20 {
            start_and_wait(
                &client,
                &format!("{url}/v1/flows/noop/start?wait=60s"),
                token,
                TRIVIAL,
            )
            .await?;
        }
        start_and_wait(
            &client,
            &format!("{url}/v1/flows/fanout/start?wait=300s"),
            token,
            FAN,
        )
        .await?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(client)
}

const TRIVIAL: &str = "{}";
const FAN: &str = r#"{"n":100,"child":"noop","input":{}}"#;

/// W1 and W2 through the nodes at `urls`: one-at-a-time requests go to each in turn, and
/// the `clients` concurrent clients are spread over them.
pub(super) async fn workloads(
    client: &reqwest::Client,
    urls: &[String],
    token: &str,
    iterations: usize,
    clients: usize,
) -> anyhow::Result<Workloads> {
    let w1: Vec<String> = urls
        .iter()
        .map(|u| format!("{u}/v1/flows/noop/start?wait=60s"))
        .collect();
    let w2: Vec<String> = urls
        .iter()
        .map(|u| format!("{u}/v1/flows/fanout/start?wait=300s"))
        .collect();
    let token = token.to_string();
    let mut sequential = Vec::with_capacity(iterations);
    for i in 0..iterations.min(2000) {
        let t = Instant::now();
        start_and_wait(client, &w1[i % w1.len()], &token, TRIVIAL).await?;
        sequential.push(t.elapsed());
    }
    sequential.sort();

    let total = iterations.max(20_000);
    let took = concurrently(client, &w1, &token, TRIVIAL, total, clients).await?;
    let w1_per_sec = total as f64 / took.as_secs_f64();

    let mut one = Vec::new();
    for i in 0..20 {
        let t = Instant::now();
        start_and_wait(client, &w2[i % w2.len()], &token, FAN).await?;
        one.push(t.elapsed());
    }
    one.sort();
    let mut ten = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        let parents: Vec<_> = (0..10)
            .map(|p| {
                let (client, url, token) =
                    (client.clone(), w2[p % w2.len()].clone(), token.clone());
                tokio::spawn(async move { start_and_wait(&client, &url, &token, FAN).await })
            })
            .collect();
        for parent in parents {
            parent.await??;
        }
        ten.push(t.elapsed());
    }
    ten.sort();
    Ok(Workloads {
        w1_median: percentile(&sequential, 0.5),
        w1_p99: percentile(&sequential, 0.99),
        w1_per_sec,
        w2_one: percentile(&one, 0.5),
        w2_ten: percentile(&ten, 0.5),
    })
}
