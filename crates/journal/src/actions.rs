//! Actions of a step: intended before they are performed, done (with their
//! undo data) after, and undone on rollback.

use anyhow::{Context, Result, bail};
use rusqlite::params;

use super::{ActionRecord, ActionState, Change, Journal, NewAction, now_ms};

fn action_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ActionRecord> {
    Ok(ActionRecord {
        run_id: row.get(0)?,
        step_idx: row.get(1)?,
        seq: row.get(2)?,
        action_json: row.get(3)?,
        reversible: row.get(4)?,
        state: row.get(5)?,
        undo_json: row.get(6)?,
        intended_at: row.get(7)?,
        done_at: row.get(8)?,
        undone_at: row.get(9)?,
        error: row.get(10)?,
    })
}

impl Journal {
    /// Record actions as intended (state Intended), all in one transaction.
    /// A `planned` row becomes intended; a row already intended or beyond is
    /// left as is (idempotent per run, step, seq).
    pub fn intend(&self, run_id: &str, step_idx: u32, actions: &[NewAction]) -> Result<()> {
        let now = now_ms();
        let tx = self.write_tx()?;
        crate::bulk::explode(&tx, run_id, step_idx, actions.iter().map(|a| a.seq))?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO actions (run_id, step_idx, seq, action_json, reversible, state,
                     undo_json, intended_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (run_id, step_idx, seq) DO UPDATE SET
                     state = excluded.state, undo_json = excluded.undo_json,
                     intended_at = excluded.intended_at
                 WHERE actions.state = 'planned'",
            )?;
            for a in actions {
                stmt.execute(params![
                    run_id,
                    step_idx,
                    a.seq,
                    a.action_json,
                    a.reversible,
                    ActionState::Intended,
                    a.undo_json,
                    now
                ])
                .with_context(|| {
                    format!("cannot record action {step_idx}.{} of run {run_id}", a.seq)
                })?;
            }
        }
        tx.commit(
            run_id,
            Change::batch(step_idx, actions.iter().map(|a| a.seq)),
        )
        .context("cannot commit the intended actions")?;
        Ok(())
    }

    /// Mark actions done with their undo data (replacing any), all in one
    /// transaction. Sets `done_at` and clears `error`. Fails, writing
    /// nothing, if any action was not intended first.
    pub fn mark_done(
        &self,
        run_id: &str,
        step_idx: u32,
        done: &[(u32, Option<&str>)],
    ) -> Result<()> {
        let now = now_ms();
        let tx = self.write_tx()?;
        crate::bulk::explode(&tx, run_id, step_idx, done.iter().map(|d| d.0))?;
        {
            let mut stmt = tx.prepare_cached(
                "UPDATE actions SET state = ?4, undo_json = ?5, done_at = ?6, error = NULL
                 WHERE run_id = ?1 AND step_idx = ?2 AND seq = ?3",
            )?;
            for &(seq, undo_json) in done {
                let n = stmt.execute(params![
                    run_id,
                    step_idx,
                    seq,
                    ActionState::Done,
                    undo_json,
                    now
                ])?;
                if n == 0 {
                    bail!("action {step_idx}.{seq} of run {run_id} was never intended");
                }
            }
        }
        tx.commit(run_id, Change::batch(step_idx, done.iter().map(|d| d.0)))
            .context("cannot commit the done actions")?;
        Ok(())
    }

    /// Sets one action's state. `Done` sets `done_at`, `Undone` sets
    /// `undone_at` (both to now). `Some(error)` replaces the action's error;
    /// `None` keeps it, except on intended/done, which clear it.
    pub fn set_action_state(
        &self,
        run_id: &str,
        step_idx: u32,
        seq: u32,
        state: ActionState,
        error: Option<&str>,
    ) -> Result<()> {
        let now = now_ms();
        let keep_error = !matches!(state, ActionState::Intended | ActionState::Done);
        let tx = self.write_tx()?;
        crate::bulk::explode(&tx, run_id, step_idx, [seq])?;
        let n = tx.execute(
            "UPDATE actions SET state = ?4,
                 done_at = CASE WHEN ?4 = 'done' THEN ?5 ELSE done_at END,
                 undone_at = CASE WHEN ?4 = 'undone' THEN ?5 ELSE undone_at END,
                 error = CASE WHEN ?6 IS NOT NULL THEN ?6 WHEN ?7 THEN error END
             WHERE run_id = ?1 AND step_idx = ?2 AND seq = ?3",
            params![run_id, step_idx, seq, state, now, error, keep_error],
        )?;
        if n == 0 {
            bail!("run {run_id} has no action {step_idx}.{seq} in the journal");
        }
        let one = Change::Actions {
            step: step_idx,
            lo: seq,
            hi: seq,
        };
        tx.commit(run_id, one)
            .context("cannot commit the action state")?;
        Ok(())
    }

    /// How many of a step's actions are in each state, in `ActionState`
    /// order; states with none are left out. Counts, not rows: a reader
    /// following a run of 50,000 actions reads one small result.
    pub fn action_counts(&self, run_id: &str, step_idx: u32) -> Result<Vec<(ActionState, u64)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT state, count(*) FROM actions WHERE run_id = ?1 AND step_idx = ?2
             GROUP BY state",
        )?;
        let mut counts: Vec<(ActionState, u64)> = stmt
            .query_map(params![run_id, step_idx], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        for (state, n) in self.bulk_counts(run_id, step_idx)? {
            match counts.iter_mut().find(|(s, _)| *s == state) {
                Some((_, m)) => *m += n,
                None => counts.push((state, n)),
            }
        }
        counts.sort_by_key(|(s, _)| ActionState::ALL.iter().position(|a| a == s));
        Ok(counts)
    }

    /// A page of a step's actions: those with seq after `after` (all with
    /// None), by seq, at most `limit` (keyset paging on the primary key, so
    /// a page costs the same at action 49,800 as at action 0).
    pub fn actions_page(
        &self,
        run_id: &str,
        step_idx: u32,
        after: Option<u32>,
        limit: usize,
    ) -> Result<Vec<ActionRecord>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT run_id, step_idx, seq, action_json, reversible, state, undo_json,
                 intended_at, done_at, undone_at, error FROM actions
             WHERE run_id = ?1 AND step_idx = ?2 AND seq > ?3 ORDER BY seq LIMIT ?4",
        )?;
        let after = after.map_or(-1, i64::from);
        let mut rows: Vec<ActionRecord> = stmt
            .query_map(
                params![run_id, step_idx, after, limit as i64],
                action_from_row,
            )?
            .collect::<rusqlite::Result<_>>()?;
        rows.extend(self.bulk_page(run_id, step_idx, after, limit)?);
        rows.sort_by_key(|a| a.seq);
        rows.truncate(limit);
        Ok(rows)
    }

    /// The run's actions, by (step index, seq): those kept one row each and
    /// those of batches (`bulk`), one record per action either way.
    pub fn actions(&self, run_id: &str) -> Result<Vec<ActionRecord>> {
        let mut all = self.actions_rows(run_id)?;
        let bulk = self.bulk_all(run_id)?;
        if !bulk.is_empty() {
            all.extend(bulk);
            all.sort_by_key(|a| (a.step_idx, a.seq));
        }
        Ok(all)
    }

    /// A step's actions kept one row each (not those of its batches), by seq.
    pub fn step_rows(&self, run_id: &str, step_idx: u32) -> Result<Vec<ActionRecord>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT run_id, step_idx, seq, action_json, reversible, state, undo_json,
                 intended_at, done_at, undone_at, error
             FROM actions WHERE run_id = ?1 AND step_idx = ?2 ORDER BY seq",
        )?;
        let actions = stmt
            .query_map(params![run_id, step_idx], action_from_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(actions)
    }

    /// The run's actions kept one row each.
    fn actions_rows(&self, run_id: &str) -> Result<Vec<ActionRecord>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT run_id, step_idx, seq, action_json, reversible, state, undo_json,
                 intended_at, done_at, undone_at, error
             FROM actions WHERE run_id = ?1 ORDER BY step_idx, seq",
        )?;
        let actions = stmt
            .query_map([run_id], action_from_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(actions)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::new_run;
    use super::*;

    fn setup() -> (tempfile::TempDir, Journal, String) {
        let tmp = tempfile::tempdir().unwrap();
        let j = Journal::open(tmp.path()).unwrap();
        let run = j.new_run(&new_run("x")).unwrap();
        j.save_step(&run.id, 0, "s", "u", "c", "{}").unwrap();
        (tmp, j, run.id)
    }

    #[test]
    fn intend_is_idempotent() {
        let (_tmp, j, run) = setup();
        let first = [
            NewAction {
                seq: 0,
                action_json: r#"{"op":"a"}"#,
                reversible: true,
                undo_json: None,
            },
            NewAction {
                seq: 1,
                action_json: r#"{"op":"b"}"#,
                reversible: false,
                undo_json: Some("u1"),
            },
        ];
        j.intend(&run, 0, &first).unwrap();
        j.mark_done(&run, 0, &[(0, Some(r#"{"undo":"a"}"#))])
            .unwrap();

        // Re-intending (e.g. on resume) leaves existing rows alone, adds new.
        let again = [
            NewAction {
                seq: 0,
                action_json: r#"{"op":"CHANGED"}"#,
                reversible: false,
                undo_json: None,
            },
            NewAction {
                seq: 1,
                action_json: r#"{"op":"CHANGED"}"#,
                reversible: true,
                undo_json: None,
            },
            NewAction {
                seq: 2,
                action_json: r#"{"op":"c"}"#,
                reversible: true,
                undo_json: None,
            },
        ];
        j.intend(&run, 0, &again).unwrap();
        let acts = j.actions(&run).unwrap();
        assert_eq!(acts.len(), 3);
        assert_eq!(acts[0].action_json, r#"{"op":"a"}"#);
        assert_eq!(acts[0].state, ActionState::Done);
        assert!(acts[0].reversible);
        assert_eq!(acts[0].undo_json.as_deref(), Some(r#"{"undo":"a"}"#));
        assert!(acts[0].done_at.is_some());
        assert_eq!(acts[1].action_json, r#"{"op":"b"}"#);
        assert_eq!(acts[1].state, ActionState::Intended);
        assert!(!acts[1].reversible);
        assert_eq!(acts[1].undo_json.as_deref(), Some("u1"));
        assert_eq!(acts[1].done_at, None);
        assert_eq!(acts[2].seq, 2);
        assert_eq!(acts[2].state, ActionState::Intended);
    }

    #[test]
    fn action_states_and_ordering() {
        let (_tmp, j, run) = setup();
        j.save_step(&run, 1, "s1", "u", "c", "{}").unwrap();
        let a = |seq| NewAction {
            seq,
            action_json: "{}",
            reversible: true,
            undo_json: None,
        };
        j.intend(&run, 1, &[a(1), a(0)]).unwrap();
        j.intend(&run, 0, &[a(5)]).unwrap();
        let order: Vec<(u32, u32)> = j
            .actions(&run)
            .unwrap()
            .iter()
            .map(|a| (a.step_idx, a.seq))
            .collect();
        assert_eq!(order, [(0, 5), (1, 0), (1, 1)]);

        j.mark_done(&run, 1, &[(0, Some("undo0")), (1, None)])
            .unwrap();
        j.set_action_state(&run, 1, 0, ActionState::Undoing, None)
            .unwrap();
        j.set_action_state(&run, 1, 0, ActionState::Undone, None)
            .unwrap();
        j.set_action_state(&run, 1, 1, ActionState::Failed, Some("EPERM"))
            .unwrap();
        j.set_action_state(&run, 1, 1, ActionState::Undoing, None)
            .unwrap();
        let acts = j.actions(&run).unwrap();
        assert_eq!(acts[1].state, ActionState::Undone);
        assert!(acts[1].undone_at.is_some());
        assert_eq!(acts[1].undo_json.as_deref(), Some("undo0"));
        assert_eq!(acts[2].state, ActionState::Undoing);
        assert_eq!(acts[2].error.as_deref(), Some("EPERM"));
        assert_eq!(acts[2].undone_at, None);
        assert!(
            j.set_action_state(&run, 7, 0, ActionState::Done, None)
                .is_err()
        );
        let v = serde_json::to_value(&acts[1]).unwrap();
        assert_eq!(v["state"], "undone");
    }

    #[test]
    fn batch_of_ten_thousand_is_one_transaction_each() {
        let (_tmp, j, run) = setup();
        const N: u32 = 10_000;
        let jsons: Vec<String> = (0..N)
            .map(|i| format!(r#"{{"op":"touch","n":{i}}}"#))
            .collect();
        let undos: Vec<String> = (0..N)
            .map(|i| format!(r#"{{"op":"rm","n":{i}}}"#))
            .collect();
        let new: Vec<NewAction> = jsons
            .iter()
            .enumerate()
            .map(|(i, json)| NewAction {
                seq: i as u32,
                action_json: json,
                reversible: true,
                undo_json: None,
            })
            .collect();
        let t = std::time::Instant::now();
        j.intend(&run, 0, &new).unwrap();
        let done: Vec<(u32, Option<&str>)> = undos
            .iter()
            .enumerate()
            .map(|(i, u)| (i as u32, Some(u.as_str())))
            .collect();
        j.mark_done(&run, 0, &done).unwrap();
        // One fsync'd commit each: seconds, not the minutes 20,000 commits
        // would take. Reported, not asserted.
        eprintln!("10,000 intends + 10,000 done: {:?}", t.elapsed());

        let acts = j.actions(&run).unwrap();
        assert_eq!(acts.len(), N as usize);
        for (i, a) in acts.iter().enumerate() {
            assert_eq!(a.seq, i as u32);
            assert_eq!(a.state, ActionState::Done);
            assert_eq!(a.action_json, jsons[i]);
            assert_eq!(a.undo_json.as_deref(), Some(undos[i].as_str()));
        }
        // All of a batch shares one timestamp: they were written together.
        assert!(acts.iter().all(|a| a.intended_at == acts[0].intended_at));
        assert!(acts.iter().all(|a| a.done_at == acts[0].done_at));

        // And a batch is atomic: one bad entry (never intended) writes nothing.
        let bad: Vec<(u32, Option<&str>)> = (0..N)
            .map(|i| (i, Some("new")))
            .chain([(N + 1, None)])
            .collect();
        let err = j.mark_done(&run, 0, &bad).unwrap_err();
        assert!(err.to_string().contains("never intended"), "{err}");
        assert!(
            j.actions(&run)
                .unwrap()
                .iter()
                .all(|a| a.undo_json.as_deref() != Some("new"))
        );
    }
}
