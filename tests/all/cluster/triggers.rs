//! A schedule and an event trigger on three nodes fire once per fire and per event, also
//! after the leader dies.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_and_event_triggers_fire_once_per_cluster() {
    const MIDNIGHT: u64 = 1_767_225_600_000;
    let db = Database::fresh();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let clock_dir = tempfile::tempdir().unwrap();
    let clock = clock_dir.path().join("clock");
    let set = |at: u64| {
        let next = clock.with_extension("next");
        std::fs::write(&next, at.to_string()).unwrap();
        std::fs::rename(&next, &clock).unwrap();
    };
    set(MIDNIGHT + 30_000);
    let triggers = "[[triggers.schedule]]\nname = \"tick\"\ncron = \"* * * * *\"\nflow = \"hello\"\ninput = { name = \"tick\" }\n\
                    [[triggers.event]]\nname = \"on-order\"\ntopic = \"orders\"\nflow = \"sleeper\"\n";
    let mut nodes = three_nodes(&db, &dirs, triggers, Some(&clock)).await;
    // The schedule runs once a leader is known: wait for its next fire to be set.
    until_scheduled(
        &nodes.iter().flatten().collect::<Vec<_>>(),
        "2026-01-01T00:01:00.000Z",
    )
    .await;
    let hello = "SELECT count(*) FROM instances WHERE flow = 'hello' AND status = 'completed'";
    for minute in 1..=3u64 {
        set(MIDNIGHT + minute * 60_000);
        until_count(&db, hello, minute, Duration::from_secs(120));
    }
    // 30 events, 10 published on each node.
    for i in 0..30 {
        let node = nodes[i % 3].as_ref().unwrap();
        let (status, body) = node
            .post(
                "/v1/topics/orders/publish",
                &json!({ "ms": 1, "n": i }).to_string(),
            )
            .await;
        assert!(status == 200 || status == 202, "{status} {body}");
    }
    let relayed = "SELECT count(*) FROM instances WHERE flow = 'sleeper' AND status = 'completed'";
    until_count(&db, relayed, 30, Duration::from_secs(120));

    // Fires counted by every node's triggers: one node fired each minute, once.
    let fired = |views: &[Value]| -> (u64, u64) {
        let mut tick = 0;
        let mut order = 0;
        for list in views {
            for t in list.as_array().unwrap() {
                let n = t["fired"].as_u64().unwrap_or(0);
                match t["name"].as_str() {
                    Some("tick") => tick += n,
                    Some("on-order") => order += n,
                    _ => {}
                }
            }
        }
        (tick, order)
    };
    let mut views = Vec::new();
    for node in nodes.iter().flatten() {
        let (status, list) = node.get("/v1/triggers").await;
        assert_eq!(status, 200, "{list}");
        views.push(list);
    }
    assert_eq!(fired(&views), (3, 30), "{views:?}");
    assert_eq!(count(&db, hello), 3);
    assert_eq!(count(&db, relayed), 30);

    // The leader dies: the next one takes the schedule over from its cursor.
    let mut leader = None;
    for (i, node) in nodes.iter().enumerate() {
        let (_, view) = node.as_ref().unwrap().get("/v1/cluster").await;
        if view["leader"] == true {
            leader = Some(i);
        }
    }
    let leader = leader.expect("a leader");
    let mut dead = nodes[leader].take().unwrap();
    dead.child.kill().unwrap();
    dead.child.wait().unwrap();
    let survivors: Vec<&Served> = nodes.iter().flatten().collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    'lead: loop {
        for node in &survivors {
            let (_, view) = node.get("/v1/cluster").await;
            if view["leader"] == true {
                break 'lead;
            }
        }
        assert!(Instant::now() < deadline, "no new leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    until_scheduled(&survivors, "2026-01-01T00:04:00.000Z").await;
    set(MIDNIGHT + 4 * 60_000);
    until_count(&db, hello, 4, Duration::from_secs(120));
    let mut views = Vec::new();
    for node in &survivors {
        views.push(node.get("/v1/triggers").await.1);
    }
    assert_eq!(
        fired(&views).0,
        1,
        "the new leader fired minute 4 once: {views:?}"
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM instances WHERE flow = 'hello'"),
        4
    );
}

/// Wait until one of `nodes` runs schedule `tick` with its next fire at `at` (RFC 3339).
async fn until_scheduled(nodes: &[&Served], at: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        for node in nodes {
            let (_, list) = node.get("/v1/triggers").await;
            let next = list
                .as_array()
                .into_iter()
                .flatten()
                .find(|t| t["name"] == "tick")
                .and_then(|t| t["next_fire"].as_str().map(str::to_string));
            if next.as_deref() == Some(at) {
                return;
            }
        }
        if Instant::now() >= deadline {
            let mut seen = Vec::new();
            for node in nodes {
                seen.push(node.get("/v1/triggers").await.1);
                seen.push(node.get("/v1/cluster").await.1);
            }
            panic!("no node scheduled a fire at {at}: {seen:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
