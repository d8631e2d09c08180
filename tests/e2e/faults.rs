//! A full or failing disk, injected with `MEND_FAULT` (crates/faults/src/lib.rs):
//! on a journal write the run stops where it is and `mend resume` (or
//! `mend rollback`) finishes it once the fault is gone; on an action the step
//! fails and the run rolls back; a failed fsync is never retried.

use crate::common::*;
use crate::lifecycle::kinds;

/// The tree an uninterrupted run of the kinds runbook leaves (times aside).
fn reference() -> std::collections::BTreeMap<String, String> {
    let f = Fixture::new();
    let rb = kinds(&f, "pass", "rollback");
    assert_eq!(f.mend(&["run", rb.to_str().unwrap()]).code, 0);
    tree(&f.path("data"), false)
}

/// Runs `kinds` with its Nth journal write failing; `None` once N is past
/// the run's last write (the run then simply passes).
fn fail_journal_write(
    f: &Fixture,
    rb: &std::path::Path,
    verify: &str,
    n: u32,
    kind: &str,
) -> Option<Ran> {
    let fault = format!("{kind}:journal:{n}");
    let ran = f.mend_env(&["run", rb.to_str().unwrap()], &[("MEND_FAULT", &fault)]);
    if ran.code != 70 {
        assert_eq!(
            ran.code,
            if verify == "pass" { 0 } else { 1 },
            "{fault}: {}",
            ran.text()
        );
        return None;
    }
    let why = if kind == "enospc" {
        "No space left on device (os error 28) (injected by MEND_FAULT="
    } else {
        "Input/output error (os error 5) (injected by MEND_FAULT="
    };
    assert!(ran.stderr.contains(why), "{fault}: {}", ran.stderr);
    assert!(
        ran.stderr.contains("cannot write to journal"),
        "{fault}: {}",
        ran.stderr
    );
    Some(ran)
}

#[test]
fn a_failed_journal_write_stops_the_run_and_resume_or_rollback_finishes_it() {
    let want = reference();
    let mut faulted = 0;
    for n in 1.. {
        let kind = if n % 2 == 0 { "enospc" } else { "eio" };
        // Resume it once the disk is fine again: it ends as an unfaulted run.
        let f = Fixture::new();
        let rb = kinds(&f, "pass", "rollback");
        let Some(ran) = fail_journal_write(&f, &rb, "pass", n, kind) else {
            break;
        };
        faulted += 1;
        match started_run_if_any(&ran) {
            Some(id) => {
                assert!(
                    ran.stderr.contains(&format!(
                        "run {id} stopped before its next change: what it did is journaled up to here"
                    )) && ran.stderr.contains(&format!("then `mend resume {id}`")),
                    "journal:{n}: {}",
                    ran.stderr
                );
                let resumed = f.mend(&["resume", &id]);
                assert_eq!(resumed.code, 0, "journal:{n}: {}", resumed.text());
            }
            // The very first write records the run: there is none to resume.
            None => {
                assert!(ran.stderr.contains("try again"), "{}", ran.stderr);
                assert_eq!(f.mend(&["run", rb.to_str().unwrap()]).code, 0);
            }
        }
        assert_same(
            &want,
            &tree(&f.path("data"), false),
            &format!("journal:{n} resumed"),
        );

        // Or roll it back: everything the run changed before it stopped was
        // journaled, so all of it comes back, times included.
        let f = Fixture::new();
        let rb = kinds(&f, "pass", "rollback");
        let before = tree(&f.path("data"), true);
        let ran = fail_journal_write(&f, &rb, "pass", n, kind).expect("the same write fails");
        if let Some(id) = started_run_if_any(&ran) {
            let rolled = f.mend(&["rollback", &id]);
            assert_eq!(rolled.code, 0, "journal:{n}: {}", rolled.text());
            assert_same(
                &before,
                &tree(&f.path("data"), true),
                &format!("journal:{n} rolled back"),
            );
        }
    }
    assert!(
        faulted >= 10,
        "only {faulted} journal writes in a run of 9 actions?"
    );
}

