//! (P) Sessions between two nodes, each served in its own process on SQLite with fsync:
//! PartyA's `buyer`s each send PartyB two messages and await the `seller`'s answer.
//! Measured: sequential flows (the round trip of one send/receive pair read from the
//! journal), throughput with concurrent starters, and the cost of a crash: PartyB
//! SIGKILLed while buyers keep coming, then restarted, until its backlog is drained.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::api::{ServedNode, concurrently, serve_config, start_and_wait};
use super::durable::scratch_dir;

/// What the peers run measured.
#[derive(Debug, Clone)]
pub struct PeerFigures {
    /// Buyers measured one at a time.
    pub sequential: usize,
    /// A whole buyer (open, two sends, the answer), one at a time: median and 99th.
    pub flow_p50: Duration,
    /// See `flow_p50`.
    pub flow_p99: Duration,
    /// From a buyer's second `send` to its `receive` returning the answer (journal times,
    /// millisecond resolution): median and 99th.
    pub rtt_p50: Duration,
    /// See `rtt_p50`.
    pub rtt_p99: Duration,
    /// Buyers run by the concurrent starters.
    pub flows: usize,
    /// Buyers per second with the concurrent starters.
    pub flows_per_sec: f64,
    /// Session messages per second (three per buyer: two to PartyB, one back; the two
    /// session ends are not counted).
    pub messages_per_sec: f64,
    /// Buyers started while PartyB was down.
    pub backlog: usize,
    /// From PartyB's restart (listening again) until every one of them completed.
    pub drain: Duration,
}

/// A free port on loopback (the nodes' configs must name each other before they start).
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The two parties' directories, ports and tokens.
struct Pair {
    dir: PathBuf,
    ports: [u16; 2],
    api: (String, String),
    /// A presents to B; B presents to A.
    tokens: [(String, String); 2],
}

impl Pair {
    fn config(&self, guests: &Path, side: usize) -> anyhow::Result<PathBuf> {
        let component = |name: &str| -> anyhow::Result<String> {
            let path = guests.join(format!("{name}.wasm"));
            anyhow::ensure!(
                path.exists(),
                "{} is missing: run ./scripts/build-guests.sh",
                path.display()
            );
            Ok(std::fs::canonicalize(path)?.display().to_string())
        };
        let (me, peer) = (["PartyA", "PartyB"][side], ["PartyB", "PartyA"][side]);
        let dir = self.dir.join(me);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("peer.token"), &self.tokens[side].0)?;
        let flows = if side == 0 {
            format!(
                "[[flows]]\nname = \"buyer\"\ncomponent = \"{}\"\n",
                component("buyer")?
            )
        } else {
            format!(
                "[[flows]]\nname = \"seller\"\ncomponent = \"{}\"\ninitiated-by = \"buyer\"\n",
                component("seller")?
            )
        };
        let config = format!(
            "[node]\nidentity = \"{me}\"\ndata-dir = \"{data}\"\nmax-resident = 20000\n\
             [pools.default]\nsize = 2\nqueue = 100000\n\
             [server]\nlisten = \"127.0.0.1:{port}\"\n\
             [[server.tokens]]\nname = \"bench\"\nsha256 = \"{api}\"\npermissions = [\"start:*\", \"read\"]\n\
             [peers.{peer}]\nurl = \"http://127.0.0.1:{peer_port}\"\ntoken-file = \"peer.token\"\naccepts = \"{accepts}\"\n{flows}",
            data = dir.join("data").display(),
            port = self.ports[side],
            api = self.api.1,
            peer_port = self.ports[1 - side],
            accepts = self.tokens[1 - side].1,
        );
        let path = dir.join("node.toml");
        std::fs::write(&path, config)?;
        Ok(path)
    }
}

const BUY: &str = r#"{"party":"PartyB","item":"widget","bid":70}"#;

