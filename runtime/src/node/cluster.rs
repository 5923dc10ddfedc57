//! A node's part in a cluster: several nodes sharing one PostgreSQL store (see
//! `store::cluster` for the database's side).
//!
//! - **Lease.** The node renews its lease every fifth of it. A watchdog stops the node's
//!   writes (fences it) when no renewal has succeeded for 70% of the lease, measured from
//!   when the last good renewal was *sent*: the database's lease then still has 30% left, so
//!   the node has stopped before anyone can declare it dead and take its work.
//! - **Takeover.** Each heartbeat, once the node has recovered its own work, it claims
//!   instances no live node owns (a dead node's, a drained node's) and resumes them by
//!   replay, in batches, while there are some.
//! - **Signals.** An instance's end anywhere wakes its waiters here (the API's result wait,
//!   a parent whose child runs elsewhere after a takeover); a cancellation made on another
//!   node stops the instance here. Notifications can be missed while a connection is down,
//!   so every heartbeat also polls the store for what is awaited here.
//! - **Leader.** The live member that joined first runs the schedules, so a schedule fires
//!   once per cluster; the next one takes over when its lease lapses.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::{Node, NodeInner};
use crate::store::{ClusterStore, Member, Signal, StoreError};

/// Instances claimed per round of a takeover.
const CLAIM_BATCH: usize = 500;

/// This node's membership.
pub(super) struct Membership {
    name: String,
    lease: Duration,
    /// When this process started (the watchdog's clock).
    epoch_start: Instant,
    /// Milliseconds after `epoch_start` at which the last successful renewal was sent.
    renewed_at_ms: AtomicU64,
    /// Set once the node resumed its own work: only then does it claim others'.
    recovered: AtomicBool,
    /// A round of duties (leader, takeover, polls) is under way.
    busy: AtomicBool,
    /// Instances taken over from other nodes.
    taken_over: AtomicU64,
    /// Rounds of duties so far (some polls run every few rounds).
    rounds: AtomicU64,
    leader: watch::Sender<bool>,
    fenced: watch::Sender<bool>,
}

impl Membership {
    /// Join the store's cluster as `name`.
    pub(super) fn join(
        cluster: &dyn ClusterStore,
        name: &str,
        lease: Duration,
    ) -> Result<Self, StoreError> {
        let epoch_start = Instant::now();
        let epoch = cluster.join(name, None, lease)?;
        tracing::info!(
            node = name,
            epoch,
            "joined the cluster as `{name}` (incarnation {epoch})"
        );
        Ok(Membership {
            name: name.to_string(),
            lease,
            epoch_start,
            renewed_at_ms: AtomicU64::new(0),
            recovered: AtomicBool::new(false),
            busy: AtomicBool::new(false),
            taken_over: AtomicU64::new(0),
            rounds: AtomicU64::new(0),
            leader: watch::Sender::new(false),
            fenced: watch::Sender::new(false),
        })
    }

    fn since_start_ms(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch_start).as_millis() as u64
    }
}

impl Node {
    fn membership(&self) -> Option<&Membership> {
        self.inner.membership.as_ref()
    }

    fn cluster(&self) -> Option<&dyn ClusterStore> {
        self.journal().store().cluster()
    }

    /// This node's name in its cluster; `None` when its store is its own.
    pub fn member_name(&self) -> Option<&str> {
        self.membership().map(|m| m.name.as_str())
    }

    /// The nodes sharing this node's store, oldest first; `None` when its store is its own.
    pub fn members(&self) -> Result<Option<Vec<Member>>, StoreError> {
        self.cluster().map(|c| c.members()).transpose()
    }

    /// Whether this node runs the cluster's schedules (always, for a node on its own).
    pub fn is_leader(&self) -> bool {
        self.membership().is_none_or(|m| *m.leader.borrow())
    }

