//! Copying a file, symlink or tree the way `cp -a` does: owner, group,
//! mode, access and modification times (of files, directories and the
//! symlinks themselves), symlinks as symlinks, hard links as links (an
//! inode map), extended attributes (and so POSIX ACLs) where present.
//!
//! Every open is one path component relative to an open directory, with
//! `O_NOFOLLOW`: a link swapped in while the copy runs is never followed,
//! and nothing leaves the directories the caller resolved through cap-std.
//! FIFOs, sockets and devices are made again as what they are, as `cp -a`
//! does, and never opened (opening a FIFO to read it blocks for ever).
//!
//! Each directory's entries are read whole and taken in inode order, which
//! on ext4 and xfs is close to their order on disk.

use std::collections::HashMap;
use std::ffi::{CStr, CString, OsStr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use cap_std::fs::Dir;
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Stat, Timestamps};
use rustix::io::Errno;

/// How much of a big file is copied between two progress reports.
const COPY_CHUNK: usize = 64 << 20;

/// Copy `sp` (relative to `sd`) to the new path `dp` (relative to `dd`).
///
/// The walk (directories, names, links, small files) is one thread; the
/// data of large files is copied on as many more as there are other
/// cores, a file each, while the walk goes on: a filesystem serialises
/// writes to one file (its inode lock), not to two.
pub fn copy(sd: &Dir, sp: &Path, dd: &Dir, dp: &Path, progress: &dyn Fn(u64)) -> Result<()> {
    let (sparent, sleaf) = split(sd, sp)?;
    let (dparent, dleaf) = split(dd, dp)?;
    let root = rustix::process::geteuid().is_root();
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()) - 1;
    let (jobs_tx, jobs) = std::sync::mpsc::sync_channel::<Job>(workers);
    let jobs = std::sync::Mutex::new(jobs);
    let (done_tx, done) = std::sync::mpsc::channel::<(String, Result<u64>)>();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let done_tx = done_tx.clone();
            let jobs = &jobs;
            scope.spawn(move || {
                let mut buf = Vec::new();
                loop {
                    let job = jobs.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    let Ok(job) = job else { return };
                    let r = job.run(root, &mut buf);
                    if done_tx.send((job.what, r)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);
        let mut c = Copier {
            links: HashMap::new(),
            top: dparent.try_clone()?,
            rel: PathBuf::from(OsStr::from_bytes(dleaf.to_bytes())),
            progress,
            root,
            buf: Vec::new(),
            pool: (workers > 0).then_some(Pool {
                jobs: jobs_tx,
                done,
                failed: None,
            }),
        };
        let walked = rfs::statat(&sparent, sleaf.as_c_str(), AtFlags::SYMLINK_NOFOLLOW)
            .with_context(|| format!("stat {}", sp.display()))
            .and_then(|st| {
                c.entry(
                    sparent.as_fd(),
                    &sleaf,
                    FileType::from_raw_mode(st.st_mode),
                    dparent.as_fd(),
                    &dleaf,
                )
            });
        // Every file handed over finished (the workers end when the
        // queue closes), its error kept: a copy is whole or an error.
        let handed = c.pool.take().map_or(Ok(()), |p| p.finish(progress));
        walked.and(handed)
    })
}

/// A large file's data and attributes, copied on a worker thread: both
/// files are open (the copy already has its name, so a hard link to it
/// can be made meanwhile).
struct Job {
    src: OwnedFd,
    dst: OwnedFd,
    st: Stat,
    what: String,
}

impl Job {
    fn run(&self, root: bool, buf: &mut Vec<u8>) -> Result<u64> {
        let size = self.st.st_size as u64;
        let n = data(&self.src, &self.dst, size, &|_| {}, buf)
            .with_context(|| format!("copy {}", self.what))?;
        attrs(&self.src, &self.dst, &self.st, root, &self.what)?;
        Ok(n)
    }
}

