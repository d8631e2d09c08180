//! `std:snapshot` against the native tools, on the same trees in the same
//! run: a directory snapshot against `cp -a`, and a `tar.zst` snapshot
//! against `tar --zstd -cf`, each native tool followed by `sync -f` (mend
//! makes its copy durable before it is renamed into place). Two trees:
//! 120,000 small files (Prosody's accounts, rosters and archives: 120
//! directories of 1,000 files of 200 B to 2 KiB of XML-like text) and 500
//! MB of photos (100 files of 5 MB, incompressible). Prints median wall
//! times, the ratio of throughputs (targets: directory copy at least 0.9x
//! `cp -a`, tar.zst at least 1x `tar --zstd`), the archives' sizes and
//! mend's peak RSS (`/usr/bin/time -f %M`).
//!
//! The archive's sha256 is not software-bound where the CPU has SHA-NI:
//! sha2 0.10 picks it at run time (cpufeatures); measured on this
//! project's machine, 1.2 GB/s of CPU time, against 1.05 GB/s for
//! `openssl speed -evp sha256` and 0.22 GB/s for coreutils' `sha256sum`.
//!
//! Run: cargo bench -p mend --bench snapshot; MEND_BENCH_DIR=/dev/shm for
//! tmpfs (the tools' own cost), the default $TMPDIR for the disk;
//! MEND_BENCH_RUNS (default 3) runs each, mend's and the native tool's
//! interleaved; MEND_BENCH_ONLY=prosody or photos one tree; MEND_BENCH_MEND=PATH measures
//! another build of mend (a "before" in the same harness). Needs cp, tar with zstd, sync,
//! /usr/bin/time and 3 GiB there.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The mend measured: this build's, or `MEND_BENCH_MEND` (another build,
/// to compare two in the same run and harness).
fn mend_bin() -> String {
    std::env::var("MEND_BENCH_MEND").unwrap_or_else(|_| env!("CARGO_BIN_EXE_mend").to_string())
}

/// Run a command; its wall time and, when wrapped in /usr/bin/time, its
/// peak RSS in KiB.
fn run(cmd: &mut Command) -> (Duration, Option<u64>) {
    let start = Instant::now();
    let out = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("start the command");
    let took = start.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{err}",
        String::from_utf8_lossy(&out.stdout)
    );
    let rss = err
        .lines()
        .last()
        .and_then(|l| l.trim().strip_prefix("maxrss="))
        .and_then(|n| n.parse().ok());
    (took, rss)
}

fn sh(script: &str) -> Command {
    let mut c = Command::new("sh");
    c.args(["-c", script]);
    c
}

fn runs() -> usize {
    std::env::var("MEND_BENCH_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3)
}

/// Median times (and mend's largest peak RSS) of `runs()` runs of mend
/// and of the native tool, interleaved (mend, native, mend, ...) so that
/// both see the same load; `reset` and a `sync` (untimed) before each.
fn timed(
    mut reset: impl FnMut(),
    mut cmd: impl FnMut() -> Command,
    mut native_reset: impl FnMut(),
    mut native: impl FnMut() -> Command,
) -> ((Duration, u64), Duration) {
    let mut t = Vec::new();
    let mut n = Vec::new();
    let mut rss = 0;
    for _ in 0..runs() {
        reset();
        run(&mut Command::new("sync"));
        let (d, r) = run(&mut cmd());
        t.push(d);
        rss = rss.max(r.unwrap_or(0));
        native_reset();
        run(&mut Command::new("sync"));
        n.push(run(&mut native()).0);
    }
    t.sort();
    n.sort();
    ((t[t.len() / 2], rss), n[n.len() / 2])
}

/// 120 directories of 1,000 small text files.
fn prosody(root: &Path) -> (u64, u64) {
    let mut bytes = 0;
    for d in 0..120 {
        let dir = root.join(format!("host{d:03}%2eexample/accounts"));
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..1000u64 {
            let n = 200 + (i * 7919 + d as u64 * 104_729) % 1800;
            let mut text = format!(
                "return {{\n  [\"user{i}\"] = {{ [\"subscription\"] = \"both\"; [\"name\"] = \"User {i} of host {d}\"; }};\n"
            );
            while (text.len() as u64) < n {
                text.push_str(&format!(
                    "  [\"contact{}@example.org\"] = {{ groups = {{}}; }};\n",
                    text.len()
                ));
            }
            text.truncate(n as usize);
            bytes += n;
            std::fs::write(dir.join(format!("user{i}.dat")), text).unwrap();
        }
    }
    (120_000, bytes)
}

/// 100 photos of 5 MB, incompressible.
fn photos(root: &Path) -> (u64, u64) {
    std::fs::create_dir_all(root).unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut buf = vec![0u8; 5_000_000];
    for i in 0..100 {
        for c in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            c.copy_from_slice(&x.to_le_bytes()[..c.len()]);
        }
        std::fs::write(root.join(format!("IMG_{i:04}.jpg")), &buf).unwrap();
    }
    (100, 500_000_000)
}

