//! Triggers and live streams through real HTTP on 127.0.0.1: URL triggers (output, errors,
//! auth, priority, many waiting requests), publishing from outside, Server-Sent Events of
//! instances and topics, and the triggers' list, pause and resume. Event triggers are in
//! `event_triggers`.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::served::{Served, cli, serve, served_config};

/// A served node with guests `flows` and `extra` TOML.
pub(crate) fn node(flows: &[&str], extra: &str) -> (tempfile::TempDir, Served) {
    let dir = tempfile::tempdir().unwrap();
    let (config, tokens) = served_config(dir.path(), flows, extra);
    let served = serve(&config, &dir.path().join("data"), tokens);
    (dir, served)
}

/// One Server-Sent Event: its name and JSON data.
#[derive(Debug, Clone)]
struct Sse {
    name: String,
    data: Value,
}

/// The events of one streamed response.
struct SseStream {
    response: reqwest::Response,
    buffer: String,
}

impl SseStream {
    async fn open(node: &Served, path: &str) -> SseStream {
        let response = reqwest::Client::new()
            .get(format!("{}{path}", node.url))
            .bearer_auth(&node.tokens.all)
            .send()
            .await
            .expect("the node answers");
        assert_eq!(response.status(), 200, "GET {path}");
        let kind = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(kind.starts_with("text/event-stream"), "{kind}");
        SseStream {
            response,
            buffer: String::new(),
        }
    }

    /// The next event, failing after a generous deadline.
    async fn next(&mut self, what: &str) -> Option<Sse> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut name = None;
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if let Some(name) = name {
                    return Some(Sse {
                        name,
                        data: serde_json::from_str(&data).unwrap_or(Value::String(data)),
                    });
                }
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let chunk = tokio::time::timeout(left, self.response.chunk())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
                .expect("the stream reads");
            match chunk {
                Some(bytes) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                None => return None,
            }
        }
    }
}

