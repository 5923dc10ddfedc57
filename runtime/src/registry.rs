//! Flows by name: registered from the config, or found as `<name>.wasm` in a search
//! directory (the directory of the flow `sluice run` was given) on first use.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OnceCell;

use crate::engine::{FlowEngine, LoadedComponent};
use crate::error::{LoadError, StartError};

/// A flow ready to start: its name, pool tag and loaded component.
pub struct RegisteredFlow {
    /// The name it is registered under.
    pub name: String,
    /// The pool it is tagged to, if any (validated against the node's pools at registration).
    pub pool_tag: Option<String>,
    /// Wall-clock limit of each instance, overriding its pool's.
    pub timeout: Option<Duration>,
    /// The compiled, pre-instantiated component.
    pub component: LoadedComponent,
}

struct Entry {
    path: PathBuf,
    pool_tag: Option<String>,
    loaded: Arc<OnceCell<Arc<RegisteredFlow>>>,
}

/// The node's flows by name.
#[derive(Default)]
pub struct FlowRegistry {
    entries: Mutex<HashMap<String, Entry>>,
    search_dirs: Mutex<Vec<PathBuf>>,
}

impl FlowRegistry {
    /// Register `name` as the component at `path`, loading it now so errors surface at startup.
    pub fn register(
        &self,
        engine: &FlowEngine,
        name: &str,
        path: &Path,
        pool_tag: Option<String>,
        timeout: Option<Duration>,
    ) -> Result<Arc<RegisteredFlow>, LoadError> {
        let component = engine.load(path)?;
        let flow = Arc::new(RegisteredFlow {
            name: name.into(),
            pool_tag: pool_tag.clone(),
            timeout,
            component,
        });
        let loaded = Arc::new(OnceCell::new_with(Some(flow.clone())));
        self.lock().insert(
            name.into(),
            Entry {
                path: path.into(),
                pool_tag,
                loaded,
            },
        );
        Ok(flow)
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
        let (path, pool_tag, cell) = {
            let mut entries = self.lock();
            if !entries.contains_key(name) {
                let path = self
                    .find_in_search_dirs(name)
                    .ok_or_else(|| StartError::UnknownFlow(name.into()))?;
                entries.insert(
                    name.into(),
                    Entry {
                        path,
                        pool_tag: None,
                        loaded: Arc::new(OnceCell::new()),
                    },
                );
            }
            let entry = &entries[name];
            (
                entry.path.clone(),
                entry.pool_tag.clone(),
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
                Ok::<_, LoadError>(Arc::new(RegisteredFlow { name: name.into(), pool_tag, timeout: None, component }))
            })
            .await
            .map_err(|source| StartError::Load { flow: name.into(), source })?;
        Ok(flow.clone())
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
