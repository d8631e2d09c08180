//! Run: each step planned against the world its predecessors left, its
//! actions journaled as intended, performed, journaled as done, then
//! verified; everything rolled back when something fails. `mend run` and
//! `mend resume` here; `apply` does one step, `rollback` undoes a run,
//! `rehearse`, `overlay` and `faults` prove a runbook can go back, `lock` keeps one run
//! per runbook, `journaled` is what they share of the journal.

mod apply;
mod early;
pub mod faults;
mod journaled;
pub mod lock;
pub(crate) mod overlay;
mod parallel;
pub mod rehearse;
pub mod rollback;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Serialize;

use mend_host::apply as host_apply;
use mend_host::sandbox::Sandbox;
use mend_journal::{Journal, NewRun, RunInputs, RunMode, RunStatus, StepStatus};
use mend_runbook::OnFailure;

use crate::exit;
use crate::load::{Prepared, prepare};
use crate::outcome::{Failure, Outcome};
use crate::settings::Settings;
use apply::{StepStop, apply_step};
use journaled::{absolute, free_space_event, lock, mark_end, reopen, restore_roots};
use rollback::{RollbackOutcome, rollback_prepared};

/// The event journaled when a step's actions are applied and its verify
/// passed: a drill's clock stops at the last one.
pub const VERIFIED: &str = "step verified";

/// What every step of one run shares, built once when the run starts (or
/// resumes) and handed down: nothing below fetches it back from above.
pub(crate) struct RunCx<'a> {
    pub sandbox: &'a Sandbox,
    pub settings: &'a Settings,
    pub journal: &'a Journal,
    pub prepared: &'a Prepared,
    pub run_id: &'a str,
    /// The clock the run's steps see (`--now`, or the run's start).
    pub now: i64,
}

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

/// Run a runbook from the start.
pub async fn run(
    sandbox: &Sandbox,
    settings: &Settings,
    file: &Path,
    sets: &[(String, String)],
    mode: RunMode,
    grants: &BTreeMap<String, PathBuf>,
    hold: bool,
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
    if mode == RunMode::Run {
        refuse_if_held(&journal, &prepared.runbook.name)?;
    }
    let rb = &prepared.runbook;
    // A secret's value is journaled with `--set` (a resume needs it), also
    // when it is the runbook's default, so every reader can mask it.
    let mut sets = sets.to_vec();
    for name in &rb.secrets {
        if !sets.iter().any(|(k, _)| k == name)
            && let Some(v) = rb.params.get(name).filter(|v| !v.is_empty())
        {
            sets.push((name.clone(), v.clone()));
        }
    }
    let inputs = RunInputs {
        sets,
        grants: grants.clone(),
        hold,
        secrets: rb.secrets.iter().cloned().collect(),
    };
    let now = crate::settings::now(settings);
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
    let cx = RunCx {
        sandbox,
        settings,
        journal: &journal,
        prepared: &prepared,
        run_id: &record.id,
        now,
    };
    let outcome = drive(&cx, mode, hold).await;
    if outcome.is_ok() {
        // Between the run's terminal status and what follows it.
        mend_faults::crash_point("ended", 0, 0);
        // For the report only: the run is over, whether or not this is written.
        if let Err(e) = free_space_event(&journal, &record.id, &prepared, "after") {
            tracing::warn!(
                "cannot journal the free space after run {}: {e:#}",
                record.id
            );
        }
    }
    mark_end(&journal, &record.id);
    outcome.map_err(|f| f.in_run(&record.id))
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
            let cx = RunCx {
                sandbox,
                settings,
                journal: &journal,
                prepared: &prepared,
                run_id: &record.id,
                now: record.now,
            };
            // A held run killed before it was held holds again.
            let hold = serde_json::from_str::<RunInputs>(&record.params_json).is_ok_and(|i| i.hold);
            let outcome = drive(&cx, record.mode, hold).await;
            mark_end(&journal, &record.id);
            outcome.map_err(|f| f.in_run(&record.id))
        }
        RunStatus::RollingBack => {
            settings
                .reporter
                .line(&format!("resuming the rollback of run {}", record.id));
            let rb = rollback_prepared(settings, &journal, &prepared, &record.id).await;
            mark_end(&journal, &record.id);
            let rb = rb.map_err(|f| f.in_run(&record.id))?;
            Ok(outcome(
                &journal,
                &prepared,
                &record.id,
                None,
                None,
                Some(rb),
            )?)
        }
        // Verified already: what is left is a decision, not work.
        RunStatus::Held => Err(Failure::input(
            &record.id,
            format!(
                "run {} is held: every step verified, not committed; there is nothing to resume",
                record.id
            ),
            Some(format!(
                "commit it with `mend commit {0}`, or undo it with `mend rollback {0}`",
                record.id
            )),
        )),
        other => {
            // Killed between its terminal status and its end mark:
            // followers still wait for the mark.
            mark_end(&journal, &record.id);
            Err(Failure::input(
                &record.id,
                format!(
                    "run {} is {}; there is nothing to resume",
                    record.id,
                    other.as_str()
                ),
                Some(format!("see it with `mend show {}`", record.id)),
            ))
        }
    }
}

