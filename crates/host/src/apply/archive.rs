//! Packing a granted directory into one archive (`tar` or `tar.zst`),
//! streamed: files are read in inode order within each directory (close to
//! their order on disk), written as GNU tar entries with owner and group
//! (numbers and names), mode, modification time (to the second, as GNU
//! tar keeps it), symlinks as symlinks, hard links as links, extended
//! attributes as PAX `SCHILY.xattr.*` records (as GNU tar and bsdtar write
//! them), and compressed by zstd on every core at zstd's default level (as
//! `tar --zstd` does). The archive's sha256 is computed as it is written.
//!
//! Every open is one component relative to an open directory with
//! `O_NOFOLLOW`, as in `copy.rs`; FIFOs, sockets and devices are refused.

use std::collections::HashMap;
use std::ffi::{CStr, CString, OsStr};
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use cap_std::fs::OpenOptions;
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Stat};
use sha2::Digest as _;

use crate::grants::Resolved;
use mend_plan::Format;

/// What an archive came to.
pub struct Made {
    pub sha256: String,
    pub bytes: u64,
    pub entries: u64,
}

/// The zstd level `tar --zstd` (and the zstd tool) use by default.
const ZSTD_LEVEL: i32 = 3;

/// Pack `src` (a directory) into the new file `dst`.
pub fn archive(
    src: &Resolved,
    dst: &Resolved,
    format: Format,
    progress: &dyn Fn(u64),
) -> Result<Made> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    let file = dst
        .grant
        .dir
        .open_with(dst.rel_path(), &opts)
        .with_context(|| format!("create {}/{}", dst.grant.name, dst.rel))?
        .into_std();
    let digest = std::rc::Rc::new(std::cell::RefCell::new((sha2::Sha256::new(), 0u64)));
    let hashed = Hashing {
        inner: file,
        hash: digest.clone(),
    };
    let out = std::io::BufWriter::with_capacity(1 << 20, hashed);
    let sink = match format {
        Format::Tar => Out::Tar(out),
        Format::TarZst => {
            let mut enc = zstd::stream::write::Encoder::new(out, ZSTD_LEVEL)?;
            // Workers beside this thread, which reads and writes tar: one
            // per core but ours (as tar piping into zstd), at least one.
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
            let workers = std::env::var("MEND_ZSTD_WORKERS")
                .ok()
                .and_then(|w| w.parse().ok())
                .unwrap_or(cores.saturating_sub(1).max(1));
            enc.multithread(workers)?;
            Out::Zst(enc)
        }
        Format::TarGz => bail!("mend writes tar and tar.zst archives, not tar.gz"),
    };
    // tar writes a 512-byte header, the data and its padding one call each:
    // gathered here, so zstd sees a call per MiB, not three per file.
    let mut tar = tar::Builder::new(std::io::BufWriter::with_capacity(1 << 20, sink));
    tar.mode(tar::HeaderMode::Complete);
    let parent = match src.rel.rsplit_once('/') {
        Some((p, _)) => src.grant.dir.open_dir(mend_plan::names::decode(p))?,
        None if src.rel.is_empty() => src.grant.dir.open_dir(".")?,
        None => src.grant.dir.try_clone()?,
    };
    let leaf = if src.rel.is_empty() {
        c".".to_owned()
    } else {
        let leaf = mend_plan::names::decode(src.rel.rsplit('/').next().unwrap_or(src.rel));
        CString::new(leaf.as_os_str().as_encoded_bytes())?
    };
    let mut p = Packer {
        tar: &mut tar,
        links: HashMap::new(),
        names: Names::default(),
        progress,
        entries: 0,
        at: PathBuf::from("."),
        buf: Vec::new(),
    };
    p.dir(parent.as_fd(), &leaf)
        .with_context(|| format!("archive {}/{}", src.grant.name, src.rel))?;
    let entries = p.entries;
    // Every layer finished explicitly: an error (a full disk) at the end
    // is an error, never a short archive dropped in silence.
    let sink = tar.into_inner()?.into_inner().map_err(|e| e.into_error())?;
    let file = match sink {
        Out::Tar(b) => b.into_inner().map_err(|e| e.into_error())?,
        Out::Zst(enc) => enc.finish()?.into_inner().map_err(|e| e.into_error())?,
    };
    drop(file);
    let (hash, bytes) = std::mem::take(&mut *digest.borrow_mut());
    Ok(Made {
        sha256: hex::encode(hash.finalize()),
        bytes,
        entries,
    })
}

