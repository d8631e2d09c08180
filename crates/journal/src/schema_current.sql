-- schema version 10
-- Generated from the migrations in schema.rs: do not edit; see CURRENT.
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
        error            TEXT, sum INTEGER,
        PRIMARY KEY (run_id, idx)
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
CREATE TRIGGER steps_sum_insert AFTER INSERT ON steps BEGIN
        UPDATE steps SET sum = mend_row_sum(NEW.run_id, NEW.idx, NEW.step_id, NEW.uses, NEW.component_sha256, NEW.status, NEW.plan_json, NEW.started_at, NEW.finished_at, NEW.error)
        WHERE run_id = NEW.run_id AND idx = NEW.idx;
    END;
CREATE TRIGGER steps_sum_update AFTER UPDATE OF run_id, idx, step_id, uses, component_sha256, status, plan_json, started_at, finished_at, error ON steps BEGIN
        UPDATE steps SET sum = mend_row_sum(NEW.run_id, NEW.idx, NEW.step_id, NEW.uses, NEW.component_sha256, NEW.status, NEW.plan_json, NEW.started_at, NEW.finished_at, NEW.error)
        WHERE run_id = NEW.run_id AND idx = NEW.idx;
    END;
CREATE TABLE "actions" (
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
CREATE TRIGGER actions_sum_insert AFTER INSERT ON actions BEGIN
        UPDATE actions SET sum = mend_row_sum(NEW.run_id, NEW.step_idx, NEW.seq, NEW.action_json, NEW.reversible, NEW.state, NEW.undo_json, NEW.intended_at, NEW.done_at, NEW.undone_at, NEW.error)
        WHERE run_id = NEW.run_id AND step_idx = NEW.step_idx AND seq = NEW.seq;
    END;
CREATE TRIGGER actions_sum_update AFTER UPDATE OF run_id, step_idx, seq, action_json, reversible, state, undo_json, intended_at, done_at, undone_at, error ON actions BEGIN
        UPDATE actions SET sum = mend_row_sum(NEW.run_id, NEW.step_idx, NEW.seq, NEW.action_json, NEW.reversible, NEW.state, NEW.undo_json, NEW.intended_at, NEW.done_at, NEW.undone_at, NEW.error)
        WHERE run_id = NEW.run_id AND step_idx = NEW.step_idx AND seq = NEW.seq;
    END;
CREATE TABLE journal_meta (id TEXT NOT NULL) STRICT;
CREATE TABLE "runs" (
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
CREATE TABLE "bulk" (
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
CREATE TRIGGER bulk_sum_insert AFTER INSERT ON bulk BEGIN
        UPDATE bulk SET sum = mend_row_sum(NEW.run_id, NEW.step_idx, NEW.lo, NEW.n, NEW.reversible, NEW.state, NEW.actions, NEW.undo, NEW.intended_at, NEW.done_at, NEW.undone_at)
        WHERE run_id = NEW.run_id AND step_idx = NEW.step_idx AND lo = NEW.lo;
    END;
CREATE TRIGGER bulk_sum_update AFTER UPDATE OF run_id, step_idx, lo, n, reversible, state, actions, undo, intended_at, done_at, undone_at ON bulk BEGIN
        UPDATE bulk SET sum = mend_row_sum(NEW.run_id, NEW.step_idx, NEW.lo, NEW.n, NEW.reversible, NEW.state, NEW.actions, NEW.undo, NEW.intended_at, NEW.done_at, NEW.undone_at)
        WHERE run_id = NEW.run_id AND step_idx = NEW.step_idx AND lo = NEW.lo;
    END;
CREATE TABLE "changes" (
        seq      INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id   TEXT    NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        kind     TEXT    NOT NULL CHECK (kind IN ('run', 'step', 'actions', 'event', 'end')),
        step_idx INTEGER CHECK (step_idx >= 0),
        lo       INTEGER,
        hi       INTEGER,
        at       INTEGER NOT NULL
    ) STRICT;
CREATE INDEX changes_by_run ON changes (run_id, seq);
INSERT INTO journal_meta (id) VALUES (lower(hex(randomblob(8))));
