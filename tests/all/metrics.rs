//! After a known workload, the metrics say exactly what the workload implies.

use serde_json::json;

use crate::support::{node, run};

fn named(name: &str, component: &str, pool: &str) -> String {
    format!(
        "[[flows]]\nname = \"{name}\"\ncomponent = \"{}\"\npool = \"{pool}\"\n",
        crate::support::guest(component).display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_values_match_the_workload() {
    let config = format!(
        "[pools.reporting]\nsize = 2\n{}{}",
        named("report", "hello", "reporting"),
        named("broken-report", "trap", "reporting")
    );
    let node = node(&config).await;
    for i in 0..10 {
        run(&node, "report", json!({ "name": format!("r{i}") }))
            .await
            .unwrap();
    }
    for _ in 0..2 {
        run(&node, "broken-report", json!({ "message": "bad ledger" }))
            .await
            .unwrap_err();
    }
    let metrics = node.render_metrics();
    for line in [
        "sluice_flow_duration_seconds_count{flow=\"report\",pool=\"reporting\",outcome=\"completed\"} 10",
        "sluice_flow_duration_seconds_count{flow=\"broken-report\",pool=\"reporting\",outcome=\"failed\"} 2",
        "sluice_startup_queue_time_seconds_count{pool=\"reporting\"} 12",
        "sluice_queue_size_on_insert_count{pool=\"reporting\"} 12",
        "sluice_active_threads{pool=\"reporting\"} 0",
        "sluice_queue_size{pool=\"reporting\"} 0",
        "sluice_parked_flows{pool=\"reporting\"} 0",
        "sluice_queue_size_total 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing `{line}` in:\n{metrics}"
        );
    }
    assert!(
        !metrics.contains("pool=\"default\",outcome"),
        "nothing ran in default:\n{metrics}"
    );
}
