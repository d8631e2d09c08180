//! A rehearsal of a cull, on overlays against today's copying rehearsal,
//! against the run itself and against `cp -a` of the tree, in one run
//! (issue 20; target: the overlay rehearsal costs at most 2x the run).
//! The tree: N files of 100 B, 1,000 to a directory, all older than the
//! cull's 30 days (so every file is culled, then put back by the
//! rollback); with MEND_BENCH_MIXED=1 every other file is a day old, as
//! in a media cache, so the cull removes files one by one. Each figure is wall time and peak RSS (wait4's rusage of the
//! child, its own children included).
//!
//! Run as root: cargo bench -p mend --bench rehearse;
//! MEND_BENCH_FILES=100000,1000000 (default 100000), MEND_BENCH_DIR=/dev/shm
//! for tmpfs, the default $TMPDIR for the disk (the overlay's upper layer
//! goes to a tmpfs of the rehearsal's own either way, mend's default on
//! /dev/shm), MEND_BENCH_RUNS
//! (default 1). Needs cp and room for two copies of the tree.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

const MEND: &str = env!("CARGO_BIN_EXE_mend");

fn mend_bin() -> std::ffi::OsString {
    std::env::var_os("MEND_BENCH_MEND").unwrap_or_else(|| MEND.into())
}

fn flag(name: &str, default: bool) -> bool {
    std::env::var(name).map_or(default, |v| v != "0" && !v.is_empty())
}

/// Wall time and peak RSS (KiB) of a command, which must succeed.
fn measure(cmd: &mut Command) -> (Duration, u64) {
    let log = std::env::temp_dir().join(format!("mend-bench-rehearse-{}.err", std::process::id()));
    let err_file = std::fs::File::create(&log).unwrap();
    let start = Instant::now();
    // Reaped by wait4 below, which also gives its rusage.
    #[allow(clippy::zombie_processes)]
    let child = cmd
        .stdout(Stdio::null())
        .stderr(err_file)
        .spawn()
        .expect("start the command");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid out-parameter for wait4.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; status and rusage are ours.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    let took = start.elapsed();
    assert_eq!(r, pid, "wait4: {}", std::io::Error::last_os_error());
    drop(child);
    let err = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{cmd:?} failed: {err}"
    );
    (took, ru.ru_maxrss as u64)
}

