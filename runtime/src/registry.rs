//! Flows by name: registered from the config, or found as `<name>.wasm` in a search
//! directory (the directory of the flow `sluice run` was given) on first use.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OnceCell;

use crate::engine::{FlowEngine, LoadedComponent};
use crate::error::{LoadError, StartError};
use crate::limits::Limits;
use crate::sandbox::DirGrant;

/// How a flow is run: its pool tag, timeout, limits and granted directories.
#[derive(Debug, Clone, Default)]
pub struct FlowSettings {
    /// The pool it is tagged to, if any.
    pub pool: Option<String>,
    /// Wall-clock limit of each instance, overriding its pool's.
    pub timeout: Option<Duration>,
    /// Resource limits of each instance.
    pub limits: Limits,
    /// Directories its instances may use.
    pub grants: Vec<DirGrant>,
    /// Retries of a failed instance; `None`: a failure is final.
    pub retry: Option<RetryPolicy>,
    /// The initiating flow whose sessions start this one, if it is a responder.
    pub initiated_by: Option<String>,
}

/// How often and how soon a failed instance is re-run from its journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// Wait before the first retry; doubles for each further one.
    pub backoff: Duration,
}

impl RetryPolicy {
    /// The wait after `failed` failed attempts (1 for the first retry), at most an hour.
    pub fn backoff(&self, failed: u32) -> Duration {
        let factor = 1u32 << failed.saturating_sub(1).min(20);
        self.backoff
            .saturating_mul(factor)
            .min(Duration::from_secs(3600))
    }
}

/// A flow ready to start: its name, settings and loaded component.
pub struct RegisteredFlow {
    /// The name it is registered under.
    pub name: String,
    /// How it is run.
    pub settings: FlowSettings,
    /// The compiled, pre-instantiated component.
    pub component: LoadedComponent,
}

struct Entry {
    path: PathBuf,
    settings: FlowSettings,
    loaded: Arc<OnceCell<Arc<RegisteredFlow>>>,
}

/// The node's flows by name.
#[derive(Default)]
pub struct FlowRegistry {
    entries: Mutex<HashMap<String, Entry>>,
    search_dirs: Mutex<Vec<PathBuf>>,
    /// Settings of flows found in a search directory.
    found_settings: FlowSettings,
}

impl FlowRegistry {
    /// A registry whose flows found in search directories run with `defaults`.
    pub fn new(defaults: FlowSettings) -> Self {
        FlowRegistry {
            found_settings: defaults,
            ..FlowRegistry::default()
        }
    }

    /// Register `name` as the component at `path`, loading it now so errors surface at startup.
    pub fn register(
        &self,
        engine: &FlowEngine,
        name: &str,
        path: &Path,
        settings: FlowSettings,
    ) -> Result<Arc<RegisteredFlow>, LoadError> {
        let component = engine.load(path)?;
        let flow = Arc::new(RegisteredFlow {
            name: name.into(),
            settings: settings.clone(),
            component,
        });
        let loaded = Arc::new(OnceCell::new_with(Some(flow.clone())));
        self.lock().insert(
            name.into(),
            Entry {
                path: path.into(),
                settings,
                loaded,
            },
        );
        Ok(flow)
    }

    /// The registered flow that answers sessions opened by `initiator`, if any.
    pub fn responder_for(&self, initiator: &str) -> Option<String> {
        self.lock()
            .iter()
            .find(|(_, e)| e.settings.initiated_by.as_deref() == Some(initiator))
            .map(|(name, _)| name.clone())
    }

    /// Also look for unregistered flows as `<name>.wasm` in `dir`.
    pub fn add_search_dir(&self, dir: PathBuf) {
        let mut dirs = self.search_dirs.lock().unwrap_or_else(|p| p.into_inner());
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The flow named `name`, loading it on first use (compilation runs off the executor).
    pub async fn resolve(
        &self,
        engine: &Arc<FlowEngine>,
        name: &str,
    ) -> Result<Arc<RegisteredFlow>, StartError> {
        let (path, settings, cell) = {
            let mut entries = self.lock();
            if !entries.contains_key(name) {
                let path = self
                    .find_in_search_dirs(name)
                    .ok_or_else(|| self.unknown(name, entries.keys()))?;
                let entry = Entry {
                    path,
                    settings: self.found_settings.clone(),
                    loaded: Arc::new(OnceCell::new()),
                };
                entries.insert(name.into(), entry);
            }
            let entry = &entries[name];
            // The hot path: every start of a loaded flow ends here, cloning only an Arc.
            if let Some(flow) = entry.loaded.get() {
                return Ok(flow.clone());
            }
            (
                entry.path.clone(),
                entry.settings.clone(),
                entry.loaded.clone(),
            )
        };
        let flow = cell
            .get_or_try_init(|| async {
                let engine = engine.clone();
                let load_path = path.clone();
                let component = tokio::task::spawn_blocking(move || engine.load(&load_path))
                    .await
                    .map_err(|e| LoadError::Invalid { path: path.clone(), reason: format!("compiler task failed: {e}") })??;
                tracing::info!(flow = name, path = %path.display(), hash = %&component.hash[..12], "loaded flow");
                Ok::<_, LoadError>(Arc::new(RegisteredFlow { name: name.into(), settings, component }))
            })
            .await
            .map_err(|source| StartError::Load { flow: name.into(), source })?;
        Ok(flow.clone())
    }

    /// The error for `name`, listing the flows registered (`registered`) or found in the
    /// search directories, and those directories.
    fn unknown<'a>(&self, name: &str, registered: impl Iterator<Item = &'a String>) -> StartError {
        let searched = self
            .search_dirs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut known: Vec<String> = registered.cloned().collect();
        for dir in &searched {
            let Ok(files) = std::fs::read_dir(dir) else {
                continue;
            };
            known.extend(files.filter_map(|f| {
                let path = f.ok()?.path();
                let stem = path.file_stem()?.to_str()?;
                (path.extension()? == "wasm").then(|| stem.to_string())
            }));
        }
        known.sort();
        known.dedup();
        StartError::UnknownFlow {
            flow: name.into(),
            known,
            searched,
        }
    }

    fn find_in_search_dirs(&self, name: &str) -> Option<PathBuf> {
        // A flow name is a file stem, never a path: no separators, no `..`.
        if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
            return None;
        }
        let dirs = self.search_dirs.lock().unwrap_or_else(|p| p.into_inner());
        dirs.iter()
            .map(|d| d.join(format!("{name}.wasm")))
            .find(|p| p.is_file())
    }
}
