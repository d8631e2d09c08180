//! A step's walk (`files.walk`): a stack of open directories read in
//! chunks, each chunk sorted and every name `lstat`ed, by a thread of its
//! own that reads ahead. On a rehearsal's overlay, what the run has not
//! touched is read from the lower layer (see [`crate::cow::lower`]).

use std::os::unix::ffi::OsStrExt;

use std::path::{Path, PathBuf};

use cap_std::fs::Dir;
use rustix::fs::FileType;

use super::bindings::mend::runbook::files;
use super::bindings::mend::runbook::types::HostError;
use super::host::{denied, io_error};
use crate::cow::lower::{self, Place, View};
use crate::grants::Grants;

/// At most this many walk entries per call.
const WALK_BATCH_CAP: u32 = 8192;
/// A walk reads a directory this many entries at a time (each chunk sorted),
/// so a directory of ten million files never sits whole in the host.
const WALK_CHUNK: usize = 4096;
/// A walk goes at most this deep: each level holds open directories and a
/// chunk of names, so depth times [`WALK_CHUNK`] bounds a walk's memory.
pub const WALK_MAX_DEPTH: usize = 256;

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

/// Entries a read-ahead batch holds: small, so that the step gets to work
/// on a chunk's first entries while the rest are stat'ed.
const WALK_AHEAD_BATCH: u32 = 256;
/// Batches read ahead at most (8,192 entries).
const WALK_AHEAD: usize = 32;

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
    /// The current chunk's names not yet reported, sorted, with the type
    /// the directory gives (a listing's kind; a walk stats each).
    names: std::vec::IntoIter<(String, FileType)>,
    /// On a rehearsal's overlay: where `dir` is read from.
    layered: Option<Layered>,
}

/// A directory of a walk on a rehearsal's overlay.
struct Layered {
    view: &'static View,
    /// Its path in the overlay.
    rel: PathBuf,
    place: Place,
}

impl Layered {
    /// A file of this directory whose attributes the lower layer may not
    /// give as the overlay does: with `index=on`, a file with other links
    /// shows the attributes of whichever link the run copied up.
    fn read_through(&self, st: &rustix::fs::Stat) -> bool {
        self.place == Place::Below
            && st.st_nlink > 1
            && rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::Directory
    }
}

/// The walk's root, and where it is read from on a rehearsal's overlay.
fn open_root(grant: &Dir, rel: &Path) -> std::io::Result<(Dir, Option<Layered>)> {
    let Some(view) = lower::id_of(grant).ok().and_then(lower::view) else {
        return Ok((grant.open_dir(rel)?, None));
    };
    // `.` for the grant's root, as `Resolved::rel_path` gives it.
    let rel = rel.to_path_buf();
    let place = view.place(&rel);
    if place == Place::Below
        && let Some(d) = view.open_lower(&rel)
    {
        return Ok((d, Some(Layered { view, rel, place })));
    }
    let dir = grant.open_dir(&rel)?;
    if rustix::fs::fstat(&dir)?.st_dev != view.merged_dev() {
        // Inside a mount in the grant, below its own overlay's root:
        // read through the overlay.
        return Ok((dir, None));
    }
    let place = match place {
        Place::Below => Place::Merged { clear: true },
        p => p,
    };
    Ok((dir, Some(Layered { view, rel, place })))
}