/// The archive's byte stream: plain tar, or zstd-compressed.
enum Out {
    Tar(std::io::BufWriter<Hashing<std::fs::File>>),
    Zst(zstd::stream::write::Encoder<'static, std::io::BufWriter<Hashing<std::fs::File>>>),
}

impl Write for Out {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Out::Tar(w) => w.write(buf),
            Out::Zst(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Out::Tar(w) => w.flush(),
            Out::Zst(w) => w.flush(),
        }
    }
}

/// A writer that hashes what passes through it.
type Digest = std::rc::Rc<std::cell::RefCell<(sha2::Sha256, u64)>>;

struct Hashing<W> {
    inner: W,
    hash: Digest,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        let mut h = self.hash.borrow_mut();
        h.0.update(&buf[..n]);
        h.1 += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// User and group names by id, read once from /etc/passwd and /etc/group.
#[derive(Default)]
pub struct Names {
    users: Option<HashMap<u32, String>>,
    groups: Option<HashMap<u32, String>>,
}

fn read_db(path: &str) -> HashMap<u32, String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let id = f.nth(1)?.parse().ok()?;
            Some((id, name.to_string()))
        })
        .collect()
}

/// Ids by name, from /etc/passwd and /etc/group: what an extract uses to
/// give files to the user of that name here, as GNU tar does.
pub fn ids_by_name(path: &str) -> HashMap<String, u32> {
    read_db(path).into_iter().map(|(id, n)| (n, id)).collect()
}

impl Names {
    fn user(&mut self, uid: u32) -> Option<&str> {
        self.users
            .get_or_insert_with(|| read_db("/etc/passwd"))
            .get(&uid)
            .map(String::as_str)
    }
    fn group(&mut self, gid: u32) -> Option<&str> {
        self.groups
            .get_or_insert_with(|| read_db("/etc/group"))
            .get(&gid)
            .map(String::as_str)
    }
}

struct Packer<'a> {
    tar: &'a mut tar::Builder<std::io::BufWriter<Out>>,
    links: HashMap<(u64, u64), PathBuf>,
    names: Names,
    progress: &'a dyn Fn(u64),
    entries: u64,
    /// The entry's name in the archive.
    at: PathBuf,
    /// Reused for small files.
    buf: Vec<u8>,
}

/// Files up to this size are read whole into one buffer.
const SMALL: u64 = 1 << 20;

