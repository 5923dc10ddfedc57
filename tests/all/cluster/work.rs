//! Fan-out work on a cluster: exactly once on three nodes, with one SIGKILLed midway, a
//! drained node handing its work over, and a cancel made on another node.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_run_fan_outs_exactly_once() {
    let db = Database::fresh();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let nodes: Vec<Served> = three_nodes(&db, &dirs, "", None)
        .await
        .into_iter()
        .flatten()
        .collect();
    let all: Vec<&Served> = nodes.iter().collect();
    let roots = flows();
    submit(&all, "r", roots, json!({ "ms": 1 })).await;
    until_count(
        &db,
        "SELECT count(*) FROM instances WHERE flow = 'fanout' AND status = 'completed'",
        roots as u64,
        Duration::from_secs(1800),
    );
    assert_exactly_once(&db, roots as u64);
    // Work was spread: every node ran roots (each root runs where it was started).
    for name in ["n1", "n2", "n3"] {
        let ran = count(
            &db,
            &format!("SELECT count(DISTINCT id) FROM journal WHERE node = '{name}'"),
        );
        assert!(ran > 0, "node {name} ran nothing");
    }
    any_node_answers(&all, "r-00001").await;
    // The CLI's view of the cluster, from any node.
    let out = crate::served::cli(&nodes[1], &["nodes"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in ["n1", "n2", "n3"] {
        assert!(text.contains(name), "{text}");
    }
    assert_eq!(text.matches("live").count(), 3, "{text}");
    let (status, view) = nodes[2].get("/v1/instances/r-00000").await;
    assert_eq!(
        (status, &view["status"]),
        (200, &json!("completed")),
        "{view}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_is_taken_over_and_every_flow_completes_once() {
    let db = Database::fresh();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes = three_nodes(&db, &dirs, "", None).await;
    let roots = flows();
    {
        let all: Vec<&Served> = nodes.iter().flatten().collect();
        // Children sleep a while: the killed node has work parked and under way.
        submit(&all, "k", roots, json!({ "ms": 300 })).await;
    }
    let done = "SELECT count(*) FROM instances WHERE flow = 'fanout' AND status = 'completed'";
    until_count(&db, done, roots as u64 / 4, Duration::from_secs(1800));
    let mut killed = nodes[1].take().unwrap();
    killed.child.kill().expect("SIGKILL n2");
    killed.child.wait().unwrap();
    let owned_by_dead = count(
        &db,
        "SELECT count(*) FROM instances WHERE owner = 'n2' AND status = 'running'",
    );

    until_count(&db, done, roots as u64, Duration::from_secs(1800));
    assert_exactly_once(&db, roots as u64);
    let survivors: Vec<&Served> = nodes.iter().flatten().collect();
    let view = until_members(survivors[0], 2).await;
    let n2 = member(&view, "n2");
    assert_eq!(n2["state"], "dead", "{view}");
    assert_eq!(n2["running"], 0, "{view}");
    if owned_by_dead > 0 {
        // Taken over by replay: journals begun by n2 and finished by a survivor.
        let resumed = count(
            &db,
            "SELECT count(*) FROM (SELECT id FROM journal GROUP BY id \
             HAVING bool_or(node = 'n2') AND bool_or(node <> 'n2')) t",
        );
        assert!(
            resumed > 0,
            "{owned_by_dead} instance(s) of n2 left, none resumed elsewhere"
        );
    }
    any_node_answers(&survivors, "k-00001").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_node_hands_its_work_over_without_waiting_out_its_lease() {
    let db = Database::fresh();
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    // A lease far longer than the test's deadline: only a handover can beat it.
    let n1 = leased_node(dirs[0].path(), &db.url, "n1", "", None, "120s");
    let mut n2 = leased_node(dirs[1].path(), &db.url, "n2", "", None, "120s");
    until_members(&n1, 2).await;
    for i in 0..50 {
        let (status, body) = n2
            .post(
                &format!("/v1/flows/sleeper/start?id=nap-{i}"),
                r#"{"ms":3000}"#,
            )
            .await;
        assert!(status == 202 || status == 200, "{status} {body}");
    }
    until_count(
        &db,
        "SELECT count(*) FROM journal WHERE node = 'n2' AND call = 'sleep'",
        50,
        Duration::from_secs(120),
    );
    let (status, body) = n2.post("/v1/drain", "").await;
    assert_eq!(status, 202, "{body}");
    let exit = exited(&mut n2, "the drained node").await;
    assert!(exit.success(), "{exit}");
    // Within 60 s, half the lease: handed over, not taken after a lapse.
    until_count(
        &db,
        "SELECT count(*) FROM instances WHERE flow = 'sleeper' AND status = 'completed'",
        50,
        Duration::from_secs(60),
    );
    let (_, view) = n1.get("/v1/cluster").await;
    assert_eq!(member(&view, "n2")["state"], "left", "{view}");
    let (status, metrics) = n1.call(reqwest::Method::GET, "/metrics", None, None).await;
    assert_eq!(status, 200);
    let text = metrics.as_str().unwrap_or_default().to_string();
    assert!(
        text.contains("sluice_cluster_taken_over_total{node=\"n1\"} 50"),
        "{text}"
    );
    assert!(
        text.contains("sluice_cluster_leader{node=\"n1\"} 1"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_made_on_another_node_stops_the_instance_where_it_runs() {
    let db = Database::fresh();
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let n1 = node(dirs[0].path(), &db.url, "n1", "", None);
    let n2 = node(dirs[1].path(), &db.url, "n2", "", None);
    until_members(&n1, 2).await;
    let (status, body) = n1
        .post("/v1/flows/sleeper/start?id=long", r#"{"ms":600000}"#)
        .await;
    assert_eq!(status, 202, "{body}");
    until_count(
        &db,
        "SELECT count(*) FROM journal WHERE id = 'long' AND call = 'sleep'",
        1,
        Duration::from_secs(60),
    );
    // A waiter on n2 for an instance running on n1.
    let waiting = {
        let url = format!("{}/v1/instances/long/result?wait=120s", n2.url);
        let token = n2.tokens.all.clone();
        tokio::spawn(async move {
            let answer = reqwest::Client::new()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .expect("n2 answers");
            answer.json::<Value>().await.expect("JSON")
        })
    };
    let (status, body) = n2.post("/v1/instances/long/cancel", "").await;
    assert_eq!(status, 200, "{body}");
    let outcome = tokio::time::timeout(Duration::from_secs(120), waiting)
        .await
        .expect("the waiter on n2 learned the end")
        .unwrap();
    assert_eq!(outcome["status"], "cancelled", "{outcome}");
    // n1 stops it: nothing of it stays parked there.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, pools) = n1.get("/v1/pools").await;
        let parked: u64 = pools
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["parked"].as_u64().unwrap_or(0))
            .sum();
        if parked == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "n1 still holds the cancelled instance: {pools}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, view) = n1.get("/v1/instances/long").await;
    assert_eq!(
        (status, &view["status"]),
        (200, &json!("cancelled")),
        "{view}"
    );
}