/// The workers' queue and what they report back.
struct Pool {
    jobs: std::sync::mpsc::SyncSender<Job>,
    done: std::sync::mpsc::Receiver<(String, Result<u64>)>,
    failed: Option<anyhow::Error>,
}

impl Pool {
    /// What finished so far: bytes to the progress, the first error kept.
    fn collect(&mut self, progress: &dyn Fn(u64)) {
        while let Ok((_, r)) = self.done.try_recv() {
            match r {
                Ok(n) => progress(n),
                Err(e) => {
                    self.failed.get_or_insert(e);
                }
            }
        }
    }

    fn finish(mut self, progress: &dyn Fn(u64)) -> Result<()> {
        drop(self.jobs);
        for (_, r) in self.done.iter() {
            match r {
                Ok(n) => progress(n),
                Err(e) => {
                    self.failed.get_or_insert(e);
                }
            }
        }
        self.failed.map_or(Ok(()), Err)
    }
}

/// Files at least this large are handed to a worker when one is free.
const HAND_OVER: u64 = 1 << 20;

/// The directory holding `p` (opened beneath `dir` by cap-std) and `p`'s
/// last component; `.` for `dir` itself.
fn split(dir: &Dir, p: &Path) -> Result<(Dir, CString)> {
    let leaf = match p.file_name() {
        Some(l) => l,
        None => return Ok((dir.try_clone()?, c".".to_owned())),
    };
    let parent = match p.parent() {
        Some(q) if !q.as_os_str().is_empty() => dir
            .open_dir(q)
            .with_context(|| format!("open {}", q.display()))?,
        _ => dir.try_clone()?,
    };
    Ok((parent, CString::new(leaf.as_bytes())?))
}

struct Copier<'a> {
    /// (dev, ino) of a file with more than one link -> its copy, relative to `top`.
    links: HashMap<(u64, u64), PathBuf>,
    /// The directory the copy's top entry is made in.
    top: Dir,
    /// The entry being made, relative to `top`.
    rel: PathBuf,
    progress: &'a dyn Fn(u64),
    /// Only root may give a file away; others keep what they can, as cp -a.
    root: bool,
    buf: Vec<u8>,
    /// Workers for large files' data, where there is more than one core.
    pool: Option<Pool>,
}

fn name_of(n: &CStr) -> String {
    String::from_utf8_lossy(n.to_bytes()).into_owned()
}

