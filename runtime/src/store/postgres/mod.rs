//! The store for several machines: PostgreSQL, chosen by `[store] url = "postgres://…"`.
//! The same schema versions and the same semantics as the SQLite store (atomic batches,
//! ordered journals, a final status never overwritten); commits are as durable as the
//! server makes them (`synchronous_commit`, on by default).
//!
//! Here: the store and its reads; the schema in [`schema`], writes and rows in [`rows`],
//! the connection threads in [`bridge`], membership of several nodes in [`cluster`].
//! Several nodes share a database as members of a cluster (see `store::cluster`): a node
//! joins under its name, and from then on its writes are fenced by its membership.

mod bridge;
mod cluster;
mod rows;
mod schema;

#[cfg(test)]
mod membership_tests;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use super::codec::peer_message;
use super::{
    ClusterStore, Entry, InstanceRecord, JournalStore, ListQuery, Payload, Status, StoreError,
    StoredEvent, Write,
};
use crate::model::{PeerMessage, Side};
use bridge::{Bridge, connect, redacted};
use cluster::Joined;
use rows::{RECORD_COLUMNS, to_record_at};

/// Connections each store keeps: the journal writer's commits and concurrent reads.
const CONNECTIONS: usize = 4;

/// A [`JournalStore`] in a PostgreSQL database.
pub struct PostgresStore {
    /// The URL as configured (with its password: never shown).
    url: String,
    /// The URL without its password, for messages.
    shown: String,
    bridge: Bridge,
    /// This node's membership, once joined: stamped on writes and checked by each.
    joined: Mutex<Option<Arc<Joined>>>,
    /// Set when this node must write nothing more (lease lost, or left).
    fenced: Arc<AtomicBool>,
    /// Dropped with the store: the session holding this node's name ends.
    name_hold: Mutex<Option<Sender<()>>>,
    /// A connection of its own for lease renewals, once joined: a renewal never waits
    /// behind the writer's commits or a burst of reads.
    lease_line: Mutex<Option<Arc<Bridge>>>,
}

fn db(e: postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(d) => StoreError::Database(format!("PostgreSQL: {}", d.message())),
        None => StoreError::Database(format!("PostgreSQL: {e}")),
    }
}

impl PostgresStore {
    /// Connect to `url`, refuse a database with a newer schema (untouched), and apply the
    /// migrations not yet applied. The database is not held: see [`PostgresStore::hold`].
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        // Off any runtime: the client may not be made (or dropped) inside one.
        let prepared = std::thread::scope(|s| {
            s.spawn(|| {
                let mut client = connect(url)?;
                let found = schema::version(&mut client)?;
                let supported = schema::MIGRATIONS.len() as i64;
                if found > supported {
                    return Err(StoreError::TooNew {
                        path: redacted(url).into(),
                        found,
                        supported,
                    });
                }
                schema::migrate(&mut client, url)
            })
            .join()
        });
        prepared.map_err(|_| StoreError::Database("the schema check panicked".into()))??;
        Ok(PostgresStore {
            url: url.to_string(),
            shown: redacted(url),
            bridge: Bridge::connect(url, CONNECTIONS)?,
            joined: Mutex::new(None),
            fenced: Arc::new(AtomicBool::new(false)),
            name_hold: Mutex::new(None),
            lease_line: Mutex::new(None),
        })
    }

    fn joined(&self) -> Option<Arc<Joined>> {
        self.joined
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The database's URL, without its password.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    fn records(
        &self,
        sql: String,
        params: Vec<Box<dyn postgres::types::ToSql + Send + Sync>>,
    ) -> Result<Vec<InstanceRecord>, StoreError> {
        self.bridge.run(move |c| {
            let refs: Vec<&(dyn postgres::types::ToSql + Sync)> =
                params.iter().map(|p| p.as_ref() as _).collect();
            let rows = c.query(&sql, &refs).map_err(db)?;
            rows.iter().map(|r| to_record_at(r, 0)).collect()
        })
    }

    /// The events `sql` selects (`id, topic, payload`) with text parameters `args`.
    fn events_in(
        &self,
        sql: &'static str,
        args: Vec<String>,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.bridge.run(move |c| {
            let params: Vec<&(dyn postgres::types::ToSql + Sync)> = args
                .iter()
                .map(|a| a as &(dyn postgres::types::ToSql + Sync))
                .collect();
            let rows = c.query(sql, &params).map_err(db)?;
            rows.iter()
                .map(|r| {
                    Ok(StoredEvent {
                        id: r.try_get(0).map_err(db)?,
                        topic: r.try_get(1).map_err(db)?,
                        payload: Payload(r.try_get(2).map_err(db)?),
                    })
                })
                .collect()
        })
    }
}