/// Subdirectory `name` of `parent`, and where it is read from: below when
/// the run has put nothing of it in the upper layer and nothing above
/// hides the lower layer; else through the overlay.
fn open_child(parent: &Frame, name: &Path) -> std::io::Result<(Dir, Option<Layered>)> {
    let Some(l) = &parent.layered else {
        return Ok((parent.dir.open_dir(name)?, None));
    };
    let rel = l.rel.join(name);
    let clear = l.place != Place::Merged { clear: false };
    let untouched = clear && l.view.untouched(&rel);
    if untouched {
        let below = match l.place {
            Place::Below => l.view.open_below(&parent.dir, name),
            Place::Merged { .. } => l.view.open_lower(&rel),
        };
        if let Some(d) = below {
            return Ok((
                d,
                Some(Layered {
                    view: l.view,
                    rel,
                    place: Place::Below,
                }),
            ));
        }
    }
    let dir = match l.place {
        Place::Below => l.view.merged.open_dir(&rel)?,
        Place::Merged { .. } => parent.dir.open_dir(name)?,
    };
    if rustix::fs::fstat(&dir)?.st_dev != l.view.merged_dev() {
        // A filesystem mounted in the grant (a volume): its own overlay.
        let layered = lower::id_of(&dir)
            .ok()
            .and_then(lower::view)
            .map(|view| Layered {
                view,
                rel: PathBuf::from("."),
                place: view.place(Path::new(".")),
            });
        return Ok((dir, layered));
    }
    let clear = clear && (untouched || !l.view.hides_lower(&rel));
    Ok((
        dir,
        Some(Layered {
            view: l.view,
            rel,
            place: Place::Merged { clear },
        }),
    ))
}

/// Bytes of directory entries read per `getdents64`: about a thousand
/// names, as `find` reads them (cap-std's reader takes some 25 a call,
/// and on tmpfs each call costs a search for where the last one stopped).
const GETDENTS_BUF: usize = 32 << 10;

/// What walk and stat report of an lstat: kind, size, mtime (seconds, nanos).
pub(super) fn described(md: &cap_std::fs::Metadata) -> (files::EntryKind, u64, i64, u32) {
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

fn frame(dir: Dir, prefix: String, layered: Option<Layered>) -> std::io::Result<Frame> {
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
        names: Vec::new().into_iter(),
        layered,
    };
    f.refill()?;
    Ok(f)
}

