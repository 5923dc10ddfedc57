//! The store contract, checked the same way on every store: memory, SQLite and PostgreSQL.
//! Each check takes a fresh, empty store; [`postgres_store`] makes a fresh database for each.
//!
//! PostgreSQL is reached at `SLUICE_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`, the project machines' server); a server
//! that cannot be reached fails the PostgreSQL checks with that URL in the message.

use serde_json::json;

use super::*;

/// One check of the contract, on a fresh store.
type Check = fn(&dyn JournalStore);

/// Every check, by name.
const CHECKS: &[(&str, Check)] = &[
    ("journals_are_ordered", journals_are_ordered),
    ("batches_are_atomic", batches_are_atomic),
    ("a_final_status_stays", a_final_status_stays),
    ("unknown_instances_are_errors", unknown_instances_are_errors),
    ("statuses_and_attempts", statuses_and_attempts),
    ("events_outbox_and_cursors", events_outbox_and_cursors),
    ("lists_page_and_filter", lists_page_and_filter),
    ("descendants_and_counts", descendants_and_counts),
    ("peer_messages_in_and_out", peer_messages_in_and_out),
    ("events_are_claimed_once", events_are_claimed_once),
];

fn record(id: &str) -> InstanceRecord {
    InstanceRecord::new(id, "chain", "ab12", b"{}", "{}".into())
}

