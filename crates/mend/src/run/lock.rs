//! One run per runbook at a time: `flock(LOCK_EX | LOCK_NB)` on
//! `STATE/locks/<key>.lock`.
//!
//! The holder writes JSON describing itself (`Holder`) into the file after
//! locking; an acquirer that is refused reads it back to say who holds the
//! lock since when. The kernel drops a flock when its last fd closes, so a
//! holder killed with SIGKILL never leaves the lock taken; a stale file
//! without a lock on it is simply taken over.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Seek as _};
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::fs::{FlockOperation, flock};

use mend_human::time::format_utc;

/// The lock directory's name inside the state directory.
pub const LOCKS_DIR: &str = "locks";

/// Who holds a run lock (stored as JSON in the lock file).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub run_id: Option<String>,
    /// Unix seconds.
    pub since: i64,
    /// The command line, for humans.
    pub command: String,
    /// Names this holding of the lock for `mend unlock`: a later run's lock
    /// has another id, so an unlock never stops a run the operator did not
    /// see.
    #[serde(default)]
    pub id: String,
}

impl Holder {
    /// This process, now, with its command line.
    pub fn current(run_id: Option<String>) -> Holder {
        Holder {
            pid: std::process::id(),
            run_id,
            since: mend_human::time::now_secs(),
            command: std::env::args_os()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" "),
            id: lock_id(),
        }
    }
}

#[derive(Debug)]
pub enum LockError {
    /// Another process (or another `RunLock` in this one) holds the lock.
    /// `holder` is None when its description could not be read.
    Held {
        key: String,
        holder: Option<Holder>,
    },
    /// A write grant of this runbook nests with one that another runbook's
    /// run holds.
    GrantHeld(Box<GrantConflict>),
    Io(io::Error),
}

impl fmt::Display for LockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::Held {
                key,
                holder: Some(h),
            } => {
                write!(f, "runbook `{key}` is locked by pid {} (", h.pid)?;
                if let Some(run) = &h.run_id {
                    write!(f, "run {run}, ")?;
                }
                write!(f, "`{}`) since {}", h.command, format_utc(h.since))?;
                if !h.id.is_empty() {
                    write!(f, ", lock id {}", h.id)?;
                }
                Ok(())
            }
            LockError::Held { key, holder: None } => write!(
                f,
                "runbook `{key}` is locked by another process (its holder is unknown)"
            ),
            LockError::GrantHeld(c) => {
                let GrantConflict {
                    ours,
                    theirs,
                    holder,
                } = &**c;
                write!(
                    f,
                    "grant `{}` ({}) overlaps grant `{}` ({}) of runbook `{}`, which is running",
                    ours.grant,
                    ours.path.display(),
                    theirs.grant,
                    theirs.path.display(),
                    theirs.runbook
                )?;
                if let Some(h) = holder {
                    write!(f, ": pid {}", h.pid)?;
                    if let Some(run) = &h.run_id {
                        write!(f, ", run {run}")?;
                    }
                    write!(f, ", since {}", format_utc(h.since))?;
                }
                Ok(())
            }
            LockError::Io(e) => write!(f, "cannot take the run lock: {e}"),
        }
    }
}

impl std::error::Error for LockError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LockError::Io(e) => Some(e),
            LockError::Held { .. } | LockError::GrantHeld(_) => None,
        }
    }
}

impl From<io::Error> for LockError {
    fn from(e: io::Error) -> Self {
        LockError::Io(e)
    }
}

/// A held run lock. Dropping it unlocks (the fd closes); the file stays.
#[derive(Debug)]
pub struct RunLock {
    file: File,
    path: PathBuf,
    holder: Holder,
    /// The write grants this run holds against other runbooks' runs.
    grants: Vec<GrantLock>,
}

/// A claim refused: ours, the one it nests with, and who holds that.
#[derive(Debug)]
pub struct GrantConflict {
    pub ours: GrantClaim,
    pub theirs: GrantClaim,
    pub holder: Option<Holder>,
}

/// One write grant a run claims: which runbook, which grant, where.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GrantClaim {
    pub runbook: String,
    pub grant: String,
    pub path: PathBuf,
}

