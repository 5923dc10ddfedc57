//! `sluice:flow/sessions`: a flow's sessions with counterparties.
//!
//! A party is this node's own identity (a flow may open a session with its own party, as
//! in Corda) or a configured peer (`[peers.<party>]`). The responder is the flow
//! registered `initiated-by` the initiator on the party's node; it starts at the first
//! `send` or `receive`. With a peer, a `send` is journaled together with an outbox row the
//! node delivers from ([`crate::peers`]); what the peer sends is kept in the store's
//! inbox before the mailbox sees it.

use std::future::Future;
use std::sync::Arc;

use wasmtime::component::Resource;

use super::{HostState, Services};
use crate::messaging::{Boxes, Mailbox, Next};
use crate::model::ids::{initiator_of, responder_of, session_id, session_of_responder};
use crate::model::{
    OpenSession, PeerBody, PeerMessage, SessionRef, Side, StartRequest, end_reason,
};
use crate::replay::calls::{self, Call, Exchanged, Kind, Opened};
use crate::store::{Payload, StoreError, Write, decode};
use crate::wit::sessions;

impl HostState {
    /// The mailbox `side` of `session` receives from, filled from the store first when
    /// the session predates this process. The future borrows nothing of the instance.
    fn inbox(
        &self,
        session: &SessionRef,
        side: Side,
    ) -> impl Future<Output = wasmtime::Result<Arc<Mailbox>>> + Send + 'static {
        let boxes = self.services.messaging.sessions.boxes(&session.id);
        let remote = self.remote(session).is_some();
        let (services, id) = (self.services.clone(), session.id.clone());
        async move {
            boxes
                .loaded(|| rebuild(&services, &id, &boxes, remote))
                .await?;
            Ok(boxes.inbox(side))
        }
    }

    /// The other node `session`'s counterparty lives on, when it is not this one.
    fn remote<'a>(&self, session: &'a SessionRef) -> Option<&'a str> {
        (session.party != self.services.identity).then_some(session.party.as_str())
    }

    /// Start the responder of `session` (idempotent: its id derives from the session).
    async fn initiate(&mut self, session: &SessionRef) -> wasmtime::Result<Result<(), String>> {
        let identity = self.services.identity.clone();
        if let Some(party) = self.remote(session) {
            if self.services.peers.link(party).is_none() {
                let known = self.services.peers.parties();
                return Ok(Err(format!(
                    "unknown party `{party}`: this node is `{identity}`{}",
                    if known.is_empty() {
                        " and has no peers".to_string()
                    } else {
                        format!(" and its peers are {}", known.join(", "))
                    }
                )));
            }
            // Asked already by an earlier life of this instance (one evicted while it
            // waited for the answer): asking again would cost a round trip, during which a
            // full node could evict it again, and again.
            if self.services.messaging.sessions.opened(&session.id) {
                return Ok(Ok(()));
            }
            // Parked while the peer is asked (and asked again while it cannot be reached).
            let open = OpenSession {
                from: identity,
                session: session.id.clone(),
                flow: self.owner.flow.clone(),
            };
            let asking = self.services.peers.open(party, open);
            let (services, id) = (self.services.clone(), session.id.clone());
            let opening = async move {
                let opened = asking.await;
                if opened.is_ok() {
                    // Noted by the wait itself: an evicted instance's wait ends without it.
                    services.messaging.sessions.mark_opened(&id);
                }
                opened
            };
            return Ok(self.park(opening).await?.map(|_| ()));
        }
        let Some(responder) = self.services.registry.responder_for(&self.owner.flow) else {
            return Ok(Err(format!(
                "no flow on `{identity}` responds to `{}` (register one with \
                 `initiated-by = \"{}\"`)",
                self.owner.flow, self.owner.flow
            )));
        };
        let request = StartRequest::peer(responder.clone(), b"null".to_vec(), identity)
            .with_id(responder_of(&session.id));
        // In a cluster a responder may already run on another node: attach to it.
        let may_exist =
            !self.recorder.first_life() || self.services.journal.store().cluster().is_some();
        Ok(match self.start_child_with(request, may_exist).await? {
            Ok(_handle) => Ok(()),
            Err(e) => Err(format!("the responder `{responder}` could not start: {e}")),
        })
    }

    fn session(&self, s: &Resource<SessionRef>) -> wasmtime::Result<SessionRef> {
        Ok(self.table.get(s)?.clone())
    }

    fn mark_initiated(&mut self, s: &Resource<SessionRef>) -> wasmtime::Result<()> {
        self.table.get_mut(s)?.initiated = true;
        Ok(())
    }
}

