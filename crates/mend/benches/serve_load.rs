//! The operating room under load: a run of 50,000 actions (a cache cull of
//! 50,000 old files) timed alone, and with `mend serve` and 50 viewers,
//! each following the run's event stream (SSE) and fetching its page and
//! a page of its actions once a second. Prints the run's median wall time
//! both ways and their ratio (target: within 10%), the server's peak RSS
//! (VmHWM) and what each viewer received; and, for scale, `find -delete`
//! of the same tree (the native tool, which journals nothing).
//!
//! The machine's noise was larger than the effect (the same run alone
//! spread 0.87 to 1.57 s), so each rep runs both ways back to back, the
//! order alternating (alone first in even reps, watched first in odd), and
//! beside wall time it reports the run process's own CPU time (user +
//! system, from `getrusage(RUSAGE_CHILDREN)` around it): what the server
//! and the viewers take from the run shows there only as contention, while
//! a run slowed by its own work shows in both.
//!
//! Beside them, for each run: its context switches, its writes
//! (`/proc/PID/io`), the WAL's size at its end and at most while it ran,
//! a passive checkpoint's result after it (all frames checkpointed: no
//! reader pinned the WAL), and the CPU the server and the viewers took
//! while it ran: on a 2-core machine that is what the run loses. Every
//! viewer's stream is checked against the journal (every event once, in
//! order, up to the run's end), so a server cannot look fast by dropping
//! messages.
//!
//! Run: cargo bench -p mend --bench serve_load (MEND_BENCH_REPS=N, default
//! 11; MEND_BENCH_DIR for where the tree goes, e.g. /dev/shm). The server
//! runs at nice 10, as an operator's `nice mend serve` would; the viewers
//! are threads of this process. To find where the cost is:
//! MEND_BENCH_MODE=serve (the server, no viewer), stream (viewers follow
//! the stream only), pages (they fetch pages only); MEND_BENCH_MEND=PATH
//! (another build's mend, to compare builds in one round);
//! MEND_BENCH_WRAP (a command each run goes under, `{}` its label).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The mend binary: this build's, or MEND_BENCH_MEND (another build's, to
/// compare two builds in the same round).
fn mend() -> String {
    std::env::var("MEND_BENCH_MEND").unwrap_or_else(|_| env!("CARGO_BIN_EXE_mend").into())
}
const FILES: usize = 50_000;
const VIEWERS: usize = 50;

fn populate(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    for d in 0..100 {
        let sub = dir.join(format!("d{d:03}"));
        std::fs::create_dir_all(&sub).unwrap();
        for f in 0..FILES / 100 {
            std::fs::write(sub.join(format!("f{f:04}.bin")), b"cached\n").unwrap();
        }
    }
    let ok = Command::new("find")
        .arg(dir)
        .args([
            "-exec",
            "touch",
            "-h",
            "-d",
            "2020-01-01 00:00:00",
            "{}",
            "+",
        ])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

/// What one run cost, beside its wall time.
#[derive(Default, Clone, Copy)]
struct RunCost {
    wall: Duration,
    /// The run process's own CPU (user + system).
    cpu: Duration,
    /// Voluntary and involuntary context switches of the run.
    vcsw: i64,
    ivcsw: i64,
    /// Bytes the run wrote (`/proc/PID/io` write_bytes, read before it is
    /// reaped) and its write system calls.
    write_bytes: u64,
    syscw: u64,
    /// The WAL's size when the run ended, and the largest seen while it
    /// ran (sampled every 20 ms).
    wal: u64,
    wal_peak: u64,
}

fn rusage(who: libc::c_int) -> libc::rusage {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut u) };
    u
}

fn tv(t: libc::timeval) -> Duration {
    Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000)
}

