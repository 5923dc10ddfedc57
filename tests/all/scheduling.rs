//! Queue discipline, the seed scenario, and timeouts, observed on real instances. Where
//! an order depends on who holds a pool's slot, the test holds it itself.

use std::time::Duration;

use serde_json::json;
use sluice::model::Priority;
use sluice::observe::{EventKind, InstanceEvent};
use sluice::sched::QueueClass;
use sluice::{FlowError, StartRequest};
use tokio::sync::broadcast;

use crate::support::{flow_entry, node, occupy, run, until, within};

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
    let node = node(&format!("{STRICT_POOL}{}", flow_entry("hello", "one"))).await;
    let one = node.pools().get("one").unwrap().clone();
    // The test holds the pool's only slot: every start below waits in line for it.
    let held = within("the free slot", one.acquire(QueueClass::Normal)).await;
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
    assert_eq!(one.waiting(), 3, "the starts wait for the held slot");
    let ids = [h.id().to_string(), a.id().to_string(), b.id().to_string()];
    drop(held);
    for handle in [a, b, h] {
        within("the starts to end", handle.outcome()).await.unwrap();
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
        "{STRICT_POOL}{}{}",
        flow_entry("hello", "one"),
        flow_entry("watcher", "one")
    );
    let node = node(&config).await;
    let one = node.pools().get("one").unwrap().clone();
    let mut events = node.events().subscribe();
    // A watcher waits for an event, parked: it holds no slot.
    let watcher = node
        .start(request("watcher", json!({ "topic": "wake", "count": 1 })))
        .await
        .unwrap();
    until("the watcher parked", Duration::from_secs(30), || {
        one.stats().snapshot().parked == 1
    })
    .await;
    // The test takes the pool's only slot; new starts queue for it.
    let held = within("the free slot", one.acquire(QueueClass::Normal)).await;
    let news = [
        node.start(request("hello", json!({ "name": "n1" })))
            .await
            .unwrap(),
        node.start(request("hello", json!({ "name": "n2" })))
            .await
            .unwrap(),
    ];
    assert_eq!(one.waiting(), 2, "the new starts wait for the held slot");
    // The watcher wakes after them, while the slot is still held, and queues to resume.
    node.messaging()
        .topics
        .topic("wake")
        .publish("test.0".into(), b"{}".to_vec());
    until(
        "the watcher waiting to resume",
        Duration::from_secs(30),
        || one.waiting() == 3,
    )
    .await;
    let ids: Vec<String> = news.iter().map(|h| h.id().to_string()).collect();
    let watcher_id = watcher.id().to_string();
    drop(held);
    within("the watcher to end", watcher.outcome())
        .await
        .unwrap();
    for h in news {
        within("the new starts to end", h.outcome()).await.unwrap();
    }
    let events = drain(&mut events);
    let resumed = position(&events, &watcher_id, EventKind::Resumed);
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
