//! `sluice new`: write a flow project that builds and passes its own scenarios as it stands.
//!
//! Every language gets the same flow (it counts down, sleeping a second and calling itself
//! as a subflow for the rest: a suspension point of each kind a newcomer meets first), the
//! same two scenarios, a five-line README and a `.gitignore`. The SDK comes in the form its
//! language uses: for Rust a dependency on the `sluice-flow` crate (by path to the checkout
//! this binary was built from, with a version ready for a registry), for Python and
//! JavaScript the SDK module and the WIT package copied from this binary.

use std::path::{Path, PathBuf};

use super::{Lang, ProjectError, check_name};
use crate::wit::WIT;

const PY_SDK: &str = include_str!("../../../guest-flows/python/sluice_flow.py");
const JS_SDK: &str = include_str!("../../../guest-flows/js/sluice-flow.js");
/// The versions the Rust SDK is built and tested with, as the new crate's lock file.
const RUST_LOCK: &str = include_str!("../../../guest-flows/Cargo.lock");

const SCENARIOS: [(&str, &str); 2] = [
    (
        "scenarios/counts-down.toml",
        include_str!("templates/scenarios/counts-down.toml.tmpl"),
    ),
    (
        "scenarios/lifts-off.toml",
        include_str!("templates/scenarios/lifts-off.toml.tmpl"),
    ),
];

/// Where a new Rust flow gets the `sluice-flow` crate from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RustSdk {
    /// A checkout's `guest-flows/sdk`, by path (with the version a registry would need).
    Path(PathBuf),
    /// The registry (not published yet: the crate's `Cargo.toml` says so).
    Registry,
}

impl RustSdk {
    /// The SDK of the checkout this binary was built from, if it is still there.
    pub fn of_this_build() -> RustSdk {
        let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-flows/sdk");
        match sdk.join("Cargo.toml").is_file() {
            true => RustSdk::Path(sdk.canonicalize().unwrap_or(sdk)),
            false => RustSdk::Registry,
        }
    }

    /// The `sluice-flow = …` line of the new crate's `Cargo.toml`.
    fn dependency(&self) -> String {
        // The SDK is versioned with the runtime.
        let version = concat!(
            env!("CARGO_PKG_VERSION_MAJOR"),
            ".",
            env!("CARGO_PKG_VERSION_MINOR")
        );
        match self {
            RustSdk::Path(path) => {
                let path = toml::Value::String(path.display().to_string());
                format!("sluice-flow = {{ version = \"{version}\", path = {path} }}")
            }
            RustSdk::Registry => format!(
                "# Not on crates.io yet: add `path = \"<a Sluice checkout>/guest-flows/sdk\"`.\n\
                 sluice-flow = \"{version}\""
            ),
        }
    }
}

/// What [`create`] wrote.
#[derive(Debug, Clone)]
pub struct Created {
    /// The flow's name (the directory's last component).
    pub name: String,
    /// Its language.
    pub lang: Lang,
    /// The project directory.
    pub dir: PathBuf,
    /// The files written, relative to `dir`, in the order written.
    pub files: Vec<PathBuf>,
    /// Where `sluice build` will put the component, relative to `dir`.
    pub component: PathBuf,
    /// The flow's main source file, relative to `dir`.
    pub source: PathBuf,
}

/// Write a new `lang` flow project into `dir`, named after its last component. `dir` must
/// not exist or be empty; on any error nothing is left behind that was not there before.
pub fn create(dir: &Path, lang: Lang, sdk: &RustSdk) -> Result<Created, ProjectError> {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| ProjectError::InvalidName {
            name: dir.display().to_string(),
            reason: "give the new flow's name (or a path ending in it)".into(),
        })?
        .to_string();
    check_name(&name)?;
    let existed = match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(ProjectError::NotEmpty(dir.to_path_buf()));
            }
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            return Err(ProjectError::io(dir)(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "exists and is not a directory; nothing was written",
            )));
        }
        Err(e) => return Err(ProjectError::io(dir)(e)),
    };
    let files = files(&name, lang, sdk);
    let written = write_all(dir, &files);
    if let Err(e) = written {
        // Leave the directory as it was: gone, or empty.
        if existed {
            for (path, _) in &files {
                let _ = std::fs::remove_file(dir.join(path));
            }
            for sub in ["src", "scenarios", "wit"] {
                let _ = std::fs::remove_dir(dir.join(sub));
            }
        } else {
            let _ = std::fs::remove_dir_all(dir);
        }
        return Err(e);
    }
    let (source, component) = match lang {
        Lang::Rust => (
            PathBuf::from("src/lib.rs"),
            PathBuf::from(format!("target/wasm32-wasip2/release/{name}.wasm")),
        ),
        Lang::Python => (
            PathBuf::from(format!("{name}.py")),
            PathBuf::from(format!("dist/{name}.wasm")),
        ),
        Lang::Js => (
            PathBuf::from(format!("{name}.js")),
            PathBuf::from(format!("dist/{name}.wasm")),
        ),
    };
    Ok(Created {
        name,
        lang,
        dir: dir.to_path_buf(),
        files: files.into_iter().map(|(p, _)| p).collect(),
        component,
        source,
    })
}

