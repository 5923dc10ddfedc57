//! Several `sluice serve` nodes sharing one PostgreSQL database (each test a fresh one):
//! fan-out work completes exactly once on three nodes, also when one is SIGKILLed midway,
//! drained or cancelled from another node (`work`); a node cut off from the database stops
//! before its work is taken over (`partition`); schedules and event triggers fire once per
//! cluster (`triggers`); sessions and topics keep their guarantees across nodes
//! (`messaging`). This file holds what they share.
//!
//! Flows per run: 1,000 by default, `SLUICE_CLUSTER_FLOWS` for more (the 10,000 of #18 is
//! run that way; see docs/postgres.md).

mod messaging;
mod partition;
mod triggers;
mod work;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::pg::{Database, query};
use crate::served::{Served, serve_with_env, served_config, start_many};

/// The lease of test nodes: long enough that a busy test machine never misses a renewal
/// by accident, short enough for takeovers within a test.
pub(super) const LEASE: &str = "5s";
/// Children of each fan-out root.
pub(super) const FAN: usize = 10;

pub(super) fn flows() -> usize {
    std::env::var("SLUICE_CLUSTER_FLOWS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000)
}

/// A node named `name` on `url`, in `dir`, with `extra` TOML.
pub(super) fn node(dir: &Path, url: &str, name: &str, extra: &str, clock: Option<&Path>) -> Served {
    leased_node(dir, url, name, extra, clock, LEASE)
}

/// [`node`] with another lease.
pub(super) fn leased_node(
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
pub(super) async fn three_nodes(
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
pub(super) fn count(db: &Database, sql: &str) -> u64 {
    query(&db.url, sql)[0][0]
        .as_deref()
        .and_then(|n| n.parse().ok())
        .expect("a count")
}

pub(super) fn status_counts(db: &Database) -> String {
    let rows = query(
        &db.url,
        "SELECT flow, status, count(*) FROM instances GROUP BY 1, 2 ORDER BY 1, 2",
    );
    format!("{rows:?}")
}

/// Wait (up to `limit`) until `sql` counts `want`.
pub(super) fn until_count(db: &Database, sql: &str, want: u64, limit: Duration) {
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
pub(super) async fn submit(nodes: &[&Served], prefix: &str, n: usize, child_input: Value) {
    let body = json!({ "n": FAN, "child": "sleeper", "input": child_input }).to_string();
    start_many(n, |i| {
        let path = format!("/v1/flows/fanout/start?id={prefix}-{i:05}");
        (nodes[i % nodes.len()], path, body.clone())
    })
    .await;
}

/// Wait until `node` sees `live` live members.
pub(super) async fn until_members(node: &Served, live: usize) -> Value {
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
pub(super) fn member(view: &Value, name: &str) -> Value {
    view["members"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("no member {name} in {view}"))
        .clone()
}

/// Wait (up to 120 s) until `node`'s process has exited.
pub(super) async fn exited(node: &mut Served, what: &str) -> std::process::ExitStatus {
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
pub(super) fn assert_exactly_once(db: &Database, roots: u64) {
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

pub(super) async fn any_node_answers(nodes: &[&Served], id: &str) {
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
