//! Several `sluice serve` nodes sharing one PostgreSQL database (each test a fresh one):
//! fan-out work completes exactly once on three nodes, also when one is SIGKILLed midway;
//! schedules and event triggers fire once per cluster; a node cut off from the database
//! stops before its work is taken over, and no instance ever runs on two nodes.
//!
//! Flows per run: 1,000 by default, `SLUICE_CLUSTER_FLOWS` for more (the 10,000 of #18 is
//! run that way; see docs/postgres.md).

use std::io::{Read, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::pg::{Database, query};
use crate::served::{Served, serve_with_env, served_config, start_many};

/// The lease of test nodes: long enough that a busy test machine never misses a renewal
/// by accident, short enough for takeovers within a test.
const LEASE: &str = "5s";
/// Children of each fan-out root.
const FAN: usize = 10;

fn flows() -> usize {
    std::env::var("SLUICE_CLUSTER_FLOWS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000)
}

/// A node named `name` on `url`, in `dir`, with `extra` TOML.
fn node(dir: &Path, url: &str, name: &str, extra: &str, clock: Option<&Path>) -> Served {
    leased_node(dir, url, name, extra, clock, LEASE)
}

/// [`node`] with another lease.
fn leased_node(
    dir: &Path,
    url: &str,
    name: &str,
    extra: &str,
    clock: Option<&Path>,
    lease: &str,
) -> Served {
    let extra = format!(
        "[store]\nurl = \"{url}\"\n[cluster]\nname = \"{name}\"\nlease = \"{lease}\"\n\
         [pools.default]\nsize = 8\nqueue = 1000000\n{extra}"
    );
    let (config, tokens) = served_config(dir, &["fanout", "sleeper", "hello"], &extra);
    let env: Vec<(&str, &Path)> = clock
        .map(|c| ("SLUICE_TEST_CLOCK", c))
        .into_iter()
        .collect();
    serve_with_env(&config, &dir.join("data"), tokens, &env)
}

/// Nodes `n1`–`n3` in `dirs` on `db`, once all three are live members (an option each, so
/// a test can take one out to kill it).
async fn three_nodes(
    db: &Database,
    dirs: &[tempfile::TempDir],
    extra: &str,
    clock: Option<&Path>,
) -> Vec<Option<Served>> {
    let nodes: Vec<Option<Served>> = (0..3)
        .map(|i| {
            Some(node(
                dirs[i].path(),
                &db.url,
                &format!("n{}", i + 1),
                extra,
                clock,
            ))
        })
        .collect();
    until_members(nodes[0].as_ref().expect("n1"), 3).await;
    nodes
}

/// Count rows of `sql` (a `SELECT count(*)`).
fn count(db: &Database, sql: &str) -> u64 {
    query(&db.url, sql)[0][0]
        .as_deref()
        .and_then(|n| n.parse().ok())
        .expect("a count")
}

fn status_counts(db: &Database) -> String {
    let rows = query(
        &db.url,
        "SELECT flow, status, count(*) FROM instances GROUP BY 1, 2 ORDER BY 1, 2",
    );
    format!("{rows:?}")
}

/// Wait (up to `limit`) until `sql` counts `want`.
fn until_count(db: &Database, sql: &str, want: u64, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let got = count(db, sql);
        if got >= want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{got} of {want} after {limit:?} ({sql}); by status: {}",
            status_counts(db)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Start `n` fan-out roots `<prefix>-<i>` through `nodes`, in turn, 32 at a time.
async fn submit(nodes: &[&Served], prefix: &str, n: usize, child_input: Value) {
    let body = json!({ "n": FAN, "child": "sleeper", "input": child_input }).to_string();
    start_many(n, |i| {
        let path = format!("/v1/flows/fanout/start?id={prefix}-{i:05}");
        (nodes[i % nodes.len()], path, body.clone())
    })
    .await;
}

/// Wait until `node` sees `live` live members.
async fn until_members(node: &Served, live: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, view) = node.get("/v1/cluster").await;
        assert_eq!(status, 200, "{view}");
        let n = view["members"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["state"] == "live")
            .count();
        if n == live {
            return view;
        }
        assert!(
            Instant::now() < deadline,
            "never {live} live members: {view}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Member `name` in a `/v1/cluster` view.
fn member(view: &Value, name: &str) -> Value {
    view["members"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("no member {name} in {view}"))
        .clone()
}

/// Wait (up to 120 s) until `node`'s process has exited.
async fn exited(node: &mut Served, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = node.child.try_wait().expect("the node's status") {
            return status;
        }
        assert!(Instant::now() < deadline, "{what} never stopped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every root completed with `FAN` results, every child completed once, nothing else.
fn assert_exactly_once(db: &Database, roots: u64) {
    let sql = |flow: &str, status: &str| {
        format!("SELECT count(*) FROM instances WHERE flow = '{flow}' AND status = '{status}'")
    };
    assert_eq!(count(db, &sql("fanout", "completed")), roots);
    assert_eq!(
        count(db, &sql("sleeper", "completed")),
        roots * FAN as u64,
        "a child ran twice or never: {}",
        status_counts(db)
    );
    assert_eq!(
        count(db, "SELECT count(*) FROM instances"),
        roots * (1 + FAN as u64)
    );
    assert_eq!(
        count(
            db,
            "SELECT count(*) FROM instances WHERE flow = 'fanout' AND \
             json_array_length(convert_from(output, 'UTF8')::json -> 'results') = 10"
        ),
        roots,
        "every root has all its children's outputs"
    );
    // No instance ran on two nodes at once: each node's entries of a journal are one
    // unbroken run of positions (a node that lost an instance never wrote to it again).
    assert_eq!(
        count(
            db,
            "SELECT count(*) FROM (SELECT id, node FROM journal GROUP BY id, node \
             HAVING max(position) - min(position) + 1 <> count(*)) t"
        ),
        0,
        "two nodes' entries interleave in a journal"
    );
}

async fn any_node_answers(nodes: &[&Served], id: &str) {
    let mut outputs = Vec::new();
    for node in nodes {
        let (status, view) = node
            .get(&format!("/v1/instances/{id}/result?wait=60s"))
            .await;
        assert_eq!(status, 200, "{view}");
        outputs.push(view["output"].clone());
    }
    assert!(outputs.windows(2).all(|w| w[0] == w[1]), "{outputs:?}");
    assert_eq!(outputs[0]["results"].as_array().map(Vec::len), Some(FAN));
}

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

/// A TCP relay to PostgreSQL that can be cut: after [`Relay::cut`] no byte passes either
/// way and the connections stay open, as in a network partition (not a reset).
struct Relay {
    port: u16,
    cut: Arc<AtomicBool>,
}

impl Relay {
    fn to(target: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let (target, flag) = (target.to_string(), cut.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                if flag.load(Ordering::Acquire) {
                    std::mem::forget(client); // accepted, never answered
                    continue;
                }
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let flag = flag.clone();
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16 * 1024];
                        loop {
                            let n = match from.read(&mut buf) {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            if flag.load(Ordering::Acquire) {
                                // Partitioned: hold everything, forever.
                                std::mem::forget(from);
                                std::mem::forget(to);
                                return;
                            }
                            if to.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    });
                }
            }
        });
        Relay { port, cut }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::Release);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_node_stops_before_its_work_is_taken_over() {
    let db = Database::fresh();
    let (host, rest) = db
        .url
        .strip_prefix("postgres://")
        .and_then(|u| u.split_once('@'))
        .map(|(user, rest)| (user.to_string(), rest.to_string()))
        .expect("a postgres:// URL with a user");
    let (server, database) = rest.split_once('/').expect("a database in the URL");
    let relay = Relay::to(server);
    let cut_url = format!("postgres://{host}@127.0.0.1:{}/{database}", relay.port);
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let n1 = node(dirs[0].path(), &db.url, "n1", "", None);
    let n2 = node(dirs[1].path(), &db.url, "n2", "", None);
    let mut n3 = node(dirs[2].path(), &cut_url, "n3", "", None);
    until_members(&n1, 3).await;
    // Work started on n3 only, its children sleeping 20 × 100 ms each.
    let roots = 100;
    submit(&[&n3], "p", roots, json!({ "ms": 100, "times": 20 })).await;
    until_count(
        &db,
        "SELECT count(*) FROM journal WHERE node = 'n3' AND call = 'sleep'",
        200,
        Duration::from_secs(300),
    );
    relay.cut();
    // n3 cannot renew: it stops by itself, before its lease can lapse.
    let exit = exited(&mut n3, "the partitioned node").await;
    assert_eq!(exit.code(), Some(3), "{exit}");
    let said: Vec<String> = n3.stderr.try_iter().collect();
    assert!(
        said.iter()
            .any(|l| l.contains("lost its place in the cluster")),
        "{}",
        said.join("\n")
    );

    let done = "SELECT count(*) FROM instances WHERE flow = 'fanout' AND status = 'completed'";
    until_count(&db, done, roots as u64, Duration::from_secs(600));
    assert_exactly_once(&db, roots as u64);
    // Taken over by replay, and every entry n3 wrote precedes every entry of the others.
    let both = count(
        &db,
        "SELECT count(*) FROM (SELECT id FROM journal GROUP BY id \
         HAVING bool_or(node = 'n3') AND bool_or(node <> 'n3')) t",
    );
    assert!(both > 0, "nothing of n3 was taken over");
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM (SELECT id, max(position) FILTER (WHERE node = 'n3') AS last3, \
             min(position) FILTER (WHERE node <> 'n3') AS first_other FROM journal GROUP BY id) t \
             WHERE last3 > first_other"
        ),
        0,
        "n3 wrote to an instance after another node took it over"
    );
    any_node_answers(&[&n1, &n2], "p-00001").await;
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