    /// Resolves once this node leads its cluster (at once for a node on its own).
    pub async fn leadership(&self) {
        let Some(m) = self.membership() else {
            return;
        };
        let mut rx = m.leader.subscribe();
        let _ = rx.wait_for(|leads| *leads).await;
    }

    /// Resolves if this node loses its place in the cluster (it writes nothing more; the
    /// process should stop). Never, for a node on its own.
    pub fn fenced(&self) -> impl Future<Output = ()> + Send + 'static {
        let rx = self.membership().map(|m| m.fenced.subscribe());
        async move {
            match rx {
                Some(mut rx) => {
                    let _ = rx.wait_for(|fenced| *fenced).await;
                }
                None => std::future::pending().await,
            }
        }
    }

    /// This node's cluster figures in the Prometheus text format (empty when not clustered).
    pub(super) fn render_cluster_metrics(&self) -> String {
        use std::fmt::Write as _;
        let Some(m) = self.membership() else {
            return String::new();
        };
        let mut out = String::new();
        let name = m.name.replace(['\\', '"', '\n'], "_");
        let _ = writeln!(
            out,
            "# HELP sluice_cluster_leader Whether this node leads its cluster (runs the schedules).\n\
             # TYPE sluice_cluster_leader gauge\nsluice_cluster_leader{{node=\"{name}\"}} {}",
            u8::from(*m.leader.borrow())
        );
        let _ = writeln!(
            out,
            "# HELP sluice_cluster_taken_over_total Instances this node took over from nodes that died or left.\n\
             # TYPE sluice_cluster_taken_over_total counter\nsluice_cluster_taken_over_total{{node=\"{name}\"}} {}",
            m.taken_over.load(Ordering::Relaxed)
        );
        let lease_ms = m
            .since_start_ms(Instant::now())
            .saturating_sub(m.renewed_at_ms.load(Ordering::Acquire));
        let _ = writeln!(
            out,
            "# HELP sluice_cluster_since_renewal_seconds Time since the lease was last renewed.\n\
             # TYPE sluice_cluster_since_renewal_seconds gauge\nsluice_cluster_since_renewal_seconds{{node=\"{name}\"}} {:.3}",
            lease_ms as f64 / 1e3
        );
        out
    }

    /// Leave the cluster after a drain: the others take over what is left at once.
    pub fn leave_cluster(&self) {
        let (Some(m), Some(cluster)) = (self.membership(), self.cluster()) else {
            return;
        };
        match cluster.leave() {
            Ok(()) => {
                tracing::info!(node = %m.name, "left the cluster; the others take over its instances")
            }
            Err(e) => tracing::warn!(node = %m.name, "leaving the cluster: {e}"),
        }
        m.fenced.send_replace(true);
    }

    /// The unfinished instances this node resumes at start: its own, then any no live
    /// node owns. From now on it also claims those each heartbeat.
    pub(super) fn claim_for_recovery(
        &self,
    ) -> Option<Result<Vec<crate::store::InstanceRecord>, StoreError>> {
        let (m, cluster) = (self.membership()?, self.cluster()?);
        let claimed = (|| {
            let mut records = cluster.own_running()?;
            loop {
                let batch = cluster.claim_orphans(CLAIM_BATCH)?;
                if batch.is_empty() {
                    break;
                }
                m.taken_over
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                records.extend(batch);
            }
            Ok(records)
        })();
        m.recovered.store(true, Ordering::Release);
        Some(claimed)
    }

    /// Start the lease, watchdog and signal tasks. Needs a tokio runtime.
    pub(super) fn start_membership(&self) {
        let Some(m) = self.membership() else {
            return;
        };
        let weak = Arc::downgrade(&self.inner);
        // On threads of their own: a runtime whose workers are all busy (or blocked in a
        // store call) must not delay a renewal into a false fence.
        let handle = tokio::runtime::Handle::current();
        let (beat, watch) = (weak.clone(), weak.clone());
        let (every, check) = (m.lease / 5, m.lease / 10);
        on_own_thread("sluice-lease", move || heartbeat(beat, every, handle));
        on_own_thread("sluice-watchdog", move || watchdog(watch, check));
        if let Some(cluster) = self.cluster() {
            match cluster.signals() {
                Ok(signals) => listen(weak, signals),
                Err(e) => tracing::warn!("cluster signals unavailable, polling only: {e}"),
            }
        }
    }

    fn fence(&self, why: &str) {
        let Some(m) = self.membership() else {
            return;
        };
        if let Some(cluster) = self.cluster() {
            cluster.fence();
        }
        if !m.fenced.send_replace(true) {
            tracing::error!(node = %m.name, "node `{}` stops: {why}", m.name);
        }
    }

    /// Renew the lease (on a connection of its own, so it never waits behind work). Blocks.
    fn renew_lease(&self) -> Result<(), StoreError> {
        let Some(m) = self.membership() else {
            return Ok(());
        };
        let sent = Instant::now();
        match self.cluster_or_closed()?.renew(m.lease) {
            Ok(()) => {
                m.renewed_at_ms
                    .fetch_max(m.since_start_ms(sent), Ordering::AcqRel);
                Ok(())
            }
            Err(e @ StoreError::Fenced { .. }) => {
                self.fence(&e.to_string());
                Err(e)
            }
            Err(e) => {
                tracing::warn!(node = %m.name, "lease renewal failed: {e}");
                Err(e)
            }
        }
    }

    /// A heartbeat's work besides the renewal: learn who leads, take over orphans, poll
    /// awaited ends. Runs apart from the renewals, however long a takeover takes.
    async fn duties(&self) -> Result<(), StoreError> {
        let Some(m) = self.membership() else {
            return Ok(());
        };
        let node = self.clone();
        let members = blocking(move || node.cluster_or_closed()?.members()).await?;
        let leader = members
            .iter()
            .find(|x| x.state == "live" && x.lease_left_ms > 0)
            .is_some_and(|x| x.name == m.name);
        if m.leader.send_replace(leader) != leader && leader {
            tracing::info!(node = %m.name, "this node now leads the cluster (runs its schedules)");
        }
        if m.recovered.load(Ordering::Acquire) {
            self.take_over().await?;
        }
        self.poll_awaited().await;
        Ok(())
    }

    fn cluster_or_closed(&self) -> Result<&dyn ClusterStore, StoreError> {
        self.cluster().ok_or(StoreError::Closed)
    }

    /// Claim and resume what no live node owns, batch by batch.
    async fn take_over(&self) -> Result<(), StoreError> {
        loop {
            let node = self.clone();
            let batch =
                blocking(move || node.cluster_or_closed()?.claim_orphans(CLAIM_BATCH)).await?;
            if batch.is_empty() {
                return Ok(());
            }
            tracing::info!(
                node = self.member_name().unwrap_or_default(),
                "taking over {} instance(s)",
                batch.len()
            );
            if let Some(m) = self.membership() {
                m.taken_over
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
            }
            for record in batch {
                self.resume(record).await?;
            }
        }
    }

    /// Answer waiters here whose instance ended elsewhere, and read again the sessions
    /// whose other end is not here (a notification may be missed).
    async fn poll_awaited(&self) {
        for id in self.completions().awaited_elsewhere() {
            self.answer_if_ended(&id);
        }
        for session in self.messaging().sessions.half_attached() {
            self.services().refresh_session(&session);
        }
        for topic in self.messaging().topics.names() {
            self.services().offer_stored_events(&topic, "");
        }
        // Sessions with other parties: a peer may have reached another node of the cluster
        // (which notifies; this covers a missed notification, less often: one read each).
        let round = self
            .membership()
            .map_or(0, |m| m.rounds.fetch_add(1, Ordering::Relaxed));
        if round.is_multiple_of(5) {
            for session in self.messaging().sessions.remote() {
                self.services().refresh_session(&session);
            }
        }
    }

    fn answer_if_ended(&self, id: &str) {
        if !self.completions().is_awaited_elsewhere(id) {
            return;
        }
        if let Ok(Some(record)) = self.journal().store().record(id)
            && let Some(outcome) = record.outcome()
        {
            self.completions().finish(id, &outcome);
        }
    }
}

