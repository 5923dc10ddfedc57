//! A store that lives in memory only: `sluice run` without `--data-dir`, and tests. It keeps
//! the [`JournalStore`] contract (atomic batches, ordered journals), just not across restarts.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use crate::model::{PeerMessage, Side};

use super::{
    Entry, InstanceRecord, JournalStore, ListQuery, Payload, Status, StoreError, StoredEvent, Write,
};

/// A [`JournalStore`] in process memory.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Records by id, with their insertion number (the order `with_status` returns).
    records: HashMap<String, (u64, InstanceRecord)>,
    journals: HashMap<String, Vec<Entry>>,
    components: HashMap<String, Vec<u8>>,
    /// Children's ids by parent id: the index a cancellation walks.
    children: HashMap<String, Vec<String>>,
    /// Events not taken yet, by id, with their insertion number (publish order).
    events: HashMap<String, (u64, StoredEvent)>,
    /// Who claimed each event not taken yet.
    takers: HashMap<String, String>,
    /// Events kept for event triggers, by id, with their insertion number.
    outbox: HashMap<String, (u64, StoredEvent)>,
    /// Named cursors.
    cursors: HashMap<String, String>,
    /// Messages for peers, by (session, receiving side, sequence number), with their
    /// insertion number.
    peer_out: HashMap<(String, Side, u64), (u64, PeerMessage)>,
    /// Messages from peers, by the same key.
    peer_in: HashMap<(String, Side, u64), PeerMessage>,
    next: u64,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl State {
    /// Whether every write of `batch` would succeed, applied in order.
    fn check(&self, batch: &[Write]) -> Result<(), StoreError> {
        let mut created: Vec<&str> = Vec::new();
        let mut appended: HashMap<&str, u64> = HashMap::new();
        for write in batch {
            match write {
                Write::Create(r) => created.push(&r.id),
                Write::Append { id, entry } => {
                    let pending = appended.entry(id).or_default();
                    let expected = self.journals.get(id).map_or(0, |j| j.len() as u64) + *pending;
                    if entry.position != expected {
                        return Err(StoreError::OutOfOrder {
                            id: id.clone(),
                            expected,
                            got: entry.position,
                        });
                    }
                    *pending += 1;
                }
                Write::Status { id, .. } | Write::Attempted { id, .. } | Write::Pin { id, .. } => {
                    if !self.records.contains_key(id) && !created.contains(&id.as_str()) {
                        return Err(StoreError::Unknown(id.clone()));
                    }
                }
                Write::Component { .. }
                | Write::Publish(_)
                | Write::Take { .. }
                | Write::Outbox(_)
                | Write::Dispatched { .. }
                | Write::Cursor { .. }
                | Write::PeerOut(_)
                | Write::PeerSent { .. }
                | Write::PeerIn(_) => {}
            }
        }
        Ok(())
    }

    fn apply(&mut self, write: &Write) -> Result<(), StoreError> {
        match write {
            Write::Create(record) => {
                if !self.records.contains_key(&record.id) {
                    self.next += 1;
                    let mut record = record.clone();
                    record.created_ms.get_or_insert_with(crate::model::unix_ms);
                    if let Some(parent) = &record.parent {
                        self.children
                            .entry(parent.clone())
                            .or_default()
                            .push(record.id.clone());
                    }
                    self.records.insert(record.id.clone(), (self.next, record));
                }
            }
            Write::Append { id, entry } => {
                let journal = self.journals.entry(id.clone()).or_default();
                let expected = journal.len() as u64;
                if entry.position != expected {
                    return Err(StoreError::OutOfOrder {
                        id: id.clone(),
                        expected,
                        got: entry.position,
                    });
                }
                // Doubling from one entry, not four: most journals are short, and every
                // instance in memory keeps one (parked ones included).
                if journal.len() == journal.capacity() {
                    journal.reserve_exact(journal.len().max(1));
                }
                journal.push(entry.clone());
            }
            Write::Status {
                id,
                status,
                output,
                message,
            } => {
                let record = self.get(id)?;
                // A final status stays: whichever end reached the store first is the end.
                if !record.status.is_final() {
                    record.status = *status;
                    record.output = output.clone().map(Payload);
                    record.message = message.clone();
                    record.ended_ms = status.is_final().then(crate::model::unix_ms);
                }
            }
            Write::Attempted { id, attempts } => self.get(id)?.attempts = *attempts,
            Write::Component { hash, bytes } => {
                self.components
                    .entry(hash.clone())
                    .or_insert_with(|| bytes.clone());
            }
            Write::Pin { id, component } => self.get(id)?.component = component.clone(),
            Write::Publish(event) => {
                let number = self.next;
                self.next += 1;
                self.events
                    .entry(event.id.clone())
                    .or_insert_with(|| (number, event.clone()));
            }
            Write::Take { id } => {
                self.events.remove(id);
                self.takers.remove(id);
            }
            Write::Outbox(event) => {
                let number = self.next;
                self.next += 1;
                self.outbox
                    .entry(event.id.clone())
                    .or_insert_with(|| (number, event.clone()));
            }
            Write::Dispatched { id } => {
                self.outbox.remove(id);
            }
            Write::Cursor { key, value } => {
                self.cursors.insert(key.clone(), value.clone());
            }
            Write::PeerOut(m) => {
                let number = self.next;
                self.next += 1;
                self.peer_out
                    .entry((m.session.clone(), m.to, m.seq))
                    .or_insert_with(|| (number, m.clone()));
            }
            Write::PeerSent { session, to, seq } => {
                self.peer_out.remove(&(session.clone(), *to, *seq));
            }
            Write::PeerIn(m) => {
                self.peer_in
                    .entry((m.session.clone(), m.to, m.seq))
                    .or_insert_with(|| m.clone());
            }
        }
        Ok(())
    }

    fn get(&mut self, id: &str) -> Result<&mut InstanceRecord, StoreError> {
        self.records
            .get_mut(id)
            .map(|(_, r)| r)
            .ok_or_else(|| StoreError::Unknown(id.into()))
    }
}

