//! Steps of a run: the resolved plan and the step's status.

use anyhow::{Context, Result, bail};
use rusqlite::params;

use super::{Change, Journal, StepRecord, StepStatus, now_ms};

impl Journal {
    /// Insert or replace the step row (status Planned), with the step's
    /// resolved plan as JSON. Replacing resets `started_at` to now and clears
    /// `finished_at` and `error`; the step's actions are kept.
    pub fn save_step(
        &self,
        run_id: &str,
        idx: u32,
        step_id: &str,
        uses: &str,
        component_sha256: &str,
        plan_json: &str,
    ) -> Result<()> {
        let row = (step_id, uses, component_sha256);
        self.put_step(run_id, idx, row, plan_json, StepStatus::Planned)
    }

    /// The step row of a step that performs removals while it plans
    /// (status applying; `plan_json` holds the roots' times and no plan,
    /// `SavedStep::planning`): its batches of removals are
    /// journaled one by one as they arrive ([`Journal::plan_and_intend_bulk`]), and
    /// `save_plan` adds the rest of the plan when planning ends. A resume
    /// finds no plan, finishes the batches journaled and plans again from
    /// the seq after them.
    pub fn start_step(
        &self,
        run_id: &str,
        idx: u32,
        step_id: &str,
        uses: &str,
        component_sha256: &str,
        plan_json: &str,
    ) -> Result<()> {
        let row = (step_id, uses, component_sha256);
        self.put_step(run_id, idx, row, plan_json, StepStatus::Applying)
    }

    /// The step row alone, in a commit of its own.
    fn put_step(
        &self,
        run_id: &str,
        idx: u32,
        row: (&str, &str, &str),
        plan_json: &str,
        status: StepStatus,
    ) -> Result<()> {
        let tx = self.write_tx()?;
        upsert_step(&tx, run_id, idx, row, plan_json, status)?;
        tx.commit(run_id, Change::Step { step: idx })
            .context("cannot commit the step")?;
        Ok(())
    }

