//! Removals performed while their step still plans (`mend run`).
//!
//! A cull of a million files plans for as long as its walk takes, then
//! removes for as long as its unlinks take; `find -delete` does both at
//! once. Here a thread of its own performs each batch of removals (a
//! disposable grant's unlinks, a plain grant's moves to the trash) as soon
//! as the step has handed it over and the host has checked it, while the
//! step goes on planning on the other core. Each batch is journaled exactly
//! as after planning: as planned, intended (one commit), performed (each
//! removal checks the world), done (one commit), through the performer's
//! own connection to the journal; the planning thread writes nothing until
//! the plan ends.
//!
//! Only a plan's first batches go early, while nothing else came before
//! them: an action of another kind (a rename, a command) ends it, and
//! everything after it waits for the whole plan, as before. In a rehearsal
//! on overlays moves to the trash wait too: each copies its file up, and
//! the room for that is checked for the whole plan before anything is done.
//! A refusal later in the plan fails the step: the run's rollback puts the
//! moves back, and the unlinks done by then are said. A crash leaves the
//! step applying with the roots' times and no plan: a resume finishes the
//! batches journaled and plans the step again from the seq after them,
//! dropping the removals it had already journaled.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

use mend_host::apply::ApplyCtx;
use mend_journal::{ActionState, BulkRange, Journal, PlannedBulk};
use mend_plan::{Packed, Planned};

use super::apply::{BulkCx, StepStop, bulk_batch};
use crate::load::PreparedStep;
use crate::plan::spool::{Early, Handed};
use crate::settings::Reporter;

/// What the performer did while the step planned.
#[derive(Debug, Default)]
pub(crate) struct Done {
    pub batches: u32,
    pub actions: u64,
    /// Of them, moves to the trash (a rollback puts them back).
    pub reversible: u64,
    /// What removals said (a folder left: changed since the plan).
    pub notes: Vec<String>,
}

impl Done {
    /// What a step refused after its early batches says of them: which
    /// cannot be undone, and which a rollback puts back.
    pub(crate) fn refusal_notes(&self) -> String {
        let mut notes = String::new();
        let gone = self.actions - self.reversible;
        if gone > 0 {
            notes += &format!(
                "\n  = note: {} removals in its disposable grants were done while it planned; they cannot be undone",
                mend_human::human_count(gone)
            );
        }
        if self.reversible > 0 {
            notes += &format!(
                "\n  = note: {} files were moved to the trash while it planned; a rollback of the run puts them back",
                mend_human::human_count(self.reversible)
            );
        }
        notes
    }
}

/// The thread that performs the early batches.
pub(crate) struct Performer {
    thread: JoinHandle<Result<Done, StepStop>>,
    /// Set while the step plans: its removals leave the step's core alone.
    planning: Arc<AtomicBool>,
}

/// Whether a step may perform removals while it plans: it holds a write
/// grant.
pub(crate) fn wanted(step: &PreparedStep) -> bool {
    step.grants
        .iter()
        .any(|g| g.access == mend_runbook::Access::Write)
}

