//! Flows in any Wasm language: Python and JavaScript builds pass the same scenario files as
//! the Rust ones, mix with them in one node, and fail with their exception's message.

use std::path::Path;

use serde_json::json;
use sluice::FlowError;
use sluice::testing::scenario::Scenario;

use crate::support::{flow_test, guest, node, polyglot, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_js_builds_pass_the_rust_scenarios() {
    let scenarios = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-flows/scenarios");
    let mut ran = 0;
    for lang in ["python", "js"] {
        for flow in ["hello", "fanout", "chain", "seller", "watcher"] {
            let test = flow_test(&polyglot(lang, flow));
            for file in std::fs::read_dir(scenarios.join(flow)).unwrap() {
                let scenario = Scenario::load(&file.unwrap().path()).unwrap();
                let result = scenario.run(&test).await;
                assert!(
                    result.failure.is_none(),
                    "{lang} {flow}: {}: {}",
                    scenario.name,
                    result.failure.unwrap()
                );
                ran += 1;
            }
        }
    }
    // hello 2, fanout 3, chain 2, seller 3, watcher 3 scenarios, in each language.
    assert_eq!(ran, 2 * 13);
}

fn entry(name: &str, path: &Path) -> String {
    format!(
        "[[flows]]\nname = \"{name}\"\ncomponent = \"{}\"\n",
        path.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_language_chains_complete_in_pools_of_one() {
    let config = format!(
        "[pools.default]\nsize = 1\n{}{}{}",
        entry("hello-py", &polyglot("python", "hello")),
        entry("chain-py", &polyglot("python", "chain")),
        entry("chain-js", &polyglot("js", "chain")),
    );
    let node = node(&config).await;
    // A Rust fan-out whose children are the Python hello.
    let out = run(&node, "fanout", json!({ "n": 10, "child": "hello-py" }))
        .await
        .unwrap();
    let expected: Vec<_> = (0..10)
        .map(|i| json!({ "greeting": format!("Hello, child-{i}!") }))
        .collect();
    assert_eq!(out["results"].as_array().unwrap(), &expected);
    // A Python chain that calls a JavaScript chain, which calls itself to the bottom.
    let out = run(&node, "chain-py", json!({ "depth": 6, "next": "chain-js" }))
        .await
        .unwrap();
    assert_eq!(out, json!({ "depth": 6, "sum": 21 }));
    assert_eq!(
        node.pools().default_pool().stats().snapshot().peak_running,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_js_exceptions_fail_with_their_message() {
    let config = format!(
        "{}{}",
        entry("raises", &polyglot("python", "raises")),
        entry("throws", &polyglot("js", "throws"))
    );
    let node = node(&config).await;
    let py = run(&node, "raises", json!({ "message": "no such account" })).await;
    assert_eq!(
        py,
        Err(FlowError::Failed("ValueError: no such account".into()))
    );
    let js = run(&node, "throws", json!({ "message": "ledger closed" })).await;
    assert_eq!(
        js,
        Err(FlowError::Failed("TypeError: ledger closed".into()))
    );
    // The Rust supervisor sees the Python failure as data.
    let out = run(
        &node,
        "supervisor",
        json!({ "child": "raises", "input": { "message": "late" } }),
    )
    .await
    .unwrap();
    assert_eq!(
        out,
        json!({ "outcome": "failed", "message": "ValueError: late" })
    );
    let _ = guest("supervisor");
}
