//! Flows by name: registered from the config, or found as `<name>.wasm` in a search
//! directory (the directory of the flow `sluice run` was given) on first use.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use super::{FlowEngine, FlowHost, LoadedComponent};
use crate::error::{LoadError, StartError};
use crate::model::FlowSettings;

/// A flow ready to start: its name, settings and loaded component.
pub struct RegisteredFlow<T: 'static> {
    /// The name it is registered under.
    pub name: String,
    /// How it is run.
    pub settings: FlowSettings,
    /// The compiled, pre-instantiated component.
    pub component: LoadedComponent<T>,
    /// Instances of this build running in the node now (parked and evicted included).
    pub in_flight: AtomicUsize,
}

impl<T> RegisteredFlow<T> {
    /// Flow `name`, run with `settings`, on `component`.
    pub fn new(name: &str, settings: FlowSettings, component: LoadedComponent<T>) -> Self {
        RegisteredFlow {
            name: name.into(),
            settings,
            component,
            in_flight: AtomicUsize::new(0),
        }
    }
}

/// A registered flow as listed: its name, pool tag, and its build once loaded.
pub struct Listed<T: 'static> {
    /// The name it is registered under.
    pub name: String,
    /// The pool it is tagged to.
    pub pool: Option<String>,
    /// The loaded flow, if it was loaded (registered ones are; found ones on first use).
    pub flow: Option<Arc<RegisteredFlow<T>>>,
}

struct Entry<T: 'static> {
    path: PathBuf,
    settings: FlowSettings,
    loaded: Arc<OnceCell<Arc<RegisteredFlow<T>>>>,
}

/// The node's flows by name.
pub struct FlowRegistry<T: 'static> {
    entries: Mutex<HashMap<String, Entry<T>>>,
    search_dirs: Mutex<Vec<PathBuf>>,
    /// Settings of flows found in a search directory.
    found_settings: FlowSettings,
}

impl<T: FlowHost> FlowRegistry<T> {
    /// A registry whose flows found in search directories run with `defaults`.
    pub fn new(defaults: FlowSettings) -> Self {
        FlowRegistry {
            entries: Mutex::default(),
            search_dirs: Mutex::default(),
            found_settings: defaults,
        }
    }

    /// Register `name` as the component at `path`, loading it now so errors surface at startup.
    pub fn register(
        &self,
        engine: &FlowEngine<T>,
        name: &str,
        path: &Path,
        settings: FlowSettings,
    ) -> Result<Arc<RegisteredFlow<T>>, LoadError> {
        let component = engine.load(path)?;
        let flow = Arc::new(RegisteredFlow::new(name, settings.clone(), component));
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

    /// Every flow known by name, sorted by name.
    pub fn list(&self) -> Vec<Listed<T>> {
        let mut listed: Vec<Listed<T>> = self
            .lock()
            .iter()
            .map(|(name, e)| Listed {
                name: name.clone(),
                pool: e.settings.pool.clone(),
                flow: e.loaded.get().cloned(),
            })
            .collect();
        listed.sort_by(|a, b| a.name.cmp(&b.name));
        listed
    }

    /// Also look for unregistered flows as `<name>.wasm` in `dir`.
    pub fn add_search_dir(&self, dir: PathBuf) {
        let mut dirs = self.search_dirs.lock().unwrap_or_else(|p| p.into_inner());
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry<T>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The flow named `name`, loading it on first use (compilation runs off the executor).
    pub async fn resolve(
        &self,
        engine: &Arc<FlowEngine<T>>,
        name: &str,
    ) -> Result<Arc<RegisteredFlow<T>>, StartError> {
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
                Ok::<_, LoadError>(Arc::new(RegisteredFlow::new(name, settings, component)))
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
