//! The host helpers a step imports: log, progress, clock, files (walk,
//! digest, free space) and probe (allowed commands and URLs). Every path goes
//! through [`Grants`]; every command through [`CommandPolicy`].

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::Resource;

use super::StepState;
use super::bindings::mend::runbook::{clock, files, log, plan_sink, probe, progress, types};
use super::walk::{ListingState, WalkState, described};
use crate::commands::CommandPolicy;
use crate::grants::Grants;
use mend_plan::Call;
use types::HostError;

/// Where a step's log lines go as they happen: (step id, level, message).
pub type LogSink = Arc<dyn Fn(&str, log::Level, &str) + Send + Sync>;
/// Where a step's progress reports go: (step id, label, done, total).
pub type ProgressSink = Arc<dyn Fn(&str, &str, u64, u64) + Send + Sync>;

/// Where the actions a step hands over while it plans go (`plan-sink`):
/// each batch is checked and kept (packed, journaled) as it arrives, so the
/// plan never sits whole in memory. An error refuses the step's plan.
pub trait ActionSink: Send {
    /// `walked`: what the step's walk last handed over (see
    /// [`crate::walked`]).
    fn emit(
        &mut self,
        actions: Vec<types::Action>,
        walked: &crate::walked::Walked,
    ) -> Result<(), HostError>;
}

/// A shared [`ActionSink`]: the caller keeps its own handle to read it
/// back after the step's call.
pub type PlanSink = Arc<std::sync::Mutex<dyn ActionSink>>;

/// A step's log budget: after this many bytes of messages (per call of the
/// step), the rest is counted, not kept, so a flood cannot fill memory.
pub const LOG_CAP: usize = 1 << 20;
/// One message is cut after this many bytes.
const MESSAGE_CAP: usize = 4096;

/// A host call found the step past its deadline: the call is turned into a
/// trap, reported as the step's deadline (not as a crash).
#[derive(Debug)]
pub struct PastDeadline;

impl std::fmt::Display for PastDeadline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the step's deadline passed during a host call")
    }
}

impl std::error::Error for PastDeadline {}

/// What the host knows while a step runs.
pub struct HostCtx {
    pub step_id: String,
    pub grants: Arc<Grants>,
    pub commands: CommandPolicy,
    pub urls: Vec<String>,
    pub now: i64,
    pub timeout: Duration,
    /// (level, message) logged by the step, cut at [`LOG_CAP`].
    pub logs: Vec<(String, String)>,
    log_bytes: usize,
    /// Bytes of log not kept: messages past the budget, cut tails.
    log_dropped: u64,
    /// When the current call must end; host calls that take long check it.
    pub(crate) deadline: Option<Instant>,
    pub sink: Option<LogSink>,
    pub progress: Option<ProgressSink>,
    /// Whether the step asked the host about the world (a file, a command,
    /// a URL): an error it returns before that can only come from its
    /// parameters.
    pub asked: bool,
    /// The reads it ran through `probe`, for the plan: (call, exit status).
    pub probes: Vec<(String, i32)>,
    /// Where actions handed over during `plan` go; none: into `emitted`.
    pub plan_sink: Option<PlanSink>,
    /// Actions handed over during `plan` without a sink, put before the
    /// returned plan's actions when it returns.
    pub emitted: Vec<types::Action>,
    /// Whether the current call is `plan`, the one call that may hand
    /// actions over.
    pub(crate) planning: bool,
    /// The largest linear memory the step's last call grew to, bytes.
    pub memory_peak: usize,
    /// What the step's walk last handed over, for the check of what it
    /// plans from it ([`crate::walked`]).
    pub walked: crate::walked::Walked,
}