/// Run `f` (a blocking store call) off the async workers.
async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> Result<R, StoreError> + Send + 'static,
) -> Result<R, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Database(format!("a store task failed: {e}")))?
}

/// Run `f` on a new thread named `name`; a node that cannot start it says so.
fn on_own_thread(name: &str, f: impl FnOnce() + Send + 'static) {
    if let Err(e) = std::thread::Builder::new().name(name.into()).spawn(f) {
        tracing::error!("cannot start the {name} thread: {e}");
    }
}

/// Renew the lease every `every` and start a round of duties on `runtime` (unless one
/// is still under way), until the node goes or is fenced. A renewal stuck on a cut
/// connection stops the beats, not the watchdog, which judges by the last *successful*
/// renewal.
fn heartbeat(weak: Weak<NodeInner>, every: Duration, runtime: tokio::runtime::Handle) {
    loop {
        let Some(inner) = weak.upgrade() else {
            return;
        };
        let node = Node { inner };
        if node.membership().is_some_and(|m| *m.fenced.borrow()) {
            return;
        }
        let _ = node.renew_lease();
        if let Some(m) = node.membership()
            && !m.busy.swap(true, Ordering::AcqRel)
        {
            let node = node.clone();
            runtime.spawn(async move {
                if let Err(e) = node.duties().await {
                    tracing::debug!("cluster duties: {e}");
                }
                if let Some(m) = node.membership() {
                    m.busy.store(false, Ordering::Release);
                }
            });
        }
        drop(node);
        std::thread::sleep(every);
    }
}