#[derive(Debug)]
struct GrantLock {
    file: File,
}

impl Drop for GrantLock {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
    }
}

/// What a grant lock file holds.
#[derive(serde::Serialize, serde::Deserialize)]
struct GrantRecord {
    claim: GrantClaim,
    holder: Holder,
}

/// Whether two directories nest (or are one).
fn nests(a: &Path, b: &Path) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

impl RunLock {
    /// Takes the lock for `key` without waiting, creating `STATE/locks/`
    /// (0700) if needed, and records `holder` in it.
    pub fn acquire(state_dir: &Path, key: &str, holder: &Holder) -> Result<RunLock, LockError> {
        let dir = state_dir.join(LOCKS_DIR);
        mend_journal::create_private_dir(&dir)
            .map_err(|e| LockError::Io(io::Error::other(format!("{e:#}"))))?;
        let path = dir.join(lock_file_name(key));
        let with_path = |e: io::Error| {
            LockError::Io(io::Error::new(e.kind(), format!("{}: {e}", path.display())))
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false) // another process may hold it: never truncate before locking
            .mode(0o600)
            .open(&path)
            .map_err(with_path)?;
        loop {
            match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::WOULDBLOCK) => {
                    return Err(LockError::Held {
                        key: key.to_owned(),
                        holder: read_holder(&file),
                    });
                }
                Err(e) => return Err(with_path(e.into())),
            }
        }
        let lock = RunLock {
            file,
            path: path.clone(),
            holder: holder.clone(),
            grants: Vec::new(),
        };
        match lock.write_holder() {
            Ok(()) => Ok(lock),
            Err(e) => Err(with_path(e)),
        }
    }

    /// Records the run id in the holder JSON (rewrites the file).
    pub fn set_run_id(&mut self, run_id: &str) -> io::Result<()> {
        self.holder.run_id = Some(run_id.to_owned());
        self.write_holder()?;
        for g in &self.grants {
            let mut f = &g.file;
            let mut text = String::new();
            f.rewind()?;
            f.read_to_string(&mut text)?;
            if let Ok(mut record) = serde_json::from_str::<GrantRecord>(&text) {
                record.holder.run_id = Some(run_id.to_owned());
                write_json(&g.file, &record)?;
            }
        }
        Ok(())
    }

    /// Claims `claims` (this runbook's write grants, real paths) against
    /// every other run: refused when one nests with a grant another
    /// runbook's live run claimed. Two runbooks that write the same tree
    /// would otherwise each journal and undo half of what happened to it.
    /// A claim of a dead process is free: its flock went with it.
    pub fn claim_grants(
        &mut self,
        state_dir: &Path,
        claims: &[GrantClaim],
    ) -> Result<(), LockError> {
        let dir = state_dir.join(LOCKS_DIR);
        // One claimer at a time looks and claims (held for milliseconds).
        let mutex = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(dir.join("grants.mutex"))?;
        loop {
            match flock(&mutex, FlockOperation::LockExclusive) {
                Ok(()) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(LockError::Io(e.into())),
            }
        }
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            let is_grant = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("grant-") && n.ends_with(".lock"));
            if !is_grant {
                continue;
            }
            let Ok(file) = OpenOptions::new().read(true).write(true).open(&path) else {
                continue;
            };
            let mut text = String::new();
            let Ok(record) = (&file)
                .read_to_string(&mut text)
                .ok()
                .and_then(|_| serde_json::from_str::<GrantRecord>(&text).ok())
                .ok_or(())
            else {
                continue; // empty: released
            };
            let Some(ours) = claims
                .iter()
                .find(|c| c.runbook != record.claim.runbook && nests(&c.path, &record.claim.path))
            else {
                continue;
            };
            match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                // Nobody holds it: a claim left by a killed run.
                Ok(()) => continue,
                Err(rustix::io::Errno::WOULDBLOCK) => {
                    return Err(LockError::GrantHeld(Box::new(GrantConflict {
                        ours: ours.clone(),
                        theirs: record.claim,
                        holder: Some(record.holder),
                    })));
                }
                Err(e) => return Err(LockError::Io(e.into())),
            }
        }
        for claim in claims {
            let key = format!("{}\0{}", claim.runbook, claim.path.display());
            let name = format!("grant-{}", lock_file_name(&key));
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(dir.join(name))?;
            flock(&file, FlockOperation::NonBlockingLockExclusive)
                .map_err(|e| LockError::Io(e.into()))?;
            write_json(
                &file,
                &GrantRecord {
                    claim: claim.clone(),
                    holder: self.holder.clone(),
                },
            )?;
            self.grants.push(GrantLock { file });
        }
        Ok(())
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What this lock says about its holder.
    pub fn holder(&self) -> &Holder {
        &self.holder
    }

    fn write_holder(&self) -> io::Result<()> {
        write_json(&self.file, &self.holder)
    }
}

