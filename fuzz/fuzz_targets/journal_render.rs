//! Any values in a journal's rows, rendered as `mend history`, `show` and
//! `report` render them. The journal target reaches rows through damaged
//! SQLite pages, where a wild integer or a short text takes luck; here the
//! records are built from the input directly, every field any value its
//! column's type allows (SQLite's CHECKs do not hold in a damaged file).

#![no_main]

use libfuzzer_sys::arbitrary::{self, Unstructured};
use libfuzzer_sys::fuzz_target;
use mend::cli::Out;
use mend_journal::{
    ActionRecord, ActionState, EventRecord, RunMode, RunRecord, RunStatus, StepRecord, StepStatus,
};

fn pick<T: Copy>(u: &mut Unstructured<'_>, all: &[T]) -> arbitrary::Result<T> {
    Ok(*u.choose(all)?)
}

fn run(u: &mut Unstructured<'_>) -> arbitrary::Result<RunRecord> {
    Ok(RunRecord {
        id: u.arbitrary()?,
        runbook_name: u.arbitrary()?,
        runbook_version: u.arbitrary()?,
        runbook_path: u.arbitrary()?,
        runbook_sha256: u.arbitrary()?,
        mode: pick(u, RunMode::ALL)?,
        status: pick(u, RunStatus::ALL)?,
        params_json: u.arbitrary()?,
        now: u.arbitrary()?,
        started_at: u.arbitrary()?,
        finished_at: u.arbitrary()?,
        error: u.arbitrary()?,
    })
}

fn step(u: &mut Unstructured<'_>, run_id: &str) -> arbitrary::Result<StepRecord> {
    Ok(StepRecord {
        run_id: run_id.to_string(),
        idx: u.arbitrary()?,
        step_id: u.arbitrary()?,
        uses: u.arbitrary()?,
        component_sha256: u.arbitrary()?,
        status: pick(u, StepStatus::ALL)?,
        plan_json: u.arbitrary()?,
        started_at: u.arbitrary()?,
        finished_at: u.arbitrary()?,
        error: u.arbitrary()?,
    })
}

fn action(u: &mut Unstructured<'_>, run_id: &str) -> arbitrary::Result<ActionRecord> {
    Ok(ActionRecord {
        run_id: run_id.to_string(),
        step_idx: u.arbitrary()?,
        seq: u.arbitrary()?,
        action_json: u.arbitrary()?,
        reversible: u.arbitrary()?,
        state: pick(u, ActionState::ALL)?,
        undo_json: u.arbitrary()?,
        intended_at: u.arbitrary()?,
        done_at: u.arbitrary()?,
        undone_at: u.arbitrary()?,
        error: u.arbitrary()?,
    })
}

fn event(u: &mut Unstructured<'_>, run_id: &str) -> arbitrary::Result<EventRecord> {
    Ok(EventRecord {
        run_id: run_id.to_string(),
        step_idx: u.arbitrary()?,
        at: u.arbitrary()?,
        level: u.arbitrary()?,
        message: u.arbitrary()?,
    })
}

fn records(
    u: &mut Unstructured<'_>,
) -> arbitrary::Result<(
    RunRecord,
    Vec<StepRecord>,
    Vec<ActionRecord>,
    Vec<EventRecord>,
)> {
    let r = run(u)?;
    let mut steps = Vec::new();
    for _ in 0..u.int_in_range(0..=4)? {
        steps.push(step(u, &r.id)?);
    }
    let mut actions = Vec::new();
    for _ in 0..u.int_in_range(0..=6)? {
        actions.push(action(u, &r.id)?);
    }
    let mut events = Vec::new();
    for _ in 0..u.int_in_range(0..=3)? {
        events.push(event(u, &r.id)?);
    }
    Ok((r, steps, actions, events))
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok((r, steps, actions, events)) = records(&mut u) else {
        return;
    };
    let runs = [r.clone()];
    for json in [true, false] {
        Out::new(json).history(&runs);
        Out::new(json).show(&r, &steps, &actions, &events);
    }
    let _ = mend::cli::report::markdown(&r, &steps, &actions, &events);
});
