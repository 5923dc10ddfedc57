//! The embedded default store: SQLite in WAL mode, schema versioned by `user_version`,
//! commits with `synchronous = FULL` (an fsync per commit; the [`super::Journal`] batches).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use super::{
    Entry, InstanceRecord, JournalStore, ListQuery, Payload, Status, StoreError, StoredEvent, Write,
};

/// Schema migrations, in order; `user_version` counts those applied.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE instances (
        id TEXT PRIMARY KEY,
        flow TEXT NOT NULL,
        component TEXT NOT NULL,
        input BLOB NOT NULL,
        status TEXT NOT NULL,
        output BLOB,
        created INTEGER NOT NULL DEFAULT (unixepoch())
     );
     CREATE TABLE journal (
        id TEXT NOT NULL REFERENCES instances(id),
        position INTEGER NOT NULL,
        call TEXT NOT NULL,
        args BLOB NOT NULL,
        result BLOB NOT NULL,
        PRIMARY KEY (id, position)
     );
     CREATE INDEX instances_unfinished ON instances(status) WHERE status = 'running';",
    // 2: what recovery, retries, the hospital and version pinning need.
    "ALTER TABLE instances ADD COLUMN meta TEXT NOT NULL DEFAULT '{}';
     ALTER TABLE instances ADD COLUMN message TEXT;
     ALTER TABLE instances ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
     CREATE INDEX instances_by_status ON instances(status);
     CREATE TABLE components (hash TEXT PRIMARY KEY, bytes BLOB NOT NULL);",
    // 3: events published and not yet taken (taking one deletes it).
    "CREATE TABLE events (id TEXT PRIMARY KEY, topic TEXT NOT NULL, payload BLOB NOT NULL);",
    // 4: cancellation finds descendants by `parent` (backfilled from the start meta); when
    // an instance was recorded and ended, in unix ms (`created_ms` of older rows from their
    // `created` seconds; `ended_ms` of rows that ended before stays NULL).
    "ALTER TABLE instances ADD COLUMN parent TEXT;
     ALTER TABLE instances ADD COLUMN created_ms INTEGER;
     ALTER TABLE instances ADD COLUMN ended_ms INTEGER;
     UPDATE instances SET parent = CASE WHEN json_valid(meta) THEN
        CASE WHEN json_extract(meta, '$.origin') = 'subflow' THEN json_extract(meta, '$.by') END
     END;
     UPDATE instances SET created_ms = created * 1000;
     CREATE INDEX instances_by_parent ON instances(parent) WHERE parent IS NOT NULL;",
];

/// How long a write waits for another process's lock on the file.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A [`JournalStore`] in one SQLite file (or in memory).
pub struct SqliteStore {
    path: PathBuf,
    /// Writes (and reads of an in-memory store).
    conn: Mutex<Connection>,
    /// Reads of a file store: WAL lets them proceed while a commit waits for fsync.
    reader: Option<Mutex<Connection>>,
}

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