/// A child of `parent`, as the node records one.
fn child(id: &str, parent: &str) -> InstanceRecord {
    let meta =
        format!(r#"{{"origin":"subflow","by":"{parent}","priority":"normal","pool":"default"}}"#);
    InstanceRecord::new(id, "double", "ab12", b"{}", meta)
}

fn entry(position: u64, call: &str) -> Entry {
    Entry {
        position,
        call: call.into(),
        args: json!(["a", { "b": 1 }]),
        result: json!({ "ok": [1, 2] }),
        at_ms: position
            .is_multiple_of(2)
            .then_some(1_764_000_000_000 + position),
    }
}

fn append(id: &str, entry: Entry) -> Write {
    Write::Append {
        id: id.into(),
        entry,
    }
}

fn status(id: &str, status: Status, output: Option<&[u8]>) -> Write {
    Write::Status {
        id: id.into(),
        status,
        output: output.map(<[u8]>::to_vec),
        message: None,
    }
}

fn event(id: &str, topic: &str) -> StoredEvent {
    StoredEvent {
        id: id.into(),
        topic: topic.into(),
        payload: Payload(id.as_bytes().to_vec()),
    }
}

fn journals_are_ordered(store: &dyn JournalStore) {
    store
        .write(&[Write::Create(record("a")), Write::Create(record("b"))])
        .unwrap();
    store
        .write(&[append("a", entry(0, "now")), append("a", entry(1, "sleep"))])
        .unwrap();
    store.write(&[append("b", entry(0, "random"))]).unwrap();
    let e = store.write(&[append("a", entry(3, "random"))]).unwrap_err();
    assert_eq!(e.to_string(), "journal of a: expected position 2, got 3");
    let e = store.write(&[append("a", entry(1, "again"))]).unwrap_err();
    assert!(
        matches!(e, StoreError::OutOfOrder { expected: 2, .. }),
        "{e}"
    );
    assert_eq!(
        store.journal("a").unwrap(),
        vec![entry(0, "now"), entry(1, "sleep")]
    );
    assert_eq!(store.journal("b").unwrap(), vec![entry(0, "random")]);
    assert!(store.journal("nobody").unwrap().is_empty());
}

fn batches_are_atomic(store: &dyn JournalStore) {
    store.write(&[Write::Create(record("a"))]).unwrap();
    let mut again = record("a");
    again.flow = "other".into();
    let failed = store.write(&[
        Write::Create(again),
        Write::Create(record("c")),
        Write::Publish(event("e1", "t")),
        append("a", entry(5, "now")),
    ]);
    assert!(failed.is_err(), "an out-of-order append fails the batch");
    assert!(store.record("c").unwrap().is_none(), "rolled back");
    assert!(store.untaken_events().unwrap().is_empty(), "rolled back");
    assert_eq!(
        store.record("a").unwrap().unwrap().flow,
        "chain",
        "first kept"
    );
    let component = Write::Component {
        hash: "h".into(),
        bytes: vec![0, 1, 2, 255],
    };
    store.write(&[component.clone(), component]).unwrap();
    store
        .write(&[Write::Component {
            hash: "h".into(),
            bytes: vec![9],
        }])
        .unwrap();
    assert_eq!(store.component("h").unwrap(), Some(vec![0, 1, 2, 255]));
    assert_eq!(store.component("none").unwrap(), None);
}

fn a_final_status_stays(store: &dyn JournalStore) {
    store
        .write(&[Write::Create(record("a")), Write::Create(child("a.0", "a"))])
        .unwrap();
    store.write(&[status("a", Status::Hospital, None)]).unwrap();
    assert_eq!(store.record("a").unwrap().unwrap().ended_ms, None);
    store
        .write(&[status("a", Status::Cancelled, None)])
        .unwrap();
    store
        .write(&[status("a", Status::Completed, Some(b"1"))])
        .unwrap();
    store.write(&[status("a", Status::Running, None)]).unwrap();
    let a = store.record("a").unwrap().unwrap();
    assert_eq!(a.status, Status::Cancelled, "the first end stays");
    assert!(a.ended_ms.is_some());
    assert_eq!(a.outcome(), Some(Err(crate::model::FlowError::Cancelled)));
    assert_eq!(
        store.with_status(Status::Cancelled).unwrap().len(),
        1,
        "stored as `cancelled`"
    );
    store
        .write(&[status("a.0", Status::Completed, Some(b"[7]"))])
        .unwrap();
    let c = store.record("a.0").unwrap().unwrap();
    assert_eq!(c.outcome(), Some(Ok(b"[7]".to_vec())));
    assert_eq!(c.parent.as_deref(), Some("a"));
}

fn unknown_instances_are_errors(store: &dyn JournalStore) {
    let e = store
        .write(&[status("zz", Status::Failed, None)])
        .unwrap_err();
    assert!(
        matches!(e, StoreError::Unknown(ref id) if id == "zz"),
        "{e}"
    );
    let e = store
        .write(&[Write::Pin {
            id: "zz".into(),
            component: "h".into(),
        }])
        .unwrap_err();
    assert!(matches!(e, StoreError::Unknown(_)), "{e}");
    assert!(store.record("zz").unwrap().is_none());
}

fn statuses_and_attempts(store: &dyn JournalStore) {
    for id in ["r1", "r2", "r3"] {
        store.write(&[Write::Create(record(id))]).unwrap();
    }
    store
        .write(&[
            Write::Status {
                id: "r2".into(),
                status: Status::Failed,
                output: None,
                message: Some("boom".into()),
            },
            Write::Attempted {
                id: "r3".into(),
                attempts: 2,
            },
            Write::Pin {
                id: "r3".into(),
                component: "cd34".into(),
            },
        ])
        .unwrap();
    let running: Vec<String> = store
        .with_status(Status::Running)
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(running, ["r1", "r3"], "oldest first");
    let r3 = store.record("r3").unwrap().unwrap();
    assert_eq!((r3.attempts, r3.component.as_str()), (2, "cd34"));
    let r2 = store.record("r2").unwrap().unwrap();
    assert_eq!(r2.message.as_deref(), Some("boom"));
    assert!(matches!(
        r2.outcome(),
        Some(Err(crate::model::FlowError::Failed(m))) if m == "boom"
    ));
    assert!(
        r2.created_ms
            .is_some_and(|c| r2.ended_ms.is_some_and(|e| e >= c))
    );
}

fn events_outbox_and_cursors(store: &dyn JournalStore) {
    store
        .write(&[
            Write::Publish(event("p.2", "orders")),
            Write::Publish(event("p.1", "orders")),
            Write::Outbox(event("p.2", "orders")),
        ])
        .unwrap();
    store
        .write(&[
            Write::Publish(event("p.1", "again")),
            Write::Outbox(event("p.3", "audit")),
        ])
        .unwrap();
    let ids = |events: Vec<StoredEvent>| events.into_iter().map(|e| e.id).collect::<Vec<_>>();
    assert_eq!(ids(store.untaken_events().unwrap()), ["p.2", "p.1"]);
    assert_eq!(
        store.untaken_events().unwrap()[1].topic,
        "orders",
        "first kept"
    );
    assert_eq!(ids(store.outbox().unwrap()), ["p.2", "p.3"]);
    store
        .write(&[
            Write::Take { id: "p.2".into() },
            Write::Dispatched { id: "p.2".into() },
        ])
        .unwrap();
    assert_eq!(
        store.untaken_events().unwrap(),
        vec![event("p.1", "orders")]
    );
    assert_eq!(ids(store.outbox().unwrap()), ["p.3"]);
    assert_eq!(store.cursor("s").unwrap(), None);
    let cursor = |value: &str| Write::Cursor {
        key: "s".into(),
        value: value.into(),
    };
    store.write(&[cursor("1")]).unwrap();
    store.write(&[cursor("2")]).unwrap();
    assert_eq!(store.cursor("s").unwrap().as_deref(), Some("2"));
}

fn lists_page_and_filter(store: &dyn JournalStore) {
    for n in 0..30 {
        let mut r = record(&format!("i{n:02}"));
        if n % 3 == 0 {
            r.flow = "other".into();
        }
        store.write(&[Write::Create(r)]).unwrap();
    }
    store
        .write(&[Write::Create(child("i00.0", "i00"))])
        .unwrap();
    store
        .write(&[status("i01", Status::Completed, Some(b"1"))])
        .unwrap();
    let ids = |found: &[(u64, InstanceRecord)]| -> Vec<String> {
        found.iter().map(|(_, r)| r.id.clone()).collect()
    };
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list(&ListQuery {
                flow: Some("chain".into()),
                after,
                limit: 7,
                ..ListQuery::default()
            })
            .unwrap();
        let Some((last, _)) = page.last() else { break };
        after = Some(*last);
        seen.extend(ids(&page));
    }
    let expected: Vec<String> = (0..30)
        .filter(|n| n % 3 != 0)
        .map(|n| format!("i{n:02}"))
        .collect();
    assert_eq!(seen, expected, "pages in recorded order, none twice");
    let done = store
        .list(&ListQuery {
            status: Some(Status::Completed),
            limit: 10,
            ..ListQuery::default()
        })
        .unwrap();
    assert_eq!(ids(&done), ["i01"]);
    let kids = store
        .list(&ListQuery {
            parent: Some("i00".into()),
            limit: 10,
            ..ListQuery::default()
        })
        .unwrap();
    assert_eq!(ids(&kids), ["i00.0"]);
    let tree = store
        .list(&ListQuery {
            root: Some("i00".into()),
            limit: 10,
            ..ListQuery::default()
        })
        .unwrap();
    assert_eq!(ids(&tree), ["i00", "i00.0"]);
    let pooled = store
        .list(&ListQuery {
            pool: Some("default".into()),
            limit: 10,
            ..ListQuery::default()
        })
        .unwrap();
    assert_eq!(
        ids(&pooled),
        ["i00.0"],
        "the pool is read from the start meta"
    );
}

