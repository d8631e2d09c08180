//! The check of a removal planned from a walk keeps what the walk saw
//! (issue 18): a file rewritten after the walk stat'ed it, before the
//! check, is not what the step chose and the plan showed, so it is left in
//! place and said. (Before, the check stat'ed it again and recorded the
//! rewritten file as "what the plan showed", and it was removed.)

use crate::common::*;
use crate::nothing_lost::{NOW, held_cull, put};

/// More than one batch a step hands over (the SDK's 2,048), so the cull's
/// first removals reach the host while it still plans.
const FILES: u32 = 2_100;

#[test]
fn a_file_rewritten_between_the_walk_and_the_check_is_left_in_place() {
    for disposable in ["true", "false"] {
        let f = Fixture::new();
        for i in 0..FILES {
            put(&f, format!("cache/d1/f{i:05}").as_bytes(), "old\n", 1000);
        }
        // A young file stays: the old ones go one by one (a folder whose
        // every file goes is removed whole: tests/e2e/whole_folders.rs).
        put(&f, b"cache/d1/young", "young\n", NOW - 60);
        // Held when the first batch of removals is handed over, before the
        // host checks it: the walk has stat'ed f00000 (old, 4 B).
        let mut held = held_cull(&f, disposable == "true", "emit:0:0");
        held.wait();
        // The service rewrites it: new body, new time.
        std::fs::write(f.path("cache/d1/f00000"), "a new, longer body\n").unwrap();
        let (code, text) = held.release();
        assert_eq!(code, Some(0), "disposable={disposable}: {text}");
        assert_eq!(
            read_text(&f, "cache/d1/f00000"),
            "a new, longer body\n",
            "disposable={disposable}: the rewritten file stays: {text}"
        );
        let line = "step `cull`: left cache/d1/f00000 in place: it changed since the plan (4 B then, 19 B now, modified since)";
        assert!(
            text.contains(line),
            "disposable={disposable}: {line}\n{text}"
        );
        // The rest went: the walk's stats were right for them.
        let left: Vec<_> = std::fs::read_dir(f.path("cache/d1"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 2, "disposable={disposable}: {left:?}\n{text}");
    }
}

/// The same for a step that lists its directory and stats what it picks
/// (std:archive-cleanup): the check keeps the step's own stat. A segment
/// rewritten after the step stat'ed it, before the check of the first
/// batch handed over, is left in place and said.
#[test]
fn a_segment_rewritten_after_the_step_looked_at_it_is_left_in_place() {
    for disposable in ["true", "false"] {
        let f = Fixture::new();
        let segment = |i: u32| format!("00000001{:08X}{:08X}", i / 256, i % 256);
        for i in 0..310u32 {
            put(&f, format!("wal/{}", segment(i)).as_bytes(), "old\n", 1000);
        }
        let rb = f.runbook(
            "wal.toml",
            &format!(
                r#"[runbook]
name = "wal"
version = "1.0.0"
summary = "archive cleanup"

[grants.wal]
path = "{{root}}/wal"
access = "write"
disposable = {disposable}

[[steps]]
id = "clean"
uses = "std:archive-cleanup"
grants = ["wal"]
with = {{ path = "wal", oldest_kept = "{}" }}
"#,
                segment(300)
            ),
        );
        // Held when the first 256 removals are handed over, before the
        // host checks them: the step has stat'ed segment 0 (old, 4 B).
        let mut held = Held::start(
            &f,
            &["--now", &NOW.to_string(), "run", rb.to_str().unwrap()],
            "emit:0:0",
        );
        held.wait();
        let first = format!("wal/{}", segment(0));
        std::fs::write(f.path(&first), "a new, longer body\n").unwrap();
        let (code, text) = held.release();
        assert_eq!(code, Some(0), "disposable={disposable}: {text}");
        assert_eq!(
            read_text(&f, &first),
            "a new, longer body\n",
            "disposable={disposable}: the rewritten segment stays: {text}"
        );
        let line = format!(
            "step `clean`: left {first} in place: it changed since the plan (4 B then, 19 B now, modified since)"
        );
        assert!(
            text.contains(&line),
            "disposable={disposable}: {line}\n{text}"
        );
        // The other 299 before the cut went; the 10 from it on stay.
        let left = std::fs::read_dir(f.path("wal")).unwrap().count();
        assert_eq!(left, 1 + 10, "disposable={disposable}\n{text}");
    }
}
