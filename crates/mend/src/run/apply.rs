//! Applying one step: its plan (made now, or the one journaled before a
//! crash), its actions journaled as intended and performed in batches,
//! journaled as done, then its verify, with retries.

use std::collections::HashMap;

use mend_host::apply::{self, ApplyCtx, Key};
use mend_journal::{ActionState, Journal, Journaled, NewAction, SavedStep, StepStatus};
use mend_plan::Planned;

use super::RunCx;
use crate::load::PreparedStep;
use crate::outcome::Failure;
use crate::plan::{StepCx, plan_step_from};

/// Actions journaled per commit when they are many and small. Each commit
/// costs an fsync (a few milliseconds on a real disk); a crash inside a batch
/// only means its intended actions are checked again on resume, each safe to
/// repeat. At 2,048, a cull of 50,000 files makes 50 commits instead of 400.
const BATCH: usize = 2048;

/// Why a step did not finish: it failed (the run rolls back), or the
/// journal could not be written (the run stops where it is: rolling back
/// is a change too, and it could not be journaled either).
pub(crate) enum StepStop {
    Failed(String),
    Journal(anyhow::Error),
    /// The step refused its parameters while planning (see `PlanError`).
    BadInput(String),
}

/// Whether no action of the run was ever about to be performed (planned
/// rows of a step that did not run do not count).
pub(crate) fn nothing_done(journal: &Journal, run_id: &str) -> Result<bool, Failure> {
    Ok(journal
        .actions(run_id)?
        .iter()
        .all(|a| a.state == ActionState::Planned))
}
use StepStop::Failed as StepFailed;

impl From<anyhow::Error> for StepStop {
    fn from(e: anyhow::Error) -> Self {
        if Failure::is_journal(&e) {
            StepStop::Journal(e)
        } else {
            StepFailed(format!("{e:#}"))
        }
    }
}

