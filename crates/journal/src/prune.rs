//! History that does not grow for ever: old runs leave the journal.
//!
//! Only runs that are over for good go: `committed` and `rolled-back`. A run
//! that can still be resumed or rolled back (`running`, `rolling-back`,
//! `failed`, `rollback-failed`, `held`) stays whatever its age, and so do the runs
//! a retention limit keeps. Deleting a run deletes its steps, actions and
//! events with it (foreign keys, `ON DELETE CASCADE`).

use anyhow::{Context, Result};
use rusqlite::params;

use super::{Journal, RunStatus};

/// How much history to keep. A run goes when either limit says so; a limit
/// of 0 is no limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Keep runs started within this many days.
    pub keep_days: u32,
    /// Keep the newest this many runs of each runbook.
    pub keep_runs: u32,
}

impl Default for Retention {
    /// 90 days, and the last 100 runs of each runbook.
    fn default() -> Self {
        Retention {
            keep_days: 90,
            keep_runs: 100,
        }
    }
}

/// Free pages worth a `VACUUM`: it rewrites the whole file, so it is done
/// only when it gives back at least this much, or a quarter of the file.
const VACUUM_AT_BYTES: u64 = 16 << 20;

/// Runs deleted per write transaction: each commit is short, so a run
/// starting meanwhile waits little for the write lock.
const RUNS_PER_TX: usize = 64;

/// What a prune did (or, dry, would do).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Pruned {
    /// The runs removed (or that would be), oldest first.
    pub runs: Vec<PrunedRun>,
    /// Runs kept because they can still be resumed or rolled back, though a
    /// limit would have removed them.
    pub kept_open: usize,
    /// Runs left in the journal.
    pub left: usize,
    /// The journal file's size before and after (the WAL included).
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Whether the file was rewritten to give the space back.
    pub vacuumed: bool,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct PrunedRun {
    pub id: String,
    pub runbook_name: String,
    pub status: RunStatus,
    pub started_at: i64,
}

impl Journal {
    /// Remove the runs `keep` no longer keeps (none when `dry`), then give
    /// the space back when that frees enough (`vacuum`). `now` is the real
    /// clock in Unix milliseconds (ages are real, whatever a run's `--now`).
    pub fn prune(&self, keep: Retention, now: i64, dry: bool, vacuum: bool) -> Result<Pruned> {
        let bytes_before = self.file_bytes();
        let cut = if keep.keep_days == 0 {
            i64::MIN
        } else {
            now - i64::from(keep.keep_days) * 86_400_000
        };
        let limit_runs = if keep.keep_runs == 0 {
            i64::MAX
        } else {
            i64::from(keep.keep_runs)
        };
        // Ranked by runbook, newest first; a run is "over" by either limit.
        let mut stmt = self.conn.prepare(
            "SELECT id, runbook_name, status, started_at,
                    (started_at < ?1 OR n > ?2) AS over
             FROM (SELECT id, runbook_name, status, started_at,
                          ROW_NUMBER() OVER (PARTITION BY runbook_name
                                             ORDER BY started_at DESC, id DESC) AS n
                   FROM runs)
             ORDER BY started_at, id",
        )?;
        let rows = stmt.query_map(params![cut, limit_runs], |r| {
            Ok((
                PrunedRun {
                    id: r.get(0)?,
                    runbook_name: r.get(1)?,
                    status: r.get(2)?,
                    started_at: r.get(3)?,
                },
                r.get::<_, bool>(4)?,
            ))
        })?;
        let mut out = Pruned {
            bytes_before,
            ..Pruned::default()
        };
        for row in rows {
            let (run, over) = row.context("cannot read the runs to prune")?;
            let closed = matches!(run.status, RunStatus::Committed | RunStatus::RolledBack);
            match (over, closed) {
                (true, true) => out.runs.push(run),
                (true, false) => {
                    out.kept_open += 1;
                    out.left += 1;
                }
                (false, _) => out.left += 1,
            }
        }
        drop(stmt);
        if dry || out.runs.is_empty() {
            out.bytes_after = bytes_before;
            return Ok(out);
        }
        for chunk in out.runs.chunks(RUNS_PER_TX) {
            let tx = self.write_tx()?;
            {
                // The status is checked again inside the transaction: a run
                // resumed since the query above is not touched.
                let mut del = tx.prepare_cached(
                    "DELETE FROM runs WHERE id = ?1 AND status IN ('committed', 'rolled-back')",
                )?;
                for run in chunk {
                    del.execute(params![run.id])
                        .with_context(|| format!("cannot remove run {}", run.id))?;
                }
            }
            tx.commit_removal()
                .context("cannot commit the pruned runs")?;
        }
        if vacuum {
            out.vacuumed = self.vacuum_if_worth_it()?;
        }
        out.bytes_after = self.file_bytes();
        Ok(out)
    }

