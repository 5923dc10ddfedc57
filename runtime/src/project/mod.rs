//! Flow projects: a directory holding one flow's source in Rust, Python or JavaScript, its
//! SDK in the form that language uses, and scenario files. [`create`] writes a new one
//! (`sluice new`), [`build`] turns one into a component named after the flow (`sluice
//! build`), and [`Project::open`] finds the component again for `sluice test` and `sluice run`.
//!
//! A project is recognised by its language's own manifest, nothing of Sluice's:
//!
//! | language | manifest | flow name | component |
//! | --- | --- | --- | --- |
//! | Rust | `Cargo.toml`, a `cdylib` crate | the library's name | `<target dir>/wasm32-wasip2/release/<name>.wasm` |
//! | Python | `pyproject.toml`, `[project] name` | the module `<name>.py` | `dist/<name>.wasm` |
//! | JavaScript | `package.json`, `name` (entry: `main`) | the package name | `dist/<name>.wasm` |
//!
//! A flow's name is its component's file stem: that is the name other flows call it by.

mod build;
mod manifest;
mod template;
mod tools;

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::str::FromStr;

use thiserror::Error;

pub use build::build;
pub use template::{Created, RustSdk, create};
pub use tools::{TOOLS_DIR_ENV, Tools};

/// The languages `sluice new` and `sluice build` know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// A `cdylib` crate over the `sluice-flow` crate, built by cargo for `wasm32-wasip2`.
    Rust,
    /// A module over `sluice_flow.py`, built by componentize-py.
    Python,
    /// An ES module over `sluice-flow.js`, built by componentize-js.
    Js,
}

impl Lang {
    /// Every language, in the order help texts list them.
    pub const ALL: [Lang; 3] = [Lang::Rust, Lang::Python, Lang::Js];

    /// The name `--lang` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Python => "python",
            Lang::Js => "js",
        }
    }

    /// The name people call it by.
    pub fn title(self) -> &'static str {
        match self {
            Lang::Rust => "Rust",
            Lang::Python => "Python",
            Lang::Js => "JavaScript",
        }
    }
}

impl fmt::Display for Lang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Lang {
    type Err = ProjectError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "rust" | "rs" => Ok(Lang::Rust),
            "python" | "py" => Ok(Lang::Python),
            "js" | "javascript" => Ok(Lang::Js),
            _ => Err(ProjectError::UnknownLang(s.to_string())),
        }
    }
}

/// Why a project could not be created, read or built.
#[derive(Debug, Error)]
pub enum ProjectError {
    /// `--lang` named a language Sluice cannot build.
    #[error("unknown language `{0}`: choose rust, python or js")]
    UnknownLang(String),
    /// The name cannot be a flow's (and so a crate's, module's and file's) name.
    #[error("invalid flow name `{name}`: {reason}")]
    InvalidName { name: String, reason: String },
    /// `sluice new` was pointed at a directory that already holds something.
    #[error("{} already exists and is not empty; nothing was written (choose another name, or empty it)", .0.display())]
    NotEmpty(PathBuf),
    /// The directory has none of the manifests a flow project has.
    #[error("{} is not a flow project: it has no Cargo.toml, pyproject.toml or package.json (`sluice new NAME` creates one)", .0.display())]
    NotAProject(PathBuf),
    /// The manifest is there but does not describe a flow.
    #[error("{}: {reason}", .path.display())]
    Manifest { path: PathBuf, reason: String },
    /// The project has not been built (or its build went elsewhere).
    #[error("flow `{flow}` is not built: {} does not exist (run `sluice build {}`)", .component.display(), .dir.display())]
    NotBuilt {
        flow: String,
        component: PathBuf,
        dir: PathBuf,
    },
    /// The project has no scenario files where `sluice test` looks.
    #[error("no scenario files (*.toml) in {} (add some, or name them after the flow)", .0.display())]
    NoScenarios(PathBuf),
    /// Reading or writing a file failed.
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A program Sluice runs (cargo, python3, npm, a componentizer) could not be started.
    #[error("cannot run `{program}` ({purpose}): {source}")]
    Spawn {
        program: String,
        purpose: String,
        source: std::io::Error,
    },
    /// A program Sluice ran failed; its own output, printed before, says why.
    #[error("{what} failed ({status}); its output is above")]
    Tool { what: String, status: ExitStatus },
    /// There is no per-user cache directory to install tools into.
    #[error("no directory for Sluice's tools: set {TOOLS_DIR_ENV} (or HOME)")]
    NoToolsDir,
}