/// Every instance of `flow` in the store, through the paged list.
pub(crate) async fn instances_of(node: &Served, flow: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut cursor: Option<u64> = None;
    loop {
        let path = match cursor {
            Some(c) => format!("/v1/instances?flow={flow}&limit=1000&cursor={c}"),
            None => format!("/v1/instances?flow={flow}&limit=1000"),
        };
        let (status, page) = node.get(&path).await;
        assert_eq!(status, 200, "{page}");
        all.extend(page["instances"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_u64() {
            Some(c) => cursor = Some(c),
            None => return all,
        }
    }
}

/// Poll `check` (an HTTP read of the node) until it holds; fail naming `what` after `limit`.
pub(crate) async fn until_http<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The trigger called `name` as `GET /v1/triggers` shows it.
pub(crate) async fn trigger(node: &Served, name: &str) -> Value {
    let (status, list) = node.get("/v1/triggers").await;
    assert_eq!(status, 200, "{list}");
    list.as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no trigger {name} in {list}"))
        .clone()
}

const GREET: &str = "[[triggers.http]]\nname = \"greet\"\npath = \"/hooks/greet\"\nflow = \"hello\"\nwait = \"120s\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_trigger_answers_a_thousand_concurrent_requests_on_a_pool_of_two() {
    let (_dir, node) = node(
        &["hello"],
        &format!("{GREET}[pools.default]\nsize = 2\nqueue = 2000\n"),
    );
    let base = node.threads();
    let client = reqwest::Client::new();
    let requests: Vec<_> = (0..1000)
        .map(|i| {
            let (client, url, token) =
                (client.clone(), node.url.clone(), node.tokens.hello.clone());
            tokio::spawn(async move {
                let response = client
                    .post(format!("{url}/hooks/greet"))
                    .bearer_auth(token)
                    .body(format!("{{\"name\": \"n{i}\"}}"))
                    .send()
                    .await
                    .expect("an answer");
                let status = response.status().as_u16();
                let instance = response.headers().get("sluice-instance").cloned();
                let body: Value = response.json().await.expect("JSON");
                (i, status, instance, body)
            })
        })
        .collect();
    let mut peak_threads = base;
    while !requests.iter().all(|r| r.is_finished()) {
        peak_threads = peak_threads.max(node.threads());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut ids = std::collections::HashSet::new();
    for r in requests {
        let (i, status, instance, body) = r.await.unwrap();
        assert_eq!(status, 200, "request {i}: {body}");
        assert_eq!(body["greeting"], format!("Hello, n{i}!"), "request {i}");
        let instance = instance.expect("the sluice-instance header");
        assert!(ids.insert(instance), "two requests got one instance");
    }
    assert!(
        peak_threads <= 64,
        "the node grew to {peak_threads} threads (from {base}) while 1,000 trigger requests waited"
    );
    let greet = trigger(&node, "greet").await;
    assert_eq!(greet["fired"], 1000, "{greet}");
    assert_eq!(greet["started"], 1000, "{greet}");
    let started = instances_of(&node, "hello").await;
    assert_eq!(started.len(), 1000);
    assert!(
        started
            .iter()
            .all(|i| i["origin"] == "trigger" && i["by"] == "greet")
    );
    eprintln!("threads: {base} at rest, {peak_threads} at peak");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn high_mode_trigger_requests_overtake_queued_normal_ones() {
    let extra = format!(
        "{GREET}[[triggers.http]]\nname = \"greet-now\"\npath = \"/hooks/greet\"\nmethod = \"PUT\"\nflow = \"hello\"\nmode = \"high\"\nwait = \"120s\"\n\
         [pools.default]\nsize = 1\npreempt = false\n"
    );
    let (_dir, node) = node(&["hello", "spin"], &extra);
    let node = &node;
    // The one slot is busy with a spinner; normal requests queue behind it.
    let (status, spin) = node.post("/v1/flows/spin/start", r#"{"ms": 6000}"#).await;
    assert_eq!(status, 202, "{spin}");
    until_http("the spinner runs", Duration::from_secs(60), || async {
        node.get("/v1/pools").await.1[0]["running"] == 1
    })
    .await;
    let send = |method: Method, i: usize| {
        let (url, token) = (node.url.clone(), node.tokens.all.clone());
        tokio::spawn(async move {
            let response = reqwest::Client::new()
                .request(method, format!("{url}/hooks/greet"))
                .bearer_auth(token)
                .body(format!("{{\"name\": \"n{i}\"}}"))
                .send()
                .await
                .expect("an answer");
            assert_eq!(response.status(), 200);
            response.headers()["sluice-instance"]
                .to_str()
                .unwrap()
                .to_string()
        })
    };
    let normal: Vec<_> = (0..5).map(|i| send(Method::POST, i)).collect();
    until_http(
        "five normal requests queue",
        Duration::from_secs(60),
        || async {
            {
                let pools = node.get("/v1/pools").await.1;
                pools
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p["queued"].as_u64().unwrap_or(0))
                    .sum::<u64>()
                    == 5
            }
        },
    )
    .await;
    let high = send(Method::PUT, 99).await.unwrap();
    let ended = |id: String| async move {
        let (_, view) = node.get(&format!("/v1/instances/{id}")).await;
        assert_eq!(view["status"], "completed", "{view}");
        view["ended"].as_str().unwrap().to_string()
    };
    let high_ended = ended(high).await;
    for r in normal {
        let normal_ended = ended(r.await.unwrap()).await;
        assert!(
            high_ended <= normal_ended,
            "a queued normal request ended at {normal_ended}, before the high one at {high_ended}"
        );
    }
    let (_, view) = node
        .get(&format!("/v1/instances/{}", spin["id"].as_str().unwrap()))
        .await;
    assert_eq!(view["status"], "completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_trigger_failures_auth_timeouts_and_pauses_answer_with_json() {
    let extra = format!(
        "{GREET}[[triggers.http]]\nname = \"open\"\npath = \"/public/greet\"\nflow = \"hello\"\npublic = true\n\
         [[triggers.http]]\nname = \"nap\"\npath = \"/hooks/nap\"\nflow = \"sleeper\"\nwait = \"100ms\"\n"
    );
    let (_dir, node) = node(&["hello", "sleeper"], &extra);
    let greeting = r#"{"name": "Ada"}"#;
    // Unauthorized calls start nothing.
    let (status, body) = node
        .call(Method::POST, "/hooks/greet", None, Some(greeting))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("unauthorized")),
        "{body}"
    );
    let viewer = node.tokens.read.clone();
    let (status, body) = node
        .call(Method::POST, "/hooks/greet", Some(&viewer), Some(greeting))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    assert!(
        instances_of(&node, "hello").await.is_empty(),
        "a refused call started something"
    );
    // The flow's output is the response; a public trigger takes no token.
    let (status, body) = node
        .call(Method::POST, "/public/greet", None, Some(greeting))
        .await;
    assert_eq!(
        (status, &body),
        (200, &json!({ "greeting": "Hello, Ada!" }))
    );
    let hello = node.tokens.hello.clone();
    let (status, body) = node
        .call(Method::POST, "/hooks/greet", Some(&hello), Some(greeting))
        .await;
    assert_eq!(status, 200, "{body}");
    // A failed flow is a 422 with a JSON error; a bad body a 400; a wrong method a 405.
    let (status, body) = node
        .call(Method::POST, "/public/greet", None, Some(r#"{"nom": 1}"#))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("flow-failed")),
        "{body}"
    );
    assert!(body["message"].as_str().unwrap().contains("name"), "{body}");
    let (status, body) = node
        .call(Method::POST, "/public/greet", None, Some("{nope"))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("bad-request")),
        "{body}"
    );
    let (status, _) = node.call(Method::GET, "/public/greet", None, None).await;
    assert_eq!(status, 405);
    // Past the trigger's wait: 202 with the instance's Location.
    let response = reqwest::Client::new()
        .post(format!("{}/hooks/nap", node.url))
        .bearer_auth(&node.tokens.all)
        .body(r#"{"ms": 3000}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        location,
        format!("/v1/instances/{}", body["id"].as_str().unwrap())
    );
    let (status, done) = node.get(&format!("{location}/result?wait=60s")).await;
    assert_eq!(
        (status, &done["status"]),
        (200, &json!("completed")),
        "{done}"
    );
    // Paused: 503 and nothing started; resumed: served again.
    let (status, view) = node.post("/v1/triggers/open/pause", "").await;
    assert_eq!((status, &view["state"]), (200, &json!("paused")), "{view}");
    let (status, body) = node
        .call(Method::POST, "/public/greet", None, Some(greeting))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("trigger-paused")),
        "{body}"
    );
    let (status, body) = node
        .call(Method::POST, "/v1/triggers/open/pause", Some(&viewer), None)
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = node.post("/v1/triggers/nope/pause", "").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("unknown-trigger")),
        "{body}"
    );
    let (status, _) = node.post("/v1/triggers/open/resume", "").await;
    assert_eq!(status, 200);
    let (status, _) = node
        .call(Method::POST, "/public/greet", None, Some(greeting))
        .await;
    assert_eq!(status, 200);
    let open = trigger(&node, "open").await;
    assert_eq!(open["kind"], "http");
    assert_eq!(open["source"], "POST /public/greet");
    assert_eq!(open["started"], 3, "{open}");
    assert_eq!(open["refused"], 2, "{open}"); // the bad body and the paused call
    assert!(open["last_fire"].as_str().is_some(), "{open}");
    // The CLI lists them.
    let out = cli(&node, &["triggers", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 3, "{listed}");
    let out = cli(&node, &["triggers", "pause", "nap"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("paused"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_events_reach_topic_followers_and_bad_topics_are_refused() {
    let (_dir, node) = node(&["hello"], "");
    let mut stream = SseStream::open(&node, "/v1/topics/prices/events").await;
    let ready = stream.next("ready").await.unwrap();
    assert_eq!(
        (ready.name.as_str(), &ready.data["topic"]),
        ("ready", &json!("prices"))
    );
    let mut ids = Vec::new();
    for i in 0..3 {
        let (status, body) = node
            .post("/v1/topics/prices/publish", &format!("{{\"p\": {i}}}"))
            .await;
        assert_eq!(status, 200, "{body}");
        ids.push(body["id"].as_str().unwrap().to_string());
    }
    // Another topic's events do not reach this follower.
    let (status, _) = node.post("/v1/topics/other/publish", "1").await;
    assert_eq!(status, 200);
    for (i, id) in ids.iter().enumerate() {
        let event = stream.next("a published event").await.unwrap();
        assert_eq!(event.name, "event");
        assert_eq!(event.data["id"], *id.as_str());
        assert_eq!(event.data["payload"], json!({ "p": i }));
    }
    // The CLI publishes, and `sluice events` follows.
    let mut follower = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["events", "prices", "--count", "1", "--json"])
        .env("SLUICE_NODE", &node.url)
        .env("SLUICE_TOKEN", &node.tokens.all)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = follower.stderr.take().unwrap();
    let following = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .next()
    });
    let line = tokio::task::spawn_blocking(move || following.join().unwrap())
        .await
        .unwrap();
    assert!(
        line.is_some_and(|l| l.contains("following topic prices")),
        "the CLI never followed"
    );
    let out = cli(&node, &["publish", "prices", "--data", r#"{"p": 9}"#]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let event = stream.next("the CLI's event").await.unwrap();
    assert_eq!(event.data["payload"], json!({ "p": 9 }));
    let out = tokio::task::spawn_blocking(move || follower.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(out.status.success());
    let followed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(followed["payload"], json!({ "p": 9 }), "{followed}");
    // Bad topics, bodies and tokens: 4xx with a JSON error.
    for bad in ["a%20b", ".x", "a%2Fb"] {
        let (status, body) = node.post(&format!("/v1/topics/{bad}/publish"), "1").await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("bad-request")),
            "{bad}: {body}"
        );
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("not a topic name"),
            "{body}"
        );
    }
    let (status, body) = node.post("/v1/topics/prices/publish", "{nope").await;
    assert_eq!(status, 400, "{body}");
    let viewer = node.tokens.read.clone();
    let (status, body) = node
        .call(
            Method::POST,
            "/v1/topics/prices/publish",
            Some(&viewer),
            Some("1"),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    let (status, _) = node
        .call(Method::POST, "/v1/topics/prices/publish", None, Some("1"))
        .await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_follower_gets_every_progress_step_and_the_outcome_in_order() {
    let (_dir, node) = node(&["stepper"], "");
    let (status, started) = node
        .post("/v1/flows/stepper/start", r#"{"steps": 25, "ms": 10}"#)
        .await;
    assert_eq!(status, 202, "{started}");
    let id = started["id"].as_str().unwrap().to_string();
    let mut stream = SseStream::open(&node, &format!("/v1/instances/{id}/events")).await;
    let first = stream.next("the state").await.unwrap();
    assert_eq!(first.name, "state", "{first:?}");
    let mut steps = Vec::new();
    let outcome = loop {
        let event = stream
            .next("progress and the outcome")
            .await
            .expect("the outcome before the end");
        match event.name.as_str() {
            "progress" => steps.push(event.data["step"].as_str().unwrap().to_string()),
            "outcome" => break event.data,
            "state" => {}
            other => panic!("unexpected event {other}: {:?}", event.data),
        }
    };
    let expected: Vec<String> = (1..=25).map(|i| format!("step {i}")).collect();
    assert_eq!(steps, expected);
    assert_eq!(outcome["status"], "completed");
    assert_eq!(outcome["output"], json!({ "steps": 25 }));
    assert!(
        stream.next("the end").await.is_none(),
        "the stream ends after the outcome"
    );
    // An ended instance: its steps from the journal, then its outcome.
    let mut again = SseStream::open(&node, &format!("/v1/instances/{id}/events")).await;
    let mut names = Vec::new();
    while let Some(event) = again.next("a replayed stream").await {
        names.push(event.name);
    }
    assert_eq!(names.len(), 27, "{names:?}");
    assert_eq!(
        (names[0].as_str(), names[26].as_str()),
        ("state", "outcome")
    );
    // Unknown and malformed ids.
    let (status, body) = node.get("/v1/instances/no-such-id/events").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("unknown-instance")),
        "{body}"
    );
    // `sluice start --follow` prints every step, then the output.
    let out = cli(
        &node,
        &[
            "start",
            "stepper",
            "--input",
            r#"{"steps": 5, "ms": 10}"#,
            "--follow",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stderr);
    let positions: Vec<usize> = (1..=5)
        .map(|i| {
            said.find(&format!(": step {i}\n"))
                .unwrap_or_else(|| panic!("step {i} missing: {said}"))
        })
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{said}");
    let output: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(output, json!({ "steps": 5 }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_follower_that_stops_reading_does_not_hold_the_node_back() {
    let (_dir, node) = node(&["hello"], "");
    let mut slow = SseStream::open(&node, "/v1/topics/bulk/events").await;
    assert_eq!(slow.next("ready").await.unwrap().name, "ready");
    // 3,000 events of 8 KiB (24 MiB): far more than the slow follower's buffers hold.
    let payload = format!("\"{}\"", "x".repeat(8 * 1024));
    let started = Instant::now();
    let mut publishers = Vec::new();
    for worker in 0..16 {
        let (url, token, payload) = (node.url.clone(), node.tokens.all.clone(), payload.clone());
        publishers.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            for _ in 0..(3000 / 16 + usize::from(worker < 3000 % 16)) {
                let response = client
                    .post(format!("{url}/v1/topics/bulk/publish"))
                    .bearer_auth(&token)
                    .body(payload.clone())
                    .send()
                    .await
                    .expect("an answer");
                assert_eq!(response.status(), 200);
            }
        }));
    }
    for p in publishers {
        p.await.unwrap();
    }
    let took = started.elapsed();
    let (status, _) = node.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, 200);
    // The slow one, reading at last, learns it missed events.
    let mut dropped = None;
    let mut received = 0;
    while dropped.is_none() {
        let event = slow
            .next("the dropped marker")
            .await
            .expect("the stream goes on");
        match event.name.as_str() {
            "event" => received += 1,
            "dropped" => dropped = event.data["missed"].as_u64(),
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        dropped.unwrap() > 0 && received < 3000,
        "received {received}, dropped {dropped:?}"
    );
    eprintln!(
        "3000 publishes in {took:?} with a stalled follower; it received {received}, then dropped {dropped:?}"
    );
}