impl SqliteStore {
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
            if version > MIGRATIONS.len() as i64 {
                return Err(StoreError::TooNew {
                    path: path.into(),
                    found: version,
                    supported: MIGRATIONS.len() as i64,
                });
            }
        }
        let mut conn = Connection::open(path).map_err(db)?;
        // An operator command may write while a node runs on the same file.
        conn.busy_timeout(BUSY_TIMEOUT).map_err(db)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db)?;
        Self::migrate(&mut conn)?;
        let reader =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(db)?;
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
        Self::migrate(&mut conn)?;
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

    /// Apply the migrations not yet applied, all in one write transaction: another process
    /// opening the same file at once (an operator command) waits, then finds them applied.
    fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        let version: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(db)?;
        if version >= MIGRATIONS.len() as i64 {
            return Ok(());
        }
        for sql in MIGRATIONS.iter().skip(version.max(0) as usize) {
            tx.execute_batch(sql).map_err(db)?;
        }
        tx.pragma_update(None, "user_version", MIGRATIONS.len() as i64)
            .map_err(db)?;
        tx.commit().map_err(db)
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
                "SELECT position, call, args, result FROM journal WHERE id = ?1 ORDER BY position",
            )
            .map_err(db)?;
        let rows = stmt
            .query_map([id], |r| {
                Ok((
                    r.get::<_, i64>(0)? as u64,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })
            .map_err(db)?;
        let mut entries = Vec::new();
        for row in rows {
            let (position, call, args, result) = row.map_err(db)?;
            let json = |text: &str| {
                serde_json::from_str(text)
                    .map_err(|e| StoreError::Decode(format!("journal of {id} at {position}: {e}")))
            };
            entries.push(Entry {
                position,
                args: json(&args)?,
                result: json(&result)?,
                call,
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
        let rows = stmt.query_map([status.as_str()], to_record).map_err(db)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db)
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
        let conn = self.reader();
        let mut stmt = conn
            .prepare("SELECT id, topic, payload FROM events ORDER BY rowid")
            .map_err(db)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(StoredEvent {
                    id: r.get(0)?,
                    topic: r.get(1)?,
                    payload: Payload(r.get(2)?),
                })
            })
            .map_err(db)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db)
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
                        Ok((seq, to_record_at(r, 1)?))
                    },
                )
                .map_err(db)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db)?;
            let Some((last, _)) = rows.last() else { break };
            after = *last;
            let full = rows.len() as i64 == PAGE;
            for (seq, record) in rows {
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

    fn durable(&self) -> bool {
        self.path != Path::new(":memory:")
    }
}

const RECORD_COLUMNS: &str = "id, flow, component, input, status, meta, output, message, attempts, parent, created_ms, ended_ms";

/// One write inside an open transaction.
fn apply(tx: &rusqlite::Transaction<'_>, write: &Write) -> Result<(), StoreError> {
    match write {
        Write::Create(r) => {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO instances \
                 (id, flow, component, input, status, meta, parent, created_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    r.id,
                    r.flow,
                    r.component,
                    r.input.0,
                    r.status.as_str(),
                    r.meta,
                    r.parent,
                    r.created_ms.unwrap_or_else(super::unix_ms) as i64
                ])
            })
            .map_err(db)?;
        }
        Write::Append { id, entry } => {
            // SQLite integers are i64; positions never come near its limit.
            let next: i64 = tx
                .prepare_cached("SELECT COALESCE(MAX(position) + 1, 0) FROM journal WHERE id = ?1")
                .and_then(|mut s| s.query_row([id], |r| r.get(0)))
                .map_err(db)?;
            if entry.position != next as u64 {
                return Err(StoreError::OutOfOrder {
                    id: id.clone(),
                    expected: next as u64,
                    got: entry.position,
                });
            }
            tx.prepare_cached(
                "INSERT INTO journal (id, position, call, args, result) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    id,
                    entry.position as i64,
                    entry.call,
                    entry.args.to_string(),
                    entry.result.to_string()
                ])
            })
            .map_err(db)?;
        }
        Write::Status {
            id,
            status,
            output,
            message,
        } => {
            // A final status stays: whichever end reached the store first is the end.
            let ended = status.is_final().then(|| super::unix_ms() as i64);
            let changed = tx
                .prepare_cached(
                    "UPDATE instances SET status = ?2, output = ?3, message = ?4, ended_ms = ?5 \
                     WHERE id = ?1 AND status NOT IN ('completed', 'failed', 'cancelled')",
                )
                .and_then(|mut s| s.execute(params![id, status.as_str(), output, message, ended]))
                .map_err(db)?;
            if changed == 0 {
                let known = tx
                    .prepare_cached("SELECT 1 FROM instances WHERE id = ?1")
                    .and_then(|mut s| s.query_row([id], |_| Ok(())).optional())
                    .map_err(db)?;
                if known.is_none() {
                    return Err(StoreError::Unknown(id.clone()));
                }
                tracing::debug!(
                    "instance {id} has ended already; its status stays (not {})",
                    status.as_str()
                );
            }
        }
        Write::Attempted { id, attempts } => {
            tx.prepare_cached("UPDATE instances SET attempts = ?2 WHERE id = ?1")
                .and_then(|mut s| s.execute(params![id, attempts]))
                .map_err(db)?;
        }
        Write::Component { hash, bytes } => {
            tx.prepare_cached("INSERT OR IGNORE INTO components (hash, bytes) VALUES (?1, ?2)")
                .and_then(|mut s| s.execute(params![hash, bytes]))
                .map_err(db)?;
        }
        Write::Publish(event) => {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO events (id, topic, payload) VALUES (?1, ?2, ?3)",
            )
            .and_then(|mut s| s.execute(params![event.id, event.topic, event.payload.0]))
            .map_err(db)?;
        }
        Write::Take { id } => {
            tx.prepare_cached("DELETE FROM events WHERE id = ?1")
                .and_then(|mut s| s.execute([id]))
                .map_err(db)?;
        }
        Write::Pin { id, component } => {
            let changed = tx
                .prepare_cached("UPDATE instances SET component = ?2 WHERE id = ?1")
                .and_then(|mut s| s.execute(params![id, component]))
                .map_err(db)?;
            if changed == 0 {
                return Err(StoreError::Unknown(id.clone()));
            }
        }
    }
    Ok(())
}

