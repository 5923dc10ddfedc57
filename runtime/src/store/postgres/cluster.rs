//! Membership of nodes sharing the database (see `store::cluster`): the `nodes` table holds
//! each member's incarnation and lease, in the server's clock; a member's name is held by
//! an advisory lock on a session of its own, so a restarted node knows at once that its
//! earlier self is gone (the server drops a dead process's session) and resumes its own
//! instances without waiting out the lease.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, Transaction};

use super::bridge::{Bridge, Prepared, connect};
use super::rows::{record_columns, to_record_at};
use super::{PostgresStore, db};
use crate::store::{
    ClusterStore, InstanceRecord, Member, Payload, Signal, StoreError, StoredEvent,
};

/// How long a joining node waits for its name's lock (a killed predecessor's session ends
/// when the server sees its socket close) before calling the name in use.
const NAME_PATIENCE: Duration = Duration::from_secs(3);

/// The advisory lock class of member names ("sl"); the key is the name's hash.
const NAME_LOCK_CLASS: i32 = 0x736c;

/// The channels members signal each other on.
const ENDED: &str = "sluice_ended";
const CANCEL: &str = "sluice_cancel";
/// Sessions that got a message (see `rows::notify_sent`).
const SENT: &str = "sluice_sent";
/// Topics that got an event.
const PUBLISHED: &str = "sluice_published";

/// This node's membership: its name and incarnation.
pub(super) struct Joined {
    pub(super) name: String,
    epoch: i32,
}

impl Joined {
    /// Fail with [`StoreError::Fenced`] unless this incarnation is a live member; holds a
    /// key-share lock on its row until the transaction ends, so a concurrent "declare
    /// dead" (which locks the row `FOR UPDATE`) waits for it, and then finds the lease
    /// renewed, or this member's writes stop. A renewal (an update of no key column) does
    /// not conflict with it: a node's lease never waits behind its own writes.
    pub(super) fn check(
        &self,
        tx: &mut Transaction<'_>,
        prepared: &mut Prepared,
    ) -> Result<(), StoreError> {
        let sql = prepared.get(
            tx,
            "SELECT 1 FROM nodes WHERE name = $1 AND epoch = $2 AND state = 'live' FOR KEY SHARE",
        )?;
        match tx.query_opt(&sql, &[&self.name, &self.epoch]).map_err(db)? {
            Some(_) => Ok(()),
            None => Err(self.fenced()),
        }
    }

    fn fenced(&self) -> StoreError {
        StoreError::Fenced {
            node: self.name.clone(),
        }
    }
}

impl PostgresStore {
    fn member(&self) -> Result<std::sync::Arc<Joined>, StoreError> {
        self.joined()
            .ok_or_else(|| StoreError::Database("this node has not joined the cluster".into()))
    }

    fn fenced_now(&self, joined: &Joined) -> Result<(), StoreError> {
        if self.fenced.load(Ordering::Acquire) {
            return Err(joined.fenced());
        }
        Ok(())
    }
}

impl ClusterStore for PostgresStore {
    fn join(&self, name: &str, address: Option<&str>, lease: Duration) -> Result<u64, StoreError> {
        let hold = hold_name(&self.url, &self.shown, name)?;
        let (name_, address) = (name.to_string(), address.map(str::to_string));
        let now = crate::model::unix_ms() as i64;
        let secs = lease.as_secs_f64();
        let epoch: i32 = self.bridge.run(move |c| {
            let row = c
                .query_one(
                    "INSERT INTO nodes (name, epoch, state, address, joined_ms, heartbeat_ms, lease_until)
                     VALUES ($1, 1, 'live', $2, $3, $3, now() + make_interval(secs => $4))
                     ON CONFLICT (name) DO UPDATE SET epoch = nodes.epoch + 1, state = 'live',
                        address = EXCLUDED.address, joined_ms = EXCLUDED.joined_ms,
                        heartbeat_ms = EXCLUDED.heartbeat_ms, lease_until = EXCLUDED.lease_until
                     RETURNING epoch",
                    &[&name_, &address, &now, &secs],
                )
                .map_err(db)?;
            row.try_get(0).map_err(db)
        })?;
        *self.joined.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(std::sync::Arc::new(Joined {
                name: name.to_string(),
                epoch,
            }));
        *self.name_hold.lock().unwrap_or_else(|p| p.into_inner()) = Some(hold);
        *self.lease_line.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(std::sync::Arc::new(Bridge::connect(&self.url, 1)?));
        self.fenced.store(false, Ordering::Release);
        Ok(epoch.max(0) as u64)
    }

