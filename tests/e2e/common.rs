//! Helpers for driving the `mend` binary on generated fixtures.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The binary under test.
pub fn mend_bin() -> &'static str {
    env!("CARGO_BIN_EXE_mend")
}

/// A TCP port on 127.0.0.1 for a service a test starts (sshd, nginx, a
/// registry, PostgreSQL). Not the kernel's `bind(0)` choice, which is free
/// only until the listener closes: the next test, or any outgoing
/// connection, may take it before the service binds it, and a test then
/// talks to another test's sshd ("host key changed"). These come from a
/// counter of this process, below Linux's ephemeral range (32768 and up),
/// so no two fixtures of one run and no outgoing connection share one;
/// each is checked free.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Runs of tests side by side (two checkouts) start at other places.
    let base = 20_000 + (std::process::id() % 40) * 300;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (base + n % 12_000) as u16;
        if port < 32_000 && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
        assert!(n < 24_000, "no free port below 32000 on 127.0.0.1");
    }
}

/// `mend ARGS` held at a point (`MEND_PAUSE_AT=POINT@gate`) while a test
/// changes the world under it: [`Held::wait`] returns once the run holds
/// there, [`Held::release`] lets it go on and returns its exit code and
/// output. No timing: the run says where it is by `gate.waiting`.
pub struct Held {
    child: std::process::Child,
    gate: PathBuf,
    point: String,
}

impl Held {
    pub fn start(f: &Fixture, args: &[&str], point: &str) -> Held {
        let gate = f.path("gate");
        let child = Command::new(mend_bin())
            .arg("--state-dir")
            .arg(f.state())
            .arg("--cache-dir")
            .arg(shared_cache())
            .args(args)
            .env("MEND_PAUSE_AT", format!("{point}@{}", gate.display()))
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        Held {
            child,
            gate,
            point: point.to_string(),
        }
    }