fn runs() -> usize {
    std::env::var("MEND_BENCH_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

/// Median time and largest peak RSS of `runs()` runs, `reset` (untimed)
/// before each.
fn timed(mut reset: impl FnMut(), mut cmd: impl FnMut() -> Command) -> (Duration, u64) {
    let mut t = Vec::new();
    let mut rss = 0;
    for _ in 0..runs() {
        reset();
        let (d, r) = measure(&mut cmd());
        t.push(d);
        rss = rss.max(r);
    }
    t.sort();
    (t[t.len() / 2], rss)
}

/// N files of 100 B in directories of 1,000, 40 days old; when `mixed`,
/// every other one is a day old instead (a media cache mixes ages in every
/// folder, so the cull removes files one by one and no folder whole).
fn tree(root: &Path, n: usize, mixed: bool) {
    let old = SystemTime::now() - Duration::from_secs(40 * 86_400);
    let young = SystemTime::now() - Duration::from_secs(86_400);
    let body = [b'x'; 100];
    for i in 0..n {
        let dir = root.join(format!("d{:04}", i / 1000));
        if i % 1000 == 0 {
            std::fs::create_dir_all(&dir).unwrap();
        }
        let p = dir.join(format!("f{i:07}.bin"));
        std::fs::write(&p, body).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(if mixed && i % 2 == 1 { young } else { old })
            .unwrap();
    }
}

fn mend(state: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(mend_bin());
    c.arg("--state-dir").arg(state).args(args);
    c
}

fn cp(from: &Path, to: &Path) {
    let ok = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap()
        .success();
    assert!(ok, "cp -a {} {}", from.display(), to.display());
}

fn rm(p: &Path) {
    if p.exists() {
        std::fs::remove_dir_all(p).unwrap();
    }
}

fn row(what: &str, (d, rss): (Duration, u64), run: Duration) {
    println!(
        "  {what:<34} {:>9.2} s {:>8.1} MiB {:>7.2}x the run",
        d.as_secs_f64(),
        rss as f64 / 1024.0,
        d.as_secs_f64() / run.as_secs_f64()
    );
}

fn main() {
    if !rustix::process::geteuid().is_root() {
        println!("rehearse bench: skipped (overlays need root)");
        return;
    }
    let base: PathBuf = std::env::var_os("MEND_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("mend-bench-rehearse-{}", std::process::id()));
    let sizes: Vec<usize> = std::env::var("MEND_BENCH_FILES")
        .unwrap_or_else(|_| "100000".into())
        .split(',')
        .map(|n| n.trim().parse().expect("MEND_BENCH_FILES: numbers"))
        .collect();
    for n in sizes {
        rm(&base);
        let pristine = base.join("pristine");
        let data = pristine.join("media");
        std::fs::create_dir_all(&data).unwrap();
        tree(&data, n, flag("MEND_BENCH_MIXED", false));
        let runbook = base.join("cull.toml");
        let live = base.join("live");
        std::fs::write(
            &runbook,
            format!(
                r#"[runbook]
name = "bench-cull"
version = "1.0.0"
summary = "cull every file older than 30 days"

[grants.media]
path = "{}/media"
access = "write"
disposable = {}

[[steps]]
id = "cull"
uses = "std:cache-cull"
grants = ["media"]
with = {{ path = "media", days = 30 }}
"#,
                live.display(),
                flag("MEND_BENCH_DISPOSABLE", false)
            ),
        )
        .unwrap();
        let state = base.join("state");
        let scratch = base.join("scratch");
        std::fs::create_dir_all(&scratch).unwrap();
        let fresh = || {
            rm(&live);
            rm(&state);
            cp(&pristine, &live);
        };
        let rb = runbook.to_str().unwrap().to_string();
        let run = timed(fresh, || mend(&state, &["run", &rb]));
        let overlay = timed(fresh, || {
            mend(&state, &["rehearse", "--on", "overlay", &rb])
        });
        let copy = flag("MEND_BENCH_COPY", true).then(|| {
            timed(fresh, || {
                mend(
                    &state,
                    &[
                        "rehearse",
                        "--on",
                        "copy",
                        "--scratch",
                        scratch.to_str().unwrap(),
                        &rb,
                    ],
                )
            })
        });
        let target = base.join("cp-target");
        let native = timed(
            || rm(&target),
            || {
                let mut c = Command::new("cp");
                c.arg("-a").arg(&pristine).arg(&target);
                c
            },
        );
        println!(
            "rehearsal of a {} cull of {n} files of 100 B{} in {} by {} (median of {}):",
            if flag("MEND_BENCH_DISPOSABLE", false) {
                "disposable"
            } else {
                "trash"
            },
            if flag("MEND_BENCH_MIXED", false) {
                ", half of them old"
            } else {
                ""
            },
            base.display(),
            mend_bin().to_string_lossy(),
            runs()
        );
        row("mend run (the run itself)", run, run.0);
        row("mend rehearse --on overlay", overlay, run.0);
        if let Some(copy) = copy {
            row("mend rehearse --on copy", copy, run.0);
        }
        row("cp -a of the tree", native, run.0);
        println!(
            "  overlay rehearsal / run: {:.2}x (target <= 2x)",
            overlay.0.as_secs_f64() / run.0.as_secs_f64(),
        );
        if let Some(copy) = copy {
            println!(
                "  copying rehearsal / overlay: {:.2}x",
                copy.0.as_secs_f64() / overlay.0.as_secs_f64()
            );
        }
    }
    rm(&base);
}
