//! One node per store: a data dir in use by a node refuses a second node and the offline
//! verbs that write, naming the holder; reading verbs still work; a SIGKILLed holder
//! leaves no stale lock behind.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::durable_node::{config, crash, show, sluice, sluice_output, wait_for_journal};
use crate::support::guest;

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn a_data_dir_in_use_refuses_a_second_node_and_writing_verbs_until_its_holder_dies() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cache = format!(
        "[node]\ncache-dir = \"{}\"\n",
        dir.path().join("cache").display()
    );
    let cfg = config(
        dir.path(),
        "node.toml",
        &[("sleeper", guest("sleeper"))],
        &cache,
    );
    let (cfg, data_s) = (cfg.to_str().unwrap(), data.to_str().unwrap());
    let run = |id: &str, ms: u64| -> Vec<String> {
        let input = format!("{{\"ms\": {ms}}}");
        [
            "run",
            "sleeper",
            "--config",
            cfg,
            "--data-dir",
            data_s,
            "--id",
            id,
            "--input",
            &input,
        ]
        .map(String::from)
        .to_vec()
    };
    let first = run("long", 600_000);
    let mut holder = sluice(&refs(&first))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sluice starts");
    wait_for_journal(&data, "long", 1);
    let pid = format!("pid {}", holder.id());

    let out = sluice_output(&refs(&run("other", 1)));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a second node ran\n{}", show(&out));
    assert!(
        err.contains("in use") && err.contains(&pid),
        "{}",
        show(&out)
    );

    // A served node on the same data dir is refused the same way.
    let mut second = sluice(&[
        "serve",
        "--config",
        cfg,
        "--data-dir",
        data_s,
        "--listen",
        "127.0.0.1:0",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("sluice starts");
    let limit = Instant::now() + Duration::from_secs(120);
    while second.try_wait().expect("child status").is_none() {
        if Instant::now() > limit {
            let _ = second.kill();
            panic!("a second node kept serving on a data dir in use");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = second.wait_with_output().expect("its output");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a second node served\n{}",
        show(&out)
    );
    assert!(
        err.contains("in use") && err.contains(&pid),
        "{}",
        show(&out)
    );

    let out = sluice_output(&["hospital", "kill", "--data-dir", data_s, "long"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{}", show(&out));
    assert!(
        err.contains("in use") && err.contains(&pid),
        "{}",
        show(&out)
    );

    let out = sluice_output(&["status", "--data-dir", data_s, "long"]);
    assert!(
        out.status.success(),
        "reading verbs still read\n{}",
        show(&out)
    );

    assert!(crash(&mut holder), "the holder ended before it was killed");
    // A new node takes the store at once and resumes the killed node's instance.
    let mut next = sluice(&refs(&first))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sluice starts");
    let stderr = next.stderr.take().expect("piped stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains("resumed 1 unfinished instance") => break,
            Ok(line) => seen.push(line),
            Err(_) => panic!(
                "the new node never resumed the instance; stderr:\n{}",
                seen.join("\n")
            ),
        }
    }
    crash(&mut next);
}
