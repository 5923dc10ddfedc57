//! The store for several machines: PostgreSQL, chosen by `[store] url = "postgres://…"`.
//! The same schema versions and the same semantics as the SQLite store (atomic batches,
//! ordered journals, a final status never overwritten); commits are as durable as the
//! server makes them (`synchronous_commit`, on by default).
//!
//! Here: the store and its reads; the schema in [`schema`], writes and rows in [`rows`],
//! the connection threads in [`bridge`]. Until nodes share a database by claiming work
//! (leases), one node holds a database at a time: an advisory lock, held by a session of
//! its own, refuses a second node as a data dir's lock file does.

mod bridge;
mod rows;
mod schema;

use std::sync::mpsc::{Sender, channel};

use postgres::Client;

use super::{
    Entry, InstanceRecord, JournalStore, ListQuery, Payload, Status, StoreError, StoredEvent, Write,
};
use bridge::{Bridge, connect, redacted};
use rows::{RECORD_COLUMNS, apply, to_record_at};

/// Connections each store keeps: the journal writer's commits and concurrent reads.
const CONNECTIONS: usize = 4;

/// The advisory lock key a node holds its database by ("sluice-node" folded to 63 bits).
const NODE_LOCK: i64 = 0x0073_6c75_6963_656e;

/// How long a node waits for the lock before it calls the database in use.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(3);

/// A [`JournalStore`] in a PostgreSQL database.
pub struct PostgresStore {
    /// The URL without its password, for messages.
    shown: String,
    bridge: Bridge,
    /// Dropped with the store: the session holding the node lock ends.
    _lock: Option<Sender<()>>,
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
            shown: redacted(url),
            bridge: Bridge::connect(url, CONNECTIONS)?,
            _lock: None,
        })
    }

    /// [`PostgresStore::connect`], then hold the database for this process until the store
    /// is dropped; refused when another node holds it.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let mut store = PostgresStore::connect(url)?;
        store._lock = Some(hold(url)?);
        Ok(store)
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

    fn events_in(&self, table: &'static str) -> Result<Vec<StoredEvent>, StoreError> {
        self.bridge.run(move |c| {
            let sql = format!("SELECT id, topic, payload FROM {table} ORDER BY seq");
            let rows = c.query(&sql, &[]).map_err(db)?;
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

/// Take the node lock on a session of its own, kept by a thread until the returned
/// sender is dropped.
fn hold(url: &str) -> Result<Sender<()>, StoreError> {
    let (stop, stopped) = channel::<()>();
    let (told, answer) = channel::<Result<(), StoreError>>();
    let url = url.to_string();
    std::thread::Builder::new()
        .name("sluice-pg-lock".into())
        .spawn(move || {
            let taken = connect(&url).and_then(|mut c: Client| {
                // A node restarted right after a crash may find its old session still
                // holding the lock for a moment, until the server sees the socket close.
                let deadline = std::time::Instant::now() + LOCK_PATIENCE;
                loop {
                    let got: bool = c
                        .query_one("SELECT pg_try_advisory_lock($1)", &[&NODE_LOCK])
                        .map_err(db)?
                        .get(0);
                    if got || std::time::Instant::now() >= deadline {
                        return Ok((c, got));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
            });
            match taken {
                Ok((client, true)) => {
                    let _ = told.send(Ok(()));
                    // Hold until the store goes (every sender dropped).
                    let _ = stopped.recv();
                    drop(client);
                }
                Ok((_, false)) => {
                    let _ = told.send(Err(StoreError::InUse {
                        dir: redacted(&url).into(),
                        holder: "another Sluice node holds this database".into(),
                    }));
                }
                Err(e) => {
                    let _ = told.send(Err(e));
                }
            }
        })
        .map_err(|e| StoreError::Database(format!("cannot start the lock thread: {e}")))?;
    answer.recv().map_err(|_| StoreError::Closed)??;
    Ok(stop)
}

impl JournalStore for PostgresStore {
    fn write(&self, batch: &[Write]) -> Result<(), StoreError> {
        let batch = batch.to_vec();
        self.bridge.run(move |c| {
            let mut tx = c.transaction().map_err(db)?;
            for write in &batch {
                apply(&mut tx, write)?;
            }
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
        self.events_in("events")
    }

    fn outbox(&self) -> Result<Vec<StoredEvent>, StoreError> {
        self.events_in("outbox")
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

    fn durable(&self) -> bool {
        true
    }
}
