//! How the PostgreSQL store's rows and records meet: a batch of [`Write`]s applied inside a
//! transaction, and an `instances` row read back as an [`InstanceRecord`]. The same
//! semantics as SQLite's (`store::sqlite::rows`). A batch costs few round trips: its
//! records go in one statement, its journal entries in one more (after one query for where
//! each journal stands), the rest one by one. Inside the transaction the order does not
//! show: records go first because entries refer to them, and entries touch nothing but
//! their journals.

use std::collections::HashMap;

use postgres::{Row, Transaction};

use super::bridge::Prepared;
use super::db;
use crate::store::codec::peer_row;
use crate::store::{Entry, InstanceRecord, Payload, Status, StoreError, Write};

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

/// Apply `batch` inside `tx`.
pub(super) fn apply_batch(
    tx: &mut Transaction<'_>,
    prepared: &mut Prepared,
    stamp: Stamp<'_>,
    batch: &[Write],
) -> Result<(), StoreError> {
    let mut creates = Vec::new();
    let mut appends = Vec::new();
    let mut rest = Vec::new();
    for write in batch {
        match write {
            Write::Create(record) => creates.push(record),
            Write::Append { id, entry } => appends.push((id.as_str(), entry)),
            other => rest.push(other),
        }
    }
    if !creates.is_empty() {
        create_all(tx, prepared, stamp, &creates)?;
    }
    if !appends.is_empty() {
        append_all(tx, prepared, stamp, &appends)?;
        if stamp.is_some() {
            notify_sent(tx, prepared, &appends)?;
        }
    }
    for write in rest {
        apply(tx, prepared, stamp, write)?;
    }
    Ok(())
}

/// Tell the cluster's nodes which sessions got a message (delivered at commit): the node
/// running the receiving end may be another one.
fn notify_sent(
    tx: &mut Transaction<'_>,
    prepared: &mut Prepared,
    appends: &[(&str, &Entry)],
) -> Result<(), StoreError> {
    let sessions: Vec<&str> = appends
        .iter()
        .filter(|(_, e)| e.call == "send")
        .filter_map(|(_, e)| e.args.get("session")?.as_str())
        .collect();
    if sessions.is_empty() {
        return Ok(());
    }
    let sql = prepared.get(
        tx,
        "SELECT pg_notify('sluice_sent', s) FROM unnest($1::text[]) AS s",
    )?;
    tx.query(&sql, &[&sessions]).map_err(db)?;
    Ok(())
}

