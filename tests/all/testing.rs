//! Testing a flow in isolation: the Rust API, scenario files for every example flow, and
//! `sluice test`, each catching deliberately broken builds.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use sluice::FlowError;
use sluice::testing::scenario::Scenario;
use sluice::testing::{FlowTest, Rule};

use crate::support::{flow_test, guest, guests_dir};

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-flows/scenarios")
}

/// `component` with two `hello` children scripted to greet with their own names.
fn two_children(component: &str) -> FlowTest {
    let mut test = flow_test(&guest(component));
    for i in 0..2 {
        let name = format!("child-{i}");
        test.script(
            Rule::subflow("hello")
                .with_input(json!({ "name": name }))
                .returns(json!({ "greeting": name })),
        );
    }
    test
}

const TWO_CHILDREN_CALLS: [&str; 5] = [
    r#"start("hello", {"name":"child-0"})"#,
    r#"start("hello", {"name":"child-1"})"#,
    "join(child-1)",
    "join(child-2)",
    r#"progress("fanned out")"#,
];

#[tokio::test]
async fn the_api_asserts_output_and_the_exact_calls() {
    let run = two_children("fanout").run(json!({ "n": 2 })).await;
    run.assert_output(
        &json!({ "results": [{ "greeting": "child-0" }, { "greeting": "child-1" }] }),
    );
    run.assert_calls(&TWO_CHILDREN_CALLS);
}

#[tokio::test]
async fn the_api_catches_each_kind_of_broken_build() {
    let expected = json!({ "results": [{ "greeting": "child-0" }, { "greeting": "child-1" }] });
    let broken = |bug: &str| {
        let mut test = two_children("broken_fanout");
        test.named(&format!("fanout-{bug}"));
        test
    };
    let run = broken("wrong-output").run(json!({ "n": 2 })).await;
    let e = run.check_output(&expected).unwrap_err();
    assert!(
        e.starts_with("output differ") && e.contains("-       \"greeting\": \"child-0\""),
        "{e}"
    );
    let run = broken("extra-call").run(json!({ "n": 2 })).await;
    run.check_output(&expected).unwrap();
    let e = run.check_calls(&TWO_CHILDREN_CALLS).unwrap_err();
    assert!(e.contains("\n+ now()\n"), "{e}");
    let run = broken("missing-call").run(json!({ "n": 2 })).await;
    let e = run.check_calls(&TWO_CHILDREN_CALLS).unwrap_err();
    assert!(
        e.contains("\n- progress(\"fanned out\")\n") && !e.contains("\n+ "),
        "{e}"
    );
}

