//! Sessions between two `sluice serve` nodes on loopback (PartyA and PartyB, every pool of
//! size 1): PartyA's `buyer`s each open a session with PartyB, whose `seller` answers; every
//! message is answered exactly once, also when either node is SIGKILLed midway and
//! restarted, and when PartyB is down for a while; what is not a peer's to ask is refused
//! on both sides with nothing started.
//!
//! Flows per run: 400 by default, `SLUICE_PEER_FLOWS` for more (the 10,000 of #17 is run
//! that way; see docs/peers.md). `SLUICE_PEER_DOWN_SECS` sets how long PartyB is down
//! (default 30).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::relay::Relay;
use crate::served::{Served, serve, served_config_as, start_many};
use crate::support::guest;

fn flows() -> usize {
    std::env::var("SLUICE_PEER_FLOWS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(400)
}

/// The seller's price for item `i`: ten per letter (see the `seller` guest).
fn item(i: usize) -> String {
    "x".repeat(1 + i % 7)
}

/// Two parties' directories, the tokens between them, and a relay in front of each.
struct Parties {
    dir: tempfile::TempDir,
    relay_a: Relay,
    relay_b: Relay,
    /// What PartyA presents to PartyB, and its hash.
    a_to_b: (String, String),
    /// What PartyB presents to PartyA, and its hash.
    b_to_a: (String, String),
}

impl Parties {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for side in ["a", "b"] {
            std::fs::create_dir_all(dir.path().join(side)).unwrap();
        }
        Parties {
            dir,
            relay_a: Relay::new(),
            relay_b: Relay::new(),
            a_to_b: sluice::api::new_token(),
            b_to_a: sluice::api::new_token(),
        }
    }

    fn path(&self, side: &str) -> PathBuf {
        self.dir.path().join(side)
    }

    /// The `[peers.<party>]` table naming `relay`'s URL, the token presented (written to a
    /// file in `dir`) and the hash accepted.
    fn peer_table(dir: &Path, party: &str, url: &str, presents: &str, accepts: &str) -> String {
        let file = format!("to-{party}.token");
        std::fs::write(dir.join(&file), presents).unwrap();
        format!(
            "[peers.{party}]\nurl = \"{url}\"\ntoken-file = \"{file}\"\naccepts = \"{accepts}\"\n"
        )
    }

    /// Start PartyA (`buyer`, every pool of size 1, `node_keys` in `[node]`).
    fn start_a(&self, node_keys: &str) -> Served {
        let dir = self.path("a");
        let peer = Self::peer_table(
            &dir,
            "PartyB",
            &self.relay_b.url(),
            &self.a_to_b.0,
            &self.b_to_a.1,
        );
        let extra = format!("{POOLS}{peer}");
        let keys = format!("identity = \"PartyA\"\n{node_keys}");
        let (config, tokens) = served_config_as(&dir, &keys, &["buyer", "hello"], &extra);
        let node = serve(&config, &dir.join("data"), tokens);
        self.relay_a.point_to(Some(&node.url));
        node
    }

    /// Start PartyB (`seller` responds to `buyer`; every pool of size 1).
    fn start_b(&self) -> Served {
        let dir = self.path("b");
        let peer = Self::peer_table(
            &dir,
            "PartyA",
            &self.relay_a.url(),
            &self.b_to_a.0,
            &self.a_to_b.1,
        );
        let seller = format!(
            "[[flows]]\nname = \"seller\"\ncomponent = \"{}\"\ninitiated-by = \"buyer\"\n",
            guest("seller").display()
        );
        let extra = format!("{POOLS}{peer}{seller}");
        let (config, tokens) = served_config_as(&dir, "identity = \"PartyB\"", &["hello"], &extra);
        let node = serve(&config, &dir.join("data"), tokens);
        self.relay_b.point_to(Some(&node.url));
        node
    }

    /// `SELECT count(*) …` in `side`'s store.
    fn count(&self, side: &str, sql: &str) -> u64 {
        let rows = self.query(side, sql);
        rows[0][0].as_u64().expect("a count")
    }

    /// Rows of `sql` in `side`'s store, each a list of JSON values.
    fn query(&self, side: &str, sql: &str) -> Vec<Vec<Value>> {
        let path = self.path(side).join("data").join(sluice::store::STORE_FILE);
        let conn = rusqlite::Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        conn.busy_timeout(Duration::from_secs(10)).unwrap();
        let mut stmt = conn.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        let n = stmt.column_count();
        stmt.query_map([], |r| {
            (0..n)
                .map(|i| {
                    Ok(match r.get_ref(i)? {
                        rusqlite::types::ValueRef::Integer(v) => json!(v),
                        rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                            json!(String::from_utf8_lossy(t))
                        }
                        rusqlite::types::ValueRef::Null => Value::Null,
                        rusqlite::types::ValueRef::Real(v) => json!(v),
                    })
                })
                .collect()
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }

    /// Wait (up to `limit`) until `sql` in `side`'s store counts `want`.
    fn until(&self, side: &str, sql: &str, want: u64, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let got = self.count(side, sql);
            if got == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{got}, not {want}, after {limit:?} on {side} ({sql}); A: {:?}; B: {:?}",
                self.query("a", STATUSES),
                self.query("b", STATUSES)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

const POOLS: &str = "[pools.default]\nsize = 1\nqueue = 1000000\n\
                     [pools.\"Peer-Origin\"]\nsize = 1\nqueue = 1000000\n\
                     [pools.\"RPC-Origin\"]\nsize = 1\nqueue = 1000000\n";
const STATUSES: &str = "SELECT flow, status, count(*) FROM instances GROUP BY 1, 2 ORDER BY 1, 2";

/// Start `n` buyers `b-<i>` on `a`, each bidding on `item(i)` with PartyB.
async fn buy(a: &Served, n: usize) {
    start_many(n, |i| {
        let body = json!({ "party": "PartyB", "item": item(i), "bid": 50 }).to_string();
        (a, format!("/v1/flows/buyer/start?id=b-{i:05}"), body)
    })
    .await;
}

/// Every buyer completed once with its own seller's answer, every seller ran once with
/// the buyer's two messages in order, and nothing is left to deliver.
fn assert_exactly_once(p: &Parties, n: usize) {
    let limit = Duration::from_secs(120 + n as u64 / 20);
    let n64 = n as u64;
    p.until(
        "a",
        "SELECT count(*) FROM instances WHERE flow = 'buyer' AND status = 'completed'",
        n64,
        limit,
    );
    p.until(
        "b",
        "SELECT count(*) FROM instances WHERE flow = 'seller' AND status = 'completed'",
        n64,
        limit,
    );
    // The buyers' ends reach PartyB, and PartyB forgets what PartyA acknowledged.
    p.until("a", "SELECT count(*) FROM peer_outbox", 0, limit);
    p.until("b", "SELECT count(*) FROM peer_outbox", 0, limit);
    assert_eq!(
        p.count("a", "SELECT count(*) FROM instances"),
        n64,
        "{:?}",
        p.query("a", STATUSES)
    );
    assert_eq!(
        p.count("b", "SELECT count(*) FROM instances"),
        n64,
        "no responder twice: {:?}",
        p.query("b", STATUSES)
    );
    // Each answer is its own seller's (the price depends on the item).
    for row in p.query("a", "SELECT id, output FROM instances WHERE flow = 'buyer'") {
        let id = row[0].as_str().unwrap();
        let i: usize = id.trim_start_matches("b-").parse().unwrap();
        let out: Value = serde_json::from_str(row[1].as_str().unwrap()).unwrap();
        assert_eq!(out["price"], json!(10 * item(i).len()), "{id}: {out}");
        assert_eq!(out["item"], json!(item(i)), "{id}: {out}");
    }
    // In order: a seller that took the bid before the request would have failed to read it.
    for row in p.query(
        "b",
        "SELECT id, output FROM instances WHERE flow = 'seller'",
    ) {
        let out: Value = serde_json::from_str(row[1].as_str().unwrap()).unwrap();
        assert_eq!(out["buyer"], "PartyA", "{out}");
        assert_eq!(out["bid"], 50, "{out}");
    }
    let journal = |side: &str, call: &str| {
        p.count(
            side,
            &format!("SELECT count(*) FROM journal WHERE call = '{call}'"),
        )
    };
    assert_eq!(journal("a", "send"), 2 * n64);
    assert_eq!(journal("a", "receive"), n64);
    assert_eq!(journal("b", "receive"), 2 * n64, "each message taken once");
    assert_eq!(journal("b", "send"), n64);
    assert_eq!(
        p.count(
            "b",
            "SELECT count(*) FROM peer_inbox WHERE kind = 'message'"
        ),
        2 * n64
    );
    assert_eq!(
        p.count(
            "a",
            "SELECT count(*) FROM peer_inbox WHERE kind = 'message'"
        ),
        n64
    );
    assert_eq!(
        p.count("b", "SELECT count(*) FROM peer_inbox WHERE kind = 'end'"),
        n64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_is_answered_exactly_once_between_two_nodes() {
    let p = Parties::new();
    let b = p.start_b();
    let a = p.start_a("");
    let n = flows();
    buy(&a, n).await;
    assert_exactly_once(&p, n);
    // Both ends see each other, with their figures.
    let (status, peers) = a.get("/v1/peers").await;
    assert_eq!(status, 200, "{peers}");
    assert_eq!(peers[0]["party"], "PartyB");
    assert_eq!(peers[0]["reachable"], true, "{peers}");
    assert_eq!(peers[0]["outbox"], 0, "{peers}");
    assert!(
        peers[0]["sent"].as_u64().unwrap() >= 2 * n as u64,
        "{peers}"
    );
    let (_, metrics) = b.call(reqwest::Method::GET, "/metrics", None, None).await;
    let text = metrics.as_str().unwrap_or_default().to_string();
    assert!(
        text.contains(&format!(
            "sluice_peer_received_total{{peer=\"PartyA\"}} {}",
            3 * n
        )),
        "{text}"
    );
    let out = crate::served::cli(&a, &["peers"]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && shown.contains("PartyB") && shown.contains("yes"),
        "{shown}"
    );
}

/// Kill `side`'s node (SIGKILL) once a third of the buyers completed, restart it, and
/// check everything still happens exactly once.
async fn crash_midway(side: &str) {
    let p = Parties::new();
    let mut b = Some(p.start_b());
    let mut a = Some(p.start_a(""));
    let n = flows();
    buy(a.as_ref().unwrap(), n).await;
    let third = n as u64 / 3;
    let deadline = Instant::now() + Duration::from_secs(120 + n as u64 / 20);
    while p.count(
        "a",
        "SELECT count(*) FROM instances WHERE flow = 'buyer' AND status = 'completed'",
    ) < third
    {
        assert!(
            Instant::now() < deadline,
            "no third completed: {:?}",
            p.query("a", STATUSES)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let victim = if side == "a" { &mut a } else { &mut b };
    let mut node = victim.take().unwrap();
    node.child.kill().unwrap(); // SIGKILL
    node.child.wait().unwrap();
    drop(node);
    *victim = Some(if side == "a" {
        p.start_a("")
    } else {
        p.start_b()
    });
    assert_exactly_once(&p, n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_responders_node_killed_midway_answers_every_message_once_after_restart() {
    crash_midway("b").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_initiators_node_killed_midway_gets_every_answer_once_after_restart() {
    crash_midway("a").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_down_for_a_while_delays_and_loses_nothing() {
    let down = std::env::var("SLUICE_PEER_DOWN_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30u64);
    let p = Parties::new();
    // A low bound on resident instances: waiting buyers are evicted.
    let a = p.start_a("max-resident = 10");
    let n = 60;
    buy(&a, n).await;
    // PartyB is not there: every buyer waits for it to open the session, parked.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, metrics) = a.call(reqwest::Method::GET, "/metrics", None, None).await;
        let text = metrics.as_str().unwrap_or_default().to_string();
        let evicted = text
            .lines()
            .find_map(|l| l.strip_prefix("sluice_evictions_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        if evicted >= (n - 10) as f64 {
            assert!(
                text.contains("sluice_peer_reachable{peer=\"PartyB\"} 0"),
                "{text}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "buyers were not evicted while PartyB was down:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(down)).await;
    assert_eq!(
        p.count(
            "a",
            "SELECT count(*) FROM instances WHERE status != 'running'"
        ),
        0,
        "nothing ends while its peer is down: {:?}",
        p.query("a", STATUSES)
    );
    let _b = p.start_b();
    assert_exactly_once(&p, n);
}

/// The JSON error a failed instance `id` on `node` ended with.
async fn failure_of(node: &Served, id: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, view) = node.get(&format!("/v1/instances/{id}")).await;
        if view["status"] == "failed" {
            return view.to_string();
        }
        assert!(
            view["status"] == "running" || view["status"] == "queued",
            "{id}: {view}"
        );
        assert!(Instant::now() < deadline, "{id} never failed: {view}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Wait until `node` printed a line containing every one of `words`.
fn logged(node: &Served, words: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    loop {
        while let Ok(line) = node.stderr.try_recv() {
            if words.iter().all(|w| line.contains(w)) {
                return line;
            }
            seen.push(line);
        }
        assert!(
            Instant::now() < deadline,
            "no line with {words:?} in:\n{}",
            seen.join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_is_not_a_peers_to_ask_is_refused_on_both_sides() {
    let p = Parties::new();
    let b = p.start_b();
    // PartyA, rightly configured, registers the buyer also as `haggler`, which no flow on
    // PartyB answers.
    let dir = p.path("a");
    let peer = Parties::peer_table(&dir, "PartyB", &p.relay_b.url(), &p.a_to_b.0, &p.b_to_a.1);
    let haggler = format!(
        "[[flows]]\nname = \"haggler\"\ncomponent = \"{}\"\n",
        guest("buyer").display()
    );
    let (config, tokens) = served_config_as(
        &dir,
        "identity = \"PartyA\"",
        &["buyer"],
        &format!("{peer}{haggler}"),
    );
    let a = serve(&config, &dir.join("data"), tokens);
    p.relay_a.point_to(Some(&a.url));
    let start = |node: &Served, flow: &str, id: &str, party: &str| {
        let body = json!({ "party": party, "item": "x", "bid": 50 }).to_string();
        let path = format!("/v1/flows/{flow}/start?id={id}");
        let node_url = node.url.clone();
        let token = node.tokens.all.clone();
        async move {
            let (status, answer) = reqwest_post(&node_url, &path, &token, &body).await;
            assert!(status == 202 || status == 200, "{status} {answer}");
        }
    };
    start(&a, "haggler", "h-1", "PartyB").await;
    let why = failure_of(&a, "h-1").await;
    assert!(
        why.contains("no flow on `PartyB` responds to `haggler`"),
        "{why}"
    );
    logged(&b, &["refused to open a session", "haggler"]);

    start(&a, "buyer", "z-1", "PartyZ").await;
    let why = failure_of(&a, "z-1").await;
    assert!(
        why.contains("unknown party `PartyZ`") && why.contains("its peers are PartyB"),
        "{why}"
    );

    // A node presenting the wrong token as PartyA.
    let wrong = p.path("wrong");
    std::fs::create_dir_all(&wrong).unwrap();
    let (bad_token, _) = sluice::api::new_token();
    let peer = Parties::peer_table(&wrong, "PartyB", &p.relay_b.url(), &bad_token, &p.b_to_a.1);
    let (config, tokens) = served_config_as(&wrong, "identity = \"PartyA\"", &["buyer"], &peer);
    let impostor = serve(&config, &wrong.join("data"), tokens);
    start(&impostor, "buyer", "w-1", "PartyB").await;
    let why = failure_of(&impostor, "w-1").await;
    assert!(why.contains("wrong credential for peer `PartyA`"), "{why}");
    logged(&b, &["refused a request from `PartyA`", "wrong credential"]);

    // A node PartyB has no entry for.
    let stranger_dir = p.path("c");
    std::fs::create_dir_all(&stranger_dir).unwrap();
    let peer = Parties::peer_table(
        &stranger_dir,
        "PartyB",
        &p.relay_b.url(),
        &p.a_to_b.0,
        &p.b_to_a.1,
    );
    let (config, tokens) =
        served_config_as(&stranger_dir, "identity = \"PartyC\"", &["buyer"], &peer);
    let stranger = serve(&config, &stranger_dir.join("data"), tokens);
    start(&stranger, "buyer", "c-1", "PartyB").await;
    let why = failure_of(&stranger, "c-1").await;
    assert!(
        why.contains("`PartyC` is not a configured peer of `PartyB`"),
        "{why}"
    );
    logged(
        &b,
        &["refused a request from `PartyC`", "not a configured peer"],
    );

    // Nothing started on PartyB, and it still serves its real peer.
    assert_eq!(
        p.count("b", "SELECT count(*) FROM instances"),
        0,
        "{:?}",
        p.query("b", STATUSES)
    );
    start(&a, "buyer", "ok-1", "PartyB").await;
    p.until(
        "a",
        "SELECT count(*) FROM instances WHERE id = 'ok-1' AND status = 'completed'",
        1,
        Duration::from_secs(120),
    );
    let (_, peers) = b.get("/v1/peers").await;
    assert!(peers[0]["refused"].as_u64().unwrap() >= 2, "{peers}");
}

async fn reqwest_post(url: &str, path: &str, token: &str, body: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{url}{path}"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("the node answers");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_responders_node_in_a_cluster_killed_midway_hands_its_sessions_over() {
    let db = crate::pg::Database::fresh();
    let p = Parties::new();
    // PartyB is two nodes on one PostgreSQL database; PartyA's config names one URL.
    let b_node = |name: &str| -> Served {
        let dir = p.path(name);
        std::fs::create_dir_all(&dir).unwrap();
        let peer = Parties::peer_table(&dir, "PartyA", &p.relay_a.url(), &p.b_to_a.0, &p.a_to_b.1);
        let extra = format!(
            "[store]\nurl = \"{}\"\n[cluster]\nname = \"{name}\"\nlease = \"5s\"\n{POOLS}{peer}\
             [[flows]]\nname = \"seller\"\ncomponent = \"{}\"\ninitiated-by = \"buyer\"\n",
            db.url,
            guest("seller").display()
        );
        let (config, tokens) = served_config_as(&dir, "identity = \"PartyB\"", &["hello"], &extra);
        serve(&config, &dir.join("data"), tokens)
    };
    let mut b1 = b_node("b1");
    let b2 = b_node("b2");
    p.relay_b.point_to(Some(&b1.url));
    let a = p.start_a("");
    let n = 100;
    // Each seller sleeps between the request and the bid: all parked on b1 when it dies.
    start_many(n, |i| {
        let body = json!({ "party": "PartyB", "item": item(i), "bid": 50, "pause_ms": 1500 });
        (
            &a,
            format!("/v1/flows/buyer/start?id=b-{i:05}"),
            body.to_string(),
        )
    })
    .await;
    let pg_count = |sql: &str| -> u64 {
        crate::pg::query(&db.url, sql)[0][0]
            .as_deref()
            .and_then(|v| v.parse().ok())
            .expect("a count")
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while pg_count("SELECT count(*) FROM journal WHERE call = 'sleep'") < n as u64 {
        assert!(Instant::now() < deadline, "the sellers never all slept");
        std::thread::sleep(Duration::from_millis(100));
    }
    b1.child.kill().unwrap(); // SIGKILL
    b1.child.wait().unwrap();
    p.relay_b.point_to(Some(&b2.url));
    p.until(
        "a",
        "SELECT count(*) FROM instances WHERE flow = 'buyer' AND status = 'completed'",
        n as u64,
        Duration::from_secs(180),
    );
    let n = n as u64;
    assert_eq!(
        pg_count("SELECT count(*) FROM instances WHERE flow = 'seller' AND status = 'completed'"),
        n
    );
    assert_eq!(
        pg_count("SELECT count(*) FROM instances"),
        n,
        "no responder twice"
    );
    assert_eq!(
        pg_count("SELECT count(*) FROM journal WHERE call = 'receive'"),
        2 * n
    );
    // Every answer came from b2, which took the sessions over.
    assert_eq!(
        pg_count("SELECT count(*) FROM journal WHERE call = 'send' AND node = 'b2'"),
        n
    );
    for row in p.query("a", "SELECT id, output FROM instances WHERE flow = 'buyer'") {
        let i: usize = row[0]
            .as_str()
            .unwrap()
            .trim_start_matches("b-")
            .parse()
            .unwrap();
        let out: Value = serde_json::from_str(row[1].as_str().unwrap()).unwrap();
        assert_eq!(out["price"], json!(10 * item(i).len()), "{out}");
    }
}
