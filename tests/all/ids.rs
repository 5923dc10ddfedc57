//! Child ids stay short at any depth, and a store written while they grew with depth
//! (before ids were bounded) still recovers with the ids it gave, starting no child twice.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{Value, json};

use crate::durable_node::sluice_output;
use crate::support::guest;

/// The dotted-ids store (see its header), its component bytes from today's `chain` build.
const FIXTURE: &str = include_str!("../fixtures/dotted-ids-store.sql");

fn open(data: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(data.join("sluice.db")).expect("the store opens")
}

fn ids(data: &Path) -> BTreeSet<String> {
    let db = open(data);
    let mut query = db.prepare("SELECT id FROM instances").unwrap();
    query
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn show(out: &std::process::Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_store_written_with_dotted_ids_recovers_without_starting_a_child_twice() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let chain = guest("chain");
    {
        let db = open(&data);
        db.execute_batch(FIXTURE).expect("the fixture loads");
        let hash: String = db
            .query_row(
                "SELECT component FROM instances WHERE id = 'old-chain'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        db.execute(
            "INSERT INTO components (hash, bytes) VALUES (?1, ?2)",
            rusqlite::params![hash, std::fs::read(&chain).unwrap()],
        )
        .unwrap();
        // Only the deepest level keeps its nap (already journaled, its deadline long past).
        // A wrongly derived id would start a new chain below some level; without the nap
        // that chain ends at once and the count below fails, instead of a 10-minute wait.
        let inputs: Vec<(String, Vec<u8>)> = {
            let mut query = db.prepare("SELECT id, input FROM instances").unwrap();
            query
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        for (id, input) in inputs {
            let mut input: Value = serde_json::from_slice(&input).unwrap();
            if input["depth"] != 0 {
                input.as_object_mut().unwrap().remove("nap_ms");
                db.execute(
                    "UPDATE instances SET input = ?1 WHERE id = ?2",
                    rusqlite::params![serde_json::to_vec(&input).unwrap(), id],
                )
                .unwrap();
            }
        }
    }
    let before = ids(&data);
    assert_eq!(before.len(), 41, "the fixture holds the whole chain");
    assert!(
        before.iter().any(|id| id.len() > 64),
        "the fixture must hold ids longer than a bounded id, or it tests nothing"
    );

    // Recovery resumes every level; each parent, re-run, asks for its child again by the
    // id it derives: the old dotted one, or it would start a second chain below it.
    let chain = chain.display().to_string();
    let data_s = data.display().to_string();
    let out = sluice_output(&["run", &chain, "--id", "old-chain", "--data-dir", &data_s]);
    assert!(out.status.success(), "{}", show(&out));
    let output: Value = serde_json::from_slice(&out.stdout).expect("the chain's output");
    assert_eq!(output, json!({ "depth": 40, "sum": 820 }));

    let after = ids(&data);
    let again: Vec<_> = after.difference(&before).take(3).collect();
    assert!(
        again.is_empty(),
        "recovery started {} child(ren) a second time under new ids, e.g. {again:?}",
        after.len() - before.len()
    );
    let unfinished: u32 = open(&data)
        .query_row(
            "SELECT count(*) FROM instances WHERE status != 'completed'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(unfinished, 0, "every level of the old chain completed");
}

#[test]
fn a_deep_chain_keeps_its_ids_short() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let chain = guest("chain").display().to_string();
    let data_s = data.display().to_string();
    let depth = 400u64;
    let input = json!({ "depth": depth }).to_string();
    let out = sluice_output(&["run", &chain, "--input", &input, "--data-dir", &data_s]);
    assert!(out.status.success(), "{}", show(&out));
    let output: Value = serde_json::from_slice(&out.stdout).expect("the chain's output");
    assert_eq!(
        output,
        json!({ "depth": depth, "sum": depth * (depth + 1) / 2 })
    );

    let ids = ids(&data);
    assert_eq!(ids.len() as u64, depth + 1, "one instance per level");
    let longest = ids.iter().map(String::len).max().unwrap();
    assert!(
        longest <= 64,
        "ids stay short: the longest has {longest} characters"
    );
    let root = ids.iter().min_by_key(|id| id.len()).unwrap().clone();
    assert!(
        ids.iter().all(|id| id.starts_with(&root)),
        "every id starts with its root's"
    );
}
