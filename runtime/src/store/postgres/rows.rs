//! How the PostgreSQL store's rows and records meet: each [`Write`] applied inside a
//! transaction, and an `instances` row read back as an [`InstanceRecord`]. The same
//! semantics as SQLite's (`store::sqlite::rows`), statement for statement.

use postgres::{Row, Transaction};

use super::bridge::Prepared;
use super::db;
use crate::store::{InstanceRecord, Payload, Status, StoreError, Write};

/// The columns of an `instances` row read as a record, as a literal (for `concat!`).
macro_rules! record_columns {
    () => {
        "id, flow, component, input, status, meta, output, message, attempts, parent, created_ms, ended_ms"
    };
}
pub(super) use record_columns;

pub(super) const RECORD_COLUMNS: &str = record_columns!();

/// The node a write is made for, stamped on what it creates: the instances it records
/// run on it (`owner`), the entries it appends are its (`node`).
pub(super) type Stamp<'a> = Option<&'a str>;

/// One write inside an open transaction, with statements prepared once per connection.
pub(super) fn apply(
    tx: &mut Transaction<'_>,
    prepared: &mut Prepared,
    stamp: Stamp<'_>,
    write: &Write,
) -> Result<(), StoreError> {
    match write {
        Write::Create(r) => {
            let created = r.created_ms.unwrap_or_else(crate::model::unix_ms) as i64;
            let sql = prepared.get(
                tx,
                "INSERT INTO instances \
                 (id, flow, component, input, status, meta, parent, created_ms, owner) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING",
            )?;
            tx.execute(
                &sql,
                &[
                    &r.id,
                    &r.flow,
                    &r.component,
                    &r.input.0,
                    &r.status.as_str(),
                    &r.meta,
                    &r.parent,
                    &created,
                    &stamp,
                ],
            )
            .map_err(db)?;
        }
        Write::Append { id, entry } => {
            // One round trip: the entry goes in only at the journal's next position.
            let sql = prepared.get(
                tx,
                "INSERT INTO journal (id, position, call, args, result, at_ms, node) \
                 SELECT $1::TEXT, $2::BIGINT, $3::TEXT, $4::TEXT, $5::TEXT, $6::BIGINT, $7::TEXT \
                 WHERE $2::BIGINT = (SELECT COALESCE(MAX(position) + 1, 0) FROM journal WHERE id = $1)",
            )?;
            let added = tx
                .execute(
                    &sql,
                    &[
                        id,
                        &(entry.position as i64),
                        &entry.call,
                        &entry.args.to_string(),
                        &entry.result.to_string(),
                        &entry.at_ms.map(|ms| ms as i64),
                        &stamp,
                    ],
                )
                .map_err(db)?;
            if added == 0 {
                let next: i64 = tx
                    .query_one(
                        "SELECT COALESCE(MAX(position) + 1, 0) FROM journal WHERE id = $1",
                        &[id],
                    )
                    .map_err(db)?
                    .get(0);
                return Err(StoreError::OutOfOrder {
                    id: id.clone(),
                    expected: next as u64,
                    got: entry.position,
                });
            }
        }
        Write::Status {
            id,
            status,
            output,
            message,
        } => {
            // A final status stays: whichever end reached the store first is the end. An
            // instance set running again (a retry) runs on the node that set it.
            let ended = status.is_final().then(|| crate::model::unix_ms() as i64);
            let owner = (*status == Status::Running).then_some(stamp).flatten();
            let sql = prepared.get(
                tx,
                "UPDATE instances SET status = $2, output = $3, message = $4, ended_ms = $5, \
                 owner = COALESCE($6, owner) \
                 WHERE id = $1 AND status NOT IN ('completed', 'failed', 'cancelled')",
            )?;
            let changed = tx
                .execute(
                    &sql,
                    &[id, &status.as_str(), output, message, &ended, &owner],
                )
                .map_err(db)?;
            if changed == 0 {
                let known = tx
                    .query_opt("SELECT 1 FROM instances WHERE id = $1", &[id])
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
            let attempts = i32::try_from(*attempts).unwrap_or(i32::MAX);
            let sql = prepared.get(tx, "UPDATE instances SET attempts = $2 WHERE id = $1")?;
            tx.execute(&sql, &[id, &attempts]).map_err(db)?;
        }
        Write::Component { hash, bytes } => {
            tx.execute(
                "INSERT INTO components (hash, bytes) VALUES ($1, $2) ON CONFLICT (hash) DO NOTHING",
                &[hash, bytes],
            )
            .map_err(db)?;
        }
        Write::Publish(event) => {
            let sql = prepared.get(
                tx,
                "INSERT INTO events (id, topic, payload) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
            )?;
            tx.execute(&sql, &[&event.id, &event.topic, &event.payload.0])
                .map_err(db)?;
        }
        Write::Take { id } => {
            let sql = prepared.get(tx, "DELETE FROM events WHERE id = $1")?;
            tx.execute(&sql, &[id]).map_err(db)?;
        }
        Write::Outbox(event) => {
            // Kept for the event triggers of the node that published it (while it lives).
            let sql = prepared.get(
                tx,
                "INSERT INTO outbox (id, topic, payload, node) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (id) DO NOTHING",
            )?;
            tx.execute(&sql, &[&event.id, &event.topic, &event.payload.0, &stamp])
                .map_err(db)?;
        }
        Write::Cursor { key, value } => {
            let sql = prepared.get(
                tx,
                "INSERT INTO cursors (key, value) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            )?;
            tx.execute(&sql, &[key, value]).map_err(db)?;
        }
        Write::Dispatched { id } => {
            let sql = prepared.get(tx, "DELETE FROM outbox WHERE id = $1")?;
            tx.execute(&sql, &[id]).map_err(db)?;
        }
        Write::Pin { id, component } => {
            let changed = tx
                .execute(
                    "UPDATE instances SET component = $2 WHERE id = $1",
                    &[id, component],
                )
                .map_err(db)?;
            if changed == 0 {
                return Err(StoreError::Unknown(id.clone()));
            }
        }
    }
    Ok(())
}

/// An `instances` row whose [`RECORD_COLUMNS`] start at column `at`, as a record. A status
/// this build does not know is an error, never a guess.
pub(super) fn to_record_at(r: &Row, at: usize) -> Result<InstanceRecord, StoreError> {
    let id: String = r.try_get(at).map_err(db)?;
    let status: String = r.try_get(at + 4).map_err(db)?;
    let status = Status::parse(&status).ok_or_else(|| {
        StoreError::Decode(format!("instance {id} has unknown status `{status}`"))
    })?;
    let ms = |n: usize| -> Result<Option<u64>, StoreError> {
        Ok(r.try_get::<_, Option<i64>>(n)
            .map_err(db)?
            .map(|v| v as u64))
    };
    Ok(InstanceRecord {
        flow: r.try_get(at + 1).map_err(db)?,
        component: r.try_get(at + 2).map_err(db)?,
        input: Payload(r.try_get(at + 3).map_err(db)?),
        status,
        meta: r.try_get(at + 5).map_err(db)?,
        output: r
            .try_get::<_, Option<Vec<u8>>>(at + 6)
            .map_err(db)?
            .map(Payload),
        message: r.try_get(at + 7).map_err(db)?,
        attempts: r.try_get::<_, i32>(at + 8).map_err(db)?.max(0) as u32,
        parent: r.try_get(at + 9).map_err(db)?,
        created_ms: ms(at + 10)?,
        ended_ms: ms(at + 11)?,
        id,
    })
}