impl Frame {
    /// Read the next chunk of the directory's names (at least
    /// [`WALK_CHUNK`], or the rest; a chunk ends where a `getdents64`
    /// buffer does, as the directory's offset has moved past it), sorted;
    /// false at its end. Each is `fstatat`ed when the walk reaches it
    /// ([`Frame::next_described`]), so the step sees a chunk's first entries
    /// without waiting for the whole chunk's stats.
    fn refill(&mut self) -> std::io::Result<bool> {
        if self.read_all {
            return Ok(false);
        }
        let mut names = Vec::new();
        let mut buf = Vec::with_capacity(GETDENTS_BUF);
        let mut raw = rustix::fs::RawDir::new(&self.listing, buf.spare_capacity_mut());
        loop {
            if names.len() >= WALK_CHUNK && raw.is_buffer_empty() {
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
            let name = mend_plan::names::encode(std::ffi::OsStr::from_bytes(bytes)).into_owned();
            // The host's own trash and staging (at a grant's root, and at
            // the top of a volume mounted in it) are not the step's to see
            // or plan over: what undo needs lives there.
            if crate::grants::host_owned(&name).is_some() {
                continue;
            }
            names.push((name, e.file_type()));
        }
        if !names.is_empty() {
            // Names listed, none stat'ed yet: where a test removes one
            // under the walk, as a live service does.
            static CHUNKS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = CHUNKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            mend_faults::pause_point("walk", 0, n);
        }
        names.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let more = !names.is_empty();
        self.names = names.into_iter();
        Ok(more)
    }

    /// The next entry of the chunk, `lstat`ed now (a symlink is reported as
    /// a symlink, never followed); None at the chunk's end. A name removed
    /// since it was listed (a live service's cache) is passed over, as a
    /// walk a moment later sees.
    fn next_described(&mut self) -> std::io::Result<Option<Described>> {
        for (name, _) in self.names.by_ref() {
            let raw_name = mend_plan::names::decode(&name);
            let st = match rustix::fs::statat(
                &self.dir,
                &*raw_name,
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            ) {
                Ok(st) => st,
                Err(rustix::io::Errno::NOENT) => continue,
                Err(err) => {
                    let err = std::io::Error::from(err);
                    return Err(std::io::Error::new(err.kind(), format!("{name}: {err}")));
                }
            };
            let (kind, size, secs, nanos) = match &self.layered {
                Some(l) if l.read_through(&st) => {
                    match l.view.merged.symlink_metadata(l.rel.join(&*raw_name)) {
                        Ok(md) => described(&md),
                        Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(err) => {
                            return Err(std::io::Error::new(err.kind(), format!("{name}: {err}")));
                        }
                    }
                }
                _ => described_stat(&st),
            };
            return Ok(Some((name, kind, size, secs, nanos)));
        }
        Ok(None)
    }
}

impl WalkState {
    pub(super) fn start(grants: &Grants, root: &str) -> WalkState {
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

    /// Up to `max` entries: those read ahead by now, waiting only while
    /// there are none. A step sees the first entries of a big directory
    /// as soon as they are stat'ed, not once a full batch is.
    pub(super) fn next(&mut self, max: u32) -> Result<Vec<files::Entry>, HostError> {
        use std::sync::mpsc::TryRecvError;
        let max = max.min(WALK_BATCH_CAP) as usize;
        while self.held.len() < max && !self.ended {
            let got = if self.held.is_empty() {
                self.ahead.recv().map_err(|_| TryRecvError::Disconnected)
            } else {
                self.ahead.try_recv()
            };
            match got {
                Ok(Ok(batch)) if !batch.is_empty() => self.held.extend(batch),
                Err(TryRecvError::Empty) => break,
                // An error ends the walk, as it always did.
                Ok(Err(e)) => {
                    self.ended = true;
                    self.held.clear();
                    return Err(e);
                }
                Ok(Ok(_)) | Err(TryRecvError::Disconnected) => self.ended = true,
            }
        }
        let n = max.min(self.held.len());
        Ok(self.held.drain(..n).collect())
    }
}

/// The first frame of a walk or a listing of `root`: opened, its first
/// chunk of names read.
fn root_frame(grants: &Grants, root: &str) -> Result<Frame, HostError> {
    grants.read(root).map_err(denied).and_then(|r| {
        let (dir, layered) =
            open_root(&r.grant.dir, &r.rel_path()).map_err(|e| io_error(root, e))?;
        frame(dir, root.trim_end_matches('/').to_string(), layered).map_err(|e| io_error(root, e))
    })
}

/// A step's listing of one directory (`files.listing`): the walk's sorted
/// chunks of names, each with the kind the directory gives, none stat'ed
/// (but where the filesystem gives no type). Read as the step asks: a
/// chunk's `getdents64` takes about what one stat of each name would.
pub struct ListingState {
    frame: Option<Frame>,
    error: Option<HostError>,
}

impl ListingState {
    pub(super) fn start(grants: &Grants, dir: &str) -> ListingState {
        match root_frame(grants, dir) {
            Ok(f) => ListingState {
                frame: Some(f),
                error: None,
            },
            Err(e) => ListingState {
                frame: None,
                error: Some(e),
            },
        }
    }

