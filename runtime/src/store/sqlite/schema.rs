//! The SQLite store's schema: its migrations, in order, and how they are applied.

use rusqlite::{Connection, TransactionBehavior};

use super::db;
use crate::store::StoreError;

/// Schema migrations, in order; `user_version` counts those applied.
pub(super) const MIGRATIONS: &[&str] = &[
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
    // 5: events kept for the event triggers of their topic until dispatched; named
    // cursors (each schedule's last decided fire).
    "CREATE TABLE outbox (id TEXT PRIMARY KEY, topic TEXT NOT NULL, payload BLOB NOT NULL);
     CREATE TABLE cursors (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
    // 6: when each journaled call was made, in unix ms (NULL for older entries).
    "ALTER TABLE journal ADD COLUMN at_ms INTEGER;",
    // 7: nodes sharing one database (used by the PostgreSQL store; a SQLite file has one
    // node and leaves them empty): who runs an instance, who wrote an entry.
    "CREATE TABLE nodes (
        name TEXT PRIMARY KEY, epoch INTEGER NOT NULL, state TEXT NOT NULL,
        address TEXT, joined_ms INTEGER NOT NULL, heartbeat_ms INTEGER NOT NULL,
        lease_until_ms INTEGER NOT NULL
     );
     ALTER TABLE instances ADD COLUMN owner TEXT;
     ALTER TABLE journal ADD COLUMN node TEXT;
     ALTER TABLE outbox ADD COLUMN node TEXT;",
    // 8: sessions with flows on other nodes: messages kept for a peer until it has them,
    // and messages from peers, each once by (session, receiving side, sequence number).
    "CREATE TABLE peer_outbox (
        peer TEXT NOT NULL, session TEXT NOT NULL, side TEXT NOT NULL, seq INTEGER NOT NULL,
        kind TEXT NOT NULL, body BLOB NOT NULL, PRIMARY KEY (session, side, seq)
     );
     CREATE INDEX peer_outbox_by_peer ON peer_outbox(peer);
     CREATE TABLE peer_inbox (
        peer TEXT NOT NULL, session TEXT NOT NULL, side TEXT NOT NULL, seq INTEGER NOT NULL,
        kind TEXT NOT NULL, body BLOB NOT NULL, PRIMARY KEY (session, side, seq)
     );",
    // 9: the instance an event was handed to, before its taking is journaled (several
    // nodes may offer one event; the first claim wins).
    "ALTER TABLE events ADD COLUMN taker TEXT;",
];

/// Apply the migrations not yet applied, all in one write transaction: another process
/// opening the same file at once (an operator command) waits, then finds them applied.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
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
