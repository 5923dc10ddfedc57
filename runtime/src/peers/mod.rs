//! The other nodes this node's flows hold sessions with: who they are, where they listen,
//! the tokens each side presents, and how delivery to each is going.
//!
//! Each side proves who it is with a bearer token per direction: the sender presents the
//! token it was given, the receiver keeps only its SHA-256 and compares in constant time
//! (the same scheme as the API's tokens). Tokens rather than mutual TLS because they need
//! no certificate authority and work unchanged behind a TLS-terminating proxy; the
//! transport itself is plain HTTP between trusted hosts for now.

mod client;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use thiserror::Error;
use tokio::sync::Notify;

pub use client::{DeliveryError, Refused};

use crate::config::PeerConfig;
use crate::model::{OpenSession, Opened, unix_ms};

/// One configured peer.
pub struct Link {
    /// Its party name (identity).
    pub party: String,
    /// Its API base URL, without a trailing slash.
    pub url: String,
    /// What this node presents to it. Never logged.
    token: String,
    /// SHA-256 of what it presents to this node.
    accepts: [u8; 32],
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
    down: AtomicBool,
    /// Wakes every waiter once the peer answers again.
    back: Notify,
    /// Held by the one request that probes a peer known to be down.
    probe: tokio::sync::Mutex<()>,
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

/// Why a request from another node is refused. Nothing is started or kept then.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PeerRefusal {
    /// No `[peers.<party>]` entry names it.
    #[error("`{party}` is not a configured peer of `{us}`")]
    NotAPeer { party: String, us: String },
    /// The token does not match the one configured for that party.
    #[error("wrong credential for peer `{party}`")]
    WrongCredential { party: String },
}

/// This node's peers.
#[derive(Debug, Default)]
pub struct Peers {
    identity: String,
    links: BTreeMap<String, Arc<Link>>,
    client: client::Client,
}

/// One peer as operators see it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PeerView {
    /// Its party name.
    pub party: String,
    /// Where it listens.
    pub url: String,
    /// Whether the last attempt to reach it succeeded (false before any attempt).
    pub reachable: bool,
    /// Unix ms of the last successful exchange either way, if any.
    pub last_contact_ms: Option<u64>,
    /// Why the last attempt to reach it failed, if it did.
    pub last_error: Option<String>,
    /// Messages kept for it, not acknowledged yet.
    pub outbox: u64,
    /// Messages it acknowledged.
    pub sent: u64,
    /// Messages received from it.
    pub received: u64,
    /// Messages sent again after a failed attempt.
    pub retried: u64,
    /// Requests refused either way.
    pub refused: u64,
}