/// Apply one step: plan it (or take the plan journaled before a crash),
/// journal and perform its actions, then verify it.
pub(crate) async fn apply_step(
    run: &RunCx<'_>,
    step: &PreparedStep,
    prior: Option<&mend_journal::StepRecord>,
) -> Result<(), StepStop> {
    let RunCx {
        settings,
        journal,
        run_id,
        now,
        ..
    } = *run;
    let step_cx = StepCx {
        step,
        now,
        settings,
    };
    tracing::info!(run = run_id, step = %step.def.id, resumed = prior.is_some(), "applying step");
    // A step planned before a crash keeps its plan: planning again after some
    // of its actions ran would plan something else.
    let saved = prior
        .and_then(|s| s.plan_json.as_deref())
        .and_then(|j| serde_json::from_str::<SavedStep>(j).ok());
    // A step cut while it still planned (see `early`) kept the roots'
    // times from before anything, and no plan: it is planned again.
    let (saved, kept_roots) = match saved {
        Some(s) if s.planning => (None, Some(s.roots)),
        s => (s, None),
    };
    let damaged = |e: &dyn std::fmt::Display| {
        anyhow::anyhow!(
            "journal records of step {} of run {run_id} are damaged ({e}); refusing to guess its plan",
            step.idx
        )
    };
    let batch_of = |range: &mend_journal::BulkRange| -> anyhow::Result<Vec<Planned>> {
        journal
            .bulk_actions(run_id, step.idx, range.lo)?
            .iter()
            .map(|a| serde_json::from_str::<Planned>(a).map_err(|e| damaged(&e)))
            .collect()
    };
    let reporter = &settings.reporter;
    let progress = |n: u64| reporter.bytes_done(n);
    let notes = std::cell::RefCell::new(Vec::new());
    let note = |line: String| notes.borrow_mut().push(line);
    let cx = ApplyCtx {
        grants: &step.grants,
        commands: &step.commands,
        step: &step.def.id,
        timeout: step.limits.timeout,
        progress: &progress,
        note: &note,
        on_overlay: super::overlay::upper_scratch().is_some(),
    };
    let bc = BulkCx {
        journal,
        run_id,
        reporter: reporter.as_ref(),
        step_idx: step.idx,
        step_id: &step.def.id,
        planning: None,
    };
    let mut saved = match saved {
        Some(s) => s,
        None => plan_and_save(run, step, &step_cx, kept_roots, &bc, &cx, &batch_of).await?,
    };
    journal.set_step_status(run_id, step.idx, StepStatus::Applying, None)?;
    // The step's actions kept one row each, and its batches of removals
    // (read back one batch at a time below: the plan is never held whole).
    let states: HashMap<u32, mend_journal::ActionRecord> = journal
        .step_rows(run_id, step.idx)?
        .into_iter()
        .map(|a| (a.seq, a))
        .collect();
    let ranges: HashMap<u32, mend_journal::BulkRange> = journal
        .bulk_ranges(run_id, step.idx)?
        .into_iter()
        .map(|b| (b.lo, b))
        .collect();
    // The actions that are rows, by seq (a journal from before rows were
    // written at plan time keeps them in the saved plan).
    let mut rows: HashMap<u32, Planned> = if saved.plan.actions.is_empty() {
        states
            .values()
            .map(|r| {
                serde_json::from_str::<Planned>(&r.action_json)
                    .map(|p| (r.seq, p))
                    .map_err(|e| damaged(&e))
            })
            .collect::<anyhow::Result<_>>()?
    } else {
        std::mem::take(&mut saved.plan.actions)
            .into_iter()
            .enumerate()
            .map(|(i, p)| (i as u32, p))
            .collect()
    };
    let total = rows.len() + ranges.values().map(|r| r.n as usize).sum::<usize>();
    // Batches done before (while it planned, or before a crash) are not
    // counted again by the progress bar.
    let done_before: usize = ranges
        .values()
        .filter(|r| r.state == ActionState::Done)
        .map(|r| r.n as usize)
        .sum();
    // On overlays: the upper layer's filesystem must hold what the step's
    // remaining actions write there, before any of them runs. Counted a
    // batch at a time, as they are performed below.
    super::overlay::make_room(&step.def.id, |fs| {
        let mut estimate = mend_host::cow::space::Estimate::new(fs);
        for (_, a) in rows
            .iter()
            .filter(|(i, _)| !states.get(i).is_some_and(|r| r.state == ActionState::Done))
        {
            estimate.add(a);
        }
        for r in ranges.values().filter(|r| r.state != ActionState::Done) {
            for a in &batch_of(r)? {
                estimate.add(a);
            }
        }
        Ok(estimate.need())
    })?;
    settings
        .reporter
        .actions_start(&step.def.id, (total - done_before) as u64);
    let mut seq = 0usize;
    while seq < total {
        if let Some(range) = ranges.get(&(seq as u32)) {
            if range.state != ActionState::Done {
                bulk_batch(&bc, &cx, &batch_of(range)?, range, None)?;
                // What a removal said (left in place: changed since the plan).
                for line in notes.borrow_mut().drain(..) {
                    settings.reporter.line(&format!("  {line}"));
                    journal.event(run_id, Some(step.idx), "warn", &line)?;
                }
            }
            seq += range.n as usize;
            continue;
        }
        // The rows up to the next batch (or the end), in order.
        let base = seq;
        let mut actions: Vec<Planned> = Vec::new();
        while seq < total && !ranges.contains_key(&(seq as u32)) && actions.len() < BATCH {
            actions.push(
                rows.remove(&(seq as u32))
                    .ok_or_else(|| damaged(&format!("no action {seq}")))?,
            );
            seq += 1;
        }
        let mut at = 0usize;
        while at < actions.len() {
            at = row_batch(run, step, &cx, &states, &notes, &actions, base, at)?;
        }
    }
    settings.reporter.actions_end();
    journal.set_step_status(run_id, step.idx, StepStatus::Applied, None)?;
    verify(run, &step_cx).await
}