fn rm(path: &Path) {
    if path.symlink_metadata().is_ok() {
        if path.is_dir() {
            std::fs::remove_dir_all(path).unwrap();
        } else {
            std::fs::remove_file(path).unwrap();
        }
    }
}

fn runbook(tmp: &Path, data: &Path, snaps: &Path, name: &str, format: &str) -> PathBuf {
    let rb = tmp.join(format!("{name}-{format}.toml"));
    std::fs::write(
        &rb,
        format!(
            r#"[runbook]
name = "bench-{name}-{}"
version = "1.0.0"
summary = "snapshot"
[grants.data]
path = "{}"
access = "read"
[grants.snaps]
path = "{}"
access = "write"
[[steps]]
id = "snap"
uses = "std:snapshot"
grants = ["data", "snaps"]
with = {{ source = "data/{name}", into = "snaps", format = "{format}" }}
"#,
            format.replace('.', "-"),
            data.display(),
            snaps.display()
        ),
    )
    .unwrap();
    rb
}

fn mend(tmp: &Path, rb: &Path) -> Command {
    static N: AtomicUsize = AtomicUsize::new(0);
    let mut c = Command::new("/usr/bin/time");
    c.args(["-f", "maxrss=%M"]).arg(mend_bin());
    c.arg("--state-dir")
        .arg(tmp.join(format!("state-{}", N.fetch_add(1, Ordering::Relaxed))));
    c.arg("--cache-dir").arg(tmp.join("cache"));
    c.arg("--now").arg("1795316400");
    c.arg("run").arg(rb);
    c
}

fn row(label: &str, bytes: u64, mend: (Duration, u64), native: Duration, target: f64) {
    let mbs = |d: Duration| bytes as f64 / 1e6 / d.as_secs_f64();
    let ratio = mbs(mend.0) / mbs(native);
    let met = if ratio >= target { "met" } else { "MISSED" };
    println!(
        "  {label:<46} {:>7.2} s  vs {:>7.2} s  {ratio:>5.2}x (>= {target:.1}x {met})  mend peak RSS {} MiB",
        mend.0.as_secs_f64(),
        native.as_secs_f64(),
        mend.1 / 1024
    );
}

fn main() {
    let tmp = match std::env::var_os("MEND_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir(),
    }
    .expect("a temp dir");
    let tmp = tmp.path();
    let data = tmp.join("data");
    let snaps = tmp.join("snaps");
    std::fs::create_dir_all(&snaps).unwrap();
    println!(
        "std:snapshot vs cp -a and tar --zstd -cf in {}, median of {}\n",
        tmp.display(),
        runs()
    );
    let only = std::env::var("MEND_BENCH_ONLY").unwrap_or_default();
    for (name, make) in [
        ("prosody", prosody as fn(&Path) -> (u64, u64)),
        ("photos", photos),
    ] {
        if !only.is_empty() && only != name {
            continue;
        }
        let (files, bytes) = make(&data.join(name));
        println!("{name}: {files} files, {:.0} MB", bytes as f64 / 1e6);
        let clear = || {
            rm(&snaps);
            std::fs::create_dir_all(&snaps).unwrap();
        };
        let dir_rb = runbook(tmp, &data, &snaps, name, "dir");
        let zst_rb = runbook(tmp, &data, &snaps, name, "tar.zst");
        run(&mut mend(tmp, &dir_rb)); // warm the compiled-step cache
        clear();
        let src = data.join(name);
        let dst = tmp.join("native");
        let (s, d) = (src.display(), dst.display());
        let (m, cp) = timed(
            clear,
            || mend(tmp, &dir_rb),
            || rm(&dst),
            || sh(&format!("cp -a {s} {d} && sync -f {d}")),
        );
        row(
            "directory: std:snapshot vs cp -a && sync -f",
            bytes,
            m,
            cp,
            0.9,
        );
        let tar_file = tmp.join("native.tar.zst");
        let (parent, t) = (data.display(), tar_file.display());
        let (m, tar) = timed(
            clear,
            || mend(tmp, &zst_rb),
            || rm(&tar_file),
            || {
                sh(&format!(
                    "tar --zstd -cf {t} -C {parent} {name} && sync -f {t}"
                ))
            },
        );
        row(
            "tar.zst: std:snapshot vs tar --zstd -cf && sync -f",
            bytes,
            m,
            tar,
            1.0,
        );
        let ours = std::fs::read_dir(&snaps)
            .unwrap()
            .filter_map(|e| e.ok())
            .find(|e| e.file_name().to_string_lossy().ends_with(".tar.zst"))
            .map(|e| e.metadata().unwrap().len())
            .unwrap_or(0);
        let theirs = std::fs::metadata(&tar_file).map(|m| m.len()).unwrap_or(0);
        println!(
            "  archive size: mend {:.1} MB, tar --zstd {:.1} MB ({:+.2}%)\n",
            ours as f64 / 1e6,
            theirs as f64 / 1e6,
            (ours as f64 / theirs.max(1) as f64 - 1.0) * 100.0
        );
        rm(&data.join(name));
        rm(&dst);
        rm(&tar_file);
    }
    println!("  mend: {}", mend_bin());
}
