//! Batches of removals as one journal row each (`bulk`): up to a few
//! thousand consecutive removals of a step share a state, an intent time and
//! a done time, and their actions and undo data are zstd-compressed JSON
//! lines (a JSON text never holds a raw newline). A cull of a million files
//! writes some 500 rows instead of a million, each a few kilobytes.
//!
//! Readers do not see the difference: `actions`, `actions_page` and
//! `action_counts` give one `ActionRecord` per action of a batch. A write
//! that names one action of a batch (a failure, a rollback stopped inside
//! it) first turns the batch back into one row per action, in the same
//! transaction (`explode`), so every per-action state a journal could hold
//! before is still held exactly. A rollback that undoes a whole batch
//! records it `undone` in one write (`undone_bulk`).

use anyhow::{Context, Result, bail};
use rusqlite::{OptionalExtension, params};

use super::{ActionRecord, ActionState, Change, Journal, now_ms};

/// zstd level of the blobs: JSON lines of paths in one directory compress
/// some 25 times at level 1 (a WAL archive's batch of 2,048: 416 KB to 15.4
/// KB, where level 3 gave 16.2 KB). Level 3's tables are 12 times bigger:
/// clearing them cost a run of the 10,000-segment WAL archive some 600 page
/// faults.
const LEVEL: i32 = 1;

/// A batch of a step's plan, journaled when the step is planned: packed
/// when made, so a plan of a million removals is not held as JSON text.
pub struct PlannedBulk {
    /// The seq of its first action; the others follow without gaps.
    pub lo: u32,
    /// All of them reversible, or none.
    pub reversible: bool,
    n: u32,
    blob: Vec<u8>,
}

impl PlannedBulk {
    /// A batch of the actions `actions` (their JSON), the first at `lo`.
    pub fn new(lo: u32, reversible: bool, actions: &[&str]) -> Result<PlannedBulk> {
        Ok(PlannedBulk {
            lo,
            reversible,
            n: actions.len() as u32,
            blob: pack(actions)?,
        })
    }

    /// A batch the host packed (with [`pack`]) while the step planned.
    pub fn of(p: &mend_plan::Packed) -> PlannedBulk {
        PlannedBulk {
            lo: p.lo,
            reversible: p.reversible,
            n: p.n,
            blob: p.blob.clone(),
        }
    }
}

/// A batch as the journal holds it, without its actions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BulkRange {
    pub lo: u32,
    pub n: u32,
    pub state: ActionState,
}

/// JSON lines (none holding a newline), compressed as a batch keeps them.
/// The blob is exactly as long as it is: a plan holds its batches for its
/// whole life.
pub fn pack(lines: &[&str]) -> Result<Vec<u8>> {
    // One compression context and two buffers per thread, reused: a fresh
    // context per batch cleared its tables each time, and fresh buffers
    // (the batch's text, and zstd's bound on its output, each some 400 KB
    // for 2,048 removals) were new pages to fault in for every batch.
    struct Packer {
        compressor: zstd::bulk::Compressor<'static>,
        text: Vec<u8>,
        out: Vec<u8>,
    }
    thread_local! {
        static PACKER: std::cell::RefCell<Option<Packer>> = const { std::cell::RefCell::new(None) };
    }
    PACKER.with_borrow_mut(|p| {
        let p = match p {
            Some(p) => p,
            None => p.insert(Packer {
                compressor: zstd::bulk::Compressor::new(LEVEL)?,
                text: Vec::new(),
                out: Vec::new(),
            }),
        };
        p.text.clear();
        p.text.reserve(lines.iter().map(|l| l.len() + 1).sum());
        for l in lines {
            if l.contains('\n') {
                return Err(anyhow::anyhow!("a journal line holds a newline"));
            }
            p.text.extend_from_slice(l.as_bytes());
            p.text.push(b'\n');
        }
        p.out.clear();
        p.out.reserve(zstd::compress_bound(p.text.len()));
        let n = p
            .compressor
            .compress_to_buffer(&p.text, &mut p.out)
            .context("cannot compress a batch of actions")?;
        let blob = p.out[..n].to_vec();
        // A batch far bigger than the usual (a plan's returned list
        // packed whole) does not keep its buffers for the thread's life.
        if p.text.capacity() > MAX_KEPT {
            p.text = Vec::new();
            p.out = Vec::new();
        }
        Ok(blob)
    })
}

/// The most buffer [`pack`] keeps between batches: a full batch of 2,048
/// removals in nested folders.
const MAX_KEPT: usize = 4 << 20;