    /// `VACUUM` when the free pages reach [`VACUUM_AT_BYTES`] or a quarter
    /// of the file; then the WAL is truncated. It needs room for a copy of
    /// the journal: on a disk too full for it, the space stays free inside
    /// the file for later runs, and that is no error.
    fn vacuum_if_worth_it(&self) -> Result<bool> {
        let page: u64 = self
            .conn
            .pragma_query_value(None, "page_size", |r| r.get(0))?;
        let free: u64 = self
            .conn
            .pragma_query_value(None, "freelist_count", |r| r.get(0))?;
        let total: u64 = self
            .conn
            .pragma_query_value(None, "page_count", |r| r.get(0))?;
        let free_bytes = free * page;
        if free_bytes < VACUUM_AT_BYTES && free * 4 < total.max(1) {
            return Ok(false);
        }
        if let Err(e) = self.conn.execute_batch("VACUUM") {
            tracing::warn!(
                "journal {}: not compacted ({e}); its {} free stay inside the file for later runs",
                self.path.display(),
                mend_human::human_bytes(free_bytes)
            );
            return Ok(false);
        }
        let _ = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        Ok(true)
    }

    /// journal.db and its WAL, in bytes.
    fn file_bytes(&self) -> u64 {
        let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
        let mut wal = self.path.as_os_str().to_owned();
        wal.push("-wal");
        size(&self.path) + size(std::path::Path::new(&wal))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::now_ms;
    use crate::tests::new_run;
    use crate::{NewAction, RunStatus};

    /// A journal of `n` runs of two runbooks, each with 40 done actions of
    /// long paths, started one hour apart ending now; every 10th run is
    /// left `failed` (it can still be rolled back) and every 25th `running`.
    fn journal(n: usize) -> (tempfile::TempDir, Journal, Vec<String>) {
        let tmp = tempfile::tempdir().unwrap();
        let j = Journal::open(tmp.path()).unwrap();
        let now = now_ms();
        let mut ids = Vec::new();
        for i in 0..n {
            let name = if i % 2 == 0 { "cull" } else { "upgrade" };
            let run = j.new_run(&new_run(name)).unwrap();
            let json: Vec<String> = (0..40)
                .map(|s| format!(r#"{{"remove":"cache/{}/{s:04}.jpg"}}"#, "m".repeat(200)))
                .collect();
            let actions: Vec<NewAction> = json
                .iter()
                .enumerate()
                .map(|(s, a)| NewAction {
                    seq: s as u32,
                    action_json: a,
                    reversible: true,
                    undo_json: None,
                })
                .collect();
            j.intend(&run.id, 0, &actions).unwrap();
            let status = if i % 25 == 0 {
                RunStatus::Running
            } else if i % 10 == 0 {
                RunStatus::Failed
            } else {
                RunStatus::Committed
            };
            if status != RunStatus::Running {
                j.set_run_status(&run.id, status, None).unwrap();
            }
            let age_hours = (n - 1 - i) as i64;
            j.conn
                .execute(
                    "UPDATE runs SET started_at = ?2 WHERE id = ?1",
                    params![run.id, now - age_hours * 3_600_000],
                )
                .unwrap();
            ids.push(run.id);
        }
        (tmp, j, ids)
    }

    fn left(j: &Journal) -> Vec<String> {
        let mut s = j
            .conn
            .prepare("SELECT id FROM runs ORDER BY started_at")
            .unwrap();
        s.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    #[test]
    fn each_runbook_keeps_its_newest_runs_and_every_open_one() {
        let (_t, j, ids) = journal(200);
        let keep = Retention {
            keep_days: 0,
            keep_runs: 30,
        };
        let dry = j.prune(keep, now_ms(), true, false).unwrap();
        assert_eq!(left(&j).len(), 200, "a dry prune removes nothing");
        let out = j.prune(keep, now_ms(), false, true).unwrap();
        assert_eq!(out.runs.len(), dry.runs.len());
        let kept = left(&j);
        // Newest 30 of each runbook (the last 60 ids), plus every open run
        // older than that.
        let mut expected: Vec<String> = ids[..140]
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 25 == 0 || i % 10 == 0)
            .map(|(_, id)| id.clone())
            .collect();
        expected.extend(ids[140..].iter().cloned());
        assert_eq!(kept, expected);
        assert_eq!(out.kept_open, expected.len() - 60);
        assert_eq!(out.left, kept.len());
        // Their steps and actions went with them.
        let orphans: i64 = j
            .conn
            .query_row(
                "SELECT count(*) FROM actions WHERE run_id NOT IN (SELECT id FROM runs)",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(orphans, 0);
        assert!(out.vacuumed, "{out:?}");
        assert!(
            out.bytes_after * 2 < out.bytes_before,
            "the file shrinks: {} -> {}",
            out.bytes_before,
            out.bytes_after
        );
        // Pruning again removes nothing more.
        assert!(
            j.prune(keep, now_ms(), false, true)
                .unwrap()
                .runs
                .is_empty()
        );
    }

    #[test]
    fn runs_older_than_the_age_limit_go_unless_open() {
        let (_t, j, ids) = journal(100);
        // Runs are an hour apart: 2 days keep the newest 48 (those started
        // less than 48 hours ago), and the open ones before.
        let keep = Retention {
            keep_days: 2,
            keep_runs: 0,
        };
        let out = j.prune(keep, now_ms(), false, false).unwrap();
        let kept = left(&j);
        assert!(!out.vacuumed);
        for (i, id) in ids.iter().enumerate() {
            let age_hours = 99 - i;
            let open = i % 25 == 0 || i % 10 == 0;
            assert_eq!(
                kept.contains(id),
                age_hours < 48 || open,
                "run {i} ({age_hours} h old, open: {open})"
            );
        }
    }

    #[test]
    fn no_limit_keeps_everything() {
        let (_t, j, _) = journal(30);
        let keep = Retention {
            keep_days: 0,
            keep_runs: 0,
        };
        assert!(
            j.prune(keep, now_ms(), false, true)
                .unwrap()
                .runs
                .is_empty()
        );
        assert_eq!(left(&j).len(), 30);
    }

    #[test]
    fn a_held_run_is_kept_however_old() {
        // cull: 0 (running), 2, 4; upgrade: 1, 3.
        let (_t, j, ids) = journal(5);
        j.set_run_status(&ids[2], RunStatus::Held, None).unwrap();
        let keep = Retention {
            keep_days: 0,
            keep_runs: 1,
        };
        let out = j.prune(keep, now_ms(), false, false).unwrap();
        // Over the limit: 0, 2 and 1; only the committed one goes.
        assert_eq!(out.runs.len(), 1, "{out:?}");
        assert_eq!(out.runs[0].id, ids[1]);
        assert!(left(&j).contains(&ids[2]), "the held run was pruned");
        assert_eq!(out.kept_open, 2, "{out:?}");
    }
}