/// Plan the step now (again, after a crash in its early phase: the batches
/// it journaled finished first, their removals not planned twice), with
/// its first removals performed as they arrive (see `early`), then journal
/// the plan and show its summary.
async fn plan_and_save(
    run: &RunCx<'_>,
    step: &PreparedStep,
    step_cx: &StepCx<'_>,
    kept_roots: Option<Vec<mend_plan::DirTimes>>,
    bc: &BulkCx<'_>,
    cx: &ApplyCtx<'_>,
    batch_of: &dyn Fn(&mend_journal::BulkRange) -> anyhow::Result<Vec<Planned>>,
) -> Result<SavedStep, StepStop> {
    let RunCx {
        sandbox,
        settings,
        journal,
        run_id,
        ..
    } = *run;
    // A step that performed removals while it planned and was cut
    // before its plan was whole (a crash, a refusal): the batches
    // it journaled are finished first, and the step is planned
    // again from the seq after them, against the world they left.
    let before = journal.bulk_ranges(run_id, step.idx)?;
    let mut done = std::collections::HashSet::new();
    for r in &before {
        let batch = batch_of(r)?;
        if r.state != ActionState::Done {
            bulk_batch(bc, cx, &batch, r, None)?;
        }
        // A step whose plan does not follow the world (a list of
        // paths) plans them again: they are not done twice.
        done.extend(batch.into_iter().filter_map(|p| match p.action {
            mend_plan::Action::Remove { path } => Some(path),
            _ => None,
        }));
    }
    let from = before.iter().map(|r| r.lo + r.n).max().unwrap_or(0);
    // The roots' times before anything of the step is done.
    let roots = match kept_roots {
        Some(r) => r,
        None => roots_now(step)?,
    };
    // Removals are performed as they arrive, by a thread of their
    // own, while the step plans (see `early`).
    let performer = if super::early::wanted(step) {
        let pending = SavedStep {
            plan: mend_plan::StepPlan::default(),
            roots: roots.clone(),
            planning: true,
        };
        journal.start_step(
            run_id,
            step.idx,
            &step.def.id,
            &step.def.uses.to_string(),
            &step.loaded.sha256,
            &serde_json::to_string(&pending).map_err(anyhow::Error::from)?,
        )?;
        Some(super::early::start(
            journal,
            run_id,
            step,
            settings.reporter.clone(),
        )?)
    } else {
        None
    };
    let (early, performer) = match performer {
        Some((e, p)) => (Some(e), Some(p)),
        None => (None, None),
    };
    let planned = plan_step_from(sandbox, &run.prepared.runbook, step_cx, from, done, early).await;
    // Planning ended, so did the hand-over: the batches handed
    // over are all done (or one failed) once the performer ends.
    let early = performer.map(super::early::Performer::join).transpose()?;
    let early = early.unwrap_or_default();
    for line in &early.notes {
        settings.reporter.line(&format!("  {line}"));
        journal.event(run_id, Some(step.idx), "warn", line)?;
    }
    let (plan, logs) = planned.map_err(|e| {
        let message = format!("{e}{}", early.refusal_notes());
        match e.bad_input {
            true => StepStop::BadInput(message),
            false => StepFailed(message),
        }
    })?;
    if early.actions > 0 {
        settings.reporter.line(&format!(
            "  {} removals done while it planned ({} batch{})",
            mend_human::human_count(early.actions),
            early.batches,
            if early.batches == 1 { "" } else { "es" }
        ));
    }
    for (level, msg) in &logs {
        journal.event(run_id, Some(step.idx), level, msg)?;
    }
    // The actions go to their own rows and batches (packed while
    // the step planned); the saved plan keeps the rest, so no action
    // is journaled twice.
    let mut saved = SavedStep {
        plan,
        roots,
        planning: false,
    };
    if from > 0 {
        // Planned again after a crash: the batches done before are
        // not in this plan, so a commit reads the actions instead.
        saved.plan.tops_changed = None;
    }
    let rows_and_runs = mend_plan::StepPlan {
        actions: std::mem::take(&mut saved.plan.actions),
        packed: std::mem::take(&mut saved.plan.packed),
        first: saved.plan.first,
        ..Default::default()
    };
    let json = serde_json::to_string(&saved).map_err(anyhow::Error::from)?;
    let mut rows: Vec<Row> = Vec::with_capacity(rows_and_runs.actions.len());
    for (seq, at) in rows_and_runs.layout() {
        if let Err(i) = at {
            let a = &rows_and_runs.actions[i];
            let json = serde_json::to_string(a).map_err(anyhow::Error::from)?;
            rows.push((seq, json, a.reversible));
        }
    }
    let bulk: Vec<mend_journal::PlannedBulk> = rows_and_runs
        .packed
        .iter()
        .map(mend_journal::PlannedBulk::of)
        .collect();
    let planned: Vec<mend_journal::PlannedAction> = rows
        .iter()
        .map(|(seq, json, reversible)| mend_journal::PlannedAction {
            seq: *seq,
            action_json: json,
            reversible: *reversible,
        })
        .collect();
    journal.save_plan(
        run_id,
        step.idx,
        &step.def.id,
        &step.def.uses.to_string(),
        &step.loaded.sha256,
        &json,
        &planned,
        &bulk,
    )?;
    for line in &saved.plan.summary {
        settings.reporter.line(&format!("  {line}"));
    }
    Ok(saved)
}