    fn renew(&self, lease: Duration) -> Result<(), StoreError> {
        let joined = self.member()?;
        self.fenced_now(&joined)?;
        let secs = lease.as_secs_f64();
        let now = crate::model::unix_ms() as i64;
        let me = joined.clone();
        let line = self
            .lease_line
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let line = line.as_deref().unwrap_or(&self.bridge);
        let renewed = line.run(move |c| {
            let sql = c.prepared(
                "UPDATE nodes SET lease_until = now() + make_interval(secs => $3), heartbeat_ms = $4
                 WHERE name = $1 AND epoch = $2 AND state = 'live'",
            )?;
            c.execute(&sql, &[&me.name, &me.epoch, &secs, &now])
                .map_err(db)
        })?;
        if renewed == 0 {
            self.fence();
            return Err(joined.fenced());
        }
        Ok(())
    }

    fn fence(&self) {
        self.fenced.store(true, Ordering::Release);
    }

    fn claim_orphans(&self, limit: usize) -> Result<Vec<InstanceRecord>, StoreError> {
        let joined = self.member()?;
        self.fenced_now(&joined)?;
        let limit = limit as i64;
        self.bridge.run(move |c| {
            let (client, prepared) = c.split();
            let mut tx = client.transaction().map_err(db)?;
            joined.check(&mut tx, prepared)?;
            let dead = prepared.get(
                &mut tx,
                // FOR UPDATE: ordered after (or before) every write of the lapsed node.
                "UPDATE nodes SET state = 'dead'
                 WHERE name IN (SELECT name FROM nodes
                                WHERE state = 'live' AND lease_until < now() AND name <> $1
                                FOR UPDATE)
                   AND state = 'live' AND lease_until < now()
                 RETURNING name",
            )?;
            for row in tx.query(&dead, &[&joined.name]).map_err(db)? {
                let name: String = row.try_get(0).map_err(db)?;
                tracing::warn!(node = %name, "node {name} let its lease lapse: taking over its instances");
            }
            let claim = prepared.get(
                &mut tx,
                concat!(
                    "UPDATE instances SET owner = $1 WHERE seq IN (
                        SELECT seq FROM instances WHERE status = 'running'
                          AND (owner IS NULL OR owner NOT IN (SELECT name FROM nodes WHERE state = 'live'))
                        ORDER BY seq LIMIT $2 FOR UPDATE SKIP LOCKED)
                     RETURNING ",
                    record_columns!()
                ),
            )?;
            let rows = tx.query(&claim, &[&joined.name, &limit]).map_err(db)?;
            let mut records = rows
                .iter()
                .map(|r| to_record_at(r, 0))
                .collect::<Result<Vec<_>, _>>()?;
            tx.commit().map_err(db)?;
            // Oldest first, as recovery resumes them (parents before their children).
            records.sort_by_key(|r| r.created_ms);
            Ok(records)
        })
    }

    fn own_running(&self) -> Result<Vec<InstanceRecord>, StoreError> {
        let joined = self.member()?;
        self.bridge.run(move |c| {
            let rows = c
                .query(
                    concat!(
                        "SELECT ",
                        record_columns!(),
                        " FROM instances WHERE status = 'running' AND owner = $1 ORDER BY seq"
                    ),
                    &[&joined.name],
                )
                .map_err(db)?;
            rows.iter().map(|r| to_record_at(r, 0)).collect()
        })
    }

    fn claim_outbox(&self) -> Result<Vec<StoredEvent>, StoreError> {
        let joined = self.member()?;
        self.fenced_now(&joined)?;
        self.bridge.run(move |c| {
            let (client, prepared) = c.split();
            let mut tx = client.transaction().map_err(db)?;
            joined.check(&mut tx, prepared)?;
            let rows = tx
                .query(
                    "UPDATE outbox SET node = $1 WHERE node IS NULL OR node = $1
                        OR node NOT IN (SELECT name FROM nodes WHERE state = 'live')
                     RETURNING seq, id, topic, payload",
                    &[&joined.name],
                )
                .map_err(db)?;
            let mut kept = rows
                .iter()
                .map(|r| {
                    Ok((
                        r.try_get::<_, i64>(0).map_err(db)?,
                        StoredEvent {
                            id: r.try_get(1).map_err(db)?,
                            topic: r.try_get(2).map_err(db)?,
                            payload: Payload(r.try_get(3).map_err(db)?),
                        },
                    ))
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            tx.commit().map_err(db)?;
            kept.sort_by_key(|(seq, _)| *seq);
            Ok(kept.into_iter().map(|(_, e)| e).collect())
        })
    }

    fn leave(&self) -> Result<(), StoreError> {
        let joined = self.member()?;
        self.fenced_now(&joined)?;
        let me = joined.clone();
        let left = self.bridge.run(move |c| {
            c.execute(
                "UPDATE nodes SET state = 'left', lease_until = now()
                 WHERE name IN (SELECT name FROM nodes WHERE name = $1 FOR UPDATE)
                   AND epoch = $2 AND state = 'live'",
                &[&me.name, &me.epoch],
            )
            .map_err(db)
        });
        // Whatever the answer, this node writes nothing more: the others may claim its work.
        self.fence();
        if left? == 0 {
            return Err(joined.fenced());
        }
        Ok(())
    }

    fn members(&self) -> Result<Vec<Member>, StoreError> {
        self.bridge.run(|c| {
            let rows = c
                .query(
                    "SELECT n.name, n.epoch, n.state, n.address, n.joined_ms, n.heartbeat_ms,
                        (EXTRACT(EPOCH FROM (n.lease_until - now())) * 1000)::BIGINT,
                        (SELECT COUNT(*) FROM instances i WHERE i.status = 'running' AND i.owner = n.name)
                     FROM nodes n ORDER BY n.joined_ms, n.name",
                    &[],
                )
                .map_err(db)?;
            rows.iter()
                .map(|r| {
                    Ok(Member {
                        name: r.try_get(0).map_err(db)?,
                        epoch: r.try_get::<_, i32>(1).map_err(db)?.max(0) as u64,
                        state: r.try_get(2).map_err(db)?,
                        address: r.try_get(3).map_err(db)?,
                        joined_ms: r.try_get::<_, i64>(4).map_err(db)?.max(0) as u64,
                        heartbeat_ms: r.try_get::<_, i64>(5).map_err(db)?.max(0) as u64,
                        lease_left_ms: r.try_get(6).map_err(db)?,
                        running: r.try_get::<_, i64>(7).map_err(db)?.max(0) as u64,
                    })
                })
                .collect()
        })
    }

    fn signals(&self) -> Result<Receiver<Signal>, StoreError> {
        let (tx, rx) = channel();
        let url = self.url.clone();
        std::thread::Builder::new()
            .name("sluice-pg-listen".into())
            .spawn(move || listen(&url, &tx))
            .map_err(|e| StoreError::Database(format!("cannot start the listener thread: {e}")))?;
        Ok(rx)
    }

    fn ask_cancel(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_string();
        self.bridge.run(move |c| {
            c.execute("SELECT pg_notify($1, $2)", &[&CANCEL, &id])
                .map_err(db)
                .map(|_| ())
        })
    }
}

/// Forward the cluster's notifications to `tx` until its receiver is gone; reconnect
/// (after a pause) when the connection breaks; notifications sent meanwhile are missed,
/// which readers cover by polling.
fn listen(url: &str, tx: &Sender<Signal>) {
    loop {
        let client = connect(url).and_then(|mut c: Client| {
            c.batch_execute(&format!(
                "LISTEN {ENDED}; LISTEN {CANCEL}; LISTEN {SENT}; LISTEN {PUBLISHED};"
            ))
            .map_err(db)?;
            Ok(c)
        });
        let mut client = match client {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("cluster notifications: {e}");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        loop {
            let mut broken = false;
            {
                let mut notifications = client.notifications();
                let mut iter = notifications.timeout_iter(Duration::from_secs(1));
                loop {
                    match iter.next() {
                        Ok(Some(n)) => {
                            let signal = match n.channel() {
                                ENDED => Signal::Ended(n.payload().to_string()),
                                SENT => Signal::Sent(n.payload().to_string()),
                                PUBLISHED => Signal::Published(n.payload().to_string()),
                                _ => Signal::Cancel(n.payload().to_string()),
                            };
                            if tx.send(signal).is_err() {
                                return;
                            }
                        }
                        Ok(None) => break,
                        Err(_) => {
                            broken = true;
                            break;
                        }
                    }
                }
            }
            // Idle a second: still wanted? still connected?
            if broken || client.is_closed() {
                break;
            }
            if tx.send(Signal::Idle).is_err() {
                return;
            }
        }
    }
}

/// Hold `name` on a session of its own until the returned sender is dropped; refused when
/// a live process holds it.
fn hold_name(url: &str, shown: &str, name: &str) -> Result<Sender<()>, StoreError> {
    let (stop, stopped) = channel::<()>();
    let (told, answer) = channel::<Result<(), StoreError>>();
    let (url, key) = (url.to_string(), format!("sluice-node:{name}"));
    let in_use = StoreError::InUse {
        dir: shown.into(),
        holder: format!(
            "node `{name}` is running on this database; give each node its own `[cluster] name`"
        ),
    };
    std::thread::Builder::new()
        .name("sluice-pg-name".into())
        .spawn(move || {
            let taken = connect(&url).and_then(|mut c: Client| {
                let deadline = Instant::now() + NAME_PATIENCE;
                loop {
                    let got: bool = c
                        .query_one(
                            "SELECT pg_try_advisory_lock($1, hashtext($2))",
                            &[&NAME_LOCK_CLASS, &key],
                        )
                        .map_err(db)?
                        .get(0);
                    if got || Instant::now() >= deadline {
                        return Ok((c, got));
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            });
            match taken {
                Ok((client, true)) => {
                    let _ = told.send(Ok(()));
                    let _ = stopped.recv();
                    drop(client);
                }
                Ok((_, false)) => {
                    let _ = told.send(Err(in_use));
                }
                Err(e) => {
                    let _ = told.send(Err(e));
                }
            }
        })
        .map_err(|e| StoreError::Database(format!("cannot start the name thread: {e}")))?;
    answer.recv().map_err(|_| StoreError::Closed)??;
    Ok(stop)
}
