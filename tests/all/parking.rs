//! A waiting flow is parked: it holds no slot, so waiting can never deadlock a pool.

use std::time::{Duration, Instant};

use serde_json::json;
use sluice::StartRequest;

use crate::support::{node, run, until};

const ALL_POOLS_SIZE_ONE: &str = "[pools.default]\nsize = 1\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_of_ten_thousand_completes_in_a_pool_of_one() {
    let node = node(ALL_POOLS_SIZE_ONE).await;
    let out = run(&node, "chain", json!({ "depth": 10_000 }))
        .await
        .expect("chain completes");
    assert_eq!(
        out,
        json!({ "depth": 10_000, "sum": 10_000u64 * 10_001 / 2 })
    );
    let stats = node.pools().default_pool().stats().snapshot();
    assert_eq!(stats.completed, 10_001);
    assert_eq!(stats.peak_running, 1);
    // Nearly every level waited on its child at the same time, holding no slot. (A level
    // preempted at an epoch tick between `start` and `join` waits for a slot instead.)
    assert!(
        stats.peak_parked > 9_900 && stats.peak_parked <= 10_000,
        "peak parked {}",
        stats.peak_parked
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_of_a_thousand_returns_all_results_in_order() {
    let node = node(ALL_POOLS_SIZE_ONE).await;
    let expected: Vec<_> = (0..1000)
        .map(|i| json!({ "greeting": format!("Hello, child-{i}!") }))
        .collect();
    for parallel in [false, true] {
        let out = run(&node, "fanout", json!({ "n": 1000, "parallel": parallel }))
            .await
            .expect("fanout completes");
        assert_eq!(
            out["results"].as_array().unwrap(),
            &expected,
            "parallel = {parallel}"
        );
    }
    assert_eq!(
        node.pools().default_pool().stats().snapshot().completed,
        2 * 1001
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_sleepers_hold_no_slot() {
    let node = node(ALL_POOLS_SIZE_ONE).await;
    let pool = node.pools().default_pool().clone();
    let mut sleepers = Vec::new();
    for _ in 0..1000 {
        let input = serde_json::to_vec(&json!({ "ms": 60_000 })).unwrap();
        sleepers.push(
            node.start(StartRequest::rpc("sleeper", input, "test"))
                .await
                .unwrap(),
        );
    }
    until("1000 sleepers parked", Duration::from_secs(60), || {
        pool.stats().snapshot().parked == 1000
    })
    .await;
    let started = Instant::now();
    let out = run(&node, "hello", json!({ "name": "Ada" })).await.unwrap();
    let took = started.elapsed();
    assert_eq!(out, json!({ "greeting": "Hello, Ada!" }));
    // Long before they wake: every sleeper is still parked, and none has finished.
    let stats = pool.stats().snapshot();
    assert_eq!((stats.parked, stats.completed), (1000, 1));
    assert!(
        took < Duration::from_secs(30),
        "hello took {took:?} in a pool of parked sleepers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_instance_gives_back_the_stack_below_its_wait_and_resumes_intact() {
    let node = node(ALL_POOLS_SIZE_ONE).await;
    let before = sluice::engine::stacks::trimmed_bytes();
    // Each level parks (its stack trimmed below the wait) and resumes to add its own depth
    // to what its child returned: a stack trimmed too far would corrupt the sum or trap.
    let out = run(&node, "chain", json!({ "depth": 50, "nap_ms": 20 }))
        .await
        .expect("chain completes");
    assert_eq!(out, json!({ "depth": 50, "sum": 50 * 51 / 2 }));
    assert!(
        sluice::engine::stacks::trimmed_bytes() > before,
        "no parked level gave back any stack"
    );
}
