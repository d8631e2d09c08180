//! The bundled steps against the native tools they replace, on the same
//! generated data in the same run. Prints the median wall time of each (whole
//! processes, started from here), the ratio mend/native and the target:
//!
//! 1. checksum-verify: `mend plan` verifying one 1 GiB file (`sha256:<digest>`)
//!    vs `openssl dgst -sha256`, with GB/s; for reference `sha256sum`, and the
//!    `sha2` crate in this process reading 1 MiB at a time as the host does,
//!    into a page-aligned buffer and into one 16 bytes past a page boundary.
//!    The file is in the page cache. Target: at least 0.9x openssl's GB/s.
//! 2. cache-cull: `mend run` culling `minutes = 60` (no empty-dir removal) in
//!    100,000 tiny files in 1,000 nested dirs, half older than the cut, vs
//!    `find DIR -type f -mmin +60 -delete`; in a `disposable` grant (unlinks,
//!    as find) and in a plain one (trash, then purge). Target: at most 1.3x.
//! 3. archive-cleanup: `mend run` on 10,000 WAL segments (tiny files), up to
//!    the middle one, vs `pg_archivecleanup DIR SEGMENT`. Target: at most 1.5x.
//!
//! Before each run that removes files, the files it removed are written again
//! (same names, sizes and times); only the command is timed, and afterwards
//! exactly the expected files must be gone. `mend plan` rows show how much of
//! a run is planning (walk, plan) rather than journaling and applying. mend
//! gets a fresh `--state-dir` per run and one `--cache-dir`, warmed untimed.
//!
//! Run: cargo bench -p mend --bench steps (a few minutes; needs openssl,
//! sha256sum, find, PostgreSQL 15's pg_archivecleanup, 1.1 GiB in $TMPDIR).
//! It times the `mend` binary cargo builds for it: target/release/mend.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use sha2::Digest;

const MEND: &str = env!("CARGO_BIN_EXE_mend");
const PG_ARCHIVECLEANUP: &str = "/usr/lib/postgresql/15/bin/pg_archivecleanup";
const HASH_RUNS: usize = 5;
const RM_RUNS: usize = 3;
const RUNBOOK: &str = r#"[runbook]
name = "bench-steps"
version = "1.0.0"
summary = "a bundled step against its native tool"

[grants.data]
path = "DIR"
access = "ACCESS"
disposable = DISPOSABLE

[[steps]]
id = "bench"
uses = "std:STEP"
grants = ["data"]
with = WITH
"#;

/// A generated file: where, its mtime, and whether the run removes it.
type Gen = (PathBuf, SystemTime, bool);

/// Writes a one-step runbook `name.toml` beside `dir`, with `dir` as grant
/// `data`: writable if `disposable` is given, else read-only.
fn runbook(dir: &Path, name: &str, step: &str, disposable: Option<bool>, with: &str) -> PathBuf {
    let access = disposable.map_or("read", |_| "write");
    let text = RUNBOOK.replace("DIR", &dir.display().to_string());
    let text = text.replace("ACCESS", access).replace("STEP", step);
    let text = text.replace("DISPOSABLE", &disposable.unwrap_or(false).to_string());
    let path = dir.with_file_name(format!("{name}.toml"));
    std::fs::write(&path, text.replace("WITH", with)).expect("write the runbook");
    path
}

/// Runs a process to the end and returns its stdout and how long it took.
fn run(cmd: &mut Command) -> (String, Duration) {
    let start = Instant::now();
    let out = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).output();
    let (elapsed, out) = (start.elapsed(), out.expect("start the command"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{cmd:?} failed: {err}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), elapsed)
}

/// `mend ARGS RUNBOOK` with a fresh state dir and the shared cache dir.
fn mend(tmp: &Path, args: &[&str], runbook: &Path) -> Command {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let state = tmp.join(format!("state-{}", RUNS.fetch_add(1, Ordering::Relaxed)));
    let mut cmd = Command::new(MEND);
    cmd.arg("--state-dir").arg(state);
    cmd.arg("--cache-dir").arg(tmp.join("cache"));
    cmd.args(args).arg(runbook);
    cmd
}

fn median(mut t: Vec<Duration>) -> Duration {
    t.sort();
    t[t.len() / 2]
}

/// The median of `n` runs of a command that changes nothing.
fn median_of(n: usize, mut cmd: impl FnMut() -> Command) -> Duration {
    median((0..n).map(|_| run(&mut cmd()).1).collect())
}

