//! One configured peer: where it listens, the tokens between it and this node, and how
//! exchanges with it go.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use crate::model::unix_ms;

/// One configured peer.
pub struct Link {
    /// Its party name (identity).
    pub party: String,
    /// Its API base URL, without a trailing slash.
    pub url: String,
    /// What this node presents to it. Never logged.
    pub(super) token: String,
    /// SHA-256 of what it presents to this node.
    pub(super) accepts: [u8; 32],
    /// Wakes its delivery loop: something was queued for it.
    pub wake: Notify,
    /// How delivery to and from it goes.
    pub stats: LinkStats,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("party", &self.party)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// Counters and the latest state of one peer.
#[derive(Debug, Default)]
pub struct LinkStats {
    /// Messages (and ends) it acknowledged.
    pub sent: AtomicU64,
    /// Messages (and ends) it sent here that were kept.
    pub received: AtomicU64,
    /// Messages sent again after a failed attempt.
    pub retried: AtomicU64,
    /// Requests this node refused from it, or it refused from this node.
    pub refused: AtomicU64,
    /// Whether the last attempt to reach it succeeded.
    pub reachable: AtomicBool,
    /// Unix ms of the last successful exchange either way (0: none yet).
    pub last_contact_ms: AtomicU64,
    /// Why the last attempt failed, if it did.
    pub last_error: Mutex<Option<String>>,
    /// Set while the peer is known to be down: whoever waits to reach it waits for this
    /// (see [`LinkStats::back`]) instead of each asking on its own.
    pub(super) down: AtomicBool,
    /// Wakes every waiter once the peer answers again.
    pub(super) back: Notify,
    /// Held by the one request that probes a peer known to be down.
    pub(super) probe: tokio::sync::Mutex<()>,
}

impl LinkStats {
    /// An exchange with the peer succeeded.
    pub fn contact(&self) {
        self.reachable.store(true, Ordering::Release);
        self.last_contact_ms.store(unix_ms(), Ordering::Release);
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
        if self.down.swap(false, Ordering::AcqRel) {
            self.back.notify_waiters();
        }
    }

    /// An attempt to reach the peer failed: why. Returns whether it was reachable before
    /// (so a streak of failures is logged once).
    pub fn failed(&self, why: &str) -> bool {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(why.to_string());
        self.down.store(true, Ordering::Release);
        self.reachable.swap(false, Ordering::AcqRel)
    }

    /// Wait `wait`, or less if the peer answers again meanwhile.
    pub async fn until_back(&self, wait: Duration) {
        let back = self.back.notified();
        tokio::pin!(back);
        back.as_mut().enable();
        if self.down.load(Ordering::Acquire) {
            let _ = tokio::time::timeout(wait, back).await;
        }
    }
}
