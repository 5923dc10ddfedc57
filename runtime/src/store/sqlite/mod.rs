//! The embedded default store: SQLite in WAL mode, schema versioned by `user_version`,
//! commits with `synchronous = FULL` (an fsync per commit; the [`super::Journal`] batches).
//! Here: the store and its reads; its schema in [`schema`], writes and rows in [`rows`].

pub(crate) mod fuzzing;
mod rows;
mod schema;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::codec::peer_message;
use super::{
    Entry, InstanceRecord, JournalStore, ListQuery, Payload, Status, StoreError, StoredEvent, Write,
};
use crate::model::{PeerMessage, Side};
use rows::{RECORD_COLUMNS, Unreadable, apply, decoded, skip_unreadable, to_record};

/// How long a write waits for another process's lock on the file.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Prepared statements cached per connection: more than the store uses (about 30).
const STATEMENTS: usize = 64;

/// A [`JournalStore`] in one SQLite file (or in memory).
pub struct SqliteStore {
    path: PathBuf,
    /// Writes (and reads of an in-memory store).
    conn: Mutex<Connection>,
    /// Reads of a file store: WAL lets them proceed while a commit waits for fsync.
    reader: Option<Mutex<Connection>>,
}

/// A SQLite error as the store's: a full disk or an I/O error is [`StoreError::Unavailable`]
/// (worth retrying), a stored value of the wrong type [`StoreError::Decode`] (a corrupt row).
fn db(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode as Code;
    match &e {
        rusqlite::Error::SqliteFailure(failure, _)
            if matches!(
                failure.code,
                Code::DiskFull
                    | Code::SystemIoFailure
                    | Code::DatabaseBusy
                    | Code::DatabaseLocked
                    | Code::CannotOpen
                    | Code::OutOfMemory
            ) =>
        {
            StoreError::Unavailable(e.to_string())
        }
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::IntegralValueOutOfRange(..) => StoreError::Decode(e.to_string()),
        _ => StoreError::Database(e.to_string()),
    }
}

impl SqliteStore {
    /// The events a `SELECT id, topic, payload` query reads, in its order.
    fn peer_messages(
        &self,
        query: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<PeerMessage>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(query).map_err(db)?;
        let rows = stmt
            .query_map(params, |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, Vec<u8>>(5)?,
                ))
            })
            .map_err(db)?;
        let rows = rows.collect::<Result<Vec<_>, _>>().map_err(db)?;
        rows.into_iter()
            .map(|(peer, session, side, seq, kind, body)| {
                peer_message(peer, session, &side, seq, &kind, body)
            })
            .collect()
    }

    fn events_in(
        &self,
        query: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(query).map_err(db)?;
        let rows = stmt
            .query_map(params, |r| {
                Ok(StoredEvent {
                    id: r.get(0)?,
                    topic: r.get(1)?,
                    payload: Payload(r.get(2)?),
                })
            })
            .map_err(db)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db)
    }

    /// Open (or create) the store at `path`. An existing file is checked before anything is
    /// written to it: a corrupt or truncated one is refused and left as it was.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            path: path.into(),
            reason,
        };
        let existed = path.exists();
        if existed {
            // Read-only first, so checking can never change the file.
            let check = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
                .map_err(|e| corrupt(e.to_string()))?;
            let verdict: String = check
                .query_row("PRAGMA quick_check", [], |r| r.get(0))
                .map_err(|e| corrupt(e.to_string()))?;
            if verdict != "ok" {
                return Err(corrupt(verdict));
            }
            let version: i64 = check
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .map_err(|e| corrupt(e.to_string()))?;
            if version > schema::MIGRATIONS.len() as i64 {
                return Err(StoreError::TooNew {
                    path: path.into(),
                    found: version,
                    supported: schema::MIGRATIONS.len() as i64,
                });
            }
        }
        let mut conn = Connection::open(path).map_err(db)?;
        tune(&conn)?;
        // An operator command may write while a node runs on the same file.
        conn.busy_timeout(BUSY_TIMEOUT).map_err(db)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db)?;
        schema::migrate(&mut conn)?;
        let reader =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(db)?;
        tune(&reader)?;
        reader.busy_timeout(BUSY_TIMEOUT).map_err(db)?;
        Ok(SqliteStore {
            path: path.into(),
            conn: Mutex::new(conn),
            reader: Some(Mutex::new(reader)),
        })
    }

    /// A SQLite store in memory only, for tests of the SQL itself (a node without a data dir
    /// uses [`super::MemoryStore`]).
    pub fn in_memory() -> Result<Self, StoreError> {
        let mut conn = Connection::open_in_memory().map_err(db)?;
        tune(&conn)?;
        schema::migrate(&mut conn)?;
        Ok(SqliteStore {
            path: PathBuf::from(":memory:"),
            conn: Mutex::new(conn),
            reader: None,
        })
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn reader(&self) -> std::sync::MutexGuard<'_, Connection> {
        match &self.reader {
            Some(r) => r.lock().unwrap_or_else(|p| p.into_inner()),
            None => self.conn(),
        }
    }
}

