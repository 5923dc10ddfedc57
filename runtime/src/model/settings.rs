//! How a flow is run: its pool tag, timeout, limits, granted directories and retries.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::limits::Limits;

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

/// A directory a flow may use: `guest` path → `host` directory, writable or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirGrant {
    /// Path the guest sees, absolute (`/in`).
    pub guest: String,
    /// Directory on the host.
    pub host: PathBuf,
    /// Whether the guest may create, change and delete files in it.
    pub write: bool,
}

impl DirGrant {
    /// Parse one `"/in" = "data/in:ro"` entry; relative host paths resolve against `base`.
    pub fn parse(guest: &str, spec: &str, base: &Path) -> Result<Self, String> {
        if !guest.starts_with('/') {
            return Err(format!(
                "`{guest}`: the guest path must be absolute, like \"/in\""
            ));
        }
        let (host, write) = match spec.rsplit_once(':') {
            Some((host, "ro")) => (host, false),
            Some((host, "rw")) => (host, true),
            Some((_, mode)) => {
                return Err(format!(
                    "`{spec}`: unknown mode `{mode}`; use `:ro` or `:rw`"
                ));
            }
            None => (spec, false),
        };
        let host = base.join(host);
        if !host.is_dir() {
            return Err(format!("`{spec}`: {} is not a directory", host.display()));
        }
        Ok(DirGrant {
            guest: guest.to_string(),
            host,
            write,
        })
    }

    /// Parse every entry of a flow's `dirs` table.
    pub fn parse_all(dirs: &BTreeMap<String, String>, base: &Path) -> Result<Vec<Self>, String> {
        dirs.iter()
            .map(|(guest, spec)| Self::parse(guest, spec, base))
            .collect()
    }
}
