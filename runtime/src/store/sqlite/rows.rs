//! How the SQLite store's rows and records meet: each [`Write`] applied inside a
//! transaction, and an `instances` row read back as an [`InstanceRecord`].

use rusqlite::{OptionalExtension, params};

use super::db;
use crate::store::codec::peer_row;
use crate::store::{InstanceRecord, Payload, Status, StoreError, Write};

pub(super) const RECORD_COLUMNS: &str = "id, flow, component, input, status, meta, output, message, attempts, parent, created_ms, ended_ms";

/// One write inside an open transaction.
pub(super) fn apply(tx: &rusqlite::Transaction<'_>, write: &Write) -> Result<(), StoreError> {
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
                    r.created_ms.unwrap_or_else(crate::model::unix_ms) as i64
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
                "INSERT INTO journal (id, position, call, args, result, at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    id,
                    entry.position as i64,
                    entry.call,
                    entry.args.to_string(),
                    entry.result.to_string(),
                    entry.at_ms.map(|ms| ms as i64)
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
            let ended = status.is_final().then(|| crate::model::unix_ms() as i64);
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
        Write::Outbox(event) => {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO outbox (id, topic, payload) VALUES (?1, ?2, ?3)",
            )
            .and_then(|mut s| s.execute(params![event.id, event.topic, event.payload.0]))
            .map_err(db)?;
        }
        Write::Cursor { key, value } => {
            tx.prepare_cached("INSERT OR REPLACE INTO cursors (key, value) VALUES (?1, ?2)")
                .and_then(|mut s| s.execute(params![key, value]))
                .map_err(db)?;
        }
        Write::PeerOut(m) | Write::PeerIn(m) => {
            let (kind, body) = peer_row(&m.body);
            let sql = if matches!(write, Write::PeerOut(_)) {
                "INSERT OR IGNORE INTO peer_outbox (peer, session, side, seq, kind, body) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
            } else {
                "INSERT OR IGNORE INTO peer_inbox (peer, session, side, seq, kind, body) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
            };
            tx.prepare_cached(sql)
                .and_then(|mut s| {
                    s.execute(params![
                        m.peer,
                        m.session,
                        m.to.as_str(),
                        m.seq as i64,
                        kind,
                        body
                    ])
                })
                .map_err(db)?;
        }
        Write::PeerSent { session, to, seq } => {
            tx.prepare_cached(
                "DELETE FROM peer_outbox WHERE session = ?1 AND side = ?2 AND seq = ?3",
            )
            .and_then(|mut s| s.execute(params![session, to.as_str(), *seq as i64]))
            .map_err(db)?;
        }
        Write::Dispatched { id } => {
            tx.prepare_cached("DELETE FROM outbox WHERE id = ?1")
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

/// A row that does not decode as a record: its id when that much reads, and why.
pub(super) struct Unreadable {
    pub(super) id: Option<String>,
    pub(super) why: String,
}

/// The row's record columns from `at` as a record, or why they are not one.
pub(super) fn decoded(r: &rusqlite::Row<'_>, at: usize) -> Result<InstanceRecord, Unreadable> {
    to_record_at(r, at).map_err(|e| {
        let id = r.get::<_, String>(at).ok();
        let why = match &id {
            Some(id) => format!("instance {id}: {e}"),
            None => e.to_string(),
        };
        Unreadable { id, why }
    })
}

/// A decoded row, or `None` (logged) for one that is not a record; lists skip those, and
/// [`crate::store::JournalStore::unreadable`] names them.
pub(super) fn skip_unreadable(row: Result<InstanceRecord, Unreadable>) -> Option<InstanceRecord> {
    match row {
        Ok(record) => Some(record),
        Err(Unreadable { why, .. }) => {
            tracing::warn!("skipping an instance row this build cannot read: {why}");
            None
        }
    }
}

/// An `instances` row ([`RECORD_COLUMNS`]) as a record.
pub(super) fn to_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<InstanceRecord> {
    to_record_at(r, 0)
}

/// [`to_record`] of a row whose record columns start at column `at`.
pub(super) fn to_record_at(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<InstanceRecord> {
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
