//! The embedded default store: SQLite in WAL mode, schema versioned by `user_version`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::{Entry, InstanceRecord, JournalStore, Status, StoreError};

/// Schema migrations, in order; `user_version` counts those applied.
const MIGRATIONS: &[&str] = &["CREATE TABLE instances (
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
     CREATE INDEX instances_unfinished ON instances(status) WHERE status = 'running';"];

/// A [`JournalStore`] in one SQLite file (or in memory).
pub struct SqliteStore {
    path: PathBuf,
    conn: Mutex<Connection>,
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
        let conn = Connection::open(path).map_err(db)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db)?;
        Self::migrate(&conn)?;
        Ok(SqliteStore {
            path: path.into(),
            conn: Mutex::new(conn),
        })
    }

    /// A store that lives in memory only (for `sluice run` without `--data-dir`).
    pub fn in_memory() -> Result<Self, StoreError> {
        let conn = Connection::open_in_memory().map_err(db)?;
        Self::migrate(&conn)?;
        Ok(SqliteStore {
            path: PathBuf::from(":memory:"),
            conn: Mutex::new(conn),
        })
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn migrate(conn: &Connection) -> Result<(), StoreError> {
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(db)?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
            conn.execute_batch(&format!(
                "BEGIN; {sql}; PRAGMA user_version = {}; COMMIT;",
                i + 1
            ))
            .map_err(db)?;
        }
        Ok(())
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl JournalStore for SqliteStore {
    fn create(&self, r: &InstanceRecord) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "INSERT INTO instances (id, flow, component, input, status) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![r.id, r.flow, r.component, r.input, r.status.as_str()],
            )
            .map_err(db)?;
        Ok(())
    }

    fn append(&self, id: &str, entry: &Entry) -> Result<(), StoreError> {
        let conn = self.conn();
        // SQLite integers are i64; positions never come near its limit.
        let next: i64 = conn
            .query_row(
                "SELECT COALESCE(MAX(position) + 1, 0) FROM journal WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .map_err(db)?;
        let next = next as u64;
        if entry.position != next {
            return Err(StoreError::OutOfOrder {
                id: id.into(),
                expected: next,
                got: entry.position,
            });
        }
        conn.execute(
            "INSERT INTO journal (id, position, call, args, result) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                id,
                entry.position as i64,
                entry.call,
                entry.args,
                entry.result
            ],
        )
        .map_err(db)?;
        Ok(())
    }

    fn journal(&self, id: &str) -> Result<Vec<Entry>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT position, call, args, result FROM journal WHERE id = ?1 ORDER BY position",
            )
            .map_err(db)?;
        let rows = stmt
            .query_map([id], |r| {
                Ok(Entry {
                    position: r.get::<_, i64>(0)? as u64,
                    call: r.get(1)?,
                    args: r.get(2)?,
                    result: r.get(3)?,
                })
            })
            .map_err(db)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db)
    }

    fn finish(&self, id: &str, status: Status, output: Option<&[u8]>) -> Result<(), StoreError> {
        let changed = self
            .conn()
            .execute(
                "UPDATE instances SET status = ?2, output = ?3 WHERE id = ?1",
                params![id, status.as_str(), output],
            )
            .map_err(db)?;
        if changed == 0 {
            return Err(StoreError::Unknown(id.into()));
        }
        Ok(())
    }

    fn unfinished(&self) -> Result<Vec<InstanceRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT id, flow, component, input, status FROM instances WHERE status = 'running' ORDER BY created, id")
            .map_err(db)?;
        let rows = stmt.query_map([], to_record).map_err(db)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db)
    }
}

impl SqliteStore {
    /// The instance `id`, if recorded.
    pub fn record(&self, id: &str) -> Result<Option<InstanceRecord>, StoreError> {
        self.conn()
            .query_row(
                "SELECT id, flow, component, input, status FROM instances WHERE id = ?1",
                [id],
                to_record,
            )
            .optional()
            .map_err(db)
    }
}

/// An `instances` row (id, flow, component, input, status) as a record.
fn to_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<InstanceRecord> {
    let status: String = r.get(4)?;
    Ok(InstanceRecord {
        id: r.get(0)?,
        flow: r.get(1)?,
        component: r.get(2)?,
        input: r.get(3)?,
        status: Status::parse(&status).unwrap_or(Status::Running),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> InstanceRecord {
        InstanceRecord {
            id: id.into(),
            flow: "chain".into(),
            component: "ab12".into(),
            input: b"{}".to_vec(),
            status: Status::Running,
        }
    }

    fn entry(position: u64, call: &str) -> Entry {
        Entry {
            position,
            call: call.into(),
            args: b"[]".to_vec(),
            result: b"1".to_vec(),
        }
    }

    #[test]
    fn records_and_journals_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.db");
        {
            let store = SqliteStore::open(&path).unwrap();
            store.create(&record("a")).unwrap();
            store.create(&record("b")).unwrap();
            store.append("a", &entry(0, "now")).unwrap();
            store.append("a", &entry(1, "sleep")).unwrap();
            let e = store.append("a", &entry(3, "random")).unwrap_err();
            assert_eq!(e.to_string(), "journal of a: expected position 2, got 3");
            store.finish("b", Status::Completed, Some(b"7")).unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(
            store.journal("a").unwrap(),
            vec![entry(0, "now"), entry(1, "sleep")]
        );
        assert_eq!(store.unfinished().unwrap(), vec![record("a")]);
        assert_eq!(
            store.record("b").unwrap().map(|r| r.status),
            Some(Status::Completed)
        );
        assert!(matches!(
            store.finish("zz", Status::Failed, None),
            Err(StoreError::Unknown(_))
        ));
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
                store.create(&record(&format!("id-{i:04}"))).unwrap();
                for p in 0..20 {
                    store
                        .append(&format!("id-{i:04}"), &entry(p, "now"))
                        .unwrap();
                }
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
            e.to_string()
                .contains("schema version 99, newer than this build's 1"),
            "{e}"
        );
    }

    #[test]
    fn an_in_memory_store_works_alike() {
        let store = SqliteStore::in_memory().unwrap();
        store.create(&record("m")).unwrap();
        store.append("m", &entry(0, "call")).unwrap();
        assert_eq!(store.journal("m").unwrap().len(), 1);
    }
}
