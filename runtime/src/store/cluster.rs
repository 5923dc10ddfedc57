//! Several nodes on one database: what a store that can be shared offers them. Each node
//! is a *member* under a name, holds a *lease* it renews, and *owns* the instances it runs;
//! a member whose lease lapses is dead, and the others claim its instances. A member's
//! writes are *fenced*: once it is dead (or a newer incarnation of it joined), nothing it
//! writes commits, so no instance ever runs on two nodes at once.
//!
//! Only the PostgreSQL store is shared ([`JournalStore::cluster`]); a SQLite file or a
//! store in memory belongs to one node and has no members.
//!
//! [`JournalStore::cluster`]: super::JournalStore::cluster

use std::sync::mpsc::Receiver;
use std::time::Duration;

use serde::Serialize;

use super::{InstanceRecord, StoreError, StoredEvent};

/// A member of the cluster, as the database has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Member {
    /// Its name (`[node] name`), unique in the cluster.
    pub name: String,
    /// Its incarnation: one more at each start, fencing the ones before.
    pub epoch: u64,
    /// `live`, `left` (drained) or `dead` (its lease lapsed).
    pub state: String,
    /// Where its API listens, when it serves one.
    pub address: Option<String>,
    /// When this incarnation joined, unix ms.
    pub joined_ms: u64,
    /// Its last renewal, unix ms (its own clock).
    pub heartbeat_ms: u64,
    /// Milliseconds its lease has left by the database's clock (negative: lapsed).
    pub lease_left_ms: i64,
    /// Running instances it owns (claimed; parked ones included).
    pub running: u64,
}

/// Membership of a shared store: joining, the lease, claiming the work of the dead.
pub trait ClusterStore: Send + Sync {
    /// Join as `name`, with a lease of `lease`, and return the new epoch. Refused
    /// ([`StoreError::InUse`]) while a live process holds the name. From now on this
    /// store's writes are fenced by the membership and stamped with the name.
    fn join(&self, name: &str, address: Option<&str>, lease: Duration) -> Result<u64, StoreError>;
    /// Renew the lease for `lease` from now; [`StoreError::Fenced`] when this member is no
    /// longer live (its lease lapsed and it was declared dead, or it was joined again).
    fn renew(&self, lease: Duration) -> Result<(), StoreError>;
    /// Stop writing: every write from now on is refused with [`StoreError::Fenced`]. For a
    /// node that could not renew in time, before anyone can take its work.
    fn fence(&self);
    /// Declare members whose lease lapsed dead, then claim up to `limit` running instances
    /// that no live member owns (theirs, or nobody's); each is claimed by one member only.
    fn claim_orphans(&self, limit: usize) -> Result<Vec<InstanceRecord>, StoreError>;
    /// Running instances this member owns (what a restarted node resumes).
    fn own_running(&self) -> Result<Vec<InstanceRecord>, StoreError>;
    /// Events kept for event triggers by members no longer live, now this member's to
    /// dispatch (its own kept ones included).
    fn claim_outbox(&self) -> Result<Vec<StoredEvent>, StoreError>;
    /// Leave the cluster (a drain): the lease ends now, and the others claim what is left.
    fn leave(&self) -> Result<(), StoreError>;
    /// Every member, oldest first.
    fn members(&self) -> Result<Vec<Member>, StoreError>;
    /// What other members signal: instances that ended, cancellations asked of the owner
    /// (hints: one may be missed while the connection is down, so readers poll besides).
    fn signals(&self) -> Result<Receiver<Signal>, StoreError>;
    /// Ask the member running instance `id` to cancel it.
    fn ask_cancel(&self, id: &str) -> Result<(), StoreError>;
}

/// A signal from another member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// Instance `id` ended (its final status is in the store).
    Ended(String),
    /// Somebody asked for instance `id` to be cancelled.
    Cancel(String),
    /// Session `id` got a message (its sender's `send` is in the store).
    Sent(String),
    /// An event was published on topic `topic`.
    Published(String),
    /// Nothing came for a second (sent so the listener learns whether it is still wanted).
    Idle,
}