impl HostCtx {
    /// A context for one step.
    pub fn new(
        step_id: &str,
        grants: Arc<Grants>,
        commands: CommandPolicy,
        urls: Vec<String>,
        now: i64,
        timeout: Duration,
    ) -> Self {
        HostCtx {
            step_id: step_id.to_string(),
            grants,
            commands,
            urls,
            now,
            timeout,
            logs: Vec::new(),
            log_bytes: 0,
            log_dropped: 0,
            deadline: None,
            sink: None,
            progress: None,
            asked: false,
            probes: Vec::new(),
            plan_sink: None,
            emitted: Vec::new(),
            planning: false,
            memory_peak: 0,
            walked: Default::default(),
        }
    }
}

impl HostCtx {
    /// Keep one log line of the step: to the sink and the journal's list.
    fn keep_log(&mut self, level: log::Level, message: String) {
        if let Some(sink) = &self.sink {
            sink(&self.step_id, level, &message);
        }
        let level = match level {
            log::Level::Debug => "debug",
            log::Level::Info => "info",
            log::Level::Warn => "warn",
            log::Level::Error => "error",
        };
        self.logs.push((level.to_string(), message));
    }

    /// At the end of a call: one line saying how much of the log was
    /// dropped, if any was.
    pub(crate) fn finish_log(&mut self) {
        if self.log_dropped == 0 {
            return;
        }
        let line = format!(
            "{} more bytes of log dropped (step `{}` is over its log budget of {} per call)",
            mend_human::human_count(self.log_dropped),
            self.step_id,
            mend_human::human_bytes(LOG_CAP as u64)
        );
        self.log_dropped = 0;
        self.keep_log(log::Level::Warn, line);
    }

    /// Time left before the deadline (the whole timeout outside a call).
    fn remaining(&self) -> Duration {
        self.deadline.map_or(self.timeout, |d| {
            d.saturating_duration_since(Instant::now())
        })
    }

    /// A trap when the deadline has passed: a host call that ran long (a
    /// hash of a huge file, a walk of a huge directory) ends the step.
    fn check_deadline(&self) -> wasmtime::Result<()> {
        match self.deadline {
            Some(d) if Instant::now() >= d => Err(wasmtime::Error::new(PastDeadline)),
            _ => Ok(()),
        }
    }
}

pub(super) fn denied(e: crate::grants::PathError) -> HostError {
    tracing::info!("denied: {e}");
    HostError::Denied(e.to_string())
}

pub(super) fn io_error(path: &str, e: std::io::Error) -> HostError {
    // cap-std refuses a path that escapes its directory with this error.
    if e.kind() == std::io::ErrorKind::PermissionDenied
        && e.to_string().contains("outside of the filesystem")
    {
        return HostError::Denied(format!(
            "path `{path}` leaves its grant through a symlink; mend never follows a symlink out of a grant"
        ));
    }
    match e.kind() {
        std::io::ErrorKind::NotFound => HostError::NotFound(path.to_string()),
        // A special file refused by name (`open_regular`): the text says it.
        std::io::ErrorKind::InvalidInput => HostError::Invalid(e.to_string()),
        std::io::ErrorKind::PermissionDenied => HostError::Denied(format!("{path}: {e}")),
        _ => HostError::Io(format!("{path}: {e}")),
    }
}

impl types::Host for StepState {}

impl plan_sink::Host for StepState {
    fn emit(&mut self, actions: Vec<types::Action>) -> wasmtime::Result<Result<(), HostError>> {
        let h = &mut self.host;
        h.check_deadline()?;
        if !h.planning {
            return Ok(Err(HostError::Invalid(
                "plan-sink.emit is for `plan` only".into(),
            )));
        }
        // Handed over, not yet checked: where a test rewrites a file the
        // walk saw, as a live service does (`MEND_PAUSE_AT=emit:0:N`).
        static EMITS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = EMITS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        mend_faults::pause_point("emit", 0, n);
        match &h.plan_sink {
            Some(sink) => {
                let checked = sink.lock().expect("not poisoned").emit(actions, &h.walked);
                h.walked.checked();
                Ok(checked)
            }
            None => {
                h.emitted.extend(actions);
                Ok(Ok(()))
            }
        }
    }
}

