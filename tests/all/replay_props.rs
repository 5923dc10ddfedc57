//! Replaying the recorded journal of a deterministic flow gives the same calls and output:
//! for random inputs, a run of `journey` (sleep, call, parallel, start and join) and of
//! `clock` (now, random, sleep) on a node is exported as `sluice export` writes it, and
//! `sluice replay`'s check of the same build finds every call and the output the same.

use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};
use sluice::testing::replay::JournalReplay;
use sluice::{Node, StartRequest};

use crate::support::{cache_dir, guest, node, within};

/// Run `flow` with `input`, export its journal and replay it against the same build.
async fn replays_the_same(node: &Node, replay: &JournalReplay, flow: &str, input: Value) -> String {
    let request = StartRequest::rpc(flow, serde_json::to_vec(&input).unwrap(), "test");
    let handle = node.start(request).await.expect("the start is admitted");
    let id = handle.id().to_string();
    within(&format!("{flow} {input}"), handle.outcome())
        .await
        .unwrap_or_else(|e| panic!("{flow} {input} failed: {e}"));
    node.journal().sync().await.unwrap();
    let export = sluice::operator::export(node.journal().store().as_ref(), &id).unwrap();
    assert!(!export.journal.is_empty(), "{flow} journaled nothing");
    let report = replay.check(&export).await;
    assert_eq!(report.entries, export.journal.len());
    report
        .verdict
        .unwrap_or_else(|why| panic!("{flow} {input} does not replay its own journal: {why}"))
}

#[test]
fn a_recorded_journal_of_a_deterministic_flow_replays_with_the_same_calls_and_output() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let node = runtime.block_on(node("[pools.default]\nsize = 2\n"));
    let journey = JournalReplay::load_with_cache(&guest("journey"), Some(cache_dir())).unwrap();
    let clock = JournalReplay::load_with_cache(&guest("clock"), Some(cache_dir())).unwrap();
    let config = Config {
        cases: 8,
        failure_persistence: None,
        ..Config::default()
    };
    TestRunner::new(config)
        .run(&(0u64..1_000_000, 0u64..20), |(n, ms)| {
            runtime.block_on(async {
                let verdict = replays_the_same(&node, &journey, "journey", json!({ "n": n })).await;
                assert!(verdict.contains("the output is the same"), "{verdict}");
                let verdict = replays_the_same(&node, &clock, "clock", json!({ "ms": ms })).await;
                assert!(verdict.contains("the output is the same"), "{verdict}");
            });
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}
