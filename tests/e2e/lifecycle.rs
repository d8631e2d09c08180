//! Plan changes nothing; run commits; a failed run rolls back byte for
//! byte; rehearse passes and fails for the right reasons.

use crate::common::*;

/// One step that does one of every action kind, and a second step whose
/// verify can be made to fail.
pub const KINDS: &str = r#"
[runbook]
name = "kinds"
version = "1.0.0"
summary = "every action kind"
on_failure = "{on_failure}"

[grants.data]
path = "{root}/data"
access = "write"

[[steps]]
id = "change"
{guest:scripted}
grants = ["data"]

[steps.with]
actions = [
  { remove = "data/a.txt" },
  { remove = "data/old" },
  { rename = ["data/b.txt", "data/keep/b.txt"] },
  { swap = ["data/x", "data/y"] },
  { create_dir = "data/new/deep" },
  { write_file = ["data/keep/c.txt", "changed\n"] },
  { write_file = ["data/new/deep/f.txt", "fresh\n"] },
  { copy = ["data/keep", "data/keep-copy"] },
  { extract = ["data/release.tar.gz", "data/unpacked", "tar-gz"] },
]

[[steps]]
id = "check"
{guest:scripted}
grants = ["data"]
with = { verify = "{verify}" }
"#;

pub fn kinds(f: &Fixture, verify: &str, on_failure: &str) -> std::path::PathBuf {
    populate(f);
    f.runbook(
        "kinds.toml",
        &KINDS
            .replace("{verify}", verify)
            .replace("{on_failure}", on_failure),
    )
}

