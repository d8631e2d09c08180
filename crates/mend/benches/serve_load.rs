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
//! Run: cargo bench -p mend --bench serve_load (MEND_BENCH_REPS=N, default
//! 11; MEND_BENCH_DIR for where the tree goes, e.g. /dev/shm). The server
//! runs at nice 10, as an operator's `nice mend serve` would; the viewers
//! are threads of this process.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const MEND: &str = env!("CARGO_BIN_EXE_mend");
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

/// CPU time (user + system) of the children this process has waited for.
fn children_cpu() -> Duration {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// One run: its wall time and its own CPU time. Only the run is waited for
/// between the two `getrusage` calls (the viewers are threads, the server
/// is waited for later), so the difference is the run's.
fn mend_run(state: &Path, runbook: &Path) -> (Duration, Duration) {
    let cpu = children_cpu();
    let start = Instant::now();
    let out = Command::new(MEND)
        .arg("--state-dir")
        .arg(state)
        .arg("run")
        .arg(runbook)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let took = start.elapsed();
    let cpu = children_cpu().saturating_sub(cpu);
    assert!(
        out.status.success(),
        "mend run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (took, cpu)
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

/// One viewer: waits for the run, follows its stream to the end; another
/// thread of it fetches the page and actions once a second meanwhile.
fn viewer(
    port: u16,
    every: Duration,
    stop: Arc<AtomicBool>,
    events: Arc<AtomicU64>,
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
            while !stop.load(Ordering::Relaxed) {
                let n = get(port, &format!("/runs/{id}"))
                    + get(port, &format!("/runs/{id}/actions?step=0"));
                bytes.fetch_add(n as u64, Ordering::Relaxed);
                std::thread::sleep(every);
            }
        })
    };
    if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
        let _ = write!(
            s,
            "GET /runs/{id}/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\r\n"
        );
        let _ = s.set_read_timeout(Some(Duration::from_secs(120)));
        let r = BufReader::new(s);
        for line in r.lines() {
            let Ok(line) = line else { break };
            bytes.fetch_add(line.len() as u64 + 1, Ordering::Relaxed);
            if line.starts_with("event:") {
                events.fetch_add(1, Ordering::Relaxed);
            }
            if line.starts_with("event: run") || line.starts_with("event:run") {
                // The data line after it says whether the run ended; the
                // server closes the stream then.
            }
            if stop.load(Ordering::Relaxed) {
                break;
            }
        }
    }
    let _ = pages.join();
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
        .arg(MEND)
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
    mend_run(&state, &runbook);

    let (mut alone, mut watched) = (Vec::new(), Vec::new());
    let (mut alone_cpu, mut watched_cpu, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let (mut peak, mut per_viewer, mut serve_cpu) = (0u64, Vec::new(), Vec::new());
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
                let (t, cpu) = mend_run(&state, &runbook);
                eprintln!("rep {rep}: alone {t:.2?} (run CPU {cpu:.2?})");
                alone.push(t);
                alone_cpu.push(cpu);
                pair[0] = t;
                continue;
            }
            let (mut serve, port) = start_serve(&state);
            let stop = Arc::new(AtomicBool::new(false));
            let counters: Vec<_> = (0..VIEWERS)
                .map(|_| (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0))))
                .collect();
            let threads: Vec<_> = counters
                .iter()
                .map(|(e, b)| {
                    let (stop, e, b) = (stop.clone(), e.clone(), b.clone());
                    std::thread::spawn(move || viewer(port, every, stop, e, b))
                })
                .collect();
            let (t, cpu) = mend_run(&state, &runbook);
            eprintln!("rep {rep}: with {VIEWERS} viewers {t:.2?} (run CPU {cpu:.2?})");
            watched.push(t);
            watched_cpu.push(cpu);
            pair[1] = t;
            std::thread::sleep(Duration::from_millis(500));
            stop.store(true, Ordering::Relaxed);
            peak = peak.max(peak_rss_kib(serve.id()));
            serve_cpu.push(cpu_secs(serve.id()));
            // Ends every stream still open (a viewer that came late).
            let _ = serve.kill();
            let _ = serve.wait();
            for th in threads {
                let _ = th.join();
            }
            per_viewer.extend(counters.iter().map(|(e, _)| e.load(Ordering::Relaxed)));
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
    println!(
        "  stream events per viewer:          min {} median {} max {}",
        per_viewer.first().unwrap_or(&0),
        per_viewer[per_viewer.len() / 2],
        per_viewer.last().unwrap_or(&0)
    );
}
