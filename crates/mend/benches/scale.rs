//! A cache of many files: `mend run` of std:cache-cull against `find -type f
//! -mmin +60 -delete` on the same tree in the same run, and std:archive-cleanup
//! against `pg_archivecleanup` on 10,000 WAL segments. Prints, for each
//! command, its wall time, its peak RSS (from `wait4`'s rusage of that child
//! alone) and, for mend, the journal's size after the run.
//!
//! The tree: N files of 100 B in 1,000 directories (`DD/DD/`), half of them
//! 2 to 3 hours old (removed), half at most 30 minutes old (kept). Before
//! each command the files the previous one removed are written again (same
//! names, sizes and times); afterwards exactly the old files must be gone.
//!
//! Run: cargo bench -p mend --bench scale
//! Env: MEND_BENCH_DIR (where the trees go; default $TMPDIR; /dev/shm shows
//! the engine's own cost, a disk adds the disk's), MEND_BENCH_FILES (tree
//! sizes, default `100000,1000000`;
//! empty for archive-cleanup alone), MEND_BENCH_MEND (a mend binary to time
//! instead of the one cargo built, e.g. an older build for a before/after).
//! Targets (issue 18): disposable run <= 1.3x find on tmpfs, trash + purge
//! <= 2x, peak RSS < 64 MB and journal < 16 MB at 1,000,000 files;
//! archive-cleanup <= 1.5x pg_archivecleanup. The archive-cleanup rows are
//! each the median of MEND_BENCH_WAL_RUNS runs (default 9; 0 skips them),
//! pg_archivecleanup and mend in turn: one takes tens of milliseconds, and
//! one run swings by half. There mend keeps its journal from run to run, as
//! the cleanup a timer runs every day does (a first run, not timed, makes
//! it); the cull's runs each start a fresh one, whose size is that run's.

use std::fs::File;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

const PG_BIN: &str = "/usr/lib/postgresql";

/// What one command cost.
struct Cost {
    wall: Duration,
    /// Peak resident set of the child, bytes.
    rss: u64,
    /// The journal's size after a mend run (database and WAL), bytes.
    journal: Option<u64>,
}

fn mend_bin() -> PathBuf {
    std::env::var_os("MEND_BENCH_MEND")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_mend")))
}

/// Runs `cmd` to the end; its wall time and its own peak RSS (wait4).
// Reaped by wait4 itself, which alone gives that child's rusage.
#[allow(clippy::zombie_processes)]
fn measure(cmd: &mut Command) -> (Duration, u64) {
    let start = Instant::now();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the command");
    let pid = child.id() as libc::pid_t;
    let mut stderr = child.stderr.expect("piped");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut s).ok();
        s
    });
    let mut status = 0;
    // SAFETY: a plain rusage out-parameter; the child is ours and not yet reaped.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let got = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    let wall = start.elapsed();
    assert_eq!(got, pid, "wait4: {}", std::io::Error::last_os_error());
    let err = reader.join().unwrap_or_default();
    let status = std::process::ExitStatus::from_raw(status);
    assert!(status.success(), "{cmd:?} failed ({status}): {err}");
    (wall, ru.ru_maxrss as u64 * 1024)
}

fn journal_bytes(state: &Path) -> u64 {
    ["journal.db", "journal.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(state.join(f)).ok())
        .map(|m| m.len())
        .sum()
}

/// A generated file: where, its mtime, and whether the run removes it.
type Gen = (PathBuf, SystemTime, bool);

/// The tree's files, made one at a time from their number: a list of a
/// million paths would make this process big, and a child started by
/// `posix_spawn` (vfork) starts its peak RSS from its parent's, so every
/// command's RSS would read at least that.
struct Files {
    n: u32,
    at: Box<dyn Fn(u32) -> Gen>,
}

impl Files {
    fn iter(&self) -> impl Iterator<Item = Gen> + '_ {
        (0..self.n).map(|i| (self.at)(i))
    }
}

fn regenerate(files: &Files) {
    let body = [b'x'; 100];
    for (path, mtime, _) in files.iter().filter(|(p, ..)| !p.exists()) {
        let mut f = match File::create(&path) {
            Ok(f) => f,
            Err(_) => {
                std::fs::create_dir_all(path.parent().unwrap()).expect("create dirs");
                File::create(path).expect("create a file")
            }
        };
        f.write_all(&body).expect("write a file");
        f.set_modified(mtime).expect("set mtime");
    }
}

fn check(files: &Files, what: &str) {
    let wrong = files
        .iter()
        .filter(|(p, _, gone)| p.exists() == *gone)
        .count();
    assert_eq!(wrong, 0, "{what} left or removed {wrong} wrong files");
}