impl Packer<'_> {
    fn header(&mut self, st: &Stat, ty: tar::EntryType) -> Result<tar::Header> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(ty);
        h.set_mode(st.st_mode & 0o7777);
        h.set_uid(st.st_uid as u64);
        h.set_gid(st.st_gid as u64);
        h.set_mtime(st.st_mtime.max(0) as u64);
        h.set_size(0);
        if let Some(u) = self.names.user(st.st_uid) {
            h.set_username(u)?;
        }
        if let Some(g) = self.names.group(st.st_gid) {
            h.set_groupname(g)?;
        }
        Ok(h)
    }

    /// Extended attributes as a PAX header before the entry they belong to.
    fn xattrs(&mut self, fd: impl AsFd) -> Result<()> {
        let attrs = super::copy::read_xattrs(fd)?;
        if attrs.is_empty() {
            return Ok(());
        }
        let mut body = Vec::new();
        for (name, value) in attrs {
            let mut rec = b"SCHILY.xattr.".to_vec();
            rec.extend_from_slice(name.to_bytes());
            rec.push(b'=');
            rec.extend_from_slice(&value);
            rec.push(b'\n');
            // "LEN KEY=VALUE\n", LEN counting itself.
            let mut len = rec.len() + 2;
            while format!("{len} ").len() + rec.len() != len {
                len = format!("{len} ").len() + rec.len();
            }
            body.extend_from_slice(format!("{len} ").as_bytes());
            body.extend_from_slice(&rec);
        }
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_path("PaxHeaders/x")?;
        h.set_cksum();
        self.tar.append(&h, &body[..])?;
        Ok(())
    }

    fn entry(&mut self, sdir: BorrowedFd, name: &CStr, ft: FileType) -> Result<()> {
        let ft = if ft == FileType::Unknown {
            FileType::from_raw_mode(rfs::statat(sdir, name, AtFlags::SYMLINK_NOFOLLOW)?.st_mode)
        } else {
            ft
        };
        match ft {
            FileType::Directory => self.dir(sdir, name),
            FileType::RegularFile => self.file(sdir, name),
            FileType::Symlink => {
                let st = rfs::statat(sdir, name, AtFlags::SYMLINK_NOFOLLOW)?;
                let target = rfs::readlinkat(sdir, name, Vec::new())?;
                let mut h = self.header(&st, tar::EntryType::Symlink)?;
                let at = self.at.clone();
                self.tar
                    .append_link(&mut h, &at, OsStr::from_bytes(target.to_bytes()))?;
                self.entries += 1;
                Ok(())
            }
            _ => bail!(
                "{} is a special file (FIFO, socket or device); mend archives files, directories and symlinks",
                self.at.display()
            ),
        }
    }

    fn dir(&mut self, sdir: BorrowedFd, name: &CStr) -> Result<()> {
        let fd: OwnedFd = rfs::openat(
            sdir,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("open directory {}", self.at.display()))?;
        let st = rfs::fstat(&fd)?;
        self.xattrs(&fd)?;
        let mut h = self.header(&st, tar::EntryType::Directory)?;
        let at = self.at.clone();
        self.tar.append_data(&mut h, &at, std::io::empty())?;
        self.entries += 1;
        let mut entries = Vec::new();
        let mut rd = rfs::Dir::read_from(&fd)?;
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
            self.at.push(OsStr::from_bytes(n.to_bytes()));
            let r = self.entry(fd.as_fd(), &n, ft);
            self.at.pop();
            r?;
        }
        Ok(())
    }

    fn file(&mut self, sdir: BorrowedFd, name: &CStr) -> Result<()> {
        let fd = rfs::openat(
            sdir,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
            Mode::empty(),
        )
        .with_context(|| format!("open {}", self.at.display()))?;
        let st = rfs::fstat(&fd)?;
        let ft = FileType::from_raw_mode(st.st_mode);
        if ft != FileType::RegularFile {
            return self.entry(sdir, name, ft);
        }
        let at = self.at.clone();
        if st.st_nlink > 1 {
            let key = (st.st_dev, st.st_ino);
            if let Some(first) = self.links.get(&key).cloned() {
                let mut h = self.header(&st, tar::EntryType::Link)?;
                self.tar.append_link(&mut h, &at, first)?;
                self.entries += 1;
                return Ok(());
            }
            self.links.insert(key, at.clone());
        }
        self.xattrs(&fd)?;
        let mut h = self.header(&st, tar::EntryType::Regular)?;
        let size = st.st_size as u64;
        h.set_size(size);
        if size <= SMALL {
            // The usual file of a mail or XMPP spool: one read, no second
            // one to find the end (the header already says the size).
            self.buf.resize(size as usize, 0);
            let mut got = 0;
            while got < self.buf.len() {
                let n = rustix::io::read(&fd, &mut self.buf[got..])
                    .with_context(|| format!("read {}", at.display()))?;
                if n == 0 {
                    bail!(
                        "{} shrank while it was archived; archive it again",
                        at.display()
                    );
                }
                got += n;
            }
            (self.progress)(size);
            self.tar.append_data(&mut h, &at, &self.buf[..])?;
        } else {
            let file = std::fs::File::from(fd);
            // Exactly the size the header says, even if the file grows meanwhile.
            let reader = Progress {
                inner: file.take(size),
                progress: self.progress,
            };
            self.tar.append_data(&mut h, &at, reader).with_context(|| {
                format!("read {} (did it shrink while archived?)", at.display())
            })?;
        }
        self.entries += 1;
        Ok(())
    }
}

struct Progress<'a, R> {
    inner: R,
    progress: &'a dyn Fn(u64),
}

impl<R: Read> Read for Progress<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.progress)(n as u64);
        Ok(n)
    }
}
