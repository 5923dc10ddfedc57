//! Pools bound concurrency, isolate each other, and refuse work beyond their queue.

use serde_json::json;
use sluice::{StartError, StartRequest};

use crate::support::{flow_entry, node, occupy, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_more_than_size_instances_run_guest_code() {
    let config = format!(
        "[pools.work]\nsize = 3\n{}{}{}",
        flow_entry("spin", "work"),
        flow_entry("sleeper", "work"),
        flow_entry("fanout", "work")
    );
    let node = node(&config).await;
    let mut handles = Vec::new();
    for i in 0..60 {
        let (flow, input) = match i % 3 {
            0 => ("spin", json!({ "ms": 20 })),
            1 => ("sleeper", json!({ "ms": 5, "times": 3 })),
            _ => (
                "fanout",
                json!({ "n": 5, "child": "spin", "input": { "ms": 10 } }),
            ),
        };
        let input = serde_json::to_vec(&input).unwrap();
        handles.push(
            node.start(StartRequest::rpc(flow, input, "test"))
                .await
                .unwrap(),
        );
    }
    for h in handles {
        h.outcome().await.expect("every flow completes");
    }
    let stats = node.pools().get("work").unwrap().stats().snapshot();
    assert_eq!(stats.completed, 60 + 20 * 5);
    // Saturated, but never beyond its size.
    assert_eq!(stats.peak_running, 3);
    assert_eq!(stats.running, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_pool_does_not_hold_back_another() {
    let config = format!(
        "[pools.a]\nsize = 2\n[pools.b]\nsize = 1\n{}{}",
        flow_entry("spin", "a"),
        flow_entry("hello", "b")
    );
    let node = node(&config).await;
    let a = node.pools().get("a").unwrap().clone();
    let _spins = occupy(&node, "a", 4, 4_000, 2).await;
    let out = run(&node, "hello", json!({ "name": "B" })).await.unwrap();
    assert_eq!(out, json!({ "greeting": "Hello, B!" }));
    // Promptly: while every spin still burns CPU in pool a.
    assert_eq!(
        a.stats().snapshot().completed,
        0,
        "hello waited for the spins"
    );
}

// One thread, so nothing runs between the starts below: the queue fills deterministically.
#[tokio::test(flavor = "current_thread")]
async fn a_full_queue_refuses_at_once_leaves_no_trace_and_counts() {
    let config = format!(
        "[pools.tiny]\nsize = 1\nqueue = 2\n{}{}",
        flow_entry("spin", "tiny"),
        flow_entry("hello", "tiny")
    );
    let node = node(&config).await;
    let pool = node.pools().get("tiny").unwrap().clone();
    let [spin] = occupy(&node, "tiny", 1, 2000, 1).await.try_into().unwrap();
    let hello = || StartRequest::rpc("hello", br#"{"name":"q"}"#.to_vec(), "test");
    let queued = [
        node.start(hello()).await.unwrap(),
        node.start(hello()).await.unwrap(),
    ];
    let err = node.start(hello()).await.unwrap_err();
    assert!(
        matches!(err, StartError::QueueFull { ref pool, capacity: 2, .. } if pool == "tiny"),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "pool `tiny` queue is full (2 waiting); flow `hello` not started"
    );
    spin.outcome().await.unwrap();
    for h in queued {
        h.outcome().await.unwrap();
    }
    let stats = pool.stats().snapshot();
    // The refused start never became an instance.
    assert_eq!(
        (
            stats.started,
            stats.completed,
            stats.rejected,
            stats.peak_queued
        ),
        (3, 3, 1, 2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cpu_bound_flow_gives_its_slot_up_to_waiting_work() {
    let config = format!(
        "[pools.one]\nsize = 1\n{}{}",
        flow_entry("spin", "one"),
        flow_entry("hello", "one")
    );
    let node = node(&config).await;
    let one = node.pools().get("one").unwrap().clone();
    let [spin] = occupy(&node, "one", 1, 3000, 1).await.try_into().unwrap();
    let out = run(&node, "hello", json!({ "name": "same pool" }))
        .await
        .unwrap();
    assert_eq!(out, json!({ "greeting": "Hello, same pool!" }));
    let stats = one.stats().snapshot();
    assert_eq!(stats.completed, 1, "hello waited for the spin to finish");
    assert!(stats.preempted >= 1);
    assert!(spin.outcome().await.is_ok());
}
