//! "Byte-identical after the rollback", proved from the upper layer: what
//! the run touched is all the upper holds, so the check costs the run's
//! changes, not the grant's size.
//!
//! For each entry of the upper layer:
//! - a whiteout: the lower entry must not exist (else it is missing);
//! - otherwise the merged entry (the grant's path, inside the namespace)
//!   must equal the lower one (an fd on the real directory opened before
//!   the overlay was mounted): type, mode, owner, size, modification time,
//!   link target, extended attributes, link count (when the overlay keeps
//!   hard links); a file's content is hashed only when the upper holds data
//!   or its data comes from another path;
//! - a directory that is opaque or redirected from elsewhere replaces the
//!   lower one: its whole subtree is compared, merged against lower.
//!
//! As the copying rehearsal: paths the plan called irreversible are not
//! compared, a directory above one is compared by type, mode and owner
//! only, and neither ctime (nobody can restore it) nor atime (reading
//! moves it) counts.

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

#[cfg(doc)]
use super::skip::GRAVEYARD;
use super::skip::Skip;

/// What the check found in one grant.
#[derive(Debug, Default)]
pub struct Verdict {
    /// "media/x: content, mtime differs", as the copying rehearsal words it.
    pub differences: Vec<String>,
    /// Entries of the upper layer looked at, and of subtrees compared whole.
    pub entries: u64,
    /// Files whose content was hashed.
    pub hashed: u64,
}

/// One grant's layers, as the check reads them.
pub struct Layers<'a> {
    /// The grant's name: differences read `NAME/rel/path`.
    pub name: &'a str,
    pub upper: &'a Path,
    /// The real directory, opened before the overlay was mounted.
    pub lower: &'a OwnedFd,
    /// The grant's path: the merged view, inside the namespace.
    pub merged: &'a Path,
    /// Hard links kept by the overlay (`index=on`): link counts compared.
    pub links: bool,
    /// `NAME/rel` paths irreversible by the plan.
    pub skip: &'a Skip<'a>,
}

#[derive(Debug, PartialEq)]
struct Meta {
    kind: char,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    nlink: u64,
    mtime: (i64, i64),
    link: Option<Vec<u8>>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The xattr buffer's first size. The kernel allocates a buffer of the
/// size it is given for each list or read (64 KiB came from the page
/// allocator: 4% of a rehearsal in perf); nearly every entry's xattrs fit
/// in 1 KiB, and a bigger one is asked for its size and read again.
const XATTR_FIRST: usize = 1024;

thread_local! {
    /// One buffer for every xattr read of the check, grown when an entry
    /// needs more: zeroing a fresh one for each of a million entries cost
    /// more than the reads.
    static XATTR_BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; XATTR_FIRST]);
}

/// Call `read` with the shared buffer, growing it to the size `read`
/// reports for an empty buffer when it says ERANGE (the value may grow
/// between the two calls: then again). The bytes read, or None.
fn with_buf<T>(
    read: impl Fn(&mut [u8]) -> rustix::io::Result<usize>,
    take: impl FnOnce(&[u8]) -> T,
) -> Option<T> {
    XATTR_BUF.with_borrow_mut(|buf| {
        loop {
            match read(&mut buf[..]) {
                Ok(n) => return Some(take(&buf[..n])),
                Err(rustix::io::Errno::RANGE) => {
                    let need = read(&mut []).ok()?;
                    buf.resize(need.max(buf.len() * 2), 0);
                }
                Err(_) => return None,
            }
        }
    })
}

fn names(path: &Path) -> Vec<Vec<u8>> {
    with_buf(
        |b| rustix::fs::llistxattr(path, b),
        |list| {
            list.split(|b| *b == 0)
                .filter(|s| !s.is_empty())
                .map(<[u8]>::to_vec)
                .collect()
        },
    )
    .unwrap_or_default()
}

fn xattr(path: &Path, name: &[u8]) -> Option<Vec<u8>> {
    let name = std::ffi::OsStr::from_bytes(name);
    with_buf(|b| rustix::fs::lgetxattr(path, name, b), <[u8]>::to_vec)
}

const OVERLAY: &[u8] = b"trusted.overlay.";

/// Whether an upper directory changes what lies beneath it, so the lower
/// layer at its path is not what the overlay shows there: an opaque or a
/// redirect marker. One whose markers cannot be listed counts as one.
pub(crate) fn hides_lower(path: &Path) -> bool {
    with_buf(
        |b| rustix::fs::llistxattr(path, b),
        |list| {
            list.split(|b| *b == 0)
                .filter_map(|n| n.strip_prefix(OVERLAY))
                .any(|n| n == b"opaque" || n == b"redirect")
        },
    )
    .unwrap_or(true)
}

