//! The node's sessions: which instances talk to each other, and the mailboxes between them.
//!
//! A session's id is `<initiator id>.<journal position>` of the call that opened it, and
//! its responder's id is `<session id>.peer`: a re-run derives both again, so replay never
//! opens a second session or starts a second responder.
//!
//! Messages are not stored apart from the journals: a message is the sender's journaled
//! `send`, and how many a receiver has taken is the count of its journaled `receive`s. A
//! session that predates this process (the node restarted) has its mailboxes rebuilt from
//! the senders' journals on first use, so messages in flight at a crash are not lost.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use super::mailbox::Mailbox;
use crate::model::{PeerBody, Side};

/// One session's mailboxes, indexed by the side that receives from them.
#[derive(Debug, Clone)]
pub struct Boxes {
    inbox: [Arc<Mailbox>; 2],
    /// Set once the mailboxes hold what the store had (at once for a fresh session).
    loaded: Arc<OnceCell<()>>,
}

impl Boxes {
    /// The mailbox `side` receives from.
    pub fn inbox(&self, side: Side) -> Arc<Mailbox> {
        self.inbox[side.index()].clone()
    }

    /// Run `load` once, before the first use of the mailboxes (a no-op for fresh sessions).
    pub async fn loaded<F, Fut, E>(&self, load: F) -> Result<(), E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(), E>>,
    {
        self.loaded.get_or_try_init(load).await.map(|_| ())
    }
}

#[derive(Debug)]
struct Entry {
    boxes: Boxes,
    attached: [bool; 2],
    ended: [bool; 2],
    /// Its other end is on another node (a peer).
    remote: bool,
    /// The peer confirmed it started the responder: a rebuilt initiator need not ask again.
    opened: bool,
}

/// The node's live sessions.
#[derive(Debug, Default)]
pub struct Sessions {
    state: Mutex<State>,
}

/// One instance's place in a session.
#[derive(Debug, Clone)]
struct Attached {
    session: String,
    side: Side,
    /// The other node, when the counterparty lives there.
    peer: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    /// Ordered, so the sessions an instance opened (`<its id>.<position>`) are a range.
    sessions: BTreeMap<String, Entry>,
    /// Sessions each instance is attached to, at which end, and the party at the other
    /// end when it is another node.
    by_instance: HashMap<String, Vec<Attached>>,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Attach instance `instance` to session `id` at `side`. `fresh`: the session was
    /// opened live just now, so no store can hold messages of it yet. `peer`: the node the
    /// counterparty lives on, when it is another one.
    pub fn attach(
        &self,
        id: &str,
        instance: &str,
        side: Side,
        fresh: bool,
        peer: Option<&str>,
    ) -> Boxes {
        let mut state = self.lock();
        let entry = Self::entry(&mut state, id, fresh);
        entry.attached[side.index()] = true;
        entry.remote |= peer.is_some();
        let boxes = entry.boxes.clone();
        let mine = state.by_instance.entry(instance.to_string()).or_default();
        if !mine.iter().any(|a| a.session == id && a.side == side) {
            mine.push(Attached {
                session: id.to_string(),
                side,
                peer: peer.map(str::to_string),
            });
        }
        boxes
    }

    /// The sessions instance `instance` holds with flows on other nodes: each session,
    /// the instance's end of it, and the other node.
    pub fn remote_ends(&self, instance: &str) -> Vec<(String, Side, String)> {
        let state = self.lock();
        let Some(mine) = state.by_instance.get(instance) else {
            return Vec::new();
        };
        mine.iter()
            .filter_map(|a| Some((a.session.clone(), a.side, a.peer.clone()?)))
            .collect()
    }

    /// A peer's message for the `to` end of session `id`, already kept by the store: put
    /// it in the mailbox when the session is live here (else its receiver loads it from
    /// the store when it attaches).
    pub fn deliver_live(&self, id: &str, to: Side, seq: u64, body: &PeerBody) {
        let state = self.lock();
        let Some(entry) = state.sessions.get(id) else {
            return;
        };
        let inbox = &entry.boxes.inbox[to.index()];
        match body {
            PeerBody::Message(payload) => inbox.deliver(seq, payload.clone()),
            PeerBody::End(why) => inbox.close(why.clone()),
        }
    }

    /// The mailboxes of session `id` (known to this process or not: then they load from
    /// the store on first use).
    pub fn boxes(&self, id: &str) -> Boxes {
        Self::entry(&mut self.lock(), id, false).boxes.clone()
    }

