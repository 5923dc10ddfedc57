//! Event triggers through real HTTP on 127.0.0.1: the seed's trackBy deadlock made
//! harmless (every event starts one subscriber, with every pool of size 1, also across a
//! SIGKILL), events published from outside, and bad trigger configs refused by `sluice serve`.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::served::{Served, serve, served_config};
use crate::triggers::{instances_of, node, trigger, until_http};

const TRACK: &str = "[pools.default]\nsize = 1\n\
    [[triggers.event]]\nname = \"on-tick\"\ntopic = \"ticks\"\nflow = \"relay\"\n";

/// Events the trackBy tests publish.
const EVENTS: u64 = 10_000;

/// Wait until the publisher `id` completed, every event has its `relay` instance and every
/// relay ended; then check there is exactly one relay per event, each completed.
async fn every_event_once(node: &Served, publisher: &str) {
    let (status, done) = node
        .get(&format!("/v1/instances/{publisher}/result?wait=600s"))
        .await;
    assert_eq!(
        (status, &done["status"]),
        (200, &json!("completed")),
        "{done}"
    );
    until_http(
        "every event dispatched and every relay ended",
        Duration::from_secs(900),
        || async {
            let on_tick = trigger(node, "on-tick").await;
            let (_, running) = node
                .get("/v1/instances?flow=relay&status=running&limit=1")
                .await;
            let (_, queued_doubles) = node
                .get("/v1/instances?flow=double&status=running&limit=1")
                .await;
            on_tick["pending"] == 0
                && running["instances"]
                    .as_array()
                    .is_some_and(|a| a.is_empty())
                && queued_doubles["instances"]
                    .as_array()
                    .is_some_and(|a| a.is_empty())
                && instances_of(node, "relay").await.len() as u64 >= EVENTS
        },
    )
    .await;
    let relays = instances_of(node, "relay").await;
    assert_eq!(
        relays.len() as u64,
        EVENTS,
        "one subscriber instance per event"
    );
    let mut xs = std::collections::HashSet::new();
    for relay in &relays {
        assert_eq!(relay["status"], "completed", "{relay}");
        assert_eq!(
            (relay["origin"].as_str(), relay["by"].as_str()),
            (Some("trigger"), Some("on-tick"))
        );
        let x = relay["output"]["x"].as_u64().expect("x");
        assert_eq!(relay["output"]["y"], json!(2 * x), "{relay}");
        assert!(xs.insert(x), "event {x} started two subscribers");
    }
    assert_eq!(xs.len() as u64, EVENTS);
    assert_eq!(instances_of(node, "double").await.len() as u64, EVENTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trackby_deadlock_is_harmless_every_event_starts_one_subscriber() {
    let (_dir, node) = node(&["publisher", "relay", "double"], TRACK);
    let started = Instant::now();
    let (status, publisher) = node
        .post(
            "/v1/flows/publisher/start",
            &format!("{{\"topic\": \"ticks\", \"count\": {EVENTS}}}"),
        )
        .await;
    assert_eq!(status, 202, "{publisher}");
    every_event_once(&node, publisher["id"].as_str().unwrap()).await;
    let on_tick = trigger(&node, "on-tick").await;
    assert_eq!(
        (on_tick["fired"].as_u64(), on_tick["started"].as_u64()),
        (Some(EVENTS), Some(EVENTS)),
        "{on_tick}"
    );
    eprintln!(
        "{EVENTS} events, each with its subscriber and its subflow, in {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_midway_leaves_exactly_one_subscriber_per_event() {
    let dir = tempfile::tempdir().unwrap();
    let (config, tokens) = served_config(dir.path(), &["publisher", "relay", "double"], TRACK);
    let again = crate::served::TestTokens {
        all: tokens.all.clone(),
        read: tokens.read.clone(),
        hello: tokens.hello.clone(),
    };
    let data = dir.path().join("data");
    let mut node = serve(&config, &data, tokens);
    let (status, publisher) = node
        .post(
            "/v1/flows/publisher/start",
            &format!("{{\"topic\": \"ticks\", \"count\": {EVENTS}}}"),
        )
        .await;
    assert_eq!(status, 202, "{publisher}");
    until_http(
        "a fifth of the events dispatched",
        Duration::from_secs(600),
        || async {
            trigger(&node, "on-tick").await["started"]
                .as_u64()
                .unwrap_or(0)
                >= EVENTS / 5
        },
    )
    .await;
    node.child.kill().expect("SIGKILL");
    node.child.wait().unwrap();
    drop(node);
    let node = serve(&config, &data, again);
    every_event_once(&node, publisher["id"].as_str().unwrap()).await;
}

#[test]
fn sluice_serve_refuses_bad_triggers_naming_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let flows = format!(
        "[[flows]]\nname = \"hello\"\ncomponent = \"{}\"\n",
        crate::support::guest("hello").display()
    );
    for (trigger, expected) in [
        (
            "[[triggers.event]]\nname = \"e\"\ntopic = \"t\"\nflow = \"nope\"\n",
            &[
                "line 7",
                "triggers.event[0].flow = \"nope\"",
                "no [[flows]] entry",
            ][..],
        ),
        (
            "[[triggers.schedule]]\nname = \"s\"\ncron = \"every day\"\nflow = \"hello\"\n",
            &["line 6", "cron", "not a cron expression"][..],
        ),
        (
            "[[triggers.event]]\nname = \"e\"\ntopic = \"no spaces\"\nflow = \"hello\"\n",
            &["line 6", "topic", "not a topic name"][..],
        ),
    ] {
        let path = dir.path().join("node.toml");
        std::fs::write(&path, format!("{flows}{trigger}")).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["serve", "--config"])
            .arg(&path)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        assert!(!out.status.success(), "a bad trigger was accepted");
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(said.contains(path.to_str().unwrap()), "{said}");
        for part in expected {
            assert!(said.contains(part), "`{part}` missing from: {said}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_published_from_outside_start_each_trigger_once_and_waiters_still_take_them() {
    let extra = "[[triggers.event]]\nname = \"greet-a\"\ntopic = \"names\"\nflow = \"hello\"\n\
                 [[triggers.event]]\nname = \"greet-b\"\ntopic = \"names\"\nflow = \"hello\"\nmode = \"high\"\n";
    let (_dir, node) = node(&["hello", "watcher"], extra);
    // A waiter takes one event from the topic; the triggers see every event regardless.
    let (status, watcher) = node
        .post(
            "/v1/flows/watcher/start",
            r#"{"topic": "names", "count": 1}"#,
        )
        .await;
    assert_eq!(status, 202, "{watcher}");
    let mut events = Vec::new();
    for name in ["Ada", "Bo", "Cy"] {
        let (status, body) = node
            .post(
                "/v1/topics/names/publish",
                &format!("{{\"name\": \"{name}\"}}"),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        events.push((name, body["id"].as_str().unwrap().to_string()));
    }
    let (_, taken) = node
        .get(&format!(
            "/v1/instances/{}/result?wait=60s",
            watcher["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(taken["status"], "completed", "{taken}");
    assert_eq!(taken["output"]["events"], json!([{ "name": "Ada" }]));
    for trigger_name in ["greet-a", "greet-b"] {
        for (name, event) in &events {
            let id = format!("t_{trigger_name}_{event}");
            let (status, done) = node
                .get(&format!("/v1/instances/{id}/result?wait=60s"))
                .await;
            // The dispatcher may not have recorded it yet: wait for it to appear.
            let (status, done) = if status == 404 {
                until_http(
                    "the trigger's instance",
                    Duration::from_secs(60),
                    || async { node.get(&format!("/v1/instances/{id}")).await.0 == 200 },
                )
                .await;
                node.get(&format!("/v1/instances/{id}/result?wait=60s"))
                    .await
            } else {
                (status, done)
            };
            assert_eq!(status, 200, "{id}: {done}");
            assert_eq!(
                done["output"]["greeting"],
                format!("Hello, {name}!"),
                "{id}"
            );
        }
    }
    assert_eq!(instances_of(&node, "hello").await.len(), 6);
    // Paused: events pass without starting anything, and are counted as skipped.
    let (status, _) = node.post("/v1/triggers/greet-b/pause", "").await;
    assert_eq!(status, 200);
    let (status, _) = node
        .post("/v1/topics/names/publish", r#"{"name": "Di"}"#)
        .await;
    assert_eq!(status, 200);
    until_http(
        "greet-a's fourth and greet-b's skip",
        Duration::from_secs(60),
        || async {
            let a = trigger(&node, "greet-a").await;
            let b = trigger(&node, "greet-b").await;
            a["started"] == 4 && b["skipped"] == 1 && a["pending"] == 0 && b["pending"] == 0
        },
    )
    .await;
    let b = trigger(&node, "greet-b").await;
    assert_eq!(
        (b["started"].as_u64(), b["state"].as_str()),
        (Some(3), Some("paused")),
        "{b}"
    );
    assert_eq!(b["source"], "topic names");
}
