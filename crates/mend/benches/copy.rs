//! The two bulk writers against the native tools, on the same tree in the
//! same run: `std:restore` copying a snapshot into place vs `cp -a`, and
//! `std:release` unpacking a tarball vs `tar -xf`. Prints the median wall
//! time (whole processes), MB/s and the ratio of throughputs; the target is
//! at least 0.9x the native tool's.
//!
//! mend makes a copy durable before it renames it into place (one `syncfs`
//! of the destination's filesystem), which `cp` and `tar` do not; so each
//! native tool is also timed followed by `sync -f DIR`, the same promise.
//! The tree: 400 files of 1 MiB (photos) and 20,000 of 4 KiB (thumbnails,
//! avatars) in 200 directories, 480 MiB in all, in the page cache.
//!
//! Run: cargo bench -p mend --bench copy (a few minutes on a slow disk;
//! needs cp, tar, sync, 1.5 GiB in $TMPDIR, or in MEND_BENCH_DIR, e.g.
//! /dev/shm to leave the disk out). It times target/release/mend.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const MEND: &str = env!("CARGO_BIN_EXE_mend");
const RUNS: usize = 3;

fn run(cmd: &mut Command) -> Duration {
    let start = Instant::now();
    let out = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("start the command");
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn sh(script: &str) -> Command {
    let mut c = Command::new("sh");
    c.args(["-c", script]);
    c
}

fn mend(tmp: &Path, runbook: &Path) -> Command {
    static N: AtomicUsize = AtomicUsize::new(0);
    let mut c = Command::new(MEND);
    c.arg("--state-dir")
        .arg(tmp.join(format!("state-{}", N.fetch_add(1, Ordering::Relaxed))));
    c.arg("--cache-dir").arg(tmp.join("cache"));
    c.arg("run").arg(runbook);
    c
}

fn median(mut t: Vec<Duration>) -> Duration {
    t.sort();
    t[t.len() / 2]
}

/// Time `cmd` RUNS times, calling `reset` (untimed) before each, then
/// `sync` (untimed), so no run pays for the writeback of the one before.
fn timed(mut reset: impl FnMut(), mut cmd: impl FnMut() -> Command) -> Duration {
    median(
        (0..RUNS)
            .map(|_| {
                reset();
                run(&mut Command::new("sync"));
                run(&mut cmd())
            })
            .collect(),
    )
}

fn generate(root: &Path) -> u64 {
    let mut bytes = 0u64;
    let big = vec![0x5au8; 1 << 20];
    let small = vec![0xa5u8; 4096];
    for d in 0..200 {
        let dir = root.join(format!("{:02}/{:03}", d % 10, d));
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..2 {
            std::fs::write(dir.join(format!("photo-{i}.jpg")), &big).unwrap();
            bytes += big.len() as u64;
        }
        for i in 0..100 {
            std::fs::write(dir.join(format!("thumb-{i}.png")), &small).unwrap();
            bytes += small.len() as u64;
        }
    }
    bytes
}

fn row(label: &str, bytes: u64, mend: Duration, native: Duration) {
    let mbs = |d: Duration| bytes as f64 / 1e6 / d.as_secs_f64();
    let ratio = mbs(mend) / mbs(native);
    let met = if ratio >= 0.9 { "met" } else { "MISSED" };
    println!(
        "  {label:<40} {:>7.3} s {:>7.0} MB/s  vs {:>7.3} s {:>7.0} MB/s  {ratio:>5.2}x  >= 0.90x {met}",
        mend.as_secs_f64(),
        mbs(mend),
        native.as_secs_f64(),
        mbs(native)
    );
}

fn rm(path: &Path) {
    if path.exists() {
        std::fs::remove_dir_all(path).unwrap();
    }
}

fn main() {
    // MEND_BENCH_DIR=/dev/shm takes the disk out, leaving each tool's own cost.
    let tmp = match std::env::var_os("MEND_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir(),
    }
    .expect("a temp dir");
    let tmp = tmp.path();
    let data = tmp.join("data");
    let snaps = data.join("snaps");
    let tree = snaps.join("media-20261122T030000Z");
    let bytes = generate(&tree);
    let files = 200 * 102;
    println!(
        "mend vs cp -a and tar -x on one tree ({files} files, {:.0} MB) in {}, median of {RUNS}\n",
        bytes as f64 / 1e6,
        tmp.display()
    );

    // Restore: copy the snapshot beside the target, swap, old one to trash.
    let live = data.join("live");
    let restore = tmp.join("restore.toml");
    std::fs::write(
        &restore,
        format!(
            r#"[runbook]
name = "bench-restore"
version = "1.0.0"
summary = "copy a snapshot into place"
[grants.data]
path = "{}"
access = "write"
[[steps]]
id = "restore"
uses = "std:restore"
grants = ["data"]
with = {{ from = "data/snaps", target = "data/live/media", allow_old = true }}
"#,
            data.display()
        ),
    )
    .unwrap();
    let reset_live = || {
        rm(&live);
        std::fs::create_dir_all(&live).unwrap();
    };
    reset_live();
    run(&mut mend(tmp, &restore)); // warm the compiled-step cache
    let m = timed(reset_live, || mend(tmp, &restore));
    let dst = tmp.join("cp-dst");
    let (t, d) = (tree.display(), dst.display());
    let cp = timed(|| rm(&dst), || sh(&format!("cp -a {t} {d}")));
    let cp_sync = timed(|| rm(&dst), || sh(&format!("cp -a {t} {d} && sync -f {d}")));
    row("std:restore copy vs cp -a", bytes, m, cp);
    row("std:restore copy vs cp -a && sync -f", bytes, m, cp_sync);

    // Release: unpack a tarball beside the live release, swap, old to trash.
    let dist = tmp.join("dist");
    std::fs::create_dir_all(&dist).unwrap();
    let archive: PathBuf = dist.join("app-2.tar");
    let ok = Command::new("tar")
        .arg("cf")
        .arg(&archive)
        .arg("-C")
        .arg(&snaps)
        .arg("media-20261122T030000Z")
        .status()
        .unwrap();
    assert!(ok.success());
    let release = tmp.join("release.toml");
    std::fs::write(
        &release,
        format!(
            r#"[runbook]
name = "bench-release"
version = "1.0.0"
summary = "unpack a release"
[grants.dist]
path = "{}"
access = "read"
[grants.data]
path = "{}"
access = "write"
[[steps]]
id = "release"
uses = "std:release"
grants = ["dist", "data"]
with = {{ archive = "dist/app-2.tar", current = "data/app", root = "media-20261122T030000Z" }}
"#,
            dist.display(),
            data.display()
        ),
    )
    .unwrap();
    let app = data.join("app");
    let reset_app = || {
        rm(&app);
        std::fs::create_dir_all(&app).unwrap();
    };
    let m = timed(reset_app, || mend(tmp, &release));
    let (a, d) = (archive.display(), dst.display());
    let reset_dst = || {
        rm(&dst);
        std::fs::create_dir_all(&dst).unwrap();
    };
    let tar = timed(reset_dst, || sh(&format!("tar -xf {a} -C {d}")));
    let tar_sync = timed(reset_dst, || {
        sh(&format!("tar -xf {a} -C {d} && sync -f {d}"))
    });
    row("std:release extract vs tar -xf", bytes, m, tar);
    row(
        "std:release extract vs tar -xf && sync -f",
        bytes,
        m,
        tar_sync,
    );
    println!("\n  mend: {MEND}");
}
