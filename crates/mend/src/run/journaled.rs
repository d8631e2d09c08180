//! What a run needs of the journal and the world around its steps, shared
//! by running, resuming and rolling back: the run lock, reopening a run
//! (its runbook unchanged, its inputs as they were), the free-space events,
//! and the grant roots' times put back at the end.

use std::path::{Path, PathBuf};

use mend_journal::{Journal, RunInputs, RunMode, SavedStep};
use mend_plan::Planned;

use super::lock::{GrantClaim, Holder, RunLock};
use crate::load::{Prepared, prepare};
use crate::outcome::Failure;
use crate::settings::Settings;
use mend_host::apply;
use mend_host::sandbox::Sandbox;

/// The run lock of a runbook, and its write grants claimed against other
/// runbooks' runs.
pub(crate) fn lock(settings: &Settings, prepared: &Prepared) -> Result<RunLock, Failure> {
    let rb = &prepared.runbook;
    let refused = |e: crate::run::lock::LockError| match e {
        crate::run::lock::LockError::Held {
            holder: Some(ref h),
            ..
        } if !h.id.is_empty() => Failure::Locked(format!(
            "{e}\n  = help: wait for it to finish (a lock never outlives its process); if it hangs, `mend unlock {} --id {}` stops it and the run stays resumable",
            rb.name, h.id
        )),
        crate::run::lock::LockError::Held { .. } => Failure::Locked(format!(
            "{e}\n  = help: wait for it to finish; if its process is gone the lock is free again (a lock never outlives its process)"
        )),
        crate::run::lock::LockError::GrantHeld(_) => Failure::Locked(format!(
            "{e}\n  = help: wait for that run to finish; two runbooks never write the same tree at once"
        )),
        crate::run::lock::LockError::Io(e) => Failure::Internal(anyhow::anyhow!(
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

/// Journal the free space of every write grant, for the report: what a
/// run cost (or freed) on each filesystem.
pub(crate) fn free_space_event(
    journal: &Journal,
    run_id: &str,
    prepared: &super::Prepared,
    when: &str,
) -> Result<(), Failure> {
    let mut parts = Vec::new();
    let mut data = Vec::new();
    for (name, g) in &prepared.runbook.grants {
        if g.access != mend_runbook::Access::Write {
            continue;
        }
        if let Ok(free) = mend_host::space::free_space_at(&g.path) {
            parts.push(format!("{name} {}", mend_human::human_bytes(free)));
            data.push((name.clone(), free));
        }
    }
    journal.grant_space(run_id, when, &data)?;
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

/// The run's end mark, after the last thing a command wrote for it: a
/// follower (`mend watch`, `mend serve`) stops there, not at the terminal
/// status, which a commit writes before the purge and the free space after
/// it. Only for a run that is over (a failed or killed one is not: a resume
/// goes on writing), and only once. The run is settled whether or not this
/// is written: a follower then sees the writer gone, or `mend resume`
/// writes it.
pub(crate) fn mark_end(journal: &Journal, run_id: &str) {
    let mark = || -> anyhow::Result<()> {
        if journal.run(run_id)?.status.is_terminal() && !journal.ended(run_id)? {
            journal.end_run(run_id)?;
        }
        Ok(())
    };
    if let Err(e) = mark() {
        tracing::warn!("cannot mark run {run_id} ended: {e:#}");
    }
}

/// Open the journal, find a run, check its runbook is unchanged, prepare it
/// again with the same inputs and take its lock. `trust` decides about the
/// components' signatures and capabilities (a rollback's checks none).
pub(crate) async fn reopen(
    sandbox: &Sandbox,
    settings: &Settings,
    run: &str,
    trust: &crate::load::supply::Trust,
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

pub(crate) fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Put back the times of grant roots that trash and staging folders touched,
/// earliest step last so its times win.
pub(crate) fn restore_roots(
    journal: &Journal,
    prepared: &Prepared,
    run_id: &str,
    committed: bool,
) -> anyhow::Result<()> {
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
        // Only a root whose time is no longer what it was can need putting
        // back, and when none is, the step's actions need not be read to
        // decide: a committed cull of a million files deep in a cache read
        // every one of them again here.
        let moved = |t: &&mend_plan::DirTimes| {
            !step.grants.get(&t.grant).is_some_and(|g| {
                apply::dir_times(&g.dir, &g.name, &t.rel)
                    .is_ok_and(|now| (now.secs, now.nanos) == (t.secs, t.nanos))
            })
        };
        let candidates: Vec<_> = saved
            .roots
            .iter()
            .filter(|t| !committed || t.rel.is_empty())
            .filter(moved)
            .collect();
        if candidates.is_empty() {
            continue;
        }
        // After a commit, a root the step's own actions changed keeps the
        // time they gave it: only mend's trash and staging folders are
        // taken back. After a rollback, every root's time goes back.
        // The step's actions: its journal rows (an older journal keeps them
        // in the saved plan).
        // Read a batch at a time: a cull of a million files is not held.
        let mut changed: Vec<String> = Vec::new();
        let mut note = |p: &Planned| {
            for path in p.action.changed_paths() {
                if let Ok((grant, rel)) = mend_host::grants::split(path)
                    && !rel.contains('/')
                    && !changed.iter().any(|g| g == grant)
                {
                    changed.push(grant.to_string());
                }
            }
        };
        if let (true, Some(tops)) = (committed, &saved.plan.tops_changed) {
            changed.extend(tops.iter().cloned());
        } else if committed && saved.plan.actions.is_empty() {
            journal.each_action(run_id, rec.idx, |a| {
                if let Ok(p) = serde_json::from_str::<Planned>(&a.action_json) {
                    note(&p);
                }
            })?;
        } else if committed {
            saved.plan.actions.iter().for_each(&mut note);
        }
        // A volume's top (`rel` inside the grant) goes back after a
        // rollback only: after a commit it keeps what the run's actions
        // did to it.
        for t in candidates
            .into_iter()
            .filter(|t| !changed.contains(&t.grant))
        {
            apply::restore_times(&step.grants, t)?;
        }
    }
    Ok(())
}