fn meta(dir: &OwnedFd, rel: &Path, abs: &Path, links: bool) -> Option<Meta> {
    let at = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let st = rustix::fs::statat(dir, at, AtFlags::SYMLINK_NOFOLLOW).ok()?;
    let kind = match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => 'd',
        FileType::RegularFile => 'f',
        FileType::Symlink => 'l',
        _ => 'o',
    };
    let link =
        (kind == 'l').then(|| rustix::fs::readlinkat(dir, at, Vec::new()).map(|l| l.into_bytes()));
    let link = match link {
        Some(Ok(l)) => Some(l),
        Some(Err(_)) => Some(Vec::new()),
        None => None,
    };
    let mut xattrs: Vec<(Vec<u8>, Vec<u8>)> = names(abs)
        .into_iter()
        .filter(|n| !n.starts_with(OVERLAY))
        .map(|n| {
            let v = xattr(abs, &n).unwrap_or_default();
            (n, v)
        })
        .collect();
    xattrs.sort();
    Some(Meta {
        kind,
        mode: st.st_mode,
        uid: st.st_uid,
        gid: st.st_gid,
        size: if kind == 'd' { 0 } else { st.st_size as u64 },
        nlink: if kind == 'd' || !links {
            0
        } else {
            st.st_nlink as u64
        },
        mtime: (st.st_mtime as i64, st.st_mtime_nsec as i64),
        link,
        xattrs,
    })
}

fn hash(dir: &OwnedFd, rel: &Path) -> std::io::Result<blake3::Hash> {
    let fd = rustix::fs::openat(
        dir,
        rel,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut f = std::fs::File::from(fd);
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize())
}

/// "content, mtime differs", in the copying rehearsal's words and order.
fn describe(a: &Meta, b: &Meta, content: bool) -> Option<String> {
    let mut what = Vec::new();
    if a.kind != b.kind {
        what.push("type");
    }
    if content || a.size != b.size || a.link != b.link {
        what.push("content");
    }
    if a.mode != b.mode {
        what.push("mode");
    }
    if (a.uid, a.gid) != (b.uid, b.gid) {
        what.push("owner");
    }
    if a.mtime != b.mtime {
        what.push("mtime");
    }
    if a.nlink != b.nlink {
        what.push("link count");
    }
    if a.xattrs != b.xattrs {
        what.push("extended attributes");
    }
    (!what.is_empty()).then(|| format!("{} differs", what.join(", ")))
}

struct Walk<'a> {
    l: &'a Layers<'a>,
    merged: OwnedFd,
    lower_abs: PathBuf,
    v: Verdict,
}

