//! A store that lives in memory only: `sluice run` without `--data-dir`, and tests. It keeps
//! the [`JournalStore`] contract (atomic batches, ordered journals), just not across restarts.
//!
//! It keeps the [`KEEP_ENDED`] instances that ended last, not every one ever run: a node
//! serving from memory for weeks would otherwise grow with every flow it ran.

use std::collections::hash_map::Entry as Slot;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

use crate::model::{PeerMessage, Side};

use super::{
    Entry, InstanceRecord, JournalStore, ListQuery, Payload, Status, StoreError, StoredEvent, Write,
};

/// A record as the store keeps it: its insertion number, and the record without its id
/// (the map's key holds that; a deep chain in memory keeps one copy of each id, not two).
struct Kept {
    number: u64,
    record: InstanceRecord,
}

impl Kept {
    /// The record, with its id.
    fn record(&self, id: &str) -> InstanceRecord {
        InstanceRecord {
            id: id.to_string(),
            ..self.record.clone()
        }
    }
}

/// Ended instances kept (record and journal) before the oldest ended is forgotten. Running
/// and held instances are always kept.
pub const KEEP_ENDED: usize = 100_000;

/// A [`JournalStore`] in process memory.
pub struct MemoryStore {
    state: Mutex<State>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::keeping(KEEP_ENDED)
    }
}

#[derive(Default)]
struct State {
    /// Ended instances kept at most ([`KEEP_ENDED`] but in tests).
    keep_ended: usize,
    /// Records by id, with their insertion number (the order `with_status` returns). Boxed:
    /// the map moves only pointers when it grows. A kept record's `id` is empty: the key
    /// holds it (see [`Kept`]).
    records: HashMap<String, Box<Kept>>,
    journals: HashMap<String, Vec<Entry>>,
    components: HashMap<String, Vec<u8>>,
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
    /// Ids of ended instances, oldest end first: the ones forgotten past [`KEEP_ENDED`].
    ended: VecDeque<String>,
    next: u64,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    /// An empty store that keeps `ended` ended instances at most.
    pub fn keeping(ended: usize) -> Self {
        MemoryStore {
            state: Mutex::new(State {
                keep_ended: ended,
                ..State::default()
            }),
        }
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

    /// Apply one write of a checked batch; it is taken, not copied.
    fn apply(&mut self, write: Write) -> Result<(), StoreError> {
        match write {
            Write::Create(mut record) => {
                let id = std::mem::take(&mut record.id);
                if let Slot::Vacant(slot) = self.records.entry(id) {
                    self.next += 1;
                    record.created_ms.get_or_insert_with(crate::model::unix_ms);
                    let number = self.next;
                    slot.insert(Box::new(Kept { number, record }));
                }
            }
            Write::Append { id, entry } => {
                let journal = self.journals.entry(id.clone()).or_default();
                let expected = journal.len() as u64;
                if entry.position != expected {
                    return Err(StoreError::OutOfOrder {
                        id,
                        expected,
                        got: entry.position,
                    });
                }
                // Doubling from one entry, not four: most journals are short, and every
                // instance in memory keeps one (parked ones included).
                if journal.len() == journal.capacity() {
                    journal.reserve_exact(journal.len().max(1));
                }
                journal.push(entry);
            }
            Write::Status {
                id,
                status,
                output,
                message,
            } => {
                let record = self.get(&id)?;
                // A final status stays: whichever end reached the store first is the end.
                if !record.status.is_final() {
                    record.status = status;
                    record.output = output.map(Payload);
                    record.message = message;
                    record.ended_ms = status.is_final().then(crate::model::unix_ms);
                    if status.is_final() {
                        self.ended(id);
                    }
                }
            }
            Write::Attempted { id, attempts } => self.get(&id)?.attempts = attempts,
            Write::Component { hash, bytes } => {
                self.components.entry(hash).or_insert(bytes);
            }
            Write::Pin { id, component } => self.get(&id)?.component = component,
            Write::Publish(event) => {
                let number = self.next;
                self.next += 1;
                self.events
                    .entry(event.id.clone())
                    .or_insert((number, event));
            }
            Write::Take { id } => {
                self.events.remove(&id);
                self.takers.remove(&id);
            }
            Write::Outbox(event) => {
                let number = self.next;
                self.next += 1;
                self.outbox
                    .entry(event.id.clone())
                    .or_insert((number, event));
            }
            Write::Dispatched { id } => {
                self.outbox.remove(&id);
            }
            Write::Cursor { key, value } => {
                self.cursors.insert(key, value);
            }
            Write::PeerOut(m) => {
                let number = self.next;
                self.next += 1;
                self.peer_out
                    .entry((m.session.clone(), m.to, m.seq))
                    .or_insert((number, m));
            }
            Write::PeerSent { session, to, seq } => {
                self.peer_out.remove(&(session, to, seq));
            }
            Write::PeerIn(m) => {
                self.peer_in
                    .entry((m.session.clone(), m.to, m.seq))
                    .or_insert(m);
            }
        }
        Ok(())
    }

    /// Instance `id` ended: past `keep_ended` ended ones, the oldest is forgotten (its
    /// record and journal).
    fn ended(&mut self, id: String) {
        self.ended.push_back(id);
        while self.ended.len() > self.keep_ended {
            let Some(oldest) = self.ended.pop_front() else {
                break;
            };
            self.records.remove(&oldest);
            self.journals.remove(&oldest);
        }
    }

    fn get(&mut self, id: &str) -> Result<&mut InstanceRecord, StoreError> {
        self.records
            .get_mut(id)
            .map(|kept| &mut kept.record)
            .ok_or_else(|| StoreError::Unknown(id.into()))
    }
}

impl JournalStore for MemoryStore {
    fn write(&self, batch: &[Write]) -> Result<(), StoreError> {
        self.write_owned(batch.to_vec())
    }