#[test]
fn a_failed_journal_write_during_a_rollback_stops_it_and_resume_finishes_it() {
    let mut faulted = 0;
    for n in (1..).step_by(2) {
        let f = Fixture::new();
        let rb = kinds(&f, "fail", "rollback");
        let before = tree(&f.path("data"), true);
        let Some(ran) = fail_journal_write(&f, &rb, "fail", n, "enospc") else {
            break;
        };
        faulted += 1;
        let Some(id) = started_run_if_any(&ran) else {
            continue;
        };
        let resumed = f.mend(&["resume", &id]);
        assert_eq!(resumed.code, 1, "journal:{n}: {}", resumed.text());
        assert!(
            resumed.stdout.contains("rolled back run"),
            "journal:{n}: {}",
            resumed.stdout
        );
        assert_same(
            &before,
            &tree(&f.path("data"), true),
            &format!("journal:{n}"),
        );
    }
    assert!(faulted >= 8, "only {faulted} faulted writes");
}

/// Runs `kinds` with `fault` and checks the step failed with `why` and the
/// rollback left everything as it was.
fn an_action_fault_rolls_back(fault: &str, why: &str) {
    let f = Fixture::new();
    let rb = kinds(&f, "pass", "rollback");
    let before = tree(&f.path("data"), true);
    let ran = f.mend_env(&["run", rb.to_str().unwrap()], &[("MEND_FAULT", fault)]);
    assert_eq!(ran.code, 1, "{fault}: {}", ran.text());
    assert!(
        ran.stdout.contains(why),
        "{fault}: `{why}` in:\n{}",
        ran.stdout
    );
    assert!(
        ran.stdout.contains("nothing left changed"),
        "{fault}: {}",
        ran.stdout
    );
    assert_same(&before, &tree(&f.path("data"), true), fault);
}

#[test]
fn no_space_on_an_action_fails_the_step_and_rolls_it_back() {
    an_action_fault_rolls_back(
        "enospc:write:0",
        "remove data/a.txt: No space left on device (os error 28) (injected by MEND_FAULT=enospc:write:0)",
    );
}

#[test]
fn a_failed_fsync_is_not_retried_the_step_fails_and_rolls_back() {
    // The fault fires once: had mend retried the fsync, it would have
    // passed and the run carried on as if the data were safe.
    an_action_fault_rolls_back(
        "eio:fsync",
        "Input/output error (os error 5) (injected by MEND_FAULT=eio:fsync)",
    );
}

#[test]
fn a_misspelt_fault_is_refused_rather_than_ignored() {
    let f = Fixture::new();
    let rb = kinds(&f, "pass", "rollback");
    let ran = f.mend_env(
        &["run", rb.to_str().unwrap()],
        &[("MEND_FAULT", "enospc:jornal:3")],
    );
    assert_eq!(ran.code, 2, "{}", ran.text());
    assert!(ran.stderr.contains("is not KIND:WHERE"), "{}", ran.stderr);
}

