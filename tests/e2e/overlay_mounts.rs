//! A grant with a volume mounted inside it (issue 20): the rehearsal mounts
//! an overlay on the grant and another on the volume's mount point, each
//! with its own upper layer, instead of falling back to copies; the proof
//! reads both uppers. The volume's top holds the run's trash for what is
//! removed from it, and a rollback, rehearsed or real, puts that
//! directory's times back. Mounts are made in `unshare --mount` shells.

use std::process::Command;

use crate::common::*;

/// A cull of `{root}/t/media`, where `vol` is a tmpfs of its own; empty
/// directories stay (a mount point cannot be removed, by a run or not).
fn setup(f: &Fixture) {
    f.runbook(
        "cull.toml",
        r#"[runbook]
name = "cull"
version = "1.0.0"
summary = "cull old media"

[grants.media]
path = "{root}/t/media"
access = "write"

[[steps]]
id = "cull"
uses = "std:cache-cull"
grants = ["media"]
with = { path = "media", days = 30, remove_empty_dirs = false }
"#,
    );
    std::fs::create_dir_all(f.path("t")).unwrap();
}

const TREE: &str = r#"
mount -t tmpfs tmpfs "$ROOT/t"
M="$ROOT/t/media"
mkdir -p "$M/d" "$M/vol"
for i in 1 2 3; do echo "f$i" > "$M/d/f$i"; done
mount -t tmpfs -o mode=750 tmpfs "$M/vol"
mkdir "$M/vol/v"
for i in 1 2; do echo "v$i" > "$M/vol/v/g$i"; done
echo top > "$M/vol/top"; chown www-data "$M/vol/top"; chmod 640 "$M/vol/top"
touch -d '40 days ago' "$M/d"/* "$M/vol/v"/* "$M/vol/top" "$M/vol"
echo young > "$M/keep"
find "$M" -printf '%p %s %m %u %T@ %y\n' | sort > "$ROOT/before"
"#;

#[test]
fn a_grant_with_a_volume_inside_rehearses_on_an_overlay_per_mount() {
    let f = Fixture::new();
    setup(&f);
    let out = in_namespace(
        &f,
        &format!(
            r#"{TREE}
set +e
$MEND rehearse "$ROOT/cull.toml" > "$ROOT/out" 2>&1
echo $? > "$ROOT/code"
find "$M" -printf '%p %s %m %u %T@ %y\n' | sort > "$ROOT/after"
grep -c ' - overlay ' /proc/self/mountinfo > "$ROOT/overlays" || true
"#
        ),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = read_text(&f, "out");
    assert_eq!(read_text(&f, "code").trim(), "0", "{text}");
    assert!(
        text.lines()
            .next()
            .is_some_and(|l| l.contains("on overlays (real directories read-only")),
        "{text}"
    );
    assert!(
        text.contains("vol: 3 files"),
        "the volume's files are culled: {text}"
    );
    assert!(text.contains("rehearsal passed"), "{text}");
    assert_eq!(
        read_text(&f, "before"),
        read_text(&f, "after"),
        "the real tree changed"
    );
    assert!(read_text(&f, "before").contains("/vol/top 4 640 www-data"));
    assert_eq!(read_text(&f, "overlays").trim(), "0", "an overlay stays mounted");
}

#[test]
fn a_rollback_puts_back_the_times_of_a_volume_top_that_held_its_trash() {
    let f = Fixture::new();
    setup(&f);
    let out = in_namespace(
        &f,
        &format!(
            r#"{TREE}
set +e
$MEND run --hold "$ROOT/cull.toml" > "$ROOT/run.out" 2>&1
$MEND rollback "$(ls "$ROOT/t/media/vol/.mend-trash")" > "$ROOT/out" 2>&1
echo $? > "$ROOT/code"
find "$M" -printf '%p %s %m %u %T@ %y\n' | sort > "$ROOT/after"
"#
        ),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = read_text(&f, "out");
    assert_eq!(
        read_text(&f, "code").trim(),
        "0",
        "{}{text}",
        read_text(&f, "run.out")
    );
    assert_same_lines(&read_text(&f, "before"), &read_text(&f, "after"));
}

fn assert_same_lines(before: &str, after: &str) {
    let b: Vec<&str> = before.lines().collect();
    let a: Vec<&str> = after.lines().collect();
    let differ: Vec<(&&str, &&str)> = b.iter().zip(&a).filter(|(x, y)| x != y).collect();
    assert!(
        differ.is_empty() && a.len() == b.len(),
        "after the rollback: {differ:?}"
    );
}
