//! The peers as operators see them: the API's and the CLI's view, and the metrics.

use std::sync::atomic::Ordering;

use serde::Serialize;

use super::Peers;

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