/// Settings every connection of the store shares.
fn tune(conn: &Connection) -> Result<(), StoreError> {
    // Room for every statement the store prepares: past the default (16) the cache evicts,
    // and each write would parse its SQL again.
    conn.set_prepared_statement_cache_capacity(STATEMENTS);
    // One plan per statement, whatever its bound values: otherwise SQLite marks a statement
    // such as the journal's `WHERE id = ?1` to be prepared again whenever a new id is
    // bound, and every append and replay parsed its SQL anew.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .map_err(db)?;
    Ok(())
}

impl JournalStore for SqliteStore {
    fn write(&self, batch: &[Write]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db)?;
        for write in batch {
            apply(&tx, write)?;
        }
        tx.commit().map_err(db)
    }

    fn record(&self, id: &str) -> Result<Option<InstanceRecord>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {RECORD_COLUMNS} FROM instances WHERE id = ?1"
            ))
            .map_err(db)?;
        stmt.query_row([id], to_record).optional().map_err(db)
    }

    fn journal(&self, id: &str) -> Result<Vec<Entry>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT position, call, args, result, at_ms FROM journal WHERE id = ?1 ORDER BY position",
            )
            .map_err(db)?;
        let rows = stmt
            .query_map([id], |r| {
                Ok((
                    r.get::<_, i64>(0)? as u64,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                ))
            })
            .map_err(db)?;
        let mut entries = Vec::new();
        for row in rows {
            let (position, call, args, result, at_ms) = row.map_err(db)?;
            let json = |text: &str| {
                serde_json::from_str(text)
                    .map_err(|e| StoreError::Decode(format!("journal of {id} at {position}: {e}")))
            };
            entries.push(Entry {
                position,
                args: json(&args)?,
                result: json(&result)?,
                call,
                at_ms: at_ms.and_then(|ms| u64::try_from(ms).ok()),
            });
        }
        Ok(entries)
    }

    fn with_status(&self, status: Status) -> Result<Vec<InstanceRecord>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {RECORD_COLUMNS} FROM instances WHERE status = ?1 ORDER BY rowid"
            ))
            .map_err(db)?;
        let rows = stmt
            .query_map([status.as_str()], |r| Ok(decoded(r, 0)))
            .map_err(db)?;
        let mut records = Vec::new();
        for row in rows {
            if let Some(record) = skip_unreadable(row.map_err(db)?) {
                records.push(record);
            }
        }
        Ok(records)
    }

    fn unreadable(&self) -> Result<Vec<(String, String)>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {RECORD_COLUMNS} FROM instances \
                 WHERE status NOT IN ('completed', 'failed', 'cancelled', 'hospital') ORDER BY rowid"
            ))
            .map_err(db)?;
        let rows = stmt.query_map([], |r| Ok(decoded(r, 0))).map_err(db)?;
        let mut found = Vec::new();
        for row in rows {
            if let Err(Unreadable { id, why }) = row.map_err(db)? {
                match id {
                    Some(id) => found.push((id, why)),
                    None => tracing::error!("an instance row without a readable id: {why}"),
                }
            }
        }
        Ok(found)
    }

    fn component(&self, hash: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.reader()
            .query_row(
                "SELECT bytes FROM components WHERE hash = ?1",
                [hash],
                |r| r.get(0),
            )
            .optional()
            .map_err(db)
    }

    fn untaken_events(&self) -> Result<Vec<StoredEvent>, StoreError> {
        self.events_in("SELECT id, topic, payload FROM events ORDER BY rowid", [])
    }

    fn events_on(&self, topic: &str, taker: &str) -> Result<Vec<StoredEvent>, StoreError> {
        self.events_in(
            "SELECT id, topic, payload FROM events \
             WHERE topic = ?1 AND (taker IS NULL OR taker = ?2) ORDER BY rowid",
            params![topic, taker],
        )
    }

    fn claim_event(&self, id: &str, taker: &str) -> Result<bool, StoreError> {
        let changed = self
            .conn()
            .execute(
                "UPDATE events SET taker = ?2 WHERE id = ?1 AND (taker IS NULL OR taker = ?2)",
                params![id, taker],
            )
            .map_err(db)?;
        Ok(changed == 1)
    }

    fn outbox(&self) -> Result<Vec<StoredEvent>, StoreError> {
        self.events_in("SELECT id, topic, payload FROM outbox ORDER BY rowid", [])
    }

    fn peer_outbox(&self, peer: &str, limit: usize) -> Result<Vec<PeerMessage>, StoreError> {
        self.peer_messages(
            "SELECT peer, session, side, seq, kind, body FROM peer_outbox \
             WHERE peer = ?1 ORDER BY rowid LIMIT ?2",
            params![peer, limit as i64],
        )
    }

    fn peer_outbox_depth(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached("SELECT peer, COUNT(*) FROM peer_outbox GROUP BY peer ORDER BY peer")
            .map_err(db)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
            })
            .map_err(db)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db)
    }

    fn peer_inbox(&self, session: &str, to: Side) -> Result<Vec<PeerMessage>, StoreError> {
        self.peer_messages(
            "SELECT peer, session, side, seq, kind, body FROM peer_inbox \
             WHERE session = ?1 AND side = ?2 ORDER BY seq",
            params![session, to.as_str()],
        )
    }

    fn cursor(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.reader()
            .query_row("SELECT value FROM cursors WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(db)
    }

    fn list(&self, query: &ListQuery) -> Result<Vec<(u64, InstanceRecord)>, StoreError> {
        // The flow, status, parent and cursor narrow in SQL; pool and root (kept in the
        // start meta and the id) are checked on each row, page by page.
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT rowid, {RECORD_COLUMNS} FROM instances
                 WHERE rowid > ?1 AND (?2 IS NULL OR flow = ?2) AND (?3 IS NULL OR status = ?3)
                   AND (?5 IS NULL OR parent = ?5)
                 ORDER BY rowid LIMIT ?4"
            ))
            .map_err(db)?;
        let mut found = Vec::new();
        let mut after = query.after.map_or(0, |a| a as i64);
        let status = query.status.map(Status::as_str);
        const PAGE: i64 = 512;
        while found.len() < query.limit {
            let rows = stmt
                .query_map(
                    params![after, query.flow, status, PAGE, query.parent],
                    |r| {
                        let seq: i64 = r.get(0)?;
                        Ok((seq, decoded(r, 1)))
                    },
                )
                .map_err(db)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db)?;
            let Some((last, _)) = rows.last() else { break };
            after = *last;
            let full = rows.len() as i64 == PAGE;
            for (seq, record) in rows {
                let Some(record) = skip_unreadable(record) else {
                    continue;
                };
                if found.len() < query.limit && query.matches(&record) {
                    found.push((seq as u64, record));
                }
            }
            if !full {
                break;
            }
        }
        Ok(found)
    }

    fn descendants(&self, id: &str) -> Result<Vec<(String, Status)>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(
                "WITH RECURSIVE tree(id) AS (
                    SELECT id FROM instances WHERE parent = ?1
                    UNION
                    SELECT i.id FROM instances i JOIN tree t ON i.parent = t.id
                 )
                 SELECT i.id, i.status FROM instances i JOIN tree t ON i.id = t.id",
            )
            .map_err(db)?;
        let rows = stmt
            .query_map([id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(db)?;
        let mut found = Vec::new();
        for row in rows {
            let (child, status) = row.map_err(db)?;
            let status = Status::parse(&status).ok_or_else(|| {
                StoreError::Decode(format!("instance {child} has unknown status `{status}`"))
            })?;
            found.push((child, status));
        }
        Ok(found)
    }

    fn count_by_flow(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare("SELECT flow, COUNT(*) FROM instances GROUP BY flow ORDER BY flow")
            .map_err(db)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))
            .map_err(db)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db)
    }

    fn kind(&self) -> &'static str {
        "SQLite"
    }

    fn durable(&self) -> bool {
        self.path != Path::new(":memory:")
    }
}
