//! Rehearsals on overlays (issue 20): the real tree is the read-only lower
//! layer, changes go to an upper layer in a scratch area, in a private mount
//! namespace. These tests run as root (the e2e suite does); the small
//! filesystems are mounted in `unshare --mount` shells, so nothing here
//! mounts anything the machine sees.

use std::path::Path;
use std::process::Command;

use crate::common::*;

/// The mount points of overlays any process on the machine sees on `path`.
fn overlays_on(path: &Path) -> Vec<String> {
    let want = path.display().to_string();
    let mut seen = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = e.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let info = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default();
        for l in info.lines().filter(|l| l.contains(" - overlay ")) {
            if l.split(' ').nth(4) == Some(want.as_str()) {
                seen.push(format!("pid {pid}: {l}"));
            }
        }
    }
    seen
}

/// The cull fixture: `data/old` holds files 40 days old, `data/config.yml`.
fn cull(f: &Fixture, data: &str) -> std::path::PathBuf {
    let text = CULL_THEN_CHECK
        .replace("{on_failure}", "rollback")
        .replace("{root}/data", &format!("{{root}}/{data}"));
    f.runbook("cull.toml", &text)
}

#[test]
fn a_grant_larger_than_its_disk_rehearses_on_an_overlay_where_copies_cannot() {
    let f = Fixture::new();
    cull(&f, "disk/data");
    std::fs::create_dir_all(f.path("disk")).unwrap();
    // 16 sparse files of 64 MiB (1 GiB apparent, a block of data each) and
    // 200 small ones on a 64 MiB tmpfs; the scratch area on the same tmpfs,
    // so the upper layer has room only for what the run changes.
    let out = in_namespace(
        &f,
        r#"
mount -t tmpfs -o size=64m tmpfs "$ROOT/disk"
mkdir -p "$ROOT/disk/data/old" "$ROOT/disk/data/new" "$ROOT/disk/scratch"
echo "config: yes" > "$ROOT/disk/data/config.yml"
for i in $(seq 1 16); do
  echo "media $i" > "$ROOT/disk/data/old/big-$i"; truncate -s 64M "$ROOT/disk/data/old/big-$i"
done
for i in $(seq 1 200); do echo "small $i" > "$ROOT/disk/data/new/s-$i"; done
touch -d '40 days ago' "$ROOT/disk/data/old"/*
du -s --apparent-size -B1M "$ROOT/disk/data" > "$ROOT/apparent"
df -B1M --output=avail "$ROOT/disk" | tail -1 > "$ROOT/avail"
set +e
$MEND rehearse --on copy --scratch "$ROOT/disk/scratch" "$ROOT/cull.toml" > "$ROOT/copy.out" 2>&1
echo $? > "$ROOT/copy.code"
$MEND rehearse --scratch "$ROOT/disk/scratch" "$ROOT/cull.toml" > "$ROOT/overlay.out" 2>&1
echo $? > "$ROOT/overlay.code"
ls -A "$ROOT/disk/scratch" > "$ROOT/scratch-left"
ls "$ROOT/disk/data/old" | wc -l > "$ROOT/old-left"
"#,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let apparent: u64 = read_text(&f, "apparent")
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let avail: u64 = read_text(&f, "avail").trim().parse().unwrap();
    assert!(
        apparent > 1000 && avail <= 64,
        "{apparent} MiB on {avail} MiB free"
    );
    // The copy cannot fit: the fixture is what it claims.
    assert_ne!(
        read_text(&f, "copy.code").trim(),
        "0",
        "{}",
        read_text(&f, "copy.out")
    );
    let text = read_text(&f, "overlay.out");
    assert_eq!(read_text(&f, "overlay.code").trim(), "0", "{text}");
    assert!(
        text.lines()
            .next()
            .is_some_and(|l| l.contains("on overlays (real directories read-only")),
        "{text}"
    );
    assert!(text.contains("rolled back 16 actions"), "{text}");
    assert!(text.contains("rehearsal passed"), "{text}");
    assert_eq!(
        read_text(&f, "old-left").trim(),
        "16",
        "the real tree was culled"
    );
    assert_eq!(
        read_text(&f, "scratch-left").trim(),
        "",
        "the upper layer stays behind"
    );
}

#[test]
fn a_rehearsal_says_how_it_presents_the_grants_and_leaves_nothing_mounted() {
    let f = Fixture::new();
    populate(&f);
    for (name, days) in [("old/a.log", 40u64), ("old/b.log", 50)] {
        let p = f.write(&format!("data/{name}"), "old\n");
        let t = std::time::SystemTime::now() - std::time::Duration::from_secs(days * 86_400);
        std::fs::File::options()
            .write(true)
            .open(p)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }
    f.write("data/config.yml", "config\n");
    let rb = cull(&f, "data");
    let before = tree(&f.path("data"), true);

    let ran = f.mend(&["rehearse", rb.to_str().unwrap()]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    let first = ran.stderr.lines().next().unwrap_or("");
    assert!(
        first.starts_with(
            "rehearsing cull-then-check on overlays (real directories read-only; changes go to /dev/shm/mend-rehearsal-cull-then-check-"
        ),
        "{}",
        ran.text()
    );
    // The upper layers' own tmpfs is mounted inside the scratch area.
    let scratch = first
        .split("changes go to ")
        .nth(1)
        .and_then(|r| r.split([',', ')']).next())
        .unwrap();
    assert!(!Path::new(scratch).exists(), "{scratch} is left behind");
    assert!(
        ran.stdout.contains("rolled back 4 actions"),
        "{}",
        ran.text()
    );
    assert_eq!(overlays_on(&f.path("data")), Vec::<String>::new());
    assert_same(&before, &tree(&f.path("data"), true), "the real grant");

    let json = f.mend(&["--json", "rehearse", rb.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let p = &v["report"]["presentation"];
    assert_eq!(p["kind"], "overlay", "{}", json.stdout);
    assert!(
        p["why"]
            .as_str()
            .unwrap()
            .contains("redirect_dir, index, metacopy"),
        "{p}"
    );

    let copy = f.mend(&["rehearse", "--on", "copy", rb.to_str().unwrap()]);
    assert_eq!(copy.code, 0, "{}", copy.text());
    let first = copy.stderr.lines().next().unwrap_or("");
    assert!(
        first.contains("on full copies in ") && first.ends_with("(asked for with --on copy)"),
        "{}",
        copy.text()
    );
    assert!(copy.stdout.contains("rehearsal passed"), "{}", copy.text());
    assert_same(&before, &tree(&f.path("data"), true), "the real grant");
}

#[test]
fn overlays_refused_by_the_upper_filesystem_exit_2_or_fall_back_to_copies() {
    let f = Fixture::new();
    populate(&f);
    let p = f.write("data/old/a.log", "old\n");
    let t = std::time::SystemTime::now() - std::time::Duration::from_secs(40 * 86_400);
    std::fs::File::options()
        .write(true)
        .open(p)
        .unwrap()
        .set_modified(t)
        .unwrap();
    f.write("data/config.yml", "config\n");
    cull(&f, "data");
    std::fs::create_dir_all(f.path("ram")).unwrap();
    let out = in_namespace(
        &f,
        r#"
mount -t ramfs ramfs "$ROOT/ram"
set +e
$MEND rehearse --on overlay --scratch "$ROOT/ram" "$ROOT/cull.toml" > "$ROOT/forced.out" 2>&1
echo $? > "$ROOT/forced.code"
$MEND rehearse --scratch "$ROOT/ram" "$ROOT/cull.toml" > "$ROOT/auto.out" 2>&1
echo $? > "$ROOT/auto.code"
"#,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let forced = read_text(&f, "forced.out");
    assert_eq!(read_text(&f, "forced.code").trim(), "2", "{forced}");
    assert!(
        forced.contains("cannot rehearse on overlays:")
            && forced.contains("is on ramfs")
            && forced.contains("nothing ran"),
        "{forced}"
    );
    assert!(
        !forced.contains("of cull-then-check 1.0.0"),
        "something ran:\n{forced}"
    );
    let auto = read_text(&f, "auto.out");
    assert_eq!(read_text(&f, "auto.code").trim(), "0", "{auto}");
    let first = auto.lines().next().unwrap_or("");
    assert!(
        first.contains("on full copies in")
            && first.contains("(no overlay: ")
            && first.contains("is on ramfs"),
        "{auto}"
    );
    // Only the fallback's run is in the journal.
    let history = f.mend(&["--json", "history"]);
    assert_eq!(
        history.stdout.matches("\"rolled-back\"").count(),
        1,
        "{}",
        history.stdout
    );
}

#[test]
fn a_killed_rehearsal_leaves_no_overlay_mounted_anywhere() {
    let f = Fixture::new();
    populate(&f);
    let rb = f.runbook(
        "slow.toml",
        r#"
[runbook]
name = "slow-mark"
version = "1.0.0"
summary = "an exec whose stand-in takes its time"

[grants.data]
path = "{root}/data"
access = "write"

[commands.mark]
program = "/bin/false"
changes = ["**"]

[commands.unmark]
program = "/bin/false"
changes = ["**"]

[rehearsal.commands.unmark]
program = "/bin/true"

[rehearsal.commands.mark]
program = "/bin/sh"
args = ["-c", "echo marked > \"$MEND_GRANT_DATA/new.txt\"; until [ -e {root}/released ]; do sleep 0.05; done"]

[[steps]]
id = "mark"
{guest:scripted}
grants = ["data"]
commands = ["mark", "unmark"]
with = { actions = [{ exec = ["mark", ["new.txt"]], undo = ["unmark", ["new.txt"]] }] }
"#,
    );
    let before = tree(&f.path("data"), true);
    let mut child = Command::new(mend_bin())
        .arg("--state-dir")
        .arg(f.state())
        .arg("--cache-dir")
        .arg(shared_cache())
        .args(["rehearse", rb.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Wait for the stand-in to have written into the overlay.
    let start = std::time::Instant::now();
    let data = f.path("data");
    loop {
        let mounted = overlays_on(&data);
        if !mounted.is_empty()
            && std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
                std::fs::read_to_string(e.path().join("cmdline"))
                    .is_ok_and(|c| c.contains("/released ]"))
            })
        {
            break;
        }
        assert!(
            start.elapsed().as_secs() < 60,
            "the rehearsal never mounted"
        );
        assert!(child.try_wait().unwrap().is_none(), "mend ended early");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        !data.join("new.txt").exists(),
        "the stand-in wrote through to the real tree"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    // The stand-in waited on a file, not a clock, so the kill above came
    // while it ran however slow the machine; now it may end.
    std::fs::write(f.path("released"), "").unwrap();
    // The child mend dies with its parent; the namespace goes with the last
    // process in it (the stand-in, once it sees the file).
    let start = std::time::Instant::now();
    while !overlays_on(&data).is_empty() {
        assert!(start.elapsed().as_secs() < 60, "{:?}", overlays_on(&data));
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_same(&before, &tree(&data, true), "the real grant after a kill");
    // A killed parent cannot remove its scratch area: the operator's (or
    // the next reboot's) to clear, as any killed process's /dev/shm files.
    let _ = std::fs::remove_dir_all(format!("/dev/shm/mend-rehearsal-slow-mark-{pid}"));
}

#[test]
fn a_step_whose_changes_do_not_fit_the_upper_layer_fails_before_it_acts() {
    let f = Fixture::new();
    for i in 0..100 {
        let p = f.write(&format!("data/old/f{i:03}.log"), "old\n");
        let t = std::time::SystemTime::now() - std::time::Duration::from_secs(40 * 86_400);
        std::fs::File::options()
            .write(true)
            .open(p)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }
    f.write("data/config.yml", "config\n");
    cull(&f, "data");
    let before = tree(&f.path("data"), true);
    std::fs::create_dir_all(f.path("small")).unwrap();
    // Room for 60 inodes: the cull of 100 files needs about 200.
    let out = in_namespace(
        &f,
        r#"
mount -t tmpfs -o size=1m,nr_inodes=60 tmpfs "$ROOT/small"
set +e
$MEND rehearse --scratch "$ROOT/small" "$ROOT/cull.toml" > "$ROOT/small.out" 2>&1
echo $? > "$ROOT/small.code"
"#,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = read_text(&f, "small.out");
    assert_eq!(read_text(&f, "small.code").trim(), "1", "{text}");
    assert!(
        text.contains("not enough room for the rehearsal's changes in ")
            && text.contains("(tmpfs): step cull-old needs ~0 B and 20")
            && text.contains("rehearse with --scratch DIR"),
        "{text}"
    );
    assert!(text.contains("rolled back 0 actions"), "{text}");
    assert_same(&before, &tree(&f.path("data"), true), "the real grant");
}
