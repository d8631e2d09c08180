//! Backups and restores that bring a service back: owners kept, blocks and
//! inodes counted, restores into a mount point, a full disk survived,
//! directory times left as a committed run made them. Real filesystems
//! (tmpfs mounted by the test, which runs as root) stand in for volumes.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

/// `--now` for the runs: 2026-11-22T03:00:00Z.
pub const NOW: &str = "1795316400";

fn sh(script: &str) {
    let out = Command::new("sh").args(["-c", script]).output().unwrap();
    assert!(
        out.status.success(),
        "{script}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A tmpfs of `size` mounted at `at`, unmounted when dropped (even when the
/// test panics), so no test leaves a mount behind.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    pub fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount a {size} tmpfs at {} (these tests run as root, as CI does): {}",
            at.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Every entry with its type, mode, owner, group, size, content or link
/// target and modification time: what a restore must bring back.
pub fn owned_tree(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md = std::fs::symlink_metadata(&p).unwrap();
        let what = if md.file_type().is_symlink() {
            format!("-> {}", std::fs::read_link(&p).unwrap().display())
        } else if md.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
            "dir".into()
        } else {
            format!("{:?}", std::fs::read(&p).unwrap())
        };
        out.push(format!(
            "{} {what} mode={:o} owner={}:{} mtime={}.{:09} links={}",
            p.strip_prefix(root).unwrap().display(),
            md.mode(),
            md.uid(),
            md.gid(),
            md.mtime(),
            md.mtime_nsec(),
            if md.is_dir() { 0 } else { md.nlink() }
        ));
    }
    out.sort();
    out
}

const RESTORE: &str = r#"[runbook]
name = "restore-data"
version = "1.0.0"
summary = "restore a service's data directory from its newest snapshot"

[grants.lib]
path = "{root}/lib"
access = "write"

[grants.snaps]
path = "{root}/snaps"
access = "read"

[[steps]]
id = "restore"
uses = "std:restore"
grants = ["lib", "snaps"]
with = { from = "snaps", target = "lib/data" }
"#;

/// A service's data as Debian lays it out: owned by the service's user
/// (nobody:nogroup here), files 640, a directory 750, a symlink and a
/// hard link.
fn service_data(dir: &Path) {
    sh(&format!(
        "set -e; mkdir -p {d}/accounts {d}/roster; echo alice > {d}/accounts/alice.dat; \
         echo bob > {d}/roster/alice.dat; ln {d}/accounts/alice.dat {d}/accounts/alice.bak; \
         ln -s accounts/alice.dat {d}/current; chmod 640 {d}/accounts/alice.dat {d}/roster/alice.dat; \
         chmod 750 {d}/accounts; chown -R -h 65534:65534 {d}; \
         find {d} -exec touch -h -d '2026-11-21 03:00:00' {{}} +",
        d = dir.display()
    ));
}

