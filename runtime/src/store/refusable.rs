//! A store that refuses commits on demand, as a full disk does: for tests of what the
//! writer and the node do when the store cannot take writes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::model::{PeerMessage, Side};

use super::{
    Entry, InstanceRecord, JournalStore, ListQuery, Status, StoreError, StoredEvent, Write,
};

/// Wraps a store; while [`Refusable::refuse`] is on, every write fails with
/// [`StoreError::Unavailable`] and changes nothing. Reads always pass through.
pub struct Refusable<S> {
    inner: S,
    refusing: AtomicBool,
    tries: AtomicU64,
}

impl<S: JournalStore> Refusable<S> {
    /// `inner`, taking writes for now.
    pub fn new(inner: S) -> Self {
        Refusable {
            inner,
            refusing: AtomicBool::new(false),
            tries: AtomicU64::new(0),
        }
    }

    /// Refuse writes (`true`) or take them again.
    pub fn refuse(&self, refusing: bool) {
        self.refusing.store(refusing, Ordering::SeqCst);
    }

    /// Writes tried so far, refused ones included.
    pub fn tries(&self) -> u64 {
        self.tries.load(Ordering::SeqCst)
    }

    /// The wrapped store (reads that bypass the wrapper).
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S: JournalStore> JournalStore for Refusable<S> {
    fn write(&self, batch: &[Write]) -> Result<(), StoreError> {
        self.tries.fetch_add(1, Ordering::SeqCst);
        if self.refusing.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable(
                "database or disk is full (simulated)".into(),
            ));
        }
        self.inner.write(batch)
    }
    fn record(&self, id: &str) -> Result<Option<InstanceRecord>, StoreError> {
        self.inner.record(id)
    }
    fn journal(&self, id: &str) -> Result<Vec<Entry>, StoreError> {
        self.inner.journal(id)
    }
    fn with_status(&self, status: Status) -> Result<Vec<InstanceRecord>, StoreError> {
        self.inner.with_status(status)
    }
    fn unreadable(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.inner.unreadable()
    }
    fn component(&self, hash: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.component(hash)
    }
    fn untaken_events(&self) -> Result<Vec<StoredEvent>, StoreError> {
        self.inner.untaken_events()
    }
    fn events_on(&self, topic: &str, taker: &str) -> Result<Vec<StoredEvent>, StoreError> {
        self.inner.events_on(topic, taker)
    }
    fn claim_event(&self, id: &str, taker: &str) -> Result<bool, StoreError> {
        self.inner.claim_event(id, taker)
    }
    fn outbox(&self) -> Result<Vec<StoredEvent>, StoreError> {
        self.inner.outbox()
    }
    fn cursor(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.inner.cursor(key)
    }
    fn peer_outbox(&self, peer: &str, limit: usize) -> Result<Vec<PeerMessage>, StoreError> {
        self.inner.peer_outbox(peer, limit)
    }
    fn peer_outbox_depth(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.inner.peer_outbox_depth()
    }
    fn peer_inbox(&self, session: &str, to: Side) -> Result<Vec<PeerMessage>, StoreError> {
        self.inner.peer_inbox(session, to)
    }
    fn list(&self, query: &ListQuery) -> Result<Vec<(u64, InstanceRecord)>, StoreError> {
        self.inner.list(query)
    }
    fn descendants(&self, id: &str) -> Result<Vec<(String, Status)>, StoreError> {
        self.inner.descendants(id)
    }
    fn count_by_flow(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.inner.count_by_flow()
    }
    fn durable(&self) -> bool {
        // A disk that fills: writes go through the writer thread, as a durable store's do.
        true
    }
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
}
