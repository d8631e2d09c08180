//! Undoing a run: every performed action in reverse order, each journaled as
//! undoing before and undone after, so a rollback killed half way resumes
//! where it stopped and repeats no compensation that finished.

use serde::Serialize;

use super::journaled::{reopen, restore_roots};
use crate::exit;
use crate::load::Prepared;
use crate::outcome::{Failure, Outcome};
use crate::settings::Settings;
use mend_faults::crash_point;
use mend_host::apply::{self, ApplyCtx, Key, Undo};
use mend_host::sandbox::Sandbox;
use mend_journal::Journaled;
use mend_journal::{ActionRecord, ActionState, BulkRange, Journal, RunStatus, StepStatus};
use mend_plan::Planned;

/// How a rollback ended.
#[derive(Debug, Clone, Serialize, Default)]
pub struct RollbackOutcome {
    /// Actions undone.
    pub undone: u64,
    /// Steps whose actions were all undone.
    pub steps_undone: Vec<String>,
    /// Actions that could not be undone by design (disposable removals,
    /// commands without compensation): "step: kind path".
    pub irreversible: Vec<String>,
    /// The paths those irreversible actions changed (`GRANT/path`; empty for commands).
    pub irreversible_paths: Vec<String>,
    /// The undo that failed, if one did; the rollback stopped there.
    pub failed: Option<String>,
    /// Actions still changed after a failed rollback.
    pub not_undone: Vec<String>,
}

/// `mend rollback RUN`: undo a run that failed, was stopped or was killed.
pub async fn rollback(
    sandbox: &Sandbox,
    settings: &Settings,
    run: &str,
) -> Result<(String, RollbackOutcome), Failure> {
    // Undoing must stay possible whatever the policy says now: the
    // components are the ones the run started with (reopen checks them
    // against the journal), and a rollback runs none of their plans.
    let trust = settings.trust.for_undo();
    let (journal, record, prepared, _lock) = reopen(sandbox, settings, run, &trust).await?;
    if matches!(record.status, RunStatus::RolledBack) {
        return Err(Failure::input(
            &record.id,
            format!("run {} is already rolled back", record.id),
            None,
        ));
    }
    if record.status == RunStatus::Committed {
        return Err(Failure::input(
            &record.id,
            format!(
                "run {} is committed: its trash is purged, so it cannot be rolled back",
                record.id
            ),
            Some("run a runbook that reverses it".into()),
        ));
    }
    journal.set_run_status(&record.id, RunStatus::RollingBack, None)?;
    let out = rollback_prepared(settings, &journal, &prepared, &record.id).await;
    super::journaled::mark_end(&journal, &record.id);
    let out = out.map_err(|f| f.in_run(&record.id))?;
    Ok((record.id, out))
}

/// What the rollback undoes, newest first: an action kept as a row, or a
/// batch of removals (`bulk`), undone as a unit and journaled once.
enum Unit {
    Row(ActionRecord),
    Batch(u32, BulkRange),
}

impl Unit {
    fn key(&self) -> (u32, u32) {
        match self {
            Unit::Row(r) => (r.step_idx, r.seq),
            Unit::Batch(step, b) => (*step, b.lo),
        }
    }

    /// Actions not yet undone (planned ones included, as they always were).
    fn pending(&self) -> u64 {
        match self {
            Unit::Row(r) => u64::from(r.state != ActionState::Undone),
            Unit::Batch(_, b) => {
                if b.state == ActionState::Undone {
                    0
                } else {
                    u64::from(b.n)
                }
            }
        }
    }
}

/// The run's rows and batches, newest first (batches never overlap rows).
fn units(journal: &Journal, run_id: &str) -> anyhow::Result<Vec<Unit>> {
    let mut units = Vec::new();
    for s in journal.steps(run_id)? {
        units.extend(journal.step_rows(run_id, s.idx)?.into_iter().map(Unit::Row));
        units.extend(
            journal
                .bulk_ranges(run_id, s.idx)?
                .into_iter()
                .map(|b| Unit::Batch(s.idx, b)),
        );
    }
    units.sort_by_key(|u| std::cmp::Reverse(u.key()));
    Ok(units)
}

