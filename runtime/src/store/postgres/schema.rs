//! The PostgreSQL store's schema: the SQLite store's migrations, one for one, in
//! PostgreSQL's dialect, so that a schema version means the same on both; and how they are
//! applied (one transaction, under an advisory lock, so nodes starting together agree).

use postgres::Client;

use super::{db, redacted};
use crate::store::StoreError;

/// Schema migrations, in order; `sluice_schema.version` counts those applied. Entry `n`
/// makes what SQLite's migration `n` makes (see `store::sqlite::schema`).
pub(super) const MIGRATIONS: &[&str] = &[
    "CREATE TABLE instances (
        seq BIGSERIAL UNIQUE,
        id TEXT PRIMARY KEY,
        flow TEXT NOT NULL,
        component TEXT NOT NULL,
        input BYTEA NOT NULL,
        status TEXT NOT NULL,
        output BYTEA,
        created BIGINT NOT NULL DEFAULT (EXTRACT(EPOCH FROM now())::BIGINT)
     );
     CREATE TABLE journal (
        id TEXT NOT NULL REFERENCES instances(id),
        position BIGINT NOT NULL,
        call TEXT NOT NULL,
        args TEXT NOT NULL,
        result TEXT NOT NULL,
        PRIMARY KEY (id, position)
     );
     CREATE INDEX instances_unfinished ON instances(status) WHERE status = 'running';",
    // 2: what recovery, retries, the hospital and version pinning need.
    "ALTER TABLE instances ADD COLUMN meta TEXT NOT NULL DEFAULT '{}';
     ALTER TABLE instances ADD COLUMN message TEXT;
     ALTER TABLE instances ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
     CREATE INDEX instances_by_status ON instances(status);
     CREATE TABLE components (hash TEXT PRIMARY KEY, bytes BYTEA NOT NULL);",
    // 3: events published and not yet taken.
    "CREATE TABLE events (
        seq BIGSERIAL UNIQUE, id TEXT PRIMARY KEY, topic TEXT NOT NULL, payload BYTEA NOT NULL
     );",
    // 4: parents (for cancellation), and when instances were recorded and ended. (SQLite's
    // backfill of `parent` from the start meta is left out: no PostgreSQL store predates
    // this version, so there is never a row to backfill.)
    "ALTER TABLE instances ADD COLUMN parent TEXT;
     ALTER TABLE instances ADD COLUMN created_ms BIGINT;
     ALTER TABLE instances ADD COLUMN ended_ms BIGINT;
     UPDATE instances SET created_ms = created * 1000;
     CREATE INDEX instances_by_parent ON instances(parent) WHERE parent IS NOT NULL;",
    // 5: events kept for event triggers until dispatched; named cursors.
    "CREATE TABLE outbox (
        seq BIGSERIAL UNIQUE, id TEXT PRIMARY KEY, topic TEXT NOT NULL, payload BYTEA NOT NULL
     );
     CREATE TABLE cursors (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
    // 6: when each journaled call was made, in unix ms (NULL for older entries).
    "ALTER TABLE journal ADD COLUMN at_ms BIGINT;",
    // 7: nodes sharing the database: each one's lease (in the server's clock, the one clock
    // every node agrees on) and incarnation (`epoch`, which fences a node's older self);
    // who runs each instance, who wrote each entry, who dispatches each kept event.
    "CREATE TABLE nodes (
        name TEXT PRIMARY KEY, epoch INTEGER NOT NULL, state TEXT NOT NULL,
        address TEXT, joined_ms BIGINT NOT NULL, heartbeat_ms BIGINT NOT NULL,
        lease_until TIMESTAMPTZ NOT NULL
     );
     ALTER TABLE instances ADD COLUMN owner TEXT;
     ALTER TABLE journal ADD COLUMN node TEXT;
     ALTER TABLE outbox ADD COLUMN node TEXT;
     CREATE INDEX instances_running_by_owner ON instances(owner) WHERE status = 'running';
     CREATE FUNCTION sluice_notify_ended() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_notify('sluice_ended', NEW.id); RETURN NULL; END $$;
     CREATE TRIGGER instances_ended AFTER INSERT OR UPDATE OF status ON instances
        FOR EACH ROW WHEN (NEW.status IN ('completed', 'failed', 'cancelled'))
        EXECUTE FUNCTION sluice_notify_ended();",
    // 8: sessions with flows on other nodes (see SQLite's 8); `n` keeps insertion order.
    "CREATE TABLE peer_outbox (
        n BIGSERIAL UNIQUE, peer TEXT NOT NULL, session TEXT NOT NULL, side TEXT NOT NULL,
        seq BIGINT NOT NULL, kind TEXT NOT NULL, body BYTEA NOT NULL,
        PRIMARY KEY (session, side, seq)
     );
     CREATE INDEX peer_outbox_by_peer ON peer_outbox(peer, n);
     CREATE TABLE peer_inbox (
        peer TEXT NOT NULL, session TEXT NOT NULL, side TEXT NOT NULL, seq BIGINT NOT NULL,
        kind TEXT NOT NULL, body BYTEA NOT NULL, PRIMARY KEY (session, side, seq)
     );",
    // 9: see SQLite's 9.
    "ALTER TABLE events ADD COLUMN taker TEXT;
     CREATE INDEX events_by_topic ON events(topic, seq);",
];

/// The advisory lock key that serializes migrations between nodes ("sluice" in ASCII).
const MIGRATION_LOCK: i64 = 0x736c_7569_6365;

/// The schema version of the database, 0 when it holds no Sluice schema yet.
pub(super) fn version(client: &mut Client) -> Result<i64, StoreError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('sluice_schema') IS NOT NULL", &[])
        .map_err(db)?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let row = client
        .query_opt("SELECT version FROM sluice_schema", &[])
        .map_err(db)?;
    Ok(row.map_or(0, |r| i64::from(r.get::<_, i32>(0))))
}

/// Apply the migrations not yet applied, in one transaction under an advisory lock; a
/// database with a newer schema than this build's is refused untouched.
pub(super) fn migrate(client: &mut Client, url: &str) -> Result<(), StoreError> {
    let supported = MIGRATIONS.len() as i64;
    let mut tx = client.transaction().map_err(db)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(db)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS sluice_schema (version INTEGER NOT NULL)")
        .map_err(db)?;
    let found = tx
        .query_opt("SELECT version FROM sluice_schema", &[])
        .map_err(db)?
        .map(|r| i64::from(r.get::<_, i32>(0)));
    let version = found.unwrap_or(0);
    if version > supported {
        return Err(StoreError::TooNew {
            path: redacted(url).into(),
            found: version,
            supported,
        });
    }
    if version == supported {
        return tx.commit().map_err(db);
    }
    for sql in MIGRATIONS.iter().skip(version.max(0) as usize) {
        tx.batch_execute(sql).map_err(db)?;
    }
    let new = supported as i32;
    if found.is_some() {
        tx.execute("UPDATE sluice_schema SET version = $1", &[&new])
    } else {
        tx.execute("INSERT INTO sluice_schema (version) VALUES ($1)", &[&new])
    }
    .map_err(db)?;
    tx.commit().map_err(db)
}