/// CPU time (user + system) of this process: the viewers' threads (the
/// main thread only waits while a run goes).
fn self_cpu() -> Duration {
    let u = rusage(libc::RUSAGE_SELF);
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn proc_io(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    (field("write_bytes:"), field("syscw:"))
}

/// One run: its wall time and its own CPU time. Only the run is waited for
/// between the two `getrusage` calls (the viewers are threads, the server
/// is waited for later), so the difference is the run's.
fn mend_run(state: &Path, runbook: &Path, label: &str) -> RunCost {
    let before = rusage(libc::RUSAGE_CHILDREN);
    let wal_file = state.join("journal.db-wal");
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (done, wal_file) = (done.clone(), wal_file.clone());
        std::thread::spawn(move || {
            let mut peak = 0;
            while !done.load(Ordering::Relaxed) {
                peak = peak.max(std::fs::metadata(&wal_file).map_or(0, |m| m.len()));
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        })
    };
    let start = Instant::now();
    // E.g. MEND_BENCH_WRAP='perf record -g -o /tmp/run-{}.data --': each
    // run under perf, `{}` its label (alone-3, with-3).
    let mut wrap = std::env::var("MEND_BENCH_WRAP")
        .map(|w| {
            w.split_whitespace()
                .map(|a| a.replace("{}", label))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    wrap.push(mend());
    let mut child = Command::new(&wrap[0])
        .args(&wrap[1..])
        .arg("--state-dir")
        .arg(state)
        .arg("run")
        .arg(runbook)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    // Ended but not reaped: its /proc/PID/io is still there.
    // SAFETY: waitid fills the siginfo it is given.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    unsafe {
        libc::waitid(
            libc::P_PID,
            child.id(),
            &mut info,
            libc::WEXITED | libc::WNOWAIT,
        )
    };
    let wall = start.elapsed();
    let (write_bytes, syscw) = proc_io(child.id());
    let status = child.wait().unwrap();
    done.store(true, Ordering::Relaxed);
    let wal_peak = sampler.join().unwrap();
    let after = rusage(libc::RUSAGE_CHILDREN);
    assert!(status.success(), "mend run: {err}");
    let cpu = (tv(after.ru_utime) + tv(after.ru_stime))
        .saturating_sub(tv(before.ru_utime) + tv(before.ru_stime));
    RunCost {
        wall,
        cpu,
        vcsw: after.ru_nvcsw - before.ru_nvcsw,
        ivcsw: after.ru_nivcsw - before.ru_nivcsw,
        write_bytes,
        syscw,
        wal: std::fs::metadata(&wal_file).map_or(0, |m| m.len()),
        wal_peak,
    }
}

/// `PRAGMA wal_checkpoint(PASSIVE)` by the sqlite3 shell once the run
/// ended (with the server still reading, when there is one): "busy|frames
/// in the WAL|frames checkpointed"; all frames checkpointed means no
/// reader pinned the WAL.
fn wal_checkpoint(state: &Path) -> String {
    Command::new("sqlite3")
        .arg(state.join("journal.db"))
        .arg("PRAGMA wal_checkpoint(PASSIVE);")
        .output()
        .map_or_else(
            |_| "no sqlite3".into(),
            |o| String::from_utf8_lossy(&o.stdout).trim().to_string(),
        )
}

fn show(c: &RunCost) -> String {
    format!(
        "{:.2?} (run CPU {:.2?}, csw {}/{} vol/invol, wrote {} KiB in {} writes, WAL {} KiB at the end, {} KiB at most)",
        c.wall,
        c.cpu,
        c.vcsw,
        c.ivcsw,
        c.write_bytes / 1024,
        c.syscw,
        c.wal / 1024,
        c.wal_peak / 1024
    )
}

fn get(port: u16, path: &str) -> usize {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    );
    let mut body = Vec::new();
    let _ = s.read_to_end(&mut body);
    body.len()
}

/// The newest running run's id, from `/api/runs?status=running`.
fn running_run(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        s,
        "GET /api/runs?status=running HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let at = text.find("\"id\":\"")? + 6;
    Some(text[at..at + 16].to_string())
}

/// What each viewer does (MEND_BENCH_MODE: `full`, `stream`, `pages`,
/// or `serve` for the server with no viewer).
#[derive(Clone, Copy)]
struct Watch {
    viewers: usize,
    stream: bool,
    pages: bool,
}

/// What one viewer's stream brought.
#[derive(Default)]
struct Seen {
    messages: u64,
    /// Change seqs of every message, and of the `event` ones.
    seqs: Vec<i64>,
    events: Vec<i64>,
    /// The data of the last `run` message.
    status: String,
}

