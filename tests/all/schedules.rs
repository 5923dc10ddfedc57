//! Schedule triggers through real HTTP on 127.0.0.1, under a test clock (a file the node
//! reads, `SLUICE_TEST_CLOCK`): fires on time, each missed-run policy after downtime across
//! three fires, each overlap policy, and a crash at a fire leaving exactly one instance.
//! No test waits for a real minute.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::served::{Served, TestTokens, serve_with_env, served_config};

/// 2026-01-01T00:00:00Z in unix ms.
const MIDNIGHT: u64 = 1_767_225_600_000;

/// Minute `m` after [`MIDNIGHT`].
fn minute(m: u64) -> u64 {
    MIDNIGHT + m * 60_000
}

/// A node whose schedules read their time from a file in its temp dir.
struct Scheduled {
    dir: tempfile::TempDir,
    config: PathBuf,
    tokens: TestTokens,
    clock: PathBuf,
}

impl Scheduled {
    fn new(flows: &[&str], extra: &str, at_ms: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (config, tokens) = served_config(dir.path(), flows, extra);
        let clock = dir.path().join("clock");
        let scheduled = Scheduled {
            dir,
            config,
            tokens,
            clock,
        };
        scheduled.set(at_ms);
        scheduled
    }

    /// Move the node's clock to `at_ms` (written whole, then renamed into place).
    fn set(&self, at_ms: u64) {
        let next = self.clock.with_extension("next");
        std::fs::write(&next, at_ms.to_string()).unwrap();
        std::fs::rename(&next, &self.clock).unwrap();
    }

    fn serve(&self) -> Served {
        let tokens = TestTokens {
            all: self.tokens.all.clone(),
            read: self.tokens.read.clone(),
            hello: self.tokens.hello.clone(),
        };
        let data = self.dir.path().join("data");
        serve_with_env(
            &self.config,
            &data,
            tokens,
            &[("SLUICE_TEST_CLOCK", Path::new(&self.clock))],
        )
    }
}

fn kill(mut node: Served) {
    node.child.kill().expect("SIGKILL");
    node.child.wait().unwrap();
}

async fn trigger(node: &Served, name: &str) -> Value {
    let (status, list) = node.get("/v1/triggers").await;
    assert_eq!(status, 200, "{list}");
    list.as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no trigger {name} in {list}"))
        .clone()
}

