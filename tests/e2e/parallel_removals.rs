//! The removals of a journal batch, as `crates/mend/src/run/parallel.rs`
//! orders them on threads (forced here with `MEND_REMOVAL_THREADS=2`: trash
//! moves otherwise go one at a time, and unlinks go on threads only on
//! cores the step's planning does not hold): a trash cull that also removes the
//! folders it empties, nested ones too, in batches of 2,048. Each folder
//! goes only after what was in it (otherwise its removal would take the
//! files along, recorded as something else), every removal is journaled
//! done once, and the rollback puts back the very bytes and times.

use crate::bulk::states;
use crate::common::*;

/// 3,000 old files: half in 10 folders that keep a young file, half in
/// `zgone/sub`, which the cull empties. Walked last, `zgone/sub`'s files
/// share the second batch with the two folder removals, as two groups
/// that two threads would start at once.
fn cache(f: &Fixture) {
    let old_at = |i: u32| match i % 2 {
        0 => format!("cache/kept{}/f{i:05}", i / 2 % 10),
        _ => format!("cache/zgone/sub/f{i:05}"),
    };
    crate::bulk::cache_shaped(f, 3_000, old_at, "cache/kept");
}

#[test]
fn a_parallel_trash_cull_removes_folders_after_their_files_and_rolls_back_byte_identical() {
    let f = Fixture::new();
    cache(&f);
    let before = tree(&f.path("cache"), true);
    let rb = f.runbook(
        "cull.toml",
        r#"[runbook]
name = "cull"
version = "1.0.0"
summary = "cull a big cache and its emptied folders"

[grants.cache]
path = "{root}/cache"
access = "write"

[[steps]]
id = "cull"
uses = "std:cache-cull"
grants = ["cache"]
# A size budget of the young files' 60 B: every old file goes, chosen
# after the walk, so the emptied folders go as empty folders after their
# files (an age cut would remove `zgone` whole, in one action).
with = { path = "cache", max_bytes = 60, remove_empty_dirs = true }
"#,
    );
    // Held: verified, its trash kept for the rollback below.
    // Two threads on any machine (trash moves are otherwise one at a
    // time).
    let ran = f.mend_env(
        &["run", "--hold", rb.to_str().unwrap()],
        &[("MEND_REMOVAL_THREADS", "2")],
    );
    assert_eq!(ran.code, 0, "{}", ran.text());
    let id = history_id(&f);
    // 3,000 files, then `zgone/sub` and `zgone`: each done once.
    let states = states(&f, &id);
    assert_eq!(states.len(), 3_002);
    let not_done: Vec<_> = states
        .iter()
        .enumerate()
        .filter(|(_, s)| *s != "done")
        .collect();
    assert!(
        not_done.is_empty(),
        "{:?}",
        &not_done[..not_done.len().min(5)]
    );
    let left = tree(&f.path("cache"), false);
    let mut got: Vec<&str> = left
        .keys()
        .map(String::as_str)
        .filter(|k| !k.starts_with("./.mend-trash"))
        .collect();
    got.sort();
    let mut want = vec![".".to_string()];
    want.extend((0..10).flat_map(|i| [format!("./kept{i}"), format!("./kept{i}/young")]));
    want.sort();
    assert_eq!(got, want, "only the young files and their folders stay");
    // Each folder went as an empty folder: every file is a trash entry of
    // its own (3,000 of them), none went inside a folder's entry (a folder
    // moved while its files were still being moved out by another thread).
    let trash = f.path("cache/.mend-trash").join(&id);
    let entries: Vec<std::path::PathBuf> = std::fs::read_dir(&trash)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 3_002);
    let files = entries.iter().filter(|p| p.is_file()).count();
    assert_eq!(files, 3_000);
    for d in entries.iter().filter(|p| p.is_dir()) {
        assert_eq!(std::fs::read_dir(d).unwrap().count(), 0, "{}", d.display());
    }
    let back = f.mend(&["--json", "rollback", &id]);
    assert_eq!(back.code, 0, "{}", back.text());
    let out: serde_json::Value = serde_json::from_str(&back.stdout).unwrap();
    assert_eq!(out["rollback"]["undone"], 3_002, "{out}");
    assert_same(&before, &tree(&f.path("cache"), true), "after the rollback");
}