/// Whether the rollback goes on after an action or a batch.
enum Next {
    On,
    Stopped,
}

/// Undo what the journal says is performed, newest first.
pub(crate) async fn rollback_prepared(
    settings: &Settings,
    journal: &Journal,
    prepared: &Prepared,
    run_id: &str,
) -> Result<RollbackOutcome, Failure> {
    let mut out = RollbackOutcome::default();
    let units = units(journal, run_id)?;
    let total: u64 = units.iter().map(Unit::pending).sum();
    if total > 0 {
        settings
            .reporter
            .line(&format!("rolling back {total} actions"));
    }
    for unit in &units {
        let next = match unit {
            Unit::Row(rec) => undo_row(journal, prepared, run_id, rec, &mut out)?,
            Unit::Batch(step_idx, b) => {
                undo_batch(journal, prepared, run_id, *step_idx, b, &mut out)?
            }
        };
        if let Next::Stopped = next {
            return Ok(out);
        }
    }
    // Listed in the order the run performed them.
    out.irreversible.reverse();
    for step in &prepared.steps {
        apply::purge(&step.grants, run_id)?;
    }
    restore_roots(journal, prepared, run_id, false)?;
    for s in journal.steps(run_id)? {
        if s.status != StepStatus::Pending {
            journal.set_step_status(run_id, s.idx, StepStatus::Undone, None)?;
            out.steps_undone.push(s.step_id);
        }
    }
    journal.set_run_status(run_id, RunStatus::RolledBack, None)?;
    Ok(out)
}

fn apply_ctx<'a>(step: &'a crate::load::PreparedStep) -> ApplyCtx<'a> {
    ApplyCtx {
        grants: &step.grants,
        commands: &step.commands,
        step: &step.def.id,
        timeout: step.limits.timeout,
        progress: &|_| {},
        note: &|_| {},
        on_overlay: crate::run::overlay::upper_scratch().is_some(),
    }
}

/// An action's undo, noted in `out` when it is irreversible.
fn noted_undo(j: &Journaled, planned: &Planned, what: &str, out: &mut RollbackOutcome) -> Undo {
    let undo = j.undo.clone().unwrap_or(Undo::Nothing);
    if matches!(undo, Undo::Irreversible) {
        out.irreversible.push(what.to_string());
        if !matches!(planned.action, mend_plan::Action::Exec { .. }) {
            out.irreversible_paths.push(planned.action.target());
        }
    }
    undo
}

