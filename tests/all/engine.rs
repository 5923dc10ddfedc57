//! The engine compiles a component once: a restarted node loads it from the cache.

use std::path::Path;

use serde_json::json;
use sluice::engine::CacheOutcome;
use sluice::{Node, NodeConfig};

use crate::support::{guest, run};

async fn node_with_cache(dir: &Path) -> Node {
    let text = format!("[node]\ncache-dir = \"{}\"\n", dir.display());
    Node::new(&NodeConfig::parse(&text, Path::new("test.toml"), Path::new(".")).unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_does_not_recompile() {
    let cache = tempfile::tempdir().unwrap();
    let first = node_with_cache(cache.path()).await;
    assert_eq!(
        first.register("hello", &guest("hello"), None).unwrap(),
        CacheOutcome::Compiled
    );
    drop(first);
    let artifacts = std::fs::read_dir(cache.path()).unwrap().count();
    assert_eq!(artifacts, 1, "one compiled artifact per component");

    let restarted = node_with_cache(cache.path()).await;
    assert_eq!(
        restarted.register("hello", &guest("hello"), None).unwrap(),
        CacheOutcome::Hit
    );
    let out = run(&restarted, "hello", json!({ "name": "again" }))
        .await
        .unwrap();
    assert_eq!(out, json!({ "greeting": "Hello, again!" }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_cached_artifact_is_recompiled() {
    let cache = tempfile::tempdir().unwrap();
    node_with_cache(cache.path())
        .await
        .register("hello", &guest("hello"), None)
        .unwrap();
    let artifact = std::fs::read_dir(cache.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(&artifact, b"garbage").unwrap();
    let node = node_with_cache(cache.path()).await;
    assert_eq!(
        node.register("hello", &guest("hello"), None).unwrap(),
        CacheOutcome::Compiled
    );
    assert_eq!(
        run(&node, "hello", json!({ "name": "x" })).await.unwrap(),
        json!({ "greeting": "Hello, x!" })
    );
}
