//! The shared journal's tables, versioned in `mend_schema`.
//!
//! `MIGRATIONS[i]` takes the database from version `i` to `i + 1`. All
//! pending ones run in one transaction under a transaction advisory lock, so
//! two controllers connecting at once migrate once. Never edit a released
//! migration: append a new one. Times are the server's (`now()`), so
//! controllers with wrong clocks still agree on order.

use tokio_postgres::Client;

use super::{LOCK_CLASS, PgError, db};

/// The schema version this build writes and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The advisory key (second half) that serialises migrations.
const MIGRATION_KEY: i32 = 0;

const MIGRATIONS: &[&str] = &[
    // 0 -> 1
    r#"
    CREATE TABLE mend_fleet_lease (
        runbook     text        PRIMARY KEY,
        token       bigint      NOT NULL CHECK (token > 0),
        controller  text        NOT NULL,
        pid         integer     NOT NULL,
        fleet_run   text        NOT NULL,
        since       timestamptz NOT NULL,
        backend_pid integer     NOT NULL
    );
    CREATE TABLE mend_fleet_runs (
        id              text        PRIMARY KEY,
        runbook         text        NOT NULL,
        runbook_version text        NOT NULL,
        runbook_sha256  text        NOT NULL,
        controller      text        NOT NULL,
        pid             integer     NOT NULL,
        operator        text        NOT NULL,
        token           bigint      NOT NULL,
        status          text        NOT NULL CHECK (status IN ('running', 'committed',
                            'failed', 'stopped', 'rolled-back')),
        started_at      timestamptz NOT NULL DEFAULT now(),
        finished_at     timestamptz,
        error           text
    );
    CREATE INDEX mend_fleet_runs_by_started ON mend_fleet_runs (started_at);
    CREATE TABLE mend_fleet_hosts (
        fleet_run   text        NOT NULL REFERENCES mend_fleet_runs (id) ON DELETE CASCADE,
        host        text        NOT NULL,
        batch       integer     NOT NULL CHECK (batch >= 0),
        run_id      text,
        status      text        NOT NULL CHECK (status IN ('running', 'committed',
                            'failed', 'rolled-back', 'unreachable', 'skipped')),
        started_at  timestamptz NOT NULL DEFAULT now(),
        finished_at timestamptz,
        error       text,
        PRIMARY KEY (fleet_run, host)
    );
    CREATE INDEX mend_fleet_hosts_by_host ON mend_fleet_hosts (host, started_at);
    -- A host's run as its own journal last said; shipped again, replaced.
    CREATE TABLE mend_host_runs (
        run_id          text        PRIMARY KEY,
        host            text        NOT NULL,
        fleet_run       text,
        runbook         text        NOT NULL,
        runbook_version text        NOT NULL,
        status          text        NOT NULL,
        started_at_ms   bigint      NOT NULL,
        finished_at_ms  bigint,
        error           text,
        shipped_at      timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX mend_host_runs_by_fleet_run ON mend_host_runs (fleet_run);
    -- Immutable facts of a host's run (events, actions as done), keyed by
    -- what the host's journal numbers them: shipping again adds nothing.
    CREATE TABLE mend_run_records (
        run_id     text        NOT NULL,
        seq        bigint      NOT NULL,
        host       text        NOT NULL,
        fleet_run  text,
        kind       text        NOT NULL,
        body       jsonb       NOT NULL,
        shipped_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (run_id, seq)
    );
    CREATE TABLE mend_fleet_events (
        id         bigserial   PRIMARY KEY,
        at         timestamptz NOT NULL DEFAULT now(),
        runbook    text        NOT NULL,
        fleet_run  text,
        controller text        NOT NULL,
        kind       text        NOT NULL,
        message    text        NOT NULL
    );
    "#,
    // 1 -> 2: the shared journal's change sequence, so a viewer follows a
    // host's run as it is shipped (`mend serve --journal`'s event stream).
    // Every row a shipment inserts or changes takes the next `change`,
    // allocated under a transaction advisory lock (see `ship`), so changes
    // become visible in their order. Rows shipped before have none.
    r#"
    CREATE SEQUENCE mend_change_seq;
    ALTER TABLE mend_run_records ADD COLUMN change bigint;
    ALTER TABLE mend_host_runs ADD COLUMN change bigint;
    CREATE INDEX mend_run_records_by_change ON mend_run_records (change);
    CREATE INDEX mend_run_records_by_run_change ON mend_run_records (run_id, change);
    CREATE INDEX mend_host_runs_by_change ON mend_host_runs (change);
    -- Names this journal in event ids: a viewer resuming with another
    -- journal's id starts over.
    CREATE TABLE mend_journal_id (id text NOT NULL);
    INSERT INTO mend_journal_id
        SELECT md5(random()::text || clock_timestamp()::text || pg_backend_pid()::text);
    "#,
];

/// Brings the database to [`SCHEMA_VERSION`]; refuses one that is newer.
pub(super) async fn migrate(client: &Client) -> Result<(), PgError> {
    // Simple queries: no prepared statement, nothing a pooler could split.
    let doing = "migrating the schema";
    client
        .batch_execute(&format!(
            "BEGIN;
             SELECT pg_advisory_xact_lock({LOCK_CLASS}, {MIGRATION_KEY});
             CREATE TABLE IF NOT EXISTS mend_schema (
                 version    bigint      PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now()
             );"
        ))
        .await
        .map_err(|e| db(doing, e))?;
    let result = async {
        let row = client
            .query_one("SELECT coalesce(max(version), 0) FROM mend_schema", &[])
            .await
            .map_err(|e| db(doing, e))?;
        let found: i64 = row.get(0);
        if found > SCHEMA_VERSION {
            return Err(PgError::NewerSchema {
                found,
                known: SCHEMA_VERSION,
            });
        }
        for (from, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            client.batch_execute(sql).await.map_err(|e| db(doing, e))?;
            client
                .execute(
                    "INSERT INTO mend_schema (version) VALUES ($1)",
                    &[&(from as i64 + 1)],
                )
                .await
                .map_err(|e| db(doing, e))?;
        }
        Ok(())
    }
    .await;
    let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
    client.batch_execute(end).await.map_err(|e| db(doing, e))?;
    result
}
