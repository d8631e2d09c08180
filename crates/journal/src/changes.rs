//! The change log: one `changes` row per write transaction, appended by the
//! same transaction, so a reader that remembers the last `seq` it saw can
//! ask for exactly what happened since (`mend watch`, `mend serve`).
//!
//! Commit order is seq order: SQLite has one writer, and the seq is taken
//! inside a `BEGIN IMMEDIATE` transaction, which already holds the write
//! lock, so a smaller seq never becomes visible after a larger one.
//!
//! It cannot be forgotten: the only way to commit a journal write is
//! [`JournalTx::commit`], which takes the [`Change`] it made.

use std::ops::Deref;

use anyhow::{Context, Result, bail};
use rusqlite::{OptionalExtension as _, Transaction, params};

use super::{Journal, now_ms};

/// What a write transaction changed, for readers that follow the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Change {
    /// The run row (created, or its status changed).
    Run,
    /// A step row (saved, planned, or its status changed).
    Step { step: u32 },
    /// Actions `lo..=hi` (by seq) of a step.
    Actions { step: u32, lo: u32, hi: u32 },
    /// One event (`events.id`).
    Event { id: i64 },
    /// The run's writer is done with it: written last, after its terminal
    /// status and whatever follows that status (the free space after a
    /// commit's purge, a held run's event). Followers stop here, not at the
    /// status, so they miss nothing written after it.
    End,
}

impl Change {
    /// A batch of a step's actions, by their seqs (an empty one: the step).
    pub(crate) fn batch(step: u32, seqs: impl Iterator<Item = u32>) -> Change {
        let span = seqs.fold(None, |acc: Option<(u32, u32)>, s| {
            Some(acc.map_or((s, s), |(lo, hi)| (lo.min(s), hi.max(s))))
        });
        match span {
            Some((lo, hi)) => Change::Actions { step, lo, hi },
            None => Change::Step { step },
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Change::Run => "run",
            Change::Step { .. } => "step",
            Change::Actions { .. } => "actions",
            Change::Event { .. } => "event",
            Change::End => "end",
        }
    }

    fn columns(&self) -> (Option<u32>, Option<i64>, Option<i64>) {
        match *self {
            Change::Run => (None, None, None),
            Change::Step { step } => (Some(step), None, None),
            Change::Actions { step, lo, hi } => (Some(step), Some(lo.into()), Some(hi.into())),
            Change::Event { id } => (None, Some(id), Some(id)),
            Change::End => (None, None, None),
        }
    }

    fn from_columns(
        kind: &str,
        step: Option<u32>,
        lo: Option<i64>,
        hi: Option<i64>,
    ) -> Option<Change> {
        Some(match kind {
            "run" => Change::Run,
            "step" => Change::Step { step: step? },
            "actions" => Change::Actions {
                step: step?,
                lo: u32::try_from(lo?).ok()?,
                hi: u32::try_from(hi?).ok()?,
            },
            "event" => Change::Event { id: lo? },
            "end" => Change::End,
            _ => return None,
        })
    }
}

/// One row of the change log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChangeRecord {
    pub seq: i64,
    pub run_id: String,
    #[serde(flatten)]
    pub change: Change,
    /// Unix milliseconds.
    pub at: i64,
}

/// A journal write transaction. It reads and writes like the transaction it
/// wraps, and commits only with the change it made: a write path cannot
/// forget to append to the change log. Dropped uncommitted, it rolls back.
pub(crate) struct JournalTx<'a> {
    tx: Transaction<'a>,
}

