//! A `sluice run` node as a child process on a data directory: started, killed with
//! SIGKILL, restarted; and the store it leaves behind, read back.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use sluice::journal::{Entry, InstanceRecord, JournalStore, SqliteStore};

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
