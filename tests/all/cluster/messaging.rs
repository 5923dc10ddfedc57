//! Sessions and flow-to-flow topics across the nodes of a cluster.

use super::*;

/// Two nodes of one cluster, in this process, each registering `buyer` and its responder
/// `seller`.
async fn trading_pair(db: &Database) -> (sluice::Node, sluice::Node) {
    let config = |name: &str| {
        format!(
            "[node]\nidentity = \"PartyA\"\n[store]\nurl = \"{}\"\n[cluster]\nname = \"{name}\"\nlease = \"{LEASE}\"\n\
             [[flows]]\nname = \"buyer\"\ncomponent = \"{}\"\n\
             [[flows]]\nname = \"seller\"\ncomponent = \"{}\"\ninitiated-by = \"buyer\"\n",
            db.url,
            crate::support::guest("buyer").display(),
            crate::support::guest("seller").display()
        )
    };
    (
        crate::support::node(&config("n1")).await,
        crate::support::node(&config("n2")).await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_whose_ends_run_on_two_nodes_delivers_every_message_once() {
    let db = Database::fresh();
    let (n1, n2) = trading_pair(&db).await;
    // The responder of buyer b1's session runs on n2, as a takeover may leave it; the buyer
    // on n1 attaches to it instead of starting another.
    let seller = n2
        .start(
            sluice::StartRequest::peer("seller", b"null".to_vec(), "PartyA").with_id("b1.0.peer"),
        )
        .await
        .unwrap();
    let input = serde_json::to_vec(&json!({ "item": "bond", "bid": 45 })).unwrap();
    let buyer = n1
        .start(sluice::StartRequest::rpc("buyer", input, "test").with_id("b1"))
        .await
        .unwrap();
    let wait = Duration::from_secs(60);
    let bought: Value = serde_json::from_slice(
        &tokio::time::timeout(wait, buyer.outcome())
            .await
            .expect("the buyer ends")
            .expect("the buyer completes"),
    )
    .unwrap();
    assert_eq!(
        bought,
        json!({ "item": "bond", "price": 40, "accepted": true })
    );
    let sold: Value = serde_json::from_slice(
        &tokio::time::timeout(wait, seller.outcome())
            .await
            .expect("the seller ends")
            .expect("the seller completes"),
    )
    .unwrap();
    assert_eq!(sold["bid"], 45, "the request, then the bid: {sold}");
    // Each end ran on its own node, and each message was taken once.
    let rows = query(
        &db.url,
        "SELECT id, node, call FROM journal WHERE call IN ('send', 'receive') ORDER BY id, position",
    );
    let rows: Vec<Vec<String>> = rows
        .into_iter()
        .map(|r| r.into_iter().map(Option::unwrap_or_default).collect())
        .collect();
    assert_eq!(
        rows,
        [
            ["b1", "n1", "send"],
            ["b1", "n1", "send"],
            ["b1", "n1", "receive"],
            ["b1.0.peer", "n2", "receive"],
            ["b1.0.peer", "n2", "receive"],
            ["b1.0.peer", "n2", "send"],
        ]
        .map(|r| r.map(String::from).to_vec())
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM instances WHERE flow = 'seller'"),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_published_on_one_node_are_each_taken_once_across_the_cluster() {
    let db = Database::fresh();
    let config = |name: &str| {
        let entry = |flow: &str| {
            format!(
                "[[flows]]\nname = \"{flow}\"\ncomponent = \"{}\"\n",
                crate::support::guest(flow).display()
            )
        };
        format!(
            "[node]\nidentity = \"PartyA\"\n[store]\nurl = \"{}\"\n[cluster]\nname = \"{name}\"\nlease = \"{LEASE}\"\n{}{}",
            db.url,
            entry("watcher"),
            entry("publisher")
        )
    };
    let n1 = crate::support::node(&config("n1")).await;
    let n2 = crate::support::node(&config("n2")).await;
    // Ten watchers on each node, each taking five events; all published on n1.
    let watch = serde_json::to_vec(&json!({ "topic": "jobs", "count": 5 })).unwrap();
    let mut watchers = Vec::new();
    for i in 0..20 {
        let node = if i % 2 == 0 { &n1 } else { &n2 };
        let request =
            sluice::StartRequest::rpc("watcher", watch.clone(), "test").with_id(format!("w{i}"));
        watchers.push(node.start(request).await.unwrap());
    }
    let publish = serde_json::to_vec(&json!({ "topic": "jobs", "count": 100 })).unwrap();
    let published = n1
        .run(sluice::StartRequest::rpc("publisher", publish, "test"))
        .await
        .expect("published")
        .expect("the publisher completes");
    assert_eq!(
        serde_json::from_slice::<Value>(&published).unwrap()["published"],
        100
    );
    let mut seen = Vec::new();
    for (i, w) in watchers.into_iter().enumerate() {
        let out = tokio::time::timeout(Duration::from_secs(60), w.outcome())
            .await
            .unwrap_or_else(|_| panic!("watcher w{i} still waits"))
            .expect("the watcher completes");
        let out: Value = serde_json::from_slice(&out).unwrap();
        let events = out["events"].as_array().unwrap();
        assert_eq!(events.len(), 5, "w{i}: {out}");
        seen.extend(events.iter().map(|e| e["x"].as_u64().unwrap()));
    }
    seen.sort();
    assert_eq!(
        seen,
        (0..100).collect::<Vec<u64>>(),
        "each event taken exactly once"
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM events"),
        0,
        "every taken event forgotten"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_of_a_killed_node_complete_exactly_once_wherever_their_ends_resume() {
    let db = Database::fresh();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let extra = format!(
        "[[flows]]\nname = \"buyer\"\ncomponent = \"{}\"\n\
         [[flows]]\nname = \"seller\"\ncomponent = \"{}\"\ninitiated-by = \"buyer\"\n",
        crate::support::guest("buyer").display(),
        crate::support::guest("seller").display()
    );
    let mut nodes = three_nodes(&db, &dirs, &extra, None).await;
    let n = (flows() / 4).max(100);
    // Every seller sleeps between the request and the bid: all parked on n3 when it dies.
    let n3 = nodes[2].as_ref().expect("n3");
    let body = json!({ "item": "bond", "bid": 45, "pause_ms": 1500 }).to_string();
    start_many(n, |i| {
        (
            n3,
            format!("/v1/flows/buyer/start?id=s-{i:05}"),
            body.clone(),
        )
    })
    .await;
    let limit = Duration::from_secs(300);
    until_count(
        &db,
        "SELECT count(*) FROM journal WHERE call = 'sleep'",
        n as u64,
        limit,
    );
    let mut killed = nodes[2].take().unwrap();
    killed.child.kill().expect("SIGKILL n3");
    killed.child.wait().unwrap();
    let done = |flow: &str| {
        format!("SELECT count(*) FROM instances WHERE flow = '{flow}' AND status = 'completed'")
    };
    until_count(&db, &done("buyer"), n as u64, limit);
    until_count(&db, &done("seller"), n as u64, limit);
    let n = n as u64;
    assert_eq!(
        count(&db, "SELECT count(*) FROM instances"),
        2 * n,
        "{}",
        status_counts(&db)
    );
    // Each message taken once: two receives per seller, one per buyer.
    let receives = |like: &str| {
        count(
            &db,
            &format!("SELECT count(*) FROM journal WHERE call = 'receive' AND id {like}"),
        )
    };
    assert_eq!(receives("LIKE '%.peer'"), 2 * n);
    assert_eq!(receives("NOT LIKE '%.peer'"), n);
    let split = count(
        &db,
        "SELECT count(*) FROM journal b JOIN journal s ON s.id = b.id || '.0.peer' \
         WHERE b.call = 'receive' AND s.call = 'send' AND b.node <> s.node",
    );
    eprintln!("{split} of {n} sessions ended with their two ends on different nodes");
}