impl Peers {
    /// The peers of `peers` (a validated config), their tokens read from their files
    /// (relative to `base`) or environment variables.
    pub fn from_config(
        identity: &str,
        peers: &BTreeMap<String, PeerConfig>,
        base: &Path,
    ) -> Result<Self, String> {
        let mut links = BTreeMap::new();
        for (party, peer) in peers {
            let at = format!("peers.{party}");
            let token = match (&peer.token_file, &peer.token_env) {
                (Some(file), _) => {
                    let path = base.join(file);
                    std::fs::read_to_string(&path).map_err(|e| {
                        format!("{at}.token-file: cannot read {}: {e}", path.display())
                    })?
                }
                (None, Some(var)) => std::env::var(var).map_err(|_| {
                    format!("{at}.token-env: the environment variable `{var}` is not set")
                })?,
                (None, None) => return Err(format!("{at}: no token source")),
            };
            let token = token.trim().to_string();
            if token.is_empty() {
                return Err(format!("{at}: the token is empty"));
            }
            let accepts: [u8; 32] = hex::decode(&peer.accepts)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| format!("{at}.accepts: must be 64 hex digits"))?;
            links.insert(
                party.clone(),
                Arc::new(Link {
                    party: party.clone(),
                    url: peer.url.trim_end_matches('/').to_string(),
                    token,
                    accepts,
                    wake: Notify::new(),
                    stats: LinkStats::default(),
                }),
            );
        }
        Ok(Peers {
            identity: identity.to_string(),
            links,
            client: client::Client::new(),
        })
    }

    /// This node's identity, as peers know it.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The peer called `party`, if configured.
    pub fn link(&self, party: &str) -> Option<&Arc<Link>> {
        self.links.get(party)
    }

    /// Every configured peer, by name.
    pub fn links(&self) -> impl Iterator<Item = &Arc<Link>> {
        self.links.values()
    }

    /// The configured parties, for messages that list them.
    pub fn parties(&self) -> Vec<String> {
        self.links.keys().cloned().collect()
    }

    /// Something was queued for `party`: its delivery loop looks (after the next commit).
    pub fn wake(&self, party: &str) {
        if let Some(link) = self.links.get(party) {
            link.wake.notify_one();
        }
    }

    /// The peer `from` presenting `token`: refused unless it is configured and the token's
    /// hash matches, compared in constant time. Counted and logged (never the token).
    pub fn authenticate(&self, from: &str, token: &str) -> Result<&Arc<Link>, PeerRefusal> {
        let Some(link) = self.links.get(from) else {
            tracing::warn!(
                peer = from,
                "refused a request from `{from}`: not a configured peer"
            );
            return Err(PeerRefusal::NotAPeer {
                party: from.to_string(),
                us: self.identity.clone(),
            });
        };
        let hash: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
        if !bool::from(link.accepts.ct_eq(&hash)) {
            link.stats.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                peer = from,
                "refused a request from `{from}`: wrong credential"
            );
            return Err(PeerRefusal::WrongCredential {
                party: from.to_string(),
            });
        }
        Ok(link)
    }

    /// Ask `party` to start the responder of `open.session`. A peer that cannot be reached
    /// is asked again, with backoff, until it answers (the caller waits parked); a refusal
    /// is final. The future borrows nothing.
    pub fn open(
        self: &Arc<Self>,
        party: &str,
        open: OpenSession,
    ) -> impl Future<Output = Result<Opened, String>> + Send + 'static {
        let (peers, party) = (self.clone(), party.to_string());
        async move {
            let Some(link) = peers.links.get(&party).cloned() else {
                return Err(format!("unknown party `{party}`"));
            };
            let mut backoff = Backoff::default();
            loop {
                // While the peer is down one request probes it; the others wait for it to
                // answer again (or for the longest backoff), not each on its own timer.
                let probing = if link.stats.down.load(Ordering::Acquire) {
                    match link.stats.probe.try_lock() {
                        Ok(guard) => Some(guard),
                        Err(_) => {
                            link.stats.until_back(Backoff::MOST).await;
                            continue;
                        }
                    }
                } else {
                    None
                };
                let answer = peers.client.open(&link, &open).await;
                drop(probing);
                match answer {
                    Ok(opened) => {
                        link.stats.contact();
                        return Ok(opened);
                    }
                    Err(DeliveryError::Refused(refused)) => {
                        link.stats.contact();
                        link.stats.refused.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(peer = %party, session = %open.session, "{refused}");
                        return Err(refused.to_string());
                    }
                    Err(e @ DeliveryError::Unreachable { .. }) => {
                        if link.stats.failed(&e.to_string()) {
                            tracing::warn!(peer = %party, "{e}; retrying with backoff");
                        }
                        link.stats.until_back(backoff.wait()).await;
                    }
                }
            }
        }
    }

    /// The HTTP client peers are reached with.
    pub fn client(&self) -> &client::Client {
        &self.client
    }

    /// Every peer as operators see it, with its outbox depth from `depths`.
    pub fn views(&self, depths: &[(String, u64)]) -> Vec<PeerView> {
        self.links
            .values()
            .map(|link| {
                let s = &link.stats;
                let contact = s.last_contact_ms.load(Ordering::Acquire);
                PeerView {
                    party: link.party.clone(),
                    url: link.url.clone(),
                    reachable: s.reachable.load(Ordering::Acquire),
                    last_contact_ms: (contact > 0).then_some(contact),
                    last_error: s
                        .last_error
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clone(),
                    outbox: depths
                        .iter()
                        .find(|(p, _)| *p == link.party)
                        .map_or(0, |(_, n)| *n),
                    sent: s.sent.load(Ordering::Relaxed),
                    received: s.received.load(Ordering::Relaxed),
                    retried: s.retried.load(Ordering::Relaxed),
                    refused: s.refused.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// Per-peer metrics in Prometheus text format (empty without peers).
    pub fn render_metrics(&self, depths: &[(String, u64)]) -> String {
        use std::fmt::Write as _;
        if self.links.is_empty() {
            return String::new();
        }
        let views = self.views(depths);
        let mut out = String::new();
        let families: [Family; 6] = [
            (
                "sluice_peer_sent_total",
                "counter",
                "Messages a peer acknowledged.",
                |v| v.sent,
            ),
            (
                "sluice_peer_received_total",
                "counter",
                "Messages received from a peer and kept.",
                |v| v.received,
            ),
            (
                "sluice_peer_retried_total",
                "counter",
                "Messages sent to a peer again after a failed attempt.",
                |v| v.retried,
            ),
            (
                "sluice_peer_refused_total",
                "counter",
                "Requests refused to or from a peer.",
                |v| v.refused,
            ),
            (
                "sluice_peer_outbox",
                "gauge",
                "Messages kept for a peer, not acknowledged yet.",
                |v| v.outbox,
            ),
            (
                "sluice_peer_reachable",
                "gauge",
                "Whether the last attempt to reach a peer succeeded.",
                |v| u64::from(v.reachable),
            ),
        ];
        for (name, kind, help, value) in families {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for v in &views {
                let party = v.party.replace(['\\', '"', '\n'], "_");
                let _ = writeln!(out, "{name}{{peer=\"{party}\"}} {}", value(v));
            }
        }
        out
    }
}

/// A metric family: its name, type, help and value per peer.
type Family = (
    &'static str,
    &'static str,
    &'static str,
    fn(&PeerView) -> u64,
);

/// Waits between attempts to reach a peer: from 50 ms, doubling, at most 5 s.
#[derive(Debug)]
pub struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Backoff(Backoff::FIRST)
    }
}

impl Backoff {
    /// The first wait.
    pub const FIRST: Duration = Duration::from_millis(50);
    /// The longest wait.
    pub const MOST: Duration = Duration::from_secs(5);

    /// The next wait.
    pub fn wait(&mut self) -> Duration {
        let wait = self.0;
        self.0 = (self.0 * 2).min(Self::MOST);
        wait
    }

    /// Start again from the first wait (the peer answered).
    pub fn reset(&mut self) {
        self.0 = Self::FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(token_env: &str) -> Peers {
        let (_, hash) = ("", hex::encode(Sha256::digest(b"slc_b_to_a")));
        let config = PeerConfig {
            url: "http://127.0.0.1:1/".into(),
            token_file: None,
            token_env: Some(token_env.into()),
            accepts: hash,
        };
        let mut map = BTreeMap::new();
        map.insert("PartyB".to_string(), config);
        Peers::from_config("PartyA", &map, Path::new(".")).unwrap()
    }

    #[test]
    fn a_peer_is_known_by_its_name_and_token_only() {
        // SAFETY: a variable only this test reads.
        unsafe { std::env::set_var("SLUICE_TEST_PEER_TOKEN_1", "slc_a_to_b\n") };
        let p = peers("SLUICE_TEST_PEER_TOKEN_1");
        assert_eq!(p.link("PartyB").unwrap().url, "http://127.0.0.1:1");
        assert_eq!(p.link("PartyB").unwrap().token, "slc_a_to_b");
        assert!(p.authenticate("PartyB", "slc_b_to_a").is_ok());
        assert_eq!(
            p.authenticate("PartyB", "slc_a_to_b").unwrap_err(),
            PeerRefusal::WrongCredential {
                party: "PartyB".into()
            }
        );
        assert_eq!(
            p.authenticate("PartyC", "slc_b_to_a")
                .unwrap_err()
                .to_string(),
            "`PartyC` is not a configured peer of `PartyA`"
        );
        let text = p.render_metrics(&[("PartyB".into(), 3)]);
        assert!(
            text.contains("sluice_peer_outbox{peer=\"PartyB\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("sluice_peer_refused_total{peer=\"PartyB\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn a_missing_token_is_a_clear_error() {
        let config = PeerConfig {
            url: "http://h:1".into(),
            token_file: Some("nowhere/b.token".into()),
            token_env: None,
            accepts: "00".repeat(32),
        };
        let mut map = BTreeMap::new();
        map.insert("PartyB".to_string(), config);
        let e = Peers::from_config("PartyA", &map, Path::new("/tmp")).unwrap_err();
        assert!(
            e.starts_with("peers.PartyB.token-file: cannot read /tmp/nowhere/b.token"),
            "{e}"
        );
    }
}
