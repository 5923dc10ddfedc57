//! (E) Triggers, measured from outside a served node (SQLite store, fsync on, pool of 2):
//! an event published over the API until its subscriber instance is recorded (the
//! instance's `created` time against the publish's send time, one event at a time), events
//! per second sustained by 64 concurrent publishers until every subscriber has started,
//! and a URL trigger's round trip against a plain API start-and-wait of the same flow.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde_json::Value;

use super::api::{serve, start_and_wait};
use super::durable::scratch_dir;
use super::percentile;

/// The triggers the node is served with: `noop` once per event on `bench`, and at a URL.
const TRIGGERS: &str = "[[triggers.event]]\nname = \"on-bench\"\ntopic = \"bench\"\nflow = \"noop\"\n\
    [[triggers.http]]\nname = \"hook\"\npath = \"/hooks/noop\"\nflow = \"noop\"\nwait = \"60s\"\n";

/// What the triggers run measured.
#[derive(Debug, Clone, Copy)]
pub struct TriggerFigures {
    /// Publish sent → subscriber recorded, median (millisecond resolution).
    pub event_p50: Duration,
    /// The same, 99th percentile.
    pub event_p99: Duration,
    /// Events per second, from the first publish until every subscriber started.
    pub events_per_sec: f64,
    /// URL trigger round trip, median.
    pub url_median: Duration,
    /// API start-and-wait of the same flow, median.
    pub api_median: Duration,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Publish `{}` on `bench`; the event's id.
async fn publish(client: &reqwest::Client, url: &str, token: &str) -> anyhow::Result<String> {
    let answer = client
        .post(format!("{url}/v1/topics/bench/publish"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await?;
    let status = answer.status();
    let body: Value = answer.json().await?;
    anyhow::ensure!(status.is_success(), "publish: {status} {body}");
    Ok(body["id"]
        .as_str()
        .context("publish answered no id")?
        .to_string())
}

/// The `started` count of trigger `on-bench`.
async fn started(client: &reqwest::Client, url: &str, token: &str) -> anyhow::Result<u64> {
    let list: Value = client
        .get(format!("{url}/v1/triggers"))
        .bearer_auth(token)
        .send()
        .await?
        .json()
        .await?;
    let all = list.as_array().or_else(|| list["triggers"].as_array());
    all.and_then(|a| a.iter().find(|t| t["name"] == "on-bench"))
        .and_then(|t| t["started"].as_u64())
        .context("no trigger on-bench in /v1/triggers")
}

/// Run (E) against a node served from `exe` (this binary) in its own process.
pub async fn triggers(
    exe: &Path,
    guests: &Path,
    iterations: usize,
) -> anyhow::Result<TriggerFigures> {
    let dir = scratch_dir("triggers");
    let (token, hash) = sluice::api::new_token();
    let node = serve(exe, guests, &dir, &hash, TRIGGERS)?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let url = node.url.clone();
    let api = format!("{url}/v1/flows/noop/start?wait=60s");
    let hook = format!("{url}/hooks/noop");
    for _ in 0..20 {
        start_and_wait(&client, &api, &token, "{}").await?;
        start_and_wait(&client, &hook, &token, "{}").await?;
    }

    // URL trigger against the API, alternating so both see the same machine.
    let n = iterations.min(2000);
    let (mut via_hook, mut via_api) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let t = Instant::now();
        start_and_wait(&client, &hook, &token, "{}").await?;
        via_hook.push(t.elapsed());
        let t = Instant::now();
        start_and_wait(&client, &api, &token, "{}").await?;
        via_api.push(t.elapsed());
    }
    via_hook.sort();
    via_api.sort();

    // One event at a time: each subscriber's `created` against its publish's send time.
    let before = started(&client, &url, &token).await?;
    let events = iterations.min(1000);
    let mut sent = Vec::with_capacity(events);
    for _ in 0..events {
        let at = unix_ms();
        let id = publish(&client, &url, &token).await?;
        sent.push((
            sluice::model::names::trigger_instance_id("on-bench", &id),
            at,
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while started(&client, &url, &token).await? < before + events as u64 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "subscribers did not all start in 120 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut latencies = Vec::with_capacity(events);
    for (id, at) in &sent {
        let view: Value = client
            .get(format!("{url}/v1/instances/{id}"))
            .bearer_auth(&token)
            .send()
            .await?
            .json()
            .await?;
        let created = view["created"]
            .as_str()
            .with_context(|| format!("instance {id} has no created time: {view}"))?;
        let created = humantime::parse_rfc3339(created)?
            .duration_since(UNIX_EPOCH)?
            .as_millis() as u64;
        latencies.push(Duration::from_millis(created.saturating_sub(*at)));
    }
    latencies.sort();

    // Sustained: 64 publishers, until every subscriber has started.
    let before = started(&client, &url, &token).await?;
    let total = iterations.max(20_000);
    let issued = Arc::new(AtomicUsize::new(0));
    let t = Instant::now();
    let publishers: Vec<_> = (0..64)
        .map(|_| {
            let (client, url, token, issued) =
                (client.clone(), url.clone(), token.clone(), issued.clone());
            tokio::spawn(async move {
                while issued.fetch_add(1, Ordering::Relaxed) < total {
                    publish(&client, &url, &token).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for publisher in publishers {
        publisher.await??;
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while started(&client, &url, &token).await? < before + total as u64 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "subscribers did not all start in 600 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let events_per_sec = total as f64 / t.elapsed().as_secs_f64();
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(TriggerFigures {
        event_p50: percentile(&latencies, 0.5),
        event_p99: percentile(&latencies, 0.99),
        events_per_sec,
        url_median: percentile(&via_hook, 0.5),
        api_median: percentile(&via_api, 0.5),
    })
}