impl Copier<'_> {
    fn what(&self) -> String {
        self.rel.display().to_string()
    }

    fn entry(
        &mut self,
        sdir: BorrowedFd,
        name: &CStr,
        ft: FileType,
        ddir: BorrowedFd,
        dname: &CStr,
    ) -> Result<()> {
        let ft = if ft == FileType::Unknown {
            FileType::from_raw_mode(rfs::statat(sdir, name, AtFlags::SYMLINK_NOFOLLOW)?.st_mode)
        } else {
            ft
        };
        match ft {
            FileType::Directory => self.dir(sdir, name, ddir, dname),
            FileType::RegularFile => self.file(sdir, name, ddir, dname),
            FileType::Symlink => self.symlink(sdir, name, ddir, dname),
            other => self.special(sdir, name, other, ddir, dname),
        }
    }

    /// A FIFO, socket or device: made again with `mknodat`, never opened.
    fn special(
        &mut self,
        sdir: BorrowedFd,
        name: &CStr,
        ft: FileType,
        ddir: BorrowedFd,
        dname: &CStr,
    ) -> Result<()> {
        let st = rfs::statat(sdir, name, AtFlags::SYMLINK_NOFOLLOW)?;
        rfs::mknodat(
            ddir,
            dname,
            ft,
            Mode::from_raw_mode(st.st_mode & 0o7777),
            st.st_rdev,
        )
        .with_context(|| format!("make the {} {} again", kind_word(ft), self.what()))?;
        self.own(
            rfs::chownat(
                ddir,
                dname,
                Some(rfs::Uid::from_raw(st.st_uid)),
                Some(rfs::Gid::from_raw(st.st_gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            ),
            &st,
        )?;
        // After chown (which clears set-id bits), and not through the
        // special file itself (chmod by name never opens it).
        rfs::chmodat(
            ddir,
            dname,
            Mode::from_raw_mode(st.st_mode & 0o7777),
            AtFlags::empty(),
        )?;
        rfs::utimensat(ddir, dname, &times(&st), AtFlags::SYMLINK_NOFOLLOW)
            .with_context(|| format!("set the times of {}", self.what()))?;
        Ok(())
    }

    fn dir(&mut self, sdir: BorrowedFd, name: &CStr, ddir: BorrowedFd, dname: &CStr) -> Result<()> {
        let src = rfs::openat(
            sdir,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("open directory {}", name_of(name)))?;
        let st = rfs::fstat(&src)?;
        // Writable by us until it is full; its own mode comes last.
        rfs::mkdirat(ddir, dname, Mode::from_raw_mode(0o700))
            .with_context(|| format!("create {}", self.what()))?;
        let dst = rfs::openat(
            ddir,
            dname,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mut entries = Vec::new();
        let mut rd = rfs::Dir::read_from(&src)?;
        while let Some(e) = rd.read() {
            let e = e?;
            let n = e.file_name();
            if n == c"." || n == c".." {
                continue;
            }
            entries.push((e.ino(), e.file_type(), n.to_owned()));
        }
        drop(rd);
        entries.sort_unstable_by_key(|(ino, _, _)| *ino);
        for (_, ft, n) in entries {
            self.rel.push(OsStr::from_bytes(n.to_bytes()));
            let r = self.entry(src.as_fd(), &n, ft, dst.as_fd(), &n);
            self.rel.pop();
            r?;
        }
        self.attrs(&src, &dst, &st)
    }

    fn file(
        &mut self,
        sdir: BorrowedFd,
        name: &CStr,
        ddir: BorrowedFd,
        dname: &CStr,
    ) -> Result<()> {
        // NONBLOCK: a FIFO swapped in after the directory was read must not hang us.
        let src = rfs::openat(
            sdir,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
            Mode::empty(),
        )
        .with_context(|| format!("open {}", self.what()))?;
        let st = rfs::fstat(&src)?;
        let ft = FileType::from_raw_mode(st.st_mode);
        if ft != FileType::RegularFile {
            drop(src);
            return self.entry(sdir, name, ft, ddir, dname);
        }
        if st.st_nlink > 1 {
            let key = (st.st_dev, st.st_ino);
            if let Some(first) = self.links.get(&key) {
                return self.link(first.clone(), ddir, dname);
            }
            self.links.insert(key, self.rel.clone());
        }
        let dst = rfs::openat(
            ddir,
            dname,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .with_context(|| format!("create {}", self.what()))?;
        let what = (st.st_size as u64 >= HAND_OVER && self.pool.is_some()).then(|| self.what());
        if let (Some(what), Some(pool)) = (what, self.pool.as_mut()) {
            pool.collect(self.progress);
            if let Some(e) = pool.failed.take() {
                return Err(e);
            }
            let job = Job { src, dst, st, what };
            // Every worker busy: this thread copies it.
            let job = match pool.jobs.try_send(job) {
                Ok(()) => return Ok(()),
                Err(std::sync::mpsc::TrySendError::Full(j)) => j,
                Err(std::sync::mpsc::TrySendError::Disconnected(j)) => j,
            };
            data(
                &job.src,
                &job.dst,
                st.st_size as u64,
                self.progress,
                &mut self.buf,
            )
            .with_context(|| format!("copy {}", job.what))?;
            return attrs(&job.src, &job.dst, &st, self.root, &job.what);
        }
        data(&src, &dst, st.st_size as u64, self.progress, &mut self.buf)
            .with_context(|| format!("copy {}", self.what()))?;
        self.attrs(&src, &dst, &st)
    }

    fn link(&mut self, first: PathBuf, ddir: BorrowedFd, dname: &CStr) -> Result<()> {
        // The first copy's directory, resolved beneath the copy's top with
        // no symlink on the way, then one linkat of a single name.
        let parent = first.parent().unwrap_or(Path::new(""));
        let leaf = first.file_name().context("a link's first name")?;
        let pdir = if parent.as_os_str().is_empty() {
            rfs::openat(
                &self.top,
                c".",
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )?
        } else {
            rfs::openat2(
                &self.top,
                parent,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                rfs::ResolveFlags::BENEATH | rfs::ResolveFlags::NO_SYMLINKS,
            )?
        };
        rfs::linkat(&pdir, leaf, ddir, dname, AtFlags::empty()).with_context(|| {
            format!(
                "link {} to {} (they are one file with two names)",
                self.what(),
                first.display()
            )
        })
    }

    fn symlink(
        &mut self,
        sdir: BorrowedFd,
        name: &CStr,
        ddir: BorrowedFd,
        dname: &CStr,
    ) -> Result<()> {
        let st = rfs::statat(sdir, name, AtFlags::SYMLINK_NOFOLLOW)?;
        let target = rfs::readlinkat(sdir, name, Vec::new())
            .with_context(|| format!("read link {}", self.what()))?;
        rfs::symlinkat(target.as_c_str(), ddir, dname)
            .with_context(|| format!("create link {}", self.what()))?;
        self.own(
            rfs::chownat(
                ddir,
                dname,
                Some(rfs::Uid::from_raw(st.st_uid)),
                Some(rfs::Gid::from_raw(st.st_gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            ),
            &st,
        )?;
        // The link's own times; never its target's.
        rfs::utimensat(ddir, dname, &times(&st), AtFlags::SYMLINK_NOFOLLOW)
            .with_context(|| format!("set the times of link {}", self.what()))?;
        Ok(())
    }

    fn attrs(&mut self, src: &OwnedFd, dst: &OwnedFd, st: &Stat) -> Result<()> {
        attrs(src, dst, st, self.root, &self.rel.display())
    }

    fn own(&self, r: rustix::io::Result<()>, st: &Stat) -> Result<()> {
        own(r, st, self.root, &self.rel.display())
    }
}

/// The bytes: in the kernel (copy_file_range) where it can, as cp does;
/// by read and write where it cannot (across some filesystems). How many.
/// No FICLONE first (cp tries one per file): within one btrfs or XFS,
/// copy_file_range already shares the extents (measured on btrfs: a 200
/// MB copy took no new space), and elsewhere the ioctl only fails.
fn data(
    src: &OwnedFd,
    dst: &OwnedFd,
    size: u64,
    progress: &dyn Fn(u64),
    buf: &mut Vec<u8>,
) -> Result<u64> {
    let mut done = 0u64;
    loop {
        let want = if size > done {
            ((size - done) as usize).min(COPY_CHUNK)
        } else {
            COPY_CHUNK
        };
        match rfs::copy_file_range(src, None, dst, None, want) {
            Ok(0) => return Ok(done),
            Ok(n) => {
                done += n as u64;
                progress(n as u64);
                // As large as it was when opened: done (no call to see EOF).
                if done == size {
                    return Ok(done);
                }
            }
            Err(Errno::XDEV | Errno::NOSYS | Errno::INVAL | Errno::OPNOTSUPP) if done == 0 => {
                return read_write(src, dst, progress, buf);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn read_write(
    src: &OwnedFd,
    dst: &OwnedFd,
    progress: &dyn Fn(u64),
    buf: &mut Vec<u8>,
) -> Result<u64> {
    if buf.is_empty() {
        *buf = vec![0; 1 << 20];
    }
    let mut done = 0;
    loop {
        let n = rustix::io::read(src, &mut buf[..])?;
        if n == 0 {
            return Ok(done);
        }
        let mut at = 0;
        while at < n {
            at += rustix::io::write(dst, &buf[at..n])?;
        }
        done += n as u64;
        progress(n as u64);
    }
}

/// Owner, mode, extended attributes, then times (last: the others
/// change the inode's ctime, and a write would change its mtime).
/// `what` names the file in errors, formatted only for one.
fn attrs(
    src: &OwnedFd,
    dst: &OwnedFd,
    st: &Stat,
    root: bool,
    what: &dyn std::fmt::Display,
) -> Result<()> {
    own(
        rfs::fchown(
            dst,
            Some(rfs::Uid::from_raw(st.st_uid)),
            Some(rfs::Gid::from_raw(st.st_gid)),
        ),
        st,
        root,
        what,
    )?;
    // After chown, which clears set-user-ID bits.
    rfs::fchmod(dst, Mode::from_raw_mode(st.st_mode & 0o7777))
        .with_context(|| format!("set the mode of {what}"))?;
    copy_xattrs(src, dst).with_context(|| format!("copy the extended attributes of {what}"))?;
    rfs::futimens(dst, &times(st)).with_context(|| format!("set the times of {what}"))?;
    Ok(())
}

fn own(
    r: rustix::io::Result<()>,
    st: &Stat,
    root: bool,
    what: &dyn std::fmt::Display,
) -> Result<()> {
    match r {
        Ok(()) => Ok(()),
        // Not root: the copy is ours, as cp -a leaves it.
        Err(Errno::PERM) if !root => Ok(()),
        Err(e) => {
            Err(e).with_context(|| format!("give {what} to uid {} gid {}", st.st_uid, st.st_gid))
        }
    }
}

fn times(st: &Stat) -> Timestamps {
    Timestamps {
        last_access: rfs::Timespec {
            tv_sec: st.st_atime as _,
            tv_nsec: st.st_atime_nsec as _,
        },
        last_modification: rfs::Timespec {
            tv_sec: st.st_mtime as _,
            tv_nsec: st.st_mtime_nsec as _,
        },
    }
}

fn kind_word(ft: FileType) -> &'static str {
    match ft {
        FileType::Fifo => "FIFO",
        FileType::Socket => "socket",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        _ => "special file",
    }
}

/// Every extended attribute of `src` onto `dst` (user, trusted, security,
/// and `system.posix_acl_*`, which are the ACLs). Nothing to do, in one
/// system call, for the usual file that has none.
pub fn copy_xattrs(src: impl AsFd, dst: impl AsFd) -> Result<()> {
    for (name, value) in read_xattrs(&src)? {
        rfs::fsetxattr(&dst, name.as_c_str(), &value, rfs::XattrFlags::empty())
            .with_context(|| format!("set {}", name_of(&name)))?;
    }
    Ok(())
}

/// The extended attributes of an open file, names and values.
pub fn read_xattrs(fd: impl AsFd) -> Result<Vec<(CString, Vec<u8>)>> {
    let mut names = vec![0u8; 256];
    let n = loop {
        match rfs::flistxattr(&fd, &mut names[..]) {
            Ok(n) => break n,
            Err(Errno::RANGE) => {
                let need = rfs::flistxattr_query(&fd)?;
                names.resize(need.max(names.len() * 2), 0);
            }
            // A filesystem without extended attributes has none to keep.
            Err(Errno::OPNOTSUPP) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
    };
    let mut out = Vec::new();
    for name in names[..n].split(|b| *b == 0).filter(|s| !s.is_empty()) {
        let name = CString::new(name)?;
        let mut value = vec![0u8; 256];
        let len = loop {
            match rfs::fgetxattr(&fd, name.as_c_str(), &mut value[..]) {
                Ok(len) => break len,
                Err(Errno::RANGE) => {
                    let need = rfs::fgetxattr_query(&fd, name.as_c_str())?;
                    value.resize(need.max(value.len() * 2), 0);
                }
                Err(Errno::NODATA) => break usize::MAX,
                Err(e) => return Err(e.into()),
            }
        };
        if len != usize::MAX {
            value.truncate(len);
            out.push((name, value));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt as _;

    fn open(p: &Path) -> Dir {
        Dir::open_ambient_dir(p, cap_std::ambient_authority()).unwrap()
    }

    fn sh(script: &str) {
        let ok = std::process::Command::new("sh")
            .args(["-c", script])
            .status()
            .unwrap()
            .success();
        assert!(ok, "{script}");
    }

    /// What `cp -a` keeps, entry by entry (access times move as the test
    /// reads), the copy must match it.
    fn meta(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(p) = stack.pop() {
            let md = std::fs::symlink_metadata(&p).unwrap();
            if md.is_dir() {
                for e in std::fs::read_dir(&p).unwrap() {
                    stack.push(e.unwrap().path());
                }
            }
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let body = if md.file_type().is_symlink() {
                std::fs::read_link(&p).unwrap().display().to_string()
            } else if md.is_file() {
                std::fs::read_to_string(&p).unwrap_or_default()
            } else {
                String::new()
            };
            out.push(format!(
                "{rel} mode={:o} uid={} gid={} mtime={}.{} nlink={} {body}",
                md.mode(),
                md.uid(),
                md.gid(),
                md.mtime(),
                md.mtime_nsec(),
                md.nlink()
            ));
        }
        out.sort();
        out
    }

    /// A service's data: owned by nobody:nogroup, mode 640, a symlink with
    /// its own old time, a hard link, an xattr: what cp -a keeps, mend keeps.
    #[test]
    fn a_copy_keeps_what_cp_a_keeps() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        sh(&format!(
            "set -e; mkdir -p {s}/sub/deep; echo alpha > {s}/a; echo beta > {s}/sub/b; \
             ln {s}/a {s}/sub/a-again; ln -s ../a {s}/sub/link; chmod 640 {s}/a {s}/sub/b; \
             chmod 750 {s}/sub; chmod 2755 {s}/sub/deep; \
             touch -h -d '2020-02-02 02:02:02.123456789' {s}/sub/link; \
             touch -d '2021-01-01 01:01:01.5' {s}/a {s}/sub/b {s}/sub {s}/sub/deep",
            s = src.display()
        ));
        let xattr_ok = rfs::setxattr(
            src.join("sub/b").as_path(),
            "user.mend-test",
            b"kept",
            rfs::XattrFlags::empty(),
        )
        .is_ok();
        if rustix::process::geteuid().is_root() {
            sh(&format!("chown -R -h 65534:65534 {}", src.display()));
        }
        let (sd, dd) = (open(tmp.path()), open(tmp.path()));
        copy(&sd, Path::new("src"), &dd, Path::new("mine"), &|_| {}).unwrap();
        sh(&format!(
            "cp -a {} {}",
            src.display(),
            tmp.path().join("cp").display()
        ));
        assert_eq!(meta(&tmp.path().join("mine")), meta(&tmp.path().join("cp")));
        let a = std::fs::metadata(tmp.path().join("mine/a")).unwrap();
        let again = std::fs::metadata(tmp.path().join("mine/sub/a-again")).unwrap();
        assert_eq!(a.ino(), again.ino(), "a hard link stays one file");
        assert_eq!(a.mode() & 0o7777, 0o640);
        if rustix::process::geteuid().is_root() {
            assert_eq!((a.uid(), a.gid()), (65534, 65534));
        }
        if xattr_ok {
            let mut v = [0u8; 16];
            let n = rfs::getxattr(
                tmp.path().join("mine/sub/b").as_path(),
                "user.mend-test",
                &mut v[..],
            )
            .unwrap();
            assert_eq!(&v[..n], b"kept");
        }
    }

    /// Files of 1 MiB and more are copied on worker threads while the walk
    /// goes on: each still gets its owner, mode, xattrs and times after its
    /// data, a hard link to one is made while it is being written, and the
    /// whole matches `cp -a`.
    #[test]
    fn large_files_copied_beside_the_walk_keep_what_cp_a_keeps() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        sh(&format!(
            "set -e; mkdir -p {s}/a {s}/b; for i in 1 2 3 4 5 6; do seq 1 $((200000 + i)) > {s}/a/big$i; done; \
             echo small > {s}/b/small; ln {s}/a/big2 {s}/b/big2-again; chmod 640 {s}/a/big1 {s}/a/big3; \
             chmod 4755 {s}/a/big4; touch -d '2021-01-01 01:01:01.5' {s}/a/big1 {s}/a/big5 {s}/a {s}/b",
            s = src.display()
        ));
        let xattr_ok = rfs::setxattr(
            src.join("a/big3").as_path(),
            "user.mend-test",
            b"kept",
            rfs::XattrFlags::empty(),
        )
        .is_ok();
        if rustix::process::geteuid().is_root() {
            sh(&format!("chown -R -h 65534:65534 {}/a", src.display()));
            sh(&format!("chmod 4755 {}/a/big4", src.display()));
            sh(&format!(
                "touch -d '2021-01-01 01:01:01.5' {s}/a {s}/b",
                s = src.display()
            ));
        }
        let done = std::sync::atomic::AtomicU64::new(0);
        let (sd, dd) = (open(tmp.path()), open(tmp.path()));
        copy(&sd, Path::new("src"), &dd, Path::new("mine"), &|n| {
            done.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        })
        .unwrap();
        sh(&format!(
            "cp -a {} {}",
            src.display(),
            tmp.path().join("cp").display()
        ));
        assert_eq!(meta(&tmp.path().join("mine")), meta(&tmp.path().join("cp")));
        let big: u64 = (1..=6)
            .map(|i| {
                std::fs::metadata(src.join(format!("a/big{i}")))
                    .unwrap()
                    .len()
            })
            .sum();
        assert_eq!(
            done.load(std::sync::atomic::Ordering::Relaxed),
            big + 6,
            "every byte reported once, from the workers too"
        );
        if xattr_ok {
            let mut v = [0u8; 16];
            let n = rfs::getxattr(
                tmp.path().join("mine/a/big3").as_path(),
                "user.mend-test",
                &mut v[..],
            )
            .unwrap();
            assert_eq!(&v[..n], b"kept");
        }
    }

    /// A worker's failure fails the copy, with the file's name.
    #[test]
    fn a_large_file_that_cannot_be_copied_fails_the_copy() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: mounting a tmpfs needs root");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let vol = tmp.path().join("vol");
        sh(&format!(
            "set -e; mkdir -p {d}/src {v}; for i in 1 2 3; do head -c 2000000 /dev/urandom > {d}/src/f$i; done; \
             mount -t tmpfs -o size=3m tmpfs {v}",
            d = tmp.path().display(),
            v = vol.display()
        ));
        let (sd, dd) = (open(tmp.path()), open(&vol));
        let r = copy(&sd, Path::new("src"), &dd, Path::new("dst"), &|_| {});
        drop(dd);
        sh(&format!("umount {}", vol.display()));
        let err = format!("{:#}", r.expect_err("6 MB do not fit in 3 MB"));
        assert!(err.contains("No space left"), "{err}");
        assert!(err.contains("src") || err.contains("dst/f"), "{err}");
    }

    #[test]
    fn a_fifo_is_made_again_never_opened() {
        use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
        let tmp = tempfile::tempdir().unwrap();
        sh(&format!(
            "mkdir -p {d}/src && mkfifo -m 640 {d}/src/pipe && touch -d @1700000000 {d}/src/pipe",
            d = tmp.path().display()
        ));
        let d = open(tmp.path());
        // Would block for ever if the FIFO were opened.
        copy(&d, Path::new("src"), &d, Path::new("dst"), &|_| {}).unwrap();
        let md = std::fs::symlink_metadata(tmp.path().join("dst/pipe")).unwrap();
        assert!(md.file_type().is_fifo());
        assert_eq!(md.mode() & 0o7777, 0o640);
        assert_eq!(md.mtime(), 1_700_000_000);
    }
}
