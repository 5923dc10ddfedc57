//! `sluice:flow/sessions`: a flow's sessions with counterparties.
//!
//! Sessions reach flows on this node only: a party is this node's identity (a flow may
//! open a session with its own party, as in Corda). The responder is the flow registered
//! `initiated-by` the initiator; it starts at the first `send` or `receive`.

use std::future::Future;
use std::sync::Arc;

use serde_json::json;
use wasmtime::component::Resource;

use super::HostState;
use crate::bindings::sluice::flow::sessions;
use crate::journal::{Payload, StoreError, decode, encode};
use crate::journal_calls::{self as calls, Exchanged, Opened};
use crate::messaging::sessions::{
    Boxes, end_reason, initiator_of, responder_of, session_of_responder,
};
use crate::messaging::{Mailbox, Next, SessionRef, Side};
use crate::node::{Node, StartRequest};
use crate::recovery::outcome_of_record;

impl HostState {
    /// The mailbox `side` of session `id` receives from, filled from the store first when
    /// the session predates this process. The future borrows nothing of the instance.
    fn inbox(
        &self,
        id: &str,
        side: Side,
    ) -> impl Future<Output = wasmtime::Result<Arc<Mailbox>>> + Send + 'static {
        let boxes = self.node.messaging().sessions.boxes(id);
        let (node, id) = (self.node.clone(), id.to_string());
        async move {
            boxes.loaded(|| rebuild(&node, &id, &boxes)).await?;
            Ok(boxes.inbox(side))
        }
    }

    /// Start the responder of `session` (idempotent: its id derives from the session).
    async fn initiate(&mut self, session: &SessionRef) -> wasmtime::Result<Result<(), String>> {
        let identity = self.node.identity().to_string();
        if session.party != identity {
            return Ok(Err(format!(
                "unknown party `{}`: this node is `{identity}`, and sessions reach only flows \
                 on this node",
                session.party
            )));
        }
        let Some(responder) = self.node.responder_for(&self.info.flow) else {
            return Ok(Err(format!(
                "no flow on `{identity}` responds to `{}` (register one with \
                 `initiated-by = \"{}\"`)",
                self.info.flow, self.info.flow
            )));
        };
        let request = StartRequest::peer(responder.clone(), b"null".to_vec(), identity)
            .with_id(responder_of(&session.id));
        Ok(match self.start_child(request).await? {
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
/// what it took before is skipped. An end that already ended closes its direction.
async fn rebuild(node: &Node, session: &str, boxes: &Boxes) -> Result<(), StoreError> {
    node.journal().sync().await?;
    let store = node.journal().store();
    let ends = [
        (initiator_of(session).to_string(), Side::Responder),
        (responder_of(session), Side::Initiator),
    ];
    for (sender, receiver) in ends {
        let inbox = boxes.inbox(receiver);
        let mut seq = 0;
        for entry in store.journal(&sender)? {
            if entry.call != "send" {
                continue;
            }
            let Some(payload) = calls::sent_on(&entry.args, session) else {
                continue;
            };
            if matches!(calls::exchanged_from_json(&entry.result), Ok(Ok(_))) {
                inbox.deliver(seq, payload);
                seq += 1;
            }
        }
        if let Some(record) = store.record(&sender)?
            && let Some(outcome) = outcome_of_record(&record)
        {
            inbox.close(end_reason(&sender, &outcome));
        }
    }
    Ok(())
}

impl sessions::Host for HostState {
    async fn initiator(&mut self) -> wasmtime::Result<Option<Resource<SessionRef>>> {
        self.meter.journaled(1)?;
        let opened: Option<Opened> = match self.recorder.replay("initiator", &json!(null))? {
            Some(answer) => decode(&answer)?,
            None => {
                let opened = match (&self.info.peer, session_of_responder(&self.info.id)) {
                    (Some(party), Some(session)) => Some(Opened {
                        session: session.to_string(),
                        party: party.clone(),
                    }),
                    _ => None,
                };
                self.recorder
                    .record("initiator", json!(null), encode(&opened))?;
                opened
            }
        };
        let Some(opened) = opened else {
            return Ok(None);
        };
        self.node.messaging().sessions.attach(
            &opened.session,
            &self.info.id,
            Side::Responder,
            false,
        );
        let session = SessionRef::new(opened.session, opened.party, Side::Responder);
        Ok(Some(self.table.push(session)?))
    }
}

impl sessions::HostSession for HostState {
    async fn new(&mut self, party: String) -> wasmtime::Result<Resource<SessionRef>> {
        self.meter.journaled(1)?;
        let args = calls::session_args(&party);
        let (opened, fresh) = match self.recorder.replay("session", &args)? {
            Some(answer) => (decode::<Opened>(&answer)?, false),
            None => {
                // Derived from the journal position: a re-run opens the same session.
                let opened = Opened {
                    session: format!("{}.{}", self.info.id, self.recorder.position()),
                    party: party.clone(),
                };
                self.recorder.record("session", args, encode(&opened))?;
                (opened, true)
            }
        };
        self.node.messaging().sessions.attach(
            &opened.session,
            &self.info.id,
            Side::Initiator,
            fresh,
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
        let args = calls::send_args(&session.id, &payload);
        if let Some(answer) = self.recorder.replay("send", &args)? {
            let sent = calls::exchanged_from_json(&answer)?;
            self.mark_initiated(&s)?;
            if sent.is_ok() {
                self.table.get_mut(&s)?.sent += 1;
            }
            return Ok(sent.map(|_| ()));
        }
        if !session.initiated {
            if let Err(why) = self.initiate(&session).await? {
                let failed: Exchanged = Err(why.clone());
                self.recorder
                    .record("send", args, calls::exchanged_to_json(&failed))?;
                return Ok(Err(why));
            }
            self.mark_initiated(&s)?;
        }
        // Journaled before it is delivered: a receiver's journal never holds a message
        // its sender's journal could lose.
        let sent: Exchanged = Ok(None);
        self.recorder
            .record("send", args, calls::exchanged_to_json(&sent))?;
        let inbox = self.inbox(&session.id, session.side.other()).await?;
        inbox.deliver(session.sent, payload);
        self.table.get_mut(&s)?.sent += 1;
        Ok(Ok(()))
    }

    async fn receive(
        &mut self,
        s: Resource<SessionRef>,
    ) -> wasmtime::Result<Result<Vec<u8>, String>> {
        self.meter.journaled(1)?;
        let session = self.session(&s)?;
        let args = calls::receive_args(&session.id);
        if let Some(answer) = self.recorder.replay("receive", &args)? {
            let received = calls::exchanged_from_json(&answer)?;
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
            let inbox = self.inbox(&session.id, session.side).await?;
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
        self.recorder
            .record("receive", args, calls::exchanged_to_json(&journaled))?;
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
