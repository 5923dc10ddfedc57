//! A newcomer's first flow, in each language: `sluice new` in an empty directory outside the
//! repository, `sluice build`, `sluice test` on the generated scenarios, `sluice run` (durable,
//! then `sluice export`), a change to the flow that breaks one scenario, and `sluice replay`
//! of the recorded run against the changed build.
//!
//! The componentizers install once into a directory shared by every test run
//! (`SLUICE_TOOLS_DIR`), and Rust builds use the guest flows' target directory, whose
//! wasm32 dependencies `scripts/build-guests.sh` has compiled already.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::json;

use crate::cli::assert_one_line_error;

/// Where the suite installs componentize-py and componentize-js, once for every run.
fn tools_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("sluice-tools")
}

/// `sluice args…` in `dir`, with the shared tools and the guests' cargo target directory.
fn sluice_in(dir: &Path, args: &[&str]) -> Output {
    let guest_target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-flows/target");
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .current_dir(dir)
        .env(sluice::project::TOOLS_DIR_ENV, tools_dir())
        .env("CARGO_TARGET_DIR", guest_target)
        .env_remove("RUST_LOG")
        .output()
        .expect("sluice runs")
}

/// The stdout of a run that must succeed.
fn succeeds(args: &[&str], out: Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "sluice {} failed:\n{stdout}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Run `sluice args…` in `dir`; it must succeed. Returns its stdout.
fn ok(dir: &Path, args: &[&str]) -> String {
    succeeds(args, sluice_in(dir, args))
}

fn first_flow(lang: &str, name: &str, source: &str) {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let created = ok(home, &["new", name, "--lang", lang]);
    assert!(
        created.contains(&format!("Its name is `{name}`")),
        "{created}"
    );
    let project = home.join(name);

    let built = ok(&project, &["build"]);
    assert!(built.contains(&format!("flow `{name}`")), "{built}");
    let tested = ok(&project, &["test"]);
    assert!(tested.ends_with("2 passed, 0 failed\n"), "{tested}");

    // Started through a durable node: one sleep and one subflow call (itself, at zero).
    let data = home.join("data").display().to_string();
    let args = [
        "run",
        name,
        "--input",
        r#"{"from":1}"#,
        "--data-dir",
        &data,
        "--id",
        "first",
    ];
    let output: serde_json::Value = serde_json::from_str(&ok(home, &args)).unwrap();
    assert_eq!(output, json!({ "countdown": [1], "message": "Liftoff!" }));
    ok(
        home,
        &["export", "--data-dir", &data, "first", "-o", "first.json"],
    );

    // A change that breaks the scenario whose message the flow writes itself.
    let source = project.join(source);
    let text = std::fs::read_to_string(&source).unwrap();
    assert!(text.contains("\"Liftoff!\"") || text.contains("'Liftoff!'"));
    std::fs::write(&source, text.replace("Liftoff!", "Blast off!")).unwrap();
    ok(&project, &["build"]);
    let out = sluice_in(&project, &["test"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    for line in [
        "PASS counts down: sleeps a second, then calls itself for the rest",
        "FAIL at zero it lifts off at once",
        "-   \"message\": \"Liftoff!\"",
        "+   \"message\": \"Blast off!\"",
        "1 passed, 1 failed",
    ] {
        assert!(stdout.contains(line), "`{line}` missing from:\n{stdout}");
    }

    // The recorded run replays on the changed build: it makes the same calls.
    let component = match lang {
        "rust" => Path::new(env!("CARGO_MANIFEST_DIR")).join(format!(
            "../guest-flows/target/wasm32-wasip2/release/{name}.wasm"
        )),
        _ => project.join(format!("dist/{name}.wasm")),
    };
    let component = component.display().to_string();
    let replayed = ok(home, &["replay", "--journal", "first.json", &component]);
    assert!(replayed.starts_with("OK "), "{replayed}");
}

#[test]
fn a_first_flow_in_rust() {
    first_flow("rust", "first_rust", "src/lib.rs");
}

#[test]
fn a_first_flow_in_python() {
    first_flow("python", "first_python", "first_python.py");
}

#[test]
fn a_first_flow_in_javascript() {
    first_flow("js", "first_js", "first_js.js");
}

/// Every file under `dir`, with its contents.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(snapshot(&path));
        } else {
            files.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    files.sort();
    files
}

#[test]
fn bad_input_is_one_line_and_changes_nothing() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    std::fs::create_dir(home.join("taken")).unwrap();
    std::fs::write(home.join("taken/notes.txt"), "mine").unwrap();
    let before = snapshot(home);

    let out = sluice_in(home, &["new", "taken", "--lang", "python"]);
    assert_one_line_error(
        &out,
        &[
            "taken already exists and is not empty",
            "nothing was written",
        ],
    );
    let out = sluice_in(home, &["new", "My-Flow"]);
    assert_one_line_error(&out, &["invalid flow name `My-Flow`", "lowercase letters"]);
    let out = sluice_in(home, &["new", "import", "--lang", "python"]);
    assert_one_line_error(&out, &["invalid flow name `import`", "keyword"]);
    let out = sluice_in(home, &["new", "greet", "--lang", "cobol"]);
    assert_one_line_error(&out, &["unknown language `cobol`", "rust, python or js"]);
    let out = sluice_in(home, &["build", "taken"]);
    assert_one_line_error(&out, &["taken is not a flow project", "sluice new"]);
    assert_eq!(snapshot(home), before, "bad input changed files");

    // A project not built yet cannot be tested or run, and says what to do.
    ok(home, &["new", "greet", "--lang", "js"]);
    for args in [&["test", "greet"][..], &["run", "greet"]] {
        let out = sluice_in(home, args);
        assert_one_line_error(
            &out,
            &[
                "flow `greet` is not built",
                "dist/greet.wasm",
                "run `sluice build",
            ],
        );
    }
}