impl log::Host for StepState {
    fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        let h = &mut self.host;
        if h.log_bytes >= LOG_CAP {
            h.log_dropped += message.len() as u64;
            return Ok(());
        }
        let (head, cut) = mend_human::head(&message, MESSAGE_CAP);
        let mut text = mend_human::sanitize(head);
        if cut {
            text.push_str(" [cut]");
            h.log_dropped += (message.len() - head.len()) as u64;
        }
        h.log_bytes += text.len();
        if h.log_bytes > LOG_CAP {
            // Over budget: this message and every later one are only counted.
            h.log_bytes = LOG_CAP;
            h.log_dropped += head.len() as u64;
            return Ok(());
        }
        drop(message);
        h.keep_log(level, text);
        Ok(())
    }
}

impl progress::Host for StepState {
    fn report(&mut self, label: String, done: u64, total: u64) -> wasmtime::Result<()> {
        if let Some(p) = &self.host.progress {
            p(
                &self.host.step_id,
                &mend_human::shown(&label, MESSAGE_CAP),
                done,
                total,
            );
        }
        Ok(())
    }
}

impl clock::Host for StepState {
    fn now(&mut self) -> wasmtime::Result<i64> {
        Ok(self.host.now)
    }
}

impl files::HostWalk for StepState {
    fn new(&mut self, root: String) -> wasmtime::Result<Resource<WalkState>> {
        self.host.asked = true;
        self.host.walked.start();
        let state = WalkState::start(&self.host.grants, &root);
        Ok(self.table.push(state)?)
    }
    fn next(
        &mut self,
        walk: Resource<WalkState>,
        max: u32,
    ) -> wasmtime::Result<Result<Vec<files::Entry>, HostError>> {
        self.host.check_deadline()?;
        let batch = self.table.get_mut(&walk)?.next(max);
        if let Ok(b) = &batch {
            self.host
                .walked
                .keep(b.iter().map(|e| crate::walked::Entry {
                    path: &e.path,
                    dir: e.kind == files::EntryKind::Dir,
                    size: e.size,
                    secs: e.mtime,
                    nanos: e.mtime_nanos,
                }));
        }
        self.host.check_deadline()?;
        Ok(batch)
    }
    fn drop(&mut self, walk: Resource<WalkState>) -> wasmtime::Result<()> {
        self.table.delete(walk)?;
        Ok(())
    }
}

impl files::HostListing for StepState {
    fn new(&mut self, dir: String) -> wasmtime::Result<Resource<ListingState>> {
        self.host.asked = true;
        let state = ListingState::start(&self.host.grants, &dir);
        Ok(self.table.push(state)?)
    }
    fn next(
        &mut self,
        listing: Resource<ListingState>,
        max: u32,
    ) -> wasmtime::Result<Result<Vec<files::Listed>, HostError>> {
        self.host.check_deadline()?;
        let batch = self.table.get_mut(&listing)?.next(max);
        self.host.check_deadline()?;
        Ok(batch)
    }
    fn drop(&mut self, listing: Resource<ListingState>) -> wasmtime::Result<()> {
        self.table.delete(listing)?;
        Ok(())
    }
}

/// What one granted path is, by lstat.
pub fn stat(grants: &Grants, path: &str) -> Result<files::Entry, HostError> {
    let r = grants.read(path).map_err(denied)?;
    let md = r
        .grant
        .dir
        .symlink_metadata(r.rel_path())
        .map_err(|e| io_error(path, e))?;
    let (kind, size, mtime, mtime_nanos) = described(&md);
    Ok(files::Entry {
        path: path.trim_end_matches('/').to_string(),
        kind,
        size,
        mtime,
        mtime_nanos,
    })
}

