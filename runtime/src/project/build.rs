//! Build a flow project into its component with its language's own tool: cargo for Rust,
//! componentize-py for Python, componentize-js for JavaScript. The tool's output stays
//! visible (on stderr), so a failed build shows the tool's own error.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{Lang, Project, ProjectError, Tools};

/// Build `project`, installing its pinned tool into `tools` if missing; returns the
/// component's path. Python and JavaScript builds replace the component only when they
/// succeed.
pub fn build(project: &Project, tools: &Tools) -> Result<PathBuf, ProjectError> {
    match project.lang {
        Lang::Rust => build_rust(project)?,
        Lang::Python => {
            let tool = tools.componentize_py()?;
            let wit = wit_dir(project)?;
            replace_on_success(&project.component, |out| {
                let mut command = Command::new(&tool);
                command
                    .arg("-d")
                    .arg(&wit)
                    .args(["-w", "flow", "componentize", "-p", "."])
                    .arg(&project.name)
                    .arg("-o")
                    .arg(out)
                    .arg("--stub-wasi");
                tool_run(&mut command, project, "componentize-py")
            })?;
        }
        Lang::Js => {
            let tool = tools.componentize_js()?;
            let wit = wit_dir(project)?;
            replace_on_success(&project.component, |out| {
                let mut command = Command::new(&tool);
                command
                    .arg(&project.source)
                    .arg("--wit")
                    .arg(&wit)
                    .args(["-n", "flow", "-o"])
                    .arg(out)
                    // Our interfaces only: no WASI stdio, randomness, clocks or HTTP.
                    .args(["-d", "stdio", "random", "clocks", "http", "fetch-event"]);
                tool_run(&mut command, project, "componentize-js")
            })?;
        }
    }
    Ok(project.built_component()?.to_path_buf())
}

/// `cargo build --target wasm32-wasip2 --release`, adding the target with rustup first
/// when rustup manages the toolchain and lacks it.
fn build_rust(project: &Project) -> Result<(), ProjectError> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(&project.dir)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    // Without rustup, cargo's own error says what is missing.
    if let Ok(out) = installed
        && out.status.success()
        && !String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.trim() == "wasm32-wasip2")
    {
        tracing::info!("adding the wasm32-wasip2 target with rustup");
        tool_run(
            Command::new("rustup").args(["target", "add", "wasm32-wasip2"]),
            project,
            "rustup target add wasm32-wasip2",
        )?;
    }
    tool_run(
        Command::new("cargo")
            .args([
                "build",
                "--target",
                "wasm32-wasip2",
                "--release",
                "--manifest-path",
            ])
            .arg(project.dir.join("Cargo.toml")),
        project,
        "cargo build",
    )
}

/// The WIT package a Python or JavaScript project builds against: its `wit/` directory.
fn wit_dir(project: &Project) -> Result<PathBuf, ProjectError> {
    let wit = project.dir.join("wit");
    if wit.join("flow.wit").is_file() {
        Ok(wit)
    } else {
        Err(ProjectError::Manifest {
            path: wit,
            reason: "the WIT package is missing: write it with `sluice wit > wit/flow.wit`".into(),
        })
    }
}

/// Let `build` write next to `component`, then move its output into place.
fn replace_on_success(
    component: &Path,
    build: impl FnOnce(&Path) -> Result<(), ProjectError>,
) -> Result<(), ProjectError> {
    let dir = component.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(ProjectError::io(dir))?;
    let mut partial = component.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let result = build(&partial);
    if result.is_ok() {
        std::fs::rename(&partial, component).map_err(ProjectError::io(component))?;
    } else {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

/// Run a build tool in the project's directory, its output on our stderr.
fn tool_run(command: &mut Command, project: &Project, what: &str) -> Result<(), ProjectError> {
    let program = command.get_program().to_string_lossy().into_owned();
    let status = command
        .current_dir(&project.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::io::stderr()))
        .status()
        .map_err(|source| ProjectError::Spawn {
            program,
            purpose: format!("to build flow `{}`", project.name),
            source,
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(ProjectError::Tool {
            what: format!("{what} of flow `{}`", project.name),
            status,
        })
    }
}
