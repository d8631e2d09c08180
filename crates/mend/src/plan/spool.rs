//! A step's plan as it arrives, batch by batch (`plan-sink.emit`, then the
//! plan `plan` returns): each action checked against the grants and sized
//! as it comes, and each run of consecutive removals (all reversible or
//! none, up to [`BATCH`]) packed as the journal keeps a batch. What stays
//! unpacked is the current run and the other actions (renames, copies,
//! commands: a handful in any real plan), so a cull of a million files holds
//! a batch of actions, not a million.

use std::sync::Arc;

use mend_host::check::{Removals, check_action};
use mend_host::commands::CommandPolicy;
use mend_host::grants::Grants;
use mend_host::sandbox::{ActionSink, wit};
use mend_host::walked::Walked;
use mend_plan::{Action, Packed, Planned, StepPlan};

/// Removals per packed run: the journal's batch (one row, one commit).
pub const BATCH: usize = 2048;

/// The plan of one step, as it arrives.
pub struct Spool {
    grants: Arc<Grants>,
    commands: CommandPolicy,
    step: String,
    removals: Removals,
    /// The seq the next action gets.
    seq: u32,
    /// What is kept: unpacked actions and packed runs.
    plan: StepPlan,
    /// The current run of removals, packed when it ends or fills.
    run: Vec<Planned>,
    /// The first action refused: it refuses the plan.
    refused: Option<String>,
    /// The most actions held unpacked at once (the run and the batch being
    /// checked), for `mend plan --json`: proof that memory does not grow
    /// with the plan.
    held_max: usize,
    /// Batches handed over while the step planned.
    batches: u32,
    /// The grants whose top folder an action changes (see
    /// `StepPlan::tops_changed`).
    tops: Vec<String>,
    /// Removals a resumed step already journaled before its crash (their
    /// paths): planned again, they are dropped, not done twice.
    done: std::collections::HashSet<String>,
    /// Where removals go while the step still plans (`mend run`):
    /// performed as they arrive, see `run::early`.
    early: Option<Early>,
}

/// The hand-over of a `mend run` to its early performer: each packed run of
/// removals (a disposable grant's, and moves to the trash outside a
/// rehearsal), as long as nothing else came before it in the plan, so the
/// order the plan gives is kept.
pub struct Early {
    pub to: std::sync::mpsc::Sender<Handed>,
    /// Batches handed over with their actions unpacked and not yet taken
    /// by the performer (see [`Handed`]).
    pub unpacked: Arc<std::sync::atomic::AtomicUsize>,
    /// Whether moves to the trash go early too (not in a rehearsal on
    /// overlays: there a move copies its file up, and the room for that is
    /// checked for the whole plan before anything is done).
    pub trash: bool,
    /// Set by the performer when a removal failed: the plan stops there.
    pub failed: Arc<std::sync::atomic::AtomicBool>,
}

/// A batch handed to the early performer: packed, as the journal keeps it,
/// and while the performer keeps up (at most [`UNPACKED_AHEAD`] batches
/// waiting) its actions as they are, so that it need not unpack and parse
/// them again before it removes. When it falls behind (a cull of a million
/// files plans faster than it removes), batches wait packed: a few bytes an
/// action, not a few hundred.
pub struct Handed {
    pub packed: Packed,
    pub actions: Option<Vec<Planned>>,
}

/// Batches that may wait for the performer with their actions unpacked.
pub const UNPACKED_AHEAD: usize = 2;

impl Spool {
    pub fn new(grants: Arc<Grants>, commands: CommandPolicy, step: &str) -> Spool {
        Self::from_seq(grants, commands, step, 0, Default::default(), None)
    }

