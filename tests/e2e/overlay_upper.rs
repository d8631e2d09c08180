//! Where a rehearsal's upper layers live (issue 20): on a tmpfs whose
//! inodes the machine shares (/dev/shm), a cull needs about two inodes in
//! the upper layer per file it removes, so a tmpfs that holds the grant
//! itself may not hold its rehearsal. The rehearsal mounts a tmpfs of its
//! own for the upper layers, in its private mount namespace, grows it to
//! each step's plan, and says so in its first line.

use crate::common::*;

#[test]
fn a_tmpfs_grant_without_inodes_for_its_upper_layer_rehearses_on_a_tmpfs_of_its_own() {
    let f = Fixture::new();
    // The grant on a /dev/shm of 400 inodes, 300 of them its files: the
    // upper layer of their cull needs about 600 on the same filesystem.
    f.runbook(
        "cull.toml",
        r#"[runbook]
name = "shm-cull"
version = "1.0.0"
summary = "cull a cache on /dev/shm"

[grants.data]
path = "/dev/shm/data"
access = "write"

[[steps]]
id = "cull"
uses = "std:cache-cull"
grants = ["data"]
with = { path = "data", days = 30 }
"#,
    );
    let out = in_namespace(
        &f,
        r#"
mount -t tmpfs -o size=64m,nr_inodes=400 tmpfs /dev/shm
mkdir -p /dev/shm/data/old
echo "config: yes" > /dev/shm/data/config.yml
for i in $(seq 1 300); do echo "old $i" > "/dev/shm/data/old/f-$i"; done
touch -d '40 days ago' /dev/shm/data/old/*
df --output=iavail /dev/shm | tail -1 > "$ROOT/ifree"
set +e
$MEND rehearse "$ROOT/cull.toml" > "$ROOT/out" 2>&1
echo $? > "$ROOT/code"
ls -A /dev/shm > "$ROOT/left"
ls /dev/shm/data/old | wc -l > "$ROOT/old-left"
{ grep -c mend-rehearsal /proc/self/mountinfo || true; } > "$ROOT/mounted"
"#,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The fixture is what it claims: fewer free inodes than the upper needs.
    let free: u64 = read_text(&f, "ifree").trim().parse().unwrap();
    assert!(free < 300, "{free} inodes free");
    let text = read_text(&f, "out");
    assert_eq!(read_text(&f, "code").trim(), "0", "{text}");
    let first = text.lines().next().unwrap_or("");
    assert!(
        first.starts_with("rehearsing shm-cull on overlays (real directories read-only; changes go to /dev/shm/mend-rehearsal-shm-cull-")
            && first.contains("/layers, a tmpfs of the rehearsal's own in its mount namespace")
            && first.contains("/dev/shm is a tmpfs whose ")
            && first.ends_with(" free inodes the machine shares)"),
        "{text}"
    );
    // `old` goes whole: one action.
    assert!(text.contains("rolled back 1 action"), "{text}");
    assert!(text.contains("rehearsal passed"), "{text}");
    assert_eq!(
        read_text(&f, "old-left").trim(),
        "300",
        "the real tree was culled"
    );
    assert_eq!(
        read_text(&f, "left").trim(),
        "data",
        "the scratch area stays behind"
    );
    assert_eq!(read_text(&f, "mounted").trim(), "0", "a mount stays behind");
}
