//! Rehearsals on reflinked copies (issue 20): where overlays cannot be had,
//! `--on auto` takes copies whose files share the grant's extents
//! (`FICLONE`, on btrfs and XFS) before full copies, and the first line says
//! which and why. A loop-mounted XFS image holds the grant; tmpfs, which
//! cannot share extents, falls back to full copies and says so. Every mount
//! is made in an `unshare --mount` shell: the machine sees none of them.

use crate::common::*;

/// A cull of everything older than 30 days in `{root}/{dir}`; `extra`
/// adds grants.
fn cull(f: &Fixture, dir: &str, extra: &str) {
    f.runbook(
        "cull.toml",
        &format!(
            r#"[runbook]
name = "cull"
version = "1.0.0"
summary = "cull old media"

[grants.media]
path = "{{root}}/{dir}"
access = "write"
{extra}

[[steps]]
id = "cull"
uses = "std:cache-cull"
grants = ["media"]
with = {{ path = "media", days = 30 }}
"#
        ),
    );
}

/// Files a server's media has: a service user's 640 file, a hard link, a
/// symlink, an extended attribute, a name with a newline; all 40 days old
/// but `keep`.
const MEDIA: &str = r#"
mkdir -p "$M/d"
for i in 1 2 3 4; do head -c 300000 /dev/urandom > "$M/d/f$i"; done
ln "$M/d/f1" "$M/d/hard"
ln -s f2 "$M/d/link"
chown www-data:www-data "$M/d/f3"; chmod 640 "$M/d/f3"
setfattr -n user.origin -v upload "$M/d/f2"
printf 'x\n' > "$M/d/new
line"
touch -h -d '40 days ago' "$M/d"/* "$M/d/new
line"
echo young > "$M/keep"
"#;

#[test]
fn a_rehearsal_on_xfs_runs_on_reflinked_copies_that_share_the_grants_extents() {
    let f = Fixture::new();
    cull(&f, "xfs/media", "");
    std::fs::create_dir_all(f.path("xfs")).unwrap();
    let out = in_namespace(
        &f,
        &format!(
            r#"
truncate -s 320M "$ROOT/xfs.img"
mkfs.xfs -q "$ROOT/xfs.img"
mount -o loop "$ROOT/xfs.img" "$ROOT/xfs"
M="$ROOT/xfs/media"
{MEDIA}
find "$M" -printf '%p %s %m %u %T@ %y\n' | sort > "$ROOT/before"
set +e
# Held at its first removal, once the copies are made: are they clones?
MEND_PAUSE_AT="intent:0:0@$ROOT/gate" $MEND rehearse --on reflink "$ROOT/cull.toml" > "$ROOT/reflink.out" 2>&1 &
pid=$!
until grep -q '^rehearsing' "$ROOT/reflink.out" || ! kill -0 $pid 2>/dev/null; do sleep 0.1; done
filefrag -v "$ROOT"/xfs/.mend-rehearsal-cull-*/media/d/f4 > "$ROOT/frag" 2>&1
touch "$ROOT/gate"
wait $pid; echo $? > "$ROOT/reflink.code"
$MEND --json rehearse --scratch "$ROOT/xfs" "$ROOT/cull.toml" > "$ROOT/auto.json" 2> "$ROOT/auto.err"
echo $? > "$ROOT/auto.code"
find "$M" -printf '%p %s %m %u %T@ %y\n' | sort > "$ROOT/after"
ls -A "$ROOT/xfs" > "$ROOT/left"
"#
        ),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = read_text(&f, "reflink.out");
    assert_eq!(read_text(&f, "reflink.code").trim(), "0", "{text}");
    let first = text.lines().next().unwrap_or("");
    assert!(
        first.starts_with("rehearsing cull on reflinked copies in ")
            && first.contains("/xfs/.mend-rehearsal-cull-"),
        "{text}"
    );
    assert!(text.contains("rehearsal passed"), "{text}");
    // Four files, the hard link, the symlink and the name with a newline.
    assert!(text.contains("d: 7 files, 1.5 MB to remove"), "{text}");
    let frag = read_text(&f, "frag");
    assert!(
        frag.contains("shared"),
        "the copy's extents are not shared:\n{frag}"
    );

    // auto: the overlay is refused by the XFS scratch, reflinks are taken.
    let auto: serde_json::Value =
        serde_json::from_str(&read_text(&f, "auto.json")).unwrap_or_else(|e| {
            panic!(
                "{e}: {}{}",
                read_text(&f, "auto.json"),
                read_text(&f, "auto.err")
            )
        });
    assert_eq!(read_text(&f, "auto.code").trim(), "0", "{auto}");
    assert_eq!(auto["report"]["presentation"]["kind"], "reflink", "{auto}");
    let why = auto["report"]["presentation"]["why"].as_str().unwrap();
    assert!(
        why.starts_with("no overlay: ") && why.contains("is on XFS"),
        "{why}"
    );

    // The real tree never changed, and no scratch area stays.
    assert_eq!(read_text(&f, "before"), read_text(&f, "after"));
    assert!(read_text(&f, "before").contains("640 www-data"));
    assert_eq!(
        read_text(&f, "left").split_whitespace().collect::<Vec<_>>(),
        ["media"]
    );
}