/// The times of the step's write grants' roots (and of each volume
/// mounted inside one: it holds its own trash at its top), for a rollback
/// to put back.
fn roots_now(step: &PreparedStep) -> anyhow::Result<Vec<mend_plan::DirTimes>> {
    let mut roots = Vec::new();
    for g in step
        .grants
        .iter()
        .filter(|g| g.access == mend_runbook::Access::Write)
    {
        roots.push(apply::dir_times(&g.dir, &g.name, "")?);
        let real = std::fs::canonicalize(&g.root).unwrap_or_else(|_| g.root.clone());
        for m in mend_host::cow::overlay::mounts_inside(&g.root) {
            if let Some(rel) = m.strip_prefix(&real).ok().and_then(|r| r.to_str())
                && let Ok(t) = apply::dir_times(&g.dir, &g.name, rel)
            {
                roots.push(t);
            }
        }
    }
    Ok(roots)
}

/// One batch of rows from `seq` (an index into `actions`, whose first is
/// the step's action `base`): consecutive actions that are cheap to journal
/// together, intended in one commit, performed, done in one commit. The
/// index after the batch.
#[allow(clippy::too_many_arguments)]
fn row_batch(
    run: &RunCx<'_>,
    step: &PreparedStep,
    cx: &ApplyCtx<'_>,
    states: &HashMap<u32, mend_journal::ActionRecord>,
    notes: &std::cell::RefCell<Vec<String>>,
    actions: &[Planned],
    base: usize,
    seq: usize,
) -> Result<usize, StepStop> {
    let (journal, run_id, settings) = (run.journal, run.run_id, run.settings);
    // A batch: consecutive actions that are cheap to journal together.
    let mut end = seq + 1;
    while end < actions.len()
        && end - seq < BATCH
        && batchable(&actions[end])
        && batchable(&actions[seq])
        && independent(&actions[seq..end], &actions[end])
    {
        end += 1;
    }
    let mut intents = Vec::new();
    let mut pres = Vec::new();
    let mut batch = apply::Batch::default();
    for (i, planned) in actions.iter().enumerate().take(end).skip(seq) {
        let i = (base + i) as u32;
        match states.get(&i).filter(|r| r.state != ActionState::Planned) {
            Some(rec) if rec.state == ActionState::Done => pres.push(None),
            Some(rec) => {
                let j = Journaled::of(rec)?;
                pres.push(Some(j.pre));
            }
            None => {
                let pre = apply::prepare_in(&mut batch, cx, &planned.action)
                    .map_err(|e| StepFailed(format!("step `{}`: {e:#}", step.def.id)))?;
                let action_json = serde_json::to_string(planned).map_err(anyhow::Error::from)?;
                let key = Key {
                    run: run_id,
                    step: step.idx,
                    seq: i,
                };
                let undo_json = Journaled {
                    pre: pre.clone(),
                    undo: None,
                }
                .to_json(&planned.action, &key);
                intents.push((i, action_json, undo_json, planned.reversible));
                pres.push(Some(pre));
            }
        }
    }
    if !intents.is_empty() {
        let new: Vec<NewAction> = intents
            .iter()
            .map(|(i, a, u, r)| NewAction {
                seq: *i,
                action_json: a,
                reversible: *r,
                undo_json: Some(u),
            })
            .collect();
        journal.intend(run_id, step.idx, &new)?;
    }
    let mut done = Vec::new();
    for (k, pre) in pres.into_iter().enumerate() {
        let i = (base + seq + k) as u32;
        let Some(pre) = pre else { continue };
        mend_faults::crash_point("intent", step.idx, i);
        let key = Key {
            run: run_id,
            step: step.idx,
            seq: i,
        };
        let planned = &actions[seq + k];
        let bulk = matches!(
            planned.action,
            mend_plan::Action::Copy { .. } | mend_plan::Action::Extract { .. }
        );
        if bulk {
            settings
                .reporter
                .bytes_start(&format!("{:#}", planned.action), planned.bytes);
        }
        let performed = apply::perform_planned_in(&mut batch, cx, &key, planned, &pre);
        if bulk {
            settings.reporter.bytes_end();
        }
        match performed {
            Ok(undo) => {
                for line in notes.borrow_mut().drain(..) {
                    settings.reporter.line(&format!("  {line}"));
                    journal.event(run_id, Some(step.idx), "info", &line)?;
                }
                let json = Journaled {
                    pre,
                    undo: Some(undo),
                }
                .to_json(&planned.action, &key);
                done.push((i, json));
                settings.reporter.action_done(planned.bytes);
                mend_faults::crash_point("perform", step.idx, i);
            }
            Err(e) => {
                let performed_err_is_refusal = e.downcast_ref::<apply::Refused>().is_some();
                let e = mend_human::sanitize(&format!("{e:#}"));
                // What was performed so far in the batch is done: say so first.
                let marks: Vec<(u32, Option<&str>)> =
                    done.iter().map(|(i, j)| (*i, Some(j.as_str()))).collect();
                journal.mark_done(run_id, step.idx, &marks)?;
                let msg = e;
                // Refused with nothing done: not in effect, so a rollback
                // leaves alone what someone else put at its path.
                let state = if performed_err_is_refusal {
                    ActionState::Undone
                } else {
                    ActionState::Failed
                };
                journal.set_action_state(run_id, step.idx, i, state, Some(&msg))?;
                settings.reporter.actions_end();
                return Err(StepFailed(format!("{:#}: {msg}", planned.action)));
            }
        }
    }
    let marks: Vec<(u32, Option<&str>)> =
        done.iter().map(|(i, j)| (*i, Some(j.as_str()))).collect();
    if !marks.is_empty() {
        journal.mark_done(run_id, step.idx, &marks)?;
    }
    Ok(end)
}

