//! Hostile guests are contained, each with the error for its limit or denial, while a
//! steady stream of flows in another pool keeps completing.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice::{FlowError, Node, StartError, StartRequest};

use crate::support::{guest, node, run};

/// A granted tree: `in/` (read-only grant) with a file and a symlink pointing outside it,
/// `out/` (read-write grant), and a secret beside them that no grant covers.
fn granted_tree(root: &Path) {
    std::fs::create_dir_all(root.join("in")).unwrap();
    std::fs::create_dir_all(root.join("out")).unwrap();
    std::fs::write(root.join("in/data.txt"), "granted data").unwrap();
    std::fs::write(root.join("secret.txt"), "not for flows").unwrap();
    std::os::unix::fs::symlink("../secret.txt", root.join("in/link")).unwrap();
}

fn config(root: &Path) -> String {
    format!(
        "[pools.hostile]\nsize = 2\n[pools.steady]\nsize = 1\n\
         [[flows]]\nname = \"hostile\"\ncomponent = \"{hostile}\"\npool = \"hostile\"\n\
         limits = {{ memory = \"16 MiB\", children = 50, output = \"64 KiB\", input = \"4 KiB\", journal = 1000, cpu-slice = \"300ms\", cpu-total = \"2s\" }}\n\
         dirs = {{ \"/in\" = \"{root}/in:ro\", \"/out\" = \"{root}/out:rw\" }}\n\
         [[flows]]\nname = \"child\"\ncomponent = \"{hello}\"\npool = \"hostile\"\n\
         [[flows]]\nname = \"hello\"\ncomponent = \"{hello}\"\npool = \"steady\"\n",
        hostile = guest("hostile").display(),
        hello = guest("hello").display(),
        root = root.display(),
    )
}

async fn attack(node: &Node, input: Value) -> Result<Value, FlowError> {
    run(node, "hostile", input).await
}

fn failed(r: Result<Value, FlowError>) -> String {
    match r {
        Err(FlowError::Failed(m)) => m,
        other => panic!("expected a failure, got {other:?}"),
    }
}

fn denied(r: Result<Value, FlowError>) -> String {
    let out = r.expect("the guest survives a denial");
    out["denied"]
        .as_str()
        .unwrap_or_else(|| panic!("expected a denial, got {out}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_guests_are_contained_while_others_keep_completing() {
    let dir = tempfile::tempdir().unwrap();
    granted_tree(dir.path());
    let node = node(&config(dir.path())).await;

    // The steady stream: hello after hello in its own pool, timing each.
    let stop = Arc::new(AtomicBool::new(false));
    let steady = tokio::spawn({
        let (node, stop) = (node.clone(), stop.clone());
        async move {
            let (mut done, mut slowest) = (0u32, Duration::ZERO);
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let out = run(&node, "hello", json!({ "name": "steady" })).await;
                assert_eq!(
                    out.expect("a steady flow failed"),
                    json!({ "greeting": "Hello, steady!" })
                );
                slowest = slowest.max(t.elapsed());
                done += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (done, slowest)
        }
    });

    // Limits: each ends only its instance, naming the limit and its value.
    let m = failed(attack(&node, json!({ "attack": "loop" })).await);
    assert!(m.starts_with("limit exceeded: cpu-slice = 300ms"), "{m}");
    let m = failed(attack(&node, json!({ "attack": "memory" })).await);
    assert!(
        m.starts_with("limit exceeded: memory = 16.0 MiB (tried to grow to"),
        "{m}"
    );
    let m = failed(attack(&node, json!({ "attack": "recursion" })).await);
    assert!(m.contains("call stack exhausted"), "{m}");
    let m = failed(attack(&node, json!({ "attack": "output", "n": 1 << 20 })).await);
    assert!(
        m.starts_with("limit exceeded: output = 64.0 KiB (the output is 1.0 MiB)"),
        "{m}"
    );
    let m = failed(
        attack(
            &node,
            json!({ "attack": "children", "n": 1000, "path": "child" }),
        )
        .await,
    );
    assert_eq!(m, "limit exceeded: children = 50");
    let m = failed(attack(&node, json!({ "attack": "chatty", "n": 5000 })).await);
    assert_eq!(m, "limit exceeded: journal = 1000 host calls");
    let big = json!({ "attack": "env", "path": "x".repeat(8 << 10) });
    let refused = node
        .start(StartRequest::rpc(
            "hostile",
            serde_json::to_vec(&big).unwrap(),
            "test",
        ))
        .await;
    assert!(
        matches!(&refused, Err(e @ StartError::Limit { .. }) if e.to_string().starts_with("flow `hostile` not started: limit exceeded: input = 4.0 KiB")),
        "{refused:?}"
    );

    // Denials: the guest sees an error and carries on.
    assert!(
        !denied(attack(&node, json!({ "attack": "read", "path": "/etc/passwd" })).await).is_empty()
    );
    assert!(
        !denied(
            attack(
                &node,
                json!({ "attack": "read", "path": "/in/../secret.txt" })
            )
            .await
        )
        .is_empty()
    );
    assert!(
        !denied(attack(&node, json!({ "attack": "read", "path": "/in/link" })).await).is_empty()
    );
    assert!(
        !denied(attack(&node, json!({ "attack": "write", "path": "/in/new.txt" })).await)
            .is_empty()
    );
    assert!(
        !denied(
            attack(
                &node,
                json!({ "attack": "write", "path": "/out/../escape.txt" })
            )
            .await
        )
        .is_empty()
    );
    assert!(!denied(attack(&node, json!({ "attack": "socket", "n": 22 })).await).is_empty());
    assert!(!dir.path().join("in/new.txt").exists() && !dir.path().join("escape.txt").exists());
    // What the grants allow.
    let read = attack(&node, json!({ "attack": "read", "path": "/in/data.txt" }))
        .await
        .unwrap();
    assert_eq!(read["ok"], "\"granted data\"");
    attack(&node, json!({ "attack": "write", "path": "/out/new.txt" }))
        .await
        .unwrap()["ok"]
        .as_str()
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out/new.txt")).unwrap(),
        "written by a flow"
    );
    // Nothing ambient: no environment, no arguments, a stopped clock.
    assert_eq!(
        attack(&node, json!({ "attack": "env" })).await.unwrap(),
        json!({ "vars": 0, "args": 0 })
    );
    assert_eq!(
        attack(&node, json!({ "attack": "clock" })).await.unwrap(),
        json!(0)
    );
    assert_eq!(
        attack(&node, json!({ "attack": "print", "n": 3 }))
            .await
            .unwrap(),
        json!(3)
    );

    stop.store(true, Ordering::Relaxed);
    let (done, slowest) = steady.await.expect("steady stream");
    assert!(done > 10, "only {done} steady flows ran");
    // Normal queueing in an idle pool of one is milliseconds; allow a wide margin on a busy machine.
    assert!(
        slowest < Duration::from_secs(2),
        "a steady flow took {slowest:?}"
    );
    let hostile = node.pools().get("hostile").unwrap().clone();
    crate::support::until(
        "no contained instance left behind",
        Duration::from_secs(10),
        || {
            let s = hostile.stats().snapshot();
            (s.running, s.parked) == (0, 0)
        },
    )
    .await;
}