impl JournalStore for PostgresStore {
    fn write(&self, batch: &[Write]) -> Result<(), StoreError> {
        let joined = self.joined();
        if self.fenced.load(Ordering::Acquire) {
            return Err(StoreError::Fenced {
                node: joined.map(|j| j.name.clone()).unwrap_or_default(),
            });
        }
        let batch = batch.to_vec();
        self.bridge.run(move |c| {
            let (client, prepared) = c.split();
            let mut tx = client.transaction().map_err(db)?;
            if let Some(joined) = &joined {
                // Commits only while this node is a live member: the row lock orders this
                // transaction before any declaring it dead, or after and refused.
                joined.check(&mut tx, prepared)?;
            }
            let stamp = joined.as_ref().map(|j| j.name.as_str());
            rows::apply_batch(&mut tx, prepared, stamp, &batch)?;
            tx.commit().map_err(db)
        })
    }

    fn record(&self, id: &str) -> Result<Option<InstanceRecord>, StoreError> {
        let sql = format!("SELECT {RECORD_COLUMNS} FROM instances WHERE id = $1");
        Ok(self
            .records(sql, vec![Box::new(id.to_string())])?
            .into_iter()
            .next())
    }

    fn journal(&self, id: &str) -> Result<Vec<Entry>, StoreError> {
        let id = id.to_string();
        self.bridge.run(move |c| {
            let rows = c
                .query(
                    "SELECT position, call, args, result, at_ms FROM journal WHERE id = $1 ORDER BY position",
                    &[&id],
                )
                .map_err(db)?;
            rows.iter()
                .map(|r| {
                    let position = r.try_get::<_, i64>(0).map_err(db)? as u64;
                    let json = |n: usize| -> Result<serde_json::Value, StoreError> {
                        let text: String = r.try_get(n).map_err(db)?;
                        serde_json::from_str(&text).map_err(|e| {
                            StoreError::Decode(format!("journal of {id} at {position}: {e}"))
                        })
                    };
                    Ok(Entry {
                        position,
                        call: r.try_get(1).map_err(db)?,
                        args: json(2)?,
                        result: json(3)?,
                        at_ms: r
                            .try_get::<_, Option<i64>>(4)
                            .map_err(db)?
                            .and_then(|ms| u64::try_from(ms).ok()),
                    })
                })
                .collect()
        })
    }

    fn with_status(&self, status: Status) -> Result<Vec<InstanceRecord>, StoreError> {
        let sql = format!("SELECT {RECORD_COLUMNS} FROM instances WHERE status = $1 ORDER BY seq");
        self.records(sql, vec![Box::new(status.as_str())])
    }

    fn component(&self, hash: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let hash = hash.to_string();
        self.bridge.run(move |c| {
            let row = c
                .query_opt("SELECT bytes FROM components WHERE hash = $1", &[&hash])
                .map_err(db)?;
            row.map(|r| r.try_get(0).map_err(db)).transpose()
        })
    }

    fn untaken_events(&self) -> Result<Vec<StoredEvent>, StoreError> {
        self.events_in(
            "SELECT id, topic, payload FROM events ORDER BY seq",
            Vec::new(),
        )
    }

    fn events_on(&self, topic: &str, taker: &str) -> Result<Vec<StoredEvent>, StoreError> {
        self.events_in(
            "SELECT id, topic, payload FROM events \
             WHERE topic = $1 AND (taker IS NULL OR taker = $2) ORDER BY seq",
            vec![topic.to_string(), taker.to_string()],
        )
    }

    fn claim_event(&self, id: &str, taker: &str) -> Result<bool, StoreError> {
        if self.fenced.load(Ordering::Acquire) {
            return Err(StoreError::Fenced {
                node: self.joined().map(|j| j.name.clone()).unwrap_or_default(),
            });
        }
        let (id, taker) = (id.to_string(), taker.to_string());
        self.bridge.run(move |c| {
            let changed = c
                .execute(
                    "UPDATE events SET taker = $2 WHERE id = $1 AND (taker IS NULL OR taker = $2)",
                    &[&id, &taker],
                )
                .map_err(db)?;
            Ok(changed == 1)
        })
    }

    fn outbox(&self) -> Result<Vec<StoredEvent>, StoreError> {
        self.events_in(
            "SELECT id, topic, payload FROM outbox ORDER BY seq",
            Vec::new(),
        )
    }

    fn peer_outbox(&self, peer: &str, limit: usize) -> Result<Vec<PeerMessage>, StoreError> {
        let (peer, limit) = (peer.to_string(), limit as i64);
        self.bridge.run(move |c| {
            let rows = c
                .query(
                    "SELECT peer, session, side, seq, kind, body FROM peer_outbox \
                     WHERE peer = $1 ORDER BY n LIMIT $2",
                    &[&peer, &limit],
                )
                .map_err(db)?;
            rows.iter().map(peer_row_of).collect()
        })
    }