fn descendants_and_counts(store: &dyn JournalStore) {
    store
        .write(&[
            Write::Create(record("root")),
            Write::Create(child("root.0", "root")),
            Write::Create(child("root.1", "root")),
            Write::Create(child("root.0.0", "root.0")),
            Write::Create(record("other")),
        ])
        .unwrap();
    store
        .write(&[status("root.1", Status::Completed, Some(b"1"))])
        .unwrap();
    let mut found = store.descendants("root").unwrap();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        found,
        vec![
            ("root.0".to_string(), Status::Running),
            ("root.0.0".to_string(), Status::Running),
            ("root.1".to_string(), Status::Completed),
        ]
    );
    assert!(store.descendants("other").unwrap().is_empty());
    assert_eq!(
        store.count_by_flow().unwrap(),
        vec![("chain".to_string(), 2), ("double".to_string(), 3)]
    );
}

fn peer_messages_in_and_out(store: &dyn JournalStore) {
    use crate::model::{PeerMessage, Side};
    let out = |session: &str, seq: u64| {
        PeerMessage::message("B", session, Side::Responder, seq, vec![seq as u8, 0, 255])
    };
    let end = PeerMessage::end("C", "s.2", Side::Initiator, "the flow completed".into());
    store
        .write(&[
            Write::PeerOut(out("s.1", 0)),
            Write::PeerOut(end.clone()),
            Write::PeerOut(out("s.1", 1)),
        ])
        .unwrap();
    // Kept once: the same session, side and number again changes nothing.
    store.write(&[Write::PeerOut(out("s.1", 0))]).unwrap();
    assert_eq!(
        store.peer_outbox("B", 10).unwrap(),
        vec![out("s.1", 0), out("s.1", 1)]
    );
    assert_eq!(store.peer_outbox("B", 1).unwrap(), vec![out("s.1", 0)]);
    assert_eq!(store.peer_outbox("C", 10).unwrap(), vec![end.clone()]);
    assert_eq!(
        store.peer_outbox_depth().unwrap(),
        vec![("B".to_string(), 2), ("C".to_string(), 1)]
    );
    store
        .write(&[Write::PeerSent {
            session: "s.1".into(),
            to: Side::Responder,
            seq: 0,
        }])
        .unwrap();
    assert_eq!(store.peer_outbox("B", 10).unwrap(), vec![out("s.1", 1)]);

    let incoming = |seq: u64, body: &[u8]| {
        PeerMessage::message("A", "a.3", Side::Responder, seq, body.to_vec())
    };
    let ended = PeerMessage::end("A", "a.3", Side::Responder, "done".into());
    store
        .write(&[
            Write::PeerIn(ended.clone()),
            Write::PeerIn(incoming(1, b"b")),
        ])
        .unwrap();
    store
        .write(&[
            Write::PeerIn(incoming(0, b"a")),
            Write::PeerIn(incoming(1, b"again")),
        ])
        .unwrap();
    assert_eq!(
        store.peer_inbox("a.3", Side::Responder).unwrap(),
        vec![incoming(0, b"a"), incoming(1, b"b"), ended]
    );
    assert!(store.peer_inbox("a.3", Side::Initiator).unwrap().is_empty());
}

