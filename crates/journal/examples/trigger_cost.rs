//! What the journal's row checksums (triggers that rewrite a row's `sum`
//! after each insert and update) cost on a bulk removal's journal traffic:
//! N actions planned, intended and marked done in batches of 2,048, as a
//! cull journals them, with the triggers and with them dropped.
//!
//!     MEND_BENCH_DIR=/dev/shm cargo run --release -p mend-journal --example trigger_cost -- 100000
//!
//! Prints the time of each and the share the triggers take. Not a test:
//! figures depend on the machine.

use std::time::Instant;

use mend_journal::{Journal, NewAction, NewRun, PlannedAction, RunMode, RunStatus};

const BATCH: usize = 2048;

fn journal_run(dir: &std::path::Path, n: usize, keep_triggers: bool) -> f64 {
    let j = Journal::open(dir).unwrap();
    if !keep_triggers {
        let raw = rusqlite::Connection::open(dir.join("journal.db")).unwrap();
        let names: Vec<String> = raw
            .prepare(
                "SELECT name FROM sqlite_schema WHERE type = 'trigger' AND name LIKE '%_sum_%'",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert!(!names.is_empty(), "no checksum triggers found");
        for t in names {
            raw.execute_batch(&format!("DROP TRIGGER {t}")).unwrap();
        }
    }
    let actions: Vec<String> = (0..n)
        .map(|i| format!(r#"{{"remove":"media/cache/{:03}/{i:07}.jpg"}}"#, i % 1000))
        .collect();
    let started = Instant::now();
    let run = j
        .new_run(&NewRun {
            runbook_name: "cull",
            runbook_version: "1.0.0",
            runbook_path: "/etc/mend/cull.toml",
            runbook_sha256: &"ab".repeat(32),
            mode: RunMode::Run,
            params_json: "{}",
            now: 1_795_367_045,
        })
        .unwrap();
    let planned: Vec<PlannedAction> = actions
        .iter()
        .enumerate()
        .map(|(i, a)| PlannedAction {
            seq: i as u32,
            action_json: a,
            reversible: false,
        })
        .collect();
    j.save_plan(
        &run.id,
        0,
        "cull",
        "std:cache-cull",
        &"cd".repeat(32),
        "{}",
        &planned,
        &[],
    )
    .unwrap();
    for chunk in planned.chunks(BATCH) {
        let intended: Vec<NewAction> = chunk
            .iter()
            .map(|p| NewAction {
                seq: p.seq,
                action_json: p.action_json,
                reversible: false,
                undo_json: None,
            })
            .collect();
        j.intend(&run.id, 0, &intended).unwrap();
        let done: Vec<(u32, Option<&str>)> = chunk.iter().map(|p| (p.seq, None)).collect();
        j.mark_done(&run.id, 0, &done).unwrap();
    }
    j.set_run_status(&run.id, RunStatus::Committed, None)
        .unwrap();
    started.elapsed().as_secs_f64()
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(100_000, |s| s.parse().expect("N: a number of actions"));
    let base = std::env::var_os("MEND_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
    let mut with = Vec::new();
    let mut without = Vec::new();
    for round in 0..3 {
        for keep in [true, false] {
            let dir = tempfile::Builder::new()
                .prefix("mend-trigger-cost-")
                .tempdir_in(&base)
                .unwrap();
            let secs = journal_run(dir.path(), n, keep);
            eprintln!("round {round}: triggers {keep}: {secs:.3} s");
            if keep {
                with.push(secs)
            } else {
                without.push(secs)
            }
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (w, wo) = (median(&mut with), median(&mut without));
    println!(
        "{n} actions (plan, intend, done in batches of {BATCH}) in {}: with checksum triggers {w:.3} s, without {wo:.3} s: the triggers take {:.1}% of the journal's time",
        base.display(),
        (w - wo) / w * 100.0
    );
}