/// The `n` lines of a packed batch; `what` names them in errors.
pub fn unpack(blob: &[u8], n: u32, what: &str) -> Result<Vec<String>> {
    let text = zstd::stream::decode_all(blob)
        .with_context(|| format!("the {what} of a batch of actions do not decompress"))?;
    let text = String::from_utf8(text)
        .with_context(|| format!("the {what} of a batch of actions are not UTF-8"))?;
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    if lines.len() != n as usize {
        bail!(
            "a batch of {n} actions holds {} lines of {what}",
            lines.len()
        );
    }
    Ok(lines)
}

struct Row {
    step_idx: u32,
    lo: u32,
    n: u32,
    reversible: bool,
    state: ActionState,
    actions: Vec<u8>,
    undo: Option<Vec<u8>>,
    intended_at: Option<i64>,
    done_at: Option<i64>,
    undone_at: Option<i64>,
}

const COLS: &str =
    "step_idx, lo, n, reversible, state, actions, undo, intended_at, done_at, undone_at";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok(Row {
        step_idx: r.get(0)?,
        lo: r.get(1)?,
        n: r.get(2)?,
        reversible: r.get(3)?,
        state: r.get(4)?,
        actions: r.get(5)?,
        undo: r.get(6)?,
        intended_at: r.get(7)?,
        done_at: r.get(8)?,
        undone_at: r.get(9)?,
    })
}

impl Row {
    /// One record per action, as a row per action would read.
    fn records(&self, run_id: &str) -> Result<Vec<ActionRecord>> {
        let actions = unpack(&self.actions, self.n, "actions")?;
        let undo = match &self.undo {
            Some(b) => unpack(b, self.n, "undo data")?
                .into_iter()
                .map(Some)
                .collect(),
            None => vec![None; self.n as usize],
        };
        Ok(actions
            .into_iter()
            .zip(undo)
            .enumerate()
            .map(|(i, (action_json, undo_json))| ActionRecord {
                run_id: run_id.to_string(),
                step_idx: self.step_idx,
                seq: self.lo + i as u32,
                action_json,
                reversible: self.reversible,
                state: self.state,
                undo_json,
                intended_at: self.intended_at,
                done_at: self.done_at,
                undone_at: self.undone_at,
                error: None,
            })
            .collect())
    }
}

/// Saves a step's batches as planned (none already there is replaced).
pub(crate) fn save_planned(
    tx: &rusqlite::Transaction<'_>,
    run_id: &str,
    step_idx: u32,
    bulk: &[PlannedBulk],
) -> Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO bulk (run_id, step_idx, lo, n, reversible, state, actions)
         VALUES (?1, ?2, ?3, ?4, ?5, 'planned', ?6)
         ON CONFLICT (run_id, step_idx, lo) DO NOTHING",
    )?;
    for b in bulk {
        stmt.execute(params![run_id, step_idx, b.lo, b.n, b.reversible, b.blob])
            .with_context(|| {
                format!(
                    "cannot record actions {step_idx}.{}.. of run {run_id}",
                    b.lo
                )
            })?;
    }
    Ok(())
}

/// Turns the batches of a step that hold any of `seqs` back into one
/// `actions` row per action, so that one of them can change alone.
pub(crate) fn explode(
    tx: &rusqlite::Transaction<'_>,
    run_id: &str,
    step_idx: u32,
    seqs: impl IntoIterator<Item = u32>,
) -> Result<()> {
    let any: bool = tx
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM bulk WHERE run_id = ?1 AND step_idx = ?2)")?
        .query_row(params![run_id, step_idx], |r| r.get(0))?;
    if !any {
        return Ok(());
    }
    for seq in seqs {
        let found = tx
            .prepare_cached(&format!(
                "SELECT {COLS} FROM bulk WHERE run_id = ?1 AND step_idx = ?2 AND lo <= ?3
                 ORDER BY lo DESC LIMIT 1"
            ))?
            .query_row(params![run_id, step_idx, seq], row)
            .optional()?;
        let Some(b) = found.filter(|b| seq < b.lo + b.n) else {
            continue;
        };
        let mut ins = tx.prepare_cached(
            "INSERT INTO actions (run_id, step_idx, seq, action_json, reversible, state,
                 undo_json, intended_at, done_at, undone_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        for r in b.records(run_id)? {
            ins.execute(params![
                run_id,
                step_idx,
                r.seq,
                r.action_json,
                r.reversible,
                r.state,
                r.undo_json,
                r.intended_at,
                r.done_at,
                r.undone_at
            ])?;
        }
        tx.execute(
            "DELETE FROM bulk WHERE run_id = ?1 AND step_idx = ?2 AND lo = ?3",
            params![run_id, step_idx, b.lo],
        )?;
    }
    Ok(())
}