/// Undoes one action kept as a row: journaled undoing before, undone after.
fn undo_row(
    journal: &Journal,
    prepared: &Prepared,
    run_id: &str,
    rec: &ActionRecord,
    out: &mut RollbackOutcome,
) -> Result<Next, Failure> {
    let Some(step) = prepared.steps.get(rec.step_idx as usize) else {
        return Ok(Next::On);
    };
    let planned: Planned = serde_json::from_str(&rec.action_json).map_err(anyhow::Error::from)?;
    let what = format!("{}: {:#}", step.def.id, planned.action);
    let mut j = Journaled::of(rec)?;
    let cx = apply_ctx(step);
    // An `undoing` action without undo data is one a stopped rollback
    // could not tell about: look at the world again.
    let state = match rec.state {
        ActionState::Undoing if j.undo.is_none() => ActionState::Intended,
        s => s,
    };
    match state {
        // Never about to be performed: nothing to look at.
        ActionState::Undone | ActionState::Planned => return Ok(Next::On),
        // Killed between intent and done, or failed while performing:
        // the journal cannot say how much of it happened, the world
        // can. Whatever of it is there is undone; nothing is performed
        // (a rollback never does more of what it undoes).
        ActionState::Intended | ActionState::Failed => {
            let key = Key {
                run: run_id,
                step: rec.step_idx,
                seq: rec.seq,
            };
            match apply::present(&cx, &key, &planned.action, &j.pre) {
                Ok(Some(u)) => j.undo = Some(u),
                Ok(None) => {
                    let message = match &planned.action {
                        mend_plan::Action::Exec {
                            creates: None,
                            undo: Some(_),
                            ..
                        } if state == ActionState::Intended => Some((
                            "warn",
                            format!(
                                "{what}: killed before it was recorded done; whether it ran is unknown, so its compensation is not run"
                            ),
                        )),
                        _ if state == ActionState::Intended => {
                            Some(("info", format!("{what}: not performed before the kill")))
                        }
                        _ => None,
                    };
                    if let Some((level, message)) = message {
                        journal.event(run_id, Some(rec.step_idx), level, &message)?;
                    }
                    journal.set_action_state(
                        run_id,
                        rec.step_idx,
                        rec.seq,
                        ActionState::Undone,
                        None,
                    )?;
                    return Ok(Next::On);
                }
                Err(e) => {
                    // Not knowing is not "nothing to undo": stop here.
                    let msg = mend_human::sanitize(&format!(
                        "cannot tell how much of it was done: {e:#}"
                    ));
                    stop(
                        journal,
                        prepared,
                        run_id,
                        rec.step_idx,
                        rec.seq,
                        &what,
                        &msg,
                        out,
                    )?;
                    return Ok(Next::Stopped);
                }
            }
        }
        ActionState::Done | ActionState::Undoing => {}
    }
    let undo = noted_undo(&j, &planned, &what, out);
    journal.set_action_state(run_id, rec.step_idx, rec.seq, ActionState::Undoing, None)?;
    crash_point("undoing", rec.step_idx, rec.seq);
    if let Err(e) = apply::undo(&cx, &undo, &j.pre) {
        // Errors carry the step's paths: neutralised for the terminal.
        let msg = mend_human::sanitize(&format!("{e:#}"));
        stop(
            journal,
            prepared,
            run_id,
            rec.step_idx,
            rec.seq,
            &what,
            &msg,
            out,
        )?;
        return Ok(Next::Stopped);
    }
    crash_point("undo", rec.step_idx, rec.seq);
    journal.set_action_state(run_id, rec.step_idx, rec.seq, ActionState::Undone, None)?;
    out.undone += 1;
    Ok(Next::On)
}

/// Undoes a batch of removals as a unit, newest first, and records it
/// undone in one journal write (a row per action took two fsynced commits
/// per undo, most of a big rollback's time). Each undo looks at the world
/// before it acts (a restore whose trash is gone was done), so a rollback
/// killed inside the batch, which still reads done, undoes it again
/// exactly. A batch killed while performing (intended) asks the world which
/// of its removals happened, as a row does.
fn undo_batch(
    journal: &Journal,
    prepared: &Prepared,
    run_id: &str,
    step_idx: u32,
    b: &BulkRange,
    out: &mut RollbackOutcome,
) -> Result<Next, Failure> {
    let Some(step) = prepared.steps.get(step_idx as usize) else {
        return Ok(Next::On);
    };
    if !matches!(b.state, ActionState::Intended | ActionState::Done) {
        return Ok(Next::On);
    }
    let cx = apply_ctx(step);
    // Held handles, and directory times put back once at the batch's end.
    let mut unbatch = apply::Unbatch::default();
    let mut undone = Vec::with_capacity(b.n as usize);
    let mut not_performed = 0u32;
    let recs = journal.bulk_records(run_id, step_idx, b.lo)?;
    for rec in recs.iter().rev() {
        let planned: Planned =
            serde_json::from_str(&rec.action_json).map_err(anyhow::Error::from)?;
        let what = format!("{}: {:#}", step.def.id, planned.action);
        let mut j = Journaled::of(rec)?;
        if b.state == ActionState::Intended {
            let key = Key {
                run: run_id,
                step: step_idx,
                seq: rec.seq,
            };
            match apply::present(&cx, &key, &planned.action, &j.pre) {
                Ok(Some(u)) => j.undo = Some(u),
                Ok(None) => {
                    unbatch.keep_times(&j.pre);
                    not_performed += 1;
                    undone.push(rec.seq);
                    continue;
                }
                Err(e) => {
                    let msg = mend_human::sanitize(&format!(
                        "cannot tell how much of it was done: {e:#}"
                    ));
                    let msg = finish_times(unbatch, &cx, msg);
                    journal.partly_undone_bulk(run_id, step_idx, b.lo, &undone)?;
                    stop(
                        journal, prepared, run_id, step_idx, rec.seq, &what, &msg, out,
                    )?;
                    return Ok(Next::Stopped);
                }
            }
        }
        let undo = noted_undo(&j, &planned, &what, out);
        crash_point("undoing", step_idx, rec.seq);
        if let Err(e) = unbatch.undo(&cx, &undo, &j.pre) {
            let msg = mend_human::sanitize(&format!("{e:#}"));
            let msg = finish_times(unbatch, &cx, msg);
            journal.partly_undone_bulk(run_id, step_idx, b.lo, &undone)?;
            stop(
                journal, prepared, run_id, step_idx, rec.seq, &what, &msg, out,
            )?;
            return Ok(Next::Stopped);
        }
        crash_point("undo", step_idx, rec.seq);
        undone.push(rec.seq);
        out.undone += 1;
    }
    if let Err(e) = unbatch.finish(&cx) {
        // None is recorded undone: a later rollback undoes each again (the
        // files are back, so only their directories' times).
        let msg = mend_human::sanitize(&format!("{e:#}"));
        let rec = recs.first().map_or(b.lo, |r| r.seq);
        let what = format!(
            "{}: the directory times of removals {}-{}",
            step.def.id,
            b.lo + 1,
            b.lo + b.n
        );
        journal.partly_undone_bulk(run_id, step_idx, b.lo, &[])?;
        stop(journal, prepared, run_id, step_idx, rec, &what, &msg, out)?;
        return Ok(Next::Stopped);
    }
    if not_performed > 0 {
        journal.event(
            run_id,
            Some(step_idx),
            "info",
            &format!(
                "{}: {not_performed} of the {} removals {}-{} not performed before the kill",
                step.def.id,
                b.n,
                b.lo + 1,
                b.lo + b.n
            ),
        )?;
    }
    journal.undone_bulk(run_id, step_idx, b.lo)?;
    Ok(Next::On)
}

