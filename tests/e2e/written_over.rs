//! A write-file over a file someone changed between the plan and the write
//! fails its step and leaves their version in place. The write moves what
//! is there to the trash, and the trash is purged at commit: an operator's
//! edit of a config file made while the run waited would have been lost.
//! A resumed write that finds its own bytes there goes on.
//!
//! The run is held (`MEND_PAUSE_AT`) or killed (`MEND_CRASH_AT`) at exact
//! points, so nothing depends on timing.

use crate::common::*;

fn writes(f: &Fixture) -> std::path::PathBuf {
    f.write("data/app.conf", "workers = 2\n");
    f.runbook(
        "writes.toml",
        r#"[runbook]
name = "writes"
version = "1.0.0"
summary = "two config files written"

[grants.data]
path = "{root}/data"
access = "write"

[[steps]]
id = "configure"
{guest:scripted}
grants = ["data"]

[steps.with]
actions = [
  { write_file = ["data/app.conf", "workers = 8\n"] },
  { write_file = ["data/extra.conf", "cache = on\n"] },
]
"#,
    )
}

#[test]
fn a_file_edited_after_the_plan_is_not_written_over() {
    let f = Fixture::new();
    let rb = writes(&f);
    let mut run = Held::start(&f, &["run", rb.to_str().unwrap()], "intent:0:0");
    run.wait();
    // The operator's edit while the run waits between plan and write.
    f.write("data/app.conf", "workers = 4 # tuned by hand\n");
    let (code, text) = run.release();
    assert_eq!(
        code,
        Some(1),
        "the step fails and the run rolls back:\n{text}"
    );
    assert!(
        text.contains("write-file data/app.conf: not written: it changed since the plan (12 B then, 28 B now, modified since); someone changed it after the plan"),
        "{text}"
    );
    assert_eq!(
        std::fs::read_to_string(f.path("data/app.conf")).unwrap(),
        "workers = 4 # tuned by hand\n"
    );
    assert!(!f.path("data/extra.conf").exists());
}

#[test]
fn a_file_put_where_the_plan_saw_nothing_is_not_written_over() {
    let f = Fixture::new();
    let rb = writes(&f);
    let mut run = Held::start(&f, &["run", rb.to_str().unwrap()], "intent:0:1");
    run.wait();
    f.write("data/extra.conf", "cache = off # on purpose\n");
    let (code, text) = run.release();
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains(
            "write-file data/extra.conf: not written: a file of 25 B was put there since the plan"
        ),
        "{text}"
    );
    assert_eq!(
        std::fs::read_to_string(f.path("data/extra.conf")).unwrap(),
        "cache = off # on purpose\n"
    );
    // The first write was rolled back.
    assert_eq!(
        std::fs::read_to_string(f.path("data/app.conf")).unwrap(),
        "workers = 2\n"
    );
}

#[test]
fn a_write_resumed_after_a_kill_finds_its_own_bytes_and_goes_on() {
    let f = Fixture::new();
    let rb = writes(&f);
    // Killed after the first write, before it was journaled done.
    let ran = f.mend_env(
        &["run", rb.to_str().unwrap()],
        &[("MEND_CRASH_AT", "perform:0:0")],
    );
    assert_eq!(ran.code, -1, "killed: {}", ran.text());
    assert_eq!(
        std::fs::read_to_string(f.path("data/app.conf")).unwrap(),
        "workers = 8\n"
    );
    let id: serde_json::Value =
        serde_json::from_str(&f.mend(&["--json", "history"]).stdout).unwrap();
    let id = id[0]["id"].as_str().unwrap().to_string();
    let resumed = f.mend(&["resume", &id]);
    assert_eq!(resumed.code, 0, "{}", resumed.text());
    assert_eq!(
        std::fs::read_to_string(f.path("data/app.conf")).unwrap(),
        "workers = 8\n"
    );
    assert_eq!(
        std::fs::read_to_string(f.path("data/extra.conf")).unwrap(),
        "cache = on\n"
    );
}

fn copies(f: &Fixture) -> std::path::PathBuf {
    f.write("data/release/app.bin", "v2\n");
    f.runbook(
        "copies.toml",
        r#"[runbook]
name = "copies"
version = "1.0.0"
summary = "a release copied into place"

[grants.data]
path = "{root}/data"
access = "write"

[[steps]]
id = "install"
{guest:scripted}
grants = ["data"]

[steps.with]
actions = [{ copy = ["data/release", "data/current"] }]
"#,
    )
}

/// A copy finds its destination made by someone else after the plan (a
/// container recreated its data directory): the step fails, and neither
/// the copy nor the rollback touches what they put there. Before, the copy
/// took it for its own earlier work, said done, and a rollback removed it.
#[test]
fn a_copy_whose_destination_appeared_after_the_plan_leaves_it_alone() {
    let f = Fixture::new();
    let rb = copies(&f);
    let mut run = Held::start(&f, &["run", rb.to_str().unwrap()], "intent:0:0");
    run.wait();
    f.write("data/current/theirs.db", "their data\n");
    let (code, text) = run.release();
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("not made: data/current appeared after the plan, which saw nothing there"),
        "{text}"
    );
    assert_eq!(
        std::fs::read_to_string(f.path("data/current/theirs.db")).unwrap(),
        "their data\n"
    );
    assert!(!f.path("data/current/app.bin").exists());
}

/// Killed after the copy was renamed into place, before it was journaled
/// done: the resume finds its own copy there and goes on.
#[test]
fn a_copy_resumed_after_a_kill_takes_its_own_copy_for_done() {
    let f = Fixture::new();
    let rb = copies(&f);
    let ran = f.mend_env(
        &["run", rb.to_str().unwrap()],
        &[("MEND_CRASH_AT", "perform:0:0")],
    );
    assert_eq!(ran.code, -1, "killed: {}", ran.text());
    let h: serde_json::Value =
        serde_json::from_str(&f.mend(&["--json", "history"]).stdout).unwrap();
    let resumed = f.mend(&["resume", h[0]["id"].as_str().unwrap()]);
    assert_eq!(resumed.code, 0, "{}", resumed.text());
    assert_eq!(
        std::fs::read_to_string(f.path("data/current/app.bin")).unwrap(),
        "v2\n"
    );
}
