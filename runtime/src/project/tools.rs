//! The componentizers `sluice build` runs for Python and JavaScript, installed on first use
//! into a per-user directory at the versions this repository pins (and its guest flows are
//! built with): componentize-py from `guest-flows/python/requirements.txt`, componentize-js
//! and its whole dependency tree from `guest-flows/js/package.json` and `package-lock.json`.
//!
//! The directory is `$SLUICE_TOOLS_DIR`, else `tools/` in the per-user cache
//! (`~/.cache/sluice/tools`). Each tool lives in `<tool>-<version>/`, stamped with a hash of
//! its pins when its install completed; an install holds a file lock, so concurrent builds
//! install once and never see half an install.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use super::ProjectError;
use crate::engine::ComponentCache;

/// The environment variable that moves the tools directory.
pub const TOOLS_DIR_ENV: &str = "SLUICE_TOOLS_DIR";

const PY_REQUIREMENTS: &str = include_str!("../../../guest-flows/python/requirements.txt");
const JS_PACKAGE: &str = include_str!("../../../guest-flows/js/package.json");
const JS_LOCK: &str = include_str!("../../../guest-flows/js/package-lock.json");

/// The file an install writes last, holding the hash of the pins it installed.
const STAMP: &str = ".sluice-installed";

/// Where the tools are (or will be) installed.
#[derive(Debug, Clone)]
pub struct Tools {
    dir: PathBuf,
}

impl Tools {
    /// Tools in `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Tools { dir }
    }

    /// Tools in `$SLUICE_TOOLS_DIR`, else in the per-user cache.
    pub fn from_env() -> Result<Self, ProjectError> {
        std::env::var_os(TOOLS_DIR_ENV)
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| ComponentCache::default_dir().map(|d| d.join("tools")))
            .map(Tools::new)
            .ok_or(ProjectError::NoToolsDir)
    }

    /// The tools directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The pinned componentize-py, installed into a virtual environment if missing.
    pub fn componentize_py(&self) -> Result<PathBuf, ProjectError> {
        let version = componentize_py_version();
        let home = self.dir.join(format!("componentize-py-{version}"));
        self.installed(
            &home,
            &format!("componentize-py {version}"),
            &[PY_REQUIREMENTS],
            |home| {
                run(
                    Command::new("python3").arg("-m").arg("venv").arg(home),
                    "python3",
                    "to make a virtual environment for componentize-py",
                )?;
                run(
                    Command::new(home.join("bin/pip"))
                        .args(["install", "--quiet", "--disable-pip-version-check"])
                        .arg(format!("componentize-py=={version}")),
                    "pip",
                    "to install componentize-py",
                )
            },
        )?;
        Ok(home.join("bin/componentize-py"))
    }

    /// The pinned componentize-js, installed with npm from the pinned lock file if missing.
    pub fn componentize_js(&self) -> Result<PathBuf, ProjectError> {
        let version = componentize_js_version();
        let home = self.dir.join(format!("componentize-js-{version}"));
        self.installed(
            &home,
            &format!("componentize-js {version}"),
            &[JS_PACKAGE, JS_LOCK],
            |home| {
                let write = |name: &str, text: &str| {
                    let path = home.join(name);
                    std::fs::write(&path, text).map_err(ProjectError::io(&path))
                };
                write("package.json", JS_PACKAGE)?;
                write("package-lock.json", JS_LOCK)?;
                // `npm ci` trips over optional per-platform packages missing from the lock;
                // `install` honours the lock all the same.
                run(
                    Command::new("npm")
                        .args(["install", "--silent", "--no-audit", "--no-fund"])
                        .current_dir(home),
                    "npm",
                    "to install componentize-js",
                )
            },
        )?;
        Ok(home.join("node_modules/.bin/componentize-js"))
    }

    /// Make sure `home` holds a complete install of `pins`, running `install` (into an
    /// empty `home`) under the tools directory's lock when it does not.
    fn installed(
        &self,
        home: &Path,
        what: &str,
        pins: &[&str],
        install: impl FnOnce(&Path) -> Result<(), ProjectError>,
    ) -> Result<(), ProjectError> {
        let stamp = stamp(pins);
        let stamped = || std::fs::read_to_string(home.join(STAMP)).is_ok_and(|s| s == stamp);
        if stamped() {
            return Ok(());
        }
        std::fs::create_dir_all(&self.dir).map_err(ProjectError::io(&self.dir))?;
        let mut lock_path = home.as_os_str().to_owned();
        lock_path.push(".lock");
        let lock_path = PathBuf::from(lock_path);
        let lock = File::create(&lock_path).map_err(ProjectError::io(&lock_path))?;
        lock.lock().map_err(ProjectError::io(&lock_path))?;
        // Another build may have installed it while this one waited for the lock.
        if stamped() {
            return Ok(());
        }
        tracing::info!("installing {what} into {} (once)", home.display());
        if home.exists() {
            std::fs::remove_dir_all(home).map_err(ProjectError::io(home))?;
        }
        std::fs::create_dir_all(home).map_err(ProjectError::io(home))?;
        install(home)?;
        let stamp_path = home.join(STAMP);
        std::fs::write(&stamp_path, stamp).map_err(ProjectError::io(&stamp_path))
    }
}

