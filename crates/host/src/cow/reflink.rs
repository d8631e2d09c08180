//! Reflinked copies of a grant (`FICLONE`), for rehearsals where overlays
//! cannot be had: each file of the copy shares the original's extents, so a
//! copy of a 100 GB tree costs its metadata, not its bytes. Only btrfs and
//! XFS (with reflink, the default since xfsprogs 5.1) can; the copy must be
//! on the same filesystem as the grant. Nothing falls back to copying bytes
//! here: a file that cannot be cloned is an error, so "reflinked" is true.
//!
//! The copy keeps what `cp -a` keeps: owner (as root), mode, times of
//! files, directories and symlinks, symlinks as symlinks, hard links as
//! links, extended attributes; FIFOs, sockets and devices are made again.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use rustix::fs::{self as rfs, AtFlags, CWD, FileType, Mode, Timespec, Timestamps, XattrFlags};

/// Why `scratch` cannot hold reflinked copies of `grant`, or `None` when it
/// can: a clone of a block inside `scratch` (the filesystem can share
/// extents) and of the grant's first non-empty file into it (the same
/// filesystem). Leaves nothing behind.
pub fn unfit(grant: &Path, scratch: &Path) -> Option<String> {
    let a = scratch.join(".mend-reflink-probe-a");
    let b = scratch.join(".mend-reflink-probe-b");
    let inside = (|| -> std::io::Result<()> {
        std::fs::write(&a, [0u8; 4096])?;
        let src = File::open(&a)?;
        let dst = File::create(&b)?;
        rfs::ioctl_ficlone(&dst, &src)?;
        Ok(())
    })();
    let _ = std::fs::remove_file(&a);
    let _ = std::fs::remove_file(&b);
    if let Err(e) = inside {
        return Some(format!(
            "{} is on {}, which cannot share extents (FICLONE: {e})",
            scratch.display(),
            super::overlay::fs_name(scratch)
        ));
    }
    // An empty grant has nothing to clone: the scratch's own test suffices.
    let file = first_file(grant)?;
    let across = (|| -> std::io::Result<()> {
        let src = File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&file)?;
        let dst = File::create(&b)?;
        rfs::ioctl_ficlone(&dst, &src)?;
        Ok(())
    })();
    let _ = std::fs::remove_file(&b);
    across.err().map(|e| {
        format!(
            "{} and {} are not on one filesystem that shares extents (FICLONE: {e})",
            grant.display(),
            scratch.display()
        )
    })
}

/// The first non-empty regular file under `dir`, depth first.
fn first_file(dir: &Path) -> Option<PathBuf> {
    let mut entries: Vec<_> = std::fs::read_dir(dir).ok()?.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in &entries {
        let Ok(md) = e.path().symlink_metadata() else {
            continue;
        };
        if md.is_file() && md.len() > 0 {
            return Some(e.path());
        }
    }
    entries
        .iter()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .find_map(|e| first_file(&e.path()))
}

/// Copies the tree `from` to the new path `to`, every file's data cloned.
pub fn clone_tree(from: &Path, to: &Path) -> Result<()> {
    let mut c = Cloner {
        links: HashMap::new(),
        root: rustix::process::geteuid().is_root(),
    };
    c.entry(from, to)
}

struct Cloner {
    /// (dev, ino) of a file with more than one link: its first copy.
    links: HashMap<(u64, u64), PathBuf>,
    root: bool,
}

