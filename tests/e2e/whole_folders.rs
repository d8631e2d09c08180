//! A cull removes a folder whose every file goes in one action (issue 20:
//! one rename into the trash, not one per file, which on a rehearsal's
//! overlay is a copy-up and a whiteout each). The promise stays the
//! per-file one: a folder goes only as the walk saw its tree, and comes
//! back byte for byte.

use std::os::unix::fs::PermissionsExt as _;

use crate::common::*;
use crate::nothing_lost::{CULL, NOW, fix_dir_times, held_cull, put};

/// `gone/` (old files only, a service user's 640 file, a name that is not
/// UTF-8, a symlink, a nested folder) and `kept/` (one old, one young).
fn cache(f: &Fixture) {
    put(f, b"cache/gone/a/x", "service data\n", 1000);
    put(f, b"cache/gone/a/y\xff", "odd name\n", 1000);
    put(f, b"cache/gone/b/z", "deeper\n", 1000);
    let x = f.path("cache/gone/a/x");
    std::fs::set_permissions(&x, std::fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(&x, Some(65534), Some(65534)).unwrap();
    std::os::unix::fs::symlink("a/x", f.path("cache/gone/link")).unwrap();
    let touched = std::process::Command::new("touch")
        .args(["-h", "-d", "@1000"])
        .arg(f.path("cache/gone/link"))
        .status()
        .unwrap();
    assert!(touched.success());
    put(f, b"cache/kept/old", "old\n", 1000);
    put(f, b"cache/kept/young", "young\n", NOW - 60);
    std::fs::create_dir_all(f.path("check")).unwrap();
    fix_dir_times(f, "cache");
}

fn runbook(f: &Fixture, disposable: bool, verify: &str) -> String {
    f.runbook(
        "cull.toml",
        &CULL
            .replace("{disposable}", if disposable { "true" } else { "false" })
            .replace("{verify}", verify),
    )
    .to_str()
    .unwrap()
    .to_string()
}

#[test]
fn a_folder_whose_every_file_goes_is_one_action_moved_whole_and_put_back_byte_identical() {
    let now = NOW.to_string();
    let f = Fixture::new();
    cache(&f);
    let before = tree(&f.path("cache"), true);
    let rb = runbook(&f, false, "pass");
    let plan = f.mend(&["--now", &now, "plan", &rb]);
    assert_eq!(plan.code, 0, "{}", plan.text());
    assert!(
        plan.stdout.contains("all 4 files in it older than 7 days")
            && plan.stdout.contains("remove     cache/gone ")
            && plan.stdout.contains("remove     cache/kept/old "),
        "{}",
        plan.stdout
    );
    let ran = f.mend(&["--now", &now, "run", "--hold", &rb]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    let id = history_id(&f);
    // Two actions: the folder, and kept/old.
    assert_eq!(crate::bulk::states(&f, &id), ["done", "done"]);
    assert!(!f.path("cache/gone").exists());
    assert!(f.path("cache/kept/young").exists() && !f.path("cache/kept/old").exists());
    // The folder is one trash entry, with its tree inside.
    let trash = f.path("cache/.mend-trash").join(&id);
    let dirs: Vec<_> = std::fs::read_dir(&trash)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    assert!(dirs[0].join("b/z").is_file() && dirs[0].join("link").is_symlink());
    let back = f.mend(&["rollback", &id]);
    assert_eq!(back.code, 0, "{}", back.text());
    assert_same(&before, &tree(&f.path("cache"), true), "after the rollback");

    // A failed run puts it back too, and so does a rehearsal.
    let f = Fixture::new();
    cache(&f);
    let before = tree(&f.path("cache"), true);
    let rb = runbook(&f, false, "fail");
    let ran = f.mend(&["--now", &now, "run", &rb]);
    assert_eq!(ran.code, 1, "{}", ran.text());
    assert_same(
        &before,
        &tree(&f.path("cache"), true),
        "after the failed run",
    );
    let rb = runbook(&f, false, "pass");
    let rehearsed = f.mend(&["--now", &now, "rehearse", &rb]);
    assert_eq!(rehearsed.code, 0, "{}", rehearsed.text());
    assert!(
        rehearsed.text().contains("rehearsal passed"),
        "{}",
        rehearsed.text()
    );
    assert_same(
        &before,
        &tree(&f.path("cache"), true),
        "after the rehearsal",
    );

    // Disposable: gone for good, the young file stays.
    let f = Fixture::new();
    cache(&f);
    let ran = f.mend(&["--now", &now, "run", &runbook(&f, true, "pass")]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    assert!(!f.path("cache/gone").exists() && !f.path("cache/kept/old").exists());
    assert_eq!(read_text(&f, "cache/kept/young"), "young\n");
}

#[test]
fn a_folder_changed_after_the_walk_is_left_whole_in_place() {
    for disposable in [true, false] {
        let f = Fixture::new();
        for i in 1..=3 {
            put(&f, format!("cache/0grew/f{i}").as_bytes(), "old\n", 1000);
            put(&f, format!("cache/0same/g{i}").as_bytes(), "old\n", 1000);
        }
        put(&f, b"cache/0untouched/h", "old\n", 1000);
        // Walked next: a folder of young files, three of the walk's
        // batches (of 4,096) that hand the step nothing to remove, then
        // old files enough for the step to hand its first removals over
        // (2,048) before its plan returns.
        for i in 0..12_500 {
            put(
                &f,
                format!("cache/1young/y{i:05}").as_bytes(),
                "y",
                NOW - 60,
            );
        }
        for i in 0..2_100 {
            put(&f, format!("cache/f{i:05}").as_bytes(), "old\n", 1000);
        }
        // Held when the step hands its first removals over, before the
        // host checks them: the walk read the folders' trees long ago.
        let mut held = held_cull(&f, disposable, "emit:0:0");
        held.wait();
        // The service caches a new file in one folder, and rewrites a
        // file of another to the same size (only its time says so).
        std::fs::write(f.path("cache/0grew/arrived"), "just cached\n").unwrap();
        std::fs::write(f.path("cache/0same/g2"), "new\n").unwrap();
        let (code, text) = held.release();
        assert_eq!(code, Some(0), "disposable={disposable}: {text}");
        for (path, why) in [
            (
                "cache/0grew",
                "it holds 4 files of 24 B now, where the plan saw 3 files of 12 B",
            ),
            (
                "cache/0same",
                "a file in it was rewritten or replaced since the plan (3 files of 12 B then and now)",
            ),
        ] {
            let line = format!("step `cull`: left {path} in place: {why}");
            assert!(
                text.contains(&line),
                "disposable={disposable}: no `{line}` in:\n{text}"
            );
        }
        for kept in [
            "0grew/f1",
            "0grew/f2",
            "0grew/f3",
            "0grew/arrived",
            "0same/g1",
            "0same/g3",
        ] {
            assert!(
                f.path(&format!("cache/{kept}")).is_file(),
                "disposable={disposable}: {kept} was removed: {text}"
            );
        }
        assert_eq!(read_text(&f, "cache/0same/g2"), "new\n");
        assert!(!f.path("cache/0untouched").exists(), "{text}");
        assert!(!f.path("cache/f02099").exists(), "{text}");
    }
}

#[test]
fn a_file_put_in_a_folder_while_it_is_removed_whole_is_never_removed() {
    for disposable in [true, false] {
        let f = Fixture::new();
        for i in 1..=3 {
            put(&f, format!("cache/d/f{i}").as_bytes(), "old\n", 1000);
        }
        // Held after the folder was found as the plan saw it, before it
        // is moved or its entries removed: the narrowest window there is.
        let mut held = held_cull(&f, disposable, "whole:0:0");
        held.wait();
        std::fs::write(f.path("cache/d/arrived"), "just cached\n").unwrap();
        let (code, text) = held.release();
        assert_eq!(read_text(&f, "cache/d/arrived"), "just cached\n");
        if disposable {
            // Its planned files go (the operator said they may); the
            // folder stays with what is new, said, and the run goes on.
            assert_eq!(code, Some(0), "{text}");
            let why = "left cache/d in place: something was put in it while its planned files were removed; the folder and what is new in it stay";
            assert!(text.contains(why), "no `{why}` in:\n{text}");
            let left: Vec<_> = std::fs::read_dir(f.path("cache/d"))
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(left, ["arrived"], "{text}");
        } else {
            // Moved, read again in the trash, put back: refused.
            assert_ne!(code, Some(0), "{text}");
            let why =
                "left cache/d in place: something in it changed between the check and the removal";
            assert!(text.contains(why), "no `{why}` in:\n{text}");
            for i in 1..=3 {
                assert_eq!(read_text(&f, &format!("cache/d/f{i}")), "old\n", "{text}");
            }
            // Nothing of it is left in the trash to be purged.
            let id = history_id(&f);
            let trash = f.path("cache/.mend-trash").join(&id);
            let left = std::fs::read_dir(&trash).map_or(0, |d| d.count());
            assert_eq!(left, 0, "{text}");
        }
    }
}

/// Every entry below `dir` that is an overlay whiteout (a character
/// device 0/0), as a path relative to it.
fn whiteouts(dir: &std::path::Path) -> Vec<String> {
    use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let md = std::fs::symlink_metadata(&p).unwrap();
            if md.is_dir() {
                stack.push(p);
            } else if md.file_type().is_char_device() && md.rdev() == 0 {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// A rehearsal on overlays removes a disposable folder whole by one
/// rename out of sight (overlayfs: one whiteout and a redirect), not a
/// whiteout per file, and still proves the rollback on everything else.
/// Held after the run and its rollback, its upper layer (in the --scratch
/// area, where the test can read it) shows which it did.
#[test]
fn a_rehearsal_moves_a_disposable_folder_out_of_sight_in_one_rename() {
    let now = NOW.to_string();
    let f = Fixture::new();
    cache(&f);
    let before = tree(&f.path("cache"), true);
    let scratch = f.path("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let rb = runbook(&f, true, "pass");
    let mut held = Held::start(
        &f,
        &[
            "--now",
            &now,
            "rehearse",
            "--scratch",
            scratch.to_str().unwrap(),
            &rb,
        ],
        "ended:0:0",
    );
    held.wait();
    let area = std::fs::read_dir(&scratch)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .expect("the rehearsal's scratch area");
    let upper = area.join("layers/cache/upper");
    // The folder and the single old file: one whiteout each, none for
    // the four files and two folders below `gone`.
    assert_eq!(whiteouts(&upper), ["gone", "kept/old"]);
    let graveyard = upper.join(".mend-trash/rehearsal-removed");
    let runs: Vec<_> = std::fs::read_dir(&graveyard)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let moved: Vec<_> = std::fs::read_dir(&runs[0])
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(moved.len(), 1, "{moved:?}");
    let redirect = rustix::fs::getxattr(&moved[0], "trusted.overlay.redirect", &mut [0u8; 256])
        .expect("the moved folder is a redirect to the lower one");
    assert!(redirect > 0);
    let (code, text) = held.release();
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("rehearsal passed"), "{text}");
    assert_same(
        &before,
        &tree(&f.path("cache"), true),
        "after the rehearsal",
    );
    assert!(
        std::fs::read_dir(&scratch).unwrap().next().is_none(),
        "the scratch area is left behind"
    );
}
