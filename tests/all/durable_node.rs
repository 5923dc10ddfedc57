//! A `sluice run` node as a child process on a data directory: started, killed with
//! SIGKILL, restarted; and the store it leaves behind, read back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice::store::{Entry, InstanceRecord, JournalStore, SqliteStore};

/// The `sluice` binary with `args`, logs quiet unless a test asks, compiled components
/// cached in the tests' cache directory.
pub fn sluice(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.args(args)
        .env_remove("RUST_LOG")
        .env("XDG_CACHE_HOME", crate::support::cache_home());
    cmd
}

/// Run `sluice` to its end.
pub fn sluice_output(args: &[&str]) -> Output {
    sluice(args).output().expect("sluice runs")
}

/// Start `sluice` in the background, its output discarded.
pub fn spawn(args: &[&str]) -> Child {
    sluice(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sluice starts")
}

/// SIGKILL `child` (no chance to clean up); returns whether it was still running.
pub fn crash(child: &mut Child) -> bool {
    let running = child.try_wait().expect("child status").is_none();
    child.kill().ok();
    child.wait().ok();
    running
}

/// The store of a data directory, read back (the node may still be writing to it).
pub fn store(data_dir: &Path) -> SqliteStore {
    SqliteStore::open(&data_dir.join("sluice.db")).expect("store opens")
}

/// The record of instance `id`.
pub fn record(data_dir: &Path, id: &str) -> Option<InstanceRecord> {
    if !data_dir.join("sluice.db").exists() {
        return None;
    }
    store(data_dir).record(id).expect("store readable")
}

/// Wait until instance `id` has journaled at least `entries` calls; returns them.
pub fn wait_for_journal(data_dir: &Path, id: &str, entries: usize) -> Vec<Entry> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if record(data_dir, id).is_some() {
            let journal = store(data_dir).journal(id).expect("journal readable");
            if journal.len() >= entries {
                return journal;
            }
        }
        assert!(
            Instant::now() < deadline,
            "instance {id} never journaled {entries} calls"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The wall clock in unix milliseconds, as the node's `now` reads it.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is past 1970")
        .as_millis() as u64
}

/// Wait until the wall clock has passed `deadline` (unix ms, as a journal records it).
pub fn wait_until_past(deadline: u64) {
    let limit = Instant::now() + Duration::from_secs(60);
    while unix_ms() <= deadline {
        assert!(
            Instant::now() < limit,
            "the deadline {deadline} is more than a minute away"
        );
        let left = (deadline + 1).saturating_sub(unix_ms());
        std::thread::sleep(Duration::from_millis(left.min(50)));
    }
}

/// The most instances parked at once in any pool, from the `--report` table a run printed.
pub fn peak_parked(out: &Output) -> u64 {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut lines = stderr.lines().skip_while(|l| !l.starts_with("pool "));
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_else(|| panic!("no --report table\n{}", show(out)))
        .split_whitespace()
        .collect();
    let column = header
        .iter()
        .position(|c| *c == "peak-parked")
        .expect("a peak-parked column");
    lines
        .take_while(|l| !l.starts_with("elapsed:"))
        .map(|l| {
            l.split_whitespace()
                .nth(column)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("bad report line `{l}`"))
        })
        .max()
        .unwrap_or(0)
}

/// A config file in `dir` registering `flows` (name → guest component).
pub fn config(dir: &Path, file: &str, flows: &[(&str, PathBuf)], extra: &str) -> PathBuf {
    let mut text = String::from(extra);
    for (name, component) in flows {
        text.push_str(&format!(
            "\n[[flows]]\nname = \"{name}\"\ncomponent = \"{}\"\n",
            component.display()
        ));
    }
    let path = dir.join(file);
    std::fs::write(&path, text).expect("config written");
    path
}

/// Stdout and stderr of a finished run, for assertion messages.
pub fn show(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `id → output` from the JSON lines of `sluice run --batch`.
pub fn outputs(stdout: &[u8]) -> BTreeMap<String, Value> {
    let mut map = BTreeMap::new();
    for line in String::from_utf8_lossy(stdout).lines() {
        let v: Value = serde_json::from_str(line).expect("batch output is JSON lines");
        let id = v["id"].as_str().expect("id").to_string();
        assert!(v.get("error").is_none(), "{id} failed: {v}");
        assert!(
            map.insert(id.clone(), v["output"].clone()).is_none(),
            "{id} printed twice"
        );
    }
    map
}
