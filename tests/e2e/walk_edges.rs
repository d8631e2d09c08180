//! The walk at its edges: a directory read in many `getdents64` buffers and
//! several chunks, with names of every length and byte; and a live cache,
//! where a name listed a moment ago is gone when the walk looks at it.

use std::collections::BTreeSet;
use std::os::unix::ffi::OsStrExt as _;

use crate::common::*;
use crate::nothing_lost::{CULL, NOW, fix_dir_times, held_cull, put};

/// Names in one directory: more than two of the walk's chunks (4,096), in
/// some 70 buffers of 32 KiB, lengths 6 to 255 bytes so entries end at
/// every offset, with bytes that are not UTF-8, newlines and backslashes.
const MANY: u32 = 9_000;

fn name(i: u32) -> Vec<u8> {
    let mut n = format!("{i:05}").into_bytes();
    let fill: &[u8] = b"ab\xff\ncd\\e\xc3\xa9f\xed\xa0\x80";
    let len = 6 + (i as usize * 37) % 250;
    while n.len() < len {
        n.push(fill[n.len() % fill.len()]);
    }
    n
}

fn young(i: u32) -> bool {
    i.is_multiple_of(3)
}

fn names_in(dir: &std::path::Path) -> BTreeSet<Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().as_bytes().to_vec())
        .collect()
}

#[test]
fn a_walk_reads_every_name_of_a_directory_of_many_buffers() {
    for disposable in ["true", "false"] {
        let f = Fixture::new();
        for i in 0..MANY {
            let mut rel = b"cache/big/".to_vec();
            rel.extend(name(i));
            let mtime = if young(i) { NOW - 60 } else { 1000 };
            put(&f, &rel, &i.to_string(), mtime);
        }
        std::fs::create_dir_all(f.path("check")).unwrap();
        fix_dir_times(&f, "cache");
        let rb = f.runbook(
            "cull.toml",
            &CULL
                .replace("{disposable}", disposable)
                .replace("{verify}", "pass"),
        );
        let now = NOW.to_string();
        let plan = f.mend(&["--now", &now, "plan", rb.to_str().unwrap()]);
        assert_eq!(plan.code, 0, "{}", plan.text());
        let old = (0..MANY).filter(|i| !young(*i)).count();
        assert!(
            plan.stdout
                .contains(&format!("{} files", human_count(old as u64))),
            "the plan does not count {old} old files:\n{}",
            plan.stdout
        );
        let ran = f.mend(&["--now", &now, "run", rb.to_str().unwrap()]);
        assert_eq!(ran.code, 0, "disposable={disposable}: {}", ran.text());
        // Exactly the young names are left: none hidden from the walk (an
        // old one would stay), none lost.
        let want: BTreeSet<Vec<u8>> = (0..MANY).filter(|i| young(*i)).map(name).collect();
        let left = names_in(&f.path("cache/big"));
        let lost: Vec<_> = want.difference(&left).take(3).collect();
        let kept: Vec<_> = left.difference(&want).take(3).collect();
        assert!(
            lost.is_empty() && kept.is_empty(),
            "disposable={disposable}: lost {lost:?}, kept {kept:?} (of {} left)",
            left.len()
        );
    }
}

/// `1,234` as mend prints counts.
fn human_count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[test]
fn a_name_removed_under_the_walk_is_not_an_error() {
    let f = Fixture::new();
    for i in 0..40u32 {
        let mtime = if i % 2 == 0 { NOW - 60 } else { 1000 };
        put(&f, format!("cache/d1/f{i:02}.jpg").as_bytes(), "x", mtime);
        put(&f, format!("cache/d2/f{i:02}.jpg").as_bytes(), "x", mtime);
    }
    // Chunk 0 lists `cache` (d1, d2); chunk 1 lists `cache/d1`, and holds
    // there before it looks at any of its names, and before d2 is opened.
    let mut held = held_cull(&f, false, "walk:0:1");
    held.wait();
    // The service removes one old file and one young one, after the walk
    // listed them, and a whole directory the walk listed but did not open.
    std::fs::remove_file(f.path("cache/d1/f07.jpg")).unwrap();
    std::fs::remove_file(f.path("cache/d1/f08.jpg")).unwrap();
    std::fs::remove_dir_all(f.path("cache/d2")).unwrap();
    let (code, text) = held.release();
    assert_eq!(code, Some(0), "{text}");
    let left: BTreeSet<String> = names_in(&f.path("cache/d1"))
        .into_iter()
        .map(|n| String::from_utf8(n).unwrap())
        .collect();
    let want: BTreeSet<String> = (0..40u32)
        .filter(|i| i % 2 == 0 && *i != 8)
        .map(|i| format!("f{i:02}.jpg"))
        .collect();
    assert_eq!(left, want, "{text}");
    assert!(!f.path("cache/d2").exists(), "{text}");
    assert!(
        text.contains("19 files"),
        "the plan counts 19 old files:\n{text}"
    );
}
