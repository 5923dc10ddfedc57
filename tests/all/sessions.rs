//! Sessions between flows and events on topics, in a node: a trade between `buyer` and
//! its responder `seller`, seen by a `watcher`; clear failures; eviction while waiting;
//! a message in flight when the node crashes; events and waits across restarts.

use std::time::Duration;

use serde_json::{Value, json};
use sluice::store::{JournalStore, Status};
use sluice::{Node, StartRequest};

use crate::durable_node::{
    config, crash, peak_parked, record, show, sluice_output, spawn, wait_for_journal,
    wait_until_past,
};
use crate::support::{guest, node, run, until};

fn trading_config(extra: &str) -> String {
    let entry = |name: &str, more: &str| {
        format!(
            "[[flows]]\nname = \"{name}\"\ncomponent = \"{}\"\n{more}",
            guest(name).display()
        )
    };
    format!(
        "[node]\nidentity = \"PartyA\"\n{extra}\n{}{}{}",
        // A bounded wall clock: a lost message fails the test instead of hanging it.
        entry("buyer", "timeout = \"60s\"\n"),
        entry("seller", "initiated-by = \"buyer\"\ntimeout = \"60s\"\n"),
        entry("watcher", "")
    )
}

fn json_input(v: Value) -> Vec<u8> {
    serde_json::to_vec(&v).unwrap()
}

/// The output of instance `id`, waited for by attaching to it (starting a known id).
async fn output_of(node: &Node, id: &str) -> Value {
    let attach = StartRequest::rpc("seller", Vec::new(), "test").with_id(id);
    let handle = node.start(attach).await.unwrap();
    serde_json::from_slice(&handle.outcome().await.unwrap()).unwrap()
}

/// The JSON a successful `sluice run` printed.
fn output_json(out: &std::process::Output) -> Value {
    assert!(out.status.success(), "{}", show(out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(out)))
}

/// A data directory and a trading config for `sluice run` nodes.
struct TradingDir {
    dir: tempfile::TempDir,
    data: std::path::PathBuf,
    cfg: String,
    data_s: String,
}