/// Run an install step; its own output stays visible, a failure names it.
fn run(command: &mut Command, program: &str, purpose: &str) -> Result<(), ProjectError> {
    let status = command
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::io::stderr()))
        .status()
        .map_err(|source| ProjectError::Spawn {
            program: program.into(),
            purpose: purpose.into(),
            source,
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(ProjectError::Tool {
            what: format!("`{program}` ({purpose})"),
            status,
        })
    }
}

fn stamp(pins: &[&str]) -> String {
    let mut hash = Sha256::new();
    for pin in pins {
        hash.update(pin.as_bytes());
    }
    hex::encode(hash.finalize())
}

/// The componentize-py version pinned in `guest-flows/python/requirements.txt`.
pub(crate) fn componentize_py_version() -> &'static str {
    PY_REQUIREMENTS
        .lines()
        .find_map(|l| l.trim().strip_prefix("componentize-py=="))
        .map(str::trim)
        .expect("guest-flows/python/requirements.txt pins componentize-py==VERSION")
}

/// The componentize-js version pinned in `guest-flows/js/package.json`.
pub(crate) fn componentize_js_version() -> &'static str {
    let key = "\"@bytecodealliance/componentize-js\":";
    JS_PACKAGE
        .lines()
        .find_map(|l| l.trim().strip_prefix(key))
        .map(|v| v.trim().trim_end_matches(',').trim_matches('"'))
        .expect("guest-flows/js/package.json pins @bytecodealliance/componentize-js")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pins_are_read_from_the_guest_manifests() {
        for version in [componentize_py_version(), componentize_js_version()] {
            assert!(
                version.split('.').all(|n| n.parse::<u32>().is_ok()),
                "{version}"
            );
        }
    }

    #[test]
    fn a_stamped_install_is_not_repeated() {
        let dir = tempfile::tempdir().unwrap();
        let tools = Tools::new(dir.path().to_path_buf());
        let home = dir.path().join("tool-1");
        let mut runs = 0;
        for _ in 0..2 {
            tools
                .installed(&home, "tool 1", &["pin"], |home| {
                    runs += 1;
                    std::fs::write(home.join("bin"), "").map_err(ProjectError::io(home))
                })
                .unwrap();
        }
        assert_eq!(runs, 1);
        // A changed pin reinstalls from an empty directory.
        tools
            .installed(&home, "tool 1", &["pin 2"], |home| {
                assert!(!home.join("bin").exists());
                Ok(())
            })
            .unwrap();
    }
}
