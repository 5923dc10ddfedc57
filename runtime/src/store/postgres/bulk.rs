//! A batch applied in few round trips: its instance records in one statement, its journal
//! entries in one more (after one query for where each journal stands), the rest one by
//! one. Inside the transaction the order does not show: records go first because entries
//! refer to them, and entries touch nothing but their journals.

use std::collections::HashMap;

use postgres::Transaction;

use super::bridge::Prepared;
use super::db;
use super::rows::{Stamp, apply};
use crate::store::{Entry, InstanceRecord, StoreError, Write};

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
    match creates.as_slice() {
        [] => {}
        [one] => apply(tx, prepared, stamp, &Write::Create((*one).clone()))?,
        many => create_all(tx, prepared, stamp, many)?,
    }
    if !appends.is_empty() {
        append_all(tx, prepared, stamp, &appends)?;
    }
    for write in rest {
        apply(tx, prepared, stamp, write)?;
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
