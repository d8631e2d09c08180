//! `mend run` and `mend resume`: plan each step against the world its
//! predecessors left, journal each action as intended, perform it, journal it
//! as done, verify, and roll everything back when something fails.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{
    Failure, Prepared, PreparedStep, Settings, plan_step, prepare, rollback::rollback_prepared,
};
use crate::lock::{GrantClaim, Holder, RunLock};
use mend_host::apply::{self, ApplyCtx, Key};
use mend_host::sandbox::Sandbox;
use mend_journal::{
    ActionState, Journal, Journaled, NewAction, NewRun, RunInputs, RunMode, RunStatus, SavedStep,
    StepStatus,
};
use mend_plan::Planned;
use mend_runbook::OnFailure;

pub use super::rollback::RollbackOutcome;

/// How a run ended.
#[derive(Debug, Serialize)]
pub struct RunOutcome {
    pub run_id: String,
    pub runbook: String,
    pub status: RunStatus,
    /// Steps whose actions were all applied and verified.
    pub steps_done: Vec<String>,
    /// Actions performed (this invocation and, on resume, before).
    pub actions_done: u64,
    pub failed_step: Option<String>,
    pub error: Option<String>,
    pub rollback: Option<RollbackOutcome>,
    /// A step refused its parameters before anything of the run changed:
    /// bad input (exit 2), not a failed step.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub bad_input: bool,
}

/// Actions journaled per commit when they are many and small. Each commit
/// costs an fsync (a few milliseconds on a real disk); a crash inside a batch
/// only means its intended actions are checked again on resume, each safe to
/// repeat. At 2,048, a cull of 50,000 files makes 50 commits instead of 400.
const BATCH: usize = 2048;

/// The run lock of a runbook, and its write grants claimed against other
/// runbooks' runs.
pub(crate) fn lock(settings: &Settings, prepared: &Prepared) -> Result<RunLock, Failure> {
    let rb = &prepared.runbook;
    let refused = |e: crate::lock::LockError| match e {
        crate::lock::LockError::Held {
            holder: Some(ref h),
            ..
        } if !h.id.is_empty() => Failure::Locked(format!(
            "{e}\n  = help: wait for it to finish (a lock never outlives its process); if it hangs, `mend unlock {} --id {}` stops it and the run stays resumable",
            rb.name, h.id
        )),
        crate::lock::LockError::Held { .. } => Failure::Locked(format!(
            "{e}\n  = help: wait for it to finish; if its process is gone the lock is free again (a lock never outlives its process)"
        )),
        crate::lock::LockError::GrantHeld(_) => Failure::Locked(format!(
            "{e}\n  = help: wait for that run to finish; two runbooks never write the same tree at once"
        )),
        crate::lock::LockError::Io(e) => Failure::Internal(anyhow::anyhow!(
            "cannot take the run lock in {}: {e}",
            settings.state_dir.display()
        )),
    };
    let mut lock =
        RunLock::acquire(&settings.state_dir, &rb.name, &Holder::current(None)).map_err(refused)?;
    let claims: Vec<GrantClaim> = rb
        .grants
        .values()
        .filter(|g| g.access == mend_runbook::Access::Write)
        .map(|g| GrantClaim {
            runbook: rb.name.clone(),
            grant: g.name.clone(),
            path: std::fs::canonicalize(&g.path).unwrap_or_else(|_| g.path.clone()),
        })
        .collect();
    lock.claim_grants(&settings.state_dir, &claims)
        .map_err(refused)?;
    Ok(lock)
}