impl Walk<'_> {
    fn full(&self, rel: &Path) -> String {
        if rel.as_os_str().is_empty() {
            self.l.name.to_string()
        } else {
            format!("{}/{}", self.l.name, rel.to_string_lossy())
        }
    }

    fn skipped(&self, full: &str) -> bool {
        self.l.skip.covers(full)
    }

    /// A directory above an irreversible path: a file removed for good
    /// changed its times and entries, by design.
    fn above_skipped(&self, full: &str) -> bool {
        self.l.skip.is_above(full)
    }

    fn lower(&self, rel: &Path) -> Option<Meta> {
        meta(self.l.lower, rel, &self.lower_abs.join(rel), self.l.links)
    }

    fn merged(&self, rel: &Path) -> Option<Meta> {
        meta(&self.merged, rel, &self.l.merged.join(rel), self.l.links)
    }

    /// Compare one entry present in both views; whether to go below it.
    fn compare(&mut self, rel: &Path, a: &Meta, b: &Meta, data_same: bool) -> anyhow::Result<()> {
        let full = self.full(rel);
        if a.kind == 'd' && b.kind == 'd' && self.above_skipped(&full) {
            if (a.mode, a.uid, a.gid) != (b.mode, b.uid, b.gid) {
                let d = describe(a, b, false).unwrap_or_default();
                self.v.differences.push(format!("{full}: {d}"));
            }
            return Ok(());
        }
        let mut content = false;
        if a.kind == 'f' && b.kind == 'f' && a.size == b.size && !data_same {
            self.v.hashed += 1;
            content = hash(self.l.lower, rel)? != hash(&self.merged, rel)?;
        }
        if let Some(d) = describe(a, b, content) {
            self.v.differences.push(format!("{full}: {d}"));
        }
        Ok(())
    }

    fn walk(&mut self, rel: &Path) -> anyhow::Result<()> {
        self.v.entries += 1;
        let full = self.full(rel);
        // Irreversible by the plan (a whiteout per file a disposable cull
        // removed): decided by its name, never stat'ed.
        if self.skipped(&full) {
            return Ok(());
        }
        let up = self.l.upper.join(rel);
        let umd = std::fs::symlink_metadata(&up)?;
        let ovl: Vec<Vec<u8>> = names(&up)
            .into_iter()
            .filter(|n| n.starts_with(OVERLAY))
            .collect();
        let has = |n: &str| {
            ovl.iter()
                .any(|x| x == format!("trusted.overlay.{n}").as_bytes())
        };
        let whiteout = (umd.file_type().is_char_device() && umd.rdev() == 0) || has("whiteout");
        let lower = self.lower(rel);
        if whiteout {
            if lower.is_some() {
                self.v
                    .differences
                    .push(format!("{full}: missing after rollback"));
            }
            return Ok(());
        }
        let Some(lower) = lower else {
            // mend's trash made only to hold the graveyard of a rehearsal
            // (see [`GRAVEYARD`]): what else is in it was left behind.
            if rel == Path::new(mend_plan::TRASH) && umd.is_dir() && self.above_skipped(&full) {
                return self.children(rel, &up);
            }
            self.v
                .differences
                .push(format!("{full}: left behind by the run"));
            return Ok(());
        };
        let Some(merged) = self.merged(rel) else {
            self.v
                .differences
                .push(format!("{full}: missing after rollback"));
            return Ok(());
        };
        // A redirect to its own path is the way back from a rename; one to
        // another path means the data (or the subtree) is someone else's.
        let mut own = b"/".to_vec();
        own.extend_from_slice(rel.as_os_str().as_bytes());
        let base = rel.file_name().map(|b| b.as_bytes()).unwrap_or(b"");
        let foreign = has("redirect")
            && xattr(&up, b"trusted.overlay.redirect").is_some_and(|r| {
                if r.starts_with(b"/") {
                    r != own
                } else {
                    r != base
                }
            });
        let metacopy = has("metacopy");
        self.compare(rel, &lower, &merged, metacopy && !foreign)?;
        if lower.kind == 'd' && merged.kind == 'd' {
            let opaque =
                has("opaque") && xattr(&up, b"trusted.overlay.opaque").is_some_and(|x| x == b"y");
            if opaque || foreign {
                self.subtree(rel)?;
            } else {
                self.children(rel, &up)?;
            }
        }
        Ok(())
    }

    /// Each entry of the upper directory `up` (at `rel`), in name order.
    fn children(&mut self, rel: &Path, up: &Path) -> anyhow::Result<()> {
        let mut children = Vec::new();
        for e in std::fs::read_dir(up)? {
            children.push(e?.file_name());
        }
        children.sort();
        for name in children {
            self.walk(&rel.join(name))?;
        }
        Ok(())
    }

    /// A subtree that replaced the lower one: every entry, both ways.
    fn subtree(&mut self, rel: &Path) -> anyhow::Result<()> {
        let list = |abs: &Path| -> Vec<std::ffi::OsString> {
            let mut n: Vec<std::ffi::OsString> = std::fs::read_dir(abs)
                .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
                .unwrap_or_default();
            n.sort();
            n
        };
        let below = list(&self.lower_abs.join(rel));
        let now = list(&self.l.merged.join(rel));
        let extra: Vec<&std::ffi::OsString> = now.iter().filter(|n| !below.contains(n)).collect();
        for name in below.iter().chain(extra) {
            let child = rel.join(name);
            let full = self.full(&child);
            if self.skipped(&full) {
                continue;
            }
            self.v.entries += 1;
            match (self.lower(&child), self.merged(&child)) {
                (Some(_), None) => self
                    .v
                    .differences
                    .push(format!("{full}: missing after rollback")),
                (None, Some(_)) => self
                    .v
                    .differences
                    .push(format!("{full}: left behind by the run")),
                (Some(a), Some(b)) => {
                    self.compare(&child, &a, &b, false)?;
                    if a.kind == 'd' && b.kind == 'd' {
                        self.subtree(&child)?;
                    }
                }
                (None, None) => {}
            }
        }
        Ok(())
    }
}

/// Check one grant after the rollback; see the module's comment.
pub fn check(l: &Layers) -> anyhow::Result<Verdict> {
    let merged = rustix::fs::open(
        l.merged,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut w = Walk {
        l,
        merged,
        lower_abs: PathBuf::from(format!("/proc/self/fd/{}", l.lower.as_raw_fd())),
        v: Verdict::default(),
    };
    w.walk(Path::new(""))?;
    Ok(w.v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lists and values larger than the buffer's first size are read
    /// whole: a check that cut them would miss a changed xattr.
    #[test]
    fn xattrs_larger_than_the_first_buffer_are_read_whole() {
        // tmpfs: ext4 holds at most a block of xattrs per inode.
        let dir = tempfile::tempdir_in("/dev/shm").unwrap_or_else(|_| tempfile::tempdir().unwrap());
        let f = dir.path().join("f");
        std::fs::write(&f, b"x").unwrap();
        let big = vec![b'v'; 3 * XATTR_FIRST];
        let mut want = Vec::new();
        for i in 0..40 {
            let name = format!("user.a-rather-long-attribute-name-number-{i:03}");
            let value = if i == 7 { &big[..] } else { b"v" };
            if let Err(e) = rustix::fs::lsetxattr(&f, &name, value, rustix::fs::XattrFlags::empty())
            {
                assert_eq!(i, 0, "{e}");
                eprintln!("skipped: no user xattrs on {}", dir.path().display());
                return;
            }
            want.push(name.into_bytes());
        }
        assert!(want.iter().map(|n| n.len() + 1).sum::<usize>() > XATTR_FIRST);
        let mut got = names(&f);
        got.sort();
        assert_eq!(got, want);
        assert_eq!(xattr(&f, &want[7]).unwrap(), big);
    }
}
