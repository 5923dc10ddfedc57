//! [`Journal`]: the node's one way to write its store. Writes of all instances queue, in
//! order, to one writer thread, which commits whatever has queued in a single transaction
//! (group commit): under load one fsync makes many host calls durable.
//!
//! Because there is one queue and it commits in order, a write is durable once any write
//! queued after it is. So a host call only *queues* its journal entry ([`Journal::append`]);
//! the node waits for durability ([`Journal::write`]) only where something leaves the node:
//! an instance's end (its waiters and callers see it) and a start acknowledged to a caller.
//! Whatever a crash loses was never seen outside: replay redoes it, with the same ids.
//!
//! A commit the storage cannot take now ([`StoreError::Unavailable`]: a full disk, an I/O
//! error) is not dropped: the writer keeps it, with everything queued after it, and tries
//! again with a growing pause until it commits, so nothing queued is lost or reordered.
//! Meanwhile [`Journal::unavailable`] says why, and the node refuses new starts.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use tokio::sync::oneshot;

use super::{JournalStore, StoreError, Write};

/// Most writes committed in one transaction; bounds the latency of the first of them.
const MAX_BATCH: usize = 8192;
/// First pause before a commit the storage refused is tried again; it doubles up to
/// [`MAX_RETRY_PAUSE`].
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(10);
/// Longest pause between tries of a refused commit: how late the node notices that space
/// came back.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(1);

/// A handle to the node's store. Cheap to clone.
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn JournalStore>,
    /// `None` for a store that is not durable: writes apply inline, nothing to batch for.
    queue: Option<mpsc::Sender<Job>>,
    commits: Arc<AtomicU64>,
    writes: Arc<AtomicU64>,
    health: Arc<Health>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // A writer retrying a refused commit stops: nobody is left to wait for it.
        self.health.closed.store(true, Ordering::Relaxed);
    }
}

/// Whether the storage takes writes, shared by the writer thread and the handles.
#[derive(Default)]
struct Health {
    /// Whether `failing` holds a reason: read by every start, without the lock.
    down: AtomicBool,
    /// Why the last commit was refused, until one succeeds.
    failing: Mutex<Option<String>>,
    /// Commits refused so far (each try counts).
    failures: AtomicU64,
    /// Every handle is gone.
    closed: AtomicBool,
}

impl Health {
    fn failing(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.failing.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The reason commits are refused, if they are.
    fn reason(&self) -> Option<String> {
        if !self.down.load(Ordering::Acquire) {
            return None;
        }
        self.failing().clone()
    }

    /// Commits are refused for `why`; returns whether they were taken until now.
    fn refused(&self, why: String) -> bool {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let first = self.failing().replace(why).is_none();
        self.down.store(true, Ordering::Release);
        first
    }

    /// A commit was taken; returns whether commits were refused until now.
    fn recovered(&self) -> bool {
        if !self.down.load(Ordering::Acquire) {
            return false;
        }
        self.down.store(false, Ordering::Release);
        self.failing().take().is_some()
    }
}

struct Job {
    batch: Vec<Write>,
    /// Told the result; `None`: nobody waits (an error is logged instead).
    done: Option<oneshot::Sender<Result<(), StoreError>>>,
}

impl Journal {
    /// A journal over `store`; durable stores get a writer thread.
    pub fn new(store: Arc<dyn JournalStore>) -> std::io::Result<Self> {
        let commits = Arc::new(AtomicU64::new(0));
        let writes = Arc::new(AtomicU64::new(0));
        let health = Arc::new(Health::default());
        let queue = if store.durable() {
            let (tx, rx) = mpsc::channel();
            let (s, c, w) = (store.clone(), commits.clone(), writes.clone());
            let h = health.clone();
            std::thread::Builder::new()
                .name("sluice-journal".into())
                .spawn(move || write_loop(&*s, &rx, &c, &w, &h))?;
            Some(tx)
        } else {
            None
        };
        Ok(Journal {
            inner: Arc::new(Inner {
                store,
                queue,
                commits,
                writes,
                health,
            }),
        })
    }

