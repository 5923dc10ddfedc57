//! Eviction: memory bounds the resident instances, not the parked ones. Parked instances
//! beyond `node.max-resident` are dropped and rebuilt by replay when they wake.

use serde_json::json;
use sluice::StartRequest;

use crate::support::node;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_sleepers_all_complete_with_at_most_a_thousand_resident() {
    const FLOWS: usize = 20_000;
    let node =
        node("[node]\nmax-resident = 1000\n[pools.default]\nsize = 2\nqueue = 30000\n").await;
    let input = serde_json::to_vec(&json!({ "ms": 300 })).unwrap();
    let mut handles = Vec::with_capacity(FLOWS);
    for _ in 0..FLOWS {
        let request = StartRequest::rpc("sleeper", input.clone(), "test");
        handles.push(node.start(request).await.expect("admitted"));
    }
    for handle in handles {
        let output = handle.outcome().await.expect("sleeper completes");
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&output).unwrap(),
            json!({ "slept_ms": 300 })
        );
    }
    let residency = node.residency();
    assert_eq!(
        residency.peak(),
        1000,
        "the bound was reached and never exceeded"
    );
    assert!(residency.evictions() > 0, "nothing was evicted");
    assert_eq!(residency.resident(), 0);
    eprintln!("{} evictions", residency.evictions());
}