/// Hash a granted file natively.
/// The label of the host's own hashing progress.
pub const HASH_PROGRESS: &str = "hash ";

/// Files at least this big report their hashing as progress: a bar for a
/// release tarball, not a flicker per entry of a SHA256SUMS list.
const DIGEST_PROGRESS_FROM: u64 = 64 << 20;

/// A file's digest, calling `progress(done, total)` as it reads a big one.
pub fn digest(
    grants: &Grants,
    path: &str,
    algorithm: files::Algorithm,
    progress: &mut dyn FnMut(u64, u64),
    deadline: Option<Instant>,
) -> Result<String, HostError> {
    let r = grants.read(path).map_err(denied)?;
    let mut file = crate::files::open_regular(&r.grant.dir, &r.rel_path(), path)
        .map_err(|e| io_error(path, e))?;
    let total = file.metadata().map(|m| m.len()).unwrap_or(0);
    let report = total >= DIGEST_PROGRESS_FROM;
    let mut done = 0u64;
    // A page-aligned buffer: a fresh 1 MiB Vec starts 16 bytes past a page
    // boundary, where the kernel's copy into it is measurably slower (the
    // steps bench saw 0.79 against 1.33 GB/s).
    let mut backing = vec![0u8; (1 << 20) + 4096];
    let offset = backing.as_ptr().align_offset(4096);
    let buf = &mut backing[offset..offset + (1 << 20)];
    macro_rules! hash_with {
        ($hasher:expr, $update:ident) => {{
            let mut h = $hasher;
            loop {
                let n = file.read(buf).map_err(|e| io_error(path, e))?;
                if n == 0 {
                    break;
                }
                h.$update(&buf[..n]);
                done += n as u64;
                if report {
                    progress(done, total);
                }
                // Stop reading a huge file once the step is out of time.
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Err(HostError::Io(format!(
                        "{path}: stopped at the step's deadline"
                    )));
                }
            }
            h
        }};
    }
    use sha2::Digest;
    Ok(match algorithm {
        files::Algorithm::Sha256 => hex::encode(hash_with!(sha2::Sha256::new(), update).finalize()),
        files::Algorithm::Sha512 => hex::encode(hash_with!(sha2::Sha512::new(), update).finalize()),
        files::Algorithm::Blake3 => hash_with!(blake3::Hasher::new(), update)
            .finalize()
            .to_hex()
            .to_string(),
    })
}

/// Free space where a granted path lives.
pub fn free_space(grants: &Grants, path: &str) -> Result<files::Space, HostError> {
    let r = grants.read(path).map_err(denied)?;
    let dir = r
        .grant
        .dir
        .open_dir(r.rel_path())
        .or_else(|_| r.grant.dir.try_clone())
        .map_err(|e| io_error(path, e))?;
    let st = rustix::fs::fstatvfs(&dir).map_err(|e| io_error(path, e.into()))?;
    Ok(files::Space {
        available: crate::space::free_space_of(&dir).map_err(|e| io_error(path, e))?,
        total: crate::space::fake_space()
            .and_then(|(_, total)| total)
            .unwrap_or(st.f_blocks.saturating_mul(st.f_frsize)),
    })
}