    /// Until the run holds at its point; panics with its output if it
    /// ends first (the point was never reached), or after 120 s.
    pub fn wait(&mut self) {
        let mut waiting = self.gate.clone().into_os_string();
        waiting.push(".waiting");
        let start = std::time::Instant::now();
        while !Path::new(&waiting).exists() {
            let ended = self.child.try_wait().unwrap().is_some();
            if ended || start.elapsed() > std::time::Duration::from_secs(120) {
                use std::io::Read as _;
                let _ = self.child.kill();
                let _ = self.child.wait();
                let mut text = String::new();
                if let Some(mut o) = self.child.stdout.take() {
                    let _ = o.read_to_string(&mut text);
                }
                if let Some(mut e) = self.child.stderr.take() {
                    let _ = e.read_to_string(&mut text);
                }
                panic!("the run never held at {}:\n{text}", self.point);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Let the run go on; its exit code and its stdout and stderr.
    pub fn release(self) -> (Option<i32>, String) {
        std::fs::write(&self.gate, "").unwrap();
        let out = self.child.wait_with_output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    }
}

/// A file of the repository (a shipped runbook), by its path from the root.
pub fn repo(rel: &str) -> String {
    format!("{}/../../{rel}", env!("CARGO_MANIFEST_DIR"))
}

/// Compiled components are cached here for the whole suite: a debug build
/// compiles a component in about a second, so compile each once.
pub fn shared_cache() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("mend-component-cache")
}

/// The path and sha256 of a test guest component.
pub fn guest(name: &str) -> (String, String) {
    let path = mend::load::bundled::TEST_GUESTS
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no test guest {name}"))
        .1;
    let bytes = std::fs::read(path).expect("guest built by build.rs");
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    (path.to_string(), sha)
}

/// The `capabilities = [...]` line that approves what a test guest imports
/// (as `mend step build` prints it), computed once per guest.
pub fn guest_capabilities(name: &str) -> String {
    use std::sync::{Mutex, OnceLock};
    static LINES: OnceLock<Mutex<BTreeMap<String, String>>> = OnceLock::new();
    let lines = LINES.get_or_init(Default::default);
    if let Some(line) = lines.lock().unwrap().get(name) {
        return line.clone();
    }
    let (path, _) = guest(name);
    let bytes = std::fs::read(&path).unwrap();
    let sandbox = mend_host::sandbox::Sandbox::new(Some(shared_cache())).unwrap();
    let imports = sandbox.imports(&path, &bytes).unwrap();
    let line = mend::load::supply::line(&mend::load::supply::capabilities(&imports));
    lines.lock().unwrap().insert(name.to_string(), line.clone());
    line
}

/// A scratch world: a root for grants, a state dir, a runbook file.
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

/// What a mend invocation did.
pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    pub fn text(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

impl Fixture {
    pub fn new() -> Fixture {
        Fixture {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    pub fn state(&self) -> PathBuf {
        self.path("state")
    }
    /// Write a file (and its parents).
    pub fn write(&self, rel: &str, contents: &str) -> PathBuf {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, contents).unwrap();
        p
    }
    /// Write a runbook; `{root}` in it becomes the fixture's directory and
    /// `{guest:NAME}` the `uses`, `sha256` and `capabilities` lines that pin
    /// a test guest.
    pub fn runbook(&self, name: &str, text: &str) -> PathBuf {
        let mut text = text.replace("{root}", &self.dir.path().display().to_string());
        while let Some(start) = text.find("{guest:") {
            let end = start + text[start..].find('}').unwrap();
            let name = text[start + 7..end].to_string();
            let (path, sha) = guest(&name);
            let caps = guest_capabilities(&name);
            text.replace_range(
                start..=end,
                &format!("uses = \"{path}\"\nsha256 = \"{sha}\"\n{caps}"),
            );
        }
        self.write(name, &text)
    }
    /// Run mend with the fixture's state dir and the shared cache.
    pub fn mend(&self, args: &[&str]) -> Ran {
        self.mend_env(args, &[])
    }
    pub fn mend_env(&self, args: &[&str], env: &[(&str, &str)]) -> Ran {
        let out: Output = Command::new(mend_bin())
            .arg("--state-dir")
            .arg(self.state())
            .arg("--cache-dir")
            .arg(shared_cache())
            .args(args)
            .envs(env.iter().copied())
            .env("NO_COLOR", "1")
            .output()
            .expect("run mend");
        Ran {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Fixture {
    /// Run mend, killing it (and failing the test) if it is not done within
    /// `limit`: for tests of hangs, which must fail rather than hang.
    pub fn mend_within(&self, args: &[&str], limit: std::time::Duration) -> Ran {
        let mut child = Command::new(mend_bin())
            .arg("--state-dir")
            .arg(self.state())
            .arg("--cache-dir")
            .arg(shared_cache())
            .args(args)
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run mend");
        // Drain the pipes meanwhile, so a chatty mend never blocks on them.
        let mut out = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let out = std::thread::spawn(move || {
            let mut s = Vec::new();
            std::io::Read::read_to_end(&mut out, &mut s).ok();
            s
        });
        let err = std::thread::spawn(move || {
            let mut s = Vec::new();
            std::io::Read::read_to_end(&mut err, &mut s).ok();
            s
        });
        let start = std::time::Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if start.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                panic!("mend {args:?} still ran after {limit:?}: killed");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        Ran {
            code: status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.join().unwrap()).into_owned(),
            stderr: String::from_utf8_lossy(&err.join().unwrap()).into_owned(),
        }
    }
}

/// Every entry below `root`: type, mode, owner and group, size, content hash or link
/// target, and (when `times`) the modification time in nanoseconds.
pub fn tree(root: &Path, times: bool) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![(root.to_path_buf(), String::from("."))];
    while let Some((p, rel)) = stack.pop() {
        let md = std::fs::symlink_metadata(&p).unwrap();
        let t = if times {
            format!(" mtime={}.{:09}", md.mtime(), md.mtime_nsec())
        } else {
            String::new()
        };
        // Names and link targets as mend spells them: lossless, so two
        // names that are not UTF-8 never collide into one key.
        let what = if md.file_type().is_symlink() {
            let target = std::fs::read_link(&p).unwrap();
            format!("link -> {}", target.as_os_str().as_bytes().escape_ascii())
        } else if md.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                let e = e.unwrap();
                stack.push((
                    e.path(),
                    format!("{rel}/{}", e.file_name().as_bytes().escape_ascii()),
                ));
            }
            "dir".to_string()
        } else if !md.is_file() {
            // A FIFO or socket: never opened (it would block).
            format!("special {:o}", md.mode() & 0o170000)
        } else {
            let bytes = std::fs::read(&p).unwrap();
            format!(
                "file {} {}",
                bytes.len(),
                hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes))
            )
        };
        out.insert(
            rel,
            format!(
                "{what} mode={:o} uid={} gid={}{t}",
                md.mode(),
                md.uid(),
                md.gid()
            ),
        );
    }
    out
}

/// A data grant with files, a subdirectory, and an archive to extract.
pub fn populate(f: &Fixture) {
    f.write("data/a.txt", "alpha\n");
    f.write("data/b.txt", "bravo\n");
    f.write("data/keep/c.txt", "charlie\n");
    f.write("data/old/d.txt", "delta\n");
    f.write("data/old/e.txt", "echo\n");
    f.write("data/x/one", "x1\n");
    f.write("data/y/two", "y2\n");
    // A tar.gz to extract, made with the system's tar, byte-identical in
    // every fixture (fixed times, no name or time in the gzip header).
    f.write("src/release/app.txt", "release 2\n");
    let script = format!(
        "tar --mtime=2026-01-01 --owner=0 --group=0 --sort=name -cf - -C '{}' release | gzip -n > '{}'",
        f.path("src").display(),
        f.path("data/release.tar.gz").display()
    );
    let status = Command::new("sh").args(["-c", &script]).status().unwrap();
    assert!(status.success());
    // Fixed times, so that restored times can be compared.
    let _ = Command::new("find")
        .arg(f.path("data"))
        .args([
            "-exec",
            "touch",
            "-h",
            "-d",
            "2026-01-02 03:04:05",
            "{}",
            "+",
        ])
        .status();
}

/// Compare two trees and say how they differ.
pub fn assert_same(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>, what: &str) {
    if a != b {
        let mut diff = Vec::new();
        for (k, v) in a {
            match b.get(k) {
                None => diff.push(format!("- {k}: {v}")),
                Some(w) if w != v => diff.push(format!("~ {k}: {v}\n  now {w}")),
                _ => {}
            }
        }
        for (k, v) in b {
            if !a.contains_key(k) {
                diff.push(format!("+ {k}: {v}"));
            }
        }
        panic!("{what}: trees differ:\n{}", diff.join("\n"));
    }
}

/// Compare `actual` with the golden file at `rel` (from the repository's
/// root), word for word. `MEND_BLESS=1 cargo test` writes the files instead;
/// review the diff.
pub fn golden(rel: &str, actual: &str) {
    let path = PathBuf::from(repo(rel));
    if std::env::var_os("MEND_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "no golden file {} ({e}); write it with MEND_BLESS=1",
            path.display()
        )
    });
    if expected != actual {
        panic!(
            "output differs from {}:\n{}\n(MEND_BLESS=1 rewrites the file if the new output is right)",
            path.display(),
            diff(&expected, actual)
        );
    }
}