/// Run the peers benchmark with the `sluice` at `exe`.
pub async fn peers(
    exe: &Path,
    guests: &Path,
    iterations: usize,
    clients: usize,
) -> anyhow::Result<PeerFigures> {
    let dir = scratch_dir("peers");
    let pair = Pair {
        dir: dir.clone(),
        ports: [free_port()?, free_port()?],
        api: sluice::api::new_token(),
        tokens: [sluice::api::new_token(), sluice::api::new_token()],
    };
    let configs = [pair.config(guests, 0)?, pair.config(guests, 1)?];
    let mut b: Option<ServedNode> = Some(serve_config(exe, &configs[1])?);
    let a = serve_config(exe, &configs[0])?;
    let token = pair.api.0.clone();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let start = format!("{}/v1/flows/buyer/start?wait=120s", a.url);
    for _ in 0..20 {
        start_and_wait(&client, &start, &token, BUY).await?;
    }

    // One at a time.
    let sequential = iterations.clamp(20, 500);
    let mut flows = Vec::with_capacity(sequential);
    let mut rtts = Vec::with_capacity(sequential);
    for i in 0..sequential {
        let id = format!("seq-{i}");
        let t = Instant::now();
        start_and_wait(&client, &format!("{start}&id={id}"), &token, BUY).await?;
        flows.push(t.elapsed());
        rtts.push(round_trip(&client, &a.url, &token, &id).await?);
    }
    flows.sort();
    rtts.sort();

    // Concurrent starters.
    let total = iterations.max(100);
    let elapsed = concurrently(
        &client,
        std::slice::from_ref(&start),
        &token,
        BUY,
        total,
        clients,
    )
    .await?
    .as_secs_f64();

    // A crash of PartyB with buyers coming meanwhile.
    drop(b.take()); // SIGKILL
    let backlog = iterations.clamp(100, 2000);
    let async_start = format!("{}/v1/flows/buyer/start", a.url);
    for i in 0..backlog {
        let answer = client
            .post(format!("{async_start}?id=backlog-{i}"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(BUY)
            .send()
            .await?;
        anyhow::ensure!(
            answer.status() == 202,
            "backlog start {i}: {}",
            answer.status()
        );
    }
    let _b = serve_config(exe, &configs[1])?;
    let restarted = Instant::now();
    for i in 0..backlog {
        let url = format!("{}/v1/instances/backlog-{i}/result?wait=300s", a.url);
        let answer = client.get(url).bearer_auth(&token).send().await?;
        anyhow::ensure!(answer.status() == 200, "backlog {i}: {}", answer.status());
    }
    let drain = restarted.elapsed();
    drop(a);
    let _ = std::fs::remove_dir_all(&dir);
    let pick = |v: &[Duration], q: f64| v[((v.len() - 1) as f64 * q) as usize];
    Ok(PeerFigures {
        sequential,
        flow_p50: pick(&flows, 0.5),
        flow_p99: pick(&flows, 0.99),
        rtt_p50: pick(&rtts, 0.5),
        rtt_p99: pick(&rtts, 0.99),
        flows: total,
        flows_per_sec: total as f64 / elapsed,
        messages_per_sec: 3.0 * total as f64 / elapsed,
        backlog,
        drain,
    })
}

/// From buyer `id`'s last `send` to its `receive`, by the journal's times.
async fn round_trip(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    id: &str,
) -> anyhow::Result<Duration> {
    let entries: serde_json::Value = client
        .get(format!("{url}/v1/instances/{id}/journal"))
        .bearer_auth(token)
        .send()
        .await?
        .json()
        .await?;
    let at = |call: &str| -> anyhow::Result<chrono::DateTime<chrono::FixedOffset>> {
        let entry = entries
            .as_array()
            .and_then(|e| e.iter().rev().find(|e| e["call"] == call))
            .with_context(|| format!("no `{call}` in {id}'s journal"))?;
        let at = entry["at"].as_str().context("no time")?;
        Ok(chrono::DateTime::parse_from_rfc3339(at)?)
    };
    let took = at("receive")? - at("send")?;
    Ok(took.to_std().unwrap_or_default())
}
