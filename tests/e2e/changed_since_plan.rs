//! A removal happens only to what the plan showed. Between the plan and
//! the removal a live service may rewrite a cached file, put a directory
//! where a file was, or add a file to a folder the plan empties: each is
//! left in place and said, and the rest of the cull goes on. (Before, the
//! rewritten file was removed, and the new directory with everything in it.)
//! A folder whose every file goes is removed whole, and left whole if
//! anything in it changed (tests/e2e/whole_folders.rs).

use crate::common::*;
use crate::nothing_lost::{NOW, held_cull, put};

#[test]
fn a_removal_leaves_what_changed_since_the_plan_in_place() {
    for disposable in ["true", "false"] {
        let f = Fixture::new();
        for i in 1..=6 {
            put(&f, format!("cache/d1/f{i}").as_bytes(), "old\n", 1000);
        }
        // d1 keeps a young file: its old ones go one by one.
        put(&f, b"cache/d1/young", "young\n", NOW - 60);
        for i in 1..=3 {
            put(&f, format!("cache/d2/g{i}").as_bytes(), "old\n", 1000);
        }
        let mut held = held_cull(&f, disposable == "true", "intent:0:0");
        // Planned: d1's six files, and d2 whole. Now the service:
        held.wait();
        // rewrites one file (same size: only its time says so),
        std::fs::write(f.path("cache/d1/f2"), "new\n").unwrap();
        // grows another,
        std::fs::write(f.path("cache/d1/f3"), "a new, longer body\n").unwrap();
        // puts a directory with a file where a file was,
        std::fs::remove_file(f.path("cache/d1/f4")).unwrap();
        std::fs::create_dir(f.path("cache/d1/f4")).unwrap();
        std::fs::write(f.path("cache/d1/f4/inside"), "keep me\n").unwrap();
        // removes one itself,
        std::fs::remove_file(f.path("cache/d1/f5")).unwrap();
        // and adds a file to the folder the plan removes whole.
        std::fs::write(f.path("cache/d2/arrived"), "just cached\n").unwrap();
        let (code, text) = held.release();
        assert_eq!(code, Some(0), "disposable={disposable}: {text}");
        let mut left: Vec<String> = tree(&f.path("cache"), false)
            .into_keys()
            .filter(|k| !k.starts_with("./.mend-trash"))
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                ".",
                "./d1",
                "./d1/f2",
                "./d1/f3",
                "./d1/f4",
                "./d1/f4/inside",
                "./d1/young",
                "./d2",
                "./d2/arrived",
                "./d2/g1",
                "./d2/g2",
                "./d2/g3"
            ],
            "disposable={disposable}: only what changed since the plan stays: {text}"
        );
        assert_eq!(read_text(&f, "cache/d1/f2"), "new\n");
        assert_eq!(read_text(&f, "cache/d1/f4/inside"), "keep me\n");
        assert_eq!(read_text(&f, "cache/d2/arrived"), "just cached\n");
        for (path, why) in [
            (
                "cache/d1/f2",
                "it changed since the plan (4 B then, 4 B now, modified since)",
            ),
            (
                "cache/d1/f3",
                "it changed since the plan (4 B then, 19 B now, modified since)",
            ),
            (
                "cache/d1/f4",
                "it is a directory now, not the file the plan showed",
            ),
            (
                "cache/d2",
                "it holds 4 files of 24 B now, where the plan saw 3 files of 12 B",
            ),
        ] {
            let line = format!("step `cull`: left {path} in place: {why}");
            assert!(
                text.contains(&line),
                "disposable={disposable}: no `{line}` in:\n{text}"
            );
        }
        // The journal keeps them, as warnings of the step.
        let id = history_id(&f);
        let show: serde_json::Value =
            serde_json::from_str(&f.mend(&["--json", "show", &id]).stdout).unwrap();
        let warned = show["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| {
                e["level"] == "warn" && e["message"].as_str().unwrap().contains(" in place: ")
            })
            .count();
        assert_eq!(warned, 4, "disposable={disposable}: {show}");
    }
}