/// Truncate + write + fsync.
fn write_json(file: &File, value: &impl serde::Serialize) -> io::Result<()> {
    let mut json = serde_json::to_vec(value).map_err(io::Error::other)?;
    json.push(b'\n');
    file.set_len(0)?;
    file.write_all_at(&json, 0)?;
    file.sync_all()
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Forget the holder while still locked (best effort) so no one reads a
        // stale description; closing the fd then releases the lock.
        let _ = self.file.set_len(0);
    }
}

/// FNV-1a, 64 bits: stable across builds (unlike std's hasher).
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Eight hex digits from the clock and the pid: unique enough to tell one
/// holding of a lock from the next.
fn lock_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{:08x}",
        fnv1a(&format!("{nanos}:{}", std::process::id())) as u32
    )
}

/// Who holds the run lock of `key` now, if anyone (a lock file nobody holds
/// is free, whatever it says).
pub fn current_holder(state_dir: &Path, key: &str) -> io::Result<Option<Holder>> {
    let path = state_dir.join(LOCKS_DIR).join(lock_file_name(key));
    let file = match OpenOptions::new().read(true).write(true).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    loop {
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(None),
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::WOULDBLOCK) => return Ok(read_holder(&file)),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Reads the holder's JSON. The holder writes it just after locking, so an
/// empty or partial file is retried briefly before giving up.
fn read_holder(file: &File) -> Option<Holder> {
    for attempt in 0..5 {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut text = String::new();
        let mut f = file;
        if f.rewind().is_err() || f.read_to_string(&mut text).is_err() {
            return None;
        }
        if let Ok(h) = serde_json::from_str(&text) {
            return Some(h);
        }
    }
    None
}

/// `<key>.lock`, with the key reduced to `[A-Za-z0-9_.-]` (others become
/// `_`, no leading `.`, at most 100 chars). A key that had to change gets a
/// hash suffix so that distinct keys keep distinct files.
pub fn lock_file_name(key: &str) -> String {
    let mut safe: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    if safe.starts_with('.') || safe.is_empty() {
        safe.insert(0, '_');
    }
    if safe != key {
        safe.push_str(&format!("-{:016x}", fnv1a(key)));
    }
    safe.push_str(".lock");
    safe
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead as _;
    use std::process::{Child, Command, Stdio};

    fn holder(pid: u32) -> Holder {
        Holder {
            pid,
            run_id: None,
            since: 1_795_367_045,
            command: "mend run backup".into(),
            id: "0123abcd".into(),
        }
    }

    #[test]
    fn file_names_are_sanitized() {
        assert_eq!(lock_file_name("backup-db_1.2"), "backup-db_1.2.lock");
        let a = lock_file_name("a/b");
        let b = lock_file_name("a_b");
        assert!(a.starts_with("a_b-") && a.ends_with(".lock"), "{a}");
        assert_ne!(a, b);
        assert!(lock_file_name("..").starts_with("_.."));
        assert!(lock_file_name("").starts_with("_"));
        assert!(!lock_file_name("../../etc/passwd").contains('/'));
        assert!(lock_file_name(&"x".repeat(500)).len() < 130);
        assert!(lock_file_name("sauvegarde-été").is_ascii());
    }

    #[test]
    fn second_acquire_is_refused_with_the_holder() {
        let tmp = tempfile::tempdir().unwrap();
        let mut held = RunLock::acquire(tmp.path(), "backup", &holder(4242)).unwrap();
        assert_eq!(held.path(), tmp.path().join("locks/backup.lock"));
        held.set_run_id("7f3a000000000001").unwrap();

        let err = RunLock::acquire(tmp.path(), "backup", &holder(1)).unwrap_err();
        match &err {
            LockError::Held {
                key,
                holder: Some(h),
            } => {
                assert_eq!(key, "backup");
                assert_eq!(h.pid, 4242);
                assert_eq!(h.run_id.as_deref(), Some("7f3a000000000001"));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            err.to_string(),
            "runbook `backup` is locked by pid 4242 (run 7f3a000000000001, `mend run backup`) \
             since 2026-11-22 17:04:05 UTC, lock id 0123abcd"
        );

        // Another key is independent.
        let other = RunLock::acquire(tmp.path(), "other", &holder(2)).unwrap();
        drop(other);

        // Released on drop; the file stays.
        drop(held);
        assert!(tmp.path().join("locks/backup.lock").exists());
        let again = RunLock::acquire(tmp.path(), "backup", &holder(3)).unwrap();
        let text = std::fs::read_to_string(again.path()).unwrap();
        let h: Holder = serde_json::from_str(&text).unwrap();
        assert_eq!((h.pid, h.run_id), (3, None));
    }

    #[test]
    fn unreadable_holder_is_reported_as_unknown() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(LOCKS_DIR);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.lock");
        let f = File::create(&path).unwrap();
        flock(&f, FlockOperation::LockExclusive).unwrap();
        std::fs::write(&path, "not json").unwrap();
        let err = RunLock::acquire(tmp.path(), "x", &holder(1)).unwrap_err();
        assert!(matches!(err, LockError::Held { holder: None, .. }));
        assert!(err.to_string().contains("holder is unknown"), "{err}");
    }

    const CHILD_ENV: &str = "MEND_JOURNAL_LOCK_TEST_CHILD";

    /// Not a test of its own: the body of the child process that
    /// `lock_is_freed_when_holder_is_killed` spawns (it re-runs this test
    /// binary with only this test selected and `CHILD_ENV` set).
    #[test]
    fn lock_child_process() {
        let Some(state) = std::env::var_os(CHILD_ENV) else {
            return;
        };
        let mut h = Holder::current(None);
        h.command = "lock test child".into();
        let _lock = RunLock::acquire(Path::new(&state), "killed", &h).unwrap();
        println!("LOCKED");
        loop {
            std::thread::sleep(Duration::from_secs(60));
        }
    }

    struct KillOnDrop(Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn lock_is_freed_when_holder_is_killed() {
        let tmp = tempfile::tempdir().unwrap();
        // Test names omit the crate name.
        let module = module_path!().split_once("::").map_or("", |(_, m)| m);
        let name = format!("{module}::lock_child_process");
        let child = Command::new(std::env::current_exe().unwrap())
            .args([name.as_str(), "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, tmp.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut child = KillOnDrop(child);
        let pid = child.0.id();
        let mut out = io::BufReader::new(child.0.stdout.take().unwrap());
        let mut line = String::new();
        loop {
            line.clear();
            let n = out.read_line(&mut line).unwrap();
            assert!(n > 0, "the child exited before taking the lock");
            if line.contains("LOCKED") {
                break;
            }
        }

        let err = RunLock::acquire(tmp.path(), "killed", &holder(1)).unwrap_err();
        match err {
            LockError::Held {
                holder: Some(h), ..
            } => {
                assert_eq!(h.pid, pid);
                assert_eq!(h.command, "lock test child");
            }
            other => panic!("unexpected {other:?}"),
        }

        child.0.kill().unwrap(); // SIGKILL
        let status = child.0.wait().unwrap();
        assert!(!status.success());
        let lock = RunLock::acquire(tmp.path(), "killed", &holder(7)).unwrap();
        assert_eq!(lock.holder().pid, 7);
    }
}