/// Apply steps from the first one not yet verified.
async fn drive(cx: &RunCx<'_>, mode: RunMode, hold: bool) -> Result<RunOutcome, Failure> {
    let RunCx {
        settings,
        journal,
        prepared,
        run_id,
        ..
    } = *cx;
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
        match apply_step(cx, step, prior).await {
            Ok(()) => {
                journal.set_step_status(run_id, step.idx, StepStatus::Verified, None)?;
                // When its last check passed: restore drills and reports
                // time each step by it.
                journal.event(run_id, Some(step.idx), "info", VERIFIED)?;
            }
            Err(StepStop::Journal(e)) => return Err(Failure::from(e).in_run(run_id)),
            Err(stop @ (StepStop::BadInput(_) | StepStop::Failed(_))) => {
                // A step that refused its parameters before anything of the
                // run changed: bad input, the (empty) run closed by a rollback.
                let bad_input =
                    matches!(stop, StepStop::BadInput(_)) && apply::nothing_done(journal, run_id)?;
                let (StepStop::BadInput(message) | StepStop::Failed(message)) = stop else {
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
                // Said once: the step's name, then what it says (which often
                // begins by naming the step too).
                settings.reporter.line(&format!(
                    "step {} failed: {}",
                    step.def.id,
                    unnamed(&message, &step.def.id)
                ));
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
    if hold {
        // Verified, not committed: the undo data and the trash stay until
        // `mend commit` or `mend rollback` settles the run.
        journal.set_run_status(run_id, RunStatus::Held, None)?;
        journal.event(run_id, None, "info", "held: verified, not committed")?;
        settings.reporter.line(&format!(
            "run {run_id} is held: verified, not committed; `mend commit {run_id}` commits it, `mend rollback {run_id}` undoes it"
        ));
        return outcome(journal, prepared, run_id, None, None, None);
    }
    commit(settings, journal, prepared, run_id)?;
    outcome(journal, prepared, run_id, None, None, None)
}

/// Commit a verified run: committed first, then its trash purged.
fn commit(
    settings: &Settings,
    journal: &Journal,
    prepared: &Prepared,
    run_id: &str,
) -> Result<(), Failure> {
    // Committed first, then the undo data goes: if the journal cannot say
    // "committed", the run must still be able to roll back, trash and all.
    // A crash between the two leaves only trash behind.
    journal.set_run_status(run_id, RunStatus::Committed, None)?;
    let tidy = || -> anyhow::Result<()> {
        for step in &prepared.steps {
            host_apply::purge(&step.grants, run_id)?;
        }
        restore_roots(journal, prepared, run_id, true)
    };
    if let Err(e) = tidy() {
        settings.reporter.line(&format!(
            "warning: run {run_id} is committed, but its trash was not all removed: {e:#}"
        ));
    }
    prune_history(settings, journal);
    Ok(())
}

/// `mend commit RUN`: settle a held run by committing it (its trash purged).
pub async fn commit_held(
    sandbox: &Sandbox,
    settings: &Settings,
    run: &str,
) -> Result<RunOutcome, Failure> {
    // Like a rollback, committing runs no step: the components the run
    // started with are enough, whatever the policy says now.
    let trust = settings.trust.for_undo();
    let (journal, record, prepared, _lock) = reopen(sandbox, settings, run, &trust).await?;
    if record.status != RunStatus::Held {
        return Err(Failure::input(
            &record.id,
            format!(
                "run {} is {}, not held: only a held run (`mend run --hold`) waits for a commit",
                record.id,
                record.status.as_str()
            ),
            Some(format!("see it with `mend show {}`", record.id)),
        ));
    }
    let done = commit(settings, &journal, &prepared, &record.id);
    mark_end(&journal, &record.id);
    done.map_err(|f| f.in_run(&record.id))?;
    outcome(&journal, &prepared, &record.id, None, None, None)
}

/// While a run of this runbook is held its undo data is the only way back:
/// a new run on top of it would leave the held one unsafe to undo.
fn refuse_if_held(journal: &Journal, runbook: &str) -> Result<(), Failure> {
    let held = journal.history(&mend_journal::HistoryFilter {
        runbook: Some(runbook.to_string()),
        status: Some(RunStatus::Held),
        limit: Some(1),
    })?;
    if let Some(h) = held.first() {
        return Err(Failure::Locked(format!(
            "runbook `{runbook}` has a held run {0} (verified, not committed): a new run waits until it is settled\n  = help: `mend commit {0}` keeps its changes, `mend rollback {0}` undoes them",
            h.id
        )));
    }
    Ok(())
}

/// After a commit, old runs leave the journal as the policy's `[history]`
/// says, so it does not grow for ever. The run is done: a prune that fails
/// is a warning, never the run's failure.
fn prune_history(settings: &Settings, journal: &Journal) {
    let keep = settings.trust.policy.history;
    let vacuum = !mend_journal::reserve::lean();
    match journal.prune(keep, mend_journal::now_ms(), false, vacuum) {
        Ok(p) if !p.runs.is_empty() => settings.reporter.line(&format!(
            "history: {} old run{} pruned from the journal ({} -> {})",
            p.runs.len(),
            if p.runs.len() == 1 { "" } else { "s" },
            mend_human::human_bytes(p.bytes_before),
            mend_human::human_bytes(p.bytes_after),
        )),
        Ok(_) => {}
        Err(e) => settings.reporter.line(&format!(
            "warning: old runs were not pruned from the journal: {e:#}"
        )),
    }
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
    Ok(RunOutcome {
        run_id: run_id.to_string(),
        runbook: prepared.runbook.name.clone(),
        status: record.status,
        steps_done: steps
            .iter()
            .filter(|s| s.status == StepStatus::Verified)
            .map(|s| s.step_id.clone())
            .collect(),
        // Counted by the journal: a cull of a million files is not read back.
        actions_done: journal.actions_done(run_id)?,
        failed_step: failed_step.map(str::to_string),
        error,
        rollback,
        bad_input: false,
    })
}

/// A message without its leading "step `ID`: ", for a line that names the
/// step already.
pub(crate) fn unnamed<'m>(message: &'m str, step: &str) -> &'m str {
    message
        .strip_prefix(&format!("step `{step}`: "))
        .unwrap_or(message)
}

impl Outcome for RunOutcome {
    fn exit_code(&self) -> i32 {
        match (self.status, &self.rollback) {
            _ if self.bad_input => exit::BAD_INPUT,
            (RunStatus::Committed | RunStatus::Held, _) => exit::SUCCESS,
            (RunStatus::RollbackFailed, _) => exit::ROLLBACK_FAILED,
            (_, Some(r)) if r.failed.is_some() => exit::ROLLBACK_FAILED,
            _ => exit::STEP_FAILED,
        }
    }
}
