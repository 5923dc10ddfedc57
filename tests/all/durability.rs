//! Durable flows: crashes at random points of progress lose and duplicate nothing, replay
//! gives the values read before a crash and keeps a sleep's deadline, instances stay on the
//! build they started with, and a bad store file is refused untouched.

use std::collections::HashMap;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::{Value, json};
use sluice::store::{JournalStore, Status};

use crate::durable_node::{
    config, crash, outputs, peak_parked, record, show, sluice_output, spawn, store,
    wait_for_journal, wait_until_past,
};
use crate::support::guest;

const ROOTS: usize = 1_000;
/// `journey` starts one `call`, three `parallel` and one `start` child.
const CHILDREN_PER_ROOT: usize = 5;

/// Instances the store of `data_dir` has as completed (0 before it exists).
fn completed(data_dir: &Path) -> usize {
    if !data_dir.join("sluice.db").exists() {
        return 0;
    }
    store(data_dir)
        .with_status(Status::Completed)
        .unwrap()
        .len()
}

/// Wait until the store of `data_dir` has `target` completed instances while `node` runs;
/// fails when the node ends first or makes no such progress in a generous while.
fn wait_for_completed(data_dir: &Path, node: &mut Child, target: usize, kill: usize) {
    let limit = Instant::now() + Duration::from_secs(300);
    let db = data_dir.join("sluice.db");
    let mut reader = None;
    loop {
        if reader.is_none() && db.exists() {
            reader = Some(store(data_dir));
        }
        let done = match &reader {
            Some(s) => s.with_status(Status::Completed).unwrap().len(),
            None => 0,
        };
        if done >= target {
            eprintln!("crash {kill} at {done} completed instances");
            return;
        }
        if let Some(status) = node.try_wait().expect("child status") {
            panic!(
                "the node ended ({status}) before crash {kill}, at {done} of {target} completed instances"
            );
        }
        assert!(
            Instant::now() < limit,
            "no crash {kill}: {done} of {target} completed instances after 300 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_node_killed_five_times_completes_every_flow_once_with_the_uncrashed_output() {
    let dir = tempfile::tempdir().unwrap();
    let jobs = dir.path().join("jobs.jsonl");
    let lines: Vec<String> = (1..=ROOTS).map(|n| json!({ "n": n }).to_string()).collect();
    std::fs::write(&jobs, lines.join("\n")).unwrap();
    let journey = guest("journey");
    let (crashed_dir, clean_dir) = (dir.path().join("crashed"), dir.path().join("clean"));
    let args = |data: &std::path::Path| {
        vec![
            "run".to_string(),
            journey.display().to_string(),
            "--batch".into(),
            jobs.display().to_string(),
            "--data-dir".into(),
            data.display().to_string(),
        ]
    };
    let crashed_args = args(&crashed_dir);
    let argv: Vec<&str> = crashed_args.iter().map(String::as_str).collect();

    // Each node is killed once it has completed a random share of the work, 5 to 10% of
    // the instances: at most half of them before the last crash, however fast the build.
    let total = ROOTS * (1 + CHILDREN_PER_ROOT);
    let mut rng = rand::rng();
    for kill in 1..=5 {
        let before = completed(&crashed_dir);
        let mut node = spawn(&argv);
        let target = before + rng.random_range(total / 20..=total / 10);
        wait_for_completed(&crashed_dir, &mut node, target, kill);
        assert!(crash(&mut node), "the node finished before crash {kill}");
    }
    let after = sluice_output(&argv);
    assert!(after.status.success(), "{}", show(&after));
    let crashed = outputs(&after.stdout);

    let clean_args = args(&clean_dir);
    let clean_argv: Vec<&str> = clean_args.iter().map(String::as_str).collect();
    let clean = sluice_output(&clean_argv);
    assert!(clean.status.success(), "{}", show(&clean));
    let reference = outputs(&clean.stdout);

    assert_eq!(crashed.len(), ROOTS);
    assert_eq!(
        crashed, reference,
        "outputs after crashes differ from an uncrashed run"
    );

    // Exactly once: every root and every child recorded once and completed.
    let store = store(&crashed_dir);
    let counts: HashMap<String, u64> = store.count_by_flow().unwrap().into_iter().collect();
    assert_eq!(counts.get("journey"), Some(&(ROOTS as u64)));
    assert_eq!(
        counts.get("double"),
        Some(&((ROOTS * CHILDREN_PER_ROOT) as u64)),
        "a child was started twice (or never)"
    );
    assert!(store.with_status(Status::Running).unwrap().is_empty());
    let completed = store.with_status(Status::Completed).unwrap();
    assert_eq!(completed.len(), ROOTS * (1 + CHILDREN_PER_ROOT));
    let mut per_root: HashMap<&str, usize> = HashMap::new();
    for r in completed.iter().filter(|r| r.flow == "double") {
        let root = r.id.split('.').next().unwrap();
        *per_root.entry(root).or_default() += 1;
    }
    assert!(
        per_root.values().all(|&n| n == CHILDREN_PER_ROOT),
        "children per root: {per_root:?}"
    );
    // The same child ids as the uncrashed run: ids derive from journal positions.
    let clean_store = crate::durable_node::store(&clean_dir);
    let ids = |s: &sluice::store::SqliteStore| {
        let mut ids: Vec<String> = s
            .with_status(Status::Completed)
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&store), ids(&clean_store));
}

#[test]
fn replay_after_a_crash_returns_the_time_and_randomness_read_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let clock = guest("clock");
    let (clock, data_s) = (clock.display().to_string(), data.display().to_string());
    let argv = [
        "run",
        &clock,
        "--input",
        r#"{"ms": 3000}"#,
        "--id",
        "clock-1",
        "--data-dir",
        &data_s,
    ];
    let mut node = spawn(&argv);
    // now, random, sleep: the instance is parked in its sleep.
    let journal = wait_for_journal(&data, "clock-1", 3);
    assert!(crash(&mut node), "clock finished before the crash");
    let (t0, r0, deadline) = (
        journal[0].result.as_u64().unwrap(),
        journal[1].result.as_u64().unwrap(),
        journal[2].result.as_u64().unwrap(),
    );
    assert_eq!(journal[2].call, "sleep");

    // Restart once the journaled deadline has passed: a sleep that keeps it has nothing
    // left to wait for, where a timer started again at recovery would park for 3 s more.
    wait_until_past(deadline);
    let out = sluice_output(&[&argv[..], &["--report"]].concat());
    assert!(out.status.success(), "{}", show(&out));
    let output: Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    assert_eq!(output["t0"], t0, "now() before the crash is replayed");
    assert_eq!(output["r0"], r0, "random() before the crash is replayed");
    let t1 = output["t1"].as_u64().unwrap();
    assert!(
        t1 >= deadline,
        "woke at {t1}, before the deadline {deadline}"
    );
    assert_eq!(
        peak_parked(&out),
        0,
        "the restarted sleep waited again: the original deadline {deadline} was not kept\n{}",
        show(&out)
    );
    assert_eq!(
        store(&data).journal("clock-1").unwrap()[2].result,
        journal[2].result,
        "the journaled deadline changed"
    );
    assert_ne!(output["r1"], output["r0"]);
}