/// An action journaled as a row of its own: seq, JSON, reversible.
type Row = (u32, String, bool);

/// One batch of removals journaled as one record: intended together (each
/// action's state before it), performed one by one (each checks the world,
/// so a batch cut by a crash is simply performed again), done together. A
/// removal that fails turns the batch into a row per action (the journal
/// does it) so the failure and what was done before it are recorded as
/// exactly as in any other batch. A batch `unjournaled` yet (the early
/// performer's) is journaled as planned with its intent, in one commit.
pub(crate) fn bulk_batch(
    bc: &BulkCx<'_>,
    cx: &ApplyCtx<'_>,
    actions: &[Planned],
    range: &mend_journal::BulkRange,
    unjournaled: Option<&mend_journal::PlannedBulk>,
) -> Result<(), StepStop> {
    let (journal, run_id, reporter) = (bc.journal, bc.run_id, bc.reporter);
    let key = |i: u32| Key {
        run: run_id,
        step: bc.step_idx,
        seq: i,
    };
    let pres: Vec<mend_plan::Pre> = match range.state {
        // Done before a crash: as a row per action, not performed again.
        ActionState::Done => return Ok(()),
        ActionState::Planned => {
            let mut batch = apply::Batch::default();
            let mut pres = Vec::with_capacity(actions.len());
            let mut lines = Vec::with_capacity(actions.len());
            for (k, planned) in actions.iter().enumerate() {
                let pre = apply::prepare_in(&mut batch, cx, &planned.action)
                    .map_err(|e| StepFailed(format!("step `{}`: {e:#}", bc.step_id)))?;
                let k = key(range.lo + k as u32);
                lines.push(
                    Journaled {
                        pre: pre.clone(),
                        undo: None,
                    }
                    .to_json(&planned.action, &k),
                );
                pres.push(pre);
            }
            let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
            match unjournaled {
                Some(b) => journal.plan_and_intend_bulk(run_id, bc.step_idx, b, &lines)?,
                None => journal.intend_bulk(run_id, bc.step_idx, range.lo, &lines)?,
            }
            pres
        }
        _ => journal
            .bulk_records(run_id, bc.step_idx, range.lo)?
            .iter()
            .map(|rec| Journaled::of(rec).map(|j| j.pre))
            .collect::<anyhow::Result<_>>()?,
    };
    // Performed by a few threads, each removal between its crash points
    // (see `parallel`); what each did, in plan order.
    let outcomes = super::parallel::perform_removals(
        cx,
        (run_id, bc.step_idx, range.lo),
        actions,
        &pres,
        bc.planning,
    );
    let mut done = Vec::with_capacity(actions.len());
    let mut failure = None;
    for (k, outcome) in outcomes.into_iter().enumerate() {
        let i = range.lo + k as u32;
        match outcome {
            Some(Ok(undo)) => {
                let json = Journaled {
                    pre: pres[k].clone(),
                    undo: Some(undo),
                }
                .to_json(&actions[k].action, &key(i));
                done.push((i, json));
                reporter.action_done(actions[k].bytes);
            }
            Some(Err(e)) if failure.is_none() => failure = Some((k, e)),
            // Failed after the first failure, or not performed: left
            // intended, for a resume or rollback to look at the world.
            _ => {}
        }
    }
    if let Some((k, e)) = failure {
        let i = range.lo + k as u32;
        let msg = mend_human::sanitize(&format!("{e:#}"));
        // Every removal performed is done, whichever thread did it (the
        // batch becomes a row per action), then the failure.
        let marks: Vec<(u32, Option<&str>)> =
            done.iter().map(|(i, j)| (*i, Some(j.as_str()))).collect();
        journal.mark_done(run_id, bc.step_idx, &marks)?;
        journal.set_action_state(run_id, bc.step_idx, i, ActionState::Failed, Some(&msg))?;
        reporter.actions_end();
        return Err(StepFailed(format!("{:#}: {msg}", actions[k].action)));
    }
    let lines: Vec<&str> = done.iter().map(|(_, j)| j.as_str()).collect();
    journal.done_bulk(run_id, bc.step_idx, range.lo, &lines)?;
    Ok(())
}

