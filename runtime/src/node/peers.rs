//! Sessions with flows on other nodes, the node's part: delivering each peer's outbox, and
//! taking what peers send (a session to open, messages to keep).
//!
//! Delivery: one loop per peer reads the store's outbox for it, oldest first, after the
//! commit that queued it, and sends it in batches; the peer answers once it has kept them
//! durably, and only then are they forgotten here. A peer that cannot be reached is tried
//! again with backoff; nothing is dropped. Order per session holds because each peer's
//! outbox is sent in the order it was written and the receiver keys messages by number.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use thiserror::Error;

use super::Node;
use crate::error::StartError;
use crate::host::Services;
use crate::model::ids::{initiator_of, responder_of, session_of_responder};
use crate::model::{
    Delivery, OpenSession, Opened, Origin, PeerMessage, Receipt, RefusedMessage, Side, StartMeta,
    StartRequest,
};
use crate::peers::{Backoff, DeliveryError, Link, PeerRefusal, PeerView, Peers};
use crate::store::{StoreError, Write};

/// The most messages sent to a peer in one request.
const BATCH: usize = 512;
/// How often an idle delivery loop looks at its outbox unwoken (a fallback: writes wake it).
const IDLE_LOOK: Duration = Duration::from_secs(2);

/// Why a peer's request is refused or cannot be served now.
#[derive(Debug, Error)]
pub enum PeerError {
    /// Not a configured peer, or a wrong token.
    #[error(transparent)]
    Refused(#[from] PeerRefusal),
    /// No flow here answers the initiating flow.
    #[error(
        "no flow on `{us}` responds to `{flow}` (register one with `initiated-by = \"{flow}\"`)"
    )]
    NoResponder { flow: String, us: String },
    /// The request names something it may not (a malformed id, another party's session).
    #[error("{0}")]
    BadRequest(String),
    /// The responder's id is taken by an instance that is not this session's responder.
    #[error("{0}")]
    Conflict(String),
    /// It may work later (a full queue, a store that cannot write, a drain): the peer
    /// tries again.
    #[error("{0}")]
    Unavailable(String),
}

impl From<StoreError> for PeerError {
    fn from(e: StoreError) -> Self {
        PeerError::Unavailable(format!("the store cannot serve the request: {e}"))
    }
}

impl Node {
    /// This node's peers.
    pub fn peers(&self) -> &Arc<Peers> {
        &self.services().peers
    }

    /// Every peer with its delivery figures and outbox depth.
    pub fn peer_views(&self) -> Result<Vec<PeerView>, StoreError> {
        let depths = self.journal().store().peer_outbox_depth()?;
        Ok(self.peers().views(&depths))
    }

    /// Per-peer metrics in Prometheus text format.
    pub(super) fn render_peer_metrics(&self) -> String {
        if self.peers().links().next().is_none() {
            return String::new();
        }
        let depths = self
            .journal()
            .store()
            .peer_outbox_depth()
            .unwrap_or_default();
        self.peers().render_metrics(&depths)
    }

    /// A peer presenting `token` asks this node to start the responder of `open.session`:
    /// started once (its id derives from the session), in `Peer-Origin` when that pool
    /// exists; asked again, it answers with the same instance.
    pub async fn peer_open(&self, token: &str, open: OpenSession) -> Result<Opened, PeerError> {
        let link = self.peers().authenticate(&open.from, token)?.clone();
        let refused = |e: PeerError| {
            link.stats.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(peer = %open.from, session = %open.session, "refused to open a session: {e}");
            e
        };
        let id = responder_of(&open.session);
        if session_of_responder(&id) != Some(open.session.as_str()) || open.session.len() > 512 {
            return Err(refused(PeerError::BadRequest(format!(
                "`{}` is not a session id (`<initiator id>.<position>`)",
                open.session
            ))));
        }
        let Some(flow) = self.responder_for(&open.flow) else {
            return Err(refused(PeerError::NoResponder {
                flow: open.flow.clone(),
                us: self.identity().to_string(),
            }));
        };
        if let Some(record) = self.journal().store().record(&id)? {
            let origin = StartMeta::parse(&record.meta).map(|m| m.origin);
            if origin.as_ref() != Some(&Origin::Peer(open.from.clone())) {
                return Err(refused(PeerError::Conflict(format!(
                    "instance `{id}` exists and is not the responder of `{}`'s session",
                    open.from
                ))));
            }
        }
        let request = StartRequest::peer(flow.clone(), b"null".to_vec(), open.from.clone())
            .with_id(id.clone());
        match self.start(request).await {
            Ok(_) => {
                link.stats.contact();
                tracing::debug!(peer = %open.from, flow = %flow, instance = %id, "session opened by a peer");
                Ok(Opened {
                    responder: id,
                    flow,
                })
            }
            Err(
                e @ (StartError::QueueFull { .. }
                | StartError::StoreUnavailable { .. }
                | StartError::ShuttingDown),
            ) => Err(PeerError::Unavailable(e.to_string())),
            Err(e) => Err(refused(PeerError::BadRequest(format!(
                "the responder `{flow}` could not start: {e}"
            )))),
        }
    }

