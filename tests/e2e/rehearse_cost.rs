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