#[tokio::test]
async fn an_unscripted_call_fails_naming_the_call() {
    let test = flow_test(&guest("fanout"));
    let run = test.run(json!({ "n": 1 })).await;
    assert_eq!(
        run.outcome,
        Err(r#"unscripted call: start("hello", {"name":"child-0"})"#.to_string())
    );
}

#[tokio::test]
async fn scripted_errors_reach_the_flow() {
    let mut test = flow_test(&guest("supervisor"));
    test.script(Rule::subflow("pay").fails_with(FlowError::TimedOut));
    let run = test.run(json!({ "child": "pay" })).await;
    assert_eq!(run.outcome, Ok(json!({ "outcome": "timed-out" })));
}

#[tokio::test]
async fn thirty_days_of_sleep_pass_on_the_virtual_clock() {
    let test = flow_test(&guest("sleeper"));
    // Sleeps that waited in real time would take 30 days: any deadline a test can afford
    // tells the two apart, so choose a generous one rather than a tight one.
    let run = tokio::time::timeout(
        Duration::from_secs(60),
        test.run(json!({ "ms": 86_400_000, "times": 30 })),
    )
    .await
    .expect("30 virtual days of sleep did not return within 60 s: sleeps wait in real time");
    assert_eq!(run.outcome, Ok(json!({ "slept_ms": 2_592_000_000u64 })));
    assert_eq!(run.slept, Duration::from_secs(30 * 86_400));
    assert_eq!(run.call_lines(), vec!["sleep(86400000)".to_string(); 30]);
}

#[tokio::test]
async fn every_example_flow_passes_its_scenarios() {
    let mut ran = 0;
    for entry in std::fs::read_dir(scenarios_dir()).unwrap() {
        let dir = entry.unwrap().path();
        let flow = dir.file_name().unwrap().to_str().unwrap().to_string();
        let test = flow_test(&guest(&flow));
        for file in std::fs::read_dir(&dir).unwrap() {
            let scenario = Scenario::load(&file.unwrap().path()).unwrap();
            let result = scenario.run(&test).await;
            assert!(
                result.failure.is_none(),
                "{flow}: {}: {}",
                scenario.name,
                result.failure.unwrap()
            );
            ran += 1;
        }
    }
    assert!(ran >= 10, "only {ran} scenarios found");
}

fn sluice_test(component: &Path, scenarios: &[PathBuf], junit: Option<&Path>) -> (bool, String) {
    let mut cmd = crate::durable_node::sluice(&["test"]);
    cmd.arg(component).args(scenarios);
    if let Some(junit) = junit {
        cmd.arg("--junit").arg(junit);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn sluice_test_passes_good_builds_and_fails_broken_ones_with_junit() {
    let scenarios: Vec<PathBuf> = std::fs::read_dir(scenarios_dir().join("fanout"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let (ok, out) = sluice_test(&guest("fanout"), &scenarios, None);
    assert!(ok, "{out}");
    assert!(out.contains("3 passed, 0 failed"), "{out}");

    let dir = tempfile::tempdir().unwrap();
    let two = vec![scenarios_dir().join("fanout/two-children.toml")];
    for (bug, needle) in [
        ("wrong-output", "output differ"),
        ("extra-call", "+ now()"),
        ("missing-call", "- progress(\"fanned out\")"),
    ] {
        let copy = dir.path().join(format!("fanout-{bug}.wasm"));
        std::fs::copy(guests_dir().join("broken_fanout.wasm"), &copy).unwrap();
        let junit = dir.path().join(format!("{bug}.xml"));
        let (ok, out) = sluice_test(&copy, &two, Some(&junit));
        assert!(!ok, "{bug} passed:\n{out}");
        assert!(
            out.contains("FAIL starts two children")
                && out.contains(needle)
                && out.contains("0 passed, 1 failed"),
            "{out}"
        );
        let xml = std::fs::read_to_string(&junit).unwrap();
        assert!(
            xml.contains(r#"failures="1""#) && xml.contains("<failure"),
            "{xml}"
        );
    }
}

#[test]
fn a_bad_scenario_file_is_an_error_naming_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "input = { name = \"x\" }\n[expect]\noutput = 1\nretry = 2\n",
    )
    .unwrap();
    let (ok, out) = sluice_test(&guest("hello"), std::slice::from_ref(&bad), None);
    assert!(!ok);
    let line = out
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains("bad.toml")
            && line.contains("line 4")
            && line.contains("unknown field `retry`"),
        "{line}"
    );
}

#[test]
fn every_example_flow_has_scenarios() {
    let flows = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-flows/flows");
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(flows).unwrap() {
        let name = entry
            .unwrap()
            .file_name()
            .to_string_lossy()
            .replace('-', "_");
        let dir = scenarios_dir().join(&name);
        let count = std::fs::read_dir(&dir).map_or(0, |d| d.count());
        if count == 0 {
            missing.push(name);
        }
    }
    assert!(missing.is_empty(), "flows without scenarios: {missing:?}");
}

#[tokio::test]
async fn the_api_scripts_what_a_counterparty_sends() {
    let mut test = flow_test(&guest("buyer"));
    test.message_from("PartyB", json!({ "accepted": true, "price": 40 }));
    let run = test
        .run(json!({ "party": "PartyB", "item": "bond", "bid": 45 }))
        .await;
    run.assert_output(&json!({ "item": "bond", "price": 40, "accepted": true }));
    run.assert_calls(&[
        r#"session("PartyB")"#,
        r#"send("PartyB", {"item":"bond","pause_ms":0})"#,
        r#"send("PartyB", {"bid":45})"#,
        r#"receive("PartyB")"#,
        r#"publish("trades", {"item":"bond","price":40})"#,
    ]);
    // Nothing scripted from the party: the receive is named, with the party.
    let bare = flow_test(&guest("buyer"));
    let run = bare
        .run(json!({ "party": "PartyB", "item": "bond", "bid": 45 }))
        .await;
    assert_eq!(
        run.outcome,
        Err(r#"unscripted call: receive("PartyB"): the script has no more messages from `PartyB` (add a [[message]] from = "PartyB")"#.to_string())
    );
    // A counterparty whose flow ended: the flow sees the receive fail.
    let mut ended = flow_test(&guest("buyer"));
    ended.counterparty_ends("PartyB", "the counterparty's flow ended: failed: closed");
    let run = ended
        .run(json!({ "party": "PartyB", "item": "bond", "bid": 45 }))
        .await;
    assert_eq!(
        run.outcome,
        Err("failed: session with PartyB: the counterparty's flow ended: failed: closed".into())
    );
}

#[tokio::test]
async fn the_api_runs_a_responder_and_delivers_events() {
    let mut seller = flow_test(&guest("seller"));
    seller
        .initiated_by("PartyA")
        .message_from("PartyA", json!({ "item": "bond", "pause_ms": 1000 }))
        .message_from("PartyA", json!({ "bid": 39 }));
    let run = seller.run(json!(null)).await;
    run.assert_output(&json!({
        "buyer": "PartyA", "item": "bond", "bid": 39, "price": 40, "accepted": false
    }));
    assert_eq!(run.slept, Duration::from_secs(1));
    assert_eq!(run.calls.len(), 5, "{:?}", run.call_lines());

    let mut watcher = flow_test(&guest("watcher"));
    watcher
        .event("trades", json!({ "n": 1 }))
        .event("trades", json!({ "n": 2 }));
    let run = watcher
        .run(json!({ "topic": "trades", "count": 3, "timeout_ms": 90_000 }))
        .await;
    run.assert_output(&json!({ "events": [{ "n": 1 }, { "n": 2 }], "timed_out": true }));
    // The third wait timed out on the virtual clock.
    assert_eq!(run.slept, Duration::from_secs(90));
}