impl JournalStore for MemoryStore {
    fn write(&self, batch: &[Write]) -> Result<(), StoreError> {
        let mut state = self.lock();
        // Atomic: check the whole batch against the state first; applying then cannot fail.
        state.check(batch)?;
        for write in batch {
            state.apply(write)?;
        }
        Ok(())
    }

    fn record(&self, id: &str) -> Result<Option<InstanceRecord>, StoreError> {
        Ok(self.lock().records.get(id).map(|(_, r)| r.clone()))
    }

    fn journal(&self, id: &str) -> Result<Vec<Entry>, StoreError> {
        Ok(self.lock().journals.get(id).cloned().unwrap_or_default())
    }

    fn with_status(&self, status: Status) -> Result<Vec<InstanceRecord>, StoreError> {
        let state = self.lock();
        let mut found: BTreeMap<u64, InstanceRecord> = BTreeMap::new();
        for (n, r) in state.records.values() {
            if r.status == status {
                found.insert(*n, r.clone());
            }
        }
        Ok(found.into_values().collect())
    }

    fn component(&self, hash: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().components.get(hash).cloned())
    }

    fn list(&self, query: &ListQuery) -> Result<Vec<(u64, InstanceRecord)>, StoreError> {
        let state = self.lock();
        let mut found: BTreeMap<u64, InstanceRecord> = BTreeMap::new();
        for (n, r) in state.records.values() {
            if query.after.is_none_or(|after| *n > after) && query.matches(r) {
                found.insert(*n, r.clone());
            }
        }
        Ok(found.into_iter().take(query.limit).collect())
    }

    fn descendants(&self, id: &str) -> Result<Vec<(String, Status)>, StoreError> {
        let state = self.lock();
        let mut found = Vec::new();
        let mut next: Vec<&String> = state.children.get(id).into_iter().flatten().collect();
        while let Some(child) = next.pop() {
            if let Some((_, record)) = state.records.get(child) {
                found.push((child.clone(), record.status));
            }
            next.extend(state.children.get(child).into_iter().flatten());
        }
        Ok(found)
    }

    fn count_by_flow(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for (_, r) in self.lock().records.values() {
            *counts.entry(r.flow.clone()).or_default() += 1;
        }
        Ok(counts.into_iter().collect())
    }

    fn untaken_events(&self) -> Result<Vec<StoredEvent>, StoreError> {
        let mut events: Vec<(u64, StoredEvent)> = self.lock().events.values().cloned().collect();
        events.sort_by_key(|(number, _)| *number);
        Ok(events.into_iter().map(|(_, e)| e).collect())
    }

    fn events_on(&self, topic: &str, taker: &str) -> Result<Vec<StoredEvent>, StoreError> {
        let state = self.lock();
        let mut events: Vec<(u64, StoredEvent)> = state
            .events
            .values()
            .filter(|(_, e)| e.topic == topic)
            .filter(|(_, e)| state.takers.get(&e.id).is_none_or(|t| t == taker))
            .cloned()
            .collect();
        events.sort_by_key(|(number, _)| *number);
        Ok(events.into_iter().map(|(_, e)| e).collect())
    }

    fn claim_event(&self, id: &str, taker: &str) -> Result<bool, StoreError> {
        let mut state = self.lock();
        if !state.events.contains_key(id) {
            return Ok(false);
        }
        let claimed = state
            .takers
            .entry(id.to_string())
            .or_insert_with(|| taker.to_string());
        Ok(claimed == taker)
    }

    fn outbox(&self) -> Result<Vec<StoredEvent>, StoreError> {
        let mut events: Vec<(u64, StoredEvent)> = self.lock().outbox.values().cloned().collect();
        events.sort_by_key(|(number, _)| *number);
        Ok(events.into_iter().map(|(_, e)| e).collect())
    }

    fn cursor(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self.lock().cursors.get(key).cloned())
    }

    fn peer_outbox(&self, peer: &str, limit: usize) -> Result<Vec<PeerMessage>, StoreError> {
        let state = self.lock();
        let mut kept: Vec<&(u64, PeerMessage)> = state
            .peer_out
            .values()
            .filter(|(_, m)| m.peer == peer)
            .collect();
        kept.sort_by_key(|(number, _)| *number);
        Ok(kept
            .into_iter()
            .take(limit)
            .map(|(_, m)| m.clone())
            .collect())
    }

    fn peer_outbox_depth(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let mut depth: std::collections::BTreeMap<String, u64> = Default::default();
        for (_, m) in self.lock().peer_out.values() {
            *depth.entry(m.peer.clone()).or_default() += 1;
        }
        Ok(depth.into_iter().collect())
    }

    fn peer_inbox(&self, session: &str, to: Side) -> Result<Vec<PeerMessage>, StoreError> {
        let state = self.lock();
        let mut kept: Vec<PeerMessage> = state
            .peer_in
            .values()
            .filter(|m| m.session == session && m.to == to)
            .cloned()
            .collect();
        kept.sort_by_key(|m| m.seq);
        Ok(kept)
    }

    fn kind(&self) -> &'static str {
        "memory"
    }

    fn durable(&self) -> bool {
        false
    }
}