    /// A spool whose first action gets `seq` (a step planned again after a
    /// crash keeps the batches it had journaled, whose removals `done` are
    /// dropped if planned again), handing removals to `early` while it can.
    pub fn from_seq(
        grants: Arc<Grants>,
        commands: CommandPolicy,
        step: &str,
        seq: u32,
        done: std::collections::HashSet<String>,
        early: Option<Early>,
    ) -> Spool {
        Spool {
            grants,
            commands,
            step: step.to_string(),
            removals: Removals::default(),
            seq,
            plan: StepPlan::default(),
            run: Vec::new(),
            refused: None,
            held_max: 0,
            batches: 0,
            tops: Vec::new(),
            done,
            early,
        }
    }

    /// Check and keep a batch of actions, in order. After a refusal the
    /// rest are dropped: the plan is refused.
    pub fn take(
        &mut self,
        actions: Vec<wit::Action>,
        walked: Option<&Walked>,
    ) -> Result<(), String> {
        if let Some(r) = &self.refused {
            return Err(r.clone());
        }
        if let Some(e) = &self.early
            && e.failed.load(std::sync::atomic::Ordering::Relaxed)
        {
            // What failed is said by the performer; planning stops here.
            let r = format!("step `{}`: stopped: a removal failed", self.step);
            self.refused = Some(r.clone());
            return Err(r);
        }
        self.held_max = self.held_max.max(actions.len() + self.run.len());
        for a in actions {
            let checked = check_action(
                a,
                &self.grants,
                &self.commands,
                &self.step,
                &mut self.removals,
                walked,
            )
            .and_then(|p| self.keep(p));
            if let Err(e) = checked {
                self.run.clear();
                self.refused = Some(e.clone());
                return Err(e);
            }
        }
        Ok(())
    }

    fn keep(&mut self, p: Planned) -> Result<(), String> {
        if let Action::Remove { path } = &p.action
            && !self.done.is_empty()
            && self.done.remove(path)
        {
            return Ok(());
        }
        for path in p.action.changed_paths() {
            if let Ok((grant, rel)) = mend_host::grants::split(path)
                && !rel.contains('/')
                && !self.tops.iter().any(|g| g == grant)
            {
                self.tops.push(grant.to_string());
            }
        }
        if matches!(p.action, Action::Remove { .. }) {
            let joins = self
                .run
                .first()
                .is_none_or(|f| f.reversible == p.reversible && self.run.len() < BATCH);
            if !joins {
                self.end_run()?;
            }
            self.run.push(p);
        } else {
            self.end_run()?;
            self.plan.actions.push(p);
            self.seq += 1;
        }
        Ok(())
    }

    /// The current run of removals, packed (a lone removal stays a row).
    fn end_run(&mut self) -> Result<(), String> {
        match self.run.len() {
            0 => {}
            1 => {
                self.plan.actions.push(self.run.pop().expect("one"));
                self.seq += 1;
            }
            n => {
                let lines: Vec<String> = self
                    .run
                    .iter()
                    .map(serde_json::to_string)
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("step `{}`: {e}", self.step))?;
                let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
                // As long as it is compressed: kept for the plan's life.
                let blob = mend_journal::pack(&lines)
                    .map_err(|e| format!("step `{}`: {e:#}", self.step))?;
                let packed = Packed {
                    lo: self.seq,
                    n: n as u32,
                    reversible: self.run[0].reversible,
                    bytes: self.run.iter().map(|p| p.bytes).sum(),
                    files: self.run.iter().map(|p| p.files).sum(),
                    blob,
                };
                // Performed now if nothing came before it in the plan but
                // batches performed now; else kept, and so is all after it.
                let first = self.plan.actions.is_empty() && self.plan.packed.is_empty();
                let packed = match &self.early {
                    Some(e) if first && (e.trash || !packed.reversible) => {
                        use std::sync::atomic::Ordering;
                        let actions = (e.unpacked.load(Ordering::Acquire) < UNPACKED_AHEAD)
                            .then(|| std::mem::take(&mut self.run));
                        let unpacked = actions.is_some();
                        if unpacked {
                            e.unpacked.fetch_add(1, Ordering::AcqRel);
                        }
                        match e.to.send(Handed { packed, actions }) {
                            Ok(()) => None,
                            Err(back) => {
                                if unpacked {
                                    e.unpacked.fetch_sub(1, Ordering::AcqRel);
                                }
                                Some(back.0.packed)
                            }
                        }
                    }
                    _ => Some(packed),
                };
                if let Some(p) = packed {
                    self.early = None;
                    self.plan.packed.push(p);
                }
                self.seq += n as u32;
                self.run.clear();
            }
        }
        Ok(())
    }

    /// The whole plan: what was handed over, then the returned plan's
    /// actions; its summary, checks and facts. The first refusal refuses it.
    pub fn finish(&mut self, plan: wit::Plan, walked: &Walked) -> Result<StepPlan, String> {
        let outline = mend_host::check::outline(&plan);
        self.take(plan.actions, Some(walked))?;
        self.end_run()?;
        // The performer ends when it has done what it was handed.
        self.early = None;
        let mut out = std::mem::take(&mut self.plan);
        out.summary = outline.summary;
        out.checks = outline.checks;
        out.facts = outline.facts;
        out.tops_changed = Some(std::mem::take(&mut self.tops));
        let kept = out.actions.len() as u32 + out.packed.iter().map(|p| p.n).sum::<u32>();
        out.first = self.seq - kept;
        out.arrival = mend_plan::Arrival {
            batches: self.batches,
            held_max: self.held_max,
            step_memory: 0,
        };
        Ok(out)
    }
}

