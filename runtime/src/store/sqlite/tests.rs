//! The SQLite store against its file: reopening, corrupt files, migrations. The contract
//! every store keeps (batches, statuses, lists…) is checked in `store::conformance`.

use serde_json::json;

use super::schema::MIGRATIONS;
use super::*;

fn record(id: &str) -> InstanceRecord {
    InstanceRecord::new(id, "chain", "ab12", b"{}", "{}".into())
}

/// Records without their timestamps, which say when the store saw them, not what they are.
fn untimed(records: Vec<InstanceRecord>) -> Vec<InstanceRecord> {
    records
        .into_iter()
        .map(|r| InstanceRecord {
            created_ms: None,
            ended_ms: None,
            ..r
        })
        .collect()
}

fn entry(position: u64, call: &str) -> Entry {
    Entry {
        position,
        call: call.into(),
        args: json!([]),
        result: json!(1),
        at_ms: Some(1_764_000_000_000 + position),
    }
}

fn append(store: &SqliteStore, id: &str, entry: Entry) -> Result<(), StoreError> {
    store.write(&[Write::Append {
        id: id.into(),
        entry,
    }])
}

#[test]
fn an_unknown_stored_status_is_an_error_not_running() {
    let store = SqliteStore::in_memory().unwrap();
    store.write(&[Write::Create(record("a"))]).unwrap();
    let conn = store.conn.lock().unwrap();
    conn.execute("UPDATE instances SET status = 'paused' WHERE id = 'a'", [])
        .unwrap();
    drop(conn);
    let e = store.record("a").unwrap_err().to_string();
    assert!(e.contains("unknown status `paused`"), "{e}");
}

#[test]
fn journal_statements_are_not_prepared_again_for_each_instance() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("sluice.db")).unwrap();
    for id in ["a", "b", "c"] {
        store.write(&[Write::Create(record(id))]).unwrap();
        append(&store, id, entry(0, "now")).unwrap();
        append(&store, id, entry(1, "sleep")).unwrap();
        assert_eq!(store.journal(id).unwrap().len(), 2);
    }
    // The same cached statements the writes and reads used, with their counters.
    let next = "SELECT COALESCE(MAX(position) + 1, 0) FROM journal WHERE id = ?1";
    let conn = store.conn();
    let writes = conn.prepare_cached(next).unwrap();
    assert_eq!(
        writes.get_status(rusqlite::StatementStatus::RePrepare),
        0,
        "the append's position check was prepared again"
    );
    drop(writes);
    drop(conn);
    let read =
        "SELECT position, call, args, result, at_ms FROM journal WHERE id = ?1 ORDER BY position";
    let reader = store.reader();
    let reads = reader.prepare_cached(read).unwrap();
    assert_eq!(
        reads.get_status(rusqlite::StatementStatus::RePrepare),
        0,
        "the journal read was prepared again"
    );
}

#[test]
fn records_and_journals_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        store
            .write(&[Write::Create(record("a")), Write::Create(record("b"))])
            .unwrap();
        append(&store, "a", entry(0, "now")).unwrap();
        append(&store, "a", entry(1, "sleep")).unwrap();
        let e = append(&store, "a", entry(3, "random")).unwrap_err();
        assert_eq!(e.to_string(), "journal of a: expected position 2, got 3");
        store
            .write(&[Write::Status {
                id: "b".into(),
                status: Status::Completed,
                output: Some(b"7".to_vec()),
                message: None,
            }])
            .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(
        store.journal("a").unwrap(),
        vec![entry(0, "now"), entry(1, "sleep")]
    );
    assert_eq!(
        untimed(store.with_status(Status::Running).unwrap()),
        untimed(vec![record("a")])
    );
    let b = store.record("b").unwrap().unwrap();
    assert_eq!(
        (b.status, b.output),
        (Status::Completed, Some(Payload(b"7".to_vec())))
    );
    let unknown = store.write(&[Write::Status {
        id: "zz".into(),
        status: Status::Failed,
        output: None,
        message: None,
    }]);
    assert!(matches!(unknown, Err(StoreError::Unknown(_))));
}

#[test]
fn a_corrupt_or_truncated_file_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![0x5a; 8192]).unwrap();
    let before = std::fs::read(&garbage).unwrap();
    let e = SqliteStore::open(&garbage).err().expect("garbage refused");
    assert!(
        e.to_string().contains("corrupt or truncated") && e.to_string().contains("garbage.db"),
        "{e}"
    );
    assert_eq!(std::fs::read(&garbage).unwrap(), before);

    let truncated = dir.path().join("truncated.db");
    {
        let store = SqliteStore::open(&truncated).unwrap();
        for i in 0..200 {
            let id = format!("id-{i:04}");
            let mut batch = vec![Write::Create(record(&id))];
            for p in 0..20 {
                batch.push(Write::Append {
                    id: id.clone(),
                    entry: entry(p, "now"),
                });
            }
            store.write(&batch).unwrap();
        }
        store
            .conn()
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .unwrap();
    }
    let full = std::fs::read(&truncated).unwrap();
    std::fs::write(&truncated, &full[..full.len() / 2]).unwrap();
    let before = std::fs::read(&truncated).unwrap();
    let e = SqliteStore::open(&truncated)
        .err()
        .expect("truncated refused");
    assert!(e.to_string().contains("corrupt or truncated"), "{e}");
    assert_eq!(std::fs::read(&truncated).unwrap(), before);
}

