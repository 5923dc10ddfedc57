//! The `sluice` CLI as a client of a served node: start --wait, result, status, list,
//! pools, flows, and the hospital (a held instance retried over the API completes).

use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::durable_node::show;
use crate::served::{cli, serve, served_config};
use crate::support::guest;

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_cli_drives_a_served_node() {
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    std::fs::create_dir_all(&ready).unwrap();
    let extra = format!(
        "[[flows]]\nname = \"flaky\"\ncomponent = \"{}\"\ndirs = {{ \"/in\" = \"{}:ro\" }}\nretry = {{ attempts = 1, backoff = \"10ms\" }}\n",
        guest("flaky").display(),
        ready.display()
    );
    let (config, tokens) = served_config(dir.path(), &["hello", "double"], &extra);
    let node = serve(&config, &dir.path().join("data"), tokens);

    let out = cli(
        &node,
        &["start", "hello", "--input", r#"{"name":"cli"}"#, "--wait"],
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(stdout(&out).contains("Hello, cli!"), "{}", show(&out));

    let out = cli(
        &node,
        &[
            "start",
            "hello",
            "--input",
            r#"{"name":"b"}"#,
            "--id",
            "h-2",
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(stdout(&out).trim(), "h-2");
    let out = cli(&node, &["result", "h-2", "--wait"]);
    assert!(stdout(&out).contains("Hello, b!"), "{}", show(&out));

    let out = cli(&node, &["list", "--flow", "hello", "--json"]);
    assert!(out.status.success(), "{}", show(&out));
    let page: Value = serde_json::from_str(&stdout(&out)).expect("list --json is JSON");
    assert_eq!(page["instances"].as_array().unwrap().len(), 2, "{page}");
    let out = cli(&node, &["list", "--flow", "hello"]);
    assert!(stdout(&out).contains("h-2"), "{}", show(&out));

    let out = cli(&node, &["pools"]);
    assert!(
        out.status.success() && stdout(&out).contains("default"),
        "{}",
        show(&out)
    );
    let out = cli(
        &node,
        &["pools", "resize", "default", "--size", "3", "--queue", "42"],
    );
    assert!(out.status.success(), "{}", show(&out));
    let out = cli(&node, &["pools", "--json"]);
    let pools: Value = serde_json::from_str(&stdout(&out)).expect("pools --json is JSON");
    let default = pools
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "default"))
        .unwrap_or_else(|| panic!("no default pool: {pools}"));
    assert_eq!(
        (default["size"].as_u64(), default["queue_capacity"].as_u64()),
        (Some(3), Some(42))
    );
    let out = cli(&node, &["pools", "resize", "default"]);
    assert!(
        !out.status.success(),
        "a resize of nothing passed: {}",
        show(&out)
    );
    let out = cli(&node, &["flows"]);
    assert!(
        stdout(&out).contains("hello") && stdout(&out).contains("flaky"),
        "{}",
        show(&out)
    );
    let out = cli(&node, &["status", "h-2"]);
    assert!(stdout(&out).contains("completed"), "{}", show(&out));

    // A flow that fails its only attempt is held; once its file exists, a retry completes it.
    let out = cli(
        &node,
        &["start", "flaky", "--input", r#"{"x": 4}"#, "--id", "f-1"],
    );
    assert!(out.status.success(), "{}", show(&out));
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = cli(&node, &["hospital", "list", "--json"]);
        let held: Value = serde_json::from_str(&stdout(&out)).unwrap_or(Value::Null);
        if held
            .as_array()
            .is_some_and(|h| h.iter().any(|i| i["id"] == "f-1"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "f-1 was never held: {}",
            show(&out)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::write(ready.join("ready"), "").unwrap();
    let out = cli(&node, &["hospital", "retry", "f-1"]);
    assert!(out.status.success(), "{}", show(&out));
    let out = cli(&node, &["result", "f-1", "--wait", "--json"]);
    let view: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(view["status"], "completed", "{view}");
    assert_eq!(view["output"]["y"], 8, "{view}");

    // Without a token the client says what the node said.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["pools", "--node", &node.url])
        .env_remove("SLUICE_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401 unauthorized"),
        "{}",
        show(&out)
    );
}
