//! What the unit tests of the read side share: a real journal with a run
//! whose one step planned four removals.

use mend_journal::{Journal, NewRun, PlannedAction, RunMode, RunRecord};

/// A run of runbook `x` whose step 0 (`s`) planned four removals of `a`.
pub(crate) fn run_of_four_removals(j: &Journal) -> RunRecord {
    let run = j
        .new_run(&NewRun {
            runbook_name: "x",
            runbook_version: "1.0.0",
            runbook_path: "/x.toml",
            runbook_sha256: "00",
            mode: RunMode::Run,
            params_json: "{}",
            now: 1,
        })
        .unwrap();
    let planned: Vec<PlannedAction> = (0..4)
        .map(|seq| PlannedAction {
            seq,
            action_json: r#"{"op":"remove","path":"a"}"#,
            reversible: true,
        })
        .collect();
    j.save_plan(&run.id, 0, "s", "std:s", "00", "{}", &planned, &[])
        .unwrap();
    run
}
