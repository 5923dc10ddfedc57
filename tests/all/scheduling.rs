//! Queue discipline, the seed scenario, and timeouts, observed on real instances.

use std::time::Duration;

use serde_json::json;
use sluice::model::Priority;
use sluice::observe::{EventKind, InstanceEvent};
use sluice::{FlowError, StartRequest};
use tokio::sync::broadcast;

use crate::support::{flow_entry, node, occupy, run, until};

fn request(flow: &str, input: serde_json::Value) -> StartRequest {
    StartRequest::rpc(flow, serde_json::to_vec(&input).unwrap(), "test")
}

/// Drain every event received so far.
fn drain(rx: &mut broadcast::Receiver<InstanceEvent>) -> Vec<InstanceEvent> {
    std::iter::from_fn(|| rx.try_recv().ok()).collect()
}

fn position(events: &[InstanceEvent], id: &str, kind: EventKind) -> usize {
    events
        .iter()
        .position(|e| e.id == id && e.kind == kind)
        .unwrap_or_else(|| panic!("no {kind:?} event for {id}"))
}

const STRICT_POOL: &str = "[pools.one]\nsize = 1\npreempt = false\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn high_priority_starts_first_then_fifo() {
    let node = node(&format!(
        "{STRICT_POOL}{}{}",
        flow_entry("spin", "one"),
        flow_entry("hello", "one")
    ))
    .await;
    let [spin] = occupy(&node, "one", 1, 300, 1).await.try_into().unwrap();
    let mut events = node.events().subscribe();
    let a = node
        .start(request("hello", json!({ "name": "a" })))
        .await
        .unwrap();
    let b = node
        .start(request("hello", json!({ "name": "b" })))
        .await
        .unwrap();
    let h = node
        .start(request("hello", json!({ "name": "h" })).with_priority(Priority::High))
        .await
        .unwrap();
    let ids = [h.id().to_string(), a.id().to_string(), b.id().to_string()];
    spin.outcome().await.unwrap();
    for handle in [a, b, h] {
        handle.outcome().await.unwrap();
    }
    let events = drain(&mut events);
    let order: Vec<usize> = ids
        .iter()
        .map(|id| position(&events, id, EventKind::Started))
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "start order was not high, a, b: {events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resuming_instance_goes_before_new_starts() {
    let config = format!(
        "{STRICT_POOL}{}{}{}",
        flow_entry("spin", "one"),
        flow_entry("hello", "one"),
        flow_entry("sleeper", "one")
    );
    let node = node(&config).await;
    let one = node.pools().get("one").unwrap().clone();
    let mut events = node.events().subscribe();
    let sleeper = node
        .start(request("sleeper", json!({ "ms": 150 })))
        .await
        .unwrap();
    until("sleeper parked", Duration::from_secs(30), || {
        one.stats().snapshot().parked == 1
    })
    .await;
    let [spin] = occupy(&node, "one", 1, 1000, 1).await.try_into().unwrap();
    // New starts queue first; the sleeper wakes later, while the spin still holds the slot.
    let news = [
        node.start(request("hello", json!({ "name": "n1" })))
            .await
            .unwrap(),
        node.start(request("hello", json!({ "name": "n2" })))
            .await
            .unwrap(),
    ];
    let ids: Vec<String> = news.iter().map(|h| h.id().to_string()).collect();
    let sleeper_id = sleeper.id().to_string();
    spin.outcome().await.unwrap();
    sleeper.outcome().await.unwrap();
    for h in news {
        h.outcome().await.unwrap();
    }
    let events = drain(&mut events);
    let resumed = position(&events, &sleeper_id, EventKind::Resumed);
    for id in &ids {
        assert!(
            resumed < position(&events, id, EventKind::Started),
            "a new start went before the resumption: {events:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saturated_reporting_does_not_hold_back_transactions() {
    let config = format!(
        "[pools.reporting]\nsize = 3\n[pools.transactions]\nsize = 2\n{}{}",
        flow_entry("spin", "reporting"),
        flow_entry("hello", "transactions")
    );
    let node = node(&config).await;
    let reporting = node.pools().get("reporting").unwrap().clone();
    let _reports = occupy(&node, "reporting", 6, 3000, 3).await;
    for i in 0..20 {
        let out = run(&node, "hello", json!({ "name": format!("tx{i}") }))
            .await
            .unwrap();
        assert_eq!(out["greeting"], format!("Hello, tx{i}!"));
    }
    let s = reporting.stats().snapshot();
    assert_eq!(
        (s.running, s.completed),
        (3, 0),
        "transactions waited for reporting"
    );
    assert_eq!(
        node.pools()
            .get("transactions")
            .unwrap()
            .stats()
            .snapshot()
            .completed,
        20
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_and_pool_timeouts_end_instances_as_timed_out() {
    let config = format!(
        "[pools.slow]\nsize = 1\ntimeout = \"300ms\"\n{}{}\
         [[flows]]\nname = \"nap\"\ncomponent = \"{}\"\ntimeout = \"200ms\"\n",
        flow_entry("spin", "slow"),
        flow_entry("hello", "slow"),
        crate::support::guest("sleeper").display()
    );
    let node = node(&config).await;
    // A flow timeout, seen by the parent as flow-error.timed-out.
    let out = run(
        &node,
        "supervisor",
        json!({ "child": "nap", "input": { "ms": 60_000 } }),
    )
    .await
    .unwrap();
    assert_eq!(out, json!({ "outcome": "timed-out" }));
    // A pool timeout on a CPU-bound flow; the pool's slot is free again afterwards.
    assert_eq!(
        run(&node, "spin", json!({ "ms": 60_000 })).await,
        Err(FlowError::TimedOut)
    );
    assert_eq!(
        run(&node, "hello", json!({ "name": "after" }))
            .await
            .unwrap()["greeting"],
        "Hello, after!"
    );
    let slow = node.pools().get("slow").unwrap().stats().snapshot();
    assert_eq!((slow.running, slow.parked), (0, 0));
    let metrics = node.render_metrics();
    for line in [
        "sluice_flow_duration_seconds_count{flow=\"nap\",pool=\"default\",outcome=\"timed-out\"} 1",
        "sluice_flow_duration_seconds_count{flow=\"spin\",pool=\"slow\",outcome=\"timed-out\"} 1",
        "sluice_parked_flows{pool=\"default\"} 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing `{line}` in:\n{metrics}"
        );
    }
}
