//! Runs: creation, status, lookup by id prefix, history.

use std::fmt::Write as _;
use std::io::Read as _;

use anyhow::{Context, Result, bail};
use rusqlite::{OptionalExtension, Row, params};

use super::{Change, HistoryFilter, Journal, NewRun, RunRecord, RunStatus, now_ms};

/// Length of a run id in hex characters.
pub const RUN_ID_LEN: usize = 16;
/// Shortest accepted run id prefix.
pub const MIN_PREFIX_LEN: usize = 4;
/// How many candidates an "ambiguous prefix" error lists.
const MAX_CANDIDATES: usize = 10;

const RUN_COLUMNS: &str = "id, runbook_name, runbook_version, runbook_path, runbook_sha256, \
     mode, status, params_json, now, started_at, finished_at, error, started_by, host";

fn run_from_row(row: &Row<'_>) -> rusqlite::Result<RunRecord> {
    Ok(RunRecord {
        id: row.get(0)?,
        runbook_name: row.get(1)?,
        runbook_version: row.get(2)?,
        runbook_path: row.get(3)?,
        runbook_sha256: row.get(4)?,
        mode: row.get(5)?,
        status: row.get(6)?,
        params_json: row.get(7)?,
        now: row.get(8)?,
        started_at: row.get(9)?,
        finished_at: row.get(10)?,
        error: row.get(11)?,
        started_by: row.get(12)?,
        host: row.get(13)?,
    })
}

/// A fresh run id: 16 lowercase hex chars from `/dev/urandom`.
pub fn new_run_id() -> std::io::Result<String> {
    let mut bytes = [0u8; RUN_ID_LEN / 2];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    let mut id = String::with_capacity(RUN_ID_LEN);
    for b in bytes {
        let _ = write!(id, "{b:02x}");
    }
    Ok(id)
}

impl Journal {
    /// Records a new run (status `Running`, `started_at` now) and returns it.
    pub fn new_run(&self, run: &NewRun) -> Result<RunRecord> {
        let started_at = now_ms();
        // A collision of 64 random bits is not expected; retry anyway rather
        // than fail on a primary-key violation.
        let (started_by, host) = (crate::starter::user(), crate::starter::host());
        for _ in 0..8 {
            let id = new_run_id().context("cannot read /dev/urandom for a run id")?;
            let tx = self.write_tx()?;
            let inserted = tx.execute(
                "INSERT INTO runs (id, runbook_name, runbook_version, runbook_path,
                     runbook_sha256, mode, status, params_json, now, started_at,
                     started_by, host)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                 ON CONFLICT (id) DO NOTHING",
                params![
                    id,
                    run.runbook_name,
                    run.runbook_version,
                    run.runbook_path,
                    run.runbook_sha256,
                    run.mode,
                    RunStatus::Running,
                    run.params_json,
                    run.now,
                    started_at,
                    started_by,
                    host
                ],
            )?;
            if inserted == 0 {
                continue;
            }
            tx.commit(&id, Change::Run)
                .context("cannot commit the new run")?;
            return Ok(RunRecord {
                id,
                runbook_name: run.runbook_name.to_owned(),
                runbook_version: run.runbook_version.to_owned(),
                runbook_path: run.runbook_path.to_owned(),
                runbook_sha256: run.runbook_sha256.to_owned(),
                mode: run.mode,
                status: RunStatus::Running,
                params_json: run.params_json.to_owned(),
                now: run.now,
                started_at,
                finished_at: None,
                error: None,
                started_by: Some(started_by),
                host: Some(host),
            });
        }
        bail!("cannot allocate a unique run id")
    }

    /// Sets a run's status (by full id). A terminal status (committed,
    /// failed, rolled-back, rollback-failed) sets `finished_at` to now; a
    /// non-terminal one clears it. `Some(error)` replaces the run's error;
    /// `None` keeps it when terminal or rolling back (so a rolled-back run
    /// still says why it was rolled back) and clears it on `Running`.
    pub fn set_run_status(
        &self,
        run_id: &str,
        status: RunStatus,
        error: Option<&str>,
    ) -> Result<()> {
        let finished_at = status.is_terminal().then(now_ms);
        let keep_error = status != RunStatus::Running;
        let tx = self.write_tx()?;
        let n = tx
            .prepare_cached(
                "UPDATE runs SET status = ?2, finished_at = ?3,
                     error = CASE WHEN ?4 IS NOT NULL THEN ?4 WHEN ?5 THEN error END
                 WHERE id = ?1",
            )?
            .execute(params![run_id, status, finished_at, error, keep_error])?;
        if n == 0 {
            bail!("no run with id `{run_id}`");
        }
        tx.commit(run_id, Change::Run)
            .context("cannot commit the run status")?;
        Ok(())
    }

    /// The run whose id is `id_or_prefix` or starts with it (4+ chars).
    pub fn run(&self, id_or_prefix: &str) -> Result<RunRecord> {
        let prefix = id_or_prefix.trim().to_ascii_lowercase();
        if prefix.len() < MIN_PREFIX_LEN {
            bail!(
                "run id `{prefix}` is too short: give at least {MIN_PREFIX_LEN} characters \
                 (see `mend history`)"
            );
        }
        let not_found =
            || anyhow::anyhow!("no run with id starting `{prefix}`; see `mend history`");
        if prefix.len() > RUN_ID_LEN || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(not_found());
        }
        if prefix.len() == RUN_ID_LEN {
            let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1");
            return self
                .conn
                .query_row(&sql, [&prefix], run_from_row)
                .optional()?
                .ok_or_else(not_found);
        }
        // Hex only, so the GLOB pattern has no metacharacters but `*`.
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE id GLOB ?1 || '*'
             ORDER BY started_at DESC, rowid DESC LIMIT ?2"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut found: Vec<RunRecord> = stmt
            .query_map(params![prefix, MAX_CANDIDATES as i64 + 1], run_from_row)?
            .collect::<rusqlite::Result<_>>()?;
        match found.len() {
            0 => Err(not_found()),
            1 => Ok(found.remove(0)),
            n => {
                let mut msg = format!("run id prefix `{prefix}` is ambiguous; it matches:");
                for r in found.iter().take(MAX_CANDIDATES) {
                    let _ = write!(
                        msg,
                        "\n  {}  {} ({}, started {})",
                        r.id,
                        r.runbook_name,
                        r.status,
                        super::format_utc(r.started_at.div_euclid(1000))
                    );
                }
                if n > MAX_CANDIDATES {
                    msg.push_str("\n  ...");
                }
                msg.push_str("\ngive more characters of the id");
                Err(anyhow::Error::msg(msg))
            }
        }
    }

    /// Runs matching `filter`, newest first.
    pub fn history(&self, filter: &HistoryFilter) -> Result<Vec<RunRecord>> {
        let limit = filter
            .limit
            .map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs
             WHERE (?1 IS NULL OR runbook_name = ?1) AND (?2 IS NULL OR status = ?2)
             ORDER BY started_at DESC, rowid DESC LIMIT ?3"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let runs = stmt
            .query_map(params![filter.runbook, filter.status, limit], run_from_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(runs)
    }
}