#[test]
fn migrations_are_versioned_and_a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.db");
    drop(SqliteStore::open(&path).unwrap());
    let conn = Connection::open(&path).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, MIGRATIONS.len() as i64);
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let e = SqliteStore::open(&path)
        .err()
        .expect("newer schema refused");
    assert!(
        e.to_string().contains(&format!(
            "schema version 99, newer than this build's {}",
            MIGRATIONS.len()
        )),
        "{e}"
    );
}

#[test]
fn a_version_1_store_is_migrated_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(&format!("{}; PRAGMA user_version = 1;", MIGRATIONS[0]))
            .unwrap();
        conn.execute(
            "INSERT INTO instances (id, flow, component, input, status) VALUES ('old', 'chain', 'ab12', x'7b7d', 'running')",
            [],
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(
        untimed(store.with_status(Status::Running).unwrap()),
        untimed(vec![record("old")])
    );
}

#[test]
fn a_version_3_store_migrates_and_its_children_are_found_by_parent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v3.db");
    {
        // The schema as the previous build left it, with rows it wrote.
        let conn = Connection::open(&path).unwrap();
        let v3: Vec<&str> = MIGRATIONS[..3].to_vec();
        conn.execute_batch(&format!("{}; PRAGMA user_version = 3;", v3.join(";\n")))
            .unwrap();
        for (id, meta, status) in [
            (
                "root",
                r#"{"origin":"rpc","by":"cli","priority":"normal","pool":"default"}"#,
                "running",
            ),
            (
                "root.0",
                r#"{"origin":"subflow","by":"root","priority":"normal","pool":"default"}"#,
                "running",
            ),
            (
                "root.0.1",
                r#"{"origin":"subflow","by":"root.0","priority":"normal","pool":"default"}"#,
                "completed",
            ),
            ("other", "not json", "running"),
        ] {
            conn.execute(
                "INSERT INTO instances (id, flow, component, input, status, meta) VALUES (?1, 'chain', 'ab12', x'7b7d', ?3, ?2)",
                params![id, meta, status],
            )
            .unwrap();
        }
    }
    let store = SqliteStore::open(&path).unwrap();
    let child = store.record("root.0").unwrap().unwrap();
    assert_eq!(child.parent.as_deref(), Some("root"), "parent backfilled");
    assert!(
        child.created_ms.is_some_and(|ms| ms > 0),
        "created_ms from created"
    );
    assert_eq!(child.ended_ms, None);
    assert_eq!(store.record("other").unwrap().unwrap().parent, None);
    let mut found = store.descendants("root").unwrap();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        found,
        vec![
            ("root.0".to_string(), Status::Running),
            ("root.0.1".to_string(), Status::Completed)
        ]
    );
    let children = store
        .list(&ListQuery {
            parent: Some("root".into()),
            limit: 10,
            ..ListQuery::default()
        })
        .unwrap();
    assert_eq!(children.len(), 1);
    assert_eq!(children[0].1.id, "root.0");
}

#[test]
fn a_full_database_is_unavailable_and_takes_writes_again_when_it_has_room() {
    let store = SqliteStore::in_memory().unwrap();
    store.write(&[Write::Create(record("a"))]).unwrap();
    let pages: i64 = {
        let conn = store.conn.lock().unwrap();
        let pages = conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        // No room to grow: SQLite answers SQLITE_FULL, as on a full disk.
        conn.pragma_update(None, "max_page_count", pages).unwrap();
        pages
    };
    let big = Write::Component {
        hash: "big".into(),
        bytes: vec![7; 64 * 1024],
    };
    let e = store.write(std::slice::from_ref(&big)).unwrap_err();
    assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
    assert!(e.to_string().contains("full"), "{e}");
    assert_eq!(
        store.record("a").unwrap().unwrap().id,
        "a",
        "committed data stays"
    );
    store
        .conn
        .lock()
        .unwrap()
        .pragma_update(None, "max_page_count", pages * 100)
        .unwrap();
    store.write(&[big]).unwrap();
    assert!(store.component("big").unwrap().is_some());
}

#[test]
fn a_row_of_the_wrong_type_is_a_decode_error_and_lists_skip_it() {
    let store = SqliteStore::in_memory().unwrap();
    store
        .write(&[Write::Create(record("a")), Write::Create(record("b"))])
        .unwrap();
    store
        .conn
        .lock()
        .unwrap()
        .execute("UPDATE instances SET attempts = 'many' WHERE id = 'a'", [])
        .unwrap();
    let e = store.record("a").unwrap_err();
    assert!(matches!(e, StoreError::Decode(_)), "{e:?}");
    let running: Vec<String> = store
        .with_status(Status::Running)
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(running, ["b"]);
    let listed = store
        .list(&ListQuery {
            limit: 10,
            ..ListQuery::default()
        })
        .unwrap();
    assert_eq!(listed.len(), 1);
    let unreadable = store.unreadable().unwrap();
    assert_eq!(unreadable.len(), 1);
    assert_eq!(unreadable[0].0, "a");
    assert!(
        unreadable[0].1.contains("instance a"),
        "{}",
        unreadable[0].1
    );
}

/// Found by the `journal_export` fuzz target: without exact float parsing, a float in a
/// journal entry read back from its JSON text came back one bit off (`…331e22` as `…333e22`).
#[test]
fn a_float_in_a_journal_entry_reads_back_the_same() {
    let store = SqliteStore::in_memory().unwrap();
    store.write(&[Write::Create(record("a"))]).unwrap();
    let mut written = entry(0, "wait-event");
    written.result = json!(1.7640003333333331e22);
    written.args = json!({ "x": [0.1, 1e-300, 2.2250738585072014e-308, 123456789.12345678] });
    append(&store, "a", written.clone()).unwrap();
    assert_eq!(store.journal("a").unwrap(), [written]);
}