#[test]
fn rehearse_faults_passes_a_runbook_that_recovers_from_every_fault() {
    let f = Fixture::new();
    let rb = kinds(&f, "pass", "rollback");
    let before = tree(f.dir.path(), true);
    let ran = f.mend(&["rehearse", "--faults", rb.to_str().unwrap()]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    for line in [
        "the plain rehearsal passed: 9 actions in 2 steps; killing after 9 of them, then filling the disk at each step",
        // Entries compared: the whole copy, or what the overlay's upper
        // layer holds.
        "  ok   kill after 1.1 remove data/a.txt: killed, resumed, rolled back; ",
        "  ok   kill after 1.9 extract data/unpacked: killed, resumed, rolled back; ",
        "  ok   no space at step 1 (change): failed, rolled back; ",
    ] {
        assert!(
            ran.stderr.contains(line),
            "missing `{line}` in:\n{}",
            ran.stderr
        );
    }
    assert!(
        ran.stdout.starts_with(
            "fault rehearsal passed: kinds: 10 variants (a kill after 9 of 9 actions, each then resumed; no space at each step, then rolled back); each ended with every grant as it started"
        ),
        "{}",
        ran.stdout
    );
    // All of it happened on copies, journaled elsewhere.
    assert_same(&before, &tree(f.dir.path(), true), "the fixture");
    assert!(!f.state().exists());
}

#[test]
fn rehearse_faults_finds_a_command_that_is_not_safe_to_resume() {
    // The plain rehearsal passes: the note is appended, then taken back.
    // Killed after the append and before it is journaled done, a resume
    // appends again, and the rollback takes back one line of two.
    let f = Fixture::new();
    populate(&f);
    let rb = f.runbook(
        "notes.toml",
        r#"
[runbook]
name = "notes"
version = "1.0.0"
summary = "a command that is not safe to run twice"

[grants.data]
path = "{root}/data"
access = "write"

[commands.note]
program = "/bin/sh"
changes = [["-c", "echo upgraded >> \"$MEND_GRANT_DATA/log.txt\""]]

[commands.unnote]
program = "/bin/sh"
changes = [["-c", "sed -i '$d' \"$MEND_GRANT_DATA/log.txt\"; [ -s \"$MEND_GRANT_DATA/log.txt\" ] || rm \"$MEND_GRANT_DATA/log.txt\""]]

[rehearsal.commands.note]
program = "/bin/sh"
args = ["-c", "echo upgraded >> \"$MEND_GRANT_DATA/log.txt\""]

[rehearsal.commands.unnote]
program = "/bin/sh"
args = ["-c", "sed -i '$d' \"$MEND_GRANT_DATA/log.txt\"; [ -s \"$MEND_GRANT_DATA/log.txt\" ] || rm \"$MEND_GRANT_DATA/log.txt\""]

[[steps]]
id = "note"
{guest:scripted}
grants = ["data"]
commands = ["note", "unnote"]
with = { actions = [{ exec = ["note", ["-c", "echo upgraded >> \"$MEND_GRANT_DATA/log.txt\""]], undo = ["unnote", ["-c", "sed -i '$d' \"$MEND_GRANT_DATA/log.txt\"; [ -s \"$MEND_GRANT_DATA/log.txt\" ] || rm \"$MEND_GRANT_DATA/log.txt\""]] }] }
"#,
    );
    let plain = f.mend(&["rehearse", rb.to_str().unwrap()]);
    assert_eq!(plain.code, 0, "{}", plain.text());
    let ran = f.mend(&["rehearse", "--faults", rb.to_str().unwrap()]);
    assert_eq!(ran.code, 1, "{}", ran.text());
    for line in [
        "fault rehearsal failed: notes: 1 of 2 variants did not end as they started:",
        "  kill after 1.1 exec note -c",
        "killed, resumed, rolled back, but 1 differ from the start",
        "    fault: MEND_CRASH_AT=perform:0:0",
        "    data/log.txt: left behind by the run",
        "    kept: ",
    ] {
        assert!(
            ran.stdout.contains(line),
            "missing `{line}` in:\n{}",
            ran.stdout
        );
    }
    assert!(
        ran.stderr
            .contains("  ok   no space at step 1 (note): failed, rolled back; "),
        "{}",
        ran.stderr
    );
    // The failed variant is kept for a look; its log has the second line.
    let kept = ran
        .stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("kept: "))
        .and_then(|l| l.split(" (").next())
        .unwrap()
        .to_string();
    // A copy, or (on overlays) the upper layer, which holds the new file.
    let log = ["grants/data/log.txt", "layers/data/upper/log.txt"]
        .iter()
        .map(|rel| std::path::Path::new(&kept).join(rel))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("no log.txt kept in {kept}"));
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "upgraded\n");
    std::fs::remove_dir_all(std::path::Path::new(&kept).parent().unwrap()).unwrap();
}