/// One write inside an open transaction, with statements prepared once per connection.
fn apply(
    tx: &mut Transaction<'_>,
    prepared: &mut Prepared,
    stamp: Stamp<'_>,
    write: &Write,
) -> Result<(), StoreError> {
    match write {
        Write::Create(r) => create_all(tx, prepared, stamp, &[r])?,
        Write::Append { id, entry } => append_all(tx, prepared, stamp, &[(id.as_str(), entry)])?,
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
            if stamp.is_some() {
                // Other nodes of the cluster may have waiters on the topic.
                let sql = prepared.get(tx, "SELECT pg_notify('sluice_published', $1)")?;
                tx.execute(&sql, &[&event.topic]).map_err(db)?;
            }
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
        Write::PeerOut(m) | Write::PeerIn(m) => {
            let (kind, body) = peer_row(&m.body);
            let table = if matches!(write, Write::PeerOut(_)) {
                "INSERT INTO peer_outbox (peer, session, side, seq, kind, body) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING"
            } else {
                "INSERT INTO peer_inbox (peer, session, side, seq, kind, body) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING"
            };
            let sql = prepared.get(tx, table)?;
            let seq = m.seq as i64;
            tx.execute(
                &sql,
                &[&m.peer, &m.session, &m.to.as_str(), &seq, &kind, &body],
            )
            .map_err(db)?;
            if stamp.is_some() && matches!(write, Write::PeerIn(_)) {
                // The receiving flow may run on another node of the cluster.
                let sql = prepared.get(tx, "SELECT pg_notify('sluice_sent', $1)")?;
                tx.execute(&sql, &[&m.session]).map_err(db)?;
            }
        }
        Write::PeerSent { session, to, seq } => {
            let sql = prepared.get(
                tx,
                "DELETE FROM peer_outbox WHERE session = $1 AND side = $2 AND seq = $3",
            )?;
            tx.execute(&sql, &[session, &to.as_str(), &(*seq as i64)])
                .map_err(db)?;
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

fn create_all(
    tx: &mut Transaction<'_>,
    prepared: &mut Prepared,
    stamp: Stamp<'_>,
    records: &[&InstanceRecord],
) -> Result<(), StoreError> {
    let now = crate::model::unix_ms();
    let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
    let flows: Vec<&str> = records.iter().map(|r| r.flow.as_str()).collect();
    let components: Vec<&str> = records.iter().map(|r| r.component.as_str()).collect();
    let inputs: Vec<&[u8]> = records.iter().map(|r| r.input.0.as_slice()).collect();
    let statuses: Vec<&str> = records.iter().map(|r| r.status.as_str()).collect();
    let metas: Vec<&str> = records.iter().map(|r| r.meta.as_str()).collect();
    let parents: Vec<Option<&str>> = records.iter().map(|r| r.parent.as_deref()).collect();
    let created: Vec<i64> = records
        .iter()
        .map(|r| r.created_ms.unwrap_or(now) as i64)
        .collect();
    // In the batch's order (`WITH ORDINALITY`), as one insert after another would be.
    let sql = prepared.get(
        tx,
        "INSERT INTO instances (id, flow, component, input, status, meta, parent, created_ms, owner)
         SELECT t.id, t.flow, t.component, t.input, t.status, t.meta, t.parent, t.created_ms, $9::TEXT
         FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::BYTEA[], $5::TEXT[], $6::TEXT[],
            $7::TEXT[], $8::BIGINT[]) WITH ORDINALITY
            AS t(id, flow, component, input, status, meta, parent, created_ms, n)
         ORDER BY t.n
         ON CONFLICT (id) DO NOTHING",
    )?;
    tx.execute(
        &sql,
        &[
            &ids,
            &flows,
            &components,
            &inputs,
            &statuses,
            &metas,
            &parents,
            &created,
            &stamp,
        ],
    )
    .map_err(db)?;
    Ok(())
}

fn append_all(
    tx: &mut Transaction<'_>,
    prepared: &mut Prepared,
    stamp: Stamp<'_>,
    appends: &[(&str, &Entry)],
) -> Result<(), StoreError> {
    let mut ids: Vec<&str> = appends.iter().map(|(id, _)| *id).collect();
    ids.sort_unstable();
    ids.dedup();
    let ends = prepared.get(
        tx,
        "SELECT id, MAX(position) FROM journal WHERE id = ANY($1) GROUP BY id",
    )?;
    let mut next: HashMap<String, u64> = HashMap::new();
    for row in tx.query(&ends, &[&ids]).map_err(db)? {
        let id: String = row.try_get(0).map_err(db)?;
        let last: i64 = row.try_get(1).map_err(db)?;
        next.insert(id, last as u64 + 1);
    }
    for (id, entry) in appends {
        let expected = next.entry(id.to_string()).or_insert(0);
        if entry.position != *expected {
            return Err(StoreError::OutOfOrder {
                id: id.to_string(),
                expected: *expected,
                got: entry.position,
            });
        }
        *expected += 1;
    }
    let ids: Vec<&str> = appends.iter().map(|(id, _)| *id).collect();
    let positions: Vec<i64> = appends.iter().map(|(_, e)| e.position as i64).collect();
    let calls: Vec<&str> = appends.iter().map(|(_, e)| e.call.as_str()).collect();
    let args: Vec<String> = appends.iter().map(|(_, e)| e.args.to_string()).collect();
    let results: Vec<String> = appends.iter().map(|(_, e)| e.result.to_string()).collect();
    let at: Vec<Option<i64>> = appends
        .iter()
        .map(|(_, e)| e.at_ms.map(|ms| ms as i64))
        .collect();
    let sql = prepared.get(
        tx,
        "INSERT INTO journal (id, position, call, args, result, at_ms, node)
         SELECT t.id, t.position, t.call, t.args, t.result, t.at_ms, $7::TEXT
         FROM unnest($1::TEXT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::BIGINT[])
            AS t(id, position, call, args, result, at_ms)",
    )?;
    tx.execute(
        &sql,
        &[&ids, &positions, &calls, &args, &results, &at, &stamp],
    )
    .map_err(db)?;
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