#[cfg(test)]
mod tests {
    use super::super::RunMode;
    use super::super::tests::new_run;
    use super::*;

    fn journal() -> (tempfile::TempDir, Journal) {
        let tmp = tempfile::tempdir().unwrap();
        let j = Journal::open(tmp.path()).unwrap();
        (tmp, j)
    }

    /// Inserts a run with a chosen id (for prefix tests).
    fn insert_with_id(j: &Journal, id: &str, name: &str, started_at: i64) {
        j.conn
            .execute(
                "INSERT INTO runs (id, runbook_name, runbook_version, runbook_path,
                     runbook_sha256, mode, status, params_json, now, started_at)
                 VALUES (?1, ?2, '1', 'p', 's', 'run', 'committed', '{}', 0, ?3)",
                params![id, name, started_at],
            )
            .unwrap();
    }

    #[test]
    fn run_ids_are_16_lowercase_hex_and_distinct() {
        let a = new_run_id().unwrap();
        let b = new_run_id().unwrap();
        assert_eq!(a.len(), 16);
        assert!(
            a.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')),
            "{a}"
        );
        assert_ne!(a, b);
    }

    #[test]
    fn run_lifecycle() {
        let (_tmp, j) = journal();
        let before = now_ms();
        let mut nr = new_run("backup");
        nr.mode = RunMode::Rehearse;
        let r = j.new_run(&nr).unwrap();
        assert_eq!(r.status, RunStatus::Running);
        assert_eq!(r.mode, RunMode::Rehearse);
        assert!(r.started_at >= before && r.started_at <= now_ms());
        assert_eq!(r.finished_at, None);

        let got = j.run(&r.id).unwrap();
        assert_eq!(got.runbook_name, "backup");
        assert_eq!(got.runbook_version, "1.2.0");
        assert_eq!(got.runbook_path, "/etc/mend/runbooks/x.toml");
        assert_eq!(got.runbook_sha256, "ab".repeat(32));
        assert_eq!(got.params_json, r#"{"host":"db1"}"#);
        assert_eq!(got.now, 1_795_367_045);
        assert_eq!(got.mode, RunMode::Rehearse);
        assert_eq!(got.started_at, r.started_at);

        j.set_run_status(&r.id, RunStatus::Failed, Some("step 2 failed"))
            .unwrap();
        let got = j.run(&r.id).unwrap();
        assert_eq!(got.status, RunStatus::Failed);
        assert!(got.finished_at.is_some());
        assert_eq!(got.error.as_deref(), Some("step 2 failed"));

        j.set_run_status(&r.id, RunStatus::RollingBack, None)
            .unwrap();
        let got = j.run(&r.id).unwrap();
        assert_eq!(got.status, RunStatus::RollingBack);
        assert_eq!(got.finished_at, None);
        assert_eq!(got.error.as_deref(), Some("step 2 failed"));

        j.set_run_status(&r.id, RunStatus::RolledBack, None)
            .unwrap();
        let got = j.run(&r.id).unwrap();
        assert_eq!(got.status, RunStatus::RolledBack);
        assert!(got.finished_at.unwrap() >= got.started_at);
        assert_eq!(got.error.as_deref(), Some("step 2 failed"));

        j.set_run_status(&r.id, RunStatus::Running, None).unwrap();
        let got = j.run(&r.id).unwrap();
        assert_eq!((got.finished_at, got.error.as_deref()), (None, None));

        j.set_run_status(&r.id, RunStatus::Committed, None).unwrap();
        assert_eq!(j.run(&r.id).unwrap().status, RunStatus::Committed);

        let err = j
            .set_run_status("0000000000000000", RunStatus::Committed, None)
            .unwrap_err();
        assert!(err.to_string().contains("no run"), "{err}");
        // Serializable for `--json` output.
        let v = serde_json::to_value(&got).unwrap();
        assert_eq!(v["status"], "running");
        assert_eq!(v["mode"], "rehearse");
    }

    #[test]
    fn prefix_lookup() {
        let (_tmp, j) = journal();
        insert_with_id(&j, "7f3a000000000001", "a", 1);
        insert_with_id(&j, "7f3a000000000002", "b", 2);
        insert_with_id(&j, "7f3b000000000003", "c", 3);

        // Unique prefixes, full id, upper case.
        assert_eq!(j.run("7f3b").unwrap().runbook_name, "c");
        assert_eq!(j.run("7f3a000000000002").unwrap().runbook_name, "b");
        let msg = j.run("7F3A0000000000").unwrap_err().to_string();
        assert!(msg.contains("ambiguous"), "{msg}");
        assert_eq!(j.run("7F3A000000000001").unwrap().runbook_name, "a");

        // Ambiguous: lists both candidates.
        let msg = j.run("7f3a").unwrap_err().to_string();
        assert!(msg.contains("ambiguous"), "{msg}");
        assert!(msg.contains("7f3a000000000001"), "{msg}");
        assert!(msg.contains("7f3a000000000002"), "{msg}");
        assert!(!msg.contains("7f3b000000000003"), "{msg}");

        // Missing.
        let msg = j.run("0123").unwrap_err().to_string();
        assert_eq!(msg, "no run with id starting `0123`; see `mend history`");
        let msg = j.run("7f3a00000000000f").unwrap_err().to_string();
        assert!(msg.starts_with("no run with id starting"), "{msg}");
        let msg = j.run("zz*%").unwrap_err().to_string();
        assert!(msg.starts_with("no run with id starting"), "{msg}");

        // Too short.
        let msg = j.run("7f3").unwrap_err().to_string();
        assert!(msg.contains("too short"), "{msg}");
    }

    #[test]
    fn history_filters_newest_first() {
        let (_tmp, j) = journal();
        let mut ids = Vec::new();
        for (i, name) in ["a", "b", "a", "a", "b"].iter().enumerate() {
            let r = j.new_run(&new_run(name)).unwrap();
            if i % 2 == 0 {
                j.set_run_status(&r.id, RunStatus::Committed, None).unwrap();
            }
            ids.push(r.id);
        }
        let all = j.history(&HistoryFilter::default()).unwrap();
        let got: Vec<&str> = all.iter().map(|r| r.id.as_str()).collect();
        let want: Vec<&str> = ids.iter().rev().map(String::as_str).collect();
        assert_eq!(got, want, "newest first");

        let a = j
            .history(&HistoryFilter {
                runbook: Some("a".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(a.len(), 3);
        assert!(a.iter().all(|r| r.runbook_name == "a"));
        assert_eq!(a[0].id, ids[3]);

        let committed = j
            .history(&HistoryFilter {
                status: Some(RunStatus::Committed),
                ..Default::default()
            })
            .unwrap();
        let got: Vec<&str> = committed.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(got, [&*ids[4], &*ids[2], &*ids[0]]);

        let both = j
            .history(&HistoryFilter {
                runbook: Some("b".into()),
                status: Some(RunStatus::Running),
                limit: None,
            })
            .unwrap();
        assert_eq!(both.len(), 1);
        assert_eq!(both[0].id, ids[1]);

        let limited = j
            .history(&HistoryFilter {
                limit: Some(2),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(limited.len(), 2);
        assert_eq!(limited[0].id, ids[4]);
        assert!(
            j.history(&HistoryFilter {
                runbook: Some("none".into()),
                ..Default::default()
            })
            .unwrap()
            .is_empty()
        );
    }
}