/// Run a runbook from the start.
pub async fn run(
    sandbox: &Sandbox,
    settings: &Settings,
    file: &Path,
    sets: &[(String, String)],
    mode: RunMode,
    grants: &BTreeMap<String, PathBuf>,
) -> Result<RunOutcome, Failure> {
    let prepared = prepare(
        sandbox,
        file,
        sets,
        grants,
        mode == RunMode::Rehearse,
        &settings.trust,
    )
    .await?;
    let mut lock = lock(settings, &prepared)?;
    let journal = Journal::open(&settings.state_dir)?;
    let inputs = RunInputs {
        sets: sets.to_vec(),
        grants: grants.clone(),
    };
    let now = super::now(settings);
    let rb = &prepared.runbook;
    let record = journal.new_run(&NewRun {
        runbook_name: &rb.name,
        runbook_version: &rb.version,
        runbook_path: &absolute(&rb.file).to_string_lossy(),
        runbook_sha256: &rb.sha256,
        mode,
        params_json: &serde_json::to_string(&inputs).map_err(anyhow::Error::from)?,
        now,
    })?;
    lock.set_run_id(&record.id).map_err(anyhow::Error::from)?;
    settings.reporter.line(&format!(
        "run {} of {} {} ({} step{})",
        record.id,
        rb.name,
        rb.version,
        prepared.steps.len(),
        if prepared.steps.len() == 1 { "" } else { "s" }
    ));
    free_space_event(&journal, &record.id, &prepared, "before")
        .map_err(|e| e.in_run(&record.id))?;
    let outcome = drive(
        sandbox, settings, &journal, &prepared, &record.id, now, mode,
    )
    .await
    .map_err(|f| f.in_run(&record.id))?;
    // For the report only: the run is over, whether or not this is written.
    if let Err(e) = free_space_event(&journal, &record.id, &prepared, "after") {
        tracing::warn!(
            "cannot journal the free space after run {}: {e:#}",
            record.id
        );
    }
    Ok(outcome)
}

/// Journal the free space of every write grant, for the report: what a
/// run cost (or freed) on each filesystem.
fn free_space_event(
    journal: &Journal,
    run_id: &str,
    prepared: &super::Prepared,
    when: &str,
) -> Result<(), Failure> {
    let mut parts = Vec::new();
    for (name, g) in &prepared.runbook.grants {
        if g.access != mend_runbook::Access::Write {
            continue;
        }
        if let Ok(free) = mend_host::sandbox::free_space_at(&g.path) {
            parts.push(format!("{name} {}", mend_human::human_bytes(free)));
        }
    }
    if !parts.is_empty() {
        journal.event(
            run_id,
            None,
            "info",
            &format!("free space {when}: {}", parts.join(", ")),
        )?;
    }
    Ok(())
}

/// Finish a run that was interrupted (killed, crashed, out of space) or
/// stopped at a failed step.
pub async fn resume(
    sandbox: &Sandbox,
    settings: &Settings,
    run: &str,
) -> Result<RunOutcome, Failure> {
    let (journal, record, prepared, _lock) =
        reopen(sandbox, settings, run, &settings.trust).await?;
    match record.status {
        // Interrupted, or stopped by `on_failure = "stop"` once the operator
        // fixed the cause: a failed step goes again from where it failed
        // (done actions kept, the failed one tried again, then it verifies).
        RunStatus::Running | RunStatus::Failed => {
            let stopped = record.status == RunStatus::Failed;
            settings.reporter.line(&format!(
                "resuming run {} of {}{}",
                record.id,
                record.runbook_name,
                if stopped {
                    ", stopped at a failed step"
                } else {
                    ""
                }
            ));
            if stopped {
                journal.set_run_status(&record.id, RunStatus::Running, None)?;
            }
            drive(
                sandbox,
                settings,
                &journal,
                &prepared,
                &record.id,
                record.now,
                record.mode,
            )
            .await
            .map_err(|f| f.in_run(&record.id))
        }
        RunStatus::RollingBack => {
            settings
                .reporter
                .line(&format!("resuming the rollback of run {}", record.id));
            let rb = rollback_prepared(settings, &journal, &prepared, &record.id)
                .await
                .map_err(|f| f.in_run(&record.id))?;
            Ok(outcome(
                &journal,
                &prepared,
                &record.id,
                None,
                None,
                Some(rb),
            )?)
        }
        other => Err(Failure::input(
            &record.id,
            format!(
                "run {} is {}; there is nothing to resume",
                record.id,
                other.as_str()
            ),
            Some(format!("see it with `mend show {}`", record.id)),
        )),
    }
}

