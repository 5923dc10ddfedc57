//! The SQLite store reading rows it did not write: an `instances` row and journal rows
//! with any values of any SQLite type, read through every read of the store. A bad row is
//! a [`StoreError::Decode`] naming it, never a panic, and never mistaken for a database
//! failure (that would stop the node rather than hold one instance).

use std::cell::RefCell;

use arbitrary::Unstructured;
use rusqlite::types::Value as Sql;

use super::SqliteStore;
use crate::store::{Entry, InstanceRecord, JournalStore, ListQuery, Status, StoreError, Write};

const ID: &str = "fuzzed";
const STATUSES: [Status; 5] = [
    Status::Running,
    Status::Completed,
    Status::Failed,
    Status::Hospital,
    Status::Cancelled,
];

thread_local! {
    /// One in-memory store per thread, emptied after each input: creating the schema per
    /// input would cost more than the reads under test.
    static STORE: RefCell<Option<SqliteStore>> = const { RefCell::new(None) };
}

/// Write one `instances` row and up to four journal rows of arbitrary values, read them
/// through the store, then empty it.
pub(crate) fn stored_row(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    STORE.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.is_none() {
            *cell = Some(SqliteStore::in_memory().expect("an in-memory store opens"));
        }
        let Some(store) = cell.as_ref() else {
            return Ok(());
        };
        let result = insert_and_read(store, u);
        let conn = store.conn();
        conn.execute_batch("DELETE FROM journal; DELETE FROM instances;")
            .expect("the fuzz store empties");
        result
    })
}

fn insert_and_read(store: &SqliteStore, u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let status = match u.int_in_range(0..=5u8)? {
        i @ 0..=4 => Sql::Text(STATUSES[usize::from(i)].as_str().into()),
        _ => sql_value(u)?,
    };
    let meta = if u.arbitrary()? {
        Sql::Text(r#"{"origin":"subflow","by":"p","priority":"normal","pool":"default"}"#.into())
    } else {
        sql_value(u)?
    };
    let mut row = vec![Sql::Text(ID.into())];
    for column in 1..12 {
        row.push(match column {
            4 => status.clone(),
            5 => meta.clone(),
            _ => sql_value(u)?,
        });
    }
    {
        let conn = store.conn();
        let inserted = conn.execute(
            &format!(
                "INSERT INTO instances ({}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                super::rows::RECORD_COLUMNS
            ),
            rusqlite::params_from_iter(row.iter()),
        );
        if inserted.is_err() {
            return Ok(()); // a NOT NULL column given NULL: SQLite refuses, nothing to read
        }
        for position in 0..u.int_in_range(0..=4u8)? {
            let position = if u.arbitrary()? {
                Sql::Integer(i64::from(position))
            } else {
                sql_value(u)?
            };
            let (call, args, result, at_ms) =
                (sql_value(u)?, json_value(u)?, json_value(u)?, sql_value(u)?);
            // A duplicate position or NULL column is refused by SQLite: fine.
            let _ = conn.execute(
                "INSERT INTO journal (id, position, call, args, result, at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                rusqlite::params![ID, position, call, args, result, at_ms],
            );
        }
    }
    read_everything(store);
    Ok(())
}

/// Every read of the store over the fuzzed rows: each answers or fails with `Decode`.
fn read_everything(store: &SqliteStore) {
    let record = decoded("record", store.record(ID)).flatten();
    if let Some(record) = &record {
        assert_eq!(record.id, ID);
        let outcome = record.outcome();
        assert_eq!(outcome.is_some(), record.status.is_final());
        let query = ListQuery {
            limit: 10,
            ..ListQuery::default()
        };
        let _ = query.matches(record);
    }
    for status in STATUSES {
        let _ = decoded("with_status", store.with_status(status));
    }
    let queries = [
        ListQuery {
            limit: 5,
            ..ListQuery::default()
        },
        ListQuery {
            limit: 5,
            root: Some(ID.into()),
            pool: Some("default".into()),
            parent: Some("p".into()),
            ..ListQuery::default()
        },
    ];
    for query in &queries {
        let _ = decoded("list", store.list(query));
    }
    let _ = decoded("descendants", store.descendants(ID));
    let _ = decoded("descendants", store.descendants("p"));
    let _ = decoded("count_by_flow", store.count_by_flow());
    if let Some(entries) = decoded("journal", store.journal(ID)) {
        journal_round_trips(store, record.as_ref(), &entries);
    }
}

/// `result` when it answered; `None` when the row could not be decoded. Any other error
/// (the database failing) is a bug: the fuzzed database is healthy.
fn decoded<T>(read: &str, result: Result<T, StoreError>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(StoreError::Decode(why)) => {
            assert!(!why.is_empty(), "{read}: a decode error says nothing");
            None
        }
        Err(e) => panic!("{read} of a fuzzed row failed as a database error: {e}"),
    }
}

/// Entries read back from the store, appended to another instance, read back the same.
fn journal_round_trips(store: &SqliteStore, record: Option<&InstanceRecord>, entries: &[Entry]) {
    let positions_in_order = entries
        .iter()
        .enumerate()
        .all(|(i, e)| e.position == i as u64);
    if !positions_in_order {
        return;
    }
    let copy = "copy";
    let created = InstanceRecord::new(copy, "f", "c", b"", "{}".into());
    let mut batch = vec![Write::Create(created)];
    batch.extend(entries.iter().map(|entry| Write::Append {
        id: copy.into(),
        entry: entry.clone(),
    }));
    store
        .write(&batch)
        .expect("entries read back can be appended");
    let again = store.journal(copy).expect("appended entries read back");
    assert_eq!(again, entries, "journal entries did not round-trip");
    if record.is_some_and(|r| r.status == Status::Running) {
        assert!(store.with_status(Status::Running).is_ok());
    }
}

/// Any SQLite value.
fn sql_value(u: &mut Unstructured<'_>) -> arbitrary::Result<Sql> {
    Ok(match u.int_in_range(0..=4u8)? {
        0 => Sql::Null,
        1 => Sql::Integer(u.arbitrary()?),
        2 => Sql::Real(u.arbitrary()?),
        3 => Sql::Text(u.arbitrary()?),
        _ => Sql::Blob(u.arbitrary()?),
    })
}

/// A journal column as the store writes it (JSON text) or as anything else.
fn json_value(u: &mut Unstructured<'_>) -> arbitrary::Result<Sql> {
    if u.arbitrary()? {
        return sql_value(u);
    }
    let text: String = u.arbitrary()?;
    Ok(Sql::Text(
        match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(value) => value.to_string(),
            Err(_) => serde_json::Value::String(text).to_string(),
        },
    ))
}
