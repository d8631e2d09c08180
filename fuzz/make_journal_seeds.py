#!/usr/bin/env python3
"""Shrinks a real journal (from `mend demo`) into small fuzz seeds.

usage: make_journal_seeds.py STATE/journal.db SEEDS_DIR

Keeps every run, step and event, the first two actions of each step, and
each saved plan cut to its first two actions; rewrites it with 512-byte
pages. Writes one seed as a plain database (first byte 0: the rest is
journal.db) and one with a WAL (first byte 1, then the length of journal.db
as u32 little-endian, journal.db, journal.db-wal): the layout
fuzz_targets/journal.rs reads, into SEEDS_DIR/journal. Writes the text of
the shrunk journal's columns that mend decodes (statuses, modes, the JSON
columns) into SEEDS_DIR/journal_rows, one value a file.
"""

import json
import os
import shutil
import sqlite3
import struct
import sys
import tempfile


def shrink(conn):
    conn.execute(
        """DELETE FROM actions WHERE seq NOT IN (
               SELECT seq FROM actions a2
               WHERE a2.run_id = actions.run_id AND a2.step_idx = actions.step_idx
               ORDER BY seq LIMIT 2)"""
    )
    for run_id, idx, plan in conn.execute(
        "SELECT run_id, idx, plan_json FROM steps"
    ).fetchall():
        if plan is None:
            continue
        saved = json.loads(plan)
        saved["plan"]["actions"] = saved["plan"]["actions"][:2]
        conn.execute(
            "UPDATE steps SET plan_json = ? WHERE run_id = ? AND idx = ?",
            (json.dumps(saved, separators=(",", ":")), run_id, idx),
        )
    conn.commit()


def main():
    src, seeds = sys.argv[1], sys.argv[2]
    out = os.path.join(seeds, "journal")
    rows = os.path.join(seeds, "journal_rows")
    os.makedirs(out, exist_ok=True)
    os.makedirs(rows, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "journal.db")
        shutil.copy(src, db)
        conn = sqlite3.connect(db)
        conn.execute("PRAGMA journal_mode = DELETE")
        shrink(conn)
        values = set()
        for sql in [
            "SELECT mode, status, params_json FROM runs",
            "SELECT status, plan_json FROM steps",
            "SELECT state, action_json, undo_json FROM actions",
        ]:
            for row in conn.execute(sql):
                values.update(v for v in row if v is not None)
        for i, v in enumerate(sorted(values)):
            with open(os.path.join(rows, f"demo-{i:02}"), "w") as f:
                f.write(v)
        conn.execute("PRAGMA page_size = 512")
        conn.execute("VACUUM")
        conn.close()
        plain = open(db, "rb").read()
        with open(os.path.join(out, "demo-plain"), "wb") as f:
            f.write(b"\0" + plain)

        # The same journal with its last run's status and a new event still
        # in the WAL, as a killed run leaves it.
        conn = sqlite3.connect(db)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        run = conn.execute(
            "SELECT id FROM runs ORDER BY started_at DESC LIMIT 1"
        ).fetchone()[0]
        conn.execute(
            "UPDATE runs SET status = 'rolling-back', finished_at = NULL WHERE id = ?",
            (run,),
        )
        conn.execute(
            "INSERT INTO events (run_id, step_idx, at, level, message) VALUES (?, 1, 1795387440000, 'warn', 'killed')",
            (run,),
        )
        conn.commit()
        main_db = open(db, "rb").read()
        wal = open(db + "-wal", "rb").read()
        conn.close()
        with open(os.path.join(out, "demo-wal"), "wb") as f:
            f.write(b"\1" + struct.pack("<I", len(main_db)) + main_db + wal)


if __name__ == "__main__":
    main()