impl files::Host for StepState {
    fn stat(&mut self, path: String) -> wasmtime::Result<Result<files::Entry, HostError>> {
        self.host.asked = true;
        self.host.check_deadline()?;
        let st = stat(&self.host.grants, &path);
        if let Ok(e) = &st {
            // A removal the step plans from it is checked against it.
            self.host.walked.saw(crate::walked::Entry {
                path: &e.path,
                dir: e.kind == files::EntryKind::Dir,
                size: e.size,
                secs: e.mtime,
                nanos: e.mtime_nanos,
            });
        }
        Ok(st)
    }
    fn digest(
        &mut self,
        path: String,
        algorithm: files::Algorithm,
    ) -> wasmtime::Result<Result<String, HostError>> {
        self.host.asked = true;
        let host = &self.host;
        host.check_deadline()?;
        let label = format!("{HASH_PROGRESS}{}", mend_human::shown(&path, 1024));
        let result = digest(
            &host.grants,
            &path,
            algorithm,
            &mut |done, total| {
                if let Some(p) = &host.progress {
                    p(&host.step_id, &label, done, total);
                }
            },
            host.deadline,
        );
        host.check_deadline()?;
        Ok(result)
    }
    fn free_space(&mut self, path: String) -> wasmtime::Result<Result<files::Space, HostError>> {
        self.host.asked = true;
        self.host.check_deadline()?;
        Ok(free_space(&self.host.grants, &path))
    }
    fn mount_point(&mut self, path: String) -> wasmtime::Result<Result<bool, HostError>> {
        self.host.check_deadline()?;
        Ok(super::host_fs::mount_point(&self.host.grants, &path))
    }
    fn compare(
        &mut self,
        a: String,
        b: String,
        max: u32,
    ) -> wasmtime::Result<Result<Vec<String>, HostError>> {
        self.host.check_deadline()?;
        let r = super::host_fs::compare(&self.host.grants, &a, &b, max);
        self.host.check_deadline()?;
        Ok(r)
    }
}

impl probe::Host for StepState {
    fn run(
        &mut self,
        call: types::CommandCall,
    ) -> wasmtime::Result<Result<probe::Output, HostError>> {
        self.host.asked = true;
        let h = &self.host;
        let call = Call {
            command: call.command,
            args: call.args,
        };
        h.check_deadline()?;
        // A command gets what is left of the step's time, not a fresh timeout.
        let result = h
            .commands
            .probe(&h.step_id, &call, h.remaining())
            .map(|o| probe::Output {
                status: o.status,
                stdout: o.stdout,
                stderr: o.stderr,
            })
            .map_err(HostError::Denied);
        h.check_deadline()?;
        if let Ok(out) = &result
            && self.host.probes.len() < 1000
        {
            let shown = mend_human::shown(&call.to_string(), 1024);
            self.host.probes.push((shown, out.status));
        }
        Ok(result)
    }
    fn http_status(&mut self, url: String) -> wasmtime::Result<Result<u16, HostError>> {
        self.host.asked = true;
        let h = &self.host;
        if !h
            .urls
            .iter()
            .any(|p| mend_runbook::model::glob_match(p, &url))
        {
            return Ok(Err(HostError::Denied(format!(
                "step `{}` may not query {url}; add it to the step's `urls`",
                h.step_id
            ))));
        }
        h.check_deadline()?;
        Ok(http_get_status(
            &url,
            h.remaining().min(Duration::from_secs(30)),
        ))
    }
}

/// A plain HTTP/1.1 GET that returns the status code. `http://` only: health
/// endpoints of services on the same machine.
pub fn http_get_status(url: &str, timeout: Duration) -> Result<u16, HostError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| HostError::Invalid(format!("{url}: only http:// URLs are supported")))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let addr_text = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let io = |e: std::io::Error| HostError::Io(format!("{url}: {e}"));
    let addr = addr_text
        .to_socket_addrs()
        .map_err(io)?
        .next()
        .ok_or_else(|| HostError::Io(format!("{url}: no address")))?;
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(io)?;
    s.set_read_timeout(Some(timeout)).map_err(io)?;
    s.set_write_timeout(Some(timeout)).map_err(io)?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: mend\r\nConnection: close\r\n\r\n"
    )
    .map_err(io)?;
    let mut head = [0u8; 64];
    let mut n = 0;
    while n < 12 {
        let m = s.read(&mut head[n..]).map_err(io)?;
        if m == 0 {
            break;
        }
        n += m;
    }
    let line = String::from_utf8_lossy(&head[..n]);
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| HostError::Io(format!("{url}: not an HTTP response: {line:?}")))
}