/// A table row; `target` is the highest ratio mend/native that meets it.
fn row(label: &str, mend: Duration, native: Duration, target: Option<f64>) {
    let (m, n) = (mend.as_secs_f64(), native.as_secs_f64());
    let goal = target.map_or(String::new(), |t| format!("<= {t:.2}x"));
    let met = target.map_or("", |t| if m <= t * n { "met" } else { "MISSED" });
    let r = m / n;
    let line = format!("  {label:<46} {m:>8.3} {n:>8.3} {r:>7.2}x  {goal:<8} {met}");
    println!("{}", line.trim_end());
}

/// Writes each generated file that is missing (all at first; after a run,
/// those it removed), with the same bytes and mtime each time.
fn regenerate(files: &[Gen]) {
    for (path, mtime, _) in files.iter().filter(|(path, ..)| !path.exists()) {
        std::fs::create_dir_all(path.parent().unwrap()).expect("create dirs");
        let mut f = File::create(path).expect("create a file");
        f.write_all(b"generated bytes").expect("write a file");
        f.set_modified(*mtime).expect("set mtime");
    }
}

/// SHA-256 of a file read in 1 MiB chunks into a buffer `offset` bytes past a
/// page boundary, as the host reads (its buffer is wherever malloc puts it).
fn sha2_reads(path: &Path, offset: usize) -> (String, Duration) {
    let start = Instant::now();
    let mut raw = vec![0u8; (1 << 20) + 8192];
    let skip = (4096 - raw.as_ptr() as usize % 4096) % 4096 + offset;
    let buf = &mut raw[skip..skip + (1 << 20)];
    let (mut f, mut h) = (File::open(path).unwrap(), sha2::Sha256::new());
    while let n @ 1.. = f.read(buf).unwrap() {
        h.update(&buf[..n]);
    }
    (hex::encode(h.finalize()), start.elapsed())
}

fn checksum(tmp: &Path) {
    let (dir, gib) = (tmp.join("verify"), 1u64 << 30);
    let big = dir.join("big.bin");
    std::fs::create_dir_all(&dir).unwrap();
    let mut f = std::io::BufWriter::new(File::create(&big).unwrap());
    let mut x = 0x9E37_79B9_7F4A_7C15u64; // xorshift: incompressible, quick
    for _ in 0..gib / 8 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        f.write_all(&x.to_le_bytes()).unwrap();
    }
    f.into_inner().unwrap().sync_all().unwrap();
    let openssl = || run(Command::new("openssl").args(["dgst", "-sha256"]).arg(&big));
    let sha256sum = || run(Command::new("sha256sum").arg(&big));
    let digest = openssl().0.rsplit("= ").next().unwrap().trim().to_string();
    assert!(sha256sum().0.starts_with(&digest) && sha2_reads(&big, 0).0 == digest);
    let with = format!("{{ files = {{ \"data/big.bin\" = \"sha256:{digest}\" }} }}");
    let rb = runbook(&dir, "verify", "checksum-verify", None, &with);
    let plan = || run(&mut mend(tmp, &["plan"], &rb));
    assert!(plan().0.contains("1 OK"), "the plan verifies the file"); // warms the cache
    let mut t: [Vec<Duration>; 5] = Default::default();
    for _ in 0..HASH_RUNS {
        t[0].push(plan().1);
        t[1].push(openssl().1);
        t[2].push(sha256sum().1);
        t[3].push(sha2_reads(&big, 0).1);
        t[4].push(sha2_reads(&big, 16).1);
    }
    let [m, o, s, aligned, off16] = t.map(median);
    println!("checksum-verify: one 1 GiB file, sha256, median of {HASH_RUNS}");
    for (native, n, target) in [
        ("openssl dgst -sha256", o, Some(1.0 / 0.9)),
        ("sha256sum", s, None),
        ("sha2, page-aligned 1 MiB reads", aligned, None),
        ("sha2, 1 MiB reads at page + 16 B", off16, None),
    ] {
        row(&format!("mend plan vs {native}"), m, n, target);
    }
    let gbs = |d: Duration| format!("{:.2}", gib as f64 / 1e9 / d.as_secs_f64());
    let [gm, go, gs, ga, g16] = [m, o, s, aligned, off16].map(gbs);
    println!("  GB/s: mend {gm}, openssl {go}, sha256sum {gs}, sha2 {ga} (+16 B: {g16})");
    if m.as_secs_f64() * 0.9 > o.as_secs_f64() {
        let pct = 100.0 * o.as_secs_f64() / m.as_secs_f64();
        println!("  NOTE: mend hashes at {pct:.0}% of openssl's throughput. The host hashes");
        println!("  with the sha2 crate, here {ga} GB/s into a page-aligned buffer and {g16}");
        println!("  GB/s 16 B past a page boundary, where glibc puts a fresh 1 MiB Vec.");
    }
}

