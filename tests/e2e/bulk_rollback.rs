//! A rollback undoes a batch of removals as a unit and journals it once
//! (issue 20): the batch stays one row, recorded undone. Killed inside a
//! batch, the rollback resumes from the journal, which still says the batch
//! is done (or intended): each undo looks at the world first, so the tree
//! ends byte-identical and no journaled batch is undone again.

use crate::bulk::{FILES, cache, cull, rows, states};
use crate::common::*;

#[test]
fn a_trash_rollback_keeps_its_batches_one_row_each() {
    let f = Fixture::new();
    cache(&f);
    let before = tree(&f.path("cache"), true);
    let rb = cull(&f, false);
    let ran = f.mend_env(
        &["run", rb.to_str().unwrap()],
        &[("MEND_CRASH_AT", "perform:0:2500")],
    );
    assert_eq!(ran.code, -1, "expected a SIGKILL: {}", ran.text());
    let id = history_id(&f);
    let back = f.mend(&["--json", "rollback", &id]);
    assert_eq!(back.code, 0, "{}", back.text());
    let out: serde_json::Value = serde_json::from_str(&back.stdout).unwrap();
    // 0..=2500 were removed; the rest of the last batch never was.
    assert_eq!(out["rollback"]["undone"], 2501, "{out}");
    assert_same(&before, &tree(&f.path("cache"), true), "after the rollback");
    assert_eq!(rows(&f, "bulk"), 5, "the batches stay one row each");
    assert_eq!(rows(&f, "actions"), 0);
    assert_eq!(states(&f, &id), vec!["undone"; FILES as usize]);
}

#[test]
fn a_rollback_killed_inside_a_batch_resumes_byte_identical_undoing_each_once() {
    // The rollback goes newest first: the last batch (2048-2999,
    // intended when the run was killed at 2500), then the ones the step
    // handed over while it planned (1024-2047, 512-1023, 256-511, 0-255,
    // done). (kill point, actions the resumed rollback still has to undo)
    for (point, left) in [
        ("undo:0:2200", 2200),
        ("undoing:0:2048", 2049),
        ("undo:0:1000", 1024),
        ("undo:0:0", 256),
    ] {
        let f = Fixture::new();
        cache(&f);
        let before = tree(&f.path("cache"), true);
        let rb = cull(&f, false);
        let ran = f.mend_env(
            &["run", rb.to_str().unwrap()],
            &[("MEND_CRASH_AT", "perform:0:2500")],
        );
        assert_eq!(ran.code, -1, "expected a SIGKILL: {}", ran.text());
        let id = history_id(&f);
        let killed = f.mend_env(&["rollback", &id], &[("MEND_CRASH_AT", point)]);
        assert_eq!(
            killed.code,
            -1,
            "{point}: expected a SIGKILL: {}",
            killed.text()
        );
        let back = f.mend(&["--json", "rollback", &id]);
        assert_eq!(back.code, 0, "{point}: {}", back.text());
        let out: serde_json::Value = serde_json::from_str(&back.stdout).unwrap();
        // A batch journaled undone is not undone again; the one killed
        // inside is undone whole (its undone removals are no-ops).
        assert_eq!(out["rollback"]["undone"], left, "{point}: {out}");
        assert_same(&before, &tree(&f.path("cache"), true), point);
        assert_eq!(rows(&f, "bulk"), 5, "{point}");
        assert_eq!(
            states(&f, &id),
            vec!["undone"; FILES as usize],
            "{point}: every removal undone, once"
        );
    }
}