fn write_all(dir: &Path, files: &[(PathBuf, String)]) -> Result<(), ProjectError> {
    for (path, text) in files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(ProjectError::io(parent))?;
        }
        std::fs::write(&path, text).map_err(ProjectError::io(&path))?;
    }
    Ok(())
}

/// The project's files and their text.
fn files(name: &str, lang: Lang, sdk: &RustSdk) -> Vec<(PathBuf, String)> {
    let fill = |template: &str| template.replace("{{name}}", name);
    let mut files: Vec<(String, String)> = match lang {
        Lang::Rust => {
            let mut files = vec![
                (
                    "Cargo.toml".into(),
                    fill(include_str!("templates/rust/Cargo.toml.tmpl"))
                        .replace("{{sdk}}", &sdk.dependency()),
                ),
                (
                    "src/lib.rs".into(),
                    fill(include_str!("templates/rust/src/lib.rs.tmpl")),
                ),
            ];
            // A lock with the SDK's own versions only fits the SDK by path.
            if matches!(sdk, RustSdk::Path(_)) {
                files.push(("Cargo.lock".into(), RUST_LOCK.into()));
            }
            files.push((
                "README.md".into(),
                fill(include_str!("templates/rust/README.md.tmpl")),
            ));
            files.push((
                ".gitignore".into(),
                include_str!("templates/rust/gitignore.tmpl").into(),
            ));
            files
        }
        Lang::Python => vec![
            (
                "pyproject.toml".into(),
                fill(include_str!("templates/python/pyproject.toml.tmpl")),
            ),
            (
                format!("{name}.py"),
                fill(include_str!("templates/python/flow.py.tmpl")),
            ),
            ("sluice_flow.py".into(), PY_SDK.into()),
            ("wit/flow.wit".into(), WIT.into()),
            (
                "README.md".into(),
                fill(include_str!("templates/python/README.md.tmpl")),
            ),
            (
                ".gitignore".into(),
                include_str!("templates/python/gitignore.tmpl").into(),
            ),
        ],
        Lang::Js => vec![
            (
                "package.json".into(),
                fill(include_str!("templates/js/package.json.tmpl")),
            ),
            (
                format!("{name}.js"),
                fill(include_str!("templates/js/flow.js.tmpl")),
            ),
            ("sluice-flow.js".into(), JS_SDK.into()),
            ("wit/flow.wit".into(), WIT.into()),
            (
                "README.md".into(),
                fill(include_str!("templates/js/README.md.tmpl")),
            ),
            (
                ".gitignore".into(),
                include_str!("templates/js/gitignore.tmpl").into(),
            ),
        ],
    };
    files.extend(
        SCENARIOS
            .iter()
            .map(|(path, text)| (path.to_string(), fill(text))),
    );
    files
        .into_iter()
        .map(|(path, text)| (PathBuf::from(path), text))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_is_filled() {
        let sdk = RustSdk::Path("/x/guest-flows/sdk".into());
        for lang in Lang::ALL {
            for (path, text) in files("greet", lang, &sdk) {
                assert!(!text.contains("{{"), "{lang} {}: {text}", path.display());
            }
        }
    }

    #[test]
    fn readmes_are_five_lines() {
        for lang in Lang::ALL {
            let (_, text) = files("greet", lang, &RustSdk::Registry)
                .into_iter()
                .find(|(p, _)| p == Path::new("README.md"))
                .unwrap();
            assert_eq!(text.lines().count(), 5, "{lang}:\n{text}");
        }
    }

    #[test]
    fn the_rust_sdk_is_a_path_with_a_version() {
        let dep = RustSdk::Path("/x/guest-flows/sdk".into()).dependency();
        assert_eq!(
            dep,
            r#"sluice-flow = { version = "0.1", path = "/x/guest-flows/sdk" }"#
        );
        let cargo: toml::Table =
            toml::from_str(&files("greet", Lang::Rust, &RustSdk::Registry)[0].1).unwrap();
        assert_eq!(cargo["dependencies"]["sluice-flow"].as_str(), Some("0.1"));
    }

    #[test]
    fn a_non_empty_directory_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("greet");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("notes.txt"), "mine").unwrap();
        let err = create(&target, Lang::Python, &RustSdk::Registry).unwrap_err();
        assert!(matches!(err, ProjectError::NotEmpty(_)), "{err}");
        let left: Vec<_> = std::fs::read_dir(&target).unwrap().collect();
        assert_eq!(left.len(), 1);
        assert_eq!(
            std::fs::read_to_string(target.join("notes.txt")).unwrap(),
            "mine"
        );
    }
}
