//! Faults of the disk and the clock: a store that refuses writes (a full disk), a corrupt
//! row in an otherwise healthy store, and a wall clock that jumps while flows sleep. Each
//! waits on a real signal with a generous deadline that fails naming what it waited for.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sluice::engine::component_cache::content_hash;
use sluice::model::WallClock;
use sluice::node::NodeParts;
use sluice::observe::EventKind;
use sluice::store::{Entry, InstanceRecord, JournalStore, Refusable, SqliteStore, Status, Write};
use sluice::{Node, NodeConfig, StartError, StartRequest};

use crate::durable_node::unix_ms;
use crate::support::{cache_dir, guest, guests_dir, until, within};

const HOUR_MS: u64 = 3_600_000;

/// A config of one pool of two slots, compiled components cached for the tests, and a data
/// dir when given.
fn config(data_dir: Option<&Path>) -> NodeConfig {
    let mut config = NodeConfig::parse(
        "[pools.default]\nsize = 2\n",
        Path::new("t.toml"),
        Path::new("."),
    )
    .expect("test config is valid");
    config.node.cache_dir = Some(cache_dir());
    config.node.data_dir = data_dir.map(Path::to_path_buf);
    config
}

async fn node_with(config: &NodeConfig, parts: NodeParts) -> Node {
    let node = Node::with_parts(config, parts).await.expect("node starts");
    node.add_search_dir(guests_dir());
    node
}

fn start(flow: &str, input: Value) -> StartRequest {
    StartRequest::rpc(flow, serde_json::to_vec(&input).unwrap(), "test")
}

fn metric(node: &Node, name: &str) -> f64 {
    let text = node.render_metrics();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_new_starts_keeps_the_rest_and_resumes_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    // A SQLite store refusing commits on demand, as a full disk does (SQLite's SQLITE_FULL
    // is the same error, see the store's unit tests).
    let disk = Arc::new(Refusable::new(
        SqliteStore::open(&dir.path().join("sluice.db")).unwrap(),
    ));
    let parts = NodeParts {
        store: Some(disk.clone()),
        ..NodeParts::default()
    };
    let node = node_with(&config(None), parts).await;
    for i in 0..3 {
        let handle = node
            .start(start("hello", json!({ "name": format!("before-{i}") })))
            .await
            .unwrap();
        within("a start before the disk fills", handle.outcome())
            .await
            .unwrap();
    }
    assert_eq!(metric(&node, "sluice_store_writable"), 1.0);

    // A sleeper is parked in its sleep (journaled) when the disk fills: its end is the
    // first commit refused, and it is kept until space returns.
    let sleeper = node
        .start(start("sleeper", json!({ "ms": 200 })))
        .await
        .unwrap();
    let sleeper_id = sleeper.id().to_string();
    until("the sleep journaled", Duration::from_secs(60), || {
        disk.inner()
            .journal(&sleeper_id)
            .is_ok_and(|j| j.len() == 1)
    })
    .await;
    disk.refuse(true);
    until(
        "the node to notice the full disk",
        Duration::from_secs(60),
        || node.journal().unavailable().is_some(),
    )
    .await;
    let refused = node
        .start(start("hello", json!({ "name": "refused" })))
        .await;
    let Err(e @ StartError::StoreUnavailable { .. }) = refused else {
        panic!("a start while the disk is full was not refused: {refused:?}");
    };
    assert!(e.to_string().contains("disk is full"), "{e}");
    assert_eq!(metric(&node, "sluice_store_writable"), 0.0);
    assert_eq!(metric(&node, "sluice_store_refused_starts_total"), 1.0);
    assert!(metric(&node, "sluice_store_refused_commits_total") >= 1.0);
    let record = disk
        .inner()
        .record(&sleeper_id)
        .unwrap()
        .expect("the sleeper's record");
    assert_eq!(
        record.status,
        Status::Running,
        "an end was recorded on a full disk"
    );

    disk.refuse(false);
    let slept = within("the sleeper's end, once space returns", sleeper.outcome()).await;
    assert_eq!(
        serde_json::from_slice::<Value>(&slept.unwrap()).unwrap(),
        json!({ "slept_ms": 200 })
    );
    assert!(node.journal().unavailable().is_none());
    assert_eq!(metric(&node, "sluice_store_writable"), 1.0);
    let after = node
        .start(start("hello", json!({ "name": "after" })))
        .await
        .unwrap();
    within("a start after space returned", after.outcome())
        .await
        .unwrap();

    // Nothing lost, nothing twice: every acknowledged instance ended once, the refused one
    // does not exist, and the sleeper journaled its sleep once.
    node.journal().sync().await.unwrap();
    let store = disk.inner();
    let counts: Vec<(String, u64)> = store.count_by_flow().unwrap();
    assert_eq!(
        counts,
        [("hello".to_string(), 4), ("sleeper".to_string(), 1)]
    );
    let completed = store.with_status(Status::Completed).unwrap();
    assert_eq!(completed.len(), 5, "{completed:?}");
    let journal = store.journal(&sleeper_id).unwrap();
    let calls: Vec<&str> = journal.iter().map(|e| e.call.as_str()).collect();
    assert_eq!(calls, ["sleep"]);
}

