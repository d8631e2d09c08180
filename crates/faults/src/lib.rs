//! Injected I/O faults, for the tests and `mend rehearse --faults` only:
//! the way to prove that a full disk or a failing one stops a run cleanly
//! and that the run can be resumed or rolled back afterwards.
//!
//! `MEND_FAULT=KIND:WHERE`, read once per process, fires once:
//! - KIND: `enospc` (No space left on device) or `eio` (Input/output error);
//! - WHERE: `journal:N`, the Nth journal write transaction of this process
//!   (1-based); `write:STEP`, the first action of step STEP (0-based) the
//!   host performs; `fsync`, the first fsync or syncfs the host makes.
//!
//! The injected error is an ordinary `io::Error` (or SQLite's matching
//! error for the journal), with `(injected by MEND_FAULT=...)` in its text
//! so nobody hunts for a real disk problem. Nothing happens without the
//! variable.
//!
//! Its kill -9 sibling: `MEND_CRASH_AT=PHASE:STEP:SEQ` kills the process
//! with SIGKILL at that point (`crash_point`), as a power cut would; and
//! `MEND_PAUSE_AT=PHASE:STEP:SEQ@FILE` holds the run there until FILE
//! exists (`pause_point`).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// The environment variable that arms a fault.
pub const VAR: &str = "MEND_FAULT";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    NoSpace,
    Io,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Where {
    Journal(u32),
    Write(u32),
    Fsync,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub kind: Kind,
    pub at: Where,
    spec: String,
}

impl Fault {
    /// Parses `KIND:WHERE`.
    pub fn parse(spec: &str) -> Result<Fault, String> {
        let bad = || {
            format!(
                "{VAR}=`{spec}` is not KIND:WHERE (KIND enospc or eio; WHERE journal:N, write:STEP or fsync)"
            )
        };
        let (kind, at) = spec.split_once(':').ok_or_else(bad)?;
        let kind = match kind {
            "enospc" => Kind::NoSpace,
            "eio" => Kind::Io,
            _ => return Err(bad()),
        };
        let num = |s: &str| s.parse::<u32>().map_err(|_| bad());
        let at = match at.split_once(':') {
            Some(("journal", n)) if num(n)? >= 1 => Where::Journal(num(n)?),
            Some(("write", s)) => Where::Write(num(s)?),
            None if at == "fsync" => Where::Fsync,
            _ => return Err(bad()),
        };
        Ok(Fault {
            kind,
            at,
            spec: spec.to_string(),
        })
    }

    fn error(&self) -> std::io::Error {
        let errno = match self.kind {
            Kind::NoSpace => rustix::io::Errno::NOSPC,
            Kind::Io => rustix::io::Errno::IO,
        };
        let e = std::io::Error::from(errno);
        std::io::Error::new(e.kind(), format!("{e} (injected by {VAR}={})", self.spec))
    }
}

fn parsed() -> &'static Result<Option<Fault>, String> {
    static FAULT: OnceLock<Result<Option<Fault>, String>> = OnceLock::new();
    FAULT.get_or_init(|| {
        let Ok(spec) = std::env::var(VAR) else {
            return Ok(None);
        };
        let f = Fault::parse(&spec)?;
        tracing::warn!("{VAR}={spec}: an I/O fault will be injected on purpose");
        Ok(Some(f))
    })
}

fn armed() -> Option<&'static Fault> {
    parsed().as_ref().ok().and_then(Option::as_ref)
}

/// Whether an I/O fault (`MEND_FAULT`), a crash point (`MEND_CRASH_AT`)
/// or a pause point (`MEND_PAUSE_AT`) is armed: the host then performs one
/// action at a time, in plan order, so that the fault meets the action it
/// names and a kill at action N finds exactly the actions before N done,
/// not whatever parallel workers reached.
pub fn one_at_a_time() -> bool {
    static POINTS: OnceLock<bool> = OnceLock::new();
    armed().is_some()
        || *POINTS.get_or_init(|| {
            std::env::var_os("MEND_CRASH_AT").is_some()
                || std::env::var_os("MEND_PAUSE_AT").is_some()
        })
}

/// Reads and checks `MEND_FAULT` at startup: a misspelt fault is an error
/// the caller stops on (mend exits 2) before it does anything, rather than
/// run unfaulted and let a test pass that tested nothing.
pub fn check_env() -> Result<(), String> {
    parsed().as_ref().map(|_| ()).map_err(Clone::clone)
}

