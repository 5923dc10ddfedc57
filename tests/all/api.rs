//! The node as a service, through real HTTP on 127.0.0.1: every route and its errors,
//! auth, the OpenAPI document against the router, and many waiting requests on a small pool.

use reqwest::Method;
use serde_json::{Value, json};

use crate::served::{Served, serve, served_config};

fn node(extra: &str) -> (tempfile::TempDir, Served) {
    let dir = tempfile::tempdir().unwrap();
    let (config, tokens) =
        served_config(dir.path(), &["hello", "fanout", "sleeper", "spin"], extra);
    let served = serve(&config, &dir.path().join("data"), tokens);
    (dir, served)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_reads_and_lists_instances_over_http() {
    let (_dir, node) = node("[limits]\ninput = \"1 KiB\"\n");
    // Start and wait: the output comes back.
    let (status, body) = node
        .post("/v1/flows/hello/start?wait=30s", r#"{"name":"api"}"#)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "completed", "{body}");
    assert_eq!(body["output"]["greeting"], "Hello, api!", "{body}");
    let hello_id = body["id"].as_str().unwrap().to_string();

    // Start without waiting: 202, a Location, then the result by long-poll.
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{}/v1/flows/fanout/start?id=parent-1", node.url))
        .bearer_auth(&node.tokens.all)
        .body(r#"{"n": 3}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    assert_eq!(
        response.headers()["location"].to_str().unwrap(),
        "/v1/instances/parent-1"
    );
    let (status, result) = node.get("/v1/instances/parent-1/result?wait=30s").await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["output"]["results"].as_array().unwrap().len(), 3);

    // The same id again attaches to the first instance.
    let (status, again) = node
        .post("/v1/flows/fanout/start?id=parent-1&wait=5s", r#"{"n": 3}"#)
        .await;
    assert_eq!(
        (status, again["id"].clone()),
        (200, json!("parent-1")),
        "{again}"
    );

    let (status, view) = node.get("/v1/instances/parent-1").await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["flow"], "fanout");
    assert_eq!(view["status"], "completed");
    assert_eq!(view["origin"], "rpc");
    assert_eq!(view["by"], "ops");
    let (status, children) = node.get("/v1/instances/parent-1/children").await;
    assert_eq!(status, 200);
    let children = children.as_array().unwrap().clone();
    assert_eq!(children.len(), 3, "{children:?}");
    assert!(
        children
            .iter()
            .all(|c| c["parent"] == "parent-1" && c["flow"] == "hello")
    );
    let (status, journal) = node.get("/v1/instances/parent-1/journal").await;
    assert_eq!(status, 200);
    let calls: Vec<&str> = journal
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["call"].as_str().unwrap())
        .collect();
    assert_eq!(
        calls.iter().filter(|c| **c == "start").count(),
        3,
        "{calls:?}"
    );

    // Lists: filtered and paged.
    let (status, page) = node.get("/v1/instances?flow=hello&limit=2").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["instances"].as_array().unwrap().len(), 2);
    let cursor = page["next_cursor"]
        .as_u64()
        .expect("more than two hello instances");
    let (_, rest) = node
        .get(&format!(
            "/v1/instances?flow=hello&limit=10&cursor={cursor}"
        ))
        .await;
    let rest = rest["instances"].as_array().unwrap().len();
    assert_eq!(2 + rest, 4, "1 + 3 children of flow hello");
    let (_, roots) = node.get("/v1/instances?root=parent-1").await;
    assert_eq!(roots["instances"].as_array().unwrap().len(), 4);
    let (_, done) = node.get(&format!("/v1/instances/{hello_id}/result")).await;
    assert_eq!(done["status"], "completed");

    // Pools and flows, live.
    let (status, pools) = node.get("/v1/pools").await;
    assert_eq!(status, 200);
    let default = pools
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "default")
        .expect("the default pool");
    assert!(default["completed"].as_u64().unwrap() >= 5, "{default}");
    let (status, flows) = node.get("/v1/flows").await;
    assert_eq!(status, 200);
    let names: Vec<&str> = flows
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"hello") && names.contains(&"fanout"),
        "{names:?}"
    );

    // Health, readiness and metrics need no token.
    let (status, _) = node.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, 200);
    let (status, _) = node.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(status, 200);
    let (status, metrics) = node.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(status, 200);
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("sluice_flow_duration_seconds")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_a_4xx_with_a_json_error_and_start_nothing() {
    let (_dir, node) = node("[limits]\ninput = \"1 KiB\"\n");
    let cases: Vec<(Method, String, Option<String>, u16, &str)> = vec![
        (
            Method::POST,
            "/v1/flows/hello/start".into(),
            Some("{not json".into()),
            400,
            "bad-request",
        ),
        (
            Method::POST,
            "/v1/flows/nope/start".into(),
            Some("{}".into()),
            404,
            "unknown-flow",
        ),
        (
            Method::POST,
            "/v1/flows/hello/start".into(),
            Some(format!("\"{}\"", "x".repeat(2048))),
            413,
            "payload-too-large",
        ),
        (
            Method::POST,
            "/v1/flows/hello/start?priority=urgent".into(),
            Some("{}".into()),
            400,
            "bad-request",
        ),
        (
            Method::POST,
            "/v1/flows/hello/start?wait=soon".into(),
            Some("{}".into()),
            400,
            "bad-request",
        ),
        (
            Method::POST,
            "/v1/flows/hello/start?id=bad%20id".into(),
            Some("{}".into()),
            400,
            "bad-request",
        ),
        (
            Method::GET,
            "/v1/instances/no-such-instance".into(),
            None,
            404,
            "unknown-instance",
        ),
        (
            Method::GET,
            "/v1/instances/bad%20id".into(),
            None,
            400,
            "bad-request",
        ),
        (
            Method::GET,
            "/v1/instances?status=sleepy".into(),
            None,
            400,
            "bad-request",
        ),
        (
            Method::GET,
            "/v1/instances?limit=0".into(),
            None,
            400,
            "bad-request",
        ),
        (
            Method::GET,
            "/v1/instances?cursor=abc".into(),
            None,
            400,
            "bad-request",
        ),
        (
            Method::DELETE,
            "/v1/pools".into(),
            None,
            405,
            "method-not-allowed",
        ),
        (
            Method::GET,
            "/v1/nothing-here".into(),
            None,
            404,
            "not-found",
        ),
        (
            Method::POST,
            "/v1/hospital/no-such-instance/kill".into(),
            None,
            404,
            "unknown-instance",
        ),
        (
            Method::POST,
            "/v1/hospital/x/retry".into(),
            Some("{\"nope\": 1}".into()),
            400,
            "bad-request",
        ),
    ];
    let token = node.tokens.all.clone();
    for (method, path, body, want, code) in cases {
        let (status, answer) = node
            .call(method.clone(), &path, Some(&token), body.as_deref())
            .await;
        assert_eq!(status, want, "{method} {path}: {answer}");
        assert_eq!(answer["code"], code, "{method} {path}: {answer}");
        assert!(
            answer["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{method} {path}: {answer}"
        );
    }
    let (_, page) = node.get("/v1/instances").await;
    assert_eq!(
        page["instances"],
        json!([]),
        "a refused start left something behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_resized_live_runs_more_at_once_and_bad_resizes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (config, tokens) = served_config(
        dir.path(),
        &["hostile"],
        "[pools.default]\nsize = 1\nqueue = 100\npreempt = false\n\
         [limits]\ncpu-slice = \"10m\"\ncpu-total = \"10m\"\n",
    );
    let node = serve(&config, &dir.path().join("data"), tokens);
    let ops = node.tokens.all.clone();
    // Two CPU-bound instances (they never return) on a pool of one: one runs, one waits.
    for i in 0..2 {
        let (status, answer) = node
            .post(
                &format!("/v1/flows/hostile/start?id=loop-{i}"),
                r#"{"attack":"loop"}"#,
            )
            .await;
        assert_eq!(status, 202, "{answer}");
    }
    let running = || async {
        let (_, pools) = node.get("/v1/pools").await;
        pools
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "default")
            .cloned()
            .expect("the default pool")
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let pool = running().await;
        if pool["running"] == 1 && pool["queued"] == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never 1 running and 1 queued: {pool}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (status, pool) = node
        .call(
            Method::PATCH,
            "/v1/pools/default",
            Some(&ops),
            Some(r#"{"size":2,"queue":7}"#),
        )
        .await;
    assert_eq!(status, 200, "{pool}");
    assert_eq!(
        (pool["size"].clone(), pool["queue_capacity"].clone()),
        (json!(2), json!(7))
    );
    // The waiting one gets the new slot at once, with nobody giving one back.
    loop {
        let pool = running().await;
        if pool["running"] == 2 && pool["queued"] == 0 && pool["started"] == 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the resize ran nothing more: {pool}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for (body, status, code) in [
        (r#"{"size":0}"#, 400, "bad-request"),
        (r#"{"size":5000}"#, 400, "bad-request"),
        (r#"{"queue":0}"#, 400, "bad-request"),
        (r#"{}"#, 400, "bad-request"),
        (r#"{"size":"big"}"#, 400, "bad-request"),
        (r#"{"threads":2}"#, 400, "bad-request"),
    ] {
        let (got, answer) = node
            .call(Method::PATCH, "/v1/pools/default", Some(&ops), Some(body))
            .await;
        assert_eq!(
            (got, answer["code"].as_str()),
            (status, Some(code)),
            "{body}: {answer}"
        );
    }
    let (got, answer) = node
        .call(
            Method::PATCH,
            "/v1/pools/nope",
            Some(&ops),
            Some(r#"{"size":2}"#),
        )
        .await;
    assert_eq!(
        (got, answer["code"].as_str()),
        (404, Some("unknown-pool")),
        "{answer}"
    );
    let read = node.tokens.read.clone();
    let (got, answer) = node
        .call(
            Method::PATCH,
            "/v1/pools/default",
            Some(&read),
            Some(r#"{"size":9}"#),
        )
        .await;
    assert_eq!(got, 403, "{answer}");
    assert_eq!(
        running().await["size"],
        2,
        "a refused resize changed the pool"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_finishes_gets_a_4xx_while_everyone_else_is_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_dir, node) = node("");
    let addr = node.url.trim_start_matches("http://").to_string();
    let mut stalled = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v1/flows/hello/start HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"na",
        node.tokens.all
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    // Others are served while that body hangs.
    for i in 0..5 {
        let (status, answer) = node
            .post(
                "/v1/flows/hello/start?wait=30s",
                &format!(r#"{{"name":"n{i}"}}"#),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
    }
    // The stalled request is answered once its body times out ([server] body-timeout).
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(120),
        stalled.read_to_end(&mut answer),
    )
    .await
    .expect("the stalled request was never answered")
    .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    let status: u16 = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {answer}"));
    assert!((400..500).contains(&status), "{answer}");
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let body: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}"));
    assert_eq!(body["code"], "request-timeout", "{answer}");
    let (_, page) = node.get("/v1/instances").await;
    assert_eq!(page["instances"].as_array().unwrap().len(), 5, "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_unknown_and_insufficient_tokens_are_refused_with_nothing_started() {
    let (_dir, node) = node("");
    let start = "/v1/flows/hello/start?wait=10s";
    let body = Some(r#"{"name":"x"}"#);
    let (status, answer) = node.call(Method::POST, start, None, body).await;
    assert_eq!(
        (status, answer["code"].clone()),
        (401, json!("unauthorized"))
    );
    let (status, answer) = node
        .call(Method::POST, start, Some("slc_not-a-token"), body)
        .await;
    assert_eq!(
        (status, answer["code"].clone()),
        (401, json!("unauthorized"))
    );
    let read = node.tokens.read.clone();
    let (status, answer) = node.call(Method::POST, start, Some(&read), body).await;
    assert_eq!(
        (status, answer["code"].clone()),
        (403, json!("forbidden")),
        "{answer}"
    );
    let hello = node.tokens.hello.clone();
    let (status, answer) = node
        .call(
            Method::POST,
            "/v1/flows/fanout/start",
            Some(&hello),
            Some("{\"n\":1}"),
        )
        .await;
    assert_eq!(status, 403, "start:hello may not start fanout: {answer}");
    let (status, answer) = node
        .call(Method::GET, "/v1/pools", Some(&hello), None)
        .await;
    assert_eq!(status, 403, "{answer}");
    let (status, answer) = node
        .call(Method::POST, "/v1/drain", Some(&read), None)
        .await;
    assert_eq!(status, 403, "{answer}");
    let (_, page) = node.get("/v1/instances").await;
    assert_eq!(
        page["instances"],
        json!([]),
        "a refused request started something"
    );
    // The narrow token does what it may.
    let (status, answer) = node.call(Method::POST, start, Some(&hello), body).await;
    assert_eq!(status, 200, "{answer}");
    // And the node never logs a token.
    let logged: Vec<String> = node.stderr.try_iter().collect();
    for token in [&node.tokens.all, &node.tokens.read, &node.tokens.hello] {
        assert!(
            !logged.iter().any(|l| l.contains(token.as_str())),
            "a token was logged"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_route_is_served_and_every_served_route_is_documented() {
    let (_dir, node) = node("");
    let (status, doc) = node.call(Method::GET, "/v1/openapi.json", None, None).await;
    assert_eq!(status, 200, "{doc}");
    let paths = doc["paths"].as_object().expect("paths").clone();
    let token = node.tokens.all.clone();
    let mut documented = Vec::new();
    for (path, item) in &paths {
        for method in item.as_object().unwrap().keys() {
            documented.push(format!("{} {path}", method.to_uppercase()));
            let concrete = path
                .replace("{flow}", "hello")
                .replace("{id}", "no-such-id")
                .replace("{name}", "no-such-pool")
                .replace("{topic}", "no-such-topic");
            let method: Method = method.to_uppercase().parse().unwrap();
            if concrete == "/v1/drain" {
                continue; // it would stop the node under test
            }
            if concrete == "/v1/topics/no-such-topic/events" {
                continue; // a live stream that never ends (tests/all/triggers.rs follows one)
            }
            let (status, answer) = node
                .call(method.clone(), &concrete, Some(&token), Some("{}"))
                .await;
            let unrouted = answer["code"] == "not-found" || status == 405;
            assert!(
                !unrouted,
                "documented but not served: {method} {path} -> {status} {answer}"
            );
        }
    }
    // What the router serves (listed once, here) is documented.
    let served = [
        "POST /v1/flows/{flow}/start",
        "GET /v1/instances",
        "GET /v1/instances/{id}",
        "GET /v1/instances/{id}/result",
        "GET /v1/instances/{id}/journal",
        "GET /v1/instances/{id}/children",
        "POST /v1/instances/{id}/cancel",
        "GET /v1/hospital",
        "POST /v1/hospital/{id}/retry",
        "POST /v1/hospital/{id}/kill",
        "GET /v1/pools",
        "PATCH /v1/pools/{name}",
        "GET /v1/flows",
        "POST /v1/drain",
        "GET /v1/cluster",
        "GET /v1/peers",
        "POST /v1/peers/open",
        "POST /v1/peers/messages",
        "GET /v1/triggers",
        "POST /v1/triggers/{name}/pause",
        "POST /v1/triggers/{name}/resume",
        "POST /v1/topics/{topic}/publish",
        "GET /v1/topics/{topic}/events",
        "GET /v1/instances/{id}/events",
        "GET /healthz",
        "GET /readyz",
        "GET /metrics",
        "GET /v1/openapi.json",
    ];
    for route in served {
        assert!(
            documented.contains(&route.to_string()),
            "served but not documented: {route}"
        );
    }
    assert_eq!(documented.len(), served.len(), "documented: {documented:?}");
    let schemes = &doc["components"]["securitySchemes"]["token"];
    assert_eq!(schemes["scheme"], "bearer", "{schemes}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_waiting_requests_on_a_pool_of_two_all_complete_with_few_threads() {
    let (_dir, node) = node("[pools.default]\nsize = 2\nqueue = 2000\n");
    let base = node.threads();
    let client = reqwest::Client::new();
    let requests: Vec<_> = (0..1000)
        .map(|i| {
            let (client, url, token) = (client.clone(), node.url.clone(), node.tokens.all.clone());
            tokio::spawn(async move {
                let response = client
                    .post(format!("{url}/v1/flows/sleeper/start?wait=120s"))
                    .bearer_auth(token)
                    .body(format!("{{\"ms\": {}}}", 200 + i % 50))
                    .send()
                    .await
                    .expect("an answer");
                let status = response.status().as_u16();
                let body: Value = response.json().await.expect("JSON");
                (status, body)
            })
        })
        .collect();
    // While they wait, sample the node's threads until the parked count shows them waiting.
    let mut peak_threads = base;
    let mut peak_parked = 0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while std::time::Instant::now() < deadline {
        peak_threads = peak_threads.max(node.threads());
        let (_, pools) = node.get("/v1/pools").await;
        let parked = pools[0]["parked"].as_u64().unwrap_or(0)
            + pools
                .as_array()
                .unwrap()
                .iter()
                .skip(1)
                .map(|p| p["parked"].as_u64().unwrap_or(0))
                .sum::<u64>();
        peak_parked = peak_parked.max(parked);
        if parked >= 100 || requests.iter().all(|r| r.is_finished()) {
            break;
        }
        tokio::task::yield_now().await;
    }
    let mut completed = 0;
    for r in requests {
        let (status, body) = r.await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["status"], "completed", "{body}");
        completed += 1;
    }
    peak_threads = peak_threads.max(node.threads());
    assert_eq!(completed, 1000);
    assert!(
        peak_parked >= 2,
        "the sleepers never waited together (peak parked {peak_parked})"
    );
    // Waiting requests hold no thread: the node's threads stay a small constant.
    assert!(
        peak_threads <= 64,
        "the node grew to {peak_threads} threads (from {base}) while 1,000 requests waited"
    );
    eprintln!("threads: {base} at rest, {peak_threads} at peak; peak parked {peak_parked}");
}