/// Write a running `sleeper` instance `id` with `input` and `journal` into the data dir's
/// store, as a node that crashed would have left it.
fn crashed_sleeper(data_dir: &Path, id: &str, input: Value, journal: &[(u64, u64)]) {
    let store = SqliteStore::open(&data_dir.join("sluice.db")).unwrap();
    let bytes = std::fs::read(guest("sleeper")).unwrap();
    let hash = content_hash(&bytes);
    let meta =
        r#"{"origin":"rpc","by":"test","priority":"normal","pool":"default","ids":"bounded"}"#;
    let mut batch = vec![
        Write::Component {
            hash: hash.clone(),
            bytes,
        },
        Write::Create(InstanceRecord::new(
            id,
            "sleeper",
            &hash,
            &serde_json::to_vec(&input).unwrap(),
            meta.into(),
        )),
    ];
    for (position, (ms, deadline)) in journal.iter().enumerate() {
        batch.push(Write::Append {
            id: id.into(),
            entry: Entry {
                position: position as u64,
                call: "sleep".into(),
                args: json!({ "ms": ms }),
                result: json!(deadline),
                at_ms: None,
            },
        });
    }
    store.write(&batch).unwrap();
}

/// Change `sql` in the data dir's store behind the store's back, as a bad disk or a careless
/// operator would.
fn corrupt(data_dir: &Path, sql: &str) {
    let conn = rusqlite::Connection::open(data_dir.join("sluice.db")).unwrap();
    let changed = conn.execute(sql, []).unwrap();
    assert_eq!(changed, 1, "`{sql}` changed {changed} rows");
}