impl TradingDir {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let cfg = config(dir.path(), "trade.toml", &[], &trading_config(""));
        let (cfg, data_s) = (cfg.display().to_string(), data.display().to_string());
        TradingDir {
            dir,
            data,
            cfg,
            data_s,
        }
    }

    /// `sluice run FLOW --input INPUT --id ID` on this directory.
    fn argv<'a>(&'a self, flow: &'a str, input: &'a str, id: &'a str) -> [&'a str; 10] {
        [
            "run",
            flow,
            "--config",
            &self.cfg,
            "--input",
            input,
            "--id",
            id,
            "--data-dir",
            &self.data_s,
        ]
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buyer_trades_with_its_responder_and_a_watcher_sees_the_trade() {
    let node = node(&trading_config("")).await;
    let watcher = node
        .start(StartRequest::rpc(
            "watcher",
            json_input(json!({ "topic": "trades", "count": 1, "timeout_ms": 30_000 })),
            "test",
        ))
        .await
        .unwrap();
    let bought = node
        .run(
            StartRequest::rpc(
                "buyer",
                json_input(json!({ "item": "bond", "bid": 45 })),
                "test",
            )
            .with_id("buy-1"),
        )
        .await
        .unwrap()
        .unwrap();
    let bought: Value = serde_json::from_slice(&bought).unwrap();
    assert_eq!(
        bought,
        json!({ "item": "bond", "price": 40, "accepted": true })
    );
    // The responder's id derives from the session: `<buyer>.<position>.peer`.
    let sold = output_of(&node, "buy-1.0.peer").await;
    assert_eq!(
        sold,
        json!({ "buyer": "PartyA", "item": "bond", "bid": 45, "price": 40, "accepted": true })
    );
    let seen: Value = serde_json::from_slice(&watcher.outcome().await.unwrap()).unwrap();
    assert_eq!(
        seen,
        json!({ "events": [{ "item": "bond", "price": 40 }], "timed_out": false })
    );
    // Both ends ended: the node forgets the session.
    until("the session forgotten", Duration::from_secs(5), || {
        node.messaging().sessions.live() == 0
    })
    .await;
    let metrics = node.render_metrics();
    assert!(metrics.contains("sluice_live_sessions 0\n"), "{metrics}");
    // An event nobody waits for is counted until taken.
    run(&node, "buyer", json!({ "item": "gilt", "bid": 45 }))
        .await
        .unwrap();
    let metrics = node.render_metrics();
    assert!(metrics.contains("sluice_waiting_events 1\n"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_fail_clearly_and_a_wait_for_an_event_times_out() {
    let node = node(&trading_config("")).await;
    let e = run(
        &node,
        "buyer",
        json!({ "party": "PartyZ", "item": "bond", "bid": 1 }),
    )
    .await
    .unwrap_err();
    assert!(
        e.to_string().contains(
            "session with PartyZ: unknown party `PartyZ`: this node is `PartyA` and has no peers"
        ),
        "{e}"
    );
    // Without a responder registered.
    let lone = crate::support::node(&format!(
        "[node]\nidentity = \"PartyA\"\n[[flows]]\nname = \"buyer\"\ncomponent = \"{}\"\n",
        guest("buyer").display()
    ))
    .await;
    let e = run(&lone, "buyer", json!({ "item": "bond", "bid": 1 }))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains(
            "no flow on `PartyA` responds to `buyer` (register one with `initiated-by = \"buyer\"`)"
        ),
        "{e}"
    );
    // A seller started by hand is not a responder.
    let e = run(&node, "seller", json!(null)).await.unwrap_err();
    assert!(e.to_string().contains("only as the responder"), "{e}");
    let out = run(
        &node,
        "watcher",
        json!({ "topic": "quiet", "count": 1, "timeout_ms": 50 }),
    )
    .await
    .unwrap();
    assert_eq!(out, json!({ "events": [], "timed_out": true }));
}

#[test]
fn a_duplicate_responder_is_a_config_error() {
    let text = format!(
        "{}[[flows]]\nname = \"seller2\"\ncomponent = \"x.wasm\"\ninitiated-by = \"buyer\"\n",
        trading_config("")
    );
    let e = sluice::NodeConfig::parse(&text, "t.toml".as_ref(), ".".as_ref()).unwrap_err();
    assert!(
        e.to_string().contains(
            "flows[3].initiated-by = \"buyer\": `seller` (flows[1]) already responds to `buyer`"
        ),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_waiting_on_sessions_and_events_are_evicted_and_rebuilt() {
    let node = node(&trading_config("max-resident = 4")).await;
    let watchers: Vec<_> = {
        let mut v = Vec::new();
        for _ in 0..5 {
            v.push(
                node.start(StartRequest::rpc(
                    "watcher",
                    json_input(json!({ "topic": "trades", "count": 4 })),
                    "test",
                ))
                .await
                .unwrap(),
            );
        }
        v
    };
    let mut buyers = Vec::new();
    for i in 0..20u64 {
        let input = json!({ "item": "bond", "bid": 40 + i, "pause_ms": 30 });
        buyers.push(
            node.start(StartRequest::rpc("buyer", json_input(input), "test"))
                .await
                .unwrap(),
        );
    }
    for b in buyers {
        let out: Value = serde_json::from_slice(&b.outcome().await.unwrap()).unwrap();
        assert_eq!(
            out,
            json!({ "item": "bond", "price": 40, "accepted": true })
        );
    }
    let mut events = 0;
    for w in watchers {
        let out: Value = serde_json::from_slice(&w.outcome().await.unwrap()).unwrap();
        assert_eq!(out["timed_out"], false);
        events += out["events"].as_array().unwrap().len();
    }
    assert_eq!(events, 20, "every trade event taken exactly once");
    assert!(
        node.residency().evictions() > 0,
        "with 45 instances and room for 4, waiting ones were evicted"
    );
    assert_eq!(node.messaging().topics.waiting(), 0);
    let metrics = node.render_metrics();
    let evictions = node.residency().evictions();
    assert!(
        metrics.contains(&format!("sluice_evictions_total {evictions}\n")),
        "{metrics}"
    );
    assert!(metrics.contains("sluice_waiting_events 0\n"), "{metrics}");
}

#[test]
fn a_message_in_flight_at_a_crash_is_delivered_after_the_restart() {
    let trading = TradingDir::new();
    let (data, data_s) = (&trading.data, trading.data_s.as_str());
    let input = r#"{"item": "bond", "bid": 45, "pause_ms": 3000}"#;
    let argv = trading.argv("buyer", input, "buy-1");
    let mut node = spawn(&argv);
    // The buyer opened the session and sent both messages; the seller took the first and
    // is parked in its pause: the second message is in flight.
    wait_for_journal(data, "buy-1", 3);
    let seller = wait_for_journal(data, "buy-1.0.peer", 3);
    assert_eq!(
        seller.iter().map(|e| e.call.as_str()).collect::<Vec<_>>(),
        ["initiator", "receive", "sleep"]
    );
    assert!(crash(&mut node), "the trade finished before the crash");

    let out = sluice_output(&argv);
    let bought = output_json(&out);
    assert_eq!(
        bought,
        json!({ "item": "bond", "price": 40, "accepted": true })
    );
    let seller = record(data, "buy-1.0.peer").expect("seller recorded");
    assert_eq!(seller.status, Status::Completed);
    let sold: Value = serde_json::from_slice(&seller.output.unwrap().0).unwrap();
    assert_eq!(sold["bid"], 45, "the second message reached the seller");

    // Both ends' journals replay against their builds: sessions, sends and receives match.
    for (id, flow, calls) in [("buy-1", "buyer", 5), ("buy-1.0.peer", "seller", 5)] {
        let export = trading.dir.path().join(format!("{id}.json"));
        let out = sluice_output(&[
            "export",
            "--data-dir",
            data_s,
            id,
            "-o",
            export.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", show(&out));
        let replay = sluice_output(&[
            "replay",
            "--journal",
            export.to_str().unwrap(),
            guest(flow).to_str().unwrap(),
        ]);
        let text = String::from_utf8_lossy(&replay.stdout);
        assert!(replay.status.success(), "{}", show(&replay));
        assert!(
            text.contains(&format!(
                "all {calls} recorded calls match and the output is the same"
            )),
            "{flow}: {text}"
        );
    }
    // Another build against the buyer's journal diverges at its first call, naming both.
    let export = trading.dir.path().join("buy-1.json");
    let other = sluice_output(&[
        "replay",
        "--journal",
        export.to_str().unwrap(),
        guest("seller").to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&other.stdout);
    assert!(
        !other.status.success() && text.starts_with("DIVERGES"),
        "{text}"
    );
    assert!(
        text.contains(
            r#"the journal has `session(party: "PartyA")` but the flow now calls `initiator()`"#
        ),
        "{text}"
    );
}

#[test]
fn an_untaken_event_outlives_its_node_and_a_wait_keeps_its_deadline() {
    let trading = TradingDir::new();
    let data = &trading.data;
    let run = |flow: &str, input: &str, id: &str| sluice_output(&trading.argv(flow, input, id));
    // The buyer publishes a trade nobody waits for; its node then exits.
    let out = run("buyer", r#"{"item": "bond", "bid": 45}"#, "buy-1");
    assert!(out.status.success(), "{}", show(&out));
    // The next node puts it back on its topic: a watcher takes it...
    let out = run(
        "watcher",
        r#"{"topic": "trades", "count": 1, "timeout_ms": 10000}"#,
        "w-1",
    );
    let seen = output_json(&out);
    assert_eq!(
        seen,
        json!({ "events": [{ "item": "bond", "price": 40 }], "timed_out": false })
    );
    // ...once: the next watcher finds nothing.
    let out = run(
        "watcher",
        r#"{"topic": "trades", "count": 1, "timeout_ms": 100}"#,
        "w-2",
    );
    assert_eq!(
        output_json(&out),
        json!({ "events": [], "timed_out": true })
    );

    // A wait with a timeout, interrupted by a crash, keeps its original deadline.
    let input = r#"{"topic": "quiet", "count": 1, "timeout_ms": 3000}"#;
    let argv = trading.argv("watcher", input, "w-3");
    let mut node = spawn(&argv);
    let journal = wait_for_journal(data, "w-3", 1);
    assert_eq!(journal[0].call, "wait-event");
    let deadline = journal[0]
        .result
        .as_u64()
        .expect("the deadline is journaled");
    assert!(crash(&mut node), "the wait ended before the crash");
    // Restart once the journaled deadline has passed: a wait that keeps it times out at
    // once, where a wait started again at recovery would park for 3 s more.
    wait_until_past(deadline);
    let out = sluice_output(&[&argv[..], &["--report"]].concat());
    assert_eq!(
        output_json(&out),
        json!({ "events": [], "timed_out": true })
    );
    assert_eq!(
        peak_parked(&out),
        0,
        "the restarted wait waited again: the original deadline {deadline} was not kept\n{}",
        show(&out)
    );
    let journal = crate::durable_node::store(data).journal("w-3").unwrap();
    assert_eq!(
        journal[0].result.as_u64(),
        Some(deadline),
        "the journaled deadline changed"
    );
}