impl Cloner {
    fn entry(&mut self, from: &Path, to: &Path) -> Result<()> {
        let md = from
            .symlink_metadata()
            .with_context(|| format!("stat {}", from.display()))?;
        let kind = FileType::from_raw_mode(md.mode());
        match kind {
            FileType::Directory => {
                std::fs::create_dir(to).with_context(|| format!("create {}", to.display()))?;
                let mut names: Vec<_> = std::fs::read_dir(from)
                    .with_context(|| format!("read {}", from.display()))?
                    .map(|e| e.map(|e| e.file_name()))
                    .collect::<std::io::Result<_>>()
                    .with_context(|| format!("read {}", from.display()))?;
                names.sort();
                for n in names {
                    self.entry(&from.join(&n), &to.join(&n))?;
                }
            }
            FileType::Symlink => {
                let target =
                    std::fs::read_link(from).with_context(|| format!("read {}", from.display()))?;
                std::os::unix::fs::symlink(target, to)
                    .with_context(|| format!("create {}", to.display()))?;
            }
            FileType::RegularFile => {
                if md.nlink() > 1 {
                    if let Some(first) = self.links.get(&(md.dev(), md.ino())) {
                        return std::fs::hard_link(first, to)
                            .with_context(|| format!("link {}", to.display()));
                    }
                    self.links.insert((md.dev(), md.ino()), to.to_path_buf());
                }
                let src = File::options()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(from)
                    .with_context(|| format!("open {}", from.display()))?;
                let dst = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(to)
                    .with_context(|| format!("create {}", to.display()))?;
                rfs::ioctl_ficlone(&dst, &src).with_context(|| {
                    format!(
                        "cannot reflink {} to {} (FICLONE)",
                        from.display(),
                        to.display()
                    )
                })?;
            }
            _ => {
                rfs::mknodat(
                    CWD,
                    to,
                    kind,
                    Mode::from_raw_mode(md.mode() & 0o7777),
                    md.rdev(),
                )
                .with_context(|| format!("create {}", to.display()))?;
            }
        }
        self.attrs(from, to, &md, kind)
            .with_context(|| format!("copy the attributes of {}", from.display()))
    }

    /// Owner (as root), mode, extended attributes, then times: in that
    /// order, as a chown clears set-id bits and writing changes times.
    fn attrs(&self, from: &Path, to: &Path, md: &std::fs::Metadata, kind: FileType) -> Result<()> {
        if self.root {
            rfs::chownat(
                CWD,
                to,
                Some(rfs::Uid::from_raw(md.uid())),
                Some(rfs::Gid::from_raw(md.gid())),
                AtFlags::SYMLINK_NOFOLLOW,
            )?;
        }
        if kind != FileType::Symlink {
            rfs::chmod(to, Mode::from_raw_mode(md.mode() & 0o7777))?;
        }
        xattrs(from, to)?;
        times(to, md)
    }
}

/// Copies the extended attributes of `from` to `to` (symlinks not followed).
fn xattrs(from: &Path, to: &Path) -> Result<()> {
    let mut names = vec![0u8; 4096];
    let n = loop {
        match rfs::llistxattr(from, &mut names[..]) {
            Ok(n) => break n,
            Err(rustix::io::Errno::RANGE) => names.resize(names.len() * 4, 0),
            Err(rustix::io::Errno::NOTSUP) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    };
    let mut value = vec![0u8; 4096];
    for name in names[..n].split(|&b| b == 0).filter(|s| !s.is_empty()) {
        let len = loop {
            match rfs::lgetxattr(from, name, &mut value[..]) {
                Ok(len) => break len,
                Err(rustix::io::Errno::RANGE) => value.resize(value.len() * 4, 0),
                Err(e) => return Err(e.into()),
            }
        };
        rfs::lsetxattr(to, name, &value[..len], XattrFlags::empty())?;
    }
    Ok(())
}

/// Sets the access and modification times of `to` to those in `md`.
fn times(to: &Path, md: &std::fs::Metadata) -> Result<()> {
    let ts = Timestamps {
        last_access: Timespec {
            tv_sec: md.atime(),
            tv_nsec: md.atime_nsec() as _,
        },
        last_modification: Timespec {
            tv_sec: md.mtime(),
            tv_nsec: md.mtime_nsec() as _,
        },
    };
    rfs::utimensat(CWD, to, &ts, AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}