impl<'a> JournalTx<'a> {
    pub(crate) fn new(tx: Transaction<'a>) -> JournalTx<'a> {
        JournalTx { tx }
    }

    /// Commits a removal of whole runs that are over (`prune`): their rows
    /// in the change log go with them (`ON DELETE CASCADE`), and no reader
    /// follows a finished run, so there is nothing to log.
    pub(crate) fn commit_removal(self) -> Result<()> {
        self.tx.commit()?;
        Ok(())
    }

    /// Appends `change` of run `run_id` to the change log and commits both.
    /// Returns the change's seq.
    pub(crate) fn commit(self, run_id: &str, change: Change) -> Result<i64> {
        let (step, lo, hi) = change.columns();
        self.tx
            .prepare_cached(
                "INSERT INTO changes (run_id, kind, step_idx, lo, hi, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![run_id, change.kind(), step, lo, hi, now_ms()])
            .with_context(|| format!("cannot record a change of run {run_id}"))?;
        let seq = self.tx.last_insert_rowid();
        self.tx.commit()?;
        Ok(seq)
    }
}

impl<'a> Deref for JournalTx<'a> {
    type Target = Transaction<'a>;
    fn deref(&self) -> &Transaction<'a> {
        &self.tx
    }
}

/// Keeps, of the changes to one key (the run, a step, a step's actions),
/// only the last in `batch`, in seq order; every event is kept. Readers show
/// the current row for a key, so the earlier changes add nothing.
pub fn coalesce(batch: Vec<ChangeRecord>) -> Vec<ChangeRecord> {
    let key = |c: &Change| match *c {
        Change::Run => Some((0, 0)),
        Change::Step { step } => Some((1, step)),
        Change::Actions { step, .. } => Some((2, step)),
        Change::Event { .. } | Change::End => None,
    };
    let mut last = std::collections::HashMap::new();
    for (i, c) in batch.iter().enumerate() {
        if let Some(k) = key(&c.change) {
            last.insert((c.run_id.clone(), k), i);
        }
    }
    batch
        .into_iter()
        .enumerate()
        .filter(|(i, c)| match key(&c.change) {
            Some(k) => last.get(&(c.run_id.clone(), k)) == Some(i),
            None => true,
        })
        .map(|(_, c)| c)
        .collect()
}

impl Journal {
    /// Runs `f` in one read transaction: everything it reads is one
    /// snapshot of the journal, however many commits land meanwhile. Keep it
    /// short: a long read transaction holds the WAL from being checkpointed.
    pub fn snapshot<T>(&self, f: impl FnOnce(&Journal) -> Result<T>) -> Result<T> {
        self.conn.execute_batch("BEGIN DEFERRED")?;
        let r = f(self);
        let end = self
            .conn
            .execute_batch(if r.is_ok() { "COMMIT" } else { "ROLLBACK" });
        let r = r?;
        end?;
        Ok(r)
    }

    /// This journal's id: random, made once with the change log. With a seq
    /// it names one point in one journal (a restored or replaced journal has
    /// another id, so a reader's remembered seq is not taken for its own).
    pub fn journal_id(&self) -> Result<String> {
        self.conn
            .query_row("SELECT id FROM journal_meta", [], |r| r.get(0))
            .context("cannot read the journal's id")
    }

    /// The last seq committed (0 before any change).
    pub fn last_seq(&self) -> Result<i64> {
        self.conn
            .query_row("SELECT coalesce(max(seq), 0) FROM changes", [], |r| {
                r.get(0)
            })
            .context("cannot read the journal's change log")
    }

    /// Marks run `run_id` ended ([`Change::End`]): its writer has written
    /// everything it will. Call after the last write of a command that
    /// settled the run; again after a later command settles it again.
    pub fn end_run(&self, run_id: &str) -> Result<()> {
        let tx = self.write_tx()?;
        tx.commit(run_id, Change::End)
            .with_context(|| format!("cannot mark run {run_id} ended"))?;
        Ok(())
    }

    /// Whether run `run_id`'s last change is its end mark: its writer is
    /// done and nothing more will come until a command settles it again.
    pub fn ended(&self, run_id: &str) -> Result<bool> {
        let kind: Option<String> = self
            .conn
            .prepare_cached("SELECT kind FROM changes WHERE run_id = ?1 ORDER BY seq DESC LIMIT 1")?
            .query_row(params![run_id], |r| r.get(0))
            .optional()?;
        Ok(kind.as_deref() == Some("end"))
    }