fn events_are_claimed_once(store: &dyn JournalStore) {
    store
        .write(&[
            Write::Publish(event("e1", "jobs")),
            Write::Publish(event("e2", "jobs")),
            Write::Publish(event("e3", "other")),
        ])
        .unwrap();
    let ids = |events: Vec<StoredEvent>| events.into_iter().map(|e| e.id).collect::<Vec<_>>();
    assert_eq!(ids(store.events_on("jobs", "").unwrap()), ["e1", "e2"]);
    assert!(store.claim_event("e1", "w1").unwrap());
    assert!(
        store.claim_event("e1", "w1").unwrap(),
        "a claim is the claimer's again"
    );
    assert!(!store.claim_event("e1", "w2").unwrap(), "and nobody else's");
    assert_eq!(ids(store.events_on("jobs", "").unwrap()), ["e2"]);
    assert_eq!(ids(store.events_on("jobs", "w1").unwrap()), ["e1", "e2"]);
    store.write(&[Write::Take { id: "e1".into() }]).unwrap();
    assert!(
        !store.claim_event("e1", "w1").unwrap(),
        "a taken event is nobody's"
    );
    assert_eq!(ids(store.untaken_events().unwrap()), ["e2", "e3"]);
}

fn run_all(mut fresh: impl FnMut() -> Box<dyn JournalStore>) {
    for (name, check) in CHECKS {
        let store = fresh();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&*store)));
        if let Err(panic) = outcome {
            eprintln!("store check `{name}` failed");
            std::panic::resume_unwind(panic);
        }
    }
}

