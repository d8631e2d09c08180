//! The read model: what the journal says of a run, read in one snapshot,
//! shaped for the page, its JSON and the event stream alike.

use anyhow::Result;
use mend_journal::{
    ActionState, Change, ChangeRecord, EventRecord, GrantSpace, Journal, Redact, RunRecord,
    StepRecord,
};
use serde::Serialize;
use serde_json::{Value, json};

/// How long a run view read from the journal is served again.
pub(crate) const FRESH: std::time::Duration = std::time::Duration::from_millis(500);
/// At most this many cached views (one per run being watched).
const CACHED_RUNS: usize = 64;

/// A run view and when it was read.
pub(crate) type Cached = (std::time::Instant, std::sync::Arc<RunView>);

/// The cached view of `id` if it was read less than [`FRESH`] ago.
pub(crate) fn cached(
    views: &std::sync::Mutex<std::collections::HashMap<String, Cached>>,
    id: &str,
) -> Option<std::sync::Arc<RunView>> {
    let g = views.lock().unwrap_or_else(|e| e.into_inner());
    g.get(id)
        .filter(|(at, _)| at.elapsed() < FRESH)
        .map(|(_, v)| v.clone())
}

/// Changes read to decide a kept view still holds; more: read it again.
const SCAN: usize = 2000;

/// Has the run's row or a step's row of `v` changed since `v` was read
/// (or too much changed to tell)? Call inside `Journal::snapshot`.
pub(crate) fn status_changed(j: &Journal, v: &RunView) -> Result<bool> {
    let since = j.changes_after(v.seq, Some(&v.run.id), SCAN)?;
    Ok(since.len() == SCAN
        || since
            .iter()
            .any(|c| matches!(c.change, Change::Run | Change::Step { .. } | Change::End)))
}

/// The view of `id` to serve now: the kept one while it holds (false), or
/// one read from the journal (true: keep it). Call inside
/// `Journal::snapshot`.
pub(crate) fn current(
    views: &std::sync::Mutex<std::collections::HashMap<String, Cached>>,
    j: &Journal,
    id: &str,
) -> Result<(std::sync::Arc<RunView>, bool)> {
    if let Some(v) = cached(views, id)
        && !status_changed(j, &v)?
    {
        return Ok((v, false));
    }
    Ok((std::sync::Arc::new(RunView::load(j, id)?), true))
}

/// Keeps `v` as the view of `id`, dropping stale ones.
pub(crate) fn keep(
    views: &std::sync::Mutex<std::collections::HashMap<String, Cached>>,
    id: &str,
    v: std::sync::Arc<RunView>,
) {
    let mut g = views.lock().unwrap_or_else(|e| e.into_inner());
    if g.len() >= CACHED_RUNS {
        g.retain(|_, (at, _)| at.elapsed() < FRESH);
    }
    if g.len() < CACHED_RUNS {
        g.insert(id.to_string(), (std::time::Instant::now(), v));
    }
}

/// One run as the page and `/api/runs/ID` show it.
#[derive(Serialize)]
pub(crate) struct RunView {
    pub journal_id: String,
    /// The last change of the journal when this was read: the page's
    /// resume point for the event stream.
    pub seq: i64,
    pub run: RunRecord,
    /// The run's writer is done with it ([`Change::End`]): the page stops
    /// following. A terminal status alone is not the end: a commit writes
    /// the free space after its purge later.
    pub ended: bool,
    pub params: Vec<(String, String)>,
    pub steps: Vec<StepView>,
    pub events: Vec<EventRecord>,
    /// Free space of each write grant before and after the run.
    pub space: Vec<GrantSpace>,
    /// The page, rendered once for every viewer of this view.
    #[serde(skip)]
    pub html: std::sync::OnceLock<String>,
}

#[derive(Serialize)]
pub(crate) struct StepView {
    #[serde(flatten)]
    pub step: StepRow,
    /// The plan's summary lines (what the step said it would do).
    pub summary: Vec<String>,
}

/// A step as the stream sends it: its row without the saved plan.
#[derive(Serialize)]
pub(crate) struct StepRow {
    pub idx: u32,
    pub id: String,
    pub uses: String,
    pub status: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub error: Option<String>,
    /// Actions by state (`done`: 120, ...), in state order.
    pub actions: Vec<(String, u64)>,
}

impl RunView {
    /// Reads run `id` (a full id or a 4+ character prefix). Call inside
    /// `Journal::snapshot`.
    pub fn load(j: &Journal, id: &str) -> Result<RunView> {
        let seq = j.last_seq()?;
        let run = j.run(id)?;
        // Secret params: masked here, before any page, JSON or picture.
        let r = Redact::of_run(&run);
        let params = Redact::params(&run);
        let run = r.run(run);
        let steps = j
            .steps(&run.id)?
            .into_iter()
            .map(|s| {
                let s = r.step(s);
                let summary = summary_of(&s);
                Ok(StepView {
                    step: step_row(j, s)?,
                    summary,
                })
            })
            .collect::<Result<_>>()?;
        let events = j.events(&run.id)?.into_iter().map(|e| r.event(e)).collect();
        let space = j.grant_spaces(&run.id)?;
        let ended = j.ended(&run.id)?;
        Ok(RunView {
            journal_id: j.journal_id()?,
            seq,
            run,
            ended,
            params,
            steps,
            events,
            space,
            html: std::sync::OnceLock::new(),
        })
    }
}

