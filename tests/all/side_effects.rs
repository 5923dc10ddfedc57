//! A flow's effects outside the journal, here appends to a file in a directory granted
//! `:rw`, are at least once across a crash: replay re-runs the code before the last
//! journaled call, so an effect made before a crash is made again, and none is lost.

use serde_json::Value;

use crate::durable_node::{crash, show, sluice_output, spawn, wait_for_journal};
use crate::support::guest;

#[test]
fn a_write_to_a_granted_directory_before_a_crash_is_made_again_by_the_replay() {
    let dir = tempfile::tempdir().unwrap();
    let (data, out) = (dir.path().join("data"), dir.path().join("out"));
    std::fs::create_dir(&out).unwrap();
    let config = dir.path().join("node.toml");
    let text = format!(
        "[[flows]]\nname = \"scribe\"\ncomponent = \"{}\"\ndirs = {{ \"/out\" = \"{}:rw\" }}\n",
        guest("scribe").display(),
        out.display()
    );
    std::fs::write(&config, text).unwrap();
    let (config, data_s) = (config.display().to_string(), data.display().to_string());
    let argv = [
        "run",
        "scribe",
        "--config",
        &config,
        "--input",
        r#"{"path": "/out/log.txt", "ms": 60000}"#,
        "--id",
        "scribe-1",
        "--data-dir",
        &data_s,
    ];
    let mut node = spawn(&argv);
    // Its sleep is journaled, so `before` was written: crash while it sleeps.
    wait_for_journal(&data, "scribe-1", 1);
    assert!(crash(&mut node), "scribe finished before the crash");
    let written = std::fs::read_to_string(out.join("log.txt")).unwrap();
    assert_eq!(written, "before\n", "the write before the sleep");

    // The restart replays the sleep, whose journaled deadline is set in the past here (a
    // restart waits for it, and the test need not wait a minute), and writes `before` again.
    let conn = rusqlite::Connection::open(data.join("sluice.db")).unwrap();
    conn.execute(
        "UPDATE journal SET result = '0' WHERE id = 'scribe-1' AND call = 'sleep'",
        [],
    )
    .unwrap();
    drop(conn);
    let out_run = sluice_output(&argv);
    assert!(out_run.status.success(), "{}", show(&out_run));
    let output: Value = serde_json::from_slice(&out_run.stdout).expect("JSON output");
    assert_eq!(
        output["lines"],
        serde_json::json!(["before", "before", "after"]),
        "at least once: the effect before the crash is made again, none is lost"
    );
}