/// Where a batch of removals is journaled and told: the run's journal, or
/// the early performer's own connection to it (see `early`).
pub(crate) struct BulkCx<'a> {
    pub journal: &'a Journal,
    pub run_id: &'a str,
    pub reporter: &'a dyn crate::settings::Reporter,
    pub step_idx: u32,
    pub step_id: &'a str,
    /// Set while the step still plans beside the batch (the early
    /// performer's): its walk keeps a core, and removals take the others.
    pub planning: Option<&'a std::sync::atomic::AtomicBool>,
}

/// Whether `next` can share a batch with `batch`: every intent of a batch
/// records the world before any of them is performed, so an action whose
/// paths meet those of an earlier rename or create-dir of the batch (the
/// second rename of a release switch needs the first one's source free)
/// starts a batch of its own, and its intent sees the world it acts on.
/// Removals among themselves stay together: each names its own path.
fn independent(batch: &[Planned], next: &Planned) -> bool {
    use mend_plan::Action as A;
    let only_removes = |p: &Planned| matches!(p.action, A::Remove { .. });
    if only_removes(next) && batch.iter().all(only_removes) {
        return true;
    }
    let meets = |a: &str, b: &str| {
        a == b
            || a.strip_prefix(b).is_some_and(|r| r.starts_with('/'))
            || b.strip_prefix(a).is_some_and(|r| r.starts_with('/'))
    };
    let theirs: Vec<&str> = batch.iter().flat_map(|p| p.action.paths()).collect();
    !next
        .action
        .paths()
        .into_iter()
        .any(|n| theirs.iter().any(|t| meets(n, t)))
}