/// Defect 1: a snapshot owned nobody:nogroup, mode 640, restored as
/// root:root broke the service, and the run said committed.
#[test]
fn a_restore_keeps_owner_group_mode_times_and_links() {
    let f = Fixture::new();
    service_data(&f.path("snaps/data-20261122T000000Z"));
    f.write("lib/data/accounts/alice.dat", "damaged");
    let runbook = f.runbook("restore.toml", RESTORE);
    let ran = f.mend(&["--now", NOW, "run", runbook.to_str().unwrap()]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    assert_eq!(
        owned_tree(&f.path("snaps/data-20261122T000000Z")),
        owned_tree(&f.path("lib/data")),
        "the restored data is the snapshot, owners and all"
    );
    let md = std::fs::metadata(f.path("lib/data/accounts/alice.dat")).unwrap();
    assert_eq!(
        (md.uid(), md.gid(), md.mode() & 0o777),
        (65534, 65534, 0o640)
    );
}

/// Defect 2: 20,000 files of 100 B take 4 KiB each on a tmpfs. Counted in
/// bytes they fit a 70 MB tmpfs (the copy then hit ENOSPC); counted in
/// blocks they do not, and the plan says so before anything is copied.
#[test]
fn small_files_are_counted_in_blocks_and_refused_in_the_plan() {
    let f = Fixture::new();
    let src = f.path("data/spool");
    std::fs::create_dir_all(&src).unwrap();
    let body = [b'x'; 100];
    for i in 0..20_000 {
        std::fs::write(src.join(format!("{i:05}.msg")), body).unwrap();
    }
    let _vol = Tmpfs::mount(&f.path("vol"), "70m");
    let runbook = f.runbook(
        "snap.toml",
        r#"[runbook]
name = "snap-spool"
version = "1.0.0"
summary = "snapshot the spool onto a small volume"

[grants.data]
path = "{root}/data"
access = "read"

[grants.vol]
path = "{root}/vol"
access = "write"

[[steps]]
id = "snap"
uses = "std:snapshot"
grants = ["data", "vol"]
with = { source = "data/spool", into = "vol" }
"#,
    );
    let plan = f.mend(&["--now", NOW, "plan", runbook.to_str().unwrap()]);
    assert_ne!(plan.code, 0, "{}", plan.text());
    let text = plan.text();
    assert!(text.contains("not enough space"), "{text}");
    assert!(text.contains("20,000 files"), "{text}");
    assert!(text.contains("4 KiB blocks"), "{text}");
    let ran = f.mend(&["--now", NOW, "run", runbook.to_str().unwrap()]);
    assert_eq!(ran.code, 1, "{}", ran.text());
    assert!(ran.text().contains("not enough space"), "{}", ran.text());
    assert!(
        !ran.text().contains("No space left on device"),
        "refused before copying, not half way: {}",
        ran.text()
    );
    let left: Vec<_> = std::fs::read_dir(f.path("vol")).unwrap().collect();
    assert!(left.is_empty(), "nothing was copied: {left:?}");
}

/// Defect 7: a committed cull must leave the directory's time as the
/// removal made it; only a rollback puts times back. A directory the run
/// did not change (only mend's own trash came and went) keeps its time.
#[test]
fn a_committed_run_leaves_directory_times_as_it_made_them() {
    let f = Fixture::new();
    f.write("cache/old.png", "old");
    f.write("cache/keep/new.png", "new");
    f.write("other/sub/old.png", "old");
    f.write("other/sub/new.png", "new");
    sh(&format!(
        "touch -d '2020-01-01' {c}/old.png {o}/sub/old.png && touch -d '2026-01-01' {c} {c}/keep {o} {o}/sub",
        c = f.path("cache").display(),
        o = f.path("other").display()
    ));
    let jan = std::fs::metadata(f.path("cache")).unwrap().mtime();
    let runbook = f.runbook(
        "cull.toml",
        r#"[runbook]
name = "cull"
version = "1.0.0"
summary = "cull two caches"

[grants.cache]
path = "{root}/cache"
access = "write"

[grants.other]
path = "{root}/other"
access = "write"

[[steps]]
id = "cull-cache"
uses = "std:cache-cull"
grants = ["cache"]
with = { path = "cache", days = 30 }

[[steps]]
id = "cull-other"
uses = "std:cache-cull"
grants = ["other"]
with = { path = "other/sub", days = 30 }
"#,
    );
    let ran = f.mend(&["run", runbook.to_str().unwrap()]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    assert!(!f.path("cache/old.png").exists() && !f.path("other/sub/old.png").exists());
    let mtime = |p: &str| std::fs::metadata(f.path(p)).unwrap().mtime();
    assert_ne!(
        mtime("cache"),
        jan,
        "old.png was removed from cache: its time is the removal's"
    );
    assert_ne!(
        mtime("other/sub"),
        jan,
        "old.png was removed from other/sub"
    );
    assert_eq!(
        mtime("other"),
        jan,
        "nothing in `other` itself changed (mend's trash came and went)"
    );
    assert_eq!(mtime("cache/keep"), jan, "untouched");
}

/// Defect 5: a volume mounted at the restore target (a container's data
/// volume) cannot be swapped away: the swap failed with EBUSY. The plan
/// sees the mount, copies into the volume and replaces its contents in
/// place, counting the volume's own free space; a rollback puts the old
/// contents back; mend's trash and staging inside the volume go at commit.
#[test]
fn a_restore_into_a_mount_point_replaces_its_contents_in_place() {
    let f = Fixture::new();
    service_data(&f.path("snaps/data-20261122T000000Z"));
    let _vol = Tmpfs::mount(&f.path("lib/data"), "100m");
    f.write("lib/data/accounts/alice.dat", "damaged");
    f.write("lib/data/stray.tmp", "left by the crash");
    let runbook = f.runbook("restore.toml", RESTORE);
    let plan = f.mend(&["--now", NOW, "plan", runbook.to_str().unwrap()]);
    assert_eq!(plan.code, 0, "{}", plan.text());
    assert!(
        plan.text()
            .contains("lib/data is a mount point (a volume of its own)"),
        "{}",
        plan.text()
    );
    let ran = f.mend(&["--now", NOW, "run", runbook.to_str().unwrap()]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    assert!(
        ran.text().contains("check ok") || ran.code == 0,
        "{}",
        ran.text()
    );
    let inside = |root: &Path| -> Vec<String> {
        owned_tree(root)
            .into_iter()
            .filter(|l| !l.starts_with(' '))
            .collect()
    };
    assert_eq!(
        inside(&f.path("snaps/data-20261122T000000Z")),
        inside(&f.path("lib/data")),
        "the volume holds the snapshot, owners and all, and nothing of mend's"
    );
}

/// mend with its state directory on `state`, the shared component cache.
fn mend_at(state: &Path, args: &[&str]) -> Ran {
    let out = Command::new(mend_bin())
        .arg("--state-dir")
        .arg(state)
        .arg("--cache-dir")
        .arg(shared_cache())
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Defect 6: the database disk at 100% (its WAL archive) is when mend is
/// needed, and it could not take its run lock ("No space left on device",
/// exit 70). A 2 MB tmpfs holds mend's state directory, a WAL archive and
/// a filler up to the last byte; the shipped WAL cleanup runbook runs on
/// mend's released reserve, frees the disk, and the reserve comes back.
#[test]
fn a_wal_cleanup_runs_on_a_full_disk_and_frees_it() {
    let f = Fixture::new();
    let _disk = Tmpfs::mount(&f.path("disk"), "2m");
    let state = f.path("disk/state");
    let archive = f.path("disk/archive");
    std::fs::create_dir_all(&archive).unwrap();
    // An hour old: keep_days = 0 then keeps none of them, whatever the
    // second the run starts in.
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    for seg in 1..=12u32 {
        let p = archive.join(format!("0000000100000000{seg:08X}"));
        std::fs::write(&p, vec![7u8; 64 << 10]).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(hour_ago)
            .unwrap();
    }
    std::fs::write(
        archive.join("00000001000000000000000C.00000028.backup"),
        "START WAL LOCATION: 0/C000028 (file 00000001000000000000000C)\n",
    )
    .unwrap();
    let runbook = repo("runbooks/postgres/wal-archive-cleanup.toml");
    let arch = format!("archive={}", archive.display());
    // A first, nightly run: nothing old enough yet; mend makes its reserve.
    let first = mend_at(
        &state,
        &["run", &runbook, "--set", &arch, "--set", "keep_days=7"],
    );
    assert_eq!(first.code, 0, "{}", first.text());
    assert!(state.join("reserve").exists(), "{}", first.text());
    // The archive fills the disk to its last byte.
    let mut filler = std::fs::File::create(f.path("disk/filler")).unwrap();
    let block = vec![1u8; 4096];
    while std::io::Write::write_all(&mut filler, &block).is_ok() {}
    drop(filler);
    let st = rustix::fs::statvfs(f.path("disk").as_path()).unwrap();
    assert_eq!(st.f_bavail, 0, "the disk is full");
    let ran = mend_at(
        &state,
        &["run", &runbook, "--set", &arch, "--set", "keep_days=0"],
    );
    assert_eq!(ran.code, 0, "{}", ran.text());
    assert!(
        ran.stderr
            .contains("is full (0 B free); released mend's reserve"),
        "{}",
        ran.text()
    );
    let left: Vec<String> = std::fs::read_dir(&archive)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        left.len(),
        2,
        "segment 12 and its .backup are kept: {left:?}"
    );
    // 704 KiB freed: the reserve is made again.
    assert!(state.join("reserve").exists(), "{}", ran.text());
    assert!(
        ran.stderr.contains("made the reserve again"),
        "{}",
        ran.text()
    );
}

/// A restore drill: `mend rehearse` of a restore runbook with a time
/// budget. Within it, the drill passes and says how long each step took;
/// over it (a budget of 1 ms no run can meet), it fails and names the
/// slowest step. The copies are gone either way.
#[test]
fn a_restore_drill_passes_within_its_budget_and_fails_over_it() {
    let f = Fixture::new();
    service_data(&f.path("snaps/data-20261122T000000Z"));
    f.write("lib/data/accounts/alice.dat", "damaged");
    let drill = |budget: &str| {
        let rb = f.runbook(
            "drill.toml",
            &format!("{RESTORE}\n[rehearsal]\nbudget = \"{budget}\"\n"),
        );
        f.mend(&["--now", NOW, "rehearse", rb.to_str().unwrap()])
    };
    let ok = drill("2h");
    assert_eq!(ok.code, 0, "{}", ok.text());
    assert!(
        ok.stdout.contains("time until the last verify passed: "),
        "{}",
        ok.text()
    );
    assert!(
        ok.stdout.contains("(budget 2 h 0 min 0 s)"),
        "{}",
        ok.text()
    );
    assert!(
        ok.stdout.contains("\n  restore: "),
        "time per step: {}",
        ok.text()
    );
    let over = drill("1ms");
    assert_eq!(over.code, 1, "{}", over.text());
    assert!(
        over.stdout
            .contains("over its budget of 0.0 s; slowest step: restore ("),
        "{}",
        over.text()
    );
    // Copies in $TMPDIR, upper layers in /dev/shm: the ones these two
    // drills named in their first line (not another suite's, running
    // beside this one on a shared machine).
    let mut named = Vec::new();
    for out in [ok.text(), over.text()] {
        for (i, _) in out.match_indices("mend-rehearsal-restore-data-") {
            let rest = &out[i..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .unwrap_or(rest.len());
            named.push(rest[..end].to_string());
        }
    }
    assert!(!named.is_empty(), "no scratch named in:\n{}", ok.text());
    let scratch: Vec<_> = [std::env::temp_dir(), "/dev/shm".into()]
        .iter()
        .flat_map(|d| named.iter().map(move |n| d.join(n)))
        .filter(|p| p.symlink_metadata().is_ok())
        .collect();
    assert!(
        scratch.is_empty(),
        "the copies or upper layers are removed: {scratch:?}"
    );
}

/// A rehearsal runs commands through stand-ins; one without them is
/// refused before anything is copied (it used to copy 360,080 entries
/// for 67 s first).
#[test]
fn a_rehearsal_without_stand_ins_is_refused_before_copying() {
    let f = Fixture::new();
    f.write("data/a.txt", "a");
    let rb = f.runbook(
        "svc.toml",
        r#"[runbook]
name = "needs-stand-ins"
version = "1.0.0"
summary = "restart a unit"

[grants.data]
path = "{root}/data"
access = "write"

[commands.systemctl]
program = "/bin/true"
reads = [["**"]]
changes = [["**"]]

[[steps]]
id = "restart"
uses = "std:service"
commands = ["systemctl"]
with = { units = ["x.service"], action = "restart" }
"#,
    );
    let ran = f.mend(&["rehearse", rb.to_str().unwrap()]);
    assert_eq!(ran.code, 2, "{}", ran.text());
    assert!(
        ran.text()
            .contains("these have no stand-in: `systemctl` (step `restart`); nothing was copied"),
        "{}",
        ran.text()
    );
}

/// nerdsin.space: the container was recreated and Synapse's data
/// directory was never on its volume. The shipped preflight passes with
/// the media store on a mounted volume, and stops everything when the
/// directory is not a mount point (or is empty).
#[test]
fn synapse_preflight_stops_when_the_data_is_not_on_its_volume() {
    let f = Fixture::new();
    std::fs::create_dir_all(f.path("backups")).unwrap();
    let data = f.path("synapse");
    let sets = |f: &Fixture| -> Vec<String> {
        [
            format!("data={}", data.display()),
            format!("volume={}", data.display()),
            format!("backups={}", f.path("backups").display()),
        ]
        .into_iter()
        .flat_map(|s| ["--set".to_string(), s])
        .collect()
    };
    let runbook = repo("runbooks/synapse/preflight.toml");
    let run = |f: &Fixture| {
        let s = sets(f);
        let mut args = vec!["run", runbook.as_str()];
        args.extend(s.iter().map(String::as_str));
        f.mend(&args)
    };
    // Not on its volume: a directory a recreated container wrote.
    f.write("synapse/media/local_content/ab/cd", "media");
    let ran = run(&f);
    assert_eq!(ran.code, 1, "{}", ran.text());
    assert!(
        ran.text()
            .contains("the data directory is not on its volume"),
        "{}",
        ran.text()
    );
    std::fs::remove_dir_all(&data).unwrap();
    let _vol = Tmpfs::mount(&data, "8m");
    f.write("synapse/media/local_content/ab/cd", "media");
    let ran = run(&f);
    assert_eq!(ran.code, 0, "{}", ran.text());
}