#[test]
fn the_memory_store_keeps_the_contract() {
    run_all(|| Box::new(MemoryStore::new()));
}

#[test]
fn the_sqlite_store_keeps_the_contract() {
    run_all(|| Box::new(SqliteStore::in_memory().unwrap()));
}

#[test]
fn the_postgres_store_keeps_the_contract() {
    let server = postgres_server();
    let mut dbs = Vec::new();
    run_all(|| {
        let db = server.fresh_database();
        let store = PostgresStore::connect(&db.url).unwrap();
        dbs.push(db);
        Box::new(store)
    });
}

#[test]
fn a_postgres_database_with_a_newer_schema_is_refused_untouched() {
    let server = postgres_server();
    let db = server.fresh_database();
    drop(PostgresStore::connect(&db.url).unwrap());
    server.execute(&db.url, "UPDATE sluice_schema SET version = version + 1");
    let e = PostgresStore::connect(&db.url).err().expect("refused");
    let shown = e.to_string();
    assert!(matches!(e, StoreError::TooNew { .. }), "{shown}");
    assert!(shown.contains("newer than this build's"), "{shown}");
}

#[test]
fn an_unreachable_postgres_server_is_a_clear_error() {
    // Port 9 (discard) on loopback: nothing listens there on these machines.
    let e = PostgresStore::connect("postgres://sluice:secret@127.0.0.1:9/none")
        .err()
        .expect("refused");
    let shown = e.to_string();
    assert!(
        shown.contains("cannot connect to PostgreSQL at postgres://sluice@127.0.0.1:9/none"),
        "{shown}"
    );
    assert!(
        !shown.contains("secret"),
        "no password in messages: {shown}"
    );
}

/// The test server, from `SLUICE_TEST_POSTGRES`.
pub(crate) fn postgres_server() -> TestServer {
    let url = std::env::var("SLUICE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    TestServer { admin: url }
}

/// A PostgreSQL server tests make databases on.
pub(crate) struct TestServer {
    admin: String,
}

/// A database made for one test, dropped (with its connections) when this goes.
pub(crate) struct TestDatabase {
    /// Its URL.
    pub url: String,
    name: String,
    admin: String,
}

impl TestServer {
    /// A new, empty database.
    pub(crate) fn fresh_database(&self) -> TestDatabase {
        let name = format!(
            "sluice_test_{}",
            ulid::Ulid::new().to_string().to_lowercase()
        );
        self.execute(&self.admin, &format!("CREATE DATABASE {name}"));
        let url = match self.admin.rfind('/') {
            Some(i) => format!("{}/{name}", &self.admin[..i]),
            None => panic!("SLUICE_TEST_POSTGRES has no database part: {}", self.admin),
        };
        TestDatabase {
            url,
            name,
            admin: self.admin.clone(),
        }
    }

    /// Run `sql` on a connection of its own to `url` (on a thread outside any runtime).
    pub(crate) fn execute(&self, url: &str, sql: &str) {
        let (url, sql) = (url.to_string(), sql.to_string());
        std::thread::spawn(move || {
            let mut client =
                ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap_or_else(|e| {
                    panic!(
                        "cannot reach the test PostgreSQL at {url}: {e} \
                     (set SLUICE_TEST_POSTGRES to a server tests may create databases on)"
                    )
                });
            client
                .batch_execute(&sql)
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p));
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            if let Ok(mut c) = ::postgres::Client::connect(&admin, ::postgres::NoTls) {
                let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
        })
        .join();
    }
}