#[test]
fn an_instance_stays_on_the_build_it_started_with_after_a_redeploy() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_s = data.display().to_string();
    let double = ("double", guest("double"));
    let v1 = config(
        dir.path(),
        "v1.toml",
        &[("ordered", guest("ordered")), double.clone()],
        "",
    );
    let v2 = config(
        dir.path(),
        "v2.toml",
        &[("ordered", guest("reordered")), double],
        "",
    );
    let (v1, v2) = (v1.display().to_string(), v2.display().to_string());
    let run = |cfg: &str, id: &str| {
        vec![
            "run".to_string(),
            "ordered".into(),
            "--config".into(),
            cfg.into(),
            "--input".into(),
            r#"{"ms": 1500}"#.into(),
            "--id".into(),
            id.into(),
            "--data-dir".into(),
            data_s.clone(),
        ]
    };
    let started = run(&v1, "pin-1");
    let mut node = spawn(&started.iter().map(String::as_str).collect::<Vec<_>>());
    wait_for_journal(&data, "pin-1", 2); // first call done, parked in sleep
    assert!(crash(&mut node));

    // Redeployed: `ordered` is now the other build. The running instance stays on its own.
    let resumed = run(&v2, "pin-1");
    let out = sluice_output(&resumed.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success(), "{}", show(&out));
    let output: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        output,
        json!({ "first": 2, "second": 4 }),
        "ran on its original build"
    );

    let fresh = run(&v2, "pin-2");
    let out = sluice_output(&fresh.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success(), "{}", show(&out));
    let output: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        output,
        json!({ "first": 4, "second": 2 }),
        "new instances run the new build"
    );
    let (one, two) = (
        record(&data, "pin-1").unwrap(),
        record(&data, "pin-2").unwrap(),
    );
    assert_ne!(one.component, two.component);
}

#[test]
fn a_corrupt_or_truncated_store_stops_the_node_and_is_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let hello = guest("hello").display().to_string();
    for (name, bytes) in [
        ("garbage", vec![0x5a_u8; 16384]),
        ("truncated", {
            let data = dir.path().join("good");
            let good = data.display().to_string();
            let jobs = dir.path().join("jobs.jsonl");
            std::fs::write(
                &jobs,
                (0..200)
                    .map(|i| format!("{{\"name\": \"n{i}\"}}\n"))
                    .collect::<String>(),
            )
            .unwrap();
            let out = sluice_output(&[
                "run",
                &hello,
                "--batch",
                jobs.to_str().unwrap(),
                "--data-dir",
                &good,
            ]);
            assert!(out.status.success(), "{}", show(&out));
            let full = std::fs::read(data.join("sluice.db")).unwrap();
            full[..full.len() / 2].to_vec()
        }),
    ] {
        let data = dir.path().join(name);
        std::fs::create_dir_all(&data).unwrap();
        let file = data.join("sluice.db");
        std::fs::write(&file, &bytes).unwrap();
        let out = sluice_output(&["run", &hello, "--data-dir", data.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{name}: started on a bad store\n{}",
            show(&out)
        );
        let error = stderr
            .lines()
            .find(|l| l.starts_with("error:"))
            .unwrap_or_else(|| panic!("{name}: no error line\n{stderr}"));
        assert!(
            error.contains("corrupt or truncated") && error.contains(&file.display().to_string()),
            "{name}: {error}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert_eq!(
            std::fs::read(&file).unwrap(),
            bytes,
            "{name}: the file was modified"
        );
    }
}