/// One viewer: waits for the run, follows its stream to the end; another
/// thread of it fetches the page and actions once a second meanwhile.
fn viewer(
    port: u16,
    every: Duration,
    what: Watch,
    stop: Arc<AtomicBool>,
    got: Arc<Mutex<Seen>>,
    bytes: Arc<AtomicU64>,
) {
    let id = loop {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        if let Some(id) = running_run(port) {
            break id;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let pages = {
        let (stop, bytes, id) = (stop.clone(), bytes.clone(), id.clone());
        std::thread::spawn(move || {
            while what.pages && !stop.load(Ordering::Relaxed) {
                let n = get(port, &format!("/runs/{id}"))
                    + get(port, &format!("/runs/{id}/actions?step=0"));
                bytes.fetch_add(n as u64, Ordering::Relaxed);
                std::thread::sleep(every);
            }
        })
    };
    if !what.stream {
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
    } else {
        // As EventSource does: resume with Last-Event-ID after the stream
        // closes, until the server says 204 (the run is over and nothing
        // is left to send).
        let mut last_id = String::new();
        while !stop.load(Ordering::Relaxed) {
            if !last_id.is_empty() {
                // The server's `retry: 1000`.
                std::thread::sleep(Duration::from_secs(1));
            }
            let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
                break;
            };
            let resume = if last_id.is_empty() {
                String::new()
            } else {
                format!("Last-Event-ID: {last_id}\r\n")
            };
            // HTTP/1.0: the stream comes unchunked, line by line.
            let _ = write!(
                s,
                "GET /runs/{id}/stream HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n{resume}\r\n"
            );
            let _ = s.set_read_timeout(Some(Duration::from_secs(120)));
            let mut r = BufReader::new(s);
            let mut status = String::new();
            let _ = r.read_line(&mut status);
            if !status.contains(" 200 ") {
                break;
            }
            let (mut seq, mut kind, mut data) = (0i64, String::new(), String::new());
            for line in r.lines() {
                let Ok(line) = line else { break };
                bytes.fetch_add(line.len() as u64 + 1, Ordering::Relaxed);
                if let Some(v) = line.strip_prefix("id:") {
                    last_id = v.trim().to_string();
                    seq = last_id
                        .rsplit(':')
                        .next()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(-1);
                } else if let Some(v) = line.strip_prefix("event:") {
                    kind = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data = v.trim().to_string();
                } else if line.is_empty() && !kind.is_empty() {
                    let mut g = got.lock().unwrap();
                    g.messages += 1;
                    if kind == "event" {
                        g.events.push(seq);
                    }
                    if kind == "run" {
                        g.status = data.clone();
                    }
                    g.seqs.push(seq);
                    kind.clear();
                }
                if stop.load(Ordering::Relaxed) {
                    break;
                }
            }
        }
    }
    let _ = pages.join();
}

/// Each viewer got every event of the run, once each and in order, and
/// the run's end: what it saw is what the journal holds (honest figures:
/// a server that dropped messages to keep up would fail here).
fn check_viewers(state: &Path, viewers: &[(Arc<Mutex<Seen>>, Arc<AtomicU64>)]) {
    let j = mend_journal::Journal::open_read_only(state)
        .unwrap()
        .expect("a journal");
    let last = j.last_seq().unwrap();
    let run = j.changes_after(last - 1, None, 1).unwrap().remove(0).run_id;
    let log = j.changes_after(0, Some(&run), usize::MAX >> 1).unwrap();
    let want: Vec<i64> = log
        .iter()
        .filter(|c| matches!(c.change, mend_journal::Change::Event { .. }))
        .map(|c| c.seq)
        .collect();
    for (i, (got, _)) in viewers.iter().enumerate() {
        let g = got.lock().unwrap();
        assert_eq!(
            g.events, want,
            "viewer {i}: events differ from the journal's"
        );
        assert!(
            g.seqs.windows(2).all(|w| w[0] < w[1]),
            "viewer {i}: doubled or out of order"
        );
        assert_eq!(
            g.seqs.last(),
            Some(&last),
            "viewer {i}: did not get the last change"
        );
        assert!(
            g.status.contains("\"committed\""),
            "viewer {i}: no end of the run ({})",
            g.status
        );
    }
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, a)| a);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| f.get(i).and_then(|v| v.parse::<f64>().ok()))
        .sum();
    ticks / 100.0
}

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