    /// Save a step's plan: the step row (as `save_step`), one `planned`
    /// row per action and one per batch of removals (`bulk`), in one
    /// transaction. `plan_json` holds what the plan
    /// says besides its actions; the actions are journaled only here.
    #[allow(clippy::too_many_arguments)]
    pub fn save_plan(
        &self,
        run_id: &str,
        idx: u32,
        step_id: &str,
        uses: &str,
        component_sha256: &str,
        plan_json: &str,
        actions: &[super::PlannedAction],
        bulk: &[super::PlannedBulk],
    ) -> Result<()> {
        let tx = self.write_tx()?;
        let row = (step_id, uses, component_sha256);
        upsert_step(&tx, run_id, idx, row, plan_json, StepStatus::Planned)?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO actions (run_id, step_idx, seq, action_json, reversible, state)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'planned')
                 ON CONFLICT (run_id, step_idx, seq) DO NOTHING",
            )?;
            for a in actions {
                stmt.execute(params![run_id, idx, a.seq, a.action_json, a.reversible])
                    .with_context(|| {
                        format!("cannot record action {idx}.{} of run {run_id}", a.seq)
                    })?;
            }
        }
        crate::bulk::save_planned(&tx, run_id, idx, bulk)?;
        tx.commit(run_id, Change::Step { step: idx })
            .context("cannot commit the step's plan")?;
        Ok(())
    }

    /// Sets a step's status. Applied, verified, failed and undone set
    /// `finished_at` to now; pending, planned and applying clear it.
    /// `Some(error)` replaces the step's error; `None` keeps it, except on
    /// pending/planned/applying (a retry), which clear it.
    pub fn set_step_status(
        &self,
        run_id: &str,
        idx: u32,
        status: StepStatus,
        error: Option<&str>,
    ) -> Result<()> {
        let finished = status.is_finished();
        let finished_at = finished.then(now_ms);
        let tx = self.write_tx()?;
        let n = tx
            .prepare_cached(
                "UPDATE steps SET status = ?3, finished_at = ?4,
                     error = CASE WHEN ?5 IS NOT NULL THEN ?5 WHEN ?6 THEN error END
                 WHERE run_id = ?1 AND idx = ?2",
            )?
            .execute(params![run_id, idx, status, finished_at, error, finished])?;
        if n == 0 {
            bail!("run {run_id} has no step {idx} in the journal");
        }
        tx.commit(run_id, Change::Step { step: idx })
            .context("cannot commit the step status")?;
        Ok(())
    }

    /// The run's steps, by index.
    pub fn steps(&self, run_id: &str) -> Result<Vec<StepRecord>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT run_id, idx, step_id, uses, component_sha256, status, plan_json,
                 started_at, finished_at, error
             FROM steps WHERE run_id = ?1 ORDER BY idx",
        )?;
        let steps = stmt
            .query_map([run_id], |row| {
                Ok(StepRecord {
                    run_id: row.get(0)?,
                    idx: row.get(1)?,
                    step_id: row.get(2)?,
                    uses: row.get(3)?,
                    component_sha256: row.get(4)?,
                    status: row.get(5)?,
                    plan_json: row.get(6)?,
                    started_at: row.get(7)?,
                    finished_at: row.get(8)?,
                    error: row.get(9)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(steps)
    }
}

/// The step row, planned now: inserted, or reset if the step is planned
/// again. An upsert, not `INSERT OR REPLACE`: a REPLACE deletes the old row
/// first, which would fire the foreign keys' delete actions.
fn upsert_step(
    tx: &rusqlite::Connection,
    run_id: &str,
    idx: u32,
    (step_id, uses, component_sha256): (&str, &str, &str),
    plan_json: &str,
    status: StepStatus,
) -> Result<()> {
    tx.execute(
        "INSERT INTO steps (run_id, idx, step_id, uses, component_sha256, status,
             plan_json, started_at, finished_at, error)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL, NULL)
         ON CONFLICT (run_id, idx) DO UPDATE SET
             step_id = excluded.step_id, uses = excluded.uses,
             component_sha256 = excluded.component_sha256, status = excluded.status,
             plan_json = excluded.plan_json, started_at = excluded.started_at,
             finished_at = NULL, error = NULL",
        params![
            run_id,
            idx,
            step_id,
            uses,
            component_sha256,
            status,
            plan_json,
            now_ms()
        ],
    )
    .with_context(|| format!("cannot save step {idx} of run {run_id}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::new_run;
    use super::*;

    #[test]
    fn step_lifecycle() {
        let tmp = tempfile::tempdir().unwrap();
        let j = Journal::open(tmp.path()).unwrap();
        let run = j.new_run(&new_run("x")).unwrap();
        j.save_step(&run.id, 1, "restart", "steps/systemd", "cc", r#"{"b":1}"#)
            .unwrap();
        j.save_step(&run.id, 0, "stop", "steps/systemd", "cc", r#"{"a":1}"#)
            .unwrap();
        let steps = j.steps(&run.id).unwrap();
        assert_eq!(steps.len(), 2);
        assert_eq!((steps[0].idx, steps[0].step_id.as_str()), (0, "stop"));
        assert_eq!(steps[1].idx, 1);
        assert_eq!(steps[0].status, StepStatus::Planned);
        assert_eq!(steps[0].plan_json.as_deref(), Some(r#"{"a":1}"#));
        assert_eq!(steps[0].finished_at, None);

        j.set_step_status(&run.id, 0, StepStatus::Applying, None)
            .unwrap();
        j.set_step_status(&run.id, 0, StepStatus::Failed, Some("boom"))
            .unwrap();
        let s = &j.steps(&run.id).unwrap()[0];
        assert_eq!(s.status, StepStatus::Failed);
        assert_eq!(s.error.as_deref(), Some("boom"));
        assert!(s.finished_at.is_some());
        j.set_step_status(&run.id, 0, StepStatus::Undone, None)
            .unwrap();
        let s = &j.steps(&run.id).unwrap()[0];
        assert_eq!(s.error.as_deref(), Some("boom"));

        // Re-saving replaces the row.
        j.save_step(&run.id, 0, "stop2", "steps/other", "dd", r#"{"a":2}"#)
            .unwrap();
        let s = &j.steps(&run.id).unwrap()[0];
        assert_eq!(s.step_id, "stop2");
        assert_eq!(s.uses, "steps/other");
        assert_eq!(s.component_sha256, "dd");
        assert_eq!(s.status, StepStatus::Planned);
        assert_eq!((s.finished_at, s.error.as_deref()), (None, None));

        assert!(
            j.set_step_status(&run.id, 9, StepStatus::Applied, None)
                .is_err()
        );
        // The foreign key refuses a step of an unknown run.
        assert!(
            j.save_step("0000000000000000", 0, "a", "b", "c", "{}")
                .is_err()
        );
    }
}