    pub(super) fn next(&mut self, max: u32) -> Result<Vec<files::Listed>, HostError> {
        if let Some(e) = self.error.take() {
            self.frame = None;
            return Err(e);
        }
        let mut out = Vec::new();
        while out.len() < max.min(WALK_BATCH_CAP) as usize {
            let Some(f) = &mut self.frame else { break };
            let Some((name, ty)) = f.names.next() else {
                let prefix = f.prefix.clone();
                match f.refill() {
                    Ok(true) => {}
                    Ok(false) => self.frame = None,
                    Err(e) => {
                        self.frame = None;
                        return Err(io_error(&prefix, e));
                    }
                }
                continue;
            };
            let kind = match ty {
                FileType::RegularFile => files::EntryKind::File,
                FileType::Directory => files::EntryKind::Dir,
                FileType::Symlink => files::EntryKind::Symlink,
                FileType::Unknown => {
                    // A filesystem that does not say (some network ones):
                    // lstat it, as a walk does.
                    match rustix::fs::statat(
                        &f.dir,
                        &*mend_plan::names::decode(&name),
                        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
                    ) {
                        Ok(st) => described_stat(&st).0,
                        Err(rustix::io::Errno::NOENT) => continue,
                        Err(err) => {
                            let err = std::io::Error::from(err);
                            let path = format!("{}/{name}", f.prefix);
                            self.frame = None;
                            return Err(io_error(&path, err));
                        }
                    }
                }
                _ => files::EntryKind::Other,
            };
            out.push(files::Listed {
                path: format!("{}/{}", f.prefix, name),
                kind,
            });
        }
        Ok(out)
    }
}

impl Walker {
    fn start(grants: &Grants, root: &str) -> Walker {
        let opened = root_frame(grants, root);
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
            let next = top.next_described();
            let Some((name, kind, size, mtime, mtime_nanos)) =
                next.map_err(|e| io_error(&top.prefix, e))?
            else {
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
                let sub = open_child(top, &mend_plan::names::decode(&name))
                    .and_then(|(d, layered)| frame(d, path.clone(), layered));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grants::Grants;

    fn listed(grants: &Grants, dir: &str) -> Result<Vec<(String, files::EntryKind)>, HostError> {
        let mut l = ListingState::start(grants, dir);
        let mut out = Vec::new();
        loop {
            let batch = l.next(1000)?;
            if batch.is_empty() {
                return Ok(out);
            }
            out.extend(batch.into_iter().map(|e| (e.path, e.kind)));
        }
    }

    /// A listing names every entry of its directory (more than two chunks,
    /// names that are not UTF-8 or hold a newline, a FIFO, a symlink, a
    /// folder) with the kind the directory gives, and nothing below it nor
    /// the host's own trash.
    #[test]
    fn a_listing_names_every_entry_with_its_kind_and_nothing_below() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        const MANY: usize = 9_000;
        for i in 0..MANY {
            std::fs::write(root.join(format!("f{i:05}")), "x").unwrap();
        }
        std::fs::write(
            root.join(std::ffi::OsStr::from_bytes(b"odd\xff\nname")),
            "x",
        )
        .unwrap();
        std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
        std::fs::write(root.join("sub/inside"), "x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("link")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.join("fifo"),
            FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o640),
            0,
        )
        .unwrap();
        std::fs::create_dir_all(root.join(".mend-trash/run")).unwrap();
        let g = Grants::one_for_tests(root, true);
        let all = listed(&g, "data").unwrap();
        assert_eq!(all.len(), MANY + 4, "every entry, once");
        let kind = |p: &str| all.iter().find(|(q, _)| q == p).map(|(_, k)| *k);
        assert_eq!(kind("data/f00000"), Some(files::EntryKind::File));
        assert_eq!(kind("data/f08999"), Some(files::EntryKind::File));
        assert_eq!(kind("data/sub"), Some(files::EntryKind::Dir));
        assert_eq!(kind("data/link"), Some(files::EntryKind::Symlink));
        assert_eq!(kind("data/fifo"), Some(files::EntryKind::Other));
        assert_eq!(kind("data/odd\\xff\nname"), Some(files::EntryKind::File));
        assert!(kind("data/sub/inside").is_none() && kind("data/.mend-trash").is_none());
        let distinct: std::collections::BTreeSet<_> = all.iter().map(|(p, _)| p).collect();
        assert_eq!(distinct.len(), all.len());
        // A folder below, and what is not there or not granted.
        assert_eq!(
            listed(&g, "data/sub").unwrap(),
            vec![
                ("data/sub/deeper".to_string(), files::EntryKind::Dir),
                ("data/sub/inside".to_string(), files::EntryKind::File),
            ]
        );
        assert!(matches!(
            listed(&g, "data/none"),
            Err(HostError::NotFound(_))
        ));
        assert!(matches!(listed(&g, "other"), Err(HostError::Denied(_))));
    }
}