fn runbook(dir: &Path, name: &str, step: &str, disposable: Option<bool>, with: &str) -> PathBuf {
    let access = if disposable.is_some() {
        "write"
    } else {
        "read"
    };
    let text = format!(
        "[runbook]\nname = \"bench-scale\"\nversion = \"1.0.0\"\nsummary = \"a big cull\"\n\n\
         [grants.data]\npath = \"{}\"\naccess = \"{access}\"\ndisposable = {}\n\n\
         [[steps]]\nid = \"bench\"\nuses = \"std:{step}\"\ngrants = [\"data\"]\nwith = {with}\n",
        dir.display(),
        disposable.unwrap_or(false)
    );
    let path = dir.with_file_name(format!("{name}.toml"));
    // Written before the tree is generated: its directory may not exist yet.
    std::fs::create_dir_all(path.parent().unwrap()).expect("make the bench directory");
    std::fs::write(&path, text).expect("write the runbook");
    path
}

/// Where a mend command keeps its state between runs.
#[derive(Clone, Copy)]
enum State {
    /// A fresh state dir, removed after the run: the journal is this run's
    /// alone (a first run also makes the state dir's reserve).
    Fresh,
    /// The state dir named so under `tmp`, kept from run to run, as the
    /// journal of a cleanup that a timer runs every day.
    Kept(&'static str),
}

/// `mend ARGS RUNBOOK`; its cost and journal size.
fn mend(tmp: &Path, args: &[&str], rb: &Path, state: State) -> Cost {
    let dir = match state {
        State::Fresh => tmp.join("state"),
        State::Kept(name) => tmp.join(name),
    };
    if let State::Fresh = state {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let mut cmd = Command::new(mend_bin());
    cmd.arg("--state-dir").arg(&dir);
    cmd.arg("--cache-dir").arg(tmp.join("cache"));
    cmd.args(args).arg(rb);
    let (wall, rss) = measure(&mut cmd);
    let journal = Some(journal_bytes(&dir));
    if let State::Fresh = state {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Cost { wall, rss, journal }
}

fn native(argv: &[&str]) -> Cost {
    let (wall, rss) = measure(Command::new(argv[0]).args(&argv[1..]));
    Cost {
        wall,
        rss,
        journal: None,
    }
}

fn mb(b: u64) -> f64 {
    b as f64 / 1e6
}

fn row(label: &str, c: &Cost, native: &Cost, target: Option<f64>) {
    let r = c.wall.as_secs_f64() / native.wall.as_secs_f64();
    let goal = target.map_or(String::new(), |t| {
        format!("<= {t:.1}x {}", if r <= t { "met" } else { "MISSED" })
    });
    let journal = c.journal.map_or("-".into(), |j| format!("{:.1}", mb(j)));
    println!(
        "  {label:<34} {:>8.3} {:>7.2}x {:>9.1} {:>9}  {goal}",
        c.wall.as_secs_f64(),
        r,
        mb(c.rss),
        journal
    );
}

fn header() {
    println!(
        "  {:<34} {:>8} {:>8} {:>9} {:>9}",
        "", "wall s", "ratio", "RSS MB", "journal MB"
    );
}

/// The median wall time (and the largest RSS and journal) of each command
/// of `cmds`, run `runs` times in turn (one round runs each once), the
/// tree regenerated before each run: a run of 20 ms swings by half from
/// one to the next, and in turn a slow spell of the machine slows every
/// command alike.
fn medians(runs: usize, files: &Files, cmds: &mut [(&str, &mut dyn FnMut() -> Cost)]) -> Vec<Cost> {
    let mut costs: Vec<Vec<Cost>> = cmds.iter().map(|_| Vec::new()).collect();
    for _ in 0..runs {
        for ((what, f), costs) in cmds.iter_mut().zip(&mut costs) {
            regenerate(files);
            costs.push(f());
            check(files, what);
        }
    }
    costs
        .into_iter()
        .map(|mut costs| {
            let rss = costs.iter().map(|c| c.rss).max().unwrap_or(0);
            let journal = costs.iter().filter_map(|c| c.journal).max();
            costs.sort_by_key(|c| c.wall);
            let mid = costs.swap_remove(costs.len() / 2);
            Cost {
                wall: mid.wall,
                rss,
                journal,
            }
        })
        .collect()
}

/// The most time a run may take, as a multiple of the native tool's (issue
/// 18); the trash run of archive-cleanup has none.
struct Targets {
    disposable: f64,
    trash: Option<f64>,
}

/// Removal runs of `step` on `files` in `dir` against `argv`: the native
/// tool, then mend in a disposable grant, in a plain one (trash, purged when
/// the run commits) and its plan alone; each the median of `runs`, in turn.
/// `state`: where mend keeps its journal; a kept one gets a first run that
/// is not timed (it makes the journal and the reserve).
#[allow(clippy::too_many_arguments)]
fn removal(
    tmp: &Path,
    dir: &Path,
    step: &str,
    with: &str,
    files: &Files,
    argv: &[&str],
    targets: Targets,
    runs: usize,
    kept: bool,
) {
    let unlink = runbook(dir, "unlink", step, Some(true), with);
    let trash = runbook(dir, "trash", step, Some(false), with);
    let (d_state, p_state) = if kept {
        (State::Kept("state-unlink"), State::Kept("state-trash"))
    } else {
        (State::Fresh, State::Fresh)
    };
    regenerate(files);
    mend(tmp, &["plan"], &unlink, State::Fresh); // warms the component cache
    if kept {
        for (rb, state) in [(&unlink, d_state), (&trash, p_state)] {
            regenerate(files);
            mend(tmp, &["run"], rb, state);
            check(files, "the first run");
        }
    }
    let name = Path::new(argv[0]).file_name().unwrap().to_string_lossy();
    let c = medians(
        runs,
        files,
        &mut [
            (&name, &mut || native(argv)),
            ("mend run (disposable)", &mut || {
                mend(tmp, &["run"], &unlink, d_state)
            }),
            ("mend run (trash)", &mut || {
                mend(tmp, &["run"], &trash, p_state)
            }),
        ],
    );
    let (n, d, p) = (&c[0], &c[1], &c[2]);
    row(&name, n, n, None);
    row("mend run, disposable", d, n, Some(targets.disposable));
    row("mend run, trash + purge", p, n, targets.trash);
    regenerate(files);
    let plan = mend(tmp, &["plan"], &unlink, State::Fresh);
    row("mend plan alone", &plan, n, None);
}

fn cull(root: &Path, n: u32) {
    let tmp = root.join(format!("cull-{n}"));
    let dir = tmp.join("data");
    let now = SystemTime::now();
    let base = dir.clone();
    let files = Files {
        n,
        at: Box::new(move |i| {
            let j = i / 2; // an older and a younger file side by side, in 1,000 dirs
            let path = base.join(format!("{:02}/{:02}/f{i}.bin", j % 20, j / 20 % 50));
            let old = i % 2 == 0; // 2 to 3 hours old, or at most 30 minutes
            let age = if old { 7200 + i % 3600 } else { i % 1800 };
            (path, now - Duration::from_secs(age.into()), old)
        }),
    };
    println!(
        "cache-cull: {n} files of 100 B in 1,000 dirs, {} older than 60 minutes, in {}",
        n / 2 + n % 2,
        root.display()
    );
    header();
    let d = dir.to_str().unwrap();
    let find = ["find", d, "-type", "f", "-mmin", "+60", "-delete"];
    let with = "{ path = \"data\", minutes = 60, remove_empty_dirs = false }";
    let targets = Targets {
        disposable: 1.3,
        trash: Some(2.0),
    };
    removal(
        &tmp,
        &dir,
        "cache-cull",
        with,
        &files,
        &find,
        targets,
        1,
        false,
    );
    std::fs::remove_dir_all(&tmp).expect("remove the tree");
}

fn pg_archivecleanup() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(PG_BIN)
        .ok()?
        .filter_map(|e| Some(e.ok()?.path().join("bin/pg_archivecleanup")))
        .filter(|p| p.exists())
        .collect();
    found.sort();
    found.pop()
}

fn wal(root: &Path) {
    let Some(tool) = pg_archivecleanup() else {
        return println!("archive-cleanup: skipped, no {PG_BIN}/*/bin/pg_archivecleanup");
    };
    let tmp = root.join("wal");
    let dir = tmp.join("data");
    let now = SystemTime::now();
    let name = |i: u32| format!("00000001{:08X}{:08X}", i / 256, i % 256);
    let base = dir.clone();
    let files = Files {
        n: 10_000,
        at: Box::new(move |i| (base.join(name(i)), now, i < 5_000)),
    };
    let runs = std::env::var("MEND_BENCH_WAL_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(9);
    if runs == 0 {
        return println!("archive-cleanup: skipped, MEND_BENCH_WAL_RUNS=0");
    }
    println!(
        "archive-cleanup: 10,000 segments, 5,000 before the cut (median of {runs} runs in turn; \
         mend's journal kept from run to run, as a daily cleanup's)"
    );
    header();
    let (cut, d) = (name(5_000), dir.to_str().unwrap());
    let with = format!("{{ path = \"data\", oldest_kept = \"{cut}\" }}");
    let tool = tool.to_str().unwrap();
    removal(
        &tmp,
        &dir,
        "archive-cleanup",
        &with,
        &files,
        &[tool, d, &cut],
        Targets {
            disposable: 1.5,
            trash: None,
        },
        runs,
        true,
    );
    std::fs::remove_dir_all(&tmp).expect("remove the segments");
}

fn main() {
    let base = std::env::var_os("MEND_BENCH_DIR").map(PathBuf::from);
    let tmp = match &base {
        Some(b) => tempfile::tempdir_in(b),
        None => tempfile::tempdir(),
    }
    .expect("a temp dir");
    let sizes: Vec<u32> = std::env::var("MEND_BENCH_FILES")
        .unwrap_or_else(|_| "100000,1000000".into())
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.trim()
                .parse()
                .expect("MEND_BENCH_FILES: counts, comma-separated")
        })
        .collect();
    println!("mend on many files vs the native tools, one run each\n");
    for n in sizes {
        cull(tmp.path(), n);
        println!();
    }
    wal(tmp.path());
    println!("\n  mend: {}", mend_bin().display());
}
