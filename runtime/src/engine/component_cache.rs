//! Compile a component once: compiled artifacts are cached on disk by content hash,
//! so a restarted node deserializes instead of recompiling. The cache directory is opened
//! once as a cap-std capability; no file name can lead outside it.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::error::LoadError;

/// A component's identity: the SHA-256 of its bytes, in hex.
pub type ContentHash = String;

/// Where compiled components are kept (or nowhere, compiling every time).
#[derive(Debug, Clone)]
pub struct ComponentCache {
    dir: Option<PathBuf>,
}

/// What a load found in the cache, for reports and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Deserialized from a cached artifact.
    Hit,
    /// Compiled (and stored when a cache dir is set).
    Compiled,
}

impl ComponentCache {
    /// A cache in `dir`, or no cache when `None`.
    pub fn new(dir: Option<PathBuf>) -> Self {
        ComponentCache { dir }
    }

    /// The per-user default: `$XDG_CACHE_HOME/sluice` or `~/.cache/sluice`.
    pub fn default_dir() -> Option<PathBuf> {
        std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .map(|d| d.join("sluice"))
    }

    /// Read, check and compile (or fetch from cache) the component at `path`.
    pub fn load(
        &self,
        engine: &Engine,
        path: &Path,
    ) -> Result<(Component, ContentHash, CacheOutcome), LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.into(),
            source,
        })?;
        self.load_bytes(engine, &bytes, path)
    }

    /// Check and compile (or fetch from cache) a component's `bytes`; `path` names it in errors.
    pub fn load_bytes(
        &self,
        engine: &Engine,
        bytes: &[u8],
        path: &Path,
    ) -> Result<(Component, ContentHash, CacheOutcome), LoadError> {
        check_header(bytes, path)?;
        let hash = content_hash(bytes);
        let Some(dir_path) = &self.dir else {
            return Ok((compile(engine, bytes, path)?, hash, CacheOutcome::Compiled));
        };
        let dir = open_dir(dir_path)?;
        let artifact = format!("{hash}-{}.cwasm", engine_key(engine));
        if let Ok(cached) = dir.read(&artifact) {
            // SAFETY: the artifact was written by `Component::serialize` of an engine with the
            // same compatibility hash, into a directory this node owns. A corrupt file fails
            // to deserialize (checked header and version) and is recompiled below.
            match unsafe { Component::deserialize(engine, &cached) } {
                Ok(component) => return Ok((component, hash, CacheOutcome::Hit)),
                Err(e) => {
                    tracing::warn!(artifact = %dir_path.join(&artifact).display(), "recompiling: cached artifact unusable: {e}")
                }
            }
        }
        let component = compile(engine, bytes, path)?;
        store(&dir, dir_path, &artifact, &component)?;
        Ok((component, hash, CacheOutcome::Compiled))
    }
}

/// The cache directory as a capability: every file operation below stays inside it.
fn open_dir(path: &Path) -> Result<Dir, LoadError> {
    let cache_err = |reason: String| LoadError::Cache {
        path: path.into(),
        reason,
    };
    std::fs::create_dir_all(path).map_err(|e| cache_err(format!("cannot create: {e}")))?;
    Dir::open_ambient_dir(path, ambient_authority())
        .map_err(|e| cache_err(format!("cannot open: {e}")))
}

/// A component's identity: the SHA-256 of its bytes, in hex.
pub fn content_hash(bytes: &[u8]) -> ContentHash {
    hex::encode(Sha256::digest(bytes))
}

/// Tell "not Wasm" and "a core module" apart from a component before compiling.
pub fn check_header(bytes: &[u8], path: &Path) -> Result<(), LoadError> {
    if bytes.len() < 8 || &bytes[0..4] != b"\0asm" {
        return Err(LoadError::NotWasm { path: path.into() });
    }
    // Core modules have version 1 and layer 0; components have layer 1.
    if bytes[6..8] == [0, 0] {
        return Err(LoadError::CoreModule { path: path.into() });
    }
    Ok(())
}

fn compile(engine: &Engine, bytes: &[u8], path: &Path) -> Result<Component, LoadError> {
    Component::new(engine, bytes).map_err(|e| LoadError::Invalid {
        path: path.into(),
        reason: format!("{e:#}"),
    })
}

/// Write atomically (temp file + rename) so a crash never leaves a half artifact.
fn store(
    dir: &Dir,
    dir_path: &Path,
    artifact: &str,
    component: &Component,
) -> Result<(), LoadError> {
    let cache_err = |reason: String| LoadError::Cache {
        path: dir_path.into(),
        reason,
    };
    let serialized = component
        .serialize()
        .map_err(|e| cache_err(format!("cannot serialize: {e}")))?;
    // Unique per writer: two nodes in one process (or two processes) may compile the same
    // component at once; each renames its own file, and the last rename wins harmlessly.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = format!("{artifact}.tmp{}-{n}", std::process::id());
    dir.write(&tmp, serialized)
        .map_err(|e| cache_err(format!("cannot write {tmp}: {e}")))?;
    dir.rename(&tmp, dir, artifact)
        .map_err(|e| cache_err(format!("cannot rename {tmp} into place: {e}")))
}

/// A key that changes whenever the engine's compiled code would not be compatible.
fn engine_key(engine: &Engine) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    format!("{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_checks() {
        let p = Path::new("x.wasm");
        assert!(matches!(
            check_header(b"hello world", p),
            Err(LoadError::NotWasm { .. })
        ));
        assert!(matches!(
            check_header(b"\0asm\x01\0\0\0", p),
            Err(LoadError::CoreModule { .. })
        ));
        assert!(check_header(b"\0asm\x0d\0\x01\0", p).is_ok());
    }
}
