//! A grant with a volume mounted inside it (issue 20): the rehearsal mounts
//! an overlay on the grant and another on the volume's mount point, each
//! with its own upper layer, instead of falling back to copies; the proof
//! reads both uppers. The volume's top holds the run's trash for what is
//! removed from it, and a rollback, rehearsed or real, puts that
//! directory's times back. Mounts are made in `unshare --mount` shells.

use crate::common::*;

/// A cull of `{root}/t/media`, where `vol` is a tmpfs of its own; empty
/// directories stay (a mount point cannot be removed, by a run or not).
fn setup(f: &Fixture) {
    setup_removing_empty_dirs(f, false);
}

fn setup_removing_empty_dirs(f: &Fixture, remove_empty_dirs: bool) {
    let text = r#"[runbook]
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
"#;
    let text = text.replace(
        "remove_empty_dirs = false",
        &format!("remove_empty_dirs = {remove_empty_dirs}"),
    );
    f.runbook("cull.toml", &text);
    std::fs::create_dir_all(f.path("t")).unwrap();
}

/// A cull that removes empty directories empties a volume: the volume's
/// mount point stays (removing it would fail with EBUSY and roll the whole
/// run back), and the plan says so; the rest of what was left empty goes.
#[test]
fn a_cull_that_empties_a_volume_keeps_its_mount_point() {
    let f = Fixture::new();
    setup_removing_empty_dirs(&f, true);
    let out = in_namespace(
        &f,
        &format!(
            r#"{TREE}
set +e
$MEND run "$ROOT/cull.toml" > "$ROOT/out" 2>&1
echo $? > "$ROOT/code"
find "$M" -printf '%p %y\n' | sort > "$ROOT/after"
mountpoint -q "$M/vol" && echo mounted > "$ROOT/mounted"
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
        text.contains("1 mount point kept, though left empty"),
        "{text}"
    );
    assert_eq!(read_text(&f, "mounted").trim(), "mounted", "{text}");
    let root = f.path("t/media");
    let after: Vec<String> = read_text(&f, "after")
        .lines()
        .map(|l| l.replace(root.to_str().unwrap(), "M"))
        .collect();
    assert_eq!(after, ["M d", "M/keep f", "M/vol d"], "{text}");
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
    assert_eq!(
        read_text(&f, "overlays").trim(),
        "0",
        "an overlay stays mounted"
    );
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
