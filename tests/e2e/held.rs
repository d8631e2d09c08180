//! A held run (`mend run --hold`): verified, not committed, its undo data
//! kept until `mend commit` or `mend rollback` settles it. What `mend fleet
//! run` does on every host so a whole fleet can go back.

use crate::common::*;
use crate::lifecycle::kinds;

fn history(f: &Fixture) -> serde_json::Value {
    serde_json::from_str(&f.mend(&["--json", "history"]).stdout).unwrap()
}

fn held_run(f: &Fixture) -> (std::path::PathBuf, String) {
    let rb = kinds(f, "pass", "rollback");
    let ran = f.mend(&["run", "--hold", rb.to_str().unwrap()]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    assert!(ran.stdout.contains("held:"), "{}", ran.stdout);
    let id = history_id(f);
    assert_eq!(history(f)[0]["status"], "held");
    (rb, id)
}

#[test]
fn a_held_run_keeps_its_trash_and_rolls_back_byte_for_byte() {
    let f = Fixture::new();
    populate(&f);
    let before = tree(&f.path("data"), true);
    let (_, id) = held_run(&f);
    // Changed, and the undo data is still there.
    assert!(!f.path("data/a.txt").exists());
    assert!(
        f.path("data/.mend-trash").exists(),
        "a held run lost its trash"
    );
    let resumed = f.mend(&["resume", &id]);
    assert_eq!(resumed.code, 2, "{}", resumed.text());
    assert!(
        resumed.text().contains("is held") && resumed.text().contains("mend commit"),
        "{}",
        resumed.text()
    );
    let rb = f.mend(&["rollback", &id]);
    assert_eq!(rb.code, 0, "{}", rb.text());
    assert_same(&before, &tree(&f.path("data"), true), "after rollback");
    assert_eq!(history(&f)[0]["status"], "rolled-back");
}

#[test]
fn commit_settles_a_held_run_and_purges_its_trash() {
    let f = Fixture::new();
    let (_, id) = held_run(&f);
    let c = f.mend(&["commit", &id]);
    assert_eq!(c.code, 0, "{}", c.text());
    assert_eq!(history(&f)[0]["status"], "committed");
    assert!(
        !f.path("data/.mend-trash").exists() && !f.path("data/.mend-staging").exists(),
        "trash left after commit"
    );
    assert_eq!(
        std::fs::read_to_string(f.path("data/keep/c.txt")).unwrap(),
        "changed\n"
    );
    // Only a held run waits for a commit.
    let again = f.mend(&["commit", &id]);
    assert_eq!(again.code, 2, "{}", again.text());
    assert!(again.text().contains("not held"), "{}", again.text());
    let rb = f.mend(&["rollback", &id]);
    assert_eq!(rb.code, 2, "{}", rb.text());
}

#[test]
fn a_held_run_refuses_a_second_run_of_its_runbook_and_prune_keeps_it() {
    let f = Fixture::new();
    let (rb, id) = held_run(&f);
    let tree_held = tree(&f.path("data"), true);
    let second = f.mend(&["run", rb.to_str().unwrap()]);
    assert_eq!(second.code, 4, "{}", second.text());
    assert!(
        second.text().contains(&format!("held run {id}")),
        "{}",
        second.text()
    );
    assert_same(
        &tree_held,
        &tree(&f.path("data"), true),
        "after the refusal",
    );
    assert_eq!(
        history(&f).as_array().unwrap().len(),
        1,
        "a run was journaled"
    );
    // `mend history` shows it held (the journal's prune keeps it: a unit
    // test of crates/journal/src/prune.rs).
    let h = f.mend(&["history"]);
    assert!(h.stdout.contains("held"), "{}", h.stdout);
    // Settled, the runbook runs again.
    assert_eq!(f.mend(&["commit", &id]).code, 0);
}