/// Commits a change to actions `lo..=hi` of a step; `what` names it in
/// the error.
fn commit_actions(
    tx: crate::changes::JournalTx<'_>,
    run_id: &str,
    step_idx: u32,
    (lo, hi): (u32, u32),
    what: &str,
) -> Result<()> {
    tx.commit(
        run_id,
        Change::Actions {
            step: step_idx,
            lo,
            hi,
        },
    )
    .with_context(|| format!("cannot commit {what}"))?;
    Ok(())
}

impl Journal {
    /// A step's batches, by first seq, without their actions.
    pub fn bulk_ranges(&self, run_id: &str, step_idx: u32) -> Result<Vec<BulkRange>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT lo, n, state FROM bulk WHERE run_id = ?1 AND step_idx = ?2 ORDER BY lo",
        )?;
        let rows = stmt
            .query_map(params![run_id, step_idx], |r| {
                Ok(BulkRange {
                    lo: r.get(0)?,
                    n: r.get(1)?,
                    state: r.get(2)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// The records of one batch (its actions, and its undo data once intended).
    pub fn bulk_records(&self, run_id: &str, step_idx: u32, lo: u32) -> Result<Vec<ActionRecord>> {
        let b = self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLS} FROM bulk WHERE run_id = ?1 AND step_idx = ?2 AND lo = ?3"
            ))?
            .query_row(params![run_id, step_idx, lo], row)
            .optional()?;
        match b {
            Some(b) => b.records(run_id),
            None => bail!("run {run_id} has no batch of actions at {step_idx}.{lo}"),
        }
    }

    /// The actions of one batch, as JSON lines: what the apply reads back,
    /// without the undo data or a record per action.
    pub fn bulk_actions(&self, run_id: &str, step_idx: u32, lo: u32) -> Result<Vec<String>> {
        let b: Option<(Vec<u8>, u32)> = self
            .conn
            .prepare_cached(
                "SELECT actions, n FROM bulk WHERE run_id = ?1 AND step_idx = ?2 AND lo = ?3",
            )?
            .query_row(params![run_id, step_idx, lo], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        match b {
            Some((blob, n)) => unpack(&blob, n, "actions"),
            None => bail!("run {run_id} has no batch of actions at {step_idx}.{lo}"),
        }
    }

    /// Records a planned batch as intended, with each action's undo data
    /// (its state before), in one commit. A batch intended already is left
    /// as it is.
    pub fn intend_bulk(&self, run_id: &str, step_idx: u32, lo: u32, undo: &[&str]) -> Result<()> {
        self.bulk_state(run_id, step_idx, lo, ActionState::Intended, undo, None)
    }

    /// Journals one batch of a step that is still planning (see
    /// [`Journal::start_step`]) as planned and intended at once, with each
    /// action's undo data, in one commit: the early performer's, where
    /// nothing happens between the two.
    pub fn plan_and_intend_bulk(
        &self,
        run_id: &str,
        step_idx: u32,
        bulk: &PlannedBulk,
        undo: &[&str],
    ) -> Result<()> {
        let (lo, state) = (bulk.lo, ActionState::Intended);
        self.bulk_state(run_id, step_idx, lo, state, undo, Some(bulk))
    }

    /// Records an intended batch as done, with each action's undo data, in
    /// one commit.
    pub fn done_bulk(&self, run_id: &str, step_idx: u32, lo: u32, undo: &[&str]) -> Result<()> {
        self.bulk_state(run_id, step_idx, lo, ActionState::Done, undo, None)
    }

    /// Moves batch `lo` on to `state` (intended from planned, done from
    /// intended) with its actions' undo data, in one commit; a batch not
    /// yet journaled (`planned`) is saved first, in the same commit.
    fn bulk_state(
        &self,
        run_id: &str,
        step_idx: u32,
        lo: u32,
        state: ActionState,
        undo: &[&str],
        planned: Option<&PlannedBulk>,
    ) -> Result<()> {
        let now = now_ms();
        let (from, at) = match state {
            ActionState::Intended => ("planned", "intended_at"),
            _ => ("intended", "done_at"),
        };
        // Packed before the write transaction, which it would only hold
        // longer.
        let blob = pack(undo)?;
        let tx = self.write_tx()?;
        if let Some(b) = planned {
            save_planned(&tx, run_id, step_idx, std::slice::from_ref(b))?;
        }
        // Cached: a run writes it twice a batch, and each prepare compiles
        // the table's checksum triggers again.
        let n = tx
            .prepare_cached(&format!(
                "UPDATE bulk SET state = ?4, undo = ?5, {at} = ?6
                 WHERE run_id = ?1 AND step_idx = ?2 AND lo = ?3 AND n = ?7 AND state = '{from}'"
            ))?
            .execute(params![
                run_id,
                step_idx,
                lo,
                state,
                blob,
                now,
                undo.len() as u32
            ])?;
        if n == 0 && state == ActionState::Done {
            bail!(
                "actions {step_idx}.{lo}.. of run {run_id} were never intended as a batch of {}",
                undo.len()
            );
        }
        let hi = lo + undo.len().saturating_sub(1) as u32;
        commit_actions(tx, run_id, step_idx, (lo, hi), "a batch of actions")
    }

    /// Records a batch the rollback undid, every action of it, as undone in
    /// one commit: the batch stays one row. Until then it reads done (or
    /// intended), and a rollback killed inside it undoes it again, each undo
    /// looking at the world first (a restore whose trash is gone is done).
    pub fn undone_bulk(&self, run_id: &str, step_idx: u32, lo: u32) -> Result<()> {
        let now = now_ms();
        let tx = self.write_tx()?;
        let n: Option<u32> = tx
            .query_row(
                "UPDATE bulk SET state = 'undone', undone_at = ?4
                 WHERE run_id = ?1 AND step_idx = ?2 AND lo = ?3
                   AND state IN ('intended', 'done', 'undone')
                 RETURNING n",
                params![run_id, step_idx, lo, now],
                |r| r.get(0),
            )
            .optional()?;
        let Some(n) = n else {
            bail!("run {run_id} has no performed batch of actions at {step_idx}.{lo}");
        };
        let span = (lo, lo + n - 1);
        commit_actions(
            tx,
            run_id,
            step_idx,
            span,
            "the undoing of a batch of actions",
        )
    }

    /// A rollback stopped inside a batch: the batch becomes a row per action
    /// (as any write to one of its actions does), and `undone`, the ones it
    /// undid before it stopped, are recorded undone, in one commit.
    pub fn partly_undone_bulk(
        &self,
        run_id: &str,
        step_idx: u32,
        lo: u32,
        undone: &[u32],
    ) -> Result<()> {
        let now = now_ms();
        let tx = self.write_tx()?;
        explode(&tx, run_id, step_idx, [lo])?;
        let mut set = tx.prepare_cached(
            "UPDATE actions SET state = 'undone', undone_at = ?4
             WHERE run_id = ?1 AND step_idx = ?2 AND seq = ?3",
        )?;
        for &seq in undone {
            set.execute(params![run_id, step_idx, seq, now])?;
        }
        drop(set);
        let span = (lo, undone.iter().copied().max().unwrap_or(lo));
        commit_actions(
            tx,
            run_id,
            step_idx,
            span,
            "the undoing of a batch of actions",
        )
    }

    /// Every batch of a run as records, by (step, seq).
    pub(crate) fn bulk_all(&self, run_id: &str) -> Result<Vec<ActionRecord>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {COLS} FROM bulk WHERE run_id = ?1 ORDER BY step_idx, lo"
        ))?;
        let rows: Vec<Row> = stmt
            .query_map([run_id], row)?
            .collect::<rusqlite::Result<_>>()?;
        let mut out = Vec::new();
        for b in rows {
            out.extend(b.records(run_id)?);
        }
        Ok(out)
    }

    /// Records of a step's batches with seq after `after`, at least `limit`
    /// of them when there are (whole batches, by seq).
    pub(crate) fn bulk_page(
        &self,
        run_id: &str,
        step_idx: u32,
        after: i64,
        limit: usize,
    ) -> Result<Vec<ActionRecord>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {COLS} FROM bulk WHERE run_id = ?1 AND step_idx = ?2 AND lo + n - 1 > ?3
             ORDER BY lo"
        ))?;
        let mut rows = stmt.query(params![run_id, step_idx, after])?;
        let mut out = Vec::new();
        while out.len() < limit {
            let Some(r) = rows.next()? else { break };
            let b = row(r)?;
            out.extend(
                b.records(run_id)?
                    .into_iter()
                    .filter(|a| i64::from(a.seq) > after),
            );
        }
        Ok(out)
    }

    /// How many actions of a step's batches are in each state.
    pub(crate) fn bulk_counts(
        &self,
        run_id: &str,
        step_idx: u32,
    ) -> Result<Vec<(ActionState, u64)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT state, sum(n) FROM bulk WHERE run_id = ?1 AND step_idx = ?2 GROUP BY state",
        )?;
        let rows = stmt
            .query_map(params![run_id, step_idx], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// How many of a run's actions are done, undoing or undone (all its
    /// steps, rows and batches), without reading them.
    pub fn actions_done(&self, run_id: &str) -> Result<u64> {
        let rows: u64 = self.conn.query_row(
            "SELECT count(*) FROM actions WHERE run_id = ?1
                 AND state IN ('done', 'undoing', 'undone')",
            [run_id],
            |r| r.get(0),
        )?;
        let bulk: u64 = self.conn.query_row(
            "SELECT coalesce(sum(n), 0) FROM bulk WHERE run_id = ?1 AND state IN ('done', 'undone')",
            [run_id],
            |r| r.get(0),
        )?;
        Ok(rows + bulk)
    }

    /// Calls `f` with each of a step's actions, rows and batches, one
    /// batch in memory at a time (not in seq order across the two).
    pub fn each_action(
        &self,
        run_id: &str,
        step_idx: u32,
        mut f: impl FnMut(&ActionRecord),
    ) -> Result<()> {
        self.step_rows(run_id, step_idx)?.iter().for_each(&mut f);
        for b in self.bulk_ranges(run_id, step_idx)? {
            self.bulk_records(run_id, step_idx, b.lo)?
                .iter()
                .for_each(&mut f);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::new_run;
    use super::*;

    #[test]
    fn a_batch_is_one_row_read_as_one_record_per_action_and_split_when_one_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let j = Journal::open(tmp.path()).unwrap();
        let run = j.new_run(&new_run("x")).unwrap().id;
        let json: Vec<String> = (0..5)
            .map(|i| format!(r#"{{"op":"remove","path":"g/f{i}"}}"#))
            .collect();
        let one = super::super::PlannedAction {
            seq: 5,
            action_json: r#"{"op":"create-dir","path":"g/d"}"#,
            reversible: true,
        };
        let lines: Vec<&str> = json.iter().map(String::as_str).collect();
        let bulk = PlannedBulk::new(0, true, &lines).unwrap();
        j.save_plan(&run, 0, "s", "u", "c", "{}", &[one], &[bulk])
            .unwrap();
        let rows = |t: &str| -> i64 {
            j.conn
                .query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!((rows("bulk"), rows("actions")), (1, 1));
        let all = j.actions(&run).unwrap();
        assert_eq!(all.len(), 6);
        assert!(all[..5].iter().all(|a| a.state == ActionState::Planned));
        assert_eq!(all[3].action_json, json[3]);
        assert_eq!(all[5].seq, 5);

        let pre: Vec<String> = (0..5).map(|i| format!("pre{i}")).collect();
        let pre: Vec<&str> = pre.iter().map(String::as_str).collect();
        // Done before intended is refused; a batch of another size too.
        assert!(j.done_bulk(&run, 0, 0, &pre).is_err());
        j.intend_bulk(&run, 0, 0, &pre).unwrap();
        assert!(j.done_bulk(&run, 0, 0, &pre[..4]).is_err());
        let undo: Vec<String> = (0..5).map(|i| format!("undo{i}")).collect();
        let undo: Vec<&str> = undo.iter().map(String::as_str).collect();
        j.done_bulk(&run, 0, 0, &undo).unwrap();
        assert_eq!(
            j.bulk_ranges(&run, 0).unwrap(),
            [BulkRange {
                lo: 0,
                n: 5,
                state: ActionState::Done
            }]
        );
        let all = j.actions(&run).unwrap();
        assert!(all[..5].iter().all(|a| a.state == ActionState::Done));
        assert_eq!(all[2].undo_json.as_deref(), Some("undo2"));
        assert_eq!(
            j.action_counts(&run, 0).unwrap(),
            [(ActionState::Planned, 1), (ActionState::Done, 5)]
        );
        let page = j.actions_page(&run, 0, Some(1), 3).unwrap();
        let seqs: Vec<u32> = page.iter().map(|a| a.seq).collect();
        assert_eq!(seqs, [2, 3, 4]);
        assert_eq!(j.actions_done(&run).unwrap(), 5);
        j.verify_run(&run).unwrap();

        // One action changes alone: the batch becomes rows, nothing lost.
        j.set_action_state(&run, 0, 3, ActionState::Undone, None)
            .unwrap();
        assert_eq!((rows("bulk"), rows("actions")), (0, 6));
        let all = j.actions(&run).unwrap();
        assert_eq!(all[3].state, ActionState::Undone);
        assert_eq!(all[4].state, ActionState::Done);
        assert_eq!(all[4].undo_json.as_deref(), Some("undo4"));
        assert_eq!(all[4].action_json, json[4]);
        j.verify_run(&run).unwrap();
    }

    #[test]
    fn a_batch_undone_whole_stays_one_row_and_one_stopped_inside_splits() {
        let tmp = tempfile::tempdir().unwrap();
        let j = Journal::open(tmp.path()).unwrap();
        let run = j.new_run(&new_run("x")).unwrap().id;
        let json: Vec<String> = (0..8)
            .map(|i| format!(r#"{{"op":"remove","path":"g/f{i}"}}"#))
            .collect();
        let lines: Vec<&str> = json.iter().map(String::as_str).collect();
        let a = PlannedBulk::new(0, true, &lines[..4]).unwrap();
        let b = PlannedBulk::new(4, true, &lines[4..]).unwrap();
        j.save_plan(&run, 0, "s", "u", "c", "{}", &[], &[a, b])
            .unwrap();
        let undo = ["u"; 4];
        // A planned batch was never performed: nothing to record undone.
        assert!(j.undone_bulk(&run, 0, 0).is_err());
        for lo in [0, 4] {
            j.intend_bulk(&run, 0, lo, &undo).unwrap();
            j.done_bulk(&run, 0, lo, &undo).unwrap();
        }
        let rows = |t: &str| -> i64 {
            j.conn
                .query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0))
                .unwrap()
        };
        j.undone_bulk(&run, 0, 4).unwrap();
        assert_eq!((rows("bulk"), rows("actions")), (2, 0));
        let all = j.actions(&run).unwrap();
        assert!(all[4..].iter().all(|a| a.state == ActionState::Undone));
        assert!(all[4..].iter().all(|a| a.undone_at.is_some()));
        assert!(all[..4].iter().all(|a| a.state == ActionState::Done));
        assert_eq!(j.actions_done(&run).unwrap(), 8);
        assert!(j.undo_span(&run, 0).unwrap().is_some());
        j.verify_run(&run).unwrap();

        // Stopped after undoing 3 and 2: those undone, the rest kept.
        j.partly_undone_bulk(&run, 0, 0, &[3, 2]).unwrap();
        assert_eq!((rows("bulk"), rows("actions")), (1, 4));
        let states: Vec<ActionState> = j.actions(&run).unwrap().iter().map(|a| a.state).collect();
        use ActionState::{Done, Undone};
        assert_eq!(
            states,
            [Done, Done, Undone, Undone, Undone, Undone, Undone, Undone]
        );
        j.verify_run(&run).unwrap();
    }

    /// The packer's context and buffers serve batch after batch: each blob
    /// is exact, holds its own lines only, and a refused batch leaves the
    /// next one whole.
    #[test]
    fn batches_packed_one_after_another_each_unpack_to_their_own_lines() {
        let big: Vec<String> = (0..2048)
            .map(|i| format!(r#"{{"kind":"remove","path":"data/00000001{i:016X}"}}"#))
            .collect();
        let big: Vec<&str> = big.iter().map(String::as_str).collect();
        let small = ["{\"a\":1}", "{\"b\":2}"];
        let first = pack(&big).unwrap();
        assert_eq!(first.len(), first.capacity(), "a blob is as long as it is");
        let second = pack(&small).unwrap();
        assert!(pack(&["one", "two\nthree"]).is_err());
        let third = pack(&big).unwrap();
        assert_eq!(unpack(&second, 2, "test").unwrap(), small);
        assert_eq!(unpack(&first, 2048, "test").unwrap(), big);
        assert_eq!(
            first, third,
            "the same lines pack the same after other batches"
        );
        // Fresh in another thread (its own packer): the same blob.
        let again = std::thread::scope(|s| s.spawn(|| pack(&big).unwrap()).join().unwrap());
        assert_eq!(again, first);
    }
}