fn summary_of(s: &StepRecord) -> Vec<String> {
    let plan: Value = s
        .plan_json
        .as_deref()
        .and_then(|p| serde_json::from_str(p).ok())
        .unwrap_or(Value::Null);
    plan["plan"]["summary"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|l| l.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn step_row(j: &Journal, s: StepRecord) -> Result<StepRow> {
    let actions = j
        .action_counts(&s.run_id, s.idx)?
        .into_iter()
        .map(|(state, n)| (state.to_string(), n))
        .collect();
    Ok(StepRow {
        idx: s.idx,
        id: s.step_id,
        uses: s.uses,
        status: s.status.to_string(),
        started_at: s.started_at,
        finished_at: s.finished_at,
        error: s.error,
        actions,
    })
}

/// What one change looks like on the stream: its kind, the current state
/// of what it changed, and whether it ends the run. `None`: nothing to send.
pub(crate) fn message(
    j: &Journal,
    c: &ChangeRecord,
) -> Result<Option<(&'static str, Value, bool)>> {
    let Some((kind, mut v, ends)) = message_of(j, c)? else {
        return Ok(None);
    };
    Redact::of_run(&j.run(&c.run_id)?).json(&mut v);
    Ok(Some((kind, v, ends)))
}

fn message_of(j: &Journal, c: &ChangeRecord) -> Result<Option<(&'static str, Value, bool)>> {
    Ok(Some(match c.change {
        Change::Run => {
            let r = j.run(&c.run_id)?;
            let v = json!({"status": r.status, "started_at": r.started_at,
                           "finished_at": r.finished_at, "error": r.error});
            ("run", v, false)
        }
        // The stream ends here: everything the run's writer wrote is sent.
        Change::End => ("end", json!({}), true),
        Change::Step { step } | Change::Actions { step, .. } => {
            let Some(s) = j.steps(&c.run_id)?.into_iter().find(|s| s.idx == step) else {
                return Ok(None);
            };
            let kind = if matches!(c.change, Change::Step { .. }) {
                "step"
            } else {
                "actions"
            };
            (kind, serde_json::to_value(step_row(j, s)?)?, false)
        }
        Change::Event { id } => {
            let e = j.event_by_id(id)?;
            let v = json!({"id": id, "at": e.at, "level": e.level, "step": e.step_idx,
                           "message": e.message});
            ("event", v, false)
        }
    }))
}

/// `done 120, planned 80`: a step's action counts as text.
pub(crate) fn counts_text(counts: &[(String, u64)]) -> String {
    if counts.is_empty() {
        return "none".into();
    }
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    let finished: u64 = counts
        .iter()
        .filter(|(s, _)| s == ActionState::Done.as_str() || s == ActionState::Undone.as_str())
        .map(|(_, n)| n)
        .sum();
    let parts: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    format!("{finished}/{total}: {}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mend_journal::{NewAction, RunStatus, StepStatus};
    use std::sync::{Arc, Mutex};

    /// Against a real journal: a kept view is served again while only
    /// actions and events change (a live run's every few milliseconds),
    /// and read again as soon as a step's or the run's status changes, so
    /// no page says "running" after the journal said "committed".
    #[test]
    fn a_kept_view_holds_until_a_status_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let j = Journal::open(tmp.path()).unwrap();
        let run = crate::testing::run_of_four_removals(&j);
        j.set_step_status(&run.id, 0, StepStatus::Applying, None)
            .unwrap();
        let views = Mutex::new(std::collections::HashMap::new());
        let serve = |j: &Journal| {
            let (v, new) = j.snapshot(|j| current(&views, j, &run.id)).unwrap();
            if new {
                keep(&views, &run.id, v.clone());
            }
            (v, new)
        };
        let (first, new) = serve(&j);
        assert!(new);
        assert_eq!(first.steps[0].step.status, "applying");
        // Actions done and an event: the kept view is served.
        for seq in 0..2 {
            let a = NewAction {
                seq,
                action_json: r#"{"op":"remove","path":"a"}"#,
                reversible: true,
                undo_json: None,
            };
            j.intend(&run.id, 0, &[a]).unwrap();
            j.mark_done(&run.id, 0, &[(seq, None)]).unwrap();
        }
        j.event(&run.id, Some(0), "info", "hello").unwrap();
        let (again, new) = serve(&j);
        assert!(!new && Arc::ptr_eq(&first, &again));
        // The step ends: read again.
        j.set_step_status(&run.id, 0, StepStatus::Verified, None)
            .unwrap();
        let (now, new) = serve(&j);
        assert!(new && !Arc::ptr_eq(&first, &now));
        assert_eq!(now.steps[0].step.status, "verified");
        // The run ends: read again; the page says so at once.
        j.set_run_status(&run.id, RunStatus::Committed, None)
            .unwrap();
        let (last, new) = serve(&j);
        assert!(new);
        assert_eq!(last.run.status, RunStatus::Committed);
        assert_eq!(serve(&j).0.run.status, RunStatus::Committed);
    }
}
