//! A failing guest fails only its own instance; the node keeps serving.

use serde_json::json;

use crate::support::{node, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_fails_only_its_instance_and_the_parent_sees_the_message() {
    let node = node("").await;
    let traps = (0..8).map(|i| {
        let node = node.clone();
        tokio::spawn(async move {
            run(
                &node,
                "supervisor",
                json!({ "child": "trap", "input": { "message": format!("boom {i}") } }),
            )
            .await
        })
    });
    let hellos = (0..8).map(|i| {
        let node = node.clone();
        tokio::spawn(async move { run(&node, "hello", json!({ "name": i.to_string() })).await })
    });
    let (traps, hellos): (Vec<_>, Vec<_>) = (futures_join(traps).await, futures_join(hellos).await);
    for (i, out) in traps.into_iter().enumerate() {
        let out = out.expect("the supervising parent itself completes");
        assert_eq!(out["outcome"], "failed", "{out}");
        let message = out["message"].as_str().unwrap();
        assert!(
            message.contains("unreachable"),
            "trap message missing: {message}"
        );
        assert!(
            message.contains(&format!("boom {i}")),
            "panic message missing: {message}"
        );
    }
    for (i, out) in hellos.into_iter().enumerate() {
        assert_eq!(out.unwrap(), json!({ "greeting": format!("Hello, {i}!") }));
    }
    let stats = node.pools().default_pool().stats().snapshot();
    assert_eq!((stats.failed, stats.completed), (8, 16));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returned_error_and_an_unknown_child_reach_the_parent_as_data() {
    let node = node("").await;
    let out = run(
        &node,
        "supervisor",
        json!({ "child": "trap", "input": { "message": "no funds", "fail": true } }),
    )
    .await
    .unwrap();
    assert_eq!(out, json!({ "outcome": "failed", "message": "no funds" }));
    let out = run(&node, "supervisor", json!({ "child": "no-such-flow" }))
        .await
        .unwrap();
    assert_eq!(out["outcome"], "rejected");
    let message = out["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("unknown flow `no-such-flow`: the node knows `")
            && message.contains("found no no-such-flow.wasm in "),
        "{message}"
    );
}

async fn futures_join<T>(tasks: impl Iterator<Item = tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("test task"));
    }
    out
}