/// Starts the performer of step `step` of run `run_id`, journaling through
/// a connection of its own to `journal`'s file. The step row must exist
/// (`Journal::start_step`).
pub(crate) fn start(
    journal: &Journal,
    run_id: &str,
    step: &PreparedStep,
    reporter: Arc<dyn Reporter>,
) -> anyhow::Result<(Early, Performer)> {
    let state_dir = journal
        .path()
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    let (to, from) = mpsc::channel::<Handed>();
    let failed = Arc::new(AtomicBool::new(false));
    let unpacked = Arc::new(AtomicUsize::new(0));
    let planning = Arc::new(AtomicBool::new(true));
    let early = Early {
        to,
        unpacked: unpacked.clone(),
        trash: super::overlay::upper_scratch().is_none(),
        failed: failed.clone(),
    };
    let (run_id, grants, commands) = (
        run_id.to_string(),
        step.grants.clone(),
        step.commands.clone(),
    );
    let (idx, id, timeout) = (step.idx, step.def.id.clone(), step.limits.timeout);
    let still = planning.clone();
    let thread = std::thread::Builder::new()
        .name("mend-early".into())
        .spawn(move || {
            // Opened here, beside the step's start rather than before it
            // (0.3 ms of the first removal's wait). One that fails fails
            // the step: planning stops at its next hand-over, and the join
            // says why.
            let own = Journal::open(&state_dir).inspect_err(|_| {
                failed.store(true, Ordering::Relaxed);
            })?;
            let notes = std::cell::RefCell::new(Vec::new());
            let note = |line: String| notes.borrow_mut().push(line);
            let progress = |_: u64| {};
            let cx = ApplyCtx {
                grants: &grants,
                commands: &commands,
                step: &id,
                timeout,
                progress: &progress,
                note: &note,
                on_overlay: crate::run::overlay::upper_scratch().is_some(),
            };
            let bc = BulkCx {
                journal: &own,
                run_id: &run_id,
                reporter: reporter.as_ref(),
                step_idx: idx,
                step_id: &id,
                planning: Some(&still),
            };
            let mut done = Done::default();
            for handed in from {
                if handed.actions.is_some() {
                    unpacked.fetch_sub(1, Ordering::AcqRel);
                }
                // After a failure the rest is neither journaled nor done:
                // planning stops at its next hand-over.
                if failed.load(Ordering::Relaxed) {
                    continue;
                }
                let packed = &handed.packed;
                let r = perform(&bc, &cx, packed, handed.actions);
                if let Err(e) = r {
                    failed.store(true, Ordering::Relaxed);
                    return Err(e);
                }
                done.batches += 1;
                done.actions += u64::from(packed.n);
                if packed.reversible {
                    done.reversible += u64::from(packed.n);
                }
            }
            done.notes = notes.take();
            Ok(done)
        })
        .map_err(|e| anyhow::anyhow!("cannot start a thread for step {}: {e}", step.def.id))?;
    Ok((early, Performer { thread, planning }))
}

impl Performer {
    /// Waits for the batches handed over (the plan's sender is gone once
    /// planning ended, whichever way), on every core from now on.
    pub(crate) fn join(self) -> Result<Done, StepStop> {
        self.planning.store(false, Ordering::Relaxed);
        self.thread.join().unwrap_or_else(|_| {
            Err(StepStop::Failed(
                "the early removals' thread panicked".into(),
            ))
        })
    }
}

/// One batch: journaled as planned and intended in one commit, performed
/// and done as any batch of removals is (`bulk_batch`).
fn perform(
    bc: &BulkCx<'_>,
    cx: &ApplyCtx<'_>,
    packed: &Packed,
    actions: Option<Vec<Planned>>,
) -> Result<(), StepStop> {
    let actions = match actions {
        Some(a) => a,
        None => {
            let what = format!("step {} batch {}", bc.step_idx, packed.lo);
            mend_journal::unpack(&packed.blob, packed.n, &what)?
                .iter()
                .map(|a| serde_json::from_str::<Planned>(a).map_err(anyhow::Error::from))
                .collect::<anyhow::Result<_>>()?
        }
    };
    room(bc.step_id, &actions)?;
    let range = BulkRange {
        lo: packed.lo,
        n: packed.n,
        state: ActionState::Planned,
    };
    bulk_batch(bc, cx, &actions, &range, Some(&PlannedBulk::of(packed)))
}

/// On overlays: room in the upper layer's filesystem for what the batch
/// writes there (a whiteout per removal, its folders copied up), as
/// `apply_step` makes for what is left once the plan is whole. Without it
/// a rehearsal of a cull of a million mixed files ran out of its tmpfs's
/// first 65,536 inodes while the step still planned.
fn room(step: &str, actions: &[Planned]) -> Result<(), StepStop> {
    super::overlay::make_room(step, |fs| {
        let actions: Vec<&Planned> = actions.iter().collect();
        Ok(mend_host::cow::space::need(&actions, fs))
    })
}
