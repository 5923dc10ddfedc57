//! The flow hospital: nondeterminism and exhausted retries hold an instance; an operator
//! retries it (on the right build) or kills it. Retries re-run from the journal, so
//! completed children are not run again. `sluice replay` checks a build against a journal.

use std::time::Duration;

use serde_json::{Value, json};
use sluice::StartRequest;
use sluice::store::Status;

use crate::durable_node::{config, crash, record, show, sluice_output, spawn, wait_for_journal};
use crate::support::{guest, node, until};

/// `sluice run ordered` on `data` as instance `id`, with config `cfg`.
fn run_ordered(cfg: &str, data: &str, id: &str) -> Vec<String> {
    [
        "run",
        "ordered",
        "--config",
        cfg,
        "--input",
        r#"{"ms": 1500}"#,
        "--id",
        id,
        "--data-dir",
        data,
    ]
    .map(String::from)
    .to_vec()
}

fn argv(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// Start `id`, crash while it sleeps, move it to the reordered build, restart: it is held.
fn hold_by_upgrade(cfg: &str, data_dir: &std::path::Path, id: &str) -> String {
    let data = data_dir.display().to_string();
    let mut node = spawn(&argv(&run_ordered(cfg, &data, id)));
    wait_for_journal(data_dir, id, 2);
    assert!(crash(&mut node));
    let reordered = guest("reordered").display().to_string();
    let out = sluice_output(&["upgrade", "--data-dir", &data, id, &reordered]);
    assert!(out.status.success(), "{}", show(&out));
    let out = sluice_output(&argv(&run_ordered(cfg, &data, id)));
    assert!(
        !out.status.success(),
        "a nondeterministic replay completed\n{}",
        show(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("held in the flow hospital"),
        "{}",
        show(&out)
    );
    let held = record(data_dir, id).unwrap();
    assert_eq!(held.status, Status::Hospital);
    held.message.unwrap_or_default()
}

/// A data dir and a config registering `ordered` (and `double`) in `dir`.
fn ordered_node(dir: &std::path::Path) -> (std::path::PathBuf, String, std::path::PathBuf) {
    let data = dir.join("data");
    let data_s = data.display().to_string();
    let flows = [("ordered", guest("ordered")), ("double", guest("double"))];
    (data, data_s, config(dir, "node.toml", &flows, ""))
}

#[test]
fn a_build_that_calls_the_host_differently_is_held_then_retried_on_the_right_build() {
    let dir = tempfile::tempdir().unwrap();
    let (data, data_s, cfg) = ordered_node(dir.path());
    let cfg = cfg.display().to_string();

    let why = hold_by_upgrade(&cfg, &data, "h-1");
    assert!(
        why.starts_with("nondeterminism at journal position 0:"),
        "{why}"
    );
    assert!(
        why.contains(r#"the journal has `call(flow: "double", input: "{\"x\":1}")`"#),
        "{why}"
    );
    assert!(
        why.contains(r#"the flow now calls `call(flow: "double", input: "{\"x\":2}")`"#),
        "{why}"
    );
    let list = sluice_output(&["hospital", "list", "--data-dir", &data_s]);
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(
        listed.contains("h-1") && listed.contains("nondeterminism at journal position 0"),
        "{listed}"
    );

    let ordered = guest("ordered").display().to_string();
    let out = sluice_output(&[
        "hospital",
        "retry",
        "--data-dir",
        &data_s,
        "h-1",
        "--component",
        &ordered,
    ]);
    assert!(out.status.success(), "{}", show(&out));
    let out = sluice_output(&argv(&run_ordered(&cfg, &data_s, "h-1")));
    assert!(out.status.success(), "{}", show(&out));
    let output: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(output, json!({ "first": 2, "second": 4 }));
    assert_eq!(record(&data, "h-1").unwrap().status, Status::Completed);

    let why = hold_by_upgrade(&cfg, &data, "h-2");
    assert!(why.contains("nondeterminism"), "{why}");
    let out = sluice_output(&["hospital", "kill", "--data-dir", &data_s, "h-2"]);
    assert!(out.status.success(), "{}", show(&out));
    let out = sluice_output(&argv(&run_ordered(&cfg, &data_s, "h-2")));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("failed: killed by an operator"),
        "{}",
        show(&out)
    );
    assert_eq!(record(&data, "h-2").unwrap().status, Status::Failed);
    let list = sluice_output(&["hospital", "list", "--data-dir", &data_s]);
    assert!(String::from_utf8_lossy(&list.stdout).contains("the flow hospital is empty"));

    // Operator errors name what was wrong.
    let out = sluice_output(&["hospital", "retry", "--data-dir", &data_s, "h-1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && stderr.contains(
                "instance `h-1` is completed; retry applies to instances held in the hospital"
            ),
        "{stderr}"
    );
    let out = sluice_output(&["status", "--data-dir", &data_s, "nope"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no instance `nope` in the store"));
}

#[test]
fn sluice_replay_accepts_the_same_build_and_names_the_first_call_a_reordered_build_changes() {
    let dir = tempfile::tempdir().unwrap();
    let (_, data_s, cfg) = ordered_node(dir.path());
    let out = sluice_output(&[
        "run",
        "ordered",
        "--config",
        cfg.to_str().unwrap(),
        "--input",
        r#"{"ms": 1}"#,
        "--id",
        "r-1",
        "--data-dir",
        &data_s,
    ]);
    assert!(out.status.success(), "{}", show(&out));
    let export = dir.path().join("r-1.json");
    let out = sluice_output(&[
        "export",
        "--data-dir",
        &data_s,
        "r-1",
        "-o",
        export.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", show(&out));

    let same = sluice_output(&[
        "replay",
        "--journal",
        export.to_str().unwrap(),
        guest("ordered").to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&same.stdout);
    assert!(same.status.success(), "{}", show(&same));
    assert!(
        text.contains("all 3 recorded calls match and the output is the same"),
        "{text}"
    );

    let other = sluice_output(&[
        "replay",
        "--journal",
        export.to_str().unwrap(),
        guest("reordered").to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&other.stdout);
    assert!(!other.status.success(), "{}", show(&other));
    assert!(text.starts_with("DIVERGES"), "{text}");
    assert!(text.contains(r#"nondeterminism at journal position 0: the journal has `call(flow: "double", input: "{\"x\":1}")` but the flow now calls `call(flow: "double", input: "{\"x\":2}")`"#), "{text}");

    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{}").unwrap();
    let out = sluice_output(&[
        "replay",
        "--journal",
        bad.to_str().unwrap(),
        guest("ordered").to_str().unwrap(),
    ]);
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("is not a journal written by `sluice export`")
    );
}

/// A node where `flaky` may read `ready_dir` and retries `attempts` times.
async fn flaky_node(ready_dir: &std::path::Path, attempts: u32) -> sluice::Node {
    let cfg = format!(
        "[[flows]]\nname = \"flaky\"\ncomponent = \"{}\"\ndirs = {{ \"/in\" = \"{}:ro\" }}\nretry = {{ attempts = {attempts}, backoff = \"30ms\" }}\n",
        guest("flaky").display(),
        ready_dir.display()
    );
    node(&cfg).await
}

/// Start `flaky` with input `x` on `node`: its id, its handle, and the node's store.
async fn start_flaky(
    node: &sluice::Node,
    x: u64,
) -> (
    String,
    sluice::FlowHandle,
    std::sync::Arc<dyn sluice::store::JournalStore>,
) {
    let input = serde_json::to_vec(&json!({ "x": x })).unwrap();
    let handle = node
        .start(StartRequest::rpc("flaky", input, "test"))
        .await
        .unwrap();
    (
        handle.id().to_string(),
        handle,
        node.journal().store().clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_reruns_from_the_journal_without_rerunning_completed_children() {
    let ready = tempfile::tempdir().unwrap();
    let node = flaky_node(ready.path(), 50).await;
    let (id, handle, store) = start_flaky(&node, 21).await;
    until("two failed attempts", Duration::from_secs(30), || {
        store.record(&id).unwrap().is_some_and(|r| r.attempts >= 2)
    })
    .await;
    std::fs::write(ready.path().join("ready"), "").unwrap();
    let output = handle.outcome().await.expect("completes once ready");
    assert_eq!(
        serde_json::from_slice::<Value>(&output).unwrap(),
        json!({ "y": 42 })
    );
    let counts: Vec<(String, u64)> = store.count_by_flow().unwrap();
    assert_eq!(
        counts,
        vec![("double".into(), 1), ("flaky".into(), 1)],
        "the child ran once"
    );
    assert_eq!(
        store.journal(&id).unwrap().len(),
        1,
        "one journaled call, replayed by every retry"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_retries_hold_the_instance_with_the_last_error() {
    let never = tempfile::tempdir().unwrap();
    let node = flaky_node(never.path(), 3).await;
    let (id, _handle, store) = start_flaky(&node, 1).await;
    until("held", Duration::from_secs(30), || {
        store
            .record(&id)
            .unwrap()
            .is_some_and(|r| r.status == Status::Hospital)
    })
    .await;
    let held = store.record(&id).unwrap().unwrap();
    assert_eq!(held.attempts, 3);
    let why = held.message.unwrap();
    assert!(why.starts_with("retries exhausted: 3 attempts failed, the last with: failed: /in/ready does not exist yet"), "{why}");
    assert_eq!(node.running(), 0);
}