    /// Write `batch` atomically; returns once it (and everything queued before) is durable.
    pub async fn write(&self, batch: Vec<Write>) -> Result<(), StoreError> {
        let Some(queue) = &self.inner.queue else {
            return self.apply_inline(batch);
        };
        let (done, result) = oneshot::channel();
        queue
            .send(Job {
                batch,
                done: Some(done),
            })
            .map_err(|_| StoreError::Closed)?;
        result.await.unwrap_or(Err(StoreError::Closed))
    }

    /// Queue `batch` to be written atomically, after everything queued before it; returns
    /// at once. An error of a store that is not durable is returned; a durable store's is
    /// logged by the writer.
    pub fn append(&self, batch: Vec<Write>) -> Result<(), StoreError> {
        let Some(queue) = &self.inner.queue else {
            return self.apply_inline(batch);
        };
        queue
            .send(Job { batch, done: None })
            .map_err(|_| StoreError::Closed)
    }

    /// Wait until everything queued so far is durable (and so readable from the store).
    pub async fn sync(&self) -> Result<(), StoreError> {
        self.write(Vec::new()).await
    }

    fn apply_inline(&self, batch: Vec<Write>) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.inner.commits.fetch_add(1, Ordering::Relaxed);
        self.inner
            .writes
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        self.inner.store.write_owned(batch)
    }

    /// The store, for reads.
    pub fn store(&self) -> &Arc<dyn JournalStore> {
        &self.inner.store
    }

    /// Why the store cannot take writes now (its last commit was refused and is being
    /// retried); `None` while it can. The node refuses new starts meanwhile.
    pub fn unavailable(&self) -> Option<String> {
        self.inner.health.reason()
    }

    /// Commits the store refused so far (each retry counts): for the metrics.
    pub fn refused_commits(&self) -> u64 {
        self.inner.health.failures.load(Ordering::Relaxed)
    }

    /// Commits and writes so far: their ratio is the batching achieved.
    pub fn commit_stats(&self) -> (u64, u64) {
        (
            self.inner.commits.load(Ordering::Relaxed),
            self.inner.writes.load(Ordering::Relaxed),
        )
    }
}

