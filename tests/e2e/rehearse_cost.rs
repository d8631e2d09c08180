//! What a rehearsal costs beyond the run (issue 20): its report of the
//! paths it did not compare stays a few lines however many the plan made
//! irreversible (a disposable cull of a million files printed a million
//! lines, a write each), and --json still lists every one.

use crate::bulk::{cache_of, cull};
use crate::common::*;

#[test]
fn a_disposable_rehearsal_lists_a_few_irreversible_paths_and_counts_the_rest() {
    let f = Fixture::new();
    cache_of(&f, 40);
    let rb = cull(&f, true);
    let rb = rb.to_str().unwrap();
    let text = f.mend(&["rehearse", rb]);
    assert_eq!(text.code, 0, "{}", text.text());
    let out = &text.stdout;
    assert!(
        out.contains("irreversible by the plan (40), not compared:"),
        "{out}"
    );
    let listed = out
        .lines()
        .filter(|l| l.starts_with("  cull: remove "))
        .count();
    assert_eq!(listed, 12, "{out}");
    assert!(
        out.contains("\n  ... and 28 more (--json lists them all)\n"),
        "{out}"
    );
    let json = f.mend(&["--json", "rehearse", rb]);
    assert_eq!(json.code, 0, "{}", json.text());
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(
        v["report"]["irreversible"].as_array().map(Vec::len),
        Some(40),
        "{}",
        json.stdout
    );
}

/// A disposable cull's removals go while the step still plans, a whiteout
/// each on the rehearsal's own tmpfs: each batch first grows that tmpfs as
/// the step's room check does. Its first inodes are set to 1,000 here (a
/// million-file cull ran out of the real 65,536 with "No space left on
/// device" while it planned); 5,000 removals go in batches of 2,048.
#[test]
fn removals_made_while_a_rehearsal_plans_grow_its_own_tmpfs_first() {
    let f = Fixture::new();
    cache_of(&f, 5000);
    let rb = cull(&f, true);
    let before = tree(&f.path("cache"), true);
    let out = f.mend_env(
        &["rehearse", rb.to_str().unwrap()],
        &[("MEND_REHEARSAL_TMPFS_INODES", "1000")],
    );
    assert_eq!(out.code, 0, "{}", out.text());
    assert!(
        out.text().contains("a tmpfs of the rehearsal's own")
            && out.text().contains("5,000 removals done while it planned"),
        "{}",
        out.text()
    );
    assert!(out.text().contains("rehearsal passed"), "{}", out.text());
    assert_same(
        &before,
        &tree(&f.path("cache"), true),
        "after the rehearsal",
    );
}
