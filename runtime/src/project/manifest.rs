//! Reading a project's manifest: its flow's name, main source and where its component goes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{Lang, Project, ProjectError};

/// A flow name read from a manifest: it becomes a file name and a registry name.
fn check_existing_name(name: &str, manifest: &Path) -> Result<(), ProjectError> {
    let ok = !name.is_empty()
        && !name.starts_with(['.', '-'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(ProjectError::manifest(
            manifest,
            format!(
                "`{name}` cannot name a flow: use letters, digits, `_` and `-` (it becomes the component's file name)"
            ),
        ))
    }
}

fn read(path: &Path) -> Result<String, ProjectError> {
    std::fs::read_to_string(path).map_err(ProjectError::io(path))
}

pub(super) fn open_python(dir: &Path) -> Result<Project, ProjectError> {
    let manifest = dir.join("pyproject.toml");
    let table: toml::Table = toml::from_str(&read(&manifest)?)
        .map_err(|e| ProjectError::manifest(&manifest, e.message().to_string()))?;
    let name = table
        .get("project")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .ok_or_else(|| {
            ProjectError::manifest(&manifest, "no `[project] name`: it names the flow's module")
        })?;
    if name.contains('-') {
        return Err(ProjectError::manifest(
            &manifest,
            format!("`{name}` cannot name a Python module: use `_` instead of `-`"),
        ));
    }
    check_existing_name(name, &manifest)?;
    let source = dir.join(format!("{name}.py"));
    if !source.is_file() {
        return Err(ProjectError::manifest(
            &manifest,
            format!("names the flow `{name}`, but its module {name}.py is missing"),
        ));
    }
    Ok(Project {
        dir: dir.to_path_buf(),
        name: name.to_string(),
        lang: Lang::Python,
        source,
        component: dir.join("dist").join(format!("{name}.wasm")),
    })
}

pub(super) fn open_js(dir: &Path) -> Result<Project, ProjectError> {
    let manifest = dir.join("package.json");
    let json: serde_json::Value = serde_json::from_str(&read(&manifest)?)
        .map_err(|e| ProjectError::manifest(&manifest, e.to_string()))?;
    let name = json
        .get("name")
        .and_then(|n| n.as_str())
        .ok_or_else(|| ProjectError::manifest(&manifest, "no `name`: it names the flow"))?;
    check_existing_name(name, &manifest)?;
    let main = match json.get("main") {
        None => format!("{name}.js"),
        Some(main) => main
            .as_str()
            .ok_or_else(|| ProjectError::manifest(&manifest, "`main` is not a string"))?
            .to_string(),
    };
    let source = dir.join(&main);
    if !source.is_file() {
        return Err(ProjectError::manifest(
            &manifest,
            format!("the flow's entry {main} is missing"),
        ));
    }
    Ok(Project {
        dir: dir.to_path_buf(),
        name: name.to_string(),
        lang: Lang::Js,
        source,
        component: dir.join("dist").join(format!("{name}.wasm")),
    })
}

/// What `cargo metadata --no-deps` says of a crate, as far as a flow needs it.
#[derive(serde::Deserialize)]
struct CargoMetadata {
    packages: Vec<CargoPackage>,
    target_directory: PathBuf,
}

#[derive(serde::Deserialize)]
struct CargoPackage {
    manifest_path: PathBuf,
    targets: Vec<CargoTarget>,
}

#[derive(serde::Deserialize)]
struct CargoTarget {
    name: String,
    crate_types: Vec<String>,
    src_path: PathBuf,
}

pub(super) fn open_rust(dir: &Path) -> Result<Project, ProjectError> {
    let manifest = dir.join("Cargo.toml");
    let output = Command::new("cargo")
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|source| ProjectError::Spawn {
            program: "cargo".into(),
            purpose: "to read the crate's Cargo.toml".into(),
            source,
        })?;
    if !output.status.success() {
        return Err(ProjectError::Tool {
            what: format!("`cargo metadata` on {}", manifest.display()),
            status: output.status,
        });
    }
    let metadata: CargoMetadata = serde_json::from_slice(&output.stdout).map_err(|e| {
        ProjectError::manifest(&manifest, format!("unreadable `cargo metadata`: {e}"))
    })?;
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    let package = metadata
        .packages
        .iter()
        .find(|p| same(&p.manifest_path, &manifest))
        .ok_or_else(|| {
            ProjectError::manifest(
                &manifest,
                "has no [package]: run `sluice build` in the directory of one flow crate",
            )
        })?;
    let lib = package
        .targets
        .iter()
        .find(|t| t.crate_types.iter().any(|c| c == "cdylib"))
        .ok_or_else(|| {
            ProjectError::manifest(
                &manifest,
                "not a flow crate: add `[lib] crate-type = [\"cdylib\"]` (a flow is a cdylib)",
            )
        })?;
    // Cargo names the artifact after the library, with `-` made `_`.
    let name = lib.name.replace('-', "_");
    Ok(Project {
        dir: dir.to_path_buf(),
        component: metadata
            .target_directory
            .join("wasm32-wasip2/release")
            .join(format!("{name}.wasm")),
        name,
        lang: Lang::Rust,
        source: lib.src_path.clone(),
    })
}
