//! A reserve of space for the day the disk is full, which is the day mend
//! is needed (a WAL archive at 100% of the database disk): a small file,
//! `STATE/reserve`, kept beside the journal. When the state directory's
//! filesystem has less room than the reserve, mend deletes it first, says
//! so, and runs on the space it frees: its lock, its journal and the
//! cleanup that frees the disk. At the end of the command it makes the
//! reserve again, when there is room.
//!
//! Size: an eighth of the filesystem, between 256 KiB and 8 MiB. While
//! mend runs on the reserve, the journal checkpoints its WAL every 16
//! pages (see [`lean`]) so that it stays within it.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// The reserve's file name in the state directory.
pub const RESERVE_FILE: &str = "reserve";

static LEAN: AtomicBool = AtomicBool::new(false);

/// Whether mend runs on its released reserve: the journal keeps its WAL small.
pub fn lean() -> bool {
    LEAN.load(Ordering::Relaxed)
}

fn path(state: &Path) -> PathBuf {
    state.join(RESERVE_FILE)
}

/// The nearest existing directory at or above `p`.
fn existing(p: &Path) -> &Path {
    let mut at = p;
    while !at.exists() {
        match at.parent() {
            Some(up) => at = up,
            None => break,
        }
    }
    at
}

/// (free bytes for an unprivileged writer, filesystem size) where `state` is.
fn room(state: &Path) -> Option<(u64, u64)> {
    let st = rustix::fs::statvfs(existing(state)).ok()?;
    Some((
        st.f_bavail.saturating_mul(st.f_frsize),
        st.f_blocks.saturating_mul(st.f_frsize),
    ))
}

/// How big the reserve is on a filesystem of `total` bytes.
pub fn size_for(total: u64) -> u64 {
    (total / 8).clamp(256 << 10, 8 << 20)
}

/// What [`before`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Before {
    /// There was room; the reserve stays.
    Kept,
    /// The disk was full: the reserve was deleted to make room.
    Released { bytes: u64, free: u64 },
    /// The disk is full and there was no reserve to release.
    Missing { free: u64 },
}

/// Before a command that writes the journal: release the reserve when its
/// filesystem has less room than the reserve holds, and say so on stderr.
pub fn before(state: &Path) -> Before {
    let Some((free, total)) = room(state) else {
        return Before::Kept;
    };
    let want = size_for(total);
    if free >= want {
        return Before::Kept;
    }
    let file = path(state);
    let bytes = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    let released = bytes > 0 && std::fs::remove_file(&file).is_ok();
    LEAN.store(true, Ordering::Relaxed);
    if released {
        eprintln!(
            "mend: the disk holding {} is full ({} free); released mend's reserve ({}, {}) so this run can take its lock and journal; it is made again when the run ends and there is room",
            state.display(),
            mend_human::human_bytes(free),
            mend_human::human_bytes(bytes),
            file.display()
        );
        Before::Released { bytes, free }
    } else {
        eprintln!(
            "mend: the disk holding {} is full ({} free) and mend has no reserve there to release; if this run cannot journal, free a little space there (or point --state-dir at another disk) and run it again",
            state.display(),
            mend_human::human_bytes(free),
        );
        Before::Missing { free }
    }
}

/// After a command: make the reserve again (or for the first time) when
/// there is room for it and a margin as big; say so when there is not.
pub fn after(state: &Path, before: &Before) {
    if !state.is_dir() {
        return;
    }
    let file = path(state);
    let Some((free, total)) = room(state) else {
        return;
    };
    let want = size_for(total);
    let have = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    if have >= want {
        return;
    }
    if free < want.saturating_mul(2) {
        if *before != Before::Kept {
            eprintln!(
                "mend: the reserve ({}) is not made again yet: only {} is free on the disk holding {}; free space there so that the next run on a full disk can start",
                mend_human::human_bytes(want),
                mend_human::human_bytes(free),
                state.display()
            );
        }
        return;
    }
    match make(&file, want) {
        Ok(()) if *before != Before::Kept => eprintln!(
            "mend: made the reserve again ({}, {})",
            mend_human::human_bytes(want),
            file.display()
        ),
        Ok(()) => {}
        Err(e) => tracing::warn!("cannot make the reserve {}: {e}", file.display()),
    }
}

/// Allocate the reserve whole (not sparse), then give it its name.
fn make(file: &Path, size: u64) -> std::io::Result<()> {
    let tmp = file.with_extension("tmp");
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        // Real blocks (a sparse file would free nothing when deleted):
        // fallocate reserves them without writing; zeros where it cannot.
        if rustix::fs::fallocate(&f, rustix::fs::FallocateFlags::empty(), 0, size).is_err() {
            let chunk = vec![0u8; 64 << 10];
            let mut left = size;
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                f.write_all(&chunk[..n])?;
                left -= n as u64;
            }
        }
        f.sync_all()?;
        std::fs::rename(&tmp, file)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_an_eighth_within_bounds() {
        assert_eq!(size_for(2 << 20), 256 << 10);
        assert_eq!(size_for(16 << 20), 2 << 20);
        assert_eq!(size_for(1 << 40), 8 << 20);
    }

    #[test]
    fn made_after_and_kept_while_there_is_room() {
        let tmp = tempfile::tempdir().unwrap();
        let b = before(tmp.path());
        assert_eq!(b, Before::Kept);
        after(tmp.path(), &b);
        let len = std::fs::metadata(tmp.path().join(RESERVE_FILE))
            .unwrap()
            .len();
        assert!(len >= 256 << 10, "{len}");
    }
}