/// Small actions whose intents and completions can share a commit.
fn batchable(p: &Planned) -> bool {
    use mend_plan::Action as A;
    matches!(
        p.action,
        A::Remove { .. } | A::CreateDir { .. } | A::Rename { .. }
    ) && p.bytes < (1 << 20)
}

/// Verify a step after its actions, as often as its `retry` allows.
async fn verify(cx: &RunCx<'_>, step_cx: &StepCx<'_>) -> Result<(), StepStop> {
    let RunCx {
        sandbox,
        settings,
        journal,
        run_id,
        ..
    } = *cx;
    let step = step_cx.step;
    let attempts = step.def.retry.attempts.max(1);
    let mut last = String::new();
    let mut shown = String::new();
    for attempt in 1..=attempts {
        let (result, _) = sandbox
            .verify(
                &step.loaded,
                step_cx.host(),
                step.limits,
                step_cx.context(),
                step.params_json.clone(),
            )
            .await
            .map_err(|e| StepFailed(e.to_string()))?;
        match result {
            Ok(checks) => {
                let failed: Vec<String> = checks
                    .iter()
                    .filter(|c| !c.ok)
                    .map(|c| {
                        mend_human::sanitize(&format!(
                            "{}{}",
                            c.name,
                            if c.detail.is_empty() {
                                String::new()
                            } else {
                                format!(" ({})", c.detail)
                            }
                        ))
                    })
                    .collect();
                for c in &checks {
                    let line = format!(
                        "check {}: {}",
                        if c.ok { "ok" } else { "FAILED" },
                        mend_human::sanitize(&c.name)
                    );
                    journal.event(
                        run_id,
                        Some(step.idx),
                        if c.ok { "info" } else { "warn" },
                        &line,
                    )?;
                }
                if failed.is_empty() {
                    return Ok(());
                }
                last = format!("verify failed: {}", failed.join("; "));
            }
            Err(e) => last = format!("verify failed: {}", mend_human::sanitize(&e.message)),
        }
        if attempt < attempts {
            // The same failure again is one short line, not the whole text:
            // a service that takes a minute to come up must not bury the
            // screen.
            let line = if last == shown {
                format!(
                    "  the same; retry {attempt}/{} in {:?}",
                    attempts - 1,
                    step.def.retry.delay
                )
            } else {
                format!(
                    "  {last}; retry {attempt}/{} in {:?}",
                    attempts - 1,
                    step.def.retry.delay
                )
            };
            settings.reporter.line(&line);
            shown = last.clone();
            tokio::time::sleep(step.def.retry.delay).await;
        }
    }
    Err(StepFailed(format!(
        "step `{}`: {last} (after {attempts} attempt{})",
        step.def.id,
        if attempts == 1 { "" } else { "s" }
    )))
}