    fn peer_outbox_depth(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.bridge.run(|c| {
            let rows = c
                .query(
                    "SELECT peer, COUNT(*) FROM peer_outbox GROUP BY peer ORDER BY peer",
                    &[],
                )
                .map_err(db)?;
            rows.iter()
                .map(|r| {
                    let count: i64 = r.try_get(1).map_err(db)?;
                    Ok((r.try_get(0).map_err(db)?, count as u64))
                })
                .collect()
        })
    }

    fn peer_inbox(&self, session: &str, to: Side) -> Result<Vec<PeerMessage>, StoreError> {
        let session = session.to_string();
        self.bridge.run(move |c| {
            let rows = c
                .query(
                    "SELECT peer, session, side, seq, kind, body FROM peer_inbox \
                     WHERE session = $1 AND side = $2 ORDER BY seq",
                    &[&session, &to.as_str()],
                )
                .map_err(db)?;
            rows.iter().map(peer_row_of).collect()
        })
    }

    fn cursor(&self, key: &str) -> Result<Option<String>, StoreError> {
        let key = key.to_string();
        self.bridge.run(move |c| {
            let row = c
                .query_opt("SELECT value FROM cursors WHERE key = $1", &[&key])
                .map_err(db)?;
            row.map(|r| r.try_get(0).map_err(db)).transpose()
        })
    }

    fn list(&self, query: &ListQuery) -> Result<Vec<(u64, InstanceRecord)>, StoreError> {
        // As SQLite: flow, status, parent and cursor narrow in SQL; pool and root (in the
        // start meta and the id) are checked on each row, page by page.
        let query = query.clone();
        self.bridge.run(move |c| {
            let sql = format!(
                "SELECT seq, {RECORD_COLUMNS} FROM instances
                 WHERE seq > $1 AND ($2::TEXT IS NULL OR flow = $2) AND ($3::TEXT IS NULL OR status = $3)
                   AND ($5::TEXT IS NULL OR parent = $5)
                 ORDER BY seq LIMIT $4"
            );
            const PAGE: i64 = 512;
            let status = query.status.map(Status::as_str);
            let mut after = query.after.map_or(0, |a| a as i64);
            let mut found = Vec::new();
            while found.len() < query.limit {
                let rows = c
                    .query(&sql, &[&after, &query.flow, &status, &PAGE, &query.parent])
                    .map_err(db)?;
                let full = rows.len() as i64 == PAGE;
                for row in &rows {
                    let seq: i64 = row.try_get(0).map_err(db)?;
                    after = seq;
                    let record = to_record_at(row, 1)?;
                    if found.len() < query.limit && query.matches(&record) {
                        found.push((seq as u64, record));
                    }
                }
                if !full {
                    break;
                }
            }
            Ok(found)
        })
    }

    fn descendants(&self, id: &str) -> Result<Vec<(String, Status)>, StoreError> {
        let id = id.to_string();
        self.bridge.run(move |c| {
            let rows = c
                .query(
                    "WITH RECURSIVE tree(id) AS (
                        SELECT id FROM instances WHERE parent = $1
                        UNION
                        SELECT i.id FROM instances i JOIN tree t ON i.parent = t.id
                     )
                     SELECT i.id, i.status FROM instances i JOIN tree t ON i.id = t.id",
                    &[&id],
                )
                .map_err(db)?;
            rows.iter()
                .map(|r| {
                    let (child, status): (String, String) =
                        (r.try_get(0).map_err(db)?, r.try_get(1).map_err(db)?);
                    let status = Status::parse(&status).ok_or_else(|| {
                        StoreError::Decode(format!(
                            "instance {child} has unknown status `{status}`"
                        ))
                    })?;
                    Ok((child, status))
                })
                .collect()
        })
    }

    fn count_by_flow(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.bridge.run(|c| {
            let rows = c
                .query(
                    "SELECT flow, COUNT(*) FROM instances GROUP BY flow ORDER BY flow",
                    &[],
                )
                .map_err(db)?;
            rows.iter()
                .map(|r| {
                    Ok((
                        r.try_get(0).map_err(db)?,
                        r.try_get::<_, i64>(1).map_err(db)? as u64,
                    ))
                })
                .collect()
        })
    }

    fn kind(&self) -> &'static str {
        "PostgreSQL"
    }

    fn cluster(&self) -> Option<&dyn ClusterStore> {
        Some(self)
    }

    fn durable(&self) -> bool {
        true
    }
}

/// A `peer_outbox` or `peer_inbox` row as a [`PeerMessage`].
fn peer_row_of(r: &postgres::Row) -> Result<PeerMessage, StoreError> {
    let side: String = r.try_get(2).map_err(db)?;
    let kind: String = r.try_get(4).map_err(db)?;
    peer_message(
        r.try_get(0).map_err(db)?,
        r.try_get(1).map_err(db)?,
        &side,
        r.try_get(3).map_err(db)?,
        &kind,
        r.try_get(5).map_err(db)?,
    )
}