/// Open the journal, find a run, check its runbook is unchanged, prepare it
/// again with the same inputs and take its lock. `trust` decides about the
/// components' signatures and capabilities (a rollback's checks none).
pub(crate) async fn reopen(
    sandbox: &Sandbox,
    settings: &Settings,
    run: &str,
    trust: &crate::supply::Trust,
) -> Result<(Journal, mend_journal::RunRecord, Prepared, RunLock), Failure> {
    let journal = Journal::open_existing(&settings.state_dir)?.ok_or_else(|| {
        Failure::input(
            &settings.state_dir.display().to_string(),
            format!("no journal in {}", settings.state_dir.display()),
            Some("pass the --state-dir the run used".into()),
        )
    })?;
    let record = journal
        .run(run)
        .map_err(|e| Failure::input(run, format!("{e:#}"), None))?;
    // A resume or rollback acts on these records: none may be damaged.
    journal.verify_run(&record.id)?;
    let path = PathBuf::from(&record.runbook_path);
    let bytes = std::fs::read(&path).map_err(|e| {
        Failure::input(
            &record.runbook_path,
            format!("cannot read the run's runbook: {e}"),
            Some("it must be where the run found it".into()),
        )
    })?;
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    if sha != record.runbook_sha256 {
        return Err(Failure::input(
            &record.runbook_path,
            format!(
                "the runbook changed since run {} started (sha256 {} then, {} now); resuming it could do something else",
                record.id,
                record.short_sha256(),
                &sha[..12]
            ),
            Some(format!(
                "put the old runbook back to resume or roll back, or roll back with `mend rollback {}` using it",
                record.id
            )),
        ));
    }
    let inputs: RunInputs = serde_json::from_str(&record.params_json).unwrap_or_default();
    let prepared = prepare(
        sandbox,
        &path,
        &inputs.sets,
        &inputs.grants,
        record.mode == RunMode::Rehearse,
        trust,
    )
    .await?;
    for s in journal.steps(&record.id)? {
        if let Some(p) = prepared.steps.get(s.idx as usize)
            && p.loaded.sha256 != s.component_sha256
        {
            return Err(Failure::input(
                &record.runbook_path,
                format!(
                    "step `{}` is a different component than when run {} started",
                    s.step_id, record.id
                ),
                Some(
                    "use the mend binary (bundled steps) and .wasm files the run started with"
                        .into(),
                ),
            ));
        }
    }
    let mut lock = lock(settings, &prepared)?;
    lock.set_run_id(&record.id).map_err(anyhow::Error::from)?;
    Ok((journal, record, prepared, lock))
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Apply steps from the first one not yet verified.
async fn drive(
    sandbox: &Sandbox,
    settings: &Settings,
    journal: &Journal,
    prepared: &Prepared,
    run_id: &str,
    now: i64,
    mode: RunMode,
) -> Result<RunOutcome, Failure> {
    let done: HashMap<u32, mend_journal::StepRecord> = journal
        .steps(run_id)?
        .into_iter()
        .map(|s| (s.idx, s))
        .collect();
    let total = prepared.steps.len();
    for step in &prepared.steps {
        let prior = done.get(&step.idx);
        if prior.is_some_and(|s| s.status == StepStatus::Verified) {
            continue;
        }
        settings.reporter.line(&format!(
            "step {}/{total} {} ({})",
            step.idx + 1,
            step.def.id,
            step.def.uses
        ));
        match apply_step(
            sandbox, settings, journal, prepared, step, prior, run_id, now,
        )
        .await
        {
            Ok(()) => {
                journal.set_step_status(run_id, step.idx, StepStatus::Verified, None)?;
                // When its last check passed: restore drills and reports
                // time each step by it.
                journal.event(run_id, Some(step.idx), "info", super::VERIFIED)?;
            }
            Err(StepStop::Journal(e)) => return Err(Failure::from(e).in_run(run_id)),
            Err(stop @ (StepStop::BadInput(_) | StepFailed(_))) => {
                // A step that refused its parameters before anything of the
                // run changed: bad input, the (empty) run closed by a rollback.
                let bad_input =
                    matches!(stop, StepStop::BadInput(_)) && nothing_done(journal, run_id)?;
                let (StepStop::BadInput(message) | StepFailed(message)) = stop else {
                    unreachable!("matched above")
                };
                // Errors carry the step's paths and words: neutralised once
                // here, before the journal, the terminal and the report.
                let message = mend_human::sanitize(&message);
                if !journal.steps(run_id)?.iter().any(|s| s.idx == step.idx) {
                    // It failed before it had a plan: record it all the same.
                    journal.save_step(
                        run_id,
                        step.idx,
                        &step.def.id,
                        &step.def.uses.to_string(),
                        &step.loaded.sha256,
                        "null",
                    )?;
                }
                journal.set_step_status(run_id, step.idx, StepStatus::Failed, Some(&message))?;
                journal.event(run_id, Some(step.idx), "error", &message)?;
                settings
                    .reporter
                    .line(&format!("step {} failed: {message}", step.def.id));
                if prepared.runbook.on_failure == OnFailure::Stop && !bad_input {
                    journal.set_run_status(run_id, RunStatus::Failed, Some(&message))?;
                    return outcome(
                        journal,
                        prepared,
                        run_id,
                        Some(&step.def.id),
                        Some(message),
                        None,
                    );
                }
                journal.set_run_status(run_id, RunStatus::RollingBack, Some(&message))?;
                let rb = rollback_prepared(settings, journal, prepared, run_id).await?;
                let mut o = outcome(
                    journal,
                    prepared,
                    run_id,
                    Some(&step.def.id),
                    Some(message),
                    Some(rb),
                )?;
                o.bad_input = bad_input;
                return Ok(o);
            }
        }
    }
    if mode == RunMode::Rehearse {
        // A rehearsal never commits: it proves it can go back.
        journal.set_run_status(run_id, RunStatus::RollingBack, None)?;
        let rb = rollback_prepared(settings, journal, prepared, run_id).await?;
        return outcome(journal, prepared, run_id, None, None, Some(rb));
    }
    // Committed first, then the undo data goes: if the journal cannot say
    // "committed", the run must still be able to roll back, trash and all.
    // A crash between the two leaves only trash behind.
    journal.set_run_status(run_id, RunStatus::Committed, None)?;
    let tidy = || -> anyhow::Result<()> {
        for step in &prepared.steps {
            apply::purge(&step.grants, run_id)?;
        }
        restore_roots(journal, prepared, run_id, true)
    };
    if let Err(e) = tidy() {
        settings.reporter.line(&format!(
            "warning: run {run_id} is committed, but its trash was not all removed: {e:#}"
        ));
    }
    outcome(journal, prepared, run_id, None, None, None)
}

/// Put back the times of grant roots that trash and staging folders touched,
/// earliest step last so its times win.
pub(crate) fn restore_roots(
    journal: &Journal,
    prepared: &Prepared,
    run_id: &str,
    committed: bool,
) -> anyhow::Result<()> {
    let actions = journal.actions(run_id)?;
    for rec in journal.steps(run_id)?.iter().rev() {
        let Some(saved) = rec
            .plan_json
            .as_deref()
            .and_then(|j| serde_json::from_str::<SavedStep>(j).ok())
        else {
            continue;
        };
        let Some(step) = prepared.steps.get(rec.idx as usize) else {
            continue;
        };
        // After a commit, a root the step's own actions changed keeps the
        // time they gave it: only mend's trash and staging folders are
        // taken back. After a rollback, every root's time goes back.
        // The step's actions: its journal rows (an older journal keeps them
        // in the saved plan).
        let rows: Vec<Planned> = if saved.plan.actions.is_empty() {
            actions
                .iter()
                .filter(|a| a.step_idx == rec.idx)
                .filter_map(|a| serde_json::from_str(&a.action_json).ok())
                .collect()
        } else {
            Vec::new()
        };
        let planned = if saved.plan.actions.is_empty() {
            &rows
        } else {
            &saved.plan.actions
        };
        let changed: Vec<&str> = if !committed {
            Vec::new()
        } else {
            planned
                .iter()
                .flat_map(|p| p.action.changed_paths())
                .filter_map(|p| mend_host::grants::split(p).ok())
                .filter(|(_, rel)| !rel.contains('/'))
                .map(|(grant, _)| grant)
                .collect()
        };
        for t in saved
            .roots
            .iter()
            .filter(|t| !changed.contains(&t.grant.as_str()))
        {
            apply::restore_times(&step.grants, t)?;
        }
    }
    Ok(())
}

pub(crate) fn outcome(
    journal: &Journal,
    prepared: &Prepared,
    run_id: &str,
    failed_step: Option<&str>,
    error: Option<String>,
    rollback: Option<RollbackOutcome>,
) -> Result<RunOutcome, Failure> {
    let record = journal.run(run_id)?;
    let steps = journal.steps(run_id)?;
    let actions = journal.actions(run_id)?;
    Ok(RunOutcome {
        run_id: run_id.to_string(),
        runbook: prepared.runbook.name.clone(),
        status: record.status,
        steps_done: steps
            .iter()
            .filter(|s| s.status == StepStatus::Verified)
            .map(|s| s.step_id.clone())
            .collect(),
        actions_done: actions
            .iter()
            .filter(|a| {
                matches!(
                    a.state,
                    ActionState::Done | ActionState::Undoing | ActionState::Undone
                )
            })
            .count() as u64,
        failed_step: failed_step.map(str::to_string),
        error,
        rollback,
        bad_input: false,
    })
}

/// Why a step did not finish: it failed (the run rolls back), or the
/// journal could not be written (the run stops where it is: rolling back
/// is a change too, and it could not be journaled either).
enum StepStop {
    Failed(String),
    Journal(anyhow::Error),
    /// The step refused its parameters while planning (see `PlanError`).
    BadInput(String),
}

/// Whether no action of the run has been journaled yet.
fn nothing_done(journal: &Journal, run_id: &str) -> Result<bool, Failure> {
    Ok(journal.actions(run_id)?.is_empty())
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

#[allow(clippy::too_many_arguments)]
async fn apply_step(
    sandbox: &Sandbox,
    settings: &Settings,
    journal: &Journal,
    prepared: &Prepared,
    step: &PreparedStep,
    prior: Option<&mend_journal::StepRecord>,
    run_id: &str,
    now: i64,
) -> Result<(), StepStop> {
    tracing::info!(run = run_id, step = %step.def.id, resumed = prior.is_some(), "applying step");
    // A step planned before a crash keeps its plan: planning again after some
    // of its actions ran would plan something else.
    let saved = prior
        .and_then(|s| s.plan_json.as_deref())
        .and_then(|j| serde_json::from_str::<SavedStep>(j).ok());
    let saved = match saved {
        Some(s) => s,
        None => {
            let (plan, logs) = plan_step(sandbox, &prepared.runbook, step, now, settings)
                .await
                .map_err(|e| match e.bad_input {
                    true => StepStop::BadInput(e.to_string()),
                    false => StepFailed(e.to_string()),
                })?;
            for (level, msg) in &logs {
                journal.event(run_id, Some(step.idx), level, msg)?;
            }
            let roots = step
                .grants
                .iter()
                .filter(|g| g.access == mend_runbook::Access::Write)
                .map(|g| apply::dir_times(&g.dir, &g.name, ""))
                .collect::<anyhow::Result<Vec<_>>>()?;
            // The actions go to their own rows; the saved plan keeps the
            // rest, so no action is journaled twice.
            let mut saved = SavedStep { plan, roots };
            let actions = std::mem::take(&mut saved.plan.actions);
            let json = serde_json::to_string(&saved).map_err(anyhow::Error::from)?;
            let rows: Vec<String> = actions
                .iter()
                .map(serde_json::to_string)
                .collect::<Result<_, _>>()
                .map_err(anyhow::Error::from)?;
            let planned: Vec<mend_journal::PlannedAction> = actions
                .iter()
                .zip(&rows)
                .enumerate()
                .map(|(i, (a, json))| mend_journal::PlannedAction {
                    seq: i as u32,
                    action_json: json,
                    reversible: a.reversible,
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
            )?;
            for line in &saved.plan.summary {
                settings.reporter.line(&format!("  {line}"));
            }
            saved.plan.actions = actions;
            saved
        }
    };
    journal.set_step_status(run_id, step.idx, StepStatus::Applying, None)?;
    let states: HashMap<u32, mend_journal::ActionRecord> = journal
        .actions(run_id)?
        .into_iter()
        .filter(|a| a.step_idx == step.idx)
        .map(|a| (a.seq, a))
        .collect();
    let mut saved = saved;
    if saved.plan.actions.is_empty() && !states.is_empty() {
        // Planned before a crash: the actions are the step's rows (a journal
        // from before rows were written at plan time keeps them in the plan).
        let mut rows: Vec<&mend_journal::ActionRecord> = states.values().collect();
        rows.sort_by_key(|r| r.seq);
        saved.plan.actions = rows
            .iter()
            .map(|r| serde_json::from_str::<Planned>(&r.action_json))
            .collect::<Result<_, _>>()
            .map_err(|e| {
                anyhow::anyhow!(
                    "journal records of step {} of run {run_id} are damaged ({e}); refusing to guess its plan",
                    step.idx
                )
            })?;
    }
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
    };
    let actions = &saved.plan.actions;
    settings
        .reporter
        .actions_start(&step.def.id, actions.len() as u64);
    let mut seq = 0usize;
    while seq < actions.len() {
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
            let i = i as u32;
            match states.get(&i).filter(|r| r.state != ActionState::Planned) {
                Some(rec) if rec.state == ActionState::Done => pres.push(None),
                Some(rec) => {
                    let j = Journaled::of(rec)?;
                    pres.push(Some(j.pre));
                }
                None => {
                    let pre = apply::prepare_in(&mut batch, &cx, &planned.action)
                        .map_err(|e| StepFailed(format!("step `{}`: {e:#}", step.def.id)))?;
                    let action_json =
                        serde_json::to_string(planned).map_err(anyhow::Error::from)?;
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
            let i = (seq + k) as u32;
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
                settings.reporter.bytes_start(
                    &format!("{} {}", planned.action.kind(), planned.action.target()),
                    planned.bytes,
                );
            }
            let performed = apply::perform_in(&mut batch, &cx, &key, &planned.action, &pre);
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
                    let e = mend_human::sanitize(&format!("{e:#}"));
                    // What was performed so far in the batch is done: say so first.
                    let marks: Vec<(u32, Option<&str>)> =
                        done.iter().map(|(i, j)| (*i, Some(j.as_str()))).collect();
                    journal.mark_done(run_id, step.idx, &marks)?;
                    let msg = e;
                    journal.set_action_state(
                        run_id,
                        step.idx,
                        i,
                        ActionState::Failed,
                        Some(&msg),
                    )?;
                    settings.reporter.actions_end();
                    return Err(StepFailed(format!(
                        "{} {}: {msg}",
                        planned.action.kind(),
                        planned.action.target()
                    )));
                }
            }
        }
        let marks: Vec<(u32, Option<&str>)> =
            done.iter().map(|(i, j)| (*i, Some(j.as_str()))).collect();
        if !marks.is_empty() {
            journal.mark_done(run_id, step.idx, &marks)?;
        }
        seq = end;
    }
    settings.reporter.actions_end();
    journal.set_step_status(run_id, step.idx, StepStatus::Applied, None)?;
    verify(sandbox, settings, journal, step, run_id, now).await
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

async fn verify(
    sandbox: &Sandbox,
    settings: &Settings,
    journal: &Journal,
    step: &PreparedStep,
    run_id: &str,
    now: i64,
) -> Result<(), StepStop> {
    let attempts = step.def.retry.attempts.max(1);
    let mut last = String::new();
    let mut shown = String::new();
    for attempt in 1..=attempts {
        let host = super::host_ctx(step, now, settings);
        let (result, _) = sandbox
            .verify(
                &step.loaded,
                host,
                step.limits,
                super::context(step, now),
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