/// Times a removal step's `mend run` in a disposable grant and in a plain one,
/// and its `mend plan`, against `native` (program and arguments) on `files`
/// in `dir`; every removal run must remove exactly the files marked to go.
fn removal(tmp: &Path, dir: &Path, step: &str, with: &str, files: &[Gen], native: &[&str]) {
    regenerate(files);
    let unlink = runbook(dir, "unlink", step, Some(true), with);
    let trash = runbook(dir, "trash", step, Some(false), with);
    run(&mut mend(tmp, &["plan"], &unlink)); // warms the cache
    let plan = median_of(RM_RUNS, || mend(tmp, &["plan"], &unlink));
    let cmd = |k| match k {
        0 => {
            let mut cmd = Command::new(native[0]);
            cmd.args(&native[1..]);
            cmd
        }
        1 => mend(tmp, &["run"], &unlink),
        _ => mend(tmp, &["run"], &trash),
    };
    let mut t: [Vec<Duration>; 3] = Default::default();
    for _ in 0..RM_RUNS {
        for (k, t) in t.iter_mut().enumerate() {
            regenerate(files);
            let mut cmd = cmd(k);
            t.push(run(&mut cmd).1);
            let mut wrong = files.iter().filter(|(p, _, gone)| p.exists() == *gone);
            assert!(
                wrong.next().is_none(),
                "{cmd:?} left or removed wrong files"
            );
        }
    }
    let [n, d, p] = t.map(median);
    let name = Path::new(native[0]).file_name().unwrap().to_string_lossy();
    let target = if step == "cache-cull" { 1.3 } else { 1.5 };
    let label = |what| format!("mend {what} vs {name}");
    row(&label("run, disposable"), d, n, Some(target));
    row(&label("run, trash + purge"), p, n, Some(target));
    row(&label("plan only"), plan, n, None);
}

fn main() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let tmp = tmp.path();
    println!("mend steps vs native tools, same data: median wall time in seconds\n");
    println!("  {:<46}     mend   native    ratio  target", "");
    checksum(tmp);

    let (dir, now) = (tmp.join("cull").join("data"), SystemTime::now());
    let files: Vec<Gen> = (0..100_000u32)
        .map(|i| {
            let j = i / 2; // an older and a younger file side by side, in 1,000 dirs
            let path = dir.join(format!("{:02}/{:02}/f{i}.bin", j % 20, j / 20 % 50));
            let old = i % 2 == 0; // 2 to 3 hours old, or at most 30 minutes
            let age = if old { 7200 + i % 3600 } else { i % 1800 };
            (path, now - Duration::from_secs(age.into()), old)
        })
        .collect();
    println!("cache-cull: 100,000 files, 50,000 older than 60 minutes, median of {RM_RUNS}");
    let with = "{ path = \"data\", minutes = 60, remove_empty_dirs = false }";
    let d = dir.to_str().unwrap();
    let find = ["find", d, "-type", "f", "-mmin", "+60", "-delete"];
    removal(tmp, &dir, "cache-cull", with, &files, &find);

    if !Path::new(PG_ARCHIVECLEANUP).exists() {
        return println!("archive-cleanup: skipped, no {PG_ARCHIVECLEANUP}\n\n  mend: {MEND}");
    }
    let dir = tmp.join("wal").join("data");
    let name = |i: u32| format!("00000001{:08X}{:08X}", i / 256, i % 256);
    let files: Vec<Gen> = (0..10_000)
        .map(|i| (dir.join(name(i)), now, i < 5_000))
        .collect();
    println!("archive-cleanup: 10,000 segments, 5,000 before the cut, median of {RM_RUNS}");
    let (cut, d) = (name(5_000), dir.to_str().unwrap());
    let with = format!("{{ path = \"data\", oldest_kept = \"{cut}\" }}");
    let native = [PG_ARCHIVECLEANUP, d, &cut];
    removal(tmp, &dir, "archive-cleanup", &with, &files, &native);
    println!("\n  mend: {MEND}");
}