/// Kills this process with SIGKILL if `MEND_CRASH_AT` names this point.
/// Called around every action: the variable is read once, not per call.
pub fn crash_point(phase: &str, step: u32, seq: u32) {
    pause_point(phase, step, seq);
    static AT: OnceLock<Option<String>> = OnceLock::new();
    let Some(at) = AT.get_or_init(|| std::env::var("MEND_CRASH_AT").ok()) else {
        return;
    };
    if *at == format!("{phase}:{step}:{seq}") {
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
        std::process::abort();
    }
}

/// Blocks until a file exists if `MEND_PAUSE_AT=PHASE:STEP:SEQ@FILE` names
/// this point: tests of readers that follow a live run (`mend watch`, `mend
/// serve`) hold the run there, look, then create FILE to let it go on, with
/// no timing involved. Called with `crash_point`, at the same points,
/// and alone at `walk:0:N`, before the stats of the walk's Nth chunk of
/// names (counted from 0 per process), and at `emit:0:N`, when the Nth batch
/// a step hands over (`plan-sink.emit`) is not yet checked, and at
/// `whole:STEP:SEQ`, when a folder removed whole was found as the plan saw
/// it and is not yet moved or removed. While held it writes `FILE.waiting`.
pub fn pause_point(phase: &str, step: u32, seq: u32) {
    static AT: OnceLock<Option<(String, std::path::PathBuf)>> = OnceLock::new();
    let Some((at, gate)) = AT.get_or_init(|| {
        let v = std::env::var("MEND_PAUSE_AT").ok()?;
        let (at, file) = v.split_once('@')?;
        Some((at.to_string(), file.into()))
    }) else {
        return;
    };
    if *at == format!("{phase}:{step}:{seq}") {
        tracing::warn!("MEND_PAUSE_AT={at}: paused until {} exists", gate.display());
        // Says "held here" to a test that must act while the point holds
        // (not before, not after), with no timing involved.
        let mut waiting = gate.clone().into_os_string();
        waiting.push(".waiting");
        let _ = std::fs::write(&waiting, at);
        while !gate.exists() {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

static FIRED: AtomicBool = AtomicBool::new(false);
static JOURNAL_WRITES: AtomicU32 = AtomicU32::new(0);

/// Fires the armed fault once, if `hit` says this is its place.
fn fire(hit: impl Fn(&Where) -> bool) -> Option<&'static Fault> {
    let f = armed()?;
    if hit(&f.at) && !FIRED.swap(true, Ordering::SeqCst) {
        return Some(f);
    }
    None
}

/// Before a journal write transaction: the I/O error a full or failing disk
/// gives, if this is the faulted write (the journal turns it into SQLite's
/// SQLITE_FULL or SQLITE_IOERR).
pub fn journal_write() -> Option<std::io::Error> {
    armed()?;
    let n = JOURNAL_WRITES.fetch_add(1, Ordering::SeqCst) + 1;
    let f = fire(|w| *w == Where::Journal(n))?;
    Some(f.error())
}

/// Before the host performs an action of step `step`.
pub fn action(step: u32) -> std::io::Result<()> {
    match fire(|w| *w == Where::Write(step)) {
        Some(f) => Err(f.error()),
        None => Ok(()),
    }
}

/// Before an fsync or syncfs.
pub fn fsync() -> std::io::Result<()> {
    match fire(|w| *w == Where::Fsync) {
        Some(f) => Err(f.error()),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_or_say_what_is_wrong() {
        assert_eq!(
            Fault::parse("enospc:journal:3").unwrap().at,
            Where::Journal(3)
        );
        assert_eq!(Fault::parse("eio:write:0").unwrap().kind, Kind::Io);
        assert_eq!(Fault::parse("eio:fsync").unwrap().at, Where::Fsync);
        for bad in [
            "",
            "enospc",
            "full:fsync",
            "eio:journal:0",
            "eio:write:x",
            "eio:disk",
        ] {
            let e = Fault::parse(bad).unwrap_err();
            assert!(e.contains("is not KIND:WHERE"), "{bad}: {e}");
        }
        let e = Fault::parse("enospc:fsync").unwrap().error();
        assert_eq!(
            e.to_string(),
            "No space left on device (os error 28) (injected by MEND_FAULT=enospc:fsync)"
        );
    }
}
