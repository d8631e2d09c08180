//! The host helpers a step imports: log, progress, clock, files (walk,
//! digest, free space) and probe (allowed commands and URLs). Every path goes
//! through [`Grants`]; every command through [`CommandPolicy`].

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cap_std::fs::Dir;
use wasmtime::component::Resource;

use super::StepState;
use super::bindings::mend::runbook::{clock, files, log, plan_sink, probe, progress, types};
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
/// At most this many walk entries per call.
const WALK_BATCH_CAP: u32 = 8192;
/// A walk reads a directory this many entries at a time (each chunk sorted),
/// so a directory of ten million files never sits whole in the host.
const WALK_CHUNK: usize = 4096;
/// A walk goes at most this deep: each level holds open directories and a
/// chunk of names, so depth times [`WALK_CHUNK`] bounds a walk's memory.
pub const WALK_MAX_DEPTH: usize = 256;

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

fn denied(e: crate::grants::PathError) -> HostError {
    tracing::info!("denied: {e}");
    HostError::Denied(e.to_string())
}

fn io_error(path: &str, e: std::io::Error) -> HostError {
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

/// A walk in progress, read ahead by a thread of its own: while the step
/// looks at one batch (and the host checks what it plans from it), the
/// next is being listed and stat'ed. At most [`WALK_AHEAD`] batches wait,
/// so memory stays bounded; dropping the walk ends the thread at its next
/// batch.
pub struct WalkState {
    ahead: std::sync::mpsc::Receiver<Result<Vec<files::Entry>, HostError>>,
    held: std::collections::VecDeque<files::Entry>,
    ended: bool,
}

/// Entries a read-ahead batch holds.
const WALK_AHEAD_BATCH: u32 = 4096;
/// Batches read ahead at most.
const WALK_AHEAD: usize = 2;

/// The walk itself: a stack of open directories, each with its next chunk
/// of sorted, not yet reported entries.
struct Walker {
    error: Option<HostError>,
    stack: Vec<Frame>,
}

type Described = (String, files::EntryKind, u64, i64, u32);

struct Frame {
    dir: Dir,
    /// The directory opened for reading (cap-std's `Dir` is an `O_PATH`
    /// handle, which `getdents64` refuses): `.` of `dir`.
    listing: rustix::fd::OwnedFd,
    prefix: String,
    /// Whether the directory has been read to its end.
    read_all: bool,
    entries: std::vec::IntoIter<Described>,
}

/// Bytes of directory entries read per `getdents64`: about a thousand
/// names, as `find` reads them (cap-std's reader takes some 25 a call,
/// and on tmpfs each call costs a search for where the last one stopped).
const GETDENTS_BUF: usize = 32 << 10;

/// What walk and stat report of an lstat: kind, size, mtime (seconds, nanos).
fn described(md: &cap_std::fs::Metadata) -> (files::EntryKind, u64, i64, u32) {
    let ft = md.file_type();
    let kind = if ft.is_symlink() {
        files::EntryKind::Symlink
    } else if ft.is_dir() {
        files::EntryKind::Dir
    } else if ft.is_file() {
        files::EntryKind::File
    } else {
        files::EntryKind::Other
    };
    let (secs, nanos) = md
        .modified()
        .map(|t| t.into_std())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or((0, 0), |d| (d.as_secs() as i64, d.subsec_nanos()));
    (kind, md.len(), secs, nanos)
}

/// [`described`] of a raw `stat`, for the walk's `fstatat` of each name.
fn described_stat(st: &rustix::fs::Stat) -> (files::EntryKind, u64, i64, u32) {
    use rustix::fs::FileType as T;
    let kind = match T::from_raw_mode(st.st_mode) {
        T::Symlink => files::EntryKind::Symlink,
        T::Directory => files::EntryKind::Dir,
        T::RegularFile => files::EntryKind::File,
        _ => files::EntryKind::Other,
    };
    // As `described`: a time before the epoch reads as 0.
    let (secs, nanos) = if st.st_mtime < 0 {
        (0, 0)
    } else {
        (st.st_mtime, st.st_mtime_nsec as u32)
    };
    (kind, st.st_size.max(0) as u64, secs, nanos)
}

fn frame(dir: Dir, prefix: String) -> std::io::Result<Frame> {
    use rustix::fs::{Mode, OFlags};
    let listing = rustix::fs::openat(
        &dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut f = Frame {
        dir,
        listing,
        prefix,
        read_all: false,
        entries: Vec::new().into_iter(),
    };
    f.refill()?;
    Ok(f)
}

impl Frame {
    /// Read the next chunk of the directory (at least [`WALK_CHUNK`]
    /// entries, or the rest; a chunk ends where a `getdents64` buffer
    /// does, as the directory's offset has moved past it); false at its
    /// end. Each name is `fstatat`ed in the directory held open.
    fn refill(&mut self) -> std::io::Result<bool> {
        if self.read_all {
            return Ok(false);
        }
        let mut entries = Vec::new();
        let mut buf = Vec::with_capacity(GETDENTS_BUF);
        let mut raw = rustix::fs::RawDir::new(&self.listing, buf.spare_capacity_mut());
        let mut listed = false;
        loop {
            if entries.len() >= WALK_CHUNK && raw.is_buffer_empty() {
                break;
            }
            let Some(e) = raw.next() else {
                self.read_all = true;
                break;
            };
            let e = e?;
            let bytes = e.file_name().to_bytes();
            if bytes == b"." || bytes == b".." {
                continue;
            }
            // Never skipped: a name that is not UTF-8 is escaped (see
            // `crate::names`), or its directory would look empty to a step.
            let raw_name = std::ffi::OsStr::from_bytes(bytes);
            let name = mend_plan::names::encode(raw_name).into_owned();
            // The host's own trash and staging (at a grant's root, and at
            // the top of a volume mounted in it) are not the step's to see
            // or plan over: what undo needs lives there.
            if crate::grants::host_owned(&name).is_some() {
                continue;
            }
            if !listed {
                // Names listed, none stat'ed yet: where a test removes one
                // under the walk, as a live service does.
                listed = true;
                static CHUNKS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                let n = CHUNKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                mend_faults::pause_point("walk", 0, n);
            }
            // lstat: a symlink is reported as a symlink, never followed.
            let st = match rustix::fs::statat(
                &self.dir,
                e.file_name(),
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            ) {
                Ok(st) => st,
                // Removed since it was listed (a live service's cache):
                // nothing there to report, as a walk a moment later sees.
                Err(rustix::io::Errno::NOENT) => continue,
                Err(err) => {
                    let err = std::io::Error::from(err);
                    return Err(std::io::Error::new(err.kind(), format!("{name}: {err}")));
                }
            };
            let (kind, size, secs, nanos) = described_stat(&st);
            entries.push((name, kind, size, secs, nanos));
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let more = !entries.is_empty();
        self.entries = entries.into_iter();
        Ok(more)
    }
}

impl WalkState {
    fn start(grants: &Grants, root: &str) -> WalkState {
        let mut walker = Walker::start(grants, root);
        let (tx, ahead) = std::sync::mpsc::sync_channel(WALK_AHEAD);
        let spawned = std::thread::Builder::new()
            .name("mend-walk".into())
            .spawn(move || {
                loop {
                    let batch = walker.next(WALK_AHEAD_BATCH);
                    let last = !matches!(&batch, Ok(b) if !b.is_empty());
                    // The walk was dropped: stop reading.
                    if tx.send(batch).is_err() || last {
                        return;
                    }
                }
            });
        let mut state = WalkState {
            ahead,
            held: Default::default(),
            ended: false,
        };
        if let Err(e) = spawned {
            // No thread, no walk: said by the first `next`.
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            let _ = tx.send(Err(HostError::Io(format!(
                "walk {root}: cannot start a thread: {e}"
            ))));
            state.ahead = rx;
        }
        state
    }

    fn next(&mut self, max: u32) -> Result<Vec<files::Entry>, HostError> {
        let max = max.min(WALK_BATCH_CAP) as usize;
        while self.held.len() < max && !self.ended {
            match self.ahead.recv() {
                Ok(Ok(batch)) if !batch.is_empty() => self.held.extend(batch),
                // An error ends the walk, as it always did.
                Ok(Err(e)) => {
                    self.ended = true;
                    self.held.clear();
                    return Err(e);
                }
                Ok(Ok(_)) | Err(_) => self.ended = true,
            }
        }
        let n = max.min(self.held.len());
        Ok(self.held.drain(..n).collect())
    }
}

impl Walker {
    fn start(grants: &Grants, root: &str) -> Walker {
        let opened = grants.read(root).map_err(denied).and_then(|r| {
            let dir = r
                .grant
                .dir
                .open_dir(r.rel_path())
                .map_err(|e| io_error(root, e))?;
            frame(dir, root.trim_end_matches('/').to_string()).map_err(|e| io_error(root, e))
        });
        match opened {
            Ok(f) => Walker {
                error: None,
                stack: vec![f],
            },
            Err(e) => Walker {
                error: Some(e),
                stack: Vec::new(),
            },
        }
    }

    fn next(&mut self, max: u32) -> Result<Vec<files::Entry>, HostError> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        let mut out = Vec::new();
        while out.len() < max.min(WALK_BATCH_CAP) as usize {
            let depth = self.stack.len();
            let Some(top) = self.stack.last_mut() else {
                break;
            };
            let Some((name, kind, size, mtime, mtime_nanos)) = top.entries.next() else {
                let prefix = top.prefix.clone();
                if !top.refill().map_err(|e| io_error(&prefix, e))? {
                    self.stack.pop();
                }
                continue;
            };
            let path = format!("{}/{}", top.prefix, name);
            if kind == files::EntryKind::Dir {
                if depth >= WALK_MAX_DEPTH {
                    return Err(HostError::Invalid(format!(
                        "walk: {} is more than {WALK_MAX_DEPTH} directories deep; walk its deeper parts one by one",
                        mend_human::shown(&path, 256)
                    )));
                }
                let sub = top
                    .dir
                    .open_dir(mend_plan::names::decode(&name))
                    .and_then(|d| frame(d, path.clone()));
                match sub {
                    Ok(f) => self.stack.push(f),
                    // Removed since it was listed: as a file above.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_error(&path, e)),
                }
            }
            out.push(files::Entry {
                path,
                kind,
                size,
                mtime,
                mtime_nanos,
            });
        }
        Ok(out)
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
        Ok(stat(&self.host.grants, &path))
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
