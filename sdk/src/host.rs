//! What a step can ask of the host, behind one trait so that a test can use a
//! [`FakeHost`](crate::testing::FakeHost) instead of the engine.

use crate::bindings::mend::runbook::{clock, files, log, probe, progress};
use crate::{Algorithm, CommandCall, Entry, HostError, Level, Listed, Output, Space};

/// The host's helpers. In a component this is [`WasmHost`]; in a native test,
/// [`testing::FakeHost`](crate::testing::FakeHost).
pub trait Host {
    /// The host's clock, seconds since the Unix epoch (`mend --now` fixes it).
    fn now(&self) -> i64;
    /// Walk `root` (a `GRANT/path` directory) recursively, calling `each` for
    /// every entry; directories come before their contents. Symlinks are
    /// reported, never followed.
    fn walk(&self, root: &str, each: &mut dyn FnMut(Entry)) -> Result<(), HostError>;
    /// List the entries of the directory `dir` (a `GRANT/path`), not its
    /// subdirectories', calling `each` with each name and kind; no sizes or
    /// times. Much cheaper than a walk, which stats every entry: for steps
    /// that decide by name, then [`stat`](Host::stat) what they pick.
    /// Each chunk of a few thousand names comes sorted. The default walks
    /// `dir` and keeps its own entries.
    fn list(&self, dir: &str, each: &mut dyn FnMut(Listed)) -> Result<(), HostError> {
        let prefix = format!("{}/", dir.trim_end_matches('/'));
        self.walk(dir, &mut |e| {
            if e.path
                .strip_prefix(&prefix)
                .is_some_and(|n| !n.contains('/'))
            {
                each(Listed {
                    path: e.path,
                    kind: e.kind,
                });
            }
        })
    }
    /// What one granted path is (a symlink is reported, not followed);
    /// `NotFound` when nothing is there. Cheaper than a walk of its parent.
    /// A removal planned of a file the step stat'ed is checked against what
    /// this saw, as a walked one is.
    fn stat(&self, path: &str) -> Result<Entry, HostError>;
    /// The lowercase hex digest of a granted file, computed by the host.
    fn digest(&self, path: &str, algorithm: Algorithm) -> Result<String, HostError>;
    /// Free space on the filesystem that holds `path`.
    fn free_space(&self, path: &str) -> Result<Space, HostError>;
    /// Whether a granted directory is the top of a mounted filesystem (a
    /// volume): it cannot be swapped away, its contents can be replaced.
    fn mount_point(&self, path: &str) -> Result<bool, HostError>;
    /// How the contents of two granted directories differ in type, mode,
    /// owner, group, size, mtime and link target: at most `max` lines,
    /// none when they agree. Computed natively by the host.
    fn compare(&self, a: &str, b: &str, max: u32) -> Result<Vec<String>, HostError>;
    /// Run one of a command's `reads` (never its `changes`: a change is an
    /// `exec` action of the plan) and capture its output. The host runs it
    /// confined read-only.
    fn probe(&self, command: &str, args: &[&str]) -> Result<Output, HostError>;
    /// The HTTP status of an allowed URL.
    fn http_status(&self, url: &str) -> Result<u16, HostError>;
    /// Read a granted file whole.
    fn read(&self, path: &str) -> Result<Vec<u8>, HostError>;
    /// Log a message to the operator and the journal.
    fn log(&self, level: Level, message: &str);
    /// Report progress of long planning work.
    fn progress(&self, label: &str, done: u64, total: u64);
}

/// Files and bytes under a granted path (symlinks not followed, directories
/// not counted), by one walk.
pub fn tree_size(host: &dyn Host, root: &str) -> Result<(u64, u64), HostError> {
    let (mut files, mut bytes) = (0u64, 0u64);
    host.walk(root, &mut |e| {
        if e.kind == crate::EntryKind::File {
            files += 1;
            bytes += e.size;
        }
    })?;
    Ok((files, bytes))
}

/// The real host, through the component's imports.
pub struct WasmHost;

/// How many entries a walk asks for per host call.
const WALK_BATCH: u32 = 4096;

impl Host for WasmHost {
    fn now(&self) -> i64 {
        clock::now()
    }
    fn walk(&self, root: &str, each: &mut dyn FnMut(Entry)) -> Result<(), HostError> {
        let walk = files::Walk::new(root);
        loop {
            let batch = walk.next(WALK_BATCH)?;
            if batch.is_empty() {
                return Ok(());
            }
            batch.into_iter().for_each(&mut *each);
        }
    }
    fn list(&self, dir: &str, each: &mut dyn FnMut(Listed)) -> Result<(), HostError> {
        let listing = files::Listing::new(dir);
        loop {
            let batch = listing.next(WALK_BATCH)?;
            if batch.is_empty() {
                return Ok(());
            }
            batch.into_iter().for_each(&mut *each);
        }
    }
    fn stat(&self, path: &str) -> Result<Entry, HostError> {
        files::stat(path)
    }
    fn digest(&self, path: &str, algorithm: Algorithm) -> Result<String, HostError> {
        files::digest(path, algorithm)
    }
    fn free_space(&self, path: &str) -> Result<Space, HostError> {
        files::free_space(path)
    }
    fn mount_point(&self, path: &str) -> Result<bool, HostError> {
        files::mount_point(path)
    }
    fn compare(&self, a: &str, b: &str, max: u32) -> Result<Vec<String>, HostError> {
        files::compare(a, b, max)
    }
    fn probe(&self, command: &str, args: &[&str]) -> Result<Output, HostError> {
        probe::run(&CommandCall {
            command: command.to_string(),
            args: args.iter().map(|a| a.to_string()).collect(),
        })
    }
    fn http_status(&self, url: &str) -> Result<u16, HostError> {
        probe::http_status(url)
    }
    fn read(&self, path: &str) -> Result<Vec<u8>, HostError> {
        // Grants are preopened at `/<grant>`.
        std::fs::read(format!("/{path}")).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => HostError::NotFound(path.to_string()),
            std::io::ErrorKind::PermissionDenied => HostError::Denied(format!("{path}: {e}")),
            _ => HostError::Io(format!("{path}: {e}")),
        })
    }
    fn log(&self, level: Level, message: &str) {
        log::log(level, message)
    }
    fn progress(&self, label: &str, done: u64, total: u64) {
        progress::report(label, done, total)
    }
}

/// Readable text for a [`HostError`] (its generated `Display` is a debug form).
pub trait HostErrorExt {
    /// "denied: path `x` ...", "not found: x", ...
    fn text(&self) -> String;
}

impl HostErrorExt for HostError {
    fn text(&self) -> String {
        match self {
            HostError::Denied(m) => format!("denied: {m}"),
            HostError::NotFound(m) => format!("not found: {m}"),
            HostError::Invalid(m) => format!("invalid: {m}"),
            HostError::Io(m) => format!("i/o error: {m}"),
        }
    }
}

impl From<HostError> for crate::StepError {
    fn from(e: HostError) -> Self {
        crate::StepError {
            message: e.text(),
            hint: None,
            param: None,
        }
    }
}