    fn write_owned(&self, batch: Vec<Write>) -> Result<(), StoreError> {
        let mut state = self.lock();
        // Atomic: check the whole batch against the state first; applying then cannot fail.
        state.check(&batch)?;
        for write in batch {
            state.apply(write)?;
        }
        Ok(())
    }

    fn record(&self, id: &str) -> Result<Option<InstanceRecord>, StoreError> {
        Ok(self.lock().records.get(id).map(|kept| kept.record(id)))
    }

    fn journal(&self, id: &str) -> Result<Vec<Entry>, StoreError> {
        Ok(self.lock().journals.get(id).cloned().unwrap_or_default())
    }

    fn with_status(&self, status: Status) -> Result<Vec<InstanceRecord>, StoreError> {
        let state = self.lock();
        let mut found: BTreeMap<u64, InstanceRecord> = BTreeMap::new();
        for (id, kept) in &state.records {
            if kept.record.status == status {
                found.insert(kept.number, kept.record(id));
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
        for (id, kept) in &state.records {
            let n = kept.number;
            if query.after.is_none_or(|after| n > after) && query.matches_as(id, &kept.record) {
                found.insert(n, kept.record(id));
            }
        }
        Ok(found.into_iter().take(query.limit).collect())
    }

    fn descendants(&self, id: &str) -> Result<Vec<(String, Status)>, StoreError> {
        let state = self.lock();
        // Indexed here, by one pass over the records: a cancellation is rare, and an
        // index kept up to date would cost every instance in memory an entry.
        let mut children: HashMap<&str, Vec<&str>> = HashMap::new();
        for (child, kept) in &state.records {
            if let Some(parent) = &kept.record.parent {
                children.entry(parent).or_default().push(child);
            }
        }
        let mut found = Vec::new();
        let mut next: Vec<&str> = children.get(id).into_iter().flatten().copied().collect();
        while let Some(child) = next.pop() {
            if let Some(kept) = state.records.get(child) {
                found.push((child.to_string(), kept.record.status));
            }
            next.extend(children.get(child).into_iter().flatten());
        }
        Ok(found)
    }

    fn count_by_flow(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for r in self.lock().records.values().map(|kept| &kept.record) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn create(id: &str) -> Write {
        Write::Create(InstanceRecord::new(id, "f", "c", b"{}", "{}".into()))
    }

    fn end(id: &str) -> Write {
        Write::Status {
            id: id.into(),
            status: Status::Completed,
            output: Some(b"{}".to_vec()),
            message: None,
        }
    }

    #[test]
    fn past_its_bound_the_oldest_ended_instance_is_forgotten_not_a_running_one() {
        let store = MemoryStore::keeping(2);
        store.write(&[create("running")]).unwrap();
        for id in ["a", "b", "c"] {
            store.write(&[create(id), end(id)]).unwrap();
        }
        assert!(
            store.record("a").unwrap().is_none(),
            "the oldest end is gone"
        );
        for id in ["b", "c", "running"] {
            assert!(store.record(id).unwrap().is_some(), "{id} is kept");
        }
        // A later end of a kept one still counts from its own end.
        store.write(&[end("running")]).unwrap();
        assert!(store.record("b").unwrap().is_none());
        assert_eq!(
            store.record("running").unwrap().map(|r| r.status),
            Some(Status::Completed)
        );
    }
}