impl ActionSink for Spool {
    fn emit(&mut self, actions: Vec<wit::Action>, walked: &Walked) -> Result<(), wit::HostError> {
        self.batches += 1;
        self.take(actions, Some(walked))
            .map_err(wit::HostError::Denied)?;
        // While removals go early, each hand-over's run goes as it is (the
        // step's first hand-overs are small, so the first removal is not
        // held back for a full batch). A lone removal waits for the next:
        // packed alone it would stay a row and end the early hand-overs.
        if self.early.is_some() && self.run.len() > 1 {
            self.end_run().map_err(wit::HostError::Denied)?;
        }
        Ok(())
    }
}

/// Every action of a plan, in order, one packed run unpacked at a time.
pub fn each_planned(plan: &StepPlan, mut f: impl FnMut(&Planned)) -> anyhow::Result<()> {
    for (_, at) in plan.layout() {
        match at {
            Err(row) => f(&plan.actions[row]),
            Ok(i) => {
                let p = &plan.packed[i];
                for line in mend_journal::unpack(&p.blob, p.n, "actions")? {
                    f(&serde_json::from_str::<Planned>(&line)?);
                }
            }
        }
    }
    Ok(())
}

/// The first `n` actions of a plan, in order (unpacking only what they need).
pub fn first_planned(plan: &StepPlan, n: usize) -> anyhow::Result<Vec<Planned>> {
    let mut out = Vec::with_capacity(n.min(plan.len()));
    for (_, at) in plan.layout() {
        if out.len() >= n {
            break;
        }
        match at {
            Err(row) => out.push(plan.actions[row].clone()),
            Ok(i) => {
                let p = &plan.packed[i];
                for line in mend_journal::unpack(&p.blob, p.n, "actions")? {
                    if out.len() >= n {
                        break;
                    }
                    out.push(serde_json::from_str::<Planned>(&line)?);
                }
            }
        }
    }
    Ok(out)
}

/// Every action of a plan, unpacked: for what must hold it whole (a saved
/// plan, `--json`).
pub fn all_planned(plan: &StepPlan) -> anyhow::Result<Vec<Planned>> {
    let mut out = Vec::with_capacity(plan.len());
    each_planned(plan, |p| out.push(p.clone()))?;
    Ok(out)
}

/// Shared between the step's call (as its plan sink) and `plan_step`.
pub type Shared = Arc<std::sync::Mutex<Spool>>;
