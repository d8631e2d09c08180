//! The JSON the journal keeps in its rows: a run's inputs, a step's saved
//! plan, an action's state before it and its undo. Written and read only
//! here, so a change of form has one place.

use std::collections::BTreeMap;
use std::path::PathBuf;

use mend_plan::{Action, DirTimes, Key, Planned, Pre, StepPlan, Undo};
use serde::{Deserialize, Serialize};

/// What a run keeps in the journal to resume exactly: its inputs.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunInputs {
    pub sets: Vec<(String, String)>,
    /// Grants pointed elsewhere (a rehearsal's copies).
    #[serde(default)]
    pub grants: BTreeMap<String, PathBuf>,
    /// `mend run --hold`: once verified the run is held, not committed
    /// (kept here so a resumed run holds too).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hold: bool,
    /// The names of the params declared `secret = true`. Their values are
    /// in `sets` (a resume needs them); every output masks them
    /// ([`crate::Redact`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
}

/// A step's journaled plan, and the times of its grants' roots before it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SavedStep {
    pub plan: StepPlan,
    pub roots: Vec<DirTimes>,
    /// Journaled when the step began performing removals while it planned
    /// (see `Journal::start_step`): the roots' times before anything, and
    /// no plan yet. A resume that finds it plans the step again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub planning: bool,
}

/// The undo data journaled with an action.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Journaled {
    pub pre: Pre,
    pub undo: Option<Undo>,
}

impl Journaled {
    /// The undo data of a journaled action. A record that does not parse is
    /// an error, never a default: guessing would lose what undo needs.
    pub fn of(rec: &crate::ActionRecord) -> anyhow::Result<Journaled> {
        let damaged = |e: &dyn std::fmt::Display| {
            anyhow::anyhow!(
                "journal record of action {}/{} of run {} is damaged ({e}); refusing to guess its undo",
                rec.step_idx,
                rec.seq,
                rec.run_id
            )
        };
        let Some(json) = rec.undo_json.as_deref() else {
            return Ok(Journaled::default());
        };
        let planned: Planned = serde_json::from_str(&rec.action_json).map_err(|e| damaged(&e))?;
        let key = Key {
            run: &rec.run_id,
            step: rec.step_idx,
            seq: rec.seq,
        };
        let (pre, undo) =
            mend_plan::record::decode(&planned.action, &key, json).map_err(|e| damaged(&e))?;
        Ok(Journaled { pre, undo })
    }

    /// The journal's text for it: nothing the action already says (see
    /// `apply::record`).
    pub fn to_json(&self, action: &Action, key: &Key) -> String {
        mend_plan::record::encode(action, key, &self.pre, self.undo.as_ref())
    }
}