// The caller kills and waits for it; a panic here ends the bench anyway.
#[allow(clippy::zombie_processes)]
fn start_serve(state: &Path) -> (Child, u16) {
    let mut child = Command::new("nice")
        .args(["-n", "10"])
        .arg(mend())
        .arg("--state-dir")
        .arg(state)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "mend serve ended");
        if let Some(addr) = line.split("http://").nth(1) {
            let port = addr
                .trim()
                .trim_end_matches('/')
                .rsplit(':')
                .next()
                .unwrap();
            let port = port.parse().unwrap();
            std::thread::spawn(move || for _ in err.lines() {});
            return (child, port);
        }
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let reps: usize = std::env::var("MEND_BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(11);
    // How often each viewer fetches the page and a page of actions: 1 s
    // by default (harsher than a page without JavaScript, which reloads
    // every 5 s).
    let every = Duration::from_secs_f64(
        std::env::var("MEND_BENCH_PAGE_EVERY")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1.0),
    );
    let base = std::env::var_os("MEND_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let tmp = tempfile::Builder::new()
        .prefix("mend-serve-load-")
        .tempdir_in(base)
        .unwrap();
    let cache = tmp.path().join("cache");
    let state = tmp.path().join("state");
    let runbook = tmp.path().join("cull.toml");
    std::fs::write(
        &runbook,
        format!(
            "[runbook]\nname = \"cull-50k\"\nversion = \"1.0.0\"\nsummary = \"cull 50,000 old files\"\n\n\
             [grants.cache]\npath = \"{}\"\naccess = \"write\"\n\n\
             [[steps]]\nid = \"cull\"\nuses = \"std:cache-cull\"\ngrants = [\"cache\"]\n\
             with = {{ path = \"cache\", days = 30 }}\n",
            cache.display()
        ),
    )
    .unwrap();

    // The native tool, for scale: find -delete of the same tree.
    populate(&cache);
    let start = Instant::now();
    let ok = Command::new("find")
        .arg(&cache)
        .args(["-type", "f", "-mtime", "+30", "-delete"])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let native = start.elapsed();
    // A warm-up run: compiles the step into the cache, makes the journal.
    populate(&cache);
    mend_run(&state, &runbook, "warm-up");

    let (mut alone, mut watched) = (Vec::new(), Vec::new());
    let (mut alone_cpu, mut watched_cpu, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let (mut peak, mut per_viewer, mut serve_cpu) = (0u64, Vec::new(), Vec::new());
    let mode = std::env::var("MEND_BENCH_MODE").unwrap_or_else(|_| "full".into());
    let what = Watch {
        viewers: if mode == "serve" { 0 } else { VIEWERS },
        stream: mode == "full" || mode == "stream",
        pages: mode == "full" || mode == "pages",
    };
    eprintln!(
        "mode {mode}: {} viewers, stream {}, pages {}",
        what.viewers, what.stream, what.pages
    );
    let mut viewers_cpu = Vec::new();
    for rep in 0..reps {
        let mut pair = [Duration::ZERO; 2];
        // Alternate which goes first, so a drift of the machine's load
        // falls on both sides.
        let order = if rep % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for with in order {
            populate(&cache);
            if !with {
                let c = mend_run(&state, &runbook, &format!("alone-{rep}"));
                let (t, cpu) = (c.wall, c.cpu);
                eprintln!(
                    "rep {rep}: alone {}, checkpoint after: {}",
                    show(&c),
                    wal_checkpoint(&state)
                );
                alone.push(t);
                alone_cpu.push(cpu);
                pair[0] = t;
                continue;
            }
            let (mut serve, port) = start_serve(&state);
            let stop = Arc::new(AtomicBool::new(false));
            let counters: Vec<_> = (0..what.viewers)
                .map(|_| {
                    (
                        Arc::new(Mutex::new(Seen::default())),
                        Arc::new(AtomicU64::new(0)),
                    )
                })
                .collect();
            let threads: Vec<_> = counters
                .iter()
                .map(|(e, b)| {
                    let (stop, e, b) = (stop.clone(), e.clone(), b.clone());
                    std::thread::spawn(move || viewer(port, every, what, stop, e, b))
                })
                .collect();
            let (vc, sc) = (self_cpu(), cpu_secs(serve.id()));
            let c = mend_run(&state, &runbook, &format!("with-{rep}"));
            let (vc, sc) = (self_cpu().saturating_sub(vc), cpu_secs(serve.id()) - sc);
            let (t, cpu) = (c.wall, c.cpu);
            eprintln!(
                "rep {rep}: with {} viewers {} | during it: viewers CPU {vc:.2?}, server CPU {sc:.2} s",
                what.viewers,
                show(&c)
            );
            eprintln!("rep {rep}: checkpoint after: {}", wal_checkpoint(&state));
            viewers_cpu.push(vc);
            watched.push(t);
            watched_cpu.push(cpu);
            pair[1] = t;
            // Time for a viewer to resume once more (after its 1 s retry).
            std::thread::sleep(Duration::from_millis(1500));
            stop.store(true, Ordering::Relaxed);
            peak = peak.max(peak_rss_kib(serve.id()));
            serve_cpu.push(cpu_secs(serve.id()));
            // Ends every stream still open (a viewer that came late).
            let _ = serve.kill();
            let _ = serve.wait();
            for th in threads {
                let _ = th.join();
            }
            if what.stream {
                check_viewers(&state, &counters);
            }
            per_viewer.extend(counters.iter().map(|(e, _)| e.lock().unwrap().messages));
            let bytes: u64 = counters
                .iter()
                .map(|(_, b)| b.load(Ordering::Relaxed))
                .sum();
            eprintln!("rep {rep}: viewers read {} KiB", bytes / 1024);
        }
        ratios.push(pair[1].as_secs_f64() / pair[0].as_secs_f64());
    }
    let spread = |v: &[Duration]| {
        let lo = v.iter().min().copied().unwrap_or_default();
        let hi = v.iter().max().copied().unwrap_or_default();
        format!("{lo:.2?} to {hi:.2?}")
    };
    let (alone_spread, watched_spread) = (spread(&alone), spread(&watched));
    let (ac, wc) = (median(alone_cpu), median(watched_cpu));
    ratios.sort_by(f64::total_cmp);
    let paired = ratios[ratios.len() / 2];
    let (a, w) = (median(alone), median(watched));
    per_viewer.sort_unstable();
    println!("serve_load: a cull of {FILES} files ({reps} reps each, medians)");
    println!("  find -delete (native, no journal): {native:.2?}");
    println!(
        "  mend run alone:                    {a:.2?} wall (spread {alone_spread}), {ac:.2?} CPU"
    );
    println!(
        "  mend run with {VIEWERS} viewers:          {w:.2?} wall (spread {watched_spread}), {wc:.2?} CPU  ({:+.1}% wall, {:+.1}% CPU)",
        (w.as_secs_f64() / a.as_secs_f64() - 1.0) * 100.0,
        (wc.as_secs_f64() / ac.as_secs_f64() - 1.0) * 100.0
    );
    println!(
        "  median of the reps' paired ratios: {:+.1}% wall (target: within 10%)",
        (paired - 1.0) * 100.0
    );
    println!("  mend serve peak RSS:               {} MiB", peak / 1024);
    serve_cpu.sort_by(f64::total_cmp);
    println!(
        "  mend serve CPU per run:            {:.1} s (median; pages every {every:?} per viewer)",
        serve_cpu[serve_cpu.len() / 2]
    );
    viewers_cpu.sort();
    println!(
        "  the {} viewers' CPU during a run:   {:.2?} (median; threads of this process)",
        what.viewers,
        viewers_cpu
            .get(viewers_cpu.len() / 2)
            .copied()
            .unwrap_or_default()
    );
    println!(
        "  stream events per viewer:          min {} median {} max {}",
        per_viewer.first().unwrap_or(&0),
        per_viewer[per_viewer.len() / 2],
        per_viewer.last().unwrap_or(&0)
    );
}