#[test]
pub(crate) fn plan_changes_nothing_and_lists_every_action() {
    let f = Fixture::new();
    let rb = kinds(&f, "pass", "rollback");
    let before = tree(&f.path("data"), true);
    let ran = f.mend(&["plan", rb.to_str().unwrap()]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    assert_same(&before, &tree(&f.path("data"), true), "after plan");
    assert!(!f.state().exists(), "plan created the state directory");
    for line in [
        "remove     data/a.txt",
        "swap       data/x <-> data/y",
        "extract    data/release.tar.gz -> data/unpacked",
        "total: 9 actions",
    ] {
        assert!(
            ran.stdout.contains(line),
            "missing `{line}` in:\n{}",
            ran.stdout
        );
    }
    // The JSON form has the documented shape.
    let ran = f.mend(&["--json", "plan", rb.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_str(&ran.stdout).expect("one JSON document");
    assert_eq!(v["runbook"]["name"], "kinds");
    let a = &v["steps"][0]["actions"][0];
    assert_eq!(
        (
            a["kind"].as_str(),
            a["path"].as_str(),
            a["bytes"].as_u64(),
            a["reversible"].as_bool()
        ),
        (Some("remove"), Some("data/a.txt"), Some(6), Some(true))
    );
    assert_eq!(v["steps"][0]["actions"].as_array().unwrap().len(), 9);
}

#[test]
fn run_commits_every_action_kind() {
    let f = Fixture::new();
    let rb = kinds(&f, "pass", "rollback");
    let ran = f.mend(&["run", rb.to_str().unwrap()]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    let d = |p: &str| f.path("data").join(p);
    assert!(!d("a.txt").exists() && !d("old").exists() && !d("b.txt").exists());
    assert_eq!(std::fs::read_to_string(d("keep/b.txt")).unwrap(), "bravo\n");
    assert_eq!(std::fs::read_to_string(d("x/two")).unwrap(), "y2\n");
    assert_eq!(std::fs::read_to_string(d("y/one")).unwrap(), "x1\n");
    assert_eq!(
        std::fs::read_to_string(d("keep/c.txt")).unwrap(),
        "changed\n"
    );
    assert_eq!(
        std::fs::read_to_string(d("keep-copy/c.txt")).unwrap(),
        "changed\n"
    );
    assert_eq!(
        std::fs::read_to_string(d("new/deep/f.txt")).unwrap(),
        "fresh\n"
    );
    assert_eq!(
        std::fs::read_to_string(d("unpacked/release/app.txt")).unwrap(),
        "release 2\n"
    );
    assert!(
        !d(".mend-trash").exists() && !d(".mend-staging").exists(),
        "trash left after commit"
    );
    let h = f.mend(&["--json", "history"]);
    let runs: serde_json::Value = serde_json::from_str(&h.stdout).unwrap();
    assert_eq!(runs[0]["status"], "committed");
}

#[test]
fn failed_verify_rolls_back_byte_for_byte() {
    let f = Fixture::new();
    let rb = kinds(&f, "fail", "rollback");
    let before = tree(&f.path("data"), true);
    let ran = f.mend(&["run", rb.to_str().unwrap()]);
    assert_eq!(ran.code, 1, "{}", ran.text());
    assert!(
        ran.stdout.contains("failed: step `check`"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout
            .contains("9 actions undone; steps change, check rolled back; nothing left changed"),
        "{}",
        ran.stdout
    );
    assert_same(&before, &tree(&f.path("data"), true), "after rollback");
}

#[test]
fn stopped_run_rolls_back_on_request() {
    let f = Fixture::new();
    let rb = kinds(&f, "fail", "stop");
    let before = tree(&f.path("data"), true);
    let ran = f.mend(&["run", rb.to_str().unwrap()]);
    assert_eq!(ran.code, 1, "{}", ran.text());
    assert!(
        ran.stdout.contains("nothing was rolled back"),
        "{}",
        ran.stdout
    );
    assert!(
        f.path("data/new/deep/f.txt").exists(),
        "the stopped run's changes stay"
    );
    let h: serde_json::Value =
        serde_json::from_str(&f.mend(&["--json", "history"]).stdout).unwrap();
    let id = h[0]["id"].as_str().unwrap().to_string();
    assert_eq!(h[0]["status"], "failed");
    let ran = f.mend(&["rollback", &id[..6]]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    assert_same(&before, &tree(&f.path("data"), true), "after mend rollback");
    let again = f.mend(&["rollback", &id]);
    assert_eq!(again.code, 2, "{}", again.text());
    assert!(
        again.text().contains("already rolled back"),
        "{}",
        again.text()
    );
}

#[test]
fn rehearse_passes_on_a_good_runbook_and_leaves_the_real_tree_alone() {
    let f = Fixture::new();
    let rb = kinds(&f, "pass", "rollback");
    let before = tree(&f.path("data"), true);
    let ran = f.mend(&["rehearse", rb.to_str().unwrap()]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    assert!(
        ran.stdout
            .contains("rehearsal passed: every grant is byte-identical"),
        "{}",
        ran.stdout
    );
    assert_same(
        &before,
        &tree(&f.path("data"), true),
        "the real grant after a rehearsal",
    );
}

#[test]
fn rehearse_fails_when_a_reversible_action_is_not_undone() {
    let f = Fixture::new();
    populate(&f);
    // The command claims an undo, but its stand-in undo does nothing.
    let rb = f.runbook(
        "lying.toml",
        r#"
[runbook]
name = "lying-undo"
version = "1.0.0"
summary = "an exec whose undo does not undo"

[grants.data]
path = "{root}/data"
access = "write"

[commands.mark]
program = "/bin/false"
changes = ["**"]

[commands.unmark]
program = "/bin/false"
changes = ["**"]

[rehearsal.commands.mark]
program = "/bin/sh"
args = ["-c", "echo marked > \"$MEND_GRANT_DATA/a.txt\""]

[rehearsal.commands.unmark]
program = "/bin/true"

[[steps]]
id = "mark"
{guest:scripted}
grants = ["data"]
commands = ["mark", "unmark"]
with = { actions = [{ exec = ["mark", ["a.txt"]], undo = ["unmark", ["a.txt"]] }] }
"#,
    );
    let ran = f.mend(&["rehearse", rb.to_str().unwrap()]);
    assert_eq!(ran.code, 1, "{}", ran.text());
    assert!(
        ran.stdout
            .contains("rehearsal failed: 1 difference after the rollback:"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout.contains("data/a.txt: content, mtime differs"),
        "{}",
        ran.stdout
    );
    assert_eq!(
        std::fs::read_to_string(f.path("data/a.txt")).unwrap(),
        "alpha\n",
        "the real grant was touched"
    );
}

#[test]
fn rehearse_refuses_commands_without_a_stand_in() {
    let f = Fixture::new();
    populate(&f);
    let rb = f.runbook(
        "nostand.toml",
        r#"
[runbook]
name = "no-stand-in"
version = "1.0.0"
summary = "an exec with no stand-in"

[grants.data]
path = "{root}/data"
access = "write"

[commands.restart]
program = "/bin/true"
changes = ["**"]

[[steps]]
id = "restart"
{guest:scripted}
grants = ["data"]
commands = ["restart"]
with = { actions = [{ exec = ["restart", ["web"]] }] }
"#,
    );
    // Refused as bad input before anything is copied.
    let ran = f.mend(&["rehearse", rb.to_str().unwrap()]);
    assert_eq!(ran.code, 2, "{}", ran.text());
    assert!(
        ran.text()
            .contains("these have no stand-in: `restart` (step `restart`); nothing was copied"),
        "{}",
        ran.text()
    );
}

#[test]
fn a_second_run_of_the_same_runbook_is_refused_and_unlock_needs_the_lock_id() {
    let f = Fixture::new();
    f.write("data/a.txt", "a");
    let rb = f.runbook(
        "slow.toml",
        r#"
[runbook]
name = "slow"
version = "1.0.0"
summary = "a step that takes its whole deadline"

[grants.data]
path = "{root}/data"
access = "write"

[[steps]]
id = "loop"
{guest:spin}
timeout = "3s"
"#,
    );
    let mut first = start_run(&f, &rb);
    let second = f.mend(&["run", rb.to_str().unwrap()]);
    assert_eq!(second.code, 4, "{}", second.text());
    assert!(
        second
            .stderr
            .contains(&format!("is locked by pid {}", first.id())),
        "{}",
        second.stderr
    );
    // `mend unlock` needs the id the refusal printed, and then stops the
    // holder; its run stays in the journal, resumable.
    let id = second
        .stderr
        .split("lock id ")
        .nth(1)
        .and_then(|r| r.get(..8))
        .unwrap_or_else(|| panic!("no lock id in: {}", second.stderr))
        .to_string();
    assert!(
        second
            .stderr
            .contains(&format!("`mend unlock slow --id {id}` stops it")),
        "{}",
        second.stderr
    );
    let wrong = f.mend(&["unlock", "slow", "--id", "00000000"]);
    assert_eq!(wrong.code, 2, "{}", wrong.text());
    assert!(
        wrong.stderr.contains(&format!("has id {id}, not 00000000")),
        "{}",
        wrong.stderr
    );
    let unlocked = f.mend(&["unlock", "slow", "--id", &id]);
    assert_eq!(unlocked.code, 0, "{}", unlocked.text());
    assert!(
        unlocked.stdout.contains(&format!(
            "stopped pid {} (SIGTERM); the lock of `slow` is free",
            first.id()
        )),
        "{}",
        unlocked.stdout
    );
    assert!(
        first.wait().unwrap().code().is_none(),
        "stopped by a signal"
    );
    assert!(
        f.mend(&["--json", "history"])
            .stdout
            .contains("\"running\""),
        "the stopped run stays resumable"
    );
    let third = f.mend(&["run", rb.to_str().unwrap()]);
    assert_eq!(
        third.code,
        1,
        "expected the step to time out, not a lock: {}",
        third.text()
    );
}

#[test]
fn a_command_is_compensated_on_rollback() {
    let f = Fixture::new();
    populate(&f);
    let rb = f.runbook(
        "exec.toml",
        r#"
[runbook]
name = "exec-undo"
version = "1.0.0"
summary = "a command and its compensation"

[grants.data]
path = "{root}/data"
access = "write"

[commands.mark]
program = "/bin/sh"
changes = [["-c", "echo on > \"$MEND_GRANT_DATA/flag\""]]

[commands.unmark]
program = "/bin/sh"
changes = [["-c", "rm \"$MEND_GRANT_DATA/flag\""]]

[[steps]]
id = "mark"
{guest:scripted}
grants = ["data"]
commands = ["mark", "unmark"]
with = { actions = [{ exec = ["mark", ["-c", "echo on > \"$MEND_GRANT_DATA/flag\""]], undo = ["unmark", ["-c", "rm \"$MEND_GRANT_DATA/flag\""]] }], verify = "exists:data/flag" }

[[steps]]
id = "fail"
{guest:scripted}
with = { verify = "fail" }
"#,
    );
    let ran = f.mend(&["run", rb.to_str().unwrap()]);
    assert_eq!(ran.code, 1, "{}", ran.text());
    assert!(ran.stdout.contains("1 action undone"), "{}", ran.stdout);
    assert!(
        !f.path("data/flag").exists(),
        "the compensation did not run"
    );
    let show: serde_json::Value =
        serde_json::from_str(&f.mend(&["--json", "show", &history_id(&f)]).stdout).unwrap();
    assert_eq!(show["actions"][0]["state"], "undone");
}

#[test]
fn an_argument_outside_the_allowed_patterns_is_refused_at_plan() {
    let f = Fixture::new();
    populate(&f);
    let rb = f.runbook(
        "exec.toml",
        r#"
[runbook]
name = "exec-deny"
version = "1.0.0"
summary = "a command with arguments it may not get"

[grants.data]
path = "{root}/data"
access = "write"

[commands.systemctl]
program = "/bin/true"
changes = [["restart", "mastodon-*.service"]]

[[steps]]
id = "restart"
{guest:scripted}
commands = ["systemctl"]
with = { actions = [{ exec = ["systemctl", ["stop", "nftables.service"]] }] }
"#,
    );
    let ran = f.mend(&["plan", rb.to_str().unwrap()]);
    assert_eq!(ran.code, 1, "{}", ran.text());
    assert!(
        ran.stdout.contains("step `restart`: `systemctl stop nftables.service` does not match the `changes` of [commands.systemctl] (restart mastodon-*.service), which is what an exec action runs; add a pattern to its `changes` if it should"),
        "{}",
        ran.stdout
    );
}

#[test]
fn lint_checks_steps_parameters_and_resume_refuses_a_changed_runbook() {
    let f = Fixture::new();
    let rb = kinds(&f, "pass", "rollback");
    let ran = f.mend(&["lint", rb.to_str().unwrap()]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    assert!(
        ran.stdout.contains("kinds.toml: ok (kinds 1.0.0, 2 steps)"),
        "{}",
        ran.stdout
    );
    // Interrupt a run, change the runbook, and try to resume it.
    let ran = f.mend_env(
        &["run", rb.to_str().unwrap()],
        &[("MEND_CRASH_AT", "perform:0:4")],
    );
    assert_eq!(ran.code, -1, "{}", ran.text());
    let text = std::fs::read_to_string(&rb).unwrap();
    std::fs::write(
        &rb,
        text.replace("summary = \"every action kind\"", "summary = \"edited\""),
    )
    .unwrap();
    let id = history_id(&f);
    let ran = f.mend(&["resume", &id]);
    assert_eq!(ran.code, 2, "{}", ran.text());
    assert!(
        ran.stderr
            .contains(&format!("the runbook changed since run {id} started")),
        "{}",
        ran.stderr
    );
    std::fs::write(&rb, text).unwrap();
    assert_eq!(f.mend(&["resume", &id]).code, 0);
}

#[test]
fn removals_in_a_disposable_grant_are_marked_irreversible() {
    let f = Fixture::new();
    f.write("cache/a.bin", "aaaa");
    f.write("cache/sub/b.bin", "bbbb");
    // A removal below the root changes its directory's times for good.
    f.write("cache/deep/c.bin", "cccc");
    f.write("cache/deep/keep.bin", "kkkk");
    let rb = f.runbook(
        "cache.toml",
        r#"
[runbook]
name = "disposable"
version = "1.0.0"
summary = "a cache whose removals are not kept"

[grants.cache]
path = "{root}/cache"
access = "write"
disposable = true

[[steps]]
id = "drop"
{guest:scripted}
grants = ["cache"]
with = { actions = [{ remove = "cache/a.bin" }, { remove = "cache/sub" }, { remove = "cache/deep/c.bin" }] }
"#,
    );
    let plan = f.mend(&["plan", rb.to_str().unwrap()]);
    assert!(
        plan.stdout
            .contains("total: 3 actions, 12 B; 3 irreversible"),
        "{}",
        plan.stdout
    );
    assert!(plan.stdout.contains("IRREVERSIBLE"), "{}", plan.stdout);
    // A rehearsal lists them and does not compare their paths.
    let rehearsal = f.mend(&["rehearse", rb.to_str().unwrap()]);
    assert_eq!(rehearsal.code, 0, "{}", rehearsal.text());
    assert!(rehearsal.stdout.contains("irreversible by the plan (3), not compared:\n  drop: remove cache/a.bin\n  drop: remove cache/sub\n  drop: remove cache/deep/c.bin"), "{}", rehearsal.stdout);
    // A real run unlinks at once: no trash is left even before the commit.
    assert_eq!(f.mend(&["run", rb.to_str().unwrap()]).code, 0);
    assert!(
        !f.path("cache/a.bin").exists()
            && !f.path("cache/sub").exists()
            && !f.path("cache/.mend-trash").exists()
    );
}

/// A compensation that fails stops the rollback (exit 3) and lists what is
/// still changed; once the operator clears the cause, `mend rollback` tries
/// that compensation again and repeats none of the others.
#[test]
fn a_failed_compensation_stops_the_rollback_and_a_second_rollback_finishes_it() {
    let f = Fixture::new();
    let rb = kinds(&f, "fail", "stop");
    let before = tree(&f.path("data"), true);
    let ran = f.mend(&["run", rb.to_str().unwrap()]);
    assert_eq!(ran.code, 1, "{}", ran.text());
    let h: serde_json::Value =
        serde_json::from_str(&f.mend(&["--json", "history"]).stdout).unwrap();
    let id = h[0]["id"].as_str().unwrap().to_string();

    // Something new where the first removal's file was: putting it back
    // would overwrite it, so that undo must fail, and it is undone last.
    f.write("data/a.txt", "written by someone else\n");
    let ran = f.mend(&["rollback", &id]);
    assert_eq!(ran.code, 3, "{}", ran.text());
    assert!(
        ran.stdout
            .contains("cannot put data/a.txt back: something new is in its place"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout
            .contains("still changed (1):\n  change: remove data/a.txt"),
        "{}",
        ran.stdout
    );
    let h: serde_json::Value =
        serde_json::from_str(&f.mend(&["--json", "history"]).stdout).unwrap();
    assert_eq!(h[0]["status"], "rollback-failed");

    // The cause cleared, the second rollback does the one undo left.
    std::fs::remove_file(f.path("data/a.txt")).unwrap();
    let ran = f.mend(&["rollback", &id]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    assert!(
        ran.stdout.contains(": 1 action undone;"),
        "only the failed undo is repeated: {}",
        ran.stdout
    );
    assert_same(
        &before,
        &tree(&f.path("data"), true),
        "after the second rollback",
    );
}

/// `on_failure = "stop"` leaves the run where it failed; once the cause is
/// fixed, `mend resume` finishes it: done actions are not repeated, the
/// failed check is made again.
#[test]
fn a_stopped_run_resumes_once_the_cause_is_fixed() {
    let f = Fixture::new();
    populate(&f);
    let rb = f.runbook(
        "stop.toml",
        &CULL_THEN_CHECK.replace("{on_failure}", "stop"),
    );
    let ran = f.mend(&["--now", "1795000000", "run", rb.to_str().unwrap()]);
    assert_eq!(ran.code, 1, "{}", ran.text());
    let id = history_id(&f);
    assert!(
        ran.stdout
            .contains(&format!("fix the cause and `mend resume {id}`")),
        "{}",
        ran.stdout
    );
    assert!(!f.path("data/old/d.txt").exists(), "the cull stays done");

    f.write("data/config.yml", "ok\n");
    let ran = f.mend(&["--now", "1795000000", "resume", &id[..8]]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    assert!(ran.stdout.contains("committed"), "{}", ran.stdout);
    let shown: serde_json::Value =
        serde_json::from_str(&f.mend(&["--json", "show", &id]).stdout).unwrap();
    let actions = shown["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 2, "{shown}");
    assert!(actions.iter().all(|a| a["state"] == "done"), "{shown}");
}

/// Two different runbooks whose write grants nest cannot run at once: the
/// second is refused (exit 4) naming both grants, the other runbook, its
/// pid and run; a runbook writing elsewhere is not held up; once the
/// holder is killed with SIGKILL its claim is free.
#[test]
fn runbooks_whose_write_grants_nest_do_not_run_at_once() {
    let f = Fixture::new();
    f.write("data/sub/a.txt", "a");
    f.write("elsewhere/b.txt", "b");
    let holder = f.runbook(
        "holder.toml",
        r#"
[runbook]
name = "holder"
version = "1.0.0"
summary = "writes data/ for a while"

[grants.data]
path = "{root}/data"
access = "write"

[[steps]]
id = "loop"
{guest:spin}
timeout = "20s"
"#,
    );
    let other = |name: &str, dir: &str| {
        f.runbook(
            &format!("{name}.toml"),
            &format!(
                r#"
[runbook]
name = "{name}"
version = "1.0.0"
summary = "writes {dir}"

[grants.target]
path = "{{root}}/{dir}"
access = "write"

[[steps]]
id = "cull"
uses = "std:cache-cull"
grants = ["target"]
with = {{ path = "target", days = 1 }}
"#
            ),
        )
    };
    let nested = other("nested", "data/sub");
    let apart = other("apart", "elsewhere");
    let mut first = start_run(&f, &holder);
    let refused_at = std::time::Instant::now();
    let second = f.mend(&["run", nested.to_str().unwrap()]);
    eprintln!("refused in {:?}:\n{}", refused_at.elapsed(), second.stderr);
    // A runbook writing elsewhere is free to go meanwhile.
    let elsewhere = f.mend(&["run", apart.to_str().unwrap()]);
    let first_pid = first.id();
    first.kill().unwrap();
    first.wait().unwrap();
    assert_eq!(second.code, 4, "{}", second.text());
    assert_eq!(elsewhere.code, 0, "{}", elsewhere.text());
    let data = std::fs::canonicalize(f.path("data")).unwrap();
    assert!(
        second.stderr.contains(&format!(
            "grant `target` ({}/sub) overlaps grant `data` ({}) of runbook `holder`, which is running: pid {first_pid}, run ",
            data.display(),
            data.display()
        )),
        "{}",
        second.stderr
    );
    assert!(
        f.path("data/sub/a.txt").exists(),
        "the refused run changed nothing"
    );

    // The killed holder's claim is free.
    let ran = f.mend(&["run", nested.to_str().unwrap()]);
    assert_eq!(ran.code, 0, "{}", ran.text());
}
