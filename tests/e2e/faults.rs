//! A full or failing disk, injected with `MEND_FAULT` (engine/src/faults.rs):
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

#[test]
fn no_space_on_an_action_fails_the_step_and_rolls_it_back() {
    let f = Fixture::new();
    let rb = kinds(&f, "pass", "rollback");
    let before = tree(&f.path("data"), true);
    let ran = f.mend_env(
        &["run", rb.to_str().unwrap()],
        &[("MEND_FAULT", "enospc:write:0")],
    );
    assert_eq!(ran.code, 1, "{}", ran.text());
    assert!(
        ran.stdout.contains(
            "remove data/a.txt: No space left on device (os error 28) (injected by MEND_FAULT=enospc:write:0)"
        ),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout.contains("nothing left changed"),
        "{}",
        ran.stdout
    );
    assert_same(&before, &tree(&f.path("data"), true), "after the rollback");
}

#[test]
fn a_failed_fsync_is_not_retried_the_step_fails_and_rolls_back() {
    // The fault fires once: had mend retried the fsync, it would have
    // passed and the run carried on as if the data were safe.
    let f = Fixture::new();
    let rb = kinds(&f, "pass", "rollback");
    let before = tree(&f.path("data"), true);
    let ran = f.mend_env(
        &["run", rb.to_str().unwrap()],
        &[("MEND_FAULT", "eio:fsync")],
    );
    assert_eq!(ran.code, 1, "{}", ran.text());
    assert!(
        ran.stdout
            .contains("Input/output error (os error 5) (injected by MEND_FAULT=eio:fsync)"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout.contains("nothing left changed"),
        "{}",
        ran.stdout
    );
    assert_same(&before, &tree(&f.path("data"), true), "after the rollback");
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
