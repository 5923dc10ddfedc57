//! Cancellation cascades: an instance and every unfinished descendant end as cancelled —
//! parked, queued and running ones alike — and no guest code of theirs runs afterwards; a
//! parent whose child is cancelled carries on; a flow cancels its own child; a timeout
//! cancels the descendants; over HTTP and the CLI, across a SIGKILL and a restart.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use sluice::node::CancelError;
use sluice::store::{JournalStore, ListQuery, Status};
use sluice::testing::Rule;
use sluice::{FlowError, Node, StartRequest};

use crate::durable_node::{show, store};
use crate::served::{Served, TestTokens, cli, serve, served_config};
use crate::support::{flow_entry, flow_test, guest, node, run, until, within};

/// A sleep no test waits out.
const HOUR_MS: u64 = 3_600_000;

/// Start `flow` with `input` over RPC; its id and handle.
async fn start(node: &Node, flow: &str, input: Value) -> sluice::FlowHandle {
    node.start(StartRequest::rpc(
        flow,
        input.to_string().into_bytes(),
        "test",
    ))
    .await
    .unwrap_or_else(|e| panic!("start of {flow} refused: {e}"))
}

/// Wait (on the store, after each commit) until `check` holds for the store; fail naming
/// `what` after a generous minute.
async fn eventually(node: &Node, what: &str, mut check: impl FnMut(&dyn JournalStore) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        node.journal().sync().await.expect("store syncs");
        if check(&**node.journal().store()) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The descendants of `root` with their status.
fn tree(store: &dyn JournalStore, root: &str) -> BTreeMap<String, Status> {
    store
        .descendants(root)
        .expect("store readable")
        .into_iter()
        .collect()
}

/// Each instance's journal length.
fn journal_lengths(store: &dyn JournalStore, ids: &[String]) -> BTreeMap<String, usize> {
    ids.iter()
        .map(|id| (id.clone(), store.journal(id).expect("journal").len()))
        .collect()
}

/// The children of `root` running `flow`.
fn children_of(store: &dyn JournalStore, root: &str, flow: &str) -> Vec<String> {
    let query = ListQuery {
        parent: Some(root.into()),
        flow: Some(flow.into()),
        limit: 1000,
        ..ListQuery::default()
    };
    let found = store.list(&query).expect("store readable");
    found.into_iter().map(|(_, r)| r.id).collect()
}

/// `brood` with 100 sleepers parked for an hour and 2 burners tagged to their own pool.
fn brood_config() -> String {
    format!(
        "[pools.default]\nsize = 4\n[pools.burn]\nsize = 2\n{}",
        flow_entry("burner", "burn")
    )
}

const BROOD: (usize, usize) = (100, 2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_parent_ends_its_parked_and_running_children_and_their_code_stops() {
    let node = node(&brood_config()).await;
    let input = json!({ "sleepers": BROOD.0, "burners": BROOD.1, "ms": HOUR_MS });
    let handle = start(&node, "brood", input).await;
    let root = handle.id().to_string();
    eventually(&node, "102 children, both burners burning", |s| {
        let burners = children_of(s, &root, "burner");
        tree(s, &root).len() == BROOD.0 + BROOD.1
            && burners.len() == BROOD.1
            && burners.iter().all(|b| s.journal(b).unwrap().len() >= 2)
    })
    .await;
    let burn = node.pools().get("burn").expect("burn pool").clone();
    assert_eq!(burn.stats().snapshot().running, 2, "both burners on a slot");

    let cancelled = within("the cancel", node.cancel(&root))
        .await
        .expect("cancelled");
    assert_eq!(cancelled, 1 + BROOD.0 + BROOD.1);

    // Durable before anything was told: every one of them is cancelled in the store now.
    let store = node.journal().store().clone();
    let descendants = tree(&*store, &root);
    assert_eq!(descendants.len(), BROOD.0 + BROOD.1);
    assert!(
        descendants.values().all(|s| *s == Status::Cancelled),
        "{descendants:?}"
    );
    let parent = store.record(&root).unwrap().expect("recorded");
    assert_eq!(parent.status, Status::Cancelled);
    assert!(parent.ended_ms.is_some());
    assert_eq!(
        within("the parent's outcome", handle.outcome()).await,
        Err(FlowError::Cancelled)
    );
    let mut everyone: Vec<String> = descendants.keys().cloned().collect();
    everyone.push(root.clone());
    // What they journaled before the cancel returned, committed.
    node.journal().sync().await.unwrap();
    let after_cancel = journal_lengths(&*store, &everyone);

    // The burners give their slots back when their guest is dropped: they are stopped.
    until("the burners stopped", Duration::from_secs(60), || {
        burn.stats().snapshot().running == 0
    })
    .await;
    // Long enough for a still-running burner to journal 20 more rounds: a fresh one does.
    let control = run(&node, "burner", json!({ "rounds": 20 })).await;
    assert_eq!(control, Ok(json!({ "rounds": 20 })));
    node.journal().sync().await.unwrap();
    assert_eq!(
        journal_lengths(&*store, &everyone),
        after_cancel,
        "no guest code of a cancelled instance ran after the cancel"
    );
    let default = node.pools().get("default").unwrap().clone();
    until("nothing parked", Duration::from_secs(60), || {
        default.stats().snapshot().parked == 0 && node.running() == 0
    })
    .await;
    let again = node.cancel(&root).await.expect_err("cancelled already");
    assert!(
        matches!(
            &again,
            CancelError::Ended {
                status: Status::Cancelled,
                ..
            }
        ),
        "{again}"
    );
}

#[tokio::test]
async fn a_parent_whose_child_an_operator_cancels_sees_cancelled_and_completes() {
    let node = node("").await;
    let handle = start(&node, "warden", json!({ "ms": HOUR_MS })).await;
    let parent = handle.id().to_string();
    let mut child = String::new();
    eventually(&node, "the warden's child", |s| {
        child = children_of(s, &parent, "sleeper").pop().unwrap_or_default();
        !child.is_empty()
    })
    .await;
    assert_eq!(node.cancel(&child).await.expect("cancelled"), 1);
    let out = within("the warden", handle.outcome())
        .await
        .expect("it completes");
    let out: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(out, json!({ "child": child, "outcome": "cancelled" }));
    let store = node.journal().store();
    assert_eq!(
        store.record(&child).unwrap().unwrap().status,
        Status::Cancelled
    );
    assert_eq!(
        store.record(&parent).unwrap().unwrap().status,
        Status::Completed
    );
    let e = node.cancel(&parent).await.expect_err("it ended");
    assert!(
        matches!(
            &e,
            CancelError::Ended {
                status: Status::Completed,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("already ended (completed)"), "{e}");
    let e = node.cancel("no-such-instance").await.expect_err("unknown");
    assert!(matches!(e, CancelError::Unknown(_)), "{e}");
}

#[tokio::test]
async fn a_flow_cancels_its_own_child_and_that_childs_descendants() {
    let node = node("").await;
    let out = run(
        &node,
        "warden",
        json!({ "ms": HOUR_MS, "depth": 1, "cancel": true }),
    )
    .await
    .expect("the warden completes");
    assert_eq!(out["outcome"], "cancelled");
    let child = out["child"].as_str().expect("child id").to_string();
    let store = node.journal().store();
    assert_eq!(
        store.record(&child).unwrap().unwrap().status,
        Status::Cancelled
    );
    // The child may have been cancelled before it ran (then it started nothing) or after
    // it started its own child: either way nothing under it is left running.
    let below = tree(&**store, &child);
    assert!(below.len() <= 1, "{below:?}");
    assert!(below.values().all(|s| *s == Status::Cancelled), "{below:?}");
    let parent = store
        .record(&child)
        .unwrap()
        .unwrap()
        .parent
        .expect("a parent");
    let journal = store.journal(&parent).unwrap();
    let cancel = journal
        .iter()
        .find(|e| e.call == "cancel")
        .expect("the cancel is journaled");
    assert_eq!(cancel.args, json!({ "id": child }));
    assert_eq!(cancel.result, json!({ "Ok": null }));
}

#[tokio::test]
async fn the_testing_host_answers_cancel_and_a_later_join_sees_cancelled() {
    let mut test = flow_test(&guest("warden"));
    test.script(Rule::subflow("sleeper").returns(json!({ "slept_ms": 5 })));
    let run = test.run(json!({ "ms": 5, "cancel": true })).await;
    run.assert_output(&json!({ "child": "child-1", "outcome": "cancelled" }));
    run.assert_calls(&[
        r#"start("sleeper", {"ms":5})"#,
        r#"progress("started")"#,
        "cancel(child-1)",
        "join(child-1)",
    ]);
}

#[tokio::test]
async fn a_timeout_cancels_the_descendants() {
    let config = format!(
        "[[flows]]\nname = \"brood\"\ncomponent = \"{}\"\ntimeout = \"1s\"\n",
        guest("brood").display()
    );
    let node = node(&config).await;
    let handle = start(
        &node,
        "brood",
        json!({ "sleepers": 3, "burners": 0, "ms": HOUR_MS }),
    )
    .await;
    let root = handle.id().to_string();
    assert_eq!(
        within("the brood's timeout", handle.outcome()).await,
        Err(FlowError::TimedOut)
    );
    let descendants = tree(&**node.journal().store(), &root);
    assert_eq!(descendants.len(), 3, "{descendants:?}");
    assert!(
        descendants.values().all(|s| *s == Status::Cancelled),
        "{descendants:?}"
    );
    let e = node.cancel(&root).await.expect_err("it timed out");
    assert!(
        matches!(
            e,
            CancelError::Ended {
                status: Status::Failed,
                ..
            }
        ),
        "{e}"
    );
}

#[tokio::test]
async fn a_component_that_does_not_import_cancel_still_runs() {
    // Built against the WIT before `cancel`, or not using it: its `host` import lacks it.
    let engine = wasmtime::Engine::default();
    let component =
        wasmtime::component::Component::from_file(&engine, guest("hello")).expect("hello loads");
    let ty = component.component_type();
    let (_, host) = ty
        .imports(&engine)
        .find(|(name, _)| name.starts_with("sluice:flow/host"))
        .expect("hello imports the host interface");
    let wasmtime::component::types::ComponentItem::ComponentInstance(host) = host.ty else {
        panic!("the host import is an instance");
    };
    let functions: Vec<&str> = host.exports(&engine).map(|(name, _)| name).collect();
    assert!(!functions.contains(&"cancel"), "{functions:?}");
    let node = node("").await;
    let out = run(&node, "hello", json!({ "name": "old" })).await;
    assert_eq!(out, Ok(json!({ "greeting": "Hello, old!" })));
}

/// The tokens of a served node, again (for its restart).
fn same_tokens(node: &Served) -> TestTokens {
    TestTokens {
        all: node.tokens.all.clone(),
        read: node.tokens.read.clone(),
        hello: node.tokens.hello.clone(),
    }
}

/// Poll `GET path` until `check` holds on the answer; fail naming `what`.
async fn poll(node: &Served, what: &str, path: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (status, body) = node.get(path).await;
        if status == 200 && check(&body) {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: last {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every instance of `data`'s store under `root` (itself included), with its status and
/// journal length.
fn stored_tree(data: &Path, root: &str) -> BTreeMap<String, (Status, usize)> {
    let store = store(data);
    let mut ids: Vec<String> = store
        .descendants(root)
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    ids.push(root.to_string());
    ids.into_iter()
        .map(|id| {
            let status = store.record(&id).unwrap().expect("recorded").status;
            let entries = store.journal(&id).unwrap().len();
            (id, (status, entries))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http_a_cancel_survives_a_sigkill_and_a_restart_and_the_cli_cancels() {
    let dir = tempfile::tempdir().unwrap();
    let extra = "[pools.default]\nsize = 4\n[pools.burn]\nsize = 2\n";
    let (config, tokens) = served_config(dir.path(), &["brood", "sleeper", "warden"], extra);
    let config_text = std::fs::read_to_string(&config).unwrap()
        + &format!(
            "[[flows]]\nname = \"burner\"\ncomponent = \"{}\"\npool = \"burn\"\n",
            guest("burner").display()
        );
    std::fs::write(&config, config_text).unwrap();
    let data = dir.path().join("data");
    let mut node = serve(&config, &data, tokens);

    let input = json!({ "sleepers": BROOD.0, "burners": BROOD.1, "ms": HOUR_MS }).to_string();
    let (status, started) = node.post("/v1/flows/brood/start", &input).await;
    assert_eq!(status, 202, "{started}");
    let root = started["id"].as_str().expect("an id").to_string();
    let children = poll(
        &node,
        "102 children",
        &format!("/v1/instances/{root}/children"),
        |c| c.as_array().is_some_and(|c| c.len() == BROOD.0 + BROOD.1),
    )
    .await;
    for burner in children
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["flow"] == "burner")
    {
        let id = burner["id"].as_str().unwrap();
        poll(
            &node,
            "a burner burning",
            &format!("/v1/instances/{id}"),
            |v| v["progress"].is_string(),
        )
        .await;
    }

    // Without the `cancel` permission: 403, and nothing is cancelled.
    let path = format!("/v1/instances/{root}/cancel");
    let read = node.tokens.read.clone();
    let (status, body) = node
        .call(reqwest::Method::POST, &path, Some(&read), None)
        .await;
    assert_eq!(status, 403, "{body}");
    let (_, view) = node.get(&format!("/v1/instances/{root}")).await;
    assert_eq!(view["status"], "running", "{view}");
    let (_, running) = node.get("/v1/instances?status=cancelled").await;
    assert_eq!(running["instances"], json!([]), "{running}");

    let (status, body) = node.post(&path, "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({ "id": root, "cancelled": 1 + BROOD.0 + BROOD.1 })
    );
    // Killed right after the answer: the cancellation was durable before it.
    node.child.kill().expect("SIGKILL");
    node.child.wait().expect("the node is gone");
    let killed = stored_tree(&data, &root);
    assert_eq!(killed.len(), 1 + BROOD.0 + BROOD.1);
    assert!(
        killed.values().all(|(s, _)| *s == Status::Cancelled),
        "{killed:?}"
    );

    let tokens = same_tokens(&node);
    drop(node);
    let node = serve(&config, &data, tokens);
    let (_, view) = node.get(&format!("/v1/instances/{root}")).await;
    assert_eq!(view["status"], "cancelled", "{view}");
    assert!(
        view["created"].is_string() && view["ended"].is_string(),
        "{view}"
    );
    let (_, running) = node.get("/v1/instances?status=running&limit=1000").await;
    assert_eq!(
        running["instances"],
        json!([]),
        "nothing resumed: {running}"
    );
    let (_, page) = node.get("/v1/instances?status=cancelled&limit=1000").await;
    assert_eq!(
        page["instances"].as_array().map(Vec::len),
        Some(1 + BROOD.0 + BROOD.1)
    );
    // Time for a resumed burner to journal 20 rounds: a fresh one does, nothing else runs.
    let (status, out) = node
        .post("/v1/flows/burner/start?wait=60s", r#"{"rounds": 20}"#)
        .await;
    assert_eq!(
        (status, &out["status"]),
        (200, &json!("completed")),
        "{out}"
    );
    assert_eq!(
        stored_tree(&data, &root),
        killed,
        "nothing re-ran after the restart"
    );

    let (status, body) = node.post(&path, "").await;
    assert_eq!((status, &body["code"]), (409, &json!("conflict")), "{body}");
    let (status, body) = node.post("/v1/instances/no-such-id/cancel", "").await;
    assert_eq!(
        (status, &body["code"]),
        (404, &json!("unknown-instance")),
        "{body}"
    );
    let (status, body) = node.post("/v1/instances/bad%20id/cancel", "").await;
    assert_eq!(status, 400, "{body}");

    // The CLI: an operator cancels a warden's child; the warden sees it and completes.
    let (status, started) = node
        .post(
            "/v1/flows/warden/start",
            &json!({ "ms": HOUR_MS }).to_string(),
        )
        .await;
    assert_eq!(status, 202, "{started}");
    let warden = started["id"].as_str().unwrap().to_string();
    let children = poll(
        &node,
        "the warden's child",
        &format!("/v1/instances/{warden}/children"),
        |c| c.as_array().is_some_and(|c| c.len() == 1),
    )
    .await;
    let child = children[0]["id"].as_str().unwrap().to_string();
    let out = cli(&node, &["cancel", &child, "--json"]);
    assert!(out.status.success(), "{}", show(&out));
    let answer: Value = serde_json::from_slice(&out.stdout).expect("--json prints JSON");
    assert_eq!(answer, json!({ "id": child, "cancelled": 1 }));
    let (_, result) = node
        .get(&format!("/v1/instances/{warden}/result?wait=60s"))
        .await;
    assert_eq!(result["status"], "completed", "{result}");
    assert_eq!(result["output"]["outcome"], "cancelled", "{result}");
    let out = cli(&node, &["cancel", &child]);
    assert!(!out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("409"),
        "{}",
        show(&out)
    );
}
