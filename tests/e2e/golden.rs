//! Output that operators read, compared word for word with golden files in
//! tests/e2e/golden/ (`MEND_BLESS=1` rewrites them): the demo's plan, cut
//! run, rollback, rehearsal and run; a postmortem report; a failed run's
//! error. The clock steps see (`--now`), the free space and the fixtures are
//! fixed; run ids, wall-clock times and temporary paths become placeholders.

use regex::Regex;

use crate::common::*;

/// 2026-11-18 17:46:40 UTC.
const NOW: &str = "1795000000";
/// 60.0 GB free of 250.0 GB, on every machine.
const DISK: (&str, &str) = ("MEND_FAKE_FREE_BYTES", "60000000000/250000000000");

/// Replace what differs between runs by placeholders: the fixture's path,
/// the run ids (`[RUN1]`... in the order of `runs`, and their 8-digit
/// short forms), wall-clock times.
fn normalise(text: &str, root: &std::path::Path, runs: &[String]) -> String {
    let mut t = text.replace(&root.display().to_string(), "[ROOT]");
    for (n, id) in runs.iter().enumerate() {
        t = t.replace(id.as_str(), &format!("[RUN{}]", n + 1));
        t = t.replace(&id[..8], &format!("[RUN{}]", n + 1));
    }
    for (pattern, with) in [
        (
            r"mend-rehearsal-([a-z0-9-]+)-\d+",
            "mend-rehearsal-$1-[PID]",
        ),
        (
            r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?Z?",
            "[TIME]",
        ),
        (r"\b\d{2}:\d{2}:\d{2}\.\d{3}\b", "[HH:MM:SS]"),
        // With the spaces that align it: a column's width follows its
        // longest duration, which differs from run to run.
        (r"( ?) *\b\d+(\.\d+)? (ms|s)\b", "${1}[DURATION]"),
        // Who ran the tests, on which machine.
        (
            r"\| started by \| .* on .* \|",
            "| started by | [USER] on [HOST] |",
        ),
    ] {
        t = Regex::new(pattern)
            .unwrap()
            .replace_all(&t, with)
            .into_owned();
    }
    t
}

#[test]
fn demo_plan_run_rollback_rehearse_and_report() {
    let f = Fixture::new();
    let root = f.path("demo");
    let ran = f.mend_env(
        &["--now", NOW, "demo", "--dir", root.to_str().unwrap()],
        &[DISK],
    );
    assert_eq!(ran.code, 0, "{}", ran.text());

    // The committed run as the operator would paste it into a postmortem.
    let state = root.join("state");
    let in_demo = |args: &[&str]| {
        let out = std::process::Command::new(mend_bin())
            .arg("--state-dir")
            .arg(&state)
            .args(args)
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let runs: serde_json::Value = serde_json::from_str(&in_demo(&["history", "--json"])).unwrap();
    // Oldest first: the cut run, the rehearsal, the run.
    let ids: Vec<String> = runs
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 3, "{runs}");
    golden(
        "tests/e2e/golden/demo.stdout",
        &normalise(&ran.stdout, &root, &ids),
    );
    // The steps' progress, on stderr (not a terminal: plain lines).
    golden(
        "tests/e2e/golden/demo.stderr",
        &normalise(&ran.stderr, &root, &ids),
    );
    golden(
        "tests/e2e/golden/demo-report.md",
        &normalise(&in_demo(&["report", &ids[2]]), &root, &ids),
    );
}

/// A run whose last check fails: what failed, why, the fix, and where the
/// run stands after its rollback, on stdout and stderr.
#[test]
fn failed_run_rolled_back() {
    let f = Fixture::new();
    populate(&f);
    let rb = f.runbook(
        "cull.toml",
        &CULL_THEN_CHECK.replace("{on_failure}", "rollback"),
    );
    let before = tree(&f.path("data"), true);
    let ran = f.mend_env(&["--now", NOW, "run", rb.to_str().unwrap()], &[DISK]);
    assert_eq!(ran.code, 1, "{}", ran.text());
    assert_same(&before, &tree(&f.path("data"), true), "after the rollback");
    let ids = vec![history_id(&f)];
    // Apart: a line moving between stdout and stderr is a change.
    golden(
        "tests/e2e/golden/failed-run.stdout",
        &normalise(&ran.stdout, f.dir.path(), &ids),
    );
    golden(
        "tests/e2e/golden/failed-run.stderr",
        &normalise(&ran.stderr, f.dir.path(), &ids),
    );
}