    fn entry<'a>(state: &'a mut State, id: &str, fresh: bool) -> &'a mut Entry {
        state
            .sessions
            .entry(id.to_string())
            .or_insert_with(|| Entry {
                boxes: Boxes {
                    inbox: Default::default(),
                    loaded: Arc::new(if fresh {
                        OnceCell::new_with(Some(()))
                    } else {
                        OnceCell::new()
                    }),
                },
                attached: [false; 2],
                ended: [false; 2],
                remote: false,
                opened: false,
            })
    }

    /// Instance `instance` ended: its counterparties receive what it sent, then `why()`
    /// (called only when it had sessions: every instance's end passes here).
    /// A session both of whose attached ends ended is forgotten.
    pub fn ended(&self, instance: &str, why: impl FnOnce() -> String) {
        let mut state = self.lock();
        let Some(mine) = state.by_instance.remove(instance) else {
            return;
        };
        let why = why();
        for Attached {
            session: id, side, ..
        } in mine
        {
            let Some(entry) = state.sessions.get_mut(&id) else {
                continue;
            };
            entry.boxes.inbox[side.other().index()].close(why.clone());
            entry.ended[side.index()] = true;
            let done = (0..2).all(|i| !entry.attached[i] || entry.ended[i]);
            if done {
                state.sessions.remove(&id);
            }
        }
    }

    /// The peer confirmed session `id`'s responder runs (kept while the session is live).
    pub fn mark_opened(&self, id: &str) {
        if let Some(entry) = self.lock().sessions.get_mut(id) {
            entry.opened = true;
        }
    }

    /// Whether the peer confirmed session `id`'s responder runs, in this process.
    pub fn opened(&self, id: &str) -> bool {
        self.lock().sessions.get(id).is_some_and(|e| e.opened)
    }

    /// The mailboxes of session `id` when it is live here (without making it so), and
    /// whether its other end is on another party's node.
    pub fn live_boxes(&self, id: &str) -> Option<(Boxes, bool)> {
        self.lock()
            .sessions
            .get(id)
            .map(|e| (e.boxes.clone(), e.remote))
    }

    /// Live sessions with another party's node (their messages arrive through the store's
    /// inbox, on whichever node of a cluster the peer reached).
    pub fn remote(&self) -> Vec<String> {
        self.lock()
            .sessions
            .iter()
            .filter(|(_, e)| e.remote)
            .map(|(s, _)| s.clone())
            .collect()
    }

    /// The live sessions instance `id` is an end of: those it opened, and the one it
    /// answers when it is a responder.
    pub fn live_of(&self, id: &str) -> Vec<String> {
        let state = self.lock();
        let prefix = format!("{id}.");
        let mut found: Vec<String> = state
            .sessions
            .range(prefix.clone()..)
            .take_while(|(s, _)| s.starts_with(&prefix))
            .filter(|(s, _)| crate::model::ids::initiator_of(s) == id)
            .map(|(s, _)| s.clone())
            .collect();
        if let Some(session) = crate::model::ids::session_of_responder(id)
            && state.sessions.contains_key(session)
        {
            found.push(session.to_string());
        }
        found
    }

    /// Live sessions between flows of this party with one end attached here and the other
    /// not (in a cluster, the other end may run on another node): what a poll for missed
    /// notifications looks at.
    pub fn half_attached(&self) -> Vec<String> {
        self.lock()
            .sessions
            .iter()
            .filter(|(_, e)| !e.remote && e.attached[0] != e.attached[1])
            .map(|(s, _)| s.clone())
            .collect()
    }

    /// Live sessions (for tests and metrics).
    pub fn live(&self) -> usize {
        self.lock().sessions.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messaging::mailbox::Next;

    #[test]
    fn an_end_closes_what_it_sent_and_both_ends_forget_the_session() {
        let s = Sessions::default();
        let a = s.attach("i.0", "i", Side::Initiator, true, None);
        let b = s.attach("i.0", "i.0.peer", Side::Responder, true, None);
        a.inbox(Side::Responder).deliver(0, b"hi".to_vec());
        s.ended("i", || "initiator completed".into());
        assert_eq!(
            b.inbox(Side::Responder).take(0),
            Next::Message(b"hi".to_vec())
        );
        assert_eq!(
            b.inbox(Side::Responder).take(1),
            Next::Closed("initiator completed".into())
        );
        assert_eq!(s.live(), 1);
        s.ended("i.0.peer", || "responder completed".into());
        assert_eq!(s.live(), 0);
    }

    #[test]
    fn a_confirmed_open_is_remembered_while_the_session_lives() {
        let s = Sessions::default();
        s.mark_opened("unknown");
        assert!(
            !s.opened("unknown"),
            "nothing is kept for a session not live here"
        );
        s.attach("i.0", "i", Side::Initiator, true, Some("PartyB"));
        assert!(!s.opened("i.0"));
        s.mark_opened("i.0");
        assert!(s.opened("i.0"));
        s.ended("i", || "initiator completed".into());
        assert!(!s.opened("i.0"), "forgotten with the session");
    }
}
