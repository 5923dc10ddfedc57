//! Members sharing one database: names, leases, fencing, claims, kept events, signals.
//! Each test makes a fresh database on the test server (see `store::conformance`).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::store::conformance::{TestDatabase, postgres_server};
use crate::store::{
    ClusterStore, InstanceRecord, JournalStore, Payload, Signal, Status, StoreError, StoredEvent,
    Write,
};

use super::PostgresStore;

const LEASE: Duration = Duration::from_secs(60);
const SHORT: Duration = Duration::from_secs(1);

fn store(db: &TestDatabase) -> PostgresStore {
    PostgresStore::connect(&db.url).expect("the test database opens")
}

fn create(id: &str) -> Write {
    Write::Create(InstanceRecord::new(id, "noop", "ab12", b"{}", "{}".into()))
}

/// Wait (polling the database, up to 30 s) until `name`'s lease has lapsed.
fn until_lapsed(reader: &PostgresStore, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let members = reader.members().unwrap();
        let m = members.iter().find(|m| m.name == name).expect("a member");
        if m.lease_left_ms < 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the lease of {name} never lapsed: {m:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_name_is_held_by_one_live_node_and_a_restart_gets_a_new_epoch() {
    let db = postgres_server().fresh_database();
    let a = store(&db);
    assert_eq!(a.join("a", Some("127.0.0.1:1"), LEASE).unwrap(), 1);
    let e = store(&db).join("a", None, LEASE).unwrap_err();
    assert!(matches!(e, StoreError::InUse { .. }), "{e}");
    assert!(e.to_string().contains("node `a` is running"), "{e}");
    let b = store(&db);
    assert_eq!(b.join("b", None, LEASE).unwrap(), 1, "another name joins");

    a.write(&[create("i1")]).unwrap();
    drop(a);
    // The name's session ends with the store; the server notices it at once or soon.
    let again = store(&db);
    let deadline = Instant::now() + Duration::from_secs(30);
    let epoch = loop {
        match again.join("a", None, LEASE) {
            Ok(epoch) => break epoch,
            Err(StoreError::InUse { .. }) if Instant::now() < deadline => {}
            Err(e) => panic!("a restarted node could not join: {e}"),
        }
    };
    assert_eq!(epoch, 2);
    let own: Vec<String> = again
        .own_running()
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(own, ["i1"], "a restarted node finds its own instances");
    assert!(b.own_running().unwrap().is_empty());
}

#[test]
fn a_lapsed_member_is_fenced_and_its_instances_are_claimed_once() {
    let db = postgres_server().fresh_database();
    let a = store(&db);
    a.join("a", None, SHORT).unwrap();
    let ids: Vec<String> = (0..60).map(|n| format!("i{n:02}")).collect();
    a.write(&ids.iter().map(|id| create(id)).collect::<Vec<_>>())
        .unwrap();
    a.write(&[Write::Status {
        id: "i00".into(),
        status: Status::Completed,
        output: Some(b"1".to_vec()),
        message: None,
    }])
    .unwrap();
    let (b, c) = (store(&db), store(&db));
    b.join("b", None, LEASE).unwrap();
    c.join("c", None, LEASE).unwrap();
    assert!(b.claim_orphans(100).unwrap().is_empty(), "a is live");

    until_lapsed(&b, "a");
    // Two members claim at once, in small batches: each instance goes to one of them.
    let claim = |s: &PostgresStore| {
        let mut got = Vec::new();
        loop {
            let batch = s.claim_orphans(7).unwrap();
            if batch.is_empty() {
                return got;
            }
            got.extend(batch.into_iter().map(|r| r.id));
        }
    };
    let (by_b, by_c) = std::thread::scope(|s| {
        let b = s.spawn(|| claim(&b));
        let c = s.spawn(|| claim(&c));
        (b.join().unwrap(), c.join().unwrap())
    });
    let all: HashSet<&String> = by_b.iter().chain(&by_c).collect();
    assert_eq!(by_b.len() + by_c.len(), 59, "each running instance once");
    assert_eq!(all.len(), 59);
    assert!(
        !all.contains(&"i00".to_string()),
        "an ended instance is not claimed"
    );

    // The dead member writes nothing more, and learns it on renewal.
    let e = a.write(&[create("late")]).unwrap_err();
    assert!(matches!(e, StoreError::Fenced { .. }), "{e}");
    assert!(b.record("late").unwrap().is_none());
    assert!(matches!(a.renew(SHORT), Err(StoreError::Fenced { .. })));
    let members = b.members().unwrap();
    let state = |n: &str| members.iter().find(|m| m.name == n).unwrap().state.clone();
    assert_eq!(state("a"), "dead");
    assert_eq!(state("b"), "live");
    let running: u64 = members.iter().map(|m| m.running).sum();
    assert_eq!(running, 59);
}

#[test]
fn a_member_that_leaves_hands_over_at_once_and_kept_events_follow() {
    let db = postgres_server().fresh_database();
    let a = store(&db);
    a.join("a", None, LEASE).unwrap();
    let event = StoredEvent {
        id: "e1".into(),
        topic: "orders".into(),
        payload: Payload(b"{}".to_vec()),
    };
    a.write(&[create("i1"), Write::Outbox(event.clone())])
        .unwrap();
    let b = store(&db);
    b.join("b", None, LEASE).unwrap();
    assert!(
        b.claim_outbox().unwrap().is_empty(),
        "a dispatches its own events"
    );
    a.leave().unwrap();
    assert!(matches!(
        a.write(&[create("i2")]),
        Err(StoreError::Fenced { .. })
    ));
    let claimed: Vec<String> = b
        .claim_orphans(10)
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(claimed, ["i1"], "no lease to wait out after a leave");
    assert_eq!(b.claim_outbox().unwrap(), vec![event]);
}

#[test]
fn members_signal_ends_and_cancellations() {
    let db = postgres_server().fresh_database();
    let (a, b) = (store(&db), store(&db));
    a.join("a", None, LEASE).unwrap();
    b.join("b", None, LEASE).unwrap();
    let signals = b.signals().unwrap();
    // The listener is up once it reports its first quiet second.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match signals.recv_timeout(left) {
            Ok(Signal::Idle) => break,
            Ok(_) => {}
            Err(e) => panic!("the listener never started: {e}"),
        }
    }
    a.write(&[create("i1")]).unwrap();
    a.write(&[Write::Status {
        id: "i1".into(),
        status: Status::Completed,
        output: None,
        message: None,
    }])
    .unwrap();
    a.ask_cancel("i2").unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let left = deadline.saturating_duration_since(Instant::now());
        match signals.recv_timeout(left) {
            Ok(Signal::Idle) => {}
            Ok(signal) => seen.push(signal),
            Err(e) => panic!("signals missing ({seen:?}): {e}"),
        }
    }
    assert_eq!(
        seen,
        [Signal::Ended("i1".into()), Signal::Cancel("i2".into())]
    );
}
