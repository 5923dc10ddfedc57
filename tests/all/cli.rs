//! The `sluice` binary: bad input gets a one-line error naming what and where, a
//! non-zero exit, and never a panic.

use std::path::Path;
use std::process::Output;

use crate::support::guest;

fn sluice(args: &[&str]) -> Output {
    crate::durable_node::sluice_output(args)
}

/// Assert a failed run whose single `error:` line contains every needle.
pub(crate) fn assert_one_line_error(out: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "expected failure, got success; stderr:\n{stderr}"
    );
    // Guest output is logged with `stream="stderr"` and a guest's panic message may be
    // quoted in the error; any other panic line is the host's, which must never panic.
    let host_panic = stderr
        .lines()
        .filter(|l| !l.contains("stream=\"stderr\"") && !l.contains("'<unnamed>'"))
        .any(|l| l.contains("panicked at") || l.contains("RUST_BACKTRACE"));
    assert!(!host_panic, "sluice panicked:\n{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "expected one error line:\n{stderr}");
    for needle in needles {
        assert!(
            errors[0].contains(needle),
            "error line lacks `{needle}`: {}",
            errors[0]
        );
    }
}

fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.display().to_string()
}

#[test]
fn a_flow_runs_and_prints_its_output() {
    let out = sluice(&[
        "run",
        guest("hello").to_str().unwrap(),
        "--input",
        r#"{"name":"Ada"}"#,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json, serde_json::json!({ "greeting": "Hello, Ada!" }));
}

#[test]
fn a_file_that_is_not_wasm() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "notes.wasm", "just text");
    assert_one_line_error(
        &sluice(&["run", &path]),
        &[&path, "is not a WebAssembly file"],
    );
}

#[test]
fn a_core_module_instead_of_a_component() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "core.wasm",
        wat::parse_str("(module (func (export \"run\")))").unwrap(),
    );
    assert_one_line_error(
        &sluice(&["run", &path]),
        &[&path, "is a core WebAssembly module, not a component"],
    );
}

#[test]
fn a_component_of_another_world() {
    let dir = tempfile::tempdir().unwrap();
    let other = r#"(component (core module $m (func (export "f"))) (core instance $i (instantiate $m))
        (func $f (canon lift (core func $i "f"))) (export "something-else" (func $f)))"#;
    let path = write(dir.path(), "other.wasm", wat::parse_str(other).unwrap());
    assert_one_line_error(
        &sluice(&["run", &path]),
        &[&path, "does not implement the sluice:flow/flow world"],
    );
}

#[test]
fn an_unknown_flow_name() {
    assert_one_line_error(
        &sluice(&["run", "no-such-flow"]),
        &["unknown flow `no-such-flow`"],
    );
    // A parent asking for an unknown child gets a rejection it can handle.
    let out = sluice(&[
        "run",
        guest("fanout").to_str().unwrap(),
        "--input",
        r#"{"n":1,"child":"nope"}"#,
    ]);
    // It says which flows the node knows and where it looked.
    let searched = guest("fanout").parent().unwrap().display().to_string();
    assert_one_line_error(
        &out,
        &[
            "flow `fanout`",
            "unknown flow `nope`: the node knows `",
            &format!("found no nope.wasm in {searched}"),
            "a flow's name is its component's file stem",
        ],
    );
}

#[test]
fn invalid_json_input() {
    let out = sluice(&[
        "run",
        guest("hello").to_str().unwrap(),
        "--input",
        "{name: Ada",
    ]);
    assert_one_line_error(&out, &["invalid --input JSON `{name: Ada`"]);
}

#[test]
fn an_unknown_config_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "node.toml",
        "[pools.default]\nsize = 1\nthreads = 4\n",
    );
    let out = sluice(&["run", guest("hello").to_str().unwrap(), "--config", &config]);
    assert_one_line_error(&out, &[&config, "unknown field `threads`", "line 3"]);
}

#[test]
fn a_flow_tagged_to_a_missing_pool_warns_and_runs_in_default() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[[flows]]\nname = \"hello\"\ncomponent = \"{}\"\npool = \"nope\"\n",
        guest("hello").display()
    );
    let config = write(dir.path(), "node.toml", text);
    let out = sluice(&[
        "run",
        "hello",
        "--config",
        &config,
        "--input",
        r#"{"name":"x"}"#,
        "--report",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("tagged to pool `nope`, which does not exist; it runs in `default`"),
        "{stderr}"
    );
    let default_row = stderr
        .lines()
        .find(|l| l.starts_with("default"))
        .expect("report has a default row");
    let completed: Vec<&str> = default_row.split_whitespace().collect();
    assert_eq!(
        completed[3], "1",
        "hello did not complete in default: {default_row}"
    );
}

#[test]
fn a_failing_flow_exits_non_zero_with_its_message() {
    let out = sluice(&[
        "run",
        guest("trap").to_str().unwrap(),
        "--input",
        r#"{"message":"out of coffee"}"#,
    ]);
    assert_one_line_error(
        &out,
        &["flow `trap` failed", "unreachable", "out of coffee"],
    );
}

#[test]
fn wit_prints_the_package() {
    let out = sluice(&["wit"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("package sluice:flow@0.1.0;") && text.contains("world flow"),
        "{text}"
    );
}

#[test]
fn a_mapper_is_announced_and_metrics_are_printed() {
    let dir = tempfile::tempdir().unwrap();
    let mapper = crate::support::guests_dir().join("prefix_mapper.wasm");
    let text = format!(
        "[mapper]\ncomponent = \"{}\"\n[pools.reporting]\nsize = 2\n",
        mapper.display()
    );
    let config = write(dir.path(), "node.toml", text);
    let out = sluice(&[
        "run",
        guest("hello").to_str().unwrap(),
        "--config",
        &config,
        "--input",
        r#"{"name":"x"}"#,
        "--metrics",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let pools_lines = stderr
        .lines()
        .filter(|l| l.contains("Created flow thread pools: reporting(2), default("))
        .count();
    assert_eq!(pools_lines, 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "Using custom flow scheduler mapper: {}",
            mapper.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.lines().any(|l| l == r#"sluice_flow_duration_seconds_count{flow="hello",pool="default",outcome="completed"} 1"#),
        "{stderr}"
    );
}

#[test]
fn a_flow_component_given_as_mapper_is_a_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("[mapper]\ncomponent = \"{}\"\n", guest("hello").display());
    let config = write(dir.path(), "node.toml", text);
    let out = sluice(&["run", guest("hello").to_str().unwrap(), "--config", &config]);
    assert_one_line_error(
        &out,
        &["hello.wasm", "expected the sluice:flow/mapper world"],
    );
}

#[test]
fn a_guests_output_is_logged_naming_its_flow_instance_and_pool() {
    let out = sluice(&[
        "run",
        guest("hostile").to_str().unwrap(),
        "--input",
        r#"{"attack":"print","n":2}"#,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    for line in ["stdout line 1", "stderr line 1"] {
        let logged = stderr
            .lines()
            .find(|l| l.contains(line))
            .unwrap_or_else(|| panic!("`{line}` was not logged:\n{stderr}"));
        for field in ["flow=hostile", "id=", "pool=default"] {
            assert!(logged.contains(field), "`{logged}` lacks `{field}`");
        }
    }
}