/// The outcome of instance `id` on `node`, attached by id.
async fn outcome_of(node: &Node, id: &str) -> Result<Value, sluice::FlowError> {
    let handle = node
        .start(start("sleeper", json!(null)).with_id(id))
        .await
        .unwrap_or_else(|e| panic!("cannot attach to {id}: {e}"));
    let outcome = within(&format!("instance {id}'s end"), handle.outcome()).await;
    outcome.map(|bytes| serde_json::from_slice(&bytes).expect("JSON output"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_row_holds_its_instance_and_the_rest_of_the_node_runs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let past = unix_ms() - 1;
    crashed_sleeper(data, "garbled", json!({ "ms": 10 }), &[(10, past)]);
    crashed_sleeper(data, "paused", json!({ "ms": 10 }), &[(10, past)]);
    crashed_sleeper(data, "healthy", json!({ "ms": 10 }), &[(10, past)]);
    corrupt(
        data,
        "UPDATE journal SET args = '{\"ms\": 10,' WHERE id = 'garbled'",
    );
    corrupt(
        data,
        "UPDATE instances SET status = 'paused' WHERE id = 'paused'",
    );

    let node = node_with(&config(Some(data)), NodeParts::default()).await;
    let resumed = node
        .recover()
        .await
        .expect("recovery survives corrupt rows");
    assert_eq!(resumed, 2, "garbled and healthy are resumed");
    assert_eq!(
        outcome_of(&node, "healthy").await.unwrap(),
        json!({ "slept_ms": 10 })
    );
    until(
        "both corrupt instances held",
        Duration::from_secs(60),
        || node.held().unwrap().len() == 2,
    )
    .await;
    let held = node.held().unwrap();
    let why = |id: &str| {
        let record = held.iter().find(|r| r.id == id);
        record
            .and_then(|r| r.message.clone())
            .unwrap_or_else(|| panic!("{id} not held: {held:?}"))
    };
    assert!(
        why("garbled").contains("its journal cannot be read"),
        "{}",
        why("garbled")
    );
    assert!(
        why("garbled").contains("journal of garbled at 0"),
        "{}",
        why("garbled")
    );
    assert!(
        why("paused").contains("unknown status `paused`"),
        "{}",
        why("paused")
    );
    // The rest runs: a new instance starts and ends.
    let fresh = node
        .start(start("hello", json!({ "name": "next" })))
        .await
        .unwrap();
    within("a new instance", fresh.outcome()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_a_clock_set_back_delays_a_sleep_by_at_most_its_length_and_never_twice() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let now = unix_ms();
    // Journaled three hours "ahead": the clock was set back by three hours since.
    crashed_sleeper(
        data,
        "set-back",
        json!({ "ms": 300 }),
        &[(300, now + 3 * HOUR_MS)],
    );
    // The first of two hour-long sleeps ended before the crash (the second was journaled);
    // the clock then went back: the first must not be waited again, the second is past.
    crashed_sleeper(
        data,
        "twice",
        json!({ "ms": HOUR_MS, "times": 2 }),
        &[(HOUR_MS, now + 3 * HOUR_MS), (HOUR_MS, now - 1)],
    );
    // Set forward past an hour-long sleep's deadline: it has ended.
    crashed_sleeper(
        data,
        "forward",
        json!({ "ms": HOUR_MS }),
        &[(HOUR_MS, now - 1)],
    );

    let node = node_with(&config(Some(data)), NodeParts::default()).await;
    assert_eq!(node.recover().await.unwrap(), 3);
    assert_eq!(
        outcome_of(&node, "set-back").await.unwrap(),
        json!({ "slept_ms": 300 })
    );
    assert_eq!(
        outcome_of(&node, "twice").await.unwrap(),
        json!({ "slept_ms": 2 * HOUR_MS })
    );
    assert_eq!(
        outcome_of(&node, "forward").await.unwrap(),
        json!({ "slept_ms": HOUR_MS })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_sleep_lasts_its_length_whatever_the_wall_clock_does() {
    let clock = WallClock::system();
    let parts = NodeParts {
        clock: clock.clone(),
        ..NodeParts::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let node = node_with(&config(Some(dir.path())), parts).await;
    // Ten days ahead before the sleep journals its deadline, back by a day while it sleeps.
    clock.jump(10 * 24 * HOUR_MS as i64);
    let sleeper = node
        .start(start("sleeper", json!({ "ms": 300 })))
        .await
        .unwrap();
    let id = sleeper.id().to_string();
    until("the sleep journaled", Duration::from_secs(60), || {
        node.journal()
            .store()
            .journal(&id)
            .is_ok_and(|j| !j.is_empty())
    })
    .await;
    clock.jump(-(24 * HOUR_MS as i64));
    let output = within("the sleep to end after its 300 ms", sleeper.outcome())
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&output).unwrap(),
        json!({ "slept_ms": 300 })
    );
    let journal = node.journal().store().journal(&id).unwrap();
    let deadline = journal[0].result.as_u64().unwrap();
    assert!(
        deadline > unix_ms() + 9 * 24 * HOUR_MS,
        "the deadline {deadline} was not journaled by the node's clock"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleeper_evicted_while_the_clock_goes_back_wakes_on_time_not_hours_later() {
    let clock = WallClock::system();
    let parts = NodeParts {
        clock: clock.clone(),
        ..NodeParts::default()
    };
    let mut config = config(None);
    config.node.max_resident = 1;
    let node = node_with(&config, parts).await;
    let mut events = node.events().subscribe();
    let first = node
        .start(start("sleeper", json!({ "ms": 300 })))
        .await
        .unwrap();
    let id = first.id().to_string();
    until("the first sleep journaled", Duration::from_secs(60), || {
        node.journal()
            .store()
            .journal(&id)
            .is_ok_and(|j| !j.is_empty())
    })
    .await;
    // The second needs the only place in memory: the parked first is evicted.
    let second = node
        .start(start("sleeper", json!({ "ms": 300 })))
        .await
        .unwrap();
    until("the first sleeper evicted", Duration::from_secs(60), || {
        node.residency().evictions() >= 1
    })
    .await;
    clock.jump(-3 * HOUR_MS as i64);
    // Rebuilt by replay once its wait ends, it must not wait again for its deadline, which
    // the clock now puts three hours away.
    let slept = within("the evicted sleeper's end", first.outcome())
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&slept).unwrap(),
        json!({ "slept_ms": 300 })
    );
    within("the second sleeper's end", second.outcome())
        .await
        .unwrap();
    // Its one sleep ended in its eviction's wait: the rebuild did not park in it again.
    let mut resumed = 0;
    while let Ok(event) = events.try_recv() {
        resumed += usize::from(event.id == id && event.kind == EventKind::Resumed);
    }
    assert_eq!(
        resumed, 0,
        "the evicted sleeper slept again after its rebuild"
    );
}