    /// Changes after `seq` (of one run, or all), oldest first, at most
    /// `limit`.
    pub fn changes_after(
        &self,
        seq: i64,
        run_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ChangeRecord>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, run_id, kind, step_idx, lo, hi, at FROM changes
             WHERE seq > ?1 AND (?2 IS NULL OR run_id = ?2) ORDER BY seq LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![seq, run_id, limit as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<u32>>(3)?,
                r.get::<_, Option<i64>>(4)?,
                r.get::<_, Option<i64>>(5)?,
                r.get::<_, i64>(6)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, run_id, kind, step, lo, hi, at) = row?;
            let Some(change) = Change::from_columns(&kind, step, lo, hi) else {
                bail!("change {seq} of the journal has an unknown shape (kind `{kind}`)");
            };
            out.push(ChangeRecord {
                seq,
                run_id,
                change,
                at,
            });
        }
        Ok(out)
    }

    /// Each step of a run with the seq of its last change (its row or its
    /// actions): a step's state is named by it, so a reader shipping the
    /// step as it stands ships it once per change, never twice the same.
    pub fn step_last_changes(&self, run_id: &str) -> Result<Vec<(u32, i64)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT step_idx, max(seq) FROM changes
             WHERE run_id = ?1 AND step_idx IS NOT NULL GROUP BY step_idx ORDER BY step_idx",
        )?;
        let rows = stmt
            .query_map(params![run_id], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// SQLite's `data_version`: it changes when another connection commits.
    /// A cheap poll (no I/O) for readers that follow the journal.
    pub fn data_version(&self) -> Result<i64> {
        self.conn
            .pragma_query_value(None, "data_version", |r| r.get(0))
            .context("cannot poll the journal")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::new_run;
    use crate::{ActionState, NewAction, PlannedAction, RunStatus, StepStatus};

    /// Every public write path appends exactly one change, of its kind, in
    /// commit order.
    #[test]
    fn every_write_path_appends_one_change() {
        let tmp = tempfile::tempdir().unwrap();
        let j = Journal::open(tmp.path()).unwrap();
        let mut seen = 0;
        let mut expect = |j: &Journal, what: &str, want: Change| {
            let got = j.changes_after(seen, None, 100).unwrap();
            assert_eq!(got.len(), 1, "{what}: {got:?}");
            assert_eq!(got[0].change, want, "{what}");
            assert!(got[0].seq > seen, "{what}: seq went back");
            seen = got[0].seq;
            assert_eq!(j.last_seq().unwrap(), seen);
        };
        let run = j.new_run(&new_run("x")).unwrap();
        expect(&j, "new_run", Change::Run);
        j.save_step(&run.id, 0, "a", "std:a", "00", "{}").unwrap();
        expect(&j, "save_step", Change::Step { step: 0 });
        let planned = [
            PlannedAction {
                seq: 0,
                action_json: "{}",
                reversible: true,
            },
            PlannedAction {
                seq: 1,
                action_json: "{}",
                reversible: true,
            },
        ];
        j.save_plan(&run.id, 1, "b", "std:b", "00", "{}", &planned, &[])
            .unwrap();
        expect(&j, "save_plan", Change::Step { step: 1 });
        j.set_step_status(&run.id, 1, StepStatus::Applying, None)
            .unwrap();
        expect(&j, "set_step_status", Change::Step { step: 1 });
        let new = [
            NewAction {
                seq: 0,
                action_json: "{}",
                reversible: true,
                undo_json: None,
            },
            NewAction {
                seq: 1,
                action_json: "{}",
                reversible: true,
                undo_json: None,
            },
        ];
        j.intend(&run.id, 1, &new).unwrap();
        let actions = Change::Actions {
            step: 1,
            lo: 0,
            hi: 1,
        };
        expect(&j, "intend", actions);
        j.mark_done(&run.id, 1, &[(0, None), (1, None)]).unwrap();
        expect(&j, "mark_done", actions);
        j.set_action_state(&run.id, 1, 1, ActionState::Undone, None)
            .unwrap();
        let one = Change::Actions {
            step: 1,
            lo: 1,
            hi: 1,
        };
        expect(&j, "set_action_state", one);
        j.event(&run.id, Some(1), "info", "hello").unwrap();
        let id: i64 = j
            .conn
            .query_row("SELECT max(id) FROM events", [], |r| r.get(0))
            .unwrap();
        expect(&j, "event", Change::Event { id });
        j.set_run_status(&run.id, RunStatus::Committed, None)
            .unwrap();
        expect(&j, "set_run_status", Change::Run);
        // Each change names its run.
        let all = j.changes_after(0, Some(&run.id), 100).unwrap();
        assert_eq!(all.len(), 9);
        assert!(j.changes_after(0, Some("ffff"), 100).unwrap().is_empty());
    }

    /// A failed write leaves no change behind: the change is part of the
    /// transaction.
    /// A run is ended while its end mark is its last change: a later
    /// write (a resume of a stopped run, a commit of a held one) opens it
    /// again, until that command marks it ended again.
    #[test]
    fn a_run_is_ended_only_while_its_end_mark_is_its_last_change() {
        let tmp = tempfile::tempdir().unwrap();
        let j = Journal::open(tmp.path()).unwrap();
        let run = j.new_run(&new_run("x")).unwrap();
        let other = j.new_run(&new_run("y")).unwrap();
        assert!(!j.ended(&run.id).unwrap());
        j.set_run_status(&run.id, RunStatus::Held, None).unwrap();
        assert!(!j.ended(&run.id).unwrap(), "a status is not the end");
        j.end_run(&run.id).unwrap();
        assert!(j.ended(&run.id).unwrap());
        // Another run's writes do not open this one.
        j.event(&other.id, None, "info", "elsewhere").unwrap();
        assert!(j.ended(&run.id).unwrap() && !j.ended(&other.id).unwrap());
        j.set_run_status(&run.id, RunStatus::Committed, None)
            .unwrap();
        assert!(!j.ended(&run.id).unwrap());
        j.end_run(&run.id).unwrap();
        assert!(j.ended(&run.id).unwrap());
        let last = j.changes_after(0, Some(&run.id), 100).unwrap();
        assert_eq!(last.last().unwrap().change, Change::End);
    }

    #[test]
    fn a_failed_write_appends_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let j = Journal::open(tmp.path()).unwrap();
        let run = j.new_run(&new_run("x")).unwrap();
        let before = j.last_seq().unwrap();
        assert!(
            j.set_step_status(&run.id, 7, StepStatus::Applying, None)
                .is_err()
        );
        assert!(j.mark_done(&run.id, 7, &[(0, None)]).is_err());
        assert_eq!(j.last_seq().unwrap(), before);
    }

    #[test]
    fn journal_id_is_made_once_and_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let a = Journal::open(tmp.path()).unwrap().journal_id().unwrap();
        assert_eq!(a.len(), 16, "{a}");
        let b = Journal::open(tmp.path()).unwrap().journal_id().unwrap();
        assert_eq!(a, b);
        let other = tempfile::tempdir().unwrap();
        let c = Journal::open(other.path()).unwrap().journal_id().unwrap();
        assert_ne!(a, c);
    }

    /// A read-only journal follows what another connection writes, and
    /// refuses to write.
    #[test]
    fn read_only_follows_a_writer_and_writes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(Journal::open_read_only(tmp.path()).unwrap().is_none());
        let w = Journal::open(tmp.path()).unwrap();
        let run = w.new_run(&new_run("x")).unwrap();
        let r = Journal::open_read_only(tmp.path()).unwrap().unwrap();
        assert_eq!(r.journal_id().unwrap(), w.journal_id().unwrap());
        let v = r.data_version().unwrap();
        let seq = r.last_seq().unwrap();
        w.event(&run.id, None, "info", "one").unwrap();
        assert_ne!(
            r.data_version().unwrap(),
            v,
            "data_version moves on a commit"
        );
        let got = r.changes_after(seq, Some(&run.id), 10).unwrap();
        assert_eq!(got.len(), 1);
        let Change::Event { id } = got[0].change else {
            panic!("{got:?}")
        };
        assert_eq!(r.event_by_id(id).unwrap().message, "one");
        assert!(r.event(&run.id, None, "info", "two").is_err());
        assert_eq!(r.last_seq().unwrap(), got[0].seq);
    }
}