/// Fill a session's mailboxes from its ends' journals: every successful `send` on it is a
/// message, numbered in order. Each receiver takes from its own count of `receive`s, so
/// what it took before is skipped. An end that already ended closes its direction. A
/// `remote` session's messages come from the store's inbox of what its peer sent.
async fn rebuild(
    services: &Services,
    session: &str,
    boxes: &Boxes,
    remote: bool,
) -> Result<(), StoreError> {
    services.journal.sync().await?;
    let store = services.journal.store();
    if remote {
        for side in [Side::Initiator, Side::Responder] {
            let inbox = boxes.inbox(side);
            for m in store.peer_inbox(session, side)? {
                match m.body {
                    PeerBody::Message(payload) => inbox.deliver(m.seq, payload),
                    PeerBody::End(why) => inbox.close(why),
                }
            }
        }
        return Ok(());
    }
    let ends = [
        (initiator_of(session).to_string(), Side::Responder),
        (responder_of(session), Side::Initiator),
    ];
    for (sender, receiver) in ends {
        let inbox = boxes.inbox(receiver);
        let mut seq = 0;
        for entry in store.journal(&sender)? {
            if Kind::from_name(&entry.call) != Some(Kind::Send) {
                continue;
            }
            let Some(payload) = calls::sent_on(&entry.args, session) else {
                continue;
            };
            if matches!(decode::<Exchanged>(&entry.result), Ok(Ok(_))) {
                inbox.deliver(seq, payload);
                seq += 1;
            }
        }
        if let Some(record) = store.record(&sender)?
            && let Some(outcome) = record.outcome()
        {
            inbox.close(end_reason(&sender, &outcome));
        }
    }
    Ok(())
}

impl Services {
    /// Read session `id`'s messages and ends from the store again, when it is live here:
    /// in a cluster, a counterparty running on another node sends through the store only.
    /// Harmless when nothing is new (a mailbox keeps each message once).
    pub fn refresh_session(self: &Arc<Self>, id: &str) {
        let Some((boxes, remote)) = self.messaging.sessions.live_boxes(id) else {
            return;
        };
        let (services, id) = (self.clone(), id.to_string());
        tokio::spawn(async move {
            if let Err(e) = rebuild(&services, &id, &boxes, remote).await {
                tracing::warn!("cannot read session {id} from the store: {e}");
            }
        });
    }
}

impl sessions::Host for HostState {
    async fn initiator(&mut self) -> wasmtime::Result<Option<Resource<SessionRef>>> {
        self.meter.journaled(1)?;
        let opened: Option<Opened> = match self.recorder.replay_as(&Call::Initiator)? {
            Some(opened) => opened,
            None => {
                let opened = match (&self.peer, session_of_responder(&self.owner.id)) {
                    (Some(party), Some(session)) => Some(Opened {
                        session: session.to_string(),
                        party: party.clone(),
                    }),
                    _ => None,
                };
                self.recorder.record(&Call::Initiator, &opened)?;
                opened
            }
        };
        let Some(opened) = opened else {
            return Ok(None);
        };
        let peer = (opened.party != self.services.identity).then_some(opened.party.as_str());
        self.services.messaging.sessions.attach(
            &opened.session,
            &self.owner.id,
            Side::Responder,
            false,
            peer,
        );
        let session = SessionRef::new(opened.session, opened.party, Side::Responder);
        Ok(Some(self.table.push(session)?))
    }
}