/// Before a batch stops part-way: the directory times of the undos done
/// so far put back, as they are recorded undone; a failure to is added to
/// the reason.
fn finish_times(unbatch: apply::Unbatch, cx: &ApplyCtx, msg: String) -> String {
    match unbatch.finish(cx) {
        Ok(()) => msg,
        Err(e) => mend_human::sanitize(&format!(
            "{msg}; and cannot put back the directories' times: {e:#}"
        )),
    }
}

/// A rollback that cannot go on: the action stays `undoing`, with the
/// reason, so a later `mend rollback` tries it again once the operator fixed
/// the cause; the run is `rollback-failed`, listing what is still changed
/// (read back from the journal, newest first).
#[allow(clippy::too_many_arguments)]
fn stop(
    journal: &Journal,
    prepared: &Prepared,
    run_id: &str,
    step_idx: u32,
    seq: u32,
    what: &str,
    msg: &str,
    out: &mut RollbackOutcome,
) -> Result<(), Failure> {
    journal.set_action_state(run_id, step_idx, seq, ActionState::Undoing, Some(msg))?;
    out.failed = Some(format!("{what}: {msg}"));
    let mut rest = journal.actions(run_id)?;
    rest.sort_by_key(|a| std::cmp::Reverse((a.step_idx, a.seq)));
    out.not_undone = rest
        .iter()
        .filter(|a| {
            matches!(
                a.state,
                ActionState::Done | ActionState::Undoing | ActionState::Intended
            )
        })
        .filter_map(|a| {
            serde_json::from_str::<Planned>(&a.action_json)
                .ok()
                .map(|p| (a.step_idx, p))
        })
        .map(|(i, p)| {
            format!(
                "{}: {:#}",
                prepared
                    .steps
                    .get(i as usize)
                    .map_or("?", |s| s.def.id.as_str()),
                p.action
            )
        })
        .collect();
    journal.set_run_status(run_id, RunStatus::RollbackFailed, Some(msg))?;
    Ok(())
}

impl Outcome for RollbackOutcome {
    fn exit_code(&self) -> i32 {
        if self.failed.is_some() {
            exit::ROLLBACK_FAILED
        } else {
            exit::SUCCESS
        }
    }
}