impl ProjectError {
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ProjectError + '_ {
        move |source| ProjectError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    fn manifest(path: &Path, reason: impl Into<String>) -> ProjectError {
        ProjectError::Manifest {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}

/// Names a flow project may not take: keywords of Rust and Python (the name is a crate, a
/// module and a function), and modules or crates the generated code itself imports.
#[rustfmt::skip]
const RESERVED: &[&str] = &[
    // Rust keywords (strict and reserved) and crates every crate sees.
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum",
    "extern", "false", "fn", "for", "gen", "if", "impl", "in", "let", "loop", "match", "mod",
    "move", "mut", "pub", "ref", "return", "self", "static", "struct", "super", "trait", "true",
    "try", "type", "unsafe", "use", "where", "while", "abstract", "become", "box", "do", "final",
    "macro", "override", "priv", "typeof", "unsized", "virtual", "yield", "std", "core", "alloc",
    "proc_macro", "test",
    // Python keywords.
    "and", "assert", "class", "def", "del", "elif", "except", "finally", "from", "global",
    "import", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "with",
    // What the generated flows and their SDKs import.
    "flow", "sluice_flow", "serde", "serde_json", "wit_bindgen", "json", "wit_world",
    "componentize_py_types", "componentize_py_runtime",
];

/// Check that `name` can name a new flow in every language: lowercase ASCII letters, digits
/// and `_`, starting with a letter, at most 64 characters, not a keyword.
pub fn check_name(name: &str) -> Result<(), ProjectError> {
    let invalid = |reason: &str| ProjectError::InvalidName {
        name: name.to_string(),
        reason: reason.to_string(),
    };
    let rule = "use lowercase letters, digits and `_`, starting with a letter (it names the flow, \
                its crate or module and its component file)";
    let mut chars = name.chars();
    match chars.next() {
        None => return Err(invalid("it is empty")),
        Some(c) if !c.is_ascii_lowercase() => return Err(invalid(rule)),
        Some(_) => {}
    }
    if !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
        return Err(invalid(rule));
    }
    if name.len() > 64 {
        return Err(invalid("it is longer than 64 characters"));
    }
    if RESERVED.contains(&name) {
        return Err(invalid(
            "it is a Rust or Python keyword, or the name of a library the flow uses",
        ));
    }
    Ok(())
}

/// A flow project found in a directory.
#[derive(Debug, Clone)]
pub struct Project {
    /// The project's directory.
    pub dir: PathBuf,
    /// The flow's name: its component's file stem.
    pub name: String,
    /// The language it is written in.
    pub lang: Lang,
    /// The flow's main source file.
    pub source: PathBuf,
    /// Where [`build`] puts the component.
    pub component: PathBuf,
}

impl Project {
    /// Recognise the project in `dir` by its manifest. A Rust project asks `cargo metadata`
    /// for its library's name and target directory (which `CARGO_TARGET_DIR` and cargo's
    /// config may move), so this runs cargo.
    pub fn open(dir: &Path) -> Result<Project, ProjectError> {
        // Tools run inside the project, so every path it hands them is absolute.
        let dir = &std::path::absolute(dir).map_err(ProjectError::io(dir))?;
        if !dir.is_dir() {
            return Err(ProjectError::io(dir)(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such directory",
            )));
        }
        if dir.join("Cargo.toml").is_file() {
            manifest::open_rust(dir)
        } else if dir.join("pyproject.toml").is_file() {
            manifest::open_python(dir)
        } else if dir.join("package.json").is_file() {
            manifest::open_js(dir)
        } else {
            Err(ProjectError::NotAProject(dir.to_path_buf()))
        }
    }

    /// The built component; an error saying how to build it when it is missing.
    pub fn built_component(&self) -> Result<&Path, ProjectError> {
        if self.component.is_file() {
            Ok(&self.component)
        } else {
            Err(ProjectError::NotBuilt {
                flow: self.name.clone(),
                component: self.component.clone(),
                dir: self.dir.clone(),
            })
        }
    }

    /// Whether the main source file changed after the component was built.
    pub fn is_stale(&self) -> bool {
        let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        match (modified(&self.source), modified(&self.component)) {
            (Some(source), Some(component)) => source > component,
            _ => false,
        }
    }

    /// The project's scenario files: `scenarios/*.toml`, in name order.
    pub fn scenarios(&self) -> Result<Vec<PathBuf>, ProjectError> {
        let dir = self.dir.join("scenarios");
        let mut files = Vec::new();
        if dir.is_dir() {
            for entry in std::fs::read_dir(&dir).map_err(ProjectError::io(&dir))? {
                let path = entry.map_err(ProjectError::io(&dir))?.path();
                if path.extension().is_some_and(|e| e == "toml") && path.is_file() {
                    files.push(path);
                }
            }
        }
        if files.is_empty() {
            return Err(ProjectError::NoScenarios(dir));
        }
        files.sort();
        Ok(files)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_names() {
        for ok in ["greet", "order_intake", "a1", "x"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Greet",
            "my-flow",
            "1st",
            "_x",
            "a b",
            "fn",
            "import",
            "json",
            "flow",
            "sluice_flow",
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert!(check_name(&"a".repeat(65)).is_err());
    }

    #[test]
    fn languages() {
        assert_eq!("python".parse::<Lang>().unwrap(), Lang::Python);
        assert_eq!("js".parse::<Lang>().unwrap(), Lang::Js);
        let err = "go".parse::<Lang>().unwrap_err().to_string();
        assert_eq!(err, "unknown language `go`: choose rust, python or js");
    }

    #[test]
    fn a_directory_without_a_manifest_is_not_a_project() {
        let dir = tempfile::tempdir().unwrap();
        let err = Project::open(dir.path()).unwrap_err();
        assert!(matches!(err, ProjectError::NotAProject(_)), "{err}");
    }

    #[test]
    fn python_and_js_projects_are_read_from_their_manifests() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("pyproject.toml"),
            "[project]\nname = \"greet\"\n",
        )
        .unwrap();
        let err = Project::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("greet.py is missing"), "{err}");
        std::fs::write(dir.path().join("greet.py"), "").unwrap();
        let project = Project::open(dir.path()).unwrap();
        assert_eq!(
            (project.name.as_str(), project.lang),
            ("greet", Lang::Python)
        );
        assert_eq!(project.component, dir.path().join("dist/greet.wasm"));

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("package.json"), r#"{"name":"@me/x"}"#).unwrap();
        let err = Project::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("`@me/x` cannot name a flow"), "{err}");
    }
}
