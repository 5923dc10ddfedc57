//! One node per store: a node (or an offline verb that writes) holds an exclusive lock on
//! its data dir's [`LOCK_FILE`]. The OS releases it when the process ends, however it
//! ends, so a SIGKILLed node leaves nothing to clean up. The file names the holder (pid,
//! since when) for the error a second process gets.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::StoreError;

/// The lock file inside a data directory.
pub const LOCK_FILE: &str = "sluice.lock";

/// A data directory held by this process until dropped.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    path: PathBuf,
}

impl DirLock {
    /// Take the lock of `data_dir` (created if missing), or say who holds it.
    pub fn acquire(data_dir: &Path) -> Result<DirLock, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StoreError::Database(format!(
                "cannot create data dir {}: {e}",
                data_dir.display()
            ))
        })?;
        let path = data_dir.join(LOCK_FILE);
        let io = |e: std::io::Error| {
            StoreError::Database(format!("cannot lock {}: {e}", path.display()))
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(StoreError::InUse {
                    dir: data_dir.to_path_buf(),
                    holder: describe(holder.trim()),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let note = format!("pid {} since {}", std::process::id(), humantime_secs(since));
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(note.as_bytes()))
            .and_then(|()| file.flush())
            .map_err(io)?;
        Ok(DirLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn describe(holder: &str) -> String {
    if holder.is_empty() {
        "another process (it has not written its pid yet)".into()
    } else {
        holder.into()
    }
}

fn humantime_secs(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + std::time::Duration::from_secs(secs)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_named_and_a_drop_frees_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path()).unwrap();
        let e = DirLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        assert!(e.contains("in use"), "{e}");
        drop(first);
        DirLock::acquire(dir.path()).expect("free once the holder is gone");
    }
}
