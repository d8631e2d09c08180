//! Removals journaled in batches (one journal record per batch of up to
//! 2,048): a cull of 3,000 files is five batches in `mend run` (the step
//! hands over 256, 256, 512 and 1,024 while it plans, each removed as it
//! comes, then the 952 left). Killed inside the last batch, a resume ends as an uninterrupted run, each removal recorded done
//! once; a trash run killed there rolls back to the very bytes and times it
//! started from; `mend show` still lists every path.

use std::time::{Duration, SystemTime};

use crate::common::*;

pub(crate) const FILES: u32 = 3_000;

/// 3,000 files two hours old in 10 directories, and 10 young ones.
pub(crate) fn cache(f: &Fixture) {
    cache_of(f, FILES);
}

/// `n` files two hours old in 10 directories, and 10 young ones.
pub(crate) fn cache_of(f: &Fixture, n: u32) {
    cache_shaped(f, n, |i| format!("cache/d{}/f{i:05}", i % 10), "cache/d");
}

/// `n` files two hours old, file `i` at `old_at(i)`, and a young file in
/// each of the 10 folders `{young_in}0` to `{young_in}9`.
pub(crate) fn cache_shaped(f: &Fixture, n: u32, old_at: impl Fn(u32) -> String, young_in: &str) {
    let old = SystemTime::now() - Duration::from_secs(7_200);
    for i in 0..n {
        let p = f.write(&old_at(i), &format!("old {i}\n"));
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    for i in 0..10 {
        f.write(&format!("{young_in}{i}/young"), "young\n");
    }
}

pub(crate) fn cull(f: &Fixture, disposable: bool) -> std::path::PathBuf {
    f.runbook(
        "cull.toml",
        &format!(
            r#"[runbook]
name = "cull"
version = "1.0.0"
summary = "cull a big cache"

[grants.cache]
path = "{{root}}/cache"
access = "write"
disposable = {disposable}

[[steps]]
id = "cull"
uses = "std:cache-cull"
grants = ["cache"]
with = {{ path = "cache", minutes = 60, remove_empty_dirs = false }}
"#
        ),
    )
}

pub(crate) fn states(f: &Fixture, id: &str) -> Vec<String> {
    let show: serde_json::Value =
        serde_json::from_str(&f.mend(&["--json", "show", id]).stdout).unwrap();
    show["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["state"].as_str().unwrap().to_string())
        .collect()
}

/// The batches are one journal row each: the run's 3,000 removals are not
/// 3,000 rows of `actions`.
pub(crate) fn rows(f: &Fixture, table: &str) -> i64 {
    let db = rusqlite::Connection::open(f.state().join("journal.db")).unwrap();
    db.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

#[test]
fn a_cull_killed_inside_its_last_batch_resumes_exactly() {
    let want = {
        let f = Fixture::new();
        cache(&f);
        let ran = f.mend(&["run", cull(&f, true).to_str().unwrap()]);
        assert_eq!(ran.code, 0, "{}", ran.text());
        assert_eq!(rows(&f, "bulk"), 5, "3,000 removals in 5 batch records");
        assert_eq!(rows(&f, "actions"), 0);
        tree(&f.path("cache"), false)
    };
    each_kill_resumes_to(
        &want,
        FILES,
        &["intent:0:2048", "perform:0:2500", "perform:0:2999"],
    );
}

/// A disposable cull of `files` old files, SIGKILLed at each of `points`
/// and resumed, ends as `want` (an uninterrupted run's tree), every removal
/// listed and done once.
pub(crate) fn each_kill_resumes_to(
    want: &std::collections::BTreeMap<String, String>,
    files: u32,
    points: &[&str],
) {
    assert_eq!(want.len(), 1 + 10 + 10, "the dirs and the young files stay");
    for &point in points {
        let f = Fixture::new();
        cache_of(&f, files);
        let rb = cull(&f, true);
        let ran = f.mend_env(&["run", rb.to_str().unwrap()], &[("MEND_CRASH_AT", point)]);
        assert_eq!(ran.code, -1, "{point}: expected a SIGKILL: {}", ran.text());
        let id = history_id(&f);
        let resumed = f.mend(&["resume", &id]);
        assert_eq!(resumed.code, 0, "{point}: {}", resumed.text());
        assert_same(want, &tree(&f.path("cache"), false), point);
        // Every removal listed, each done once, none left intended.
        assert_eq!(states(&f, &id), vec!["done"; files as usize], "{point}");
    }
}

#[test]
fn a_trash_cull_killed_inside_a_batch_rolls_back_byte_identical() {
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
    let back = f.mend(&["rollback", &id]);
    assert_eq!(back.code, 0, "{}", back.text());
    assert_same(&before, &tree(&f.path("cache"), true), "after the rollback");
    let undone = states(&f, &id);
    assert_eq!(undone.len(), FILES as usize);
    // The first batch and the second up to the kill were undone; the rest
    // were never performed.
    assert!(
        undone[..=2500].iter().all(|s| s == "undone"),
        "{:?}",
        &undone[..5]
    );
}

#[test]
fn show_lists_every_path_of_a_batch() {
    let f = Fixture::new();
    cache(&f);
    let ran = f.mend(&["run", cull(&f, false).to_str().unwrap()]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    let id = history_id(&f);
    let show: serde_json::Value =
        serde_json::from_str(&f.mend(&["--json", "show", &id]).stdout).unwrap();
    let paths: std::collections::BTreeSet<String> = show["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let act: serde_json::Value =
                serde_json::from_str(a["action_json"].as_str().unwrap()).unwrap();
            act["path"].as_str().unwrap().to_string()
        })
        .collect();
    let want: std::collections::BTreeSet<String> = (0..FILES)
        .map(|i| format!("cache/d{}/f{i:05}", i % 10))
        .collect();
    assert_eq!(paths, want);
}
