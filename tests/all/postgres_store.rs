//! A node on PostgreSQL (`[store] url`): killed mid-work and restarted, it completes every
//! flow exactly once, as on SQLite; a database it cannot use is refused with a clear error.
//! Each test makes a database of its own on the server at `SLUICE_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;
use sluice::store::{JournalStore, Status};

use crate::durable_node::{crash, outputs, show, sluice_output, spawn};
use crate::pg::{Database, execute};
use crate::support::guest;

const ROOTS: usize = 200;
/// `journey` starts one `call`, three `parallel` and one `start` child.
const CHILDREN_PER_ROOT: usize = 5;

#[test]
fn a_node_on_postgres_killed_twice_completes_every_flow_once() {
    let db = Database::fresh();
    let dir = tempfile::tempdir().unwrap();
    let jobs = dir.path().join("jobs.jsonl");
    let lines: Vec<String> = (1..=ROOTS).map(|n| json!({ "n": n }).to_string()).collect();
    std::fs::write(&jobs, lines.join("\n")).unwrap();
    let (journey, jobs) = (
        guest("journey").display().to_string(),
        jobs.display().to_string(),
    );
    let config = db.config(dir.path());
    let argv = ["run", &journey, "--batch", &jobs, "--config", &config];

    let total = ROOTS * (1 + CHILDREN_PER_ROOT);
    let reader = db.store();
    for kill in 1..=2 {
        let target = total * kill / 4;
        let mut node = spawn(&argv);
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let done = reader.with_status(Status::Completed).unwrap().len();
            if done >= target {
                break;
            }
            if let Some(status) = node.try_wait().unwrap() {
                panic!("the node ended ({status}) before crash {kill}, at {done} of {target}");
            }
            assert!(
                Instant::now() < deadline,
                "no crash {kill}: {done} of {target} after 300 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(crash(&mut node), "the node finished before crash {kill}");
    }
    let after = sluice_output(&argv);
    assert!(after.status.success(), "{}", show(&after));
    let crashed = outputs(&after.stdout);
    // The reference: the same batch, uncrashed, in memory.
    let clean = sluice_output(&["run", &journey, "--batch", &jobs]);
    assert!(clean.status.success(), "{}", show(&clean));
    assert_eq!(crashed.len(), ROOTS);
    assert_eq!(
        crashed,
        outputs(&clean.stdout),
        "outputs differ from an uncrashed run"
    );

    let counts: HashMap<String, u64> = reader.count_by_flow().unwrap().into_iter().collect();
    assert_eq!(counts.get("journey"), Some(&(ROOTS as u64)));
    assert_eq!(
        counts.get("double"),
        Some(&((ROOTS * CHILDREN_PER_ROOT) as u64)),
        "a child was started twice (or never)"
    );
    assert!(reader.with_status(Status::Running).unwrap().is_empty());
    assert_eq!(reader.with_status(Status::Completed).unwrap().len(), total);
}

#[test]
fn a_node_refuses_a_database_it_cannot_use() {
    let dir = tempfile::tempdir().unwrap();
    let hello = guest("hello").display().to_string();
    let run = |url: &str| {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, format!("[store]\nurl = \"{url}\"\n")).unwrap();
        sluice_output(&[
            "run",
            &hello,
            "--input",
            "{}",
            "--config",
            &path.display().to_string(),
        ])
    };

    let out = run("postgres://sluice:hunter2@127.0.0.1:9/none");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("cannot connect to PostgreSQL at postgres://sluice@127.0.0.1:9/none"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "a password in a message: {err}");

    let out = run("mysql://root@127.0.0.1/test");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("store.url") && err.contains("not a PostgreSQL URL"),
        "{err}"
    );

    let db = Database::fresh();
    drop(db.store());
    execute(&db.url, "UPDATE sluice_schema SET version = version + 1").unwrap();
    let out = run(&db.url);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("newer than this build's"), "{err}");
    // Refused untouched: still one row, at the newer version, and no instance recorded.
    let store = db.store_unchecked_count();
    assert_eq!(store, 0, "nothing was recorded in a refused database");
}