/// Wait until trigger `name` satisfies `check`; fail with its figures after a generous minute.
async fn until_trigger(
    node: &Served,
    name: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let t = trigger(node, name).await;
        if check(&t) {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {name}: {what}; now {t}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn n(t: &Value, key: &str) -> u64 {
    t[key].as_u64().unwrap_or(0)
}

/// The ids of the instances trigger `name` started, sorted.
async fn fires_of(node: &Served, flow: &str, name: &str) -> Vec<String> {
    let (status, page) = node
        .get(&format!("/v1/instances?flow={flow}&limit=1000"))
        .await;
    assert_eq!(status, 200, "{page}");
    let mut ids: Vec<String> = page["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["by"] == name)
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

fn fire_ids(name: &str, minutes: &[u64]) -> Vec<String> {
    minutes
        .iter()
        .map(|m| format!("s_{name}_{}", minute(*m)))
        .collect()
}

/// Wait for instance `id` to complete.
async fn completed(node: &Served, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (status, view) = node
            .get(&format!("/v1/instances/{id}/result?wait=5s"))
            .await;
        if status == 200 {
            assert_eq!(view["status"], "completed", "{view}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {id}: {status} {view}"
        );
        if status == 404 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_fires_on_time_under_a_test_clock() {
    let extra = "[[triggers.schedule]]\nname = \"tick\"\ncron = \"* * * * *\"\nflow = \"hello\"\ninput = { name = \"tick\" }\n";
    let s = Scheduled::new(&["hello"], extra, minute(0) + 30_000);
    let node = s.serve();
    let tick = trigger(&node, "tick").await;
    assert_eq!(tick["kind"], "schedule");
    assert_eq!(tick["source"], "cron * * * * * (UTC)");
    assert_eq!(tick["next_fire"], "2026-01-01T00:01:00.000Z", "{tick}");
    assert_eq!(n(&tick, "fired"), 0);
    s.set(minute(1));
    completed(&node, &fire_ids("tick", &[1])[0]).await;
    let (_, view) = node
        .get(&format!("/v1/instances/{}", fire_ids("tick", &[1])[0]))
        .await;
    assert_eq!(view["output"], json!({ "greeting": "Hello, tick!" }));
    assert_eq!(
        (view["origin"].as_str(), view["by"].as_str()),
        (Some("trigger"), Some("tick"))
    );
    let tick = until_trigger(&node, "tick", "the next fire at 00:02", |t| {
        t["next_fire"] == "2026-01-01T00:02:00.000Z"
    })
    .await;
    assert_eq!((n(&tick, "fired"), n(&tick, "started")), (1, 1), "{tick}");
    assert_eq!(tick["last_fire"], "2026-01-01T00:01:00.000Z");
    s.set(minute(2) + 10_000);
    completed(&node, &fire_ids("tick", &[2])[0]).await;
    until_trigger(&node, "tick", "two fires", |t| n(t, "fired") == 2).await;
    assert_eq!(
        fires_of(&node, "hello", "tick").await,
        fire_ids("tick", &[1, 2])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downtime_across_three_fires_honours_each_missed_run_policy() {
    let mut extra = String::new();
    for (name, policy) in [("skip", "skip"), ("once", "run-once"), ("all", "run-all")] {
        extra.push_str(&format!(
            "[[triggers.schedule]]\nname = \"{name}\"\ncron = \"* * * * *\"\nflow = \"hello\"\ninput = {{ name = \"{name}\" }}\nmissed = \"{policy}\"\ncatch-up = \"1h\"\n"
        ));
    }
    extra.push_str("[[triggers.schedule]]\nname = \"recent\"\ncron = \"* * * * *\"\nflow = \"hello\"\ninput = { name = \"r\" }\nmissed = \"run-all\"\ncatch-up = \"90s\"\n");
    let s = Scheduled::new(&["hello"], &extra, minute(0) + 30_000);
    let node = s.serve();
    s.set(minute(1));
    for name in ["skip", "once", "all", "recent"] {
        until_trigger(&node, name, "its first fire", |t| n(t, "started") == 1).await;
        completed(&node, &fire_ids(name, &[1])[0]).await;
    }
    // Down across the fires of 00:02, 00:03 and 00:04.
    kill(node);
    s.set(minute(4) + 30_000);
    let node = s.serve();
    let skip = until_trigger(&node, "skip", "three skipped", |t| n(t, "skipped") == 3).await;
    assert_eq!(n(&skip, "started"), 0, "{skip}");
    let once = until_trigger(&node, "once", "one run", |t| n(t, "started") == 1).await;
    assert_eq!(n(&once, "skipped"), 2, "{once}");
    until_trigger(&node, "all", "three runs", |t| n(t, "started") == 3).await;
    for name in ["skip", "once", "all"] {
        let t = trigger(&node, name).await;
        assert_eq!(t["next_fire"], "2026-01-01T00:05:00.000Z", "{t}");
    }
    for id in fire_ids("once", &[4])
        .iter()
        .chain(&fire_ids("all", &[2, 3, 4]))
    {
        completed(&node, id).await;
    }
    assert_eq!(
        fires_of(&node, "hello", "skip").await,
        fire_ids("skip", &[1])
    );
    assert_eq!(
        fires_of(&node, "hello", "once").await,
        fire_ids("once", &[1, 4])
    );
    assert_eq!(
        fires_of(&node, "hello", "all").await,
        fire_ids("all", &[1, 2, 3, 4])
    );
    // Only fires within the catch-up window (90 s: 00:03 and 00:04) run.
    let recent = until_trigger(&node, "recent", "two runs", |t| n(t, "started") == 2).await;
    assert_eq!(n(&recent, "skipped"), 1, "{recent}");
    for id in fire_ids("recent", &[3, 4]) {
        completed(&node, &id).await;
    }
    assert_eq!(
        fires_of(&node, "hello", "recent").await,
        fire_ids("recent", &[1, 3, 4])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_overlap_policy_when_the_previous_run_goes_on() {
    let mut extra = String::new();
    for (name, policy) in [
        ("ov-skip", "skip"),
        ("ov-buffer", "buffer-one"),
        ("ov-allow", "allow"),
    ] {
        extra.push_str(&format!(
            "[[triggers.schedule]]\nname = \"{name}\"\ncron = \"* * * * *\"\nflow = \"sleeper\"\ninput = {{ ms = 600000 }}\noverlap = \"{policy}\"\n"
        ));
    }
    let s = Scheduled::new(&["sleeper"], &extra, minute(0) + 30_000);
    let node = s.serve();
    let names = ["ov-skip", "ov-buffer", "ov-allow"];
    for (m, fired) in [(1, 1), (2, 2), (3, 3)] {
        s.set(minute(m));
        for name in names {
            until_trigger(&node, name, "its fire", |t| n(t, "fired") == fired).await;
        }
    }
    let skip = trigger(&node, "ov-skip").await;
    assert_eq!((n(&skip, "started"), n(&skip, "skipped")), (1, 2), "{skip}");
    let buffer = trigger(&node, "ov-buffer").await;
    assert_eq!(
        (
            n(&buffer, "started"),
            n(&buffer, "pending"),
            n(&buffer, "skipped")
        ),
        (1, 1, 1),
        "{buffer}"
    );
    let allow = trigger(&node, "ov-allow").await;
    assert_eq!(
        (n(&allow, "started"), n(&allow, "skipped")),
        (3, 0),
        "{allow}"
    );
    assert_eq!(
        fires_of(&node, "sleeper", "ov-allow").await,
        fire_ids("ov-allow", &[1, 2, 3])
    );
    assert_eq!(
        fires_of(&node, "sleeper", "ov-skip").await,
        fire_ids("ov-skip", &[1])
    );
    assert_eq!(
        fires_of(&node, "sleeper", "ov-buffer").await,
        fire_ids("ov-buffer", &[1])
    );
    // The buffered fire (00:02) starts as soon as the run before it ends.
    let first = &fire_ids("ov-buffer", &[1])[0];
    let (status, body) = node
        .post(&format!("/v1/instances/{first}/cancel"), "")
        .await;
    assert_eq!(status, 200, "{body}");
    let buffer = until_trigger(&node, "ov-buffer", "the buffered run", |t| {
        n(t, "started") == 2
    })
    .await;
    assert_eq!(n(&buffer, "pending"), 0, "{buffer}");
    assert_eq!(
        fires_of(&node, "sleeper", "ov-buffer").await,
        fire_ids("ov-buffer", &[1, 2])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_a_fire_leaves_exactly_one_instance_for_it() {
    let extra = "[[triggers.schedule]]\nname = \"crashy\"\ncron = \"* * * * *\"\nflow = \"hello\"\ninput = { name = \"c\" }\nmissed = \"run-once\"\n";
    let s = Scheduled::new(&["hello"], extra, minute(0) + 30_000);
    let mut node = s.serve();
    s.set(minute(1));
    completed(&node, &fire_ids("crashy", &[1])[0]).await;
    // SIGKILL right as the clock reaches a fire, at different points of its handling.
    for (m, delay_ms) in [(2, 0), (3, 5), (4, 30)] {
        s.set(minute(m));
        std::thread::sleep(Duration::from_millis(delay_ms));
        kill(node);
        node = s.serve();
        completed(&node, &fire_ids("crashy", &[m])[0]).await;
        until_trigger(&node, "crashy", "the next fire", |t| {
            t["next_fire"].as_str() == Some(&format!("2026-01-01T00:0{}:00.000Z", m + 1))
        })
        .await;
        let all: Vec<u64> = (1..=m).collect();
        assert_eq!(
            fires_of(&node, "hello", "crashy").await,
            fire_ids("crashy", &all),
            "after the crash at minute {m}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_schedule_skips_its_fires_and_stays_paused_across_a_restart() {
    let extra = "[[triggers.schedule]]\nname = \"tick\"\ncron = \"* * * * *\"\nflow = \"hello\"\ninput = { name = \"p\" }\n";
    let s = Scheduled::new(&["hello"], extra, minute(0) + 30_000);
    let node = s.serve();
    let (status, view) = node.post("/v1/triggers/tick/pause", "").await;
    assert_eq!((status, &view["state"]), (200, &json!("paused")), "{view}");
    s.set(minute(1));
    until_trigger(&node, "tick", "a skipped fire", |t| n(t, "skipped") == 1).await;
    kill(node);
    let node = s.serve();
    let tick = trigger(&node, "tick").await;
    assert_eq!(tick["state"], "paused", "{tick}");
    s.set(minute(2));
    until_trigger(&node, "tick", "a skipped fire", |t| n(t, "skipped") == 1).await;
    let out = crate::served::cli(&node, &["triggers", "resume", "tick"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.set(minute(3));
    completed(&node, &fire_ids("tick", &[3])[0]).await;
    assert_eq!(
        fires_of(&node, "hello", "tick").await,
        fire_ids("tick", &[3])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_stops_the_schedules_and_the_next_start_catches_up() {
    let extra = "[[triggers.schedule]]\nname = \"tick\"\ncron = \"* * * * *\"\nflow = \"hello\"\ninput = { name = \"d\" }\nmissed = \"run-once\"\n\
                 [[triggers.event]]\nname = \"on-name\"\ntopic = \"names\"\nflow = \"hello\"\n";
    let s = Scheduled::new(&["hello"], extra, minute(0) + 30_000);
    let mut node = s.serve();
    let (status, _) = node.post("/v1/drain", "").await;
    assert_eq!(status, 202);
    let deadline = Instant::now() + Duration::from_secs(60);
    let exited = loop {
        if let Some(status) = node.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the node did not stop after a drain"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exited.success(), "{exited:?}");
    drop(node);
    // The fire of 00:01 came while the node was down: its next start runs it once.
    s.set(minute(1) + 5_000);
    let node = s.serve();
    completed(&node, &fire_ids("tick", &[1])[0]).await;
    assert_eq!(
        fires_of(&node, "hello", "tick").await,
        fire_ids("tick", &[1])
    );
}