/// Fence the node once its last successful renewal is older than 70% of its lease.
fn watchdog(weak: Weak<NodeInner>, every: Duration) {
    loop {
        std::thread::sleep(every);
        let Some(inner) = weak.upgrade() else {
            return;
        };
        let node = Node { inner };
        let Some(m) = node.membership() else {
            return;
        };
        if *m.fenced.borrow() {
            return;
        }
        let last = m.renewed_at_ms.load(Ordering::Acquire);
        let now = m.since_start_ms(Instant::now());
        let limit = (m.lease.as_millis() as u64) * 7 / 10;
        if now.saturating_sub(last) > limit {
            node.fence(&format!(
                "no lease renewal for {} ms (lease {} ms): another node may take its work",
                now - last,
                m.lease.as_millis()
            ));
            return;
        }
    }
}

/// Forward the cluster's signals to the node until it goes.
fn listen(weak: Weak<NodeInner>, signals: std::sync::mpsc::Receiver<Signal>) {
    let handle = tokio::runtime::Handle::current();
    let spawned = std::thread::Builder::new()
        .name("sluice-cluster-signals".into())
        .spawn(move || {
            while let Ok(signal) = signals.recv() {
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                let node = Node { inner };
                match signal {
                    Signal::Ended(id) => {
                        let _guard = handle.enter();
                        node.answer_if_ended(&id);
                        for session in node.messaging().sessions.live_of(&id) {
                            node.services().refresh_session(&session);
                        }
                    }
                    Signal::Published(topic) => {
                        if node.messaging().topics.names().contains(&topic) {
                            node.services().offer_stored_events(&topic, "");
                        }
                    }
                    Signal::Sent(session) => {
                        let _guard = handle.enter();
                        node.services().refresh_session(&session);
                    }
                    Signal::Cancel(id) => {
                        let _guard = handle.enter();
                        node.services().stop_cancelled_elsewhere(&id);
                    }
                    Signal::Idle => {}
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cluster signals unavailable, polling only: {e}");
    }
}