fn write_loop(
    store: &dyn JournalStore,
    queue: &mpsc::Receiver<Job>,
    commits: &AtomicU64,
    writes: &AtomicU64,
    health: &Health,
) {
    while let Ok(first) = queue.recv() {
        let mut jobs = vec![first];
        let mut size = jobs[0].batch.len();
        while size < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => {
                    size += job.batch.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let lens: Vec<usize> = jobs.iter().map(|j| j.batch.len()).collect();
        let all: Vec<Write> = jobs.iter_mut().flat_map(|j| j.batch.drain(..)).collect();
        if all.is_empty() {
            // Only `sync` barriers: everything before them is committed already.
            for job in jobs {
                reply(job.done, Ok(()));
            }
            continue;
        }
        let count = |len: usize| {
            commits.fetch_add(1, Ordering::Relaxed);
            writes.fetch_add(len as u64, Ordering::Relaxed);
        };
        match commit(store, &all, health) {
            Ok(()) => {
                count(all.len());
                for job in jobs {
                    reply(job.done, Ok(()));
                }
            }
            Err(e) if jobs.len() == 1 => reply(jobs.remove(0).done, Err(e)),
            Err(_) => {
                // One job's write failed the group: commit each alone, so only it fails.
                let mut rest = all.into_iter();
                for (job, len) in jobs.into_iter().zip(lens) {
                    let batch: Vec<Write> = rest.by_ref().take(len).collect();
                    let result = if batch.is_empty() {
                        Ok(())
                    } else {
                        commit(store, &batch, health)
                    };
                    if result.is_ok() && len > 0 {
                        count(len);
                    }
                    reply(job.done, result);
                }
            }
        }
    }
}

/// Write `batch`; while the storage refuses it as [`StoreError::Unavailable`], mark the
/// journal failing and try again after a growing pause. Any other error is the batch's own
/// (it would fail again) and is returned. Gives up only when every handle is gone.
fn commit(store: &dyn JournalStore, batch: &[Write], health: &Health) -> Result<(), StoreError> {
    let mut pause = FIRST_RETRY_PAUSE;
    loop {
        let result = store.write(batch);
        let Err(StoreError::Unavailable(why)) = result else {
            if health.recovered() {
                tracing::warn!("the store takes writes again; new starts are admitted");
            }
            return result;
        };
        if health.refused(why.clone()) {
            tracing::error!(
                "the store refused a commit ({why}); keeping it and retrying, new starts are refused meanwhile"
            );
        }
        if health.closed.load(Ordering::Relaxed) {
            return Err(StoreError::Unavailable(why));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(MAX_RETRY_PAUSE);
    }
}

/// Tell a waiting writer its result, or log an error nobody waits for.
fn reply(done: Option<oneshot::Sender<Result<(), StoreError>>>, result: Result<(), StoreError>) {
    match done {
        // A waiter that gave up is fine.
        Some(done) => drop(done.send(result)),
        None => {
            if let Err(e) = result {
                tracing::error!("journal write failed: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::store::{Entry, InstanceRecord, Refusable, SqliteStore};

    fn append(position: u64) -> Vec<Write> {
        vec![Write::Append {
            id: "a".into(),
            entry: Entry {
                position,
                call: "now".into(),
                args: json!(null),
                result: json!(position),
                at_ms: None,
            },
        }]
    }

    /// Poll `check` until it holds; fail naming `what` after a generous deadline.
    async fn until(what: &str, check: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !check() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_refused_commit_is_kept_in_order_and_acknowledged_once_durable() {
        let store = Arc::new(Refusable::new(SqliteStore::in_memory().unwrap()));
        let journal = Journal::new(store.clone()).unwrap();
        let record = InstanceRecord::new("a", "f", "c", b"", "{}".into());
        journal.write(vec![Write::Create(record)]).await.unwrap();
        store.refuse(true);
        journal.append(append(0)).unwrap();
        journal.append(append(1)).unwrap();
        let waiter = tokio::spawn({
            let journal = journal.clone();
            async move { journal.write(append(2)).await }
        });
        until("the journal to report the refusal", || {
            journal.unavailable().is_some()
        })
        .await;
        assert!(journal.unavailable().unwrap().contains("disk is full"));
        // Tried again, and not acknowledged while refused.
        until("a retry", || store.tries() >= 3).await;
        assert!(
            !waiter.is_finished(),
            "a write was acknowledged before it was durable"
        );
        assert!(journal.refused_commits() >= 2);

        store.refuse(false);
        tokio::time::timeout(Duration::from_secs(30), waiter)
            .await
            .expect("the write is acknowledged once space returns")
            .unwrap()
            .expect("the kept write commits");
        assert_eq!(journal.unavailable(), None);
        let positions: Vec<u64> = store
            .journal("a")
            .unwrap()
            .iter()
            .map(|e| e.position)
            .collect();
        assert_eq!(positions, [0, 1, 2], "lost, reordered or doubled");
    }

    #[tokio::test]
    async fn a_writer_retrying_for_nobody_stops() {
        let store = Arc::new(Refusable::new(SqliteStore::in_memory().unwrap()));
        store.refuse(true);
        let journal = Journal::new(store.clone()).unwrap();
        journal.append(append(0)).unwrap();
        until("a refusal", || store.tries() >= 1).await;
        drop(journal);
        // The writer thread holds the store until it ends: then only this test does.
        until("the writer to stop retrying", || {
            Arc::strong_count(&store) == 1
        })
        .await;
    }
}