impl sessions::HostSession for HostState {
    async fn new(&mut self, party: String) -> wasmtime::Result<Resource<SessionRef>> {
        self.meter.journaled(1)?;
        let call = Call::Session { party: &party };
        let (opened, fresh) = match self.recorder.replay_as::<Opened>(&call)? {
            Some(opened) => (opened, false),
            None => {
                // Derived from the journal position: a re-run opens the same session.
                let opened = Opened {
                    session: session_id(&self.owner.id, self.recorder.position()),
                    party: party.clone(),
                };
                self.recorder.record(&call, &opened)?;
                (opened, true)
            }
        };
        let peer = (opened.party != self.services.identity).then_some(opened.party.as_str());
        self.services.messaging.sessions.attach(
            &opened.session,
            &self.owner.id,
            Side::Initiator,
            fresh,
            peer,
        );
        let session = SessionRef::new(opened.session, opened.party, Side::Initiator);
        Ok(self.table.push(session)?)
    }

    async fn send(
        &mut self,
        s: Resource<SessionRef>,
        payload: Vec<u8>,
    ) -> wasmtime::Result<Result<(), String>> {
        self.meter.journaled(1)?;
        let session = self.session(&s)?;
        let call = Call::Send {
            session: &session.id,
            payload: &payload,
        };
        if let Some(sent) = self.recorder.replay_as::<Exchanged>(&call)? {
            self.mark_initiated(&s)?;
            if sent.is_ok() {
                self.table.get_mut(&s)?.sent += 1;
            }
            return Ok(sent.map(|_| ()));
        }
        if !session.initiated {
            if let Err(why) = self.initiate(&session).await? {
                let failed: Exchanged = Err(why.clone());
                self.recorder.record(&call, &failed)?;
                return Ok(Err(why));
            }
            self.mark_initiated(&s)?;
        }
        // Journaled before it is delivered: a receiver's journal never holds a message
        // its sender's journal could lose.
        let sent: Exchanged = Ok(None);
        if let Some(party) = self.remote(&session) {
            // The outbox row commits with the journaled send: a crash keeps both or neither.
            let to = session.side.other();
            let out = PeerMessage::message(party, &session.id, to, session.sent, payload.clone());
            self.recorder
                .record_with(&call, &sent, vec![Write::PeerOut(out)])?;
            self.services.peers.wake(party);
        } else {
            self.recorder.record(&call, &sent)?;
            let inbox = self.inbox(&session, session.side.other()).await?;
            inbox.deliver(session.sent, payload);
        }
        self.table.get_mut(&s)?.sent += 1;
        Ok(Ok(()))
    }

    async fn receive(
        &mut self,
        s: Resource<SessionRef>,
    ) -> wasmtime::Result<Result<Vec<u8>, String>> {
        self.meter.journaled(1)?;
        let session = self.session(&s)?;
        let call = Call::Receive {
            session: &session.id,
        };
        if let Some(received) = self.recorder.replay_as::<Exchanged>(&call)? {
            self.mark_initiated(&s)?;
            if received.is_ok() {
                self.table.get_mut(&s)?.received += 1;
            }
            return Ok(received.map(|p| p.unwrap_or_default().0));
        }
        let received: Result<Vec<u8>, String> = 'received: {
            if !session.initiated {
                if let Err(why) = self.initiate(&session).await? {
                    break 'received Err(why);
                }
                self.mark_initiated(&s)?;
            }
            let inbox = self.inbox(&session, session.side).await?;
            loop {
                match inbox.take(session.received) {
                    Next::Message(m) => break 'received Ok(m),
                    Next::Closed(why) => break 'received Err(why),
                    Next::Empty => {
                        let (ready, seq) = (inbox.clone(), session.received);
                        self.park(async move { ready.ready(seq).await }).await?;
                    }
                }
            }
        };
        let journaled: Exchanged = received.clone().map(|m| Some(Payload(m)));
        self.recorder.record(&call, &journaled)?;
        if received.is_ok() {
            self.table.get_mut(&s)?.received += 1;
        }
        Ok(received)
    }

    async fn counterparty(&mut self, s: Resource<SessionRef>) -> wasmtime::Result<String> {
        self.meter.host_call();
        Ok(self.table.get(&s)?.party.clone())
    }

    async fn drop(&mut self, s: Resource<SessionRef>) -> wasmtime::Result<()> {
        self.table.delete(s)?;
        Ok(())
    }
}