/// Where two texts differ, as `-` (expected) and `+` (actual) lines with
/// their line numbers and two lines of context: the common head and tail
/// are left out, so one changed word in a long golden file reads at once.
pub fn diff(expected: &str, actual: &str) -> String {
    let (e, a): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    let head = e.iter().zip(&a).take_while(|(x, y)| x == y).count();
    let tail = e[head..]
        .iter()
        .rev()
        .zip(a[head..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let mut out = Vec::new();
    for (i, line) in e.iter().enumerate().take(head).skip(head.saturating_sub(2)) {
        out.push(format!("  {:>4} {line}", i + 1));
    }
    for (i, line) in e.iter().enumerate().take(e.len() - tail).skip(head) {
        out.push(format!("- {:>4} {line}", i + 1));
    }
    for (i, line) in a.iter().enumerate().take(a.len() - tail).skip(head) {
        out.push(format!("+ {:>4} {line}", i + 1));
    }
    for (i, line) in e.iter().enumerate().skip(e.len() - tail).take(2) {
        out.push(format!("  {:>4} {line}", i + 1));
    }
    if expected.ends_with('\n') != actual.ends_with('\n') {
        out.push("(the files differ in their final newline)".into());
    }
    out.join("\n")
}

/// The newest run's id in the fixture's journal.
pub fn history_id(f: &Fixture) -> String {
    let h: serde_json::Value =
        serde_json::from_str(&f.mend(&["--json", "history"]).stdout).unwrap();
    h[0]["id"].as_str().unwrap().to_string()
}

/// Start `mend run RUNBOOK` in the background and return once its run is
/// journaled (it holds its locks by then).
pub fn start_run(f: &Fixture, runbook: &Path) -> std::process::Child {
    let child = Command::new(mend_bin())
        .arg("--state-dir")
        .arg(f.state())
        .arg("--cache-dir")
        .arg(shared_cache())
        .arg("run")
        .arg(runbook)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while !f
        .mend(&["--json", "history"])
        .stdout
        .contains("\"running\"")
    {
        assert!(start.elapsed().as_secs() < 20, "the run never started");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child
}

/// Cull `data/old` (files older than 30 days), then check that
/// `data/config.yml` exists after it; `{on_failure}` is the runbook's.
pub const CULL_THEN_CHECK: &str = r#"[runbook]
name = "cull-then-check"
version = "1.0.0"
summary = "cull old files, then check the app still has its config"
on_failure = "{on_failure}"

[grants.data]
path = "{root}/data"
access = "write"

[[steps]]
id = "cull-old"
uses = "std:cache-cull"
grants = ["data"]
with = { path = "data/old", days = 30 }

[[steps]]
id = "config-present"
uses = "std:assert"
grants = ["data"]
with = { when = "after", checks = [{ exists = "data/config.yml", message = "the app cannot start without its config" }] }
"#;

/// The id a run printed when it started (`run ID of NAME ...`), if it got
/// that far. Read from its output, not the journal: opening the journal
/// after a crash would checkpoint its WAL away.
pub fn started_run(ran: &Ran) -> String {
    started_run_if_any(ran).unwrap_or_else(|| panic!("no run id in:\n{}", ran.text()))
}

pub fn started_run_if_any(ran: &Ran) -> Option<String> {
    ran.stderr
        .lines()
        .find_map(|l| l.strip_prefix("run ")?.split(' ').next())
        .map(str::to_string)
}

/// A shell script in a mount namespace of its own; `MEND` is mend with the
/// fixture's state and the shared cache, `ROOT` the fixture's directory.
pub fn in_namespace(f: &Fixture, script: &str) -> std::process::Output {
    let mend = format!(
        "{} --state-dir {} --cache-dir {}",
        mend_bin(),
        f.state().display(),
        shared_cache().display()
    );
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-euc", script])
        .env("MEND", mend)
        .env("ROOT", f.dir.path())
        .env("NO_COLOR", "1")
        .output()
        .expect("unshare")
}

/// A file the test's script wrote, or "" if it did not.
pub fn read_text(f: &Fixture, rel: &str) -> String {
    std::fs::read_to_string(f.path(rel)).unwrap_or_default()
}