/// An `instances` row ([`RECORD_COLUMNS`]) as a record.
fn to_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<InstanceRecord> {
    to_record_at(r, 0)
}

/// [`to_record`] of a row whose record columns start at column `at`.
fn to_record_at(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<InstanceRecord> {
    let status: String = r.get(at + 4)?;
    let id: String = r.get(at)?;
    // A status this build does not know is an error, never a guess: guessing `running`
    // would resume an instance that may have ended.
    let Some(status) = Status::parse(&status) else {
        let why = format!("instance {id} has unknown status `{status}`");
        return Err(rusqlite::Error::FromSqlConversionFailure(
            at + 4,
            rusqlite::types::Type::Text,
            why.into(),
        ));
    };
    Ok(InstanceRecord {
        id,
        flow: r.get(at + 1)?,
        component: r.get(at + 2)?,
        input: Payload(r.get(at + 3)?),
        status,
        meta: r.get(at + 5)?,
        output: r.get::<_, Option<Vec<u8>>>(at + 6)?.map(Payload),
        message: r.get(at + 7)?,
        attempts: r.get(at + 8)?,
        parent: r.get(at + 9)?,
        created_ms: r.get::<_, Option<i64>>(at + 10)?.map(|ms| ms as u64),
        ended_ms: r.get::<_, Option<i64>>(at + 11)?.map(|ms| ms as u64),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn record(id: &str) -> InstanceRecord {
        InstanceRecord::new(id, "chain", "ab12", b"{}", "{}".into())
    }

    /// Records without their timestamps, which say when the store saw them, not what they are.
    fn untimed(records: Vec<InstanceRecord>) -> Vec<InstanceRecord> {
        records
            .into_iter()
            .map(|r| InstanceRecord {
                created_ms: None,
                ended_ms: None,
                ..r
            })
            .collect()
    }

    fn entry(position: u64, call: &str) -> Entry {
        Entry {
            position,
            call: call.into(),
            args: json!([]),
            result: json!(1),
        }
    }

    fn append(store: &SqliteStore, id: &str, entry: Entry) -> Result<(), StoreError> {
        store.write(&[Write::Append {
            id: id.into(),
            entry,
        }])
    }

    #[test]
    fn an_unknown_stored_status_is_an_error_not_running() {
        let store = SqliteStore::in_memory().unwrap();
        store.write(&[Write::Create(record("a"))]).unwrap();
        let conn = store.conn.lock().unwrap();
        conn.execute("UPDATE instances SET status = 'paused' WHERE id = 'a'", [])
            .unwrap();
        drop(conn);
        let e = store.record("a").unwrap_err().to_string();
        assert!(e.contains("unknown status `paused`"), "{e}");
    }

    #[test]
    fn records_and_journals_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.db");
        {
            let store = SqliteStore::open(&path).unwrap();
            store
                .write(&[Write::Create(record("a")), Write::Create(record("b"))])
                .unwrap();
            append(&store, "a", entry(0, "now")).unwrap();
            append(&store, "a", entry(1, "sleep")).unwrap();
            let e = append(&store, "a", entry(3, "random")).unwrap_err();
            assert_eq!(e.to_string(), "journal of a: expected position 2, got 3");
            store
                .write(&[Write::Status {
                    id: "b".into(),
                    status: Status::Completed,
                    output: Some(b"7".to_vec()),
                    message: None,
                }])
                .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(
            store.journal("a").unwrap(),
            vec![entry(0, "now"), entry(1, "sleep")]
        );
        assert_eq!(
            untimed(store.with_status(Status::Running).unwrap()),
            untimed(vec![record("a")])
        );
        let b = store.record("b").unwrap().unwrap();
        assert_eq!(
            (b.status, b.output),
            (Status::Completed, Some(Payload(b"7".to_vec())))
        );
        let unknown = store.write(&[Write::Status {
            id: "zz".into(),
            status: Status::Failed,
            output: None,
            message: None,
        }]);
        assert!(matches!(unknown, Err(StoreError::Unknown(_))));
    }

    #[test]
    fn a_batch_is_atomic_and_creating_twice_keeps_the_first() {
        let store = SqliteStore::in_memory().unwrap();
        store.write(&[Write::Create(record("a"))]).unwrap();
        let mut again = record("a");
        again.flow = "other".into();
        let failed = store.write(&[
            Write::Create(again),
            Write::Create(record("c")),
            Write::Append {
                id: "a".into(),
                entry: entry(5, "now"),
            },
        ]);
        assert!(failed.is_err());
        assert!(store.record("c").unwrap().is_none(), "rolled back");
        assert_eq!(store.record("a").unwrap().unwrap().flow, "chain");
        store
            .write(&[Write::Component {
                hash: "h".into(),
                bytes: vec![1, 2],
            }])
            .unwrap();
        assert_eq!(store.component("h").unwrap(), Some(vec![1, 2]));
    }

    #[test]
    fn a_corrupt_or_truncated_file_is_refused_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.db");
        std::fs::write(&garbage, vec![0x5a; 8192]).unwrap();
        let before = std::fs::read(&garbage).unwrap();
        let e = SqliteStore::open(&garbage).err().expect("garbage refused");
        assert!(
            e.to_string().contains("corrupt or truncated") && e.to_string().contains("garbage.db"),
            "{e}"
        );
        assert_eq!(std::fs::read(&garbage).unwrap(), before);

        let truncated = dir.path().join("truncated.db");
        {
            let store = SqliteStore::open(&truncated).unwrap();
            for i in 0..200 {
                let id = format!("id-{i:04}");
                let mut batch = vec![Write::Create(record(&id))];
                for p in 0..20 {
                    batch.push(Write::Append {
                        id: id.clone(),
                        entry: entry(p, "now"),
                    });
                }
                store.write(&batch).unwrap();
            }
            store
                .conn()
                .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
                .unwrap();
        }
        let full = std::fs::read(&truncated).unwrap();
        std::fs::write(&truncated, &full[..full.len() / 2]).unwrap();
        let before = std::fs::read(&truncated).unwrap();
        let e = SqliteStore::open(&truncated)
            .err()
            .expect("truncated refused");
        assert!(e.to_string().contains("corrupt or truncated"), "{e}");
        assert_eq!(std::fs::read(&truncated).unwrap(), before);
    }

    #[test]
    fn migrations_are_versioned_and_a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.db");
        drop(SqliteStore::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let e = SqliteStore::open(&path)
            .err()
            .expect("newer schema refused");
        assert!(
            e.to_string().contains(&format!(
                "schema version 99, newer than this build's {}",
                MIGRATIONS.len()
            )),
            "{e}"
        );
    }

    #[test]
    fn a_version_1_store_is_migrated_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(&format!("{}; PRAGMA user_version = 1;", MIGRATIONS[0]))
                .unwrap();
            conn.execute(
                "INSERT INTO instances (id, flow, component, input, status) VALUES ('old', 'chain', 'ab12', x'7b7d', 'running')",
                [],
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(
            untimed(store.with_status(Status::Running).unwrap()),
            untimed(vec![record("old")])
        );
    }

    /// A child of `parent`, as the node records one.
    fn child(id: &str, parent: &str) -> InstanceRecord {
        let meta = format!(
            r#"{{"origin":"subflow","by":"{parent}","priority":"normal","pool":"default"}}"#
        );
        InstanceRecord::new(id, "chain", "ab12", b"{}", meta)
    }

    fn status(id: &str, status: Status) -> Write {
        Write::Status {
            id: id.into(),
            status,
            output: None,
            message: None,
        }
    }

    #[test]
    fn a_version_3_store_migrates_and_its_children_are_found_by_parent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v3.db");
        {
            // The schema as the previous build left it, with rows it wrote.
            let conn = Connection::open(&path).unwrap();
            let v3: Vec<&str> = MIGRATIONS[..3].to_vec();
            conn.execute_batch(&format!("{}; PRAGMA user_version = 3;", v3.join(";\n")))
                .unwrap();
            for (id, meta, status) in [
                (
                    "root",
                    r#"{"origin":"rpc","by":"cli","priority":"normal","pool":"default"}"#,
                    "running",
                ),
                (
                    "root.0",
                    r#"{"origin":"subflow","by":"root","priority":"normal","pool":"default"}"#,
                    "running",
                ),
                (
                    "root.0.1",
                    r#"{"origin":"subflow","by":"root.0","priority":"normal","pool":"default"}"#,
                    "completed",
                ),
                ("other", "not json", "running"),
            ] {
                conn.execute(
                    "INSERT INTO instances (id, flow, component, input, status, meta) VALUES (?1, 'chain', 'ab12', x'7b7d', ?3, ?2)",
                    params![id, meta, status],
                )
                .unwrap();
            }
        }
        let store = SqliteStore::open(&path).unwrap();
        let child = store.record("root.0").unwrap().unwrap();
        assert_eq!(child.parent.as_deref(), Some("root"), "parent backfilled");
        assert!(
            child.created_ms.is_some_and(|ms| ms > 0),
            "created_ms from created"
        );
        assert_eq!(child.ended_ms, None);
        assert_eq!(store.record("other").unwrap().unwrap().parent, None);
        let mut found = store.descendants("root").unwrap();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            found,
            vec![
                ("root.0".to_string(), Status::Running),
                ("root.0.1".to_string(), Status::Completed)
            ]
        );
        let children = store
            .list(&ListQuery {
                parent: Some("root".into()),
                limit: 10,
                ..ListQuery::default()
            })
            .unwrap();
        assert_eq!(children.len(), 1);
        assert_eq!(children[0].1.id, "root.0");
    }

    #[test]
    fn a_final_status_is_never_overwritten_and_stamps_when_it_ended() {
        let store = SqliteStore::in_memory().unwrap();
        store
            .write(&[Write::Create(record("a")), Write::Create(child("a.0", "a"))])
            .unwrap();
        assert_eq!(
            store.record("a.0").unwrap().unwrap().parent.as_deref(),
            Some("a")
        );
        store.write(&[status("a", Status::Hospital)]).unwrap();
        assert_eq!(store.record("a").unwrap().unwrap().ended_ms, None);
        store.write(&[status("a", Status::Cancelled)]).unwrap();
        store.write(&[status("a", Status::Completed)]).unwrap();
        store.write(&[status("a", Status::Running)]).unwrap();
        let a = store.record("a").unwrap().unwrap();
        assert_eq!(a.status, Status::Cancelled, "the first end stays");
        assert!(a.ended_ms.is_some());
        assert_eq!(a.outcome(), Some(Err(crate::model::FlowError::Cancelled)));
        assert_eq!(
            store.with_status(Status::Cancelled).unwrap().len(),
            1,
            "stored as `cancelled`"
        );
    }
}
