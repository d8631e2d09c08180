//! The journal's SQL schema, versioned with `PRAGMA user_version`.
//!
//! `MIGRATIONS[i]` takes a journal from version `i` to version `i + 1`; all
//! pending migrations and the new `user_version` are applied in one
//! transaction. Never edit a released migration: append a new one.

use std::path::Path;

use anyhow::{Context, Result, bail};
use rusqlite::{Connection, Transaction, TransactionBehavior};

/// The schema version this build writes and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The version that brought the change log (`changes`, `journal_meta`).
pub const CHANGES_VERSION: i64 = 5;

const MIGRATIONS: &[&str] = &[
    // 0 -> 1
    r#"
    CREATE TABLE runs (
        id              TEXT    NOT NULL PRIMARY KEY,
        runbook_name    TEXT    NOT NULL,
        runbook_version TEXT    NOT NULL,
        runbook_path    TEXT    NOT NULL,
        runbook_sha256  TEXT    NOT NULL,
        mode            TEXT    NOT NULL CHECK (mode IN ('run', 'rehearse')),
        status          TEXT    NOT NULL CHECK (status IN ('running', 'rolling-back',
                            'committed', 'failed', 'rolled-back', 'rollback-failed')),
        params_json     TEXT    NOT NULL,
        now             INTEGER NOT NULL,
        started_at      INTEGER NOT NULL,
        finished_at     INTEGER,
        error           TEXT
    ) STRICT;
    CREATE INDEX runs_by_started ON runs (started_at);
    CREATE INDEX runs_by_runbook ON runs (runbook_name, started_at);

    CREATE TABLE steps (
        run_id           TEXT    NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        idx              INTEGER NOT NULL CHECK (idx >= 0),
        step_id          TEXT    NOT NULL,
        uses             TEXT    NOT NULL,
        component_sha256 TEXT    NOT NULL,
        status           TEXT    NOT NULL CHECK (status IN ('pending', 'planned',
                             'applying', 'applied', 'verified', 'failed', 'undone')),
        plan_json        TEXT,
        started_at       INTEGER NOT NULL,
        finished_at      INTEGER,
        error            TEXT,
        PRIMARY KEY (run_id, idx)
    ) STRICT;

    CREATE TABLE actions (
        run_id      TEXT    NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        step_idx    INTEGER NOT NULL CHECK (step_idx >= 0),
        seq         INTEGER NOT NULL CHECK (seq >= 0),
        action_json TEXT    NOT NULL,
        reversible  INTEGER NOT NULL CHECK (reversible IN (0, 1)),
        state       TEXT    NOT NULL CHECK (state IN ('intended', 'done', 'undoing',
                        'undone', 'failed')),
        undo_json   TEXT,
        intended_at INTEGER NOT NULL,
        done_at     INTEGER,
        undone_at   INTEGER,
        error       TEXT,
        PRIMARY KEY (run_id, step_idx, seq)
    ) STRICT;

    CREATE TABLE events (
        id       INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id   TEXT    NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        step_idx INTEGER CHECK (step_idx >= 0),
        at       INTEGER NOT NULL,
        level    TEXT    NOT NULL,
        message  TEXT    NOT NULL
    ) STRICT;
    CREATE INDEX events_by_run ON events (run_id, at, id);
    "#,
    // 2: actions keyed by their primary key alone (WITHOUT ROWID): one
    // b-tree to write per action instead of a table and an index. A cull of
    // 50,000 files journals 50,000 rows twice; this halves the pages touched.
    r#"
    CREATE TABLE actions_v2 (
        run_id      TEXT    NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        step_idx    INTEGER NOT NULL CHECK (step_idx >= 0),
        seq         INTEGER NOT NULL CHECK (seq >= 0),
        action_json TEXT    NOT NULL,
        reversible  INTEGER NOT NULL CHECK (reversible IN (0, 1)),
        state       TEXT    NOT NULL CHECK (state IN ('intended', 'done', 'undoing',
                        'undone', 'failed')),
        undo_json   TEXT,
        intended_at INTEGER NOT NULL,
        done_at     INTEGER,
        undone_at   INTEGER,
        error       TEXT,
        PRIMARY KEY (run_id, step_idx, seq)
    ) STRICT, WITHOUT ROWID;
    INSERT INTO actions_v2 SELECT run_id, step_idx, seq, action_json, reversible, state,
        undo_json, intended_at, done_at, undone_at, error FROM actions;
    DROP TABLE actions;
    ALTER TABLE actions_v2 RENAME TO actions;
    "#,
    // 3: a checksum in every run, step and action row (`sum`), kept by
    // triggers, so a flipped bit is found before a resume acts on it
    // (integrity.rs; `mend_row_sum` is registered on every connection).
    r#"
    ALTER TABLE runs ADD COLUMN sum INTEGER;
    ALTER TABLE steps ADD COLUMN sum INTEGER;
    ALTER TABLE actions ADD COLUMN sum INTEGER;
    UPDATE runs SET sum = mend_row_sum(id, runbook_name, runbook_version, runbook_path, runbook_sha256, mode, status, params_json, now, started_at, finished_at, error);
    CREATE TRIGGER runs_sum_insert AFTER INSERT ON runs BEGIN
        UPDATE runs SET sum = mend_row_sum(NEW.id, NEW.runbook_name, NEW.runbook_version, NEW.runbook_path, NEW.runbook_sha256, NEW.mode, NEW.status, NEW.params_json, NEW.now, NEW.started_at, NEW.finished_at, NEW.error)
        WHERE id = NEW.id;
    END;
    CREATE TRIGGER runs_sum_update AFTER UPDATE OF id, runbook_name, runbook_version, runbook_path, runbook_sha256, mode, status, params_json, now, started_at, finished_at, error ON runs BEGIN
        UPDATE runs SET sum = mend_row_sum(NEW.id, NEW.runbook_name, NEW.runbook_version, NEW.runbook_path, NEW.runbook_sha256, NEW.mode, NEW.status, NEW.params_json, NEW.now, NEW.started_at, NEW.finished_at, NEW.error)
        WHERE id = NEW.id;
    END;
    UPDATE steps SET sum = mend_row_sum(run_id, idx, step_id, uses, component_sha256, status, plan_json, started_at, finished_at, error);
    CREATE TRIGGER steps_sum_insert AFTER INSERT ON steps BEGIN
        UPDATE steps SET sum = mend_row_sum(NEW.run_id, NEW.idx, NEW.step_id, NEW.uses, NEW.component_sha256, NEW.status, NEW.plan_json, NEW.started_at, NEW.finished_at, NEW.error)
        WHERE run_id = NEW.run_id AND idx = NEW.idx;
    END;
    CREATE TRIGGER steps_sum_update AFTER UPDATE OF run_id, idx, step_id, uses, component_sha256, status, plan_json, started_at, finished_at, error ON steps BEGIN
        UPDATE steps SET sum = mend_row_sum(NEW.run_id, NEW.idx, NEW.step_id, NEW.uses, NEW.component_sha256, NEW.status, NEW.plan_json, NEW.started_at, NEW.finished_at, NEW.error)
        WHERE run_id = NEW.run_id AND idx = NEW.idx;
    END;
    UPDATE actions SET sum = mend_row_sum(run_id, step_idx, seq, action_json, reversible, state, undo_json, intended_at, done_at, undone_at, error);
    CREATE TRIGGER actions_sum_insert AFTER INSERT ON actions BEGIN
        UPDATE actions SET sum = mend_row_sum(NEW.run_id, NEW.step_idx, NEW.seq, NEW.action_json, NEW.reversible, NEW.state, NEW.undo_json, NEW.intended_at, NEW.done_at, NEW.undone_at, NEW.error)
        WHERE run_id = NEW.run_id AND step_idx = NEW.step_idx AND seq = NEW.seq;
    END;
    CREATE TRIGGER actions_sum_update AFTER UPDATE OF run_id, step_idx, seq, action_json, reversible, state, undo_json, intended_at, done_at, undone_at, error ON actions BEGIN
        UPDATE actions SET sum = mend_row_sum(NEW.run_id, NEW.step_idx, NEW.seq, NEW.action_json, NEW.reversible, NEW.state, NEW.undo_json, NEW.intended_at, NEW.done_at, NEW.undone_at, NEW.error)
        WHERE run_id = NEW.run_id AND step_idx = NEW.step_idx AND seq = NEW.seq;
    END;
    "#,
    // 4: a step's actions are rows from the moment it is planned (state
    // `planned`, no intent time yet), so its saved plan no longer holds a
    // second copy of every action: a path is journaled once.
    r#"
    CREATE TABLE actions_v4 (
        run_id      TEXT    NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        step_idx    INTEGER NOT NULL CHECK (step_idx >= 0),
        seq         INTEGER NOT NULL CHECK (seq >= 0),
        action_json TEXT    NOT NULL,
        reversible  INTEGER NOT NULL CHECK (reversible IN (0, 1)),
        state       TEXT    NOT NULL CHECK (state IN ('planned', 'intended', 'done',
                        'undoing', 'undone', 'failed')),
        undo_json   TEXT,
        intended_at INTEGER,
        done_at     INTEGER,
        undone_at   INTEGER,
        error       TEXT,
        sum         INTEGER,
        PRIMARY KEY (run_id, step_idx, seq)
    ) STRICT, WITHOUT ROWID;
    INSERT INTO actions_v4 SELECT run_id, step_idx, seq, action_json, reversible, state,
        undo_json, intended_at, done_at, undone_at, error, sum FROM actions;
    DROP TABLE actions;
    ALTER TABLE actions_v4 RENAME TO actions;
    CREATE TRIGGER actions_sum_insert AFTER INSERT ON actions BEGIN
        UPDATE actions SET sum = mend_row_sum(NEW.run_id, NEW.step_idx, NEW.seq, NEW.action_json, NEW.reversible, NEW.state, NEW.undo_json, NEW.intended_at, NEW.done_at, NEW.undone_at, NEW.error)
        WHERE run_id = NEW.run_id AND step_idx = NEW.step_idx AND seq = NEW.seq;
    END;
    CREATE TRIGGER actions_sum_update AFTER UPDATE OF run_id, step_idx, seq, action_json, reversible, state, undo_json, intended_at, done_at, undone_at, error ON actions BEGIN
        UPDATE actions SET sum = mend_row_sum(NEW.run_id, NEW.step_idx, NEW.seq, NEW.action_json, NEW.reversible, NEW.state, NEW.undo_json, NEW.intended_at, NEW.done_at, NEW.undone_at, NEW.error)
        WHERE run_id = NEW.run_id AND step_idx = NEW.step_idx AND seq = NEW.seq;
    END;
    "#,
    // 5: the change log (changes.rs): one row per write transaction, its
    // seq taken under the write lock, so readers follow the journal in
    // commit order; and the journal's own id, which prefixes those seqs.
    r#"
    CREATE TABLE changes (
        seq      INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id   TEXT    NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        kind     TEXT    NOT NULL CHECK (kind IN ('run', 'step', 'actions', 'event')),
        step_idx INTEGER CHECK (step_idx >= 0),
        lo       INTEGER,
        hi       INTEGER,
        at       INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX changes_by_run ON changes (run_id, seq);
    CREATE TABLE journal_meta (id TEXT NOT NULL) STRICT;
    INSERT INTO journal_meta (id) VALUES (lower(hex(randomblob(8))));
    "#,
    // 6: a run may be `held` (`mend run --hold`: verified, not committed).
    // SQLite cannot change a CHECK in place: the table is rebuilt, with
    // foreign keys off (see `migrate`) so its steps and actions stay.
    r#"
    CREATE TABLE runs_v6 (
        id              TEXT    NOT NULL PRIMARY KEY,
        runbook_name    TEXT    NOT NULL,
        runbook_version TEXT    NOT NULL,
        runbook_path    TEXT    NOT NULL,
        runbook_sha256  TEXT    NOT NULL,
        mode            TEXT    NOT NULL CHECK (mode IN ('run', 'rehearse')),
        status          TEXT    NOT NULL CHECK (status IN ('running', 'rolling-back',
                            'committed', 'failed', 'rolled-back', 'rollback-failed', 'held')),
        params_json     TEXT    NOT NULL,
        now             INTEGER NOT NULL,
        started_at      INTEGER NOT NULL,
        finished_at     INTEGER,
        error           TEXT,
        sum             INTEGER
    ) STRICT;
    INSERT INTO runs_v6 SELECT id, runbook_name, runbook_version, runbook_path, runbook_sha256,
        mode, status, params_json, now, started_at, finished_at, error, sum FROM runs;
    DROP TABLE runs;
    ALTER TABLE runs_v6 RENAME TO runs;
    CREATE INDEX runs_by_started ON runs (started_at);
    CREATE INDEX runs_by_runbook ON runs (runbook_name, started_at);
    CREATE TRIGGER runs_sum_insert AFTER INSERT ON runs BEGIN
        UPDATE runs SET sum = mend_row_sum(NEW.id, NEW.runbook_name, NEW.runbook_version, NEW.runbook_path, NEW.runbook_sha256, NEW.mode, NEW.status, NEW.params_json, NEW.now, NEW.started_at, NEW.finished_at, NEW.error)
        WHERE id = NEW.id;
    END;
    CREATE TRIGGER runs_sum_update AFTER UPDATE OF id, runbook_name, runbook_version, runbook_path, runbook_sha256, mode, status, params_json, now, started_at, finished_at, error ON runs BEGIN
        UPDATE runs SET sum = mend_row_sum(NEW.id, NEW.runbook_name, NEW.runbook_version, NEW.runbook_path, NEW.runbook_sha256, NEW.mode, NEW.status, NEW.params_json, NEW.now, NEW.started_at, NEW.finished_at, NEW.error)
        WHERE id = NEW.id;
    END;
    "#,
    // who started a run and where (`started_by`, `host`: shown in its
    // header), and the free space of each write grant before and after it
    // (`grant_space`: the timeline picture). `runs` is rebuilt so the new
    // columns sit before `sum` and are summed like the others (as in 6,
    // with foreign keys off so its steps and actions stay).
    r#"
    CREATE TABLE runs_v7 (
        id              TEXT    NOT NULL PRIMARY KEY,
        runbook_name    TEXT    NOT NULL,
        runbook_version TEXT    NOT NULL,
        runbook_path    TEXT    NOT NULL,
        runbook_sha256  TEXT    NOT NULL,
        mode            TEXT    NOT NULL CHECK (mode IN ('run', 'rehearse')),
        status          TEXT    NOT NULL CHECK (status IN ('running', 'rolling-back',
                            'committed', 'failed', 'rolled-back', 'rollback-failed', 'held')),
        params_json     TEXT    NOT NULL,
        now             INTEGER NOT NULL,
        started_at      INTEGER NOT NULL,
        finished_at     INTEGER,
        error           TEXT,
        started_by      TEXT,
        host            TEXT,
        sum             INTEGER
    ) STRICT;
    INSERT INTO runs_v7 SELECT id, runbook_name, runbook_version, runbook_path, runbook_sha256,
        mode, status, params_json, now, started_at, finished_at, error, NULL, NULL, NULL FROM runs;
    DROP TABLE runs;
    ALTER TABLE runs_v7 RENAME TO runs;
    UPDATE runs SET sum = mend_row_sum(id, runbook_name, runbook_version, runbook_path, runbook_sha256, mode, status, params_json, now, started_at, finished_at, error, started_by, host);
    CREATE INDEX runs_by_started ON runs (started_at);
    CREATE INDEX runs_by_runbook ON runs (runbook_name, started_at);
    CREATE TRIGGER runs_sum_insert AFTER INSERT ON runs BEGIN
        UPDATE runs SET sum = mend_row_sum(NEW.id, NEW.runbook_name, NEW.runbook_version, NEW.runbook_path, NEW.runbook_sha256, NEW.mode, NEW.status, NEW.params_json, NEW.now, NEW.started_at, NEW.finished_at, NEW.error, NEW.started_by, NEW.host)
        WHERE id = NEW.id;
    END;
    CREATE TRIGGER runs_sum_update AFTER UPDATE OF id, runbook_name, runbook_version, runbook_path, runbook_sha256, mode, status, params_json, now, started_at, finished_at, error, started_by, host ON runs BEGIN
        UPDATE runs SET sum = mend_row_sum(NEW.id, NEW.runbook_name, NEW.runbook_version, NEW.runbook_path, NEW.runbook_sha256, NEW.mode, NEW.status, NEW.params_json, NEW.now, NEW.started_at, NEW.finished_at, NEW.error, NEW.started_by, NEW.host)
        WHERE id = NEW.id;
    END;
    CREATE TABLE grant_space (
        run_id     TEXT    NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        grant_name TEXT    NOT NULL,
        moment     TEXT    NOT NULL CHECK (moment IN ('before', 'after')),
        free       INTEGER NOT NULL CHECK (free >= 0),
        at         INTEGER NOT NULL,
        PRIMARY KEY (run_id, grant_name, moment)
    ) STRICT;
    "#,
    // bulk: a batch of removals (up to 2,048 consecutive ones of a step) is
    // one row, not one per path: the actions and their undo data as
    // zstd-compressed JSON lines, with one state, one intent and one done
    // time for the batch (bulk.rs). A cull of 1,000,000 files journaled
    // 476 B a file in row-per-action form. Its checksum trigger runs once
    // per batch, off the per-file hot path.
    r#"
    CREATE TABLE bulk (
        run_id      TEXT    NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        step_idx    INTEGER NOT NULL CHECK (step_idx >= 0),
        lo          INTEGER NOT NULL CHECK (lo >= 0),
        n           INTEGER NOT NULL CHECK (n > 0),
        reversible  INTEGER NOT NULL CHECK (reversible IN (0, 1)),
        state       TEXT    NOT NULL CHECK (state IN ('planned', 'intended', 'done')),
        actions     BLOB    NOT NULL,
        undo        BLOB,
        intended_at INTEGER,
        done_at     INTEGER,
        sum         INTEGER,
        PRIMARY KEY (run_id, step_idx, lo)
    ) STRICT, WITHOUT ROWID;
    CREATE TRIGGER bulk_sum_insert AFTER INSERT ON bulk BEGIN
        UPDATE bulk SET sum = mend_row_sum(NEW.run_id, NEW.step_idx, NEW.lo, NEW.n, NEW.reversible, NEW.state, NEW.actions, NEW.undo, NEW.intended_at, NEW.done_at)
        WHERE run_id = NEW.run_id AND step_idx = NEW.step_idx AND lo = NEW.lo;
    END;
    CREATE TRIGGER bulk_sum_update AFTER UPDATE OF run_id, step_idx, lo, n, reversible, state, actions, undo, intended_at, done_at ON bulk BEGIN
        UPDATE bulk SET sum = mend_row_sum(NEW.run_id, NEW.step_idx, NEW.lo, NEW.n, NEW.reversible, NEW.state, NEW.actions, NEW.undo, NEW.intended_at, NEW.done_at)
        WHERE run_id = NEW.run_id AND step_idx = NEW.step_idx AND lo = NEW.lo;
    END;
    "#,
    // bulk rollback: a rollback undoes a batch as a unit and records it
    // `undone` in one write (bulk.rs), instead of splitting it into a row
    // per action and committing each undo twice. The table is rebuilt for
    // the wider CHECK and `undone_at`. A row's sum is recomputed with the new
    // column only where it matched the old columns: a damaged row stays
    // damaged.
    r#"
    CREATE TABLE bulk_undone (
        run_id      TEXT    NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        step_idx    INTEGER NOT NULL CHECK (step_idx >= 0),
        lo          INTEGER NOT NULL CHECK (lo >= 0),
        n           INTEGER NOT NULL CHECK (n > 0),
        reversible  INTEGER NOT NULL CHECK (reversible IN (0, 1)),
        state       TEXT    NOT NULL CHECK (state IN ('planned', 'intended', 'done', 'undone')),
        actions     BLOB    NOT NULL,
        undo        BLOB,
        intended_at INTEGER,
        done_at     INTEGER,
        undone_at   INTEGER,
        sum         INTEGER,
        PRIMARY KEY (run_id, step_idx, lo)
    ) STRICT, WITHOUT ROWID;
    INSERT INTO bulk_undone (run_id, step_idx, lo, n, reversible, state, actions, undo,
            intended_at, done_at, sum)
        SELECT run_id, step_idx, lo, n, reversible, state, actions, undo, intended_at,
            done_at, sum FROM bulk;
    UPDATE bulk_undone SET sum = mend_row_sum(run_id, step_idx, lo, n, reversible, state, actions, undo, intended_at, done_at, undone_at)
        WHERE sum IS mend_row_sum(run_id, step_idx, lo, n, reversible, state, actions, undo, intended_at, done_at);
    DROP TABLE bulk;
    ALTER TABLE bulk_undone RENAME TO bulk;
    CREATE TRIGGER bulk_sum_insert AFTER INSERT ON bulk BEGIN
        UPDATE bulk SET sum = mend_row_sum(NEW.run_id, NEW.step_idx, NEW.lo, NEW.n, NEW.reversible, NEW.state, NEW.actions, NEW.undo, NEW.intended_at, NEW.done_at, NEW.undone_at)
        WHERE run_id = NEW.run_id AND step_idx = NEW.step_idx AND lo = NEW.lo;
    END;
    CREATE TRIGGER bulk_sum_update AFTER UPDATE OF run_id, step_idx, lo, n, reversible, state, actions, undo, intended_at, done_at, undone_at ON bulk BEGIN
        UPDATE bulk SET sum = mend_row_sum(NEW.run_id, NEW.step_idx, NEW.lo, NEW.n, NEW.reversible, NEW.state, NEW.actions, NEW.undo, NEW.intended_at, NEW.done_at, NEW.undone_at)
        WHERE run_id = NEW.run_id AND step_idx = NEW.step_idx AND lo = NEW.lo;
    END;
    "#,
    // 10: a run's end mark (`Change::End`, kind `end`): followers stop at
    // it, not at the terminal status, after which a commit still writes the
    // free space its purge left. The change log is rebuilt for the wider
    // CHECK, its seqs and AUTOINCREMENT counter kept (a viewer's
    // Last-Event-ID must still mean the same change); every run already
    // over gets its end mark, so old runs read as ended.
    r#"
    CREATE TABLE changes_v10 (
        seq      INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id   TEXT    NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        kind     TEXT    NOT NULL CHECK (kind IN ('run', 'step', 'actions', 'event', 'end')),
        step_idx INTEGER CHECK (step_idx >= 0),
        lo       INTEGER,
        hi       INTEGER,
        at       INTEGER NOT NULL
    ) STRICT;
    INSERT INTO changes_v10 SELECT seq, run_id, kind, step_idx, lo, hi, at FROM changes;
    DELETE FROM sqlite_sequence WHERE name = 'changes_v10';
    INSERT INTO sqlite_sequence (name, seq)
        SELECT 'changes_v10', seq FROM sqlite_sequence WHERE name = 'changes';
    DROP TABLE changes;
    ALTER TABLE changes_v10 RENAME TO changes;
    CREATE INDEX changes_by_run ON changes (run_id, seq);
    INSERT INTO changes (run_id, kind, at)
        SELECT id, 'end', coalesce(finished_at, started_at) FROM runs
        WHERE status NOT IN ('running', 'rolling-back') ORDER BY started_at, id;
    "#,
];

/// The schema the migrations leave, as `sqlite_master` holds it, in the
/// order it was created, plus the rows they insert: a new journal is created
/// from it in one script. Replaying every migration, table rebuilds
/// included, was a third of a short run's time (10 of 30 ms). Generated by
/// the test `current_schema_is_what_the_migrations_leave`, which fails when
/// a new migration makes it stale: regenerate it with
/// `MEND_BLESS=1 cargo test -p mend-journal current_schema`. Until then a
/// new journal replays the migrations (see `current_version`).
const CURRENT: &str = include_str!("schema_current.sql");

/// The version `CURRENT` was generated at, from its first line
/// (`-- schema version N`).
fn current_version() -> Option<i64> {
    CURRENT
        .lines()
        .next()?
        .strip_prefix("-- schema version ")?
        .trim()
        .parse()
        .ok()
}

/// No table, index or trigger yet: a journal just created.
fn is_empty(conn: &Connection) -> rusqlite::Result<bool> {
    conn.query_row("SELECT count(*) = 0 FROM sqlite_master", [], |r| r.get(0))
}

/// The journal's `user_version`.
pub fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

/// Refuses a journal written by a newer build.
pub fn check_version(conn: &Connection, path: &Path) -> Result<i64> {
    let version = user_version(conn)
        .with_context(|| format!("cannot read the schema version of {}", path.display()))?;
    if version > SCHEMA_VERSION {
        bail!(
            "journal {} has schema version {version}, but this build of mend only knows \
             versions up to {SCHEMA_VERSION}; use a newer mend to read it",
            path.display()
        );
    }
    if version < 0 {
        bail!(
            "journal {} has an invalid schema version {version}",
            path.display()
        );
    }
    Ok(version)
}

/// Brings the schema up to `SCHEMA_VERSION` in one immediate transaction
/// (re-checking the version under the write lock, so two processes opening a
/// fresh journal at once do not both create the tables).
pub fn migrate(conn: &Connection, path: &Path) -> Result<()> {
    if check_version(conn, path)? == SCHEMA_VERSION {
        return Ok(());
    }
    // Rebuilding `runs` (6) must not cascade into its steps and actions:
    // foreign keys off for the migration (a no-op inside a transaction, so
    // before it), back on after, and checked.
    let fk: bool = conn.pragma_query_value(None, "foreign_keys", |r| r.get(0))?;
    conn.pragma_update(None, "foreign_keys", false)?;
    let migrated = migrate_tx(conn, path);
    if fk {
        conn.pragma_update(None, "foreign_keys", true)?;
    }
    migrated
}

fn migrate_tx(conn: &Connection, path: &Path) -> Result<()> {
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    let from = check_version(&tx, path)?;
    if from == 0 && is_empty(&tx)? && current_version() == Some(SCHEMA_VERSION) {
        tx.execute_batch(CURRENT)
            .with_context(|| format!("cannot create the schema of journal {}", path.display()))?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        return tx
            .commit()
            .with_context(|| format!("cannot commit the schema of {}", path.display()));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(from as usize) {
        tx.execute_batch(sql).with_context(|| {
            format!(
                "cannot migrate journal {} to schema version {}",
                path.display(),
                i + 1
            )
        })?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    let broken: i64 = tx.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
        r.get(0)
    })?;
    anyhow::ensure!(
        broken == 0,
        "migrating journal {} left {broken} rows without their run",
        path.display()
    );
    tx.commit()
        .with_context(|| format!("cannot commit the schema of {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An in-memory journal brought to `SCHEMA_VERSION` by replaying every
    /// migration, as an old journal is.
    fn migrated_step_by_step() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        crate::integrity::register_functions(&conn).unwrap();
        for sql in MIGRATIONS {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)
            .unwrap();
        conn
    }

    /// `sqlite_master` in creation order, without SQLite's own tables
    /// (`sqlite_sequence` comes with the first AUTOINCREMENT table).
    fn schema_of(conn: &Connection) -> Vec<String> {
        let mut st = conn
            .prepare(
                "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL \
                 AND name NOT LIKE 'sqlite_%' ORDER BY rowid",
            )
            .unwrap();
        st.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    /// Every table with its number of rows.
    fn rows_of(conn: &Connection) -> Vec<(String, i64)> {
        let tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        tables
            .into_iter()
            .filter(|t| t != "sqlite_sequence")
            .map(|t| {
                let n = conn
                    .query_row(&format!("SELECT count(*) FROM \"{t}\""), [], |r| r.get(0))
                    .unwrap();
                (t, n)
            })
            .collect()
    }

    /// What `CURRENT` must hold: the migrated schema, then the one row the
    /// migrations insert into an empty journal (its id, random per journal).
    fn generate(conn: &Connection) -> String {
        let rows = rows_of(conn);
        let filled: Vec<_> = rows.iter().filter(|(_, n)| *n > 0).collect();
        assert_eq!(
            filled,
            [&("journal_meta".to_string(), 1)],
            "a migration inserts rows that CURRENT does not create: add them to `generate`"
        );
        let mut out = format!(
            "-- schema version {SCHEMA_VERSION}\n\
             -- Generated from the migrations in schema.rs: do not edit; see CURRENT.\n"
        );
        for sql in schema_of(conn) {
            out += &sql;
            out += ";\n";
        }
        out += "INSERT INTO journal_meta (id) VALUES (lower(hex(randomblob(8))));\n";
        out
    }

    #[test]
    fn current_schema_is_what_the_migrations_leave() {
        let want = generate(&migrated_step_by_step());
        if std::env::var_os("MEND_BLESS").is_some() {
            let file = concat!(env!("CARGO_MANIFEST_DIR"), "/src/schema_current.sql");
            std::fs::write(file, &want).unwrap();
        }
        assert!(
            CURRENT == want,
            "src/schema_current.sql is stale (a migration was added or changed): \
             regenerate it with `MEND_BLESS=1 cargo test -p mend-journal current_schema`"
        );
        assert_eq!(current_version(), Some(SCHEMA_VERSION));
    }

    #[test]
    fn a_new_journal_equals_a_migrated_one() {
        let old = migrated_step_by_step();
        let new = Connection::open_in_memory().unwrap();
        crate::integrity::register_functions(&new).unwrap();
        migrate(&new, Path::new("new.db")).unwrap();
        assert_eq!(user_version(&new).unwrap(), SCHEMA_VERSION);
        assert_eq!(schema_of(&new), schema_of(&old));
        assert_eq!(rows_of(&new), rows_of(&old));
        let id: String = new
            .query_row("SELECT id FROM journal_meta", [], |r| r.get(0))
            .unwrap();
        assert_eq!(id.len(), 16, "{id}");
        // The triggers that keep each row's checksum are there and work.
        let fk: i64 = new
            .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(fk, 0);
    }

    /// Migration 10 rebuilds the change log: every seq stays, the counter
    /// stays above changes a prune removed (a viewer's Last-Event-ID must
    /// keep meaning the same change), and only runs that are over get their
    /// end mark, after every change they had.
    #[test]
    fn the_end_mark_migration_keeps_seqs_and_marks_only_finished_runs() {
        let conn = Connection::open_in_memory().unwrap();
        crate::integrity::register_functions(&conn).unwrap();
        for sql in &MIGRATIONS[..9] {
            conn.execute_batch(sql).unwrap();
        }
        let run = |id: &str, status: &str| {
            conn.execute(
                "INSERT INTO runs (id, runbook_name, runbook_version, runbook_path,
                     runbook_sha256, mode, status, params_json, now, started_at, finished_at)
                 VALUES (?1, 'r', '1', '/r.toml', 'x', 'run', ?2, '{}', 0, 10, 20)",
                rusqlite::params![id, status],
            )
            .unwrap();
        };
        run("done", "committed");
        run("live", "running");
        for (run_id, kind) in [
            ("done", "run"),
            ("live", "run"),
            ("done", "event"),
            ("live", "step"),
        ] {
            conn.execute(
                "INSERT INTO changes (run_id, kind, at) VALUES (?1, ?2, 1)",
                rusqlite::params![run_id, kind],
            )
            .unwrap();
        }
        // Changes 5 to 7 were pruned with their run: the counter is at 7.
        conn.execute(
            "UPDATE sqlite_sequence SET seq = 7 WHERE name = 'changes'",
            [],
        )
        .unwrap();
        conn.execute_batch(MIGRATIONS[9]).unwrap();
        let rows: Vec<(i64, String, String)> = conn
            .prepare("SELECT seq, run_id, kind FROM changes ORDER BY seq")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let want = [
            (1, "done", "run"),
            (2, "live", "run"),
            (3, "done", "event"),
            (4, "live", "step"),
            (8, "done", "end"),
        ];
        let want: Vec<(i64, String, String)> = want
            .iter()
            .map(|(s, r, k)| (*s, r.to_string(), k.to_string()))
            .collect();
        assert_eq!(rows, want);
        let counter: i64 = conn
            .query_row(
                "SELECT seq FROM sqlite_sequence WHERE name = 'changes'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(counter, 8);
    }
}
