//! The other nodes this node's flows hold sessions with: who they are, where they listen,
//! the tokens each side presents, and how delivery to each is going.
//!
//! Each side proves who it is with a bearer token per direction: the sender presents the
//! token it was given, the receiver keeps only its SHA-256 and compares in constant time
//! (the same scheme as the API's tokens). Tokens rather than mutual TLS because they need
//! no certificate authority and work unchanged behind a TLS-terminating proxy; the
//! transport itself is plain HTTP between trusted hosts for now.

mod backoff;
mod client;
mod link;
mod report;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use thiserror::Error;
use tokio::sync::Notify;

pub use backoff::Backoff;
pub use client::{DeliveryError, Refused};
pub use link::{Link, LinkStats};
pub use report::PeerView;

use crate::config::PeerConfig;
use crate::model::{OpenSession, Opened};

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
