//! History that does not grow for ever: `mend prune`, and the prune after
//! each committed run, keep what the policy's `[history]` says and never a
//! run that can still be resumed or rolled back.

use mend_journal::{Journal, NewAction, NewRun, RunMode, RunStatus};

use crate::common::*;

/// Journal files (the database and its WAL), in bytes.
fn journal_bytes(f: &Fixture) -> u64 {
    ["journal.db", "journal.db-wal"]
        .iter()
        .map(|n| std::fs::metadata(f.state().join(n)).map_or(0, |m| m.len()))
        .sum()
}

fn history(f: &Fixture, args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec!["--json", "history", "--limit", "100000"];
    all.extend_from_slice(args);
    let ran = f.mend(&all);
    assert_eq!(ran.code, 0, "{}", ran.text());
    serde_json::from_str::<Vec<serde_json::Value>>(&ran.stdout).unwrap()
}

fn ids(runs: &[serde_json::Value]) -> Vec<String> {
    let mut v: Vec<String> = runs
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

/// 200 runs of two runbooks, each with 40 actions of long paths, oldest
/// first: every 10th stopped (`failed`, it can still be rolled back),
/// every 25th interrupted (`running`), the rest committed.
fn two_hundred_runs(f: &Fixture) -> Vec<(String, RunStatus)> {
    let j = Journal::open(&f.state()).unwrap();
    let paths: Vec<String> = (0..40)
        .map(|s| format!(r#"{{"remove":"cache/{}/{s:04}.jpg"}}"#, "m".repeat(300)))
        .collect();
    let actions: Vec<NewAction> = paths
        .iter()
        .enumerate()
        .map(|(s, a)| NewAction {
            seq: s as u32,
            action_json: a,
            reversible: true,
            undo_json: None,
        })
        .collect();
    let mut runs = Vec::new();
    for i in 0..200 {
        let run = j
            .new_run(&NewRun {
                runbook_name: if i % 2 == 0 { "cull" } else { "upgrade" },
                runbook_version: "1.0.0",
                runbook_path: "/etc/mend/runbooks/x.toml",
                runbook_sha256: &"ab".repeat(32),
                mode: RunMode::Run,
                params_json: "{}",
                now: 1_795_367_045,
            })
            .unwrap();
        j.intend(&run.id, 0, &actions).unwrap();
        let status = if i % 25 == 0 {
            RunStatus::Running
        } else if i % 10 == 0 {
            RunStatus::Failed
        } else {
            RunStatus::Committed
        };
        if status != RunStatus::Running {
            j.set_run_status(&run.id, status, None).unwrap();
        }
        runs.push((run.id, status));
        // Runs started in the same millisecond would tie on age.
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    runs
}

#[test]
fn a_journal_of_200_runs_keeps_what_the_policy_says_and_every_open_run() {
    let f = Fixture::new();
    let runs = two_hundred_runs(&f);
    let policy = f.write("policy.toml", "[history]\nkeep_days = 0\nkeep_runs = 30\n");
    let policy = policy.to_str().unwrap();

    // The newest 30 of each runbook stay (the last 60 runs), and every run
    // before them that can still be resumed or rolled back.
    let expected: Vec<String> = {
        let mut v: Vec<String> = runs
            .iter()
            .enumerate()
            .filter(|(i, (_, s))| *i >= 140 || *s != RunStatus::Committed)
            .map(|(_, (id, _))| id.clone())
            .collect();
        v.sort();
        v
    };
    let removed = 200 - expected.len();

    let before = journal_bytes(&f);
    let dry = f.mend(&["--policy", policy, "prune", "--dry-run"]);
    assert_eq!(dry.code, 0, "{}", dry.text());
    assert!(
        dry.stdout
            .starts_with(&format!("would prune {removed} runs")),
        "{}",
        dry.stdout
    );
    assert!(
        dry.stdout.contains("nothing removed (--dry-run)"),
        "{}",
        dry.stdout
    );
    assert_eq!(history(&f, &[]).len(), 200, "a dry run removes nothing");

    let ran = f.mend(&["--policy", policy, "prune"]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    assert!(
        ran.stdout.starts_with(&format!("pruned {removed} runs")),
        "{}",
        ran.stdout
    );
    assert!(ran.stdout.contains("(compacted)"), "{}", ran.stdout);
    assert_eq!(ids(&history(&f, &[])), expected);
    // Each open run is still there to resume or roll back.
    for (id, status) in &runs {
        if *status != RunStatus::Committed {
            let show = f.mend(&["show", id]);
            assert_eq!(show.code, 0, "run {id}: {}", show.text());
        }
    }
    let after = journal_bytes(&f);
    assert!(
        after * 2 < before,
        "the journal shrinks: {before} bytes -> {after} bytes"
    );

    // The flags override the policy: keep 5 per runbook now.
    let ran = f.mend(&["--policy", policy, "prune", "--keep-runs", "5"]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    let left = history(&f, &[]);
    let open = runs
        .iter()
        .filter(|(_, s)| *s != RunStatus::Committed)
        .count();
    let newest_open = runs[190..]
        .iter()
        .filter(|(_, s)| *s != RunStatus::Committed)
        .count();
    assert_eq!(left.len(), 10 + open - newest_open, "{}", ran.text());
}

#[test]
fn a_committed_run_prunes_old_history_and_a_bad_history_table_is_refused() {
    let f = Fixture::new();
    let rb = f.runbook(
        "noop.toml",
        r#"
[runbook]
name = "noop"
version = "1.0.0"
summary = "plans nothing"

[[steps]]
id = "noop"
{guest:noop}
"#,
    );
    let rb = rb.to_str().unwrap();
    let policy = f.write("policy.toml", "[history]\nkeep_runs = 2\n");
    let policy = policy.to_str().unwrap();
    for n in 1..=3 {
        let ran = f.mend(&["--policy", policy, "run", rb]);
        assert_eq!(ran.code, 0, "{}", ran.text());
        assert_eq!(
            ran.stderr
                .contains("history: 1 old run pruned from the journal"),
            n == 3,
            "run {n}: {}",
            ran.text()
        );
    }
    assert_eq!(history(&f, &["--runbook", "noop"]).len(), 2);

    // A typo in [history] is bad input with its line, and prunes nothing.
    let bad = f.write("bad.toml", "[history]\nkeep_day = 2\n");
    let ran = f.mend(&[
        "--policy",
        bad.to_str().unwrap(),
        "prune",
        "--keep-runs",
        "1",
    ]);
    assert_eq!(ran.code, 2, "{}", ran.text());
    assert!(
        ran.stderr.contains("unknown key `keep_day` in [history]"),
        "{}",
        ran.text()
    );
    assert!(ran.stderr.contains("bad.toml:2:1"), "{}", ran.text());
    assert_eq!(history(&f, &[]).len(), 2);
}
