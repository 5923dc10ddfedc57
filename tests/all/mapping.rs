//! Which pool a new instance goes to: the built-in rules, the example mapper component,
//! and a mapper that misbehaves.

use serde_json::json;
use sluice::model::Priority;
use sluice::{Node, StartRequest};

use crate::support::{flow_entry, guest, guests_dir, node};

const HELLO: &[u8] = br#"{"name":"m"}"#;

/// Start, wait for success, and return the pool the instance ran in.
async fn pool_of(node: &Node, request: StartRequest) -> String {
    let handle = node.start(request).await.expect("admitted");
    let pool = handle.pool().to_string();
    handle.outcome().await.expect("completes");
    pool
}

fn named(name: &str, component: &str, pool: Option<&str>) -> String {
    let pool = pool
        .map(|p| format!("pool = \"{p}\"\n"))
        .unwrap_or_default();
    format!(
        "[[flows]]\nname = \"{name}\"\ncomponent = \"{}\"\n{pool}",
        guest(component).display()
    )
}

const ALL_SPECIAL_POOLS: &str = "[pools.reporting]\nsize = 1\n[pools.high-priority]\nsize = 1\n[pools.parallel]\nsize = 1\n\
    [pools.Peer-Origin]\nsize = 1\n[pools.RPC-Origin]\nsize = 1\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn built_in_rules_each_place_their_instances() {
    let config = format!(
        "{ALL_SPECIAL_POOLS}{}{}",
        flow_entry("hello", "reporting"),
        named("greet", "hello", None)
    );
    let node = node(&config).await;
    // 1. The tag wins, whatever the origin or priority.
    let tagged = StartRequest::peer("hello", HELLO, "PartyB").with_priority(Priority::High);
    assert_eq!(pool_of(&node, tagged).await, "reporting");
    // 2. High priority.
    assert_eq!(
        pool_of(
            &node,
            StartRequest::rpc("greet", HELLO, "t").with_priority(Priority::High)
        )
        .await,
        "high-priority"
    );
    // 4. Peer origin, 5. RPC origin.
    assert_eq!(
        pool_of(&node, StartRequest::peer("greet", HELLO, "PartyB")).await,
        "Peer-Origin"
    );
    assert_eq!(
        pool_of(&node, StartRequest::rpc("greet", HELLO, "t")).await,
        "RPC-Origin"
    );
    // 3. Children of a parallel fan-out go to `parallel`; 6. other subflows to `default`.
    let fan = |parallel: bool| {
        StartRequest::rpc(
            "fanout",
            serde_json::to_vec(&json!({ "n": 4, "child": "greet", "parallel": parallel })).unwrap(),
            "t",
        )
    };
    pool_of(&node, fan(true)).await;
    assert_eq!(
        node.pools()
            .get("parallel")
            .unwrap()
            .stats()
            .snapshot()
            .completed,
        4
    );
    pool_of(&node, fan(false)).await;
    assert_eq!(node.pools().default_pool().stats().snapshot().completed, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_naming_a_missing_pool_runs_in_default() {
    let node = node(&format!(
        "[pools.reporting]\nsize = 1\n{}",
        named("lost", "hello", Some("gone"))
    ))
    .await;
    assert_eq!(
        pool_of(&node, StartRequest::rpc("lost", HELLO, "t")).await,
        "default"
    );
}

fn mapper_config(mapper: &str, pools: &str, flows: &[(&str, &str)]) -> String {
    let flows: String = flows
        .iter()
        .map(|(name, component)| named(name, component, None))
        .collect();
    format!(
        "[mapper]\ncomponent = \"{}\"\n{pools}{flows}",
        guests_dir().join(format!("{mapper}.wasm")).display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_mapper_routes_by_prefix_then_origin() {
    let pools = "[pools.reporting]\nsize = 1\n[pools.transactions]\nsize = 1\n[pools.Peer-Origin]\nsize = 1\n";
    let flows = [
        ("report-daily", "hello"),
        ("tx-transfer", "hello"),
        ("greet", "hello"),
    ];
    let node = node(&mapper_config("prefix_mapper", pools, &flows)).await;
    assert_eq!(
        pool_of(&node, StartRequest::rpc("report-daily", HELLO, "t")).await,
        "reporting"
    );
    assert_eq!(
        pool_of(&node, StartRequest::peer("report-daily", HELLO, "PartyB")).await,
        "reporting"
    );
    assert_eq!(
        pool_of(&node, StartRequest::rpc("tx-transfer", HELLO, "t")).await,
        "transactions"
    );
    assert_eq!(
        pool_of(&node, StartRequest::peer("greet", HELLO, "PartyB")).await,
        "Peer-Origin"
    );
    assert_eq!(
        pool_of(&node, StartRequest::rpc("greet", HELLO, "t")).await,
        "default"
    );
    assert!(
        !node
            .render_metrics()
            .contains("sluice_mapper_fallbacks_total{"),
        "no fallback expected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misbehaving_mapper_falls_back_to_default_and_is_counted() {
    let pools = "[pools.reporting]\nsize = 1\n";
    let flows = [
        ("trap-a", "hello"),
        ("loop-a", "hello"),
        ("unknown-a", "hello"),
        ("grow-a", "hello"),
        ("to-reporting", "hello"),
    ];
    let node = node(&mapper_config("hostile_mapper", pools, &flows)).await;
    for flow in ["trap-a", "loop-a", "unknown-a", "grow-a", "trap-a"] {
        assert_eq!(
            pool_of(&node, StartRequest::rpc(flow, HELLO, "t")).await,
            "default",
            "{flow}"
        );
        // After every failure the mapper is rebuilt and answers sensibly again.
        assert_eq!(
            pool_of(&node, StartRequest::rpc("to-reporting", HELLO, "t")).await,
            "reporting",
            "after {flow}"
        );
    }
    let metrics = node.render_metrics();
    for line in [
        "sluice_mapper_fallbacks_total{cause=\"trap\"} 3",
        "sluice_mapper_fallbacks_total{cause=\"budget\"} 1",
        "sluice_mapper_fallbacks_total{cause=\"unknown-pool\"} 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing `{line}` in:\n{metrics}"
        );
    }
}