    /// A peer presenting `token` hands over messages for flows here: each kept once
    /// (durably, before the answer), then put in its session's mailbox when the session
    /// is live. Messages for sessions this node does not hold with that peer are refused
    /// one by one; the rest are kept.
    pub async fn peer_deliver(
        &self,
        token: &str,
        delivery: Delivery,
    ) -> Result<Receipt, PeerError> {
        let link = self.peers().authenticate(&delivery.from, token)?.clone();
        let store = self.journal().store();
        let mut receipt = Receipt::default();
        let mut batch = Vec::with_capacity(delivery.messages.len());
        let mut kept = Vec::with_capacity(delivery.messages.len());
        for mut m in delivery.messages {
            let why = match m.to {
                Side::Responder => {
                    let id = responder_of(&m.session);
                    match store.record(&id)? {
                        Some(r)
                            if StartMeta::parse(&r.meta).map(|s| s.origin)
                                == Some(Origin::Peer(delivery.from.clone())) =>
                        {
                            None
                        }
                        _ => Some(format!(
                            "no responder of session `{}` opened by `{}` here",
                            m.session, delivery.from
                        )),
                    }
                }
                Side::Initiator => match store.record(initiator_of(&m.session))? {
                    Some(_) => None,
                    None => Some(format!("no instance here opened session `{}`", m.session)),
                },
            };
            if let Some(why) = why {
                tracing::warn!(peer = %delivery.from, session = %m.session, "refused a message: {why}");
                receipt.refused.push(RefusedMessage {
                    session: m.session,
                    to: m.to,
                    seq: m.seq,
                    why,
                });
                continue;
            }
            m.peer = delivery.from.clone();
            batch.push(Write::PeerIn(m.clone()));
            kept.push(m);
        }
        if !receipt.refused.is_empty() {
            link.stats
                .refused
                .fetch_add(receipt.refused.len() as u64, Ordering::Relaxed);
        }
        if !batch.is_empty() {
            self.journal().write(batch).await?;
        }
        let sessions = &self.messaging().sessions;
        for m in &kept {
            sessions.deliver_live(&m.session, m.to, m.seq, &m.body);
        }
        receipt.kept = kept.len() as u64;
        link.stats
            .received
            .fetch_add(receipt.kept, Ordering::Relaxed);
        link.stats.contact();
        Ok(receipt)
    }

    /// Start one delivery loop per configured peer; each ends with the node.
    pub(super) fn start_peer_delivery(&self) {
        for link in self.peers().links() {
            let services = Arc::downgrade(self.services());
            tokio::spawn(deliver(services, link.clone()));
        }
    }
}

/// Send `link`'s outbox until the node is gone.
async fn deliver(services: Weak<Services>, link: Arc<Link>) {
    let mut backoff = Backoff::default();
    loop {
        let Some(s) = services.upgrade() else {
            return;
        };
        // What a wake announced is queued in the writer: committed once this returns.
        let batch = match s.journal.sync().await {
            Ok(()) => s.journal.store().peer_outbox(&link.party, BATCH),
            Err(e) => Err(e),
        };
        let batch = match batch {
            Ok(batch) => batch,
            Err(e) => {
                tracing::warn!(peer = %link.party, "cannot read the outbox: {e}");
                drop(s);
                tokio::time::sleep(backoff.wait()).await;
                continue;
            }
        };
        if batch.is_empty() {
            drop(s);
            let _ = tokio::time::timeout(IDLE_LOOK, link.wake.notified()).await;
            continue;
        }
        let delivery = Delivery {
            from: s.identity.clone(),
            messages: batch
                .iter()
                .map(|m| PeerMessage {
                    peer: String::new(),
                    ..m.clone()
                })
                .collect(),
        };
        let peers = s.peers.clone();
        drop(s);
        match peers.client().deliver(&link, &delivery).await {
            Ok(receipt) => {
                backoff.reset();
                link.stats.contact();
                link.stats.sent.fetch_add(receipt.kept, Ordering::Relaxed);
                for r in &receipt.refused {
                    // Never deliverable (the peer holds no such session): kept no longer.
                    tracing::error!(peer = %link.party, session = %r.session, seq = r.seq, "the peer refused a message for good: {}", r.why);
                }
                let done = batch
                    .iter()
                    .map(|m| Write::PeerSent {
                        session: m.session.clone(),
                        to: m.to,
                        seq: m.seq,
                    })
                    .collect();
                if let Some(s) = services.upgrade()
                    && let Err(e) = s.journal.append(done)
                {
                    tracing::warn!(peer = %link.party, "cannot forget delivered messages (they are sent again): {e}");
                }
            }
            Err(DeliveryError::Unreachable { why, .. }) => {
                link.stats
                    .retried
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                if link.stats.failed(&why) {
                    tracing::warn!(peer = %link.party, "cannot deliver {} message(s): {why}; retrying with backoff", batch.len());
                }
                link.stats.until_back(backoff.wait()).await;
            }
            Err(DeliveryError::Refused(refused)) => {
                // A wrong token or an unknown party: an operator must fix a config. Kept.
                link.stats
                    .retried
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                link.stats.refused.fetch_add(1, Ordering::Relaxed);
                if link.stats.failed(&refused.to_string()) {
                    tracing::error!(peer = %link.party, "{refused}; the messages are kept and sent again");
                }
                tokio::time::sleep(Backoff::MOST).await;
            }
        }
    }
}
