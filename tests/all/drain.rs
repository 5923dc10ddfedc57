//! Graceful stop: SIGTERM with 200 instances in flight (sleepers and CPU-bound ones): the
//! node refuses starts meanwhile (503), exits 0 within its grace period, and after a
//! restart all 200 complete, none twice.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::served::{serve, served_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_a_restart_finishes_everything_once() {
    let dir = tempfile::tempdir().unwrap();
    let (config, tokens) = served_config(
        dir.path(),
        &["sleeper", "spin"],
        "[pools.default]\nsize = 2\n",
    );
    let data = dir.path().join("data");
    let mut node = serve(&config, &data, tokens);
    for i in 0..200 {
        let (flow, input) = if i % 10 == 0 {
            ("spin", json!({ "ms": 300 }))
        } else {
            ("sleeper", json!({ "ms": 3000 }))
        };
        let (status, body) = node
            .post(
                &format!("/v1/flows/{flow}/start?id=d-{i}"),
                &input.to_string(),
            )
            .await;
        assert_eq!(status, 202, "{body}");
    }
    let stopped = Instant::now();
    // SIGTERM: the node drains.
    let pid = node.child.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    // Starts during the drain are refused with 503 and Retry-After, until the node is gone.
    let client = reqwest::Client::new();
    let mut saw_503 = false;
    // A start that reaches the node before the signal does is admitted (202), and is one
    // more instance to finish after the restart.
    let mut admitted_before_the_drain = 0;
    loop {
        let answer = client
            .post(format!("{}/v1/flows/sleeper/start", node.url))
            .bearer_auth(&node.tokens.all)
            .body("{\"ms\": 1}")
            .send()
            .await;
        match answer {
            Ok(r) if r.status().as_u16() == 503 => {
                assert!(r.headers().contains_key("retry-after"));
                saw_503 = true;
            }
            Ok(r) => {
                assert!(
                    r.status().as_u16() == 202 && !saw_503,
                    "a start was admitted during the drain: {}",
                    r.status()
                );
                admitted_before_the_drain += 1;
            }
            Err(_) => break, // the node stopped listening
        }
        if node.child.try_wait().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let status = node.child.wait().unwrap();
    assert!(status.success(), "the node exited with {status}");
    assert!(
        stopped.elapsed() < Duration::from_secs(20 + 15),
        "the drain took {:?}, past its 20 s grace",
        stopped.elapsed()
    );

    // The next start resumes everything; each instance ends once.
    let (config, tokens) = served_config(
        dir.path(),
        &["sleeper", "spin"],
        "[pools.default]\nsize = 2\n",
    );
    let node = serve(&config, &data, tokens);
    for i in 0..200 {
        let (status, body) = node
            .get(&format!("/v1/instances/d-{i}/result?wait=120s"))
            .await;
        assert_eq!(
            (status, body["status"].clone()),
            (200, json!("completed")),
            "d-{i}: {body}"
        );
    }
    let (_, page) = node.get("/v1/instances?limit=1000").await;
    assert_eq!(
        page["instances"].as_array().unwrap().len(),
        200 + admitted_before_the_drain,
        "no instance was started twice ({admitted_before_the_drain} admitted before the drain)"
    );
}