#[test]
fn on_tmpfs_with_no_overlay_a_rehearsal_says_why_it_cannot_reflink_and_copies() {
    let f = Fixture::new();
    // A spool the run would create: not a directory yet, so no overlay.
    cull(
        &f,
        "t/media",
        "\n[grants.spool]\npath = \"{root}/t/spool\"\naccess = \"write\"\n",
    );
    std::fs::create_dir_all(f.path("t")).unwrap();
    let out = in_namespace(
        &f,
        &format!(
            r#"
mount -t tmpfs tmpfs "$ROOT/t"
M="$ROOT/t/media"
{MEDIA}
set +e
$MEND rehearse --on reflink "$ROOT/cull.toml" > "$ROOT/forced.out" 2>&1
echo $? > "$ROOT/forced.code"
$MEND rehearse "$ROOT/cull.toml" > "$ROOT/auto.out" 2>&1
echo $? > "$ROOT/auto.code"
$MEND rehearse --faults --on reflink "$ROOT/cull.toml" > "$ROOT/faults.out" 2>&1
echo $? > "$ROOT/faults.code"
ls -A "$ROOT/t" > "$ROOT/left"
"#
        ),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let forced = read_text(&f, "forced.out");
    assert_eq!(read_text(&f, "forced.code").trim(), "2", "{forced}");
    assert!(
        forced.contains("cannot rehearse on reflinked copies: ")
            && forced.contains("is on tmpfs, which cannot share extents")
            && forced.contains("nothing ran"),
        "{forced}"
    );
    let auto = read_text(&f, "auto.out");
    assert_eq!(read_text(&f, "auto.code").trim(), "0", "{auto}");
    let first = auto.lines().next().unwrap_or("");
    assert!(
        first.contains("on full copies in")
            && first.contains("(no overlay: grant spool (")
            && first.contains("is not a directory yet")
            && first.contains("; no reflink: ")
            && first.contains("is on tmpfs, which cannot share extents"),
        "{auto}"
    );
    assert!(auto.contains("rehearsal passed"), "{auto}");
    // Fault variants are not reflinked: refused, not silently copied.
    let faults = read_text(&f, "faults.out");
    assert_eq!(read_text(&f, "faults.code").trim(), "2", "{faults}");
    assert!(
        faults.contains("does not run on reflinked copies yet"),
        "{faults}"
    );
    // Only the fallback ran; the refused rehearsal journaled nothing.
    let history = f.mend(&["--json", "history"]);
    assert_eq!(
        history.stdout.matches("\"rolled-back\"").count(),
        1,
        "{}",
        history.stdout
    );
    assert_eq!(
        read_text(&f, "left").trim(),
        "media",
        "a scratch area stays"
    );
}
