//! `set-owner` and `set-mode`: a native, journaled `chown -R` and
//! `chmod -R`. Before anything changes, every entry's owner, group and mode
//! are written to a file in the trash (on the filesystem of what changes),
//! made durable, and kept until the run commits: a rollback puts each back,
//! and a resumed run finds the file and does not record the half-changed
//! state over it. Each entry is reached by one name relative to an open
//! directory, never following a symlink (a symlink's own owner changes; its
//! mode has no meaning and is left alone).

use std::ffi::{CStr, CString, OsStr};
use std::io::Write as _;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};

use crate::grants::Resolved;

/// What to change.
pub struct Change {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// (files, directories)
    pub mode: Option<(u32, u32)>,
    pub recursive: bool,
}

/// A user's or group's id by name (or a number), from /etc/passwd or
/// /etc/group.
pub fn id_of(name: &str, db: &str) -> Option<u32> {
    if let Ok(n) = name.parse() {
        return Some(n);
    }
    super::archive::ids_by_name(db).get(name).copied()
}

/// One entry as it was: path below the action's path ("" for itself).
struct Was {
    rel: PathBuf,
    uid: u32,
    gid: u32,
    mode: u32,
    link: bool,
}

fn open_parent(r: &Resolved) -> Result<(cap_std::fs::Dir, CString)> {
    let (parent, leaf) = r.rel.rsplit_once('/').unwrap_or(("", r.rel));
    if leaf.is_empty() {
        bail!("set-owner and set-mode change entries in a grant, not the grant's root itself");
    }
    let dir = if parent.is_empty() {
        r.grant.dir.try_clone()?
    } else {
        r.grant.dir.open_dir(mend_plan::names::decode(parent))?
    };
    let leaf = mend_plan::names::decode(leaf);
    Ok((dir, CString::new(leaf.as_os_str().as_encoded_bytes())?))
}

/// Visit `name` in `dir` (and below, when recursive), calling `each` with
/// the open parent, the name, its path below the top and its stat.
fn visit(
    dir: BorrowedFd,
    name: &CStr,
    rel: &mut PathBuf,
    recursive: bool,
    each: &mut dyn FnMut(BorrowedFd, &CStr, &Path, &rfs::Stat) -> Result<()>,
) -> Result<()> {
    let st = rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
    let ft = FileType::from_raw_mode(st.st_mode);
    if recursive && ft == FileType::Directory {
        let fd = rfs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mut names = Vec::new();
        let mut rd = rfs::Dir::read_from(&fd)?;
        while let Some(e) = rd.read() {
            let e = e?;
            let n = e.file_name();
            if n != c"." && n != c".." {
                names.push((e.ino(), n.to_owned()));
            }
        }
        drop(rd);
        names.sort_unstable();
        for (_, n) in names {
            rel.push(OsStr::from_bytes(n.to_bytes()));
            let r = visit(fd.as_fd(), &n, rel, recursive, each);
            rel.pop();
            r?;
        }
    }
    each(dir, name, rel, &st)
}

/// Record what is there (unless an earlier try already did), then change it.
pub fn apply(r: &Resolved, saved: &Resolved, change: &Change) -> Result<()> {
    let (dir, leaf) = open_parent(r)?;
    if !super::fsops::exists(saved)? {
        let mut list = Vec::new();
        visit(
            dir.as_fd(),
            &leaf,
            &mut PathBuf::new(),
            change.recursive,
            &mut |_, _, rel, st| {
                list.extend_from_slice(
                    format!(
                        "{} {} {:o} {}",
                        st.st_uid,
                        st.st_gid,
                        st.st_mode & 0o7777,
                        u8::from(FileType::from_raw_mode(st.st_mode) == FileType::Symlink)
                    )
                    .as_bytes(),
                );
                list.push(0);
                list.extend_from_slice(rel.as_os_str().as_bytes());
                list.push(0);
                Ok(())
            },
        )?;
        super::fsops::ensure_parent(saved)?;
        let tmp = format!("{}.tmp", saved.rel);
        let mut opts = cap_std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        let mut f = saved.grant.dir.open_with(&tmp, &opts)?;
        f.write_all(&list)?;
        f.sync_all()?;
        saved
            .grant
            .dir
            .rename(&tmp, &saved.grant.dir, saved.rel_path())?;
    }
    visit(
        dir.as_fd(),
        &leaf,
        &mut PathBuf::new(),
        change.recursive,
        &mut |d, name, rel, st| {
            let link = FileType::from_raw_mode(st.st_mode) == FileType::Symlink;
            if change.uid.is_some() || change.gid.is_some() {
                rfs::chownat(
                    d,
                    name,
                    change.uid.map(rfs::Uid::from_raw),
                    change.gid.map(rfs::Gid::from_raw),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .with_context(|| format!("chown {}", rel.display()))?;
            }
            if let Some((file, dirs)) = change.mode
                && !link
            {
                let m = if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                    dirs
                } else {
                    file
                };
                rfs::chmodat(d, name, Mode::from_raw_mode(m), AtFlags::empty())
                    .with_context(|| format!("chmod {}", rel.display()))?;
            }
            Ok(())
        },
    )
}

/// Put every entry's owner, group and mode back from the saved list.
pub fn undo(r: &Resolved, saved: &Resolved) -> Result<()> {
    let Ok(bytes) = saved.grant.dir.read(saved.rel_path()) else {
        // Never recorded, so never changed.
        return Ok(());
    };
    let (dir, leaf) = open_parent(r)?;
    let top = leaf.to_bytes().to_vec();
    let mut parts = bytes.split(|b| *b == 0);
    while let (Some(meta), Some(rel)) = (parts.next(), parts.next()) {
        if meta.is_empty() {
            break;
        }
        let meta = String::from_utf8_lossy(meta);
        let mut f = meta.split(' ');
        let was = Was {
            rel: PathBuf::from(OsStr::from_bytes(rel)),
            uid: f
                .next()
                .and_then(|v| v.parse().ok())
                .context("saved owners")?,
            gid: f
                .next()
                .and_then(|v| v.parse().ok())
                .context("saved owners")?,
            mode: f
                .next()
                .and_then(|v| u32::from_str_radix(v, 8).ok())
                .context("saved modes")?,
            link: f.next() == Some("1"),
        };
        let mut full = PathBuf::from(OsStr::from_bytes(&top));
        full.push(&was.rel);
        // Resolved beneath the parent with no symlink on the way.
        let (pdir, name) = match (full.parent(), full.file_name()) {
            (Some(p), Some(n)) if !p.as_os_str().is_empty() => (
                rfs::openat2(
                    &dir,
                    p,
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                    rfs::ResolveFlags::BENEATH | rfs::ResolveFlags::NO_SYMLINKS,
                )?,
                n.to_owned(),
            ),
            (_, Some(n)) => (
                rfs::openat(
                    &dir,
                    c".",
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )?,
                n.to_owned(),
            ),
            _ => continue,
        };
        rfs::chownat(
            &pdir,
            name.as_os_str(),
            Some(rfs::Uid::from_raw(was.uid)),
            Some(rfs::Gid::from_raw(was.gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .with_context(|| format!("put the owner of {} back", full.display()))?;
        if !was.link {
            rfs::chmodat(
                &pdir,
                name.as_os_str(),
                Mode::from_raw_mode(was.mode),
                AtFlags::empty(),
            )
            .with_context(|| format!("put the mode of {} back", full.display()))?;
        }
    }
    Ok(())
}
