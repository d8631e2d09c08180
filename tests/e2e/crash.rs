//! Kill the run with SIGKILL at many points (between intent and done, inside
//! a batch, during rollback); each time `mend resume` finishes the job, no
//! action is applied twice or lost, and the tree ends as an uninterrupted
//! run's does.

use crate::common::*;
use crate::lifecycle::kinds;

fn run_id(f: &Fixture) -> String {
    let h: serde_json::Value =
        serde_json::from_str(&f.mend(&["--json", "history"]).stdout).unwrap();
    h[0]["id"]
        .as_str()
        .expect("a run in the journal")
        .to_string()
}

/// The tree an uninterrupted run leaves (times aside: new files are new).
fn reference() -> std::collections::BTreeMap<String, String> {
    let f = Fixture::new();
    let rb = kinds(&f, "pass", "rollback");
    assert_eq!(f.mend(&["run", rb.to_str().unwrap()]).code, 0);
    tree(&f.path("data"), false)
}

#[test]
fn killed_anywhere_in_a_run_resume_finishes_it_exactly_once() {
    let want = reference();
    // The kinds step has 9 actions; its first three are removes and a rename,
    // journaled as one batch, so these points fall inside a batch too.
    for phase in ["intent", "perform"] {
        for seq in 0..9 {
            let f = Fixture::new();
            let rb = kinds(&f, "pass", "rollback");
            let point = format!("{phase}:0:{seq}");
            let ran = f.mend_env(&["run", rb.to_str().unwrap()], &[("MEND_CRASH_AT", &point)]);
            assert_eq!(
                ran.code,
                -1,
                "{point}: expected a SIGKILL, got {}",
                ran.text()
            );
            let id = run_id(&f);
            let resumed = f.mend(&["resume", &id]);
            assert_eq!(resumed.code, 0, "{point}: {}", resumed.text());
            assert_same(&want, &tree(&f.path("data"), false), &point);
            // Every action is recorded done once; none left intended.
            let show: serde_json::Value =
                serde_json::from_str(&f.mend(&["--json", "show", &id]).stdout).unwrap();
            let states: Vec<&str> = show["actions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["state"].as_str().unwrap())
                .collect();
            assert_eq!(states, vec!["done"; 9], "{point}");
            assert_eq!(show["run"]["status"], "committed", "{point}");
        }
    }
}

#[test]
fn killed_during_rollback_resume_finishes_the_rollback() {
    for phase in ["undoing", "undo"] {
        for seq in [8, 5, 3, 0] {
            let f = Fixture::new();
            let rb = kinds(&f, "fail", "rollback");
            let before = tree(&f.path("data"), true);
            let point = format!("{phase}:0:{seq}");
            let ran = f.mend_env(&["run", rb.to_str().unwrap()], &[("MEND_CRASH_AT", &point)]);
            assert_eq!(
                ran.code,
                -1,
                "{point}: expected a SIGKILL, got {}",
                ran.text()
            );
            let id = run_id(&f);
            let resumed = f.mend(&["resume", &id]);
            assert_eq!(resumed.code, 1, "{point}: {}", resumed.text());
            assert!(
                resumed.stdout.contains("rolled back run"),
                "{point}: {}",
                resumed.stdout
            );
            assert_same(&before, &tree(&f.path("data"), true), &point);
        }
    }
}

#[test]
fn a_torn_journal_tail_resumes_from_the_last_good_record() {
    let want = reference();
    let f = Fixture::new();
    let rb = kinds(&f, "pass", "rollback");
    let ran = f.mend_env(
        &["run", rb.to_str().unwrap()],
        &[("MEND_CRASH_AT", "perform:0:6")],
    );
    assert_eq!(ran.code, -1, "{}", ran.text());
    let id = started_run(&ran);
    // Cut the WAL inside its last frame, as a power cut during that commit
    // would: the last record is lost, the actions before it are not.
    let wal = f.state().join("journal.db-wal");
    let len = std::fs::metadata(&wal).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&wal)
        .unwrap()
        .set_len(len - 1000)
        .unwrap();
    let resumed = f.mend(&["resume", &id]);
    assert_eq!(resumed.code, 0, "{}", resumed.text());
    assert!(
        resumed
            .stderr
            .contains("the last commit was cut or damaged"),
        "{}",
        resumed.stderr
    );
    assert_same(&want, &tree(&f.path("data"), false), "after the resume");
}

#[test]
fn journal_damage_before_its_tail_is_refused_and_nothing_changes() {
    let f = Fixture::new();
    let rb = kinds(&f, "pass", "rollback");
    let ran = f.mend_env(
        &["run", rb.to_str().unwrap()],
        &[("MEND_CRASH_AT", "perform:0:6")],
    );
    assert_eq!(ran.code, -1, "{}", ran.text());
    let id = started_run(&ran);
    let before = tree(&f.path("data"), true);
    // One flipped bit in the WAL's first frame: SQLite alone would drop
    // every commit after it, the done actions among them.
    let wal = f.state().join("journal.db-wal");
    let mut bytes = std::fs::read(&wal).unwrap();
    bytes[32 + 24 + 100] ^= 0x04;
    std::fs::write(&wal, &bytes).unwrap();
    for cmd in ["resume", "rollback"] {
        let refused = f.mend(&[cmd, &id]);
        assert_eq!(refused.code, 6, "{cmd}: {}", refused.text());
        let wal_name = wal.display().to_string();
        for want in [
            &format!(
                "journal {} is damaged: {wal_name}: frame 0 at byte 32",
                f.state().join("journal.db").display()
            ),
            "later commits would be dropped with it",
            "\nnothing was done: mend does not resume, roll back or start a run on a damaged journal",
            "= help: copy",
        ] {
            assert!(
                refused.stderr.contains(want),
                "{cmd}: `{want}` in:\n{}",
                refused.stderr
            );
        }
        assert_same(&before, &tree(&f.path("data"), true), cmd);
        assert_eq!(
            std::fs::read(&wal).unwrap(),
            bytes,
            "{cmd} left the WAL as it was"
        );
    }
    // Nor does a new run start on it.
    let refused = f.mend(&["run", rb.to_str().unwrap()]);
    assert_eq!(refused.code, 6, "{}", refused.text());
}
