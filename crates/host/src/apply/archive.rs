//! Packing a granted directory into one archive (`tar` or `tar.zst`),
//! streamed: files are read in inode order within each directory (close to
//! their order on disk), written as POSIX ustar entries framed by mend
//! ([`super::tar_frame`]) with owner and group (numbers and names), mode,
//! modification time (to the second, as GNU tar keeps it), symlinks as
//! symlinks, hard links as links, extended attributes as PAX
//! `SCHILY.xattr.*` records (as GNU tar and bsdtar write them), PAX
//! records for long names and large numbers, and compressed by zstd on every core at zstd's default level (as
//! `tar --zstd` does). The archive's sha256 is computed as it is written.
//!
//! Threads, as `tar | zstd` is two processes: one walks the directories;
//! a few readers (one per core, at most 4) do each file's system calls
//! (open, stat, xattrs, read, close: most of an archive of small files)
//! for runs of 16 names at a time; one frames the tar entries in the
//! walk's order and feeds zstd's workers (file data straight in, not
//! through tar's 8 KiB buffer); one hashes the archive's bytes and one
//! writes them to disk. They meet in bounded queues (at most [`DEPTH`]
//! batches of about [`BATCH`] bytes per stage, [`AHEAD`] per reader, and
//! [`DEPTH`] buffers of [`CHUNK`]), so memory stays small whatever the
//! tree holds. Set `MEND_ARCHIVE_READERS` to change the readers' number.
//!
//! Every open is one component relative to an open directory with
//! `O_NOFOLLOW`, as in `copy.rs`; FIFOs, sockets and devices are refused.

use std::collections::HashMap;
use std::ffi::{CStr, CString, OsStr};
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use cap_std::fs::OpenOptions;
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Stat};
use sha2::Digest as _;

use super::tar_frame::{self, Kind};
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
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(DEPTH);
        let (hashed_tx, hashed) = std::sync::mpsc::sync_channel::<Vec<u8>>(DEPTH);
        let (spare_tx, spare) = std::sync::mpsc::sync_channel::<Vec<u8>>(DEPTH);
        // The archive's bytes are hashed on one thread and written on
        // another: sha256 of 500 MB of photos (0.4 s with SHA-NI) is the
        // longest stage, and writing them is the next one.
        let hasher = scope.spawn(move || {
            let mut hash = sha2::Sha256::new();
            for buf in rx {
                hash.update(&buf);
                // The writing thread stopped (its error is reported).
                if hashed_tx.send(buf).is_err() {
                    break;
                }
            }
            hash
        });
        let disk = scope.spawn(move || -> std::io::Result<u64> {
            let mut file = file;
            let mut bytes = 0u64;
            for buf in hashed {
                file.write_all(&buf)?;
                bytes += buf.len() as u64;
                let _ = spare_tx.try_send(buf);
            }
            Ok(bytes)
        });
        let out = ToDisk {
            tx,
            spare,
            buf: Vec::new(),
        };
        let packed = pack(src, out, format, progress);
        // Its error first: a full disk stops the writing side, and the
        // framing side only sees that it stopped.
        let bytes = disk
            .join()
            .map_err(|_| anyhow::anyhow!("the archive's writing thread panicked"))?
            .with_context(|| format!("write {}/{}", dst.grant.name, dst.rel))?;
        let hash = hasher
            .join()
            .map_err(|_| anyhow::anyhow!("the archive's hashing thread panicked"))?;
        let entries = packed?;
        Ok(Made {
            sha256: hex::encode(hash.finalize()),
            bytes,
            entries,
        })
    })
}

/// Read, frame and compress `src` into `out`; the number of entries.
fn pack(src: &Resolved, out: ToDisk, format: Format, progress: &dyn Fn(u64)) -> Result<u64> {
    let sink = match format {
        Format::Tar => Out::Tar(out),
        Format::TarZst => {
            let mut enc = zstd::stream::raw::Encoder::new(ZSTD_LEVEL)?;
            // Workers beside this thread, which reads and writes tar: one
            // per core but ours (as tar piping into zstd), at least one.
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
            let workers = std::env::var("MEND_ZSTD_WORKERS")
                .ok()
                .and_then(|w| w.parse().ok())
                .unwrap_or(cores.saturating_sub(1).max(1));
            enc.set_parameter(zstd::stream::raw::CParameter::NbWorkers(workers))?;
            Out::Zst(Zst {
                w: Some(zstd::stream::zio::Writer::new(out, enc)),
                in_frame: false,
                stored: false,
                probe: zstd::bulk::Compressor::new(ZSTD_LEVEL)?,
                sample: Vec::new(),
            })
        }
        Format::TarGz => bail!("mend writes tar and tar.zst archives, not tar.gz"),
    };
    // Each file's header, data and padding gathered here, so zstd sees a
    // call per MiB, not three per file.
    let mut tar = std::io::BufWriter::with_capacity(1 << 20, sink);
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
    let (jobs_tx, jobs_rx) = std::sync::mpsc::sync_channel::<Job>(DEPTH);
    let (slots_tx, rx) = std::sync::mpsc::sync_channel(DEPTH);
    let jobs_rx = std::sync::Mutex::new(jobs_rx);
    let entries = std::thread::scope(|scope| -> Result<u64> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let readers = std::env::var("MEND_ARCHIVE_READERS")
            .ok()
            .and_then(|w| w.parse().ok())
            .unwrap_or(cores.clamp(1, 4));
        let jobs_rx = &jobs_rx;
        for _ in 0..readers.max(1) {
            scope.spawn(move || reader(jobs_rx));
        }
        let parent = &parent;
        let leaf = &leaf;
        let walker = scope.spawn(move || {
            let mut w = Walker {
                jobs: jobs_tx,
                slots: slots_tx,
                first: Vec::new(),
                at: PathBuf::from("."),
            };
            let r = w.dir(parent.as_fd(), leaf);
            w.end(r);
        });
        let mut w = Framer {
            w: &mut tar,
            pax: Vec::new(),
            name: Vec::new(),
            names: Names::default(),
            progress,
            unreported: 0,
            links: HashMap::new(),
            entries: 0,
        };
        let framed = w.run(rx);
        // The queues are dropped with the feed: a walker or reader still
        // going stops at its next hand-over.
        walker
            .join()
            .map_err(|_| anyhow::anyhow!("the archive's walking thread panicked"))?;
        framed.map(|()| w.entries)
    })
    .with_context(|| format!("archive {}/{}", src.grant.name, src.rel))?;
    // Every layer finished explicitly: an error (a full disk) at the end
    // is an error, never a short archive dropped in silence.
    // The end of the archive: two zero records (what `tar` writes).
    tar.write_all(&[0u8; 2 * tar_frame::RECORD])?;
    let sink = tar.into_inner().map_err(|e| e.into_error())?;
    let out = match sink {
        Out::Tar(out) => out,
        Out::Zst(z) => z.finish()?,
    };
    out.finish()?;
    Ok(entries)
}

/// The archive's byte stream: plain tar, or zstd-compressed.
enum Out {
    Tar(ToDisk),
    Zst(Zst),
}

impl Out {
    /// A file's data: stored as it is in a zstd raw block where zstd
    /// would store it so anyway (see [`Zst::data`]); written as the rest
    /// of the stream otherwise.
    fn data(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Out::Tar(w) => w.write_all(data),
            Out::Zst(z) => z.data(data),
        }
    }
}

impl Write for Out {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Out::Tar(w) => w.write(buf),
            Out::Zst(z) => z.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Out::Tar(w) => w.flush(),
            Out::Zst(z) => z.flush(),
        }
    }
}

type ZstWriter = zstd::stream::zio::Writer<ToDisk, zstd::stream::raw::Encoder<'static>>;

/// zstd as `tar --zstd` writes it, except for data zstd cannot make
/// smaller (photos, video, archives): zstd itself keeps a block as a raw
/// block when compressing it saves less than 1/64 of it, after spending
/// as long trying as it takes to compress it. Here a 64 KiB sample of
/// each large piece is tried at the same level; if it saves less than
/// that, the piece goes out as raw blocks of a frame of its own (what
/// zstd would have written, 3 bytes a 128 KiB block), with no time spent
/// compressing it. Every decoder reads concatenated frames as one stream
/// (the zstd format, RFC 8878, section 3.1).
struct Zst {
    /// None only while a frame is being ended.
    w: Option<ZstWriter>,
    /// Compressed bytes written since the frame began.
    in_frame: bool,
    /// Inside a frame of raw blocks.
    stored: bool,
    probe: zstd::bulk::Compressor<'static>,
    sample: Vec<u8>,
}

/// Pieces of file data at least this long are probed; shorter ones are
/// compressed with the rest (a frame's end costs the workers a pause).
const PROBE_MIN: usize = 128 << 10;
const SAMPLE: usize = 64 << 10;
/// zstd's largest block; a raw block holds at most this.
const BLOCK: usize = 128 << 10;

impl Zst {
    fn w(&mut self) -> &mut ZstWriter {
        self.w.as_mut().expect("a zstd writer between frames")
    }

    /// Whether zstd would keep the sample as it is: it saves less than
    /// 1/64 of it and 2 bytes (zstd's own `ZSTD_minGain` at this level).
    fn incompressible(&mut self, data: &[u8]) -> std::io::Result<bool> {
        if data.len() < PROBE_MIN {
            return Ok(false);
        }
        let mid = data.len() / 2 - SAMPLE / 2;
        let sample = &data[mid..mid + SAMPLE];
        self.sample.clear();
        self.sample.reserve(zstd::zstd_safe::compress_bound(SAMPLE));
        let n = self.probe.compress_to_buffer(sample, &mut self.sample)?;
        Ok(n + SAMPLE / 64 + 2 >= SAMPLE)
    }

    fn data(&mut self, data: &[u8]) -> std::io::Result<()> {
        if !self.incompressible(data)? {
            return self.write_all(data);
        }
        if self.in_frame {
            // End the compressed frame (its workers finish what they
            // hold); the same context starts the next one.
            let mut w = self.w.take().expect("a zstd writer");
            w.finish()?;
            let (out, mut enc) = w.into_inner();
            zstd::stream::raw::Operation::reinit(&mut enc)?;
            self.w = Some(zstd::stream::zio::Writer::new(out, enc));
            self.in_frame = false;
        }
        let first = !self.stored;
        self.stored = true;
        let out = self.w.as_mut().expect("a zstd writer").writer_mut();
        if first {
            // Magic, a frame header with no size and no checksum, and a
            // 128 KiB window (exponent 7: 2^(10+7)), enough for raw blocks.
            out.write_all(&[0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x38])?;
        }
        for block in data.chunks(BLOCK) {
            // Not the last block, type raw (0), its size.
            let h = (block.len() as u32) << 3;
            out.write_all(&h.to_le_bytes()[..3])?;
            out.write_all(block)?;
        }
        Ok(())
    }

    /// Close a frame of raw blocks: an empty last block, as zstd ends one.
    fn end_stored(&mut self) -> std::io::Result<()> {
        if self.stored {
            self.w().writer_mut().write_all(&[0x01, 0x00, 0x00])?;
            self.stored = false;
        }
        Ok(())
    }

    fn finish(mut self) -> std::io::Result<ToDisk> {
        self.end_stored()?;
        let mut w = self.w.take().expect("a zstd writer");
        w.finish()?;
        Ok(w.into_inner().0)
    }
}

impl Write for Zst {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.end_stored()?;
        self.in_frame = true;
        self.w().write(buf)
    }
    /// Nothing: a zstd flush would end a block (and stall its workers)
    /// for no reader; [`Zst::data`] and [`Zst::finish`] end frames.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A piece of a file's data after what is gathered in `w`: a large one
/// straight to [`Out::data`], a small one gathered.
fn piece(w: &mut std::io::BufWriter<Out>, data: &[u8]) -> std::io::Result<()> {
    if data.len() < PROBE_MIN {
        return w.write_all(data);
    }
    w.flush()?;
    w.get_mut().data(data)
}

/// The archive's bytes on their way to the thread that hashes and
/// writes them, in buffers of [`CHUNK`] (recycled).
struct ToDisk {
    tx: std::sync::mpsc::SyncSender<Vec<u8>>,
    spare: std::sync::mpsc::Receiver<Vec<u8>>,
    buf: Vec<u8>,
}

impl ToDisk {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let next = match self.spare.try_recv() {
            Ok(mut b) => {
                b.clear();
                b
            }
            Err(_) => Vec::with_capacity(CHUNK as usize),
        };
        let full = std::mem::replace(&mut self.buf, next);
        // The writing thread stopped on an error: it reports it.
        self.tx
            .send(full)
            .map_err(|_| std::io::Error::other("the archive's writing thread stopped"))
    }

    /// Everything sent; the writing thread then finishes.
    fn finish(mut self) -> std::io::Result<()> {
        self.send()
    }
}

impl Write for ToDisk {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.capacity() == 0 {
            self.buf.reserve(CHUNK as usize);
        }
        let n = data.len().min(self.buf.capacity() - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == self.buf.capacity() {
            self.send()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
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
    /// The names of a user and a group, when this host has them.
    fn of(&mut self, uid: u32, gid: u32) -> (Option<&str>, Option<&str>) {
        let users = self.users.get_or_insert_with(|| read_db("/etc/passwd"));
        let groups = self.groups.get_or_insert_with(|| read_db("/etc/group"));
        (
            users.get(&uid).map(String::as_str),
            groups.get(&gid).map(String::as_str),
        )
    }
}

/// Batches in flight between the reading thread and the framing one.
const DEPTH: usize = 16;
/// A batch is sent once it holds this many bytes of file data (or
/// [`BATCH_ITEMS`] entries): one hand-over per 256 KiB, not per file.
const BATCH: usize = 256 << 10;
const BATCH_ITEMS: usize = 1024;
/// Files up to this size are read whole into one buffer; larger ones in
/// chunks of this size.
const CHUNK: u64 = 1 << 20;

/// One archive entry as read: everything its header says, its extended
/// attributes, and its data (all of it, or the first chunk: the rest
/// follows as [`Item::More`]).
struct Meta {
    kind: Kind,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    size: u64,
    path: PathBuf,
    /// A symlink's target, or the first name of a hard-linked file.
    link: Option<PathBuf>,
    /// (device, inode) of a file with several names.
    id: Option<(u64, u64)>,
    xattrs: Vec<(CString, Vec<u8>)>,
    data: Vec<u8>,
}

enum Item {
    Entry(Box<Meta>),
    More(Vec<u8>),
}

type Batch = Result<Vec<Item>>;

/// The reading side, in two parts. One thread walks the tree (opens and
/// lists each directory, in inode order) and cuts each directory's other
/// entries into [`Job`]s of at most [`JOB`] names; a few reader threads
/// take the jobs in turn and do each file's system calls (open, stat,
/// xattrs, read, close: most of an archive of small files), so that
/// they run on every core, not one. Each job has its own bounded queue,
/// and the framing side takes the queues in the walk's order: the
/// archive's order does not depend on which reader was fastest.
///
/// No reader waits for ever: the jobs are taken in order, so the one the
/// framing side waits on has been taken before any later one, and its
/// reader only ever waits for the framing side to take what it read.
struct Walker {
    jobs: std::sync::mpsc::SyncSender<Job>,
    /// Each job's queue, in the archive's order, to the framing side.
    slots: std::sync::mpsc::SyncSender<std::sync::mpsc::Receiver<Batch>>,
    /// Entries the walker made itself (directories), to go out before
    /// the next job's.
    first: Vec<Item>,
    /// The entry's name in the archive.
    at: PathBuf,
}

/// Entries of one directory, in order, for one reader.
struct Job {
    first: Vec<Item>,
    dir: std::sync::Arc<OwnedFd>,
    names: Vec<(CString, FileType)>,
    /// The archive name of the directory.
    at: PathBuf,
    out: std::sync::mpsc::SyncSender<Batch>,
}

/// Names per job: enough to be worth a hand-over, few enough that large
/// files in one directory are read by every reader.
const JOB: usize = 16;
/// Batches a reader may read ahead in one job.
const AHEAD: usize = 4;

impl Walker {
    fn meta(&self, st: &Stat, kind: Kind) -> Box<Meta> {
        meta(st, kind, self.at.clone())
    }

    /// A job's queue in the archive's order; the sending side.
    fn slot(&mut self) -> Result<std::sync::mpsc::SyncSender<Batch>> {
        let (tx, rx) = std::sync::mpsc::sync_channel(AHEAD);
        self.slots
            .send(rx)
            .map_err(|_| anyhow::anyhow!("the archive's writing side stopped"))?;
        Ok(tx)
    }

    fn send(
        &mut self,
        dir: &std::sync::Arc<OwnedFd>,
        names: &mut Vec<(CString, FileType)>,
    ) -> Result<()> {
        if names.is_empty() {
            return Ok(());
        }
        let out = self.slot()?;
        let job = Job {
            first: std::mem::take(&mut self.first),
            dir: dir.clone(),
            names: std::mem::take(names),
            at: self.at.clone(),
            out,
        };
        self.jobs
            .send(job)
            .map_err(|_| anyhow::anyhow!("the archive's reading threads stopped"))
    }

    /// What is left of the walker's own entries, and an error (a
    /// directory that could not be read) in its place in the order.
    fn end(&mut self, r: Result<()>) {
        let first = std::mem::take(&mut self.first);
        if let Ok(tx) = self.slot() {
            if !first.is_empty() {
                let _ = tx.send(Ok(first));
            }
            if let Err(e) = r {
                let _ = tx.send(Err(e));
            }
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
        let st = rfs::fstat(&fd).with_context(|| format!("stat {}", self.at.display()))?;
        let mut m = self.meta(&st, Kind::Dir);
        m.xattrs = super::copy::read_xattrs(&fd)
            .with_context(|| format!("read the extended attributes of {}", self.at.display()))?;
        self.first.push(Item::Entry(m));
        let mut entries = Vec::new();
        let mut rd = rfs::Dir::read_from(&fd)
            .with_context(|| format!("read directory {}", self.at.display()))?;
        while let Some(e) = rd.read() {
            let e = e.with_context(|| format!("read directory {}", self.at.display()))?;
            let n = e.file_name();
            if n == c"." || n == c".." {
                continue;
            }
            entries.push((e.ino(), e.file_type(), n.to_owned()));
        }
        drop(rd);
        entries.sort_unstable_by_key(|(ino, _, _)| *ino);
        let fd = std::sync::Arc::new(fd);
        let mut names = Vec::new();
        for (_, ft, n) in entries {
            // A filesystem that does not say the type in its listing.
            let ft = if ft == FileType::Unknown {
                FileType::from_raw_mode(rfs::statat(&*fd, &n, AtFlags::SYMLINK_NOFOLLOW)?.st_mode)
            } else {
                ft
            };
            if ft == FileType::Directory {
                self.send(&fd, &mut names)?;
                self.at.push(OsStr::from_bytes(n.to_bytes()));
                let r = self.dir(fd.as_fd(), &n);
                self.at.pop();
                r?;
                continue;
            }
            names.push((n, ft));
            if names.len() >= JOB {
                self.send(&fd, &mut names)?;
            }
        }
        self.send(&fd, &mut names)
    }
}

fn meta(st: &Stat, kind: Kind, path: PathBuf) -> Box<Meta> {
    Box::new(Meta {
        kind,
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        mtime: st.st_mtime,
        size: 0,
        path,
        link: None,
        id: None,
        xattrs: Vec::new(),
        data: Vec::new(),
    })
}

/// A reader thread: jobs in turn until there are none, or the framing
/// side stopped.
fn reader(jobs: &std::sync::Mutex<std::sync::mpsc::Receiver<Job>>) {
    loop {
        let job = match jobs.lock().unwrap_or_else(|e| e.into_inner()).recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        let mut r = Reader {
            tx: job.out,
            batch: job.first,
            batched: 0,
            at: job.at,
        };
        let mut done = Ok(());
        for (name, ft) in &job.names {
            r.at.push(OsStr::from_bytes(name.to_bytes()));
            done = r.entry(job.dir.as_fd(), name, *ft);
            r.at.pop();
            if done.is_err() {
                break;
            }
        }
        let done = done.and_then(|()| r.flush());
        if let Err(e) = done {
            // Unless the framing side stopped first (its error wins).
            let _ = r.tx.send(Err(e));
        }
    }
}

/// One reader's job: its entries read and sent in batches.
struct Reader {
    tx: std::sync::mpsc::SyncSender<Batch>,
    batch: Vec<Item>,
    batched: usize,
    /// The entry's name in the archive.
    at: PathBuf,
}

impl Reader {
    fn meta(&self, st: &Stat, kind: Kind) -> Box<Meta> {
        meta(st, kind, self.at.clone())
    }

    fn push(&mut self, item: Item) -> Result<()> {
        self.batched += match &item {
            Item::Entry(m) => m.data.len(),
            Item::More(d) => d.len(),
        };
        self.batch.push(item);
        if self.batched >= BATCH || self.batch.len() >= BATCH_ITEMS {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.batched = 0;
        let batch = std::mem::take(&mut self.batch);
        // The framing side stopped (its own error, a full disk): stop too.
        self.tx
            .send(Ok(batch))
            .map_err(|_| anyhow::anyhow!("the archive's writing side stopped"))
    }

    fn entry(&mut self, sdir: BorrowedFd, name: &CStr, ft: FileType) -> Result<()> {
        match ft {
            FileType::RegularFile => self.file(sdir, name),
            FileType::Symlink => {
                let st = rfs::statat(sdir, name, AtFlags::SYMLINK_NOFOLLOW)
                    .with_context(|| format!("stat {}", self.at.display()))?;
                let target = rfs::readlinkat(sdir, name, Vec::new())
                    .with_context(|| format!("read link {}", self.at.display()))?;
                let mut m = self.meta(&st, Kind::Symlink);
                m.link = Some(PathBuf::from(OsStr::from_bytes(target.to_bytes())));
                self.push(Item::Entry(m))
            }
            FileType::Directory => bail!(
                "{} became a directory while it was archived; archive it again",
                self.at.display()
            ),
            _ => bail!(
                "{} is a special file (FIFO, socket or device); mend archives files, directories and symlinks",
                self.at.display()
            ),
        }
    }

    fn file(&mut self, sdir: BorrowedFd, name: &CStr) -> Result<()> {
        let fd = rfs::openat(
            sdir,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
            Mode::empty(),
        )
        .with_context(|| format!("open {}", self.at.display()))?;
        let st = rfs::fstat(&fd).with_context(|| format!("stat {}", self.at.display()))?;
        let ft = FileType::from_raw_mode(st.st_mode);
        if ft != FileType::RegularFile {
            return self.entry(sdir, name, ft);
        }
        let mut m = self.meta(&st, Kind::File);
        // Which of its names comes first in the archive is the framing
        // side's to say (readers finish out of order): it is read here
        // all the same, and dropped there if it is a second name.
        if st.st_nlink > 1 {
            m.id = Some((st.st_dev, st.st_ino));
        }
        m.xattrs = super::copy::read_xattrs(&fd)
            .with_context(|| format!("read the extended attributes of {}", self.at.display()))?;
        // Exactly the size the header says, even if the file grows meanwhile.
        let size = st.st_size as u64;
        m.size = size;
        m.data = self.read(&fd, size.min(CHUNK))?;
        let mut left = size - m.data.len() as u64;
        self.push(Item::Entry(m))?;
        while left > 0 {
            let chunk = self.read(&fd, left.min(CHUNK))?;
            left -= chunk.len() as u64;
            self.push(Item::More(chunk))?;
        }
        Ok(())
    }

    /// Exactly `n` bytes: the usual file of a mail or XMPP spool in one
    /// read, no second one to find the end (the header already says it).
    fn read(&self, fd: &OwnedFd, n: u64) -> Result<Vec<u8>> {
        // Into the spare capacity: no zeroing of what the read overwrites.
        let mut buf = Vec::with_capacity(n as usize);
        while buf.len() < n as usize {
            let r = rustix::io::read(fd, rustix::buffer::spare_capacity(&mut buf))
                .with_context(|| format!("read {}", self.at.display()))?;
            if r == 0 {
                bail!(
                    "{} shrank while it was archived; archive it again",
                    self.at.display()
                );
            }
        }
        // The allocator may have given more room than asked for: a file
        // that grew meanwhile is cut at the size its header says.
        buf.truncate(n as usize);
        Ok(buf)
    }
}

/// The framing side: tar headers (and PAX records for extended
/// attributes) around what the reader sent, into zstd and the hash.
struct Framer<'a> {
    w: &'a mut std::io::BufWriter<Out>,
    /// Scratch space for PAX records and for a directory's name with its `/`.
    pax: Vec<u8>,
    name: Vec<u8>,
    names: Names,
    progress: &'a dyn Fn(u64),
    /// Bytes framed and not yet reported (reported a MiB at a time).
    unreported: u64,
    /// The first name of each file with several, by (device, inode).
    links: HashMap<(u64, u64), PathBuf>,
    entries: u64,
}

/// The data of `m` after the first piece its reader sent, piece by piece
/// as the reader sends it.
fn rest(feed: &mut Feed, m: &Meta, mut each: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
    let mut left = m.size - m.data.len() as u64;
    while left > 0 {
        let Some(Item::More(d)) = feed.next()? else {
            bail!(
                "the archive's reading side ended inside {}",
                m.path.display()
            );
        };
        left = left.saturating_sub(d.len() as u64);
        each(&d)?;
    }
    Ok(())
}

/// Progress a MiB at a time, not per file: the reporter formats its line.
fn report(unreported: &mut u64, progress: &dyn Fn(u64), n: u64) {
    *unreported += n;
    if *unreported >= 1 << 20 {
        progress(std::mem::take(unreported));
    }
}

/// The items still to frame: the current batch, then the current job's
/// queue, then the next job's.
struct Feed {
    cur: std::vec::IntoIter<Item>,
    job: Option<std::sync::mpsc::Receiver<Batch>>,
    rx: std::sync::mpsc::Receiver<std::sync::mpsc::Receiver<Batch>>,
}

impl Feed {
    fn next(&mut self) -> Result<Option<Item>> {
        loop {
            if let Some(item) = self.cur.next() {
                return Ok(Some(item));
            }
            if let Some(job) = &self.job {
                match job.recv() {
                    Ok(batch) => {
                        self.cur = batch?.into_iter();
                        continue;
                    }
                    // That job is read.
                    Err(_) => self.job = None,
                }
            }
            match self.rx.recv() {
                Ok(job) => self.job = Some(job),
                // The walk is done (or stopped after sending its error).
                Err(_) => return Ok(None),
            }
        }
    }
}

impl Framer<'_> {
    fn run(
        &mut self,
        rx: std::sync::mpsc::Receiver<std::sync::mpsc::Receiver<Batch>>,
    ) -> Result<()> {
        let mut feed = Feed {
            cur: Vec::new().into_iter(),
            job: None,
            rx,
        };
        while let Some(item) = feed.next()? {
            let Item::Entry(m) = item else {
                bail!("the archive's reading side sent data outside a file");
            };
            self.entry(*m, &mut feed)?;
        }
        (self.progress)(std::mem::take(&mut self.unreported));
        Ok(())
    }

    /// The entry's header (and PAX records) straight into the output.
    fn header(&mut self, m: &Meta) -> Result<()> {
        let path = m.path.as_os_str().as_bytes();
        // A directory's name ends in `/`, as GNU tar writes it.
        let path = if m.kind == Kind::Dir {
            self.name.clear();
            self.name.extend_from_slice(path);
            self.name.push(b'/');
            &self.name[..]
        } else {
            path
        };
        let (uname, gname) = self.names.of(m.uid, m.gid);
        let e = tar_frame::Entry {
            kind: m.kind,
            path,
            link: m.link.as_deref().map(|l| l.as_os_str().as_bytes()),
            mode: m.mode,
            uid: m.uid.into(),
            gid: m.gid.into(),
            size: m.size,
            mtime: m.mtime,
            uname: uname.map(str::as_bytes),
            gname: gname.map(str::as_bytes),
            xattrs: &m.xattrs,
        };
        tar_frame::write_header(self.w, &e, &mut self.pax)?;
        Ok(())
    }

    fn entry(&mut self, mut m: Meta, feed: &mut Feed) -> Result<()> {
        if let Some(id) = m.id {
            if let Some(first) = self.links.get(&id) {
                // A second name: a link to the first, without the data
                // its reader read.
                rest(feed, &m, |_| Ok(()))?;
                m.kind = Kind::Link;
                m.link = Some(first.clone());
                m.size = 0;
                // The first name carried them.
                m.xattrs = Vec::new();
                m.data = Vec::new();
            } else {
                self.links.insert(id, m.path.clone());
            }
        }
        if m.kind != Kind::File {
            m.size = 0;
        }
        if matches!(m.kind, Kind::Symlink | Kind::Link) && m.link.is_none() {
            bail!("{}: a link without its target", m.path.display());
        }
        self.header(&m)?;
        if m.kind == Kind::File {
            // The data goes straight on, in the pieces the reader sent,
            // then the padding to the next 512-byte record.
            let w = &mut *self.w;
            piece(w, &m.data)?;
            let first = m.data.len() as u64;
            let (unreported, progress) = (&mut self.unreported, self.progress);
            rest(feed, &m, |d| {
                piece(w, d)?;
                report(unreported, progress, d.len() as u64);
                Ok(())
            })?;
            w.write_all(&[0u8; tar_frame::RECORD][..tar_frame::padding(m.size)])?;
            report(&mut self.unreported, self.progress, first);
        }
        self.entries += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt as _;
    use std::path::Path;

    fn sh(script: &str) {
        let ok = std::process::Command::new("sh")
            .args(["-c", script])
            .status()
            .unwrap()
            .success();
        assert!(ok, "{script}");
    }

    fn grant(root: &Path) -> crate::grants::GrantDir {
        crate::grants::GrantDir {
            name: "g".into(),
            root: root.to_path_buf(),
            access: mend_runbook::Access::Write,
            disposable: false,
            dir: cap_std::fs::Dir::open_ambient_dir(root, cap_std::ambient_authority()).unwrap(),
        }
    }

    fn pack(root: &Path, from: &str, to: &str) -> Result<Made> {
        let g = grant(root);
        let at = |rel| Resolved { grant: &g, rel };
        archive(&at(from), &at(to), Format::TarZst, &|_| {})
    }

    /// Every entry as `tar -x` should bring it back: owner, mode, mtime (to
    /// the second, as tar keeps it), links, contents (hashed).
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
                hex::encode(sha2::Sha256::digest(std::fs::read(&p).unwrap()))
            } else {
                String::new()
            };
            let mtime = if md.file_type().is_symlink() {
                0
            } else {
                md.mtime()
            };
            out.push(format!(
                "{rel} mode={:o} uid={} gid={} mtime={mtime} nlink={} {body}",
                md.mode(),
                md.uid(),
                md.gid(),
                md.nlink()
            ));
        }
        out.sort();
        out
    }

    /// Files larger than a chunk and a batch cross the queue in pieces;
    /// small ones, links and xattrs ride in batches: GNU tar reads all of
    /// it back as it was, and the recorded sha256 is the file's.
    #[test]
    fn an_archive_read_on_one_thread_and_framed_on_another_is_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let s = tmp.path().join("src");
        sh(&format!(
            "set -e; mkdir -p {s}/sub/deep; for i in $(seq 1 300); do echo \"user $i\" > {s}/sub/f$i; done; \
             head -c 3500000 /dev/urandom > {s}/big; head -c 1048576 /dev/urandom > {s}/sub/exact-chunk; \
             : > {s}/empty; ln {s}/sub/f1 {s}/sub/deep/f1-again; ln -s ../big {s}/sub/link; \
             chmod 640 {s}/big {s}/sub/f2; chmod 2755 {s}/sub/deep; \
             touch -d '2021-01-01 01:01:01' {s}/big {s}/sub/f2 {s}/sub/deep {s}/sub",
            s = s.display()
        ));
        let xattr = rfs::setxattr(
            s.join("sub/f2").as_path(),
            "user.mend-test",
            b"kept",
            rfs::XattrFlags::empty(),
        )
        .is_ok();
        if rustix::process::geteuid().is_root() {
            sh(&format!("chown -R -h 65534:65534 {}/sub", s.display()));
        }
        let made = pack(tmp.path(), "src", "a.tar.zst").unwrap();
        assert_eq!(made.entries, 300 + 8);
        let file = tmp.path().join("a.tar.zst");
        let bytes = std::fs::read(&file).unwrap();
        assert_eq!(made.bytes, bytes.len() as u64);
        assert_eq!(made.sha256, hex::encode(sha2::Sha256::digest(&bytes)));
        let out = tmp.path().join("out");
        std::fs::create_dir(&out).unwrap();
        sh(&format!(
            "tar --zstd -xpf {} --xattrs --xattrs-include='*' --numeric-owner -C {}",
            file.display(),
            out.display()
        ));
        assert_eq!(meta(&out), meta(&s));
        if xattr {
            let mut v = [0u8; 16];
            let n =
                rfs::getxattr(out.join("sub/f2").as_path(), "user.mend-test", &mut v[..]).unwrap();
            assert_eq!(&v[..n], b"kept");
        }
    }

    /// Several readers finish out of order: each file with several names
    /// comes out whole under the name the archive reaches first and as a
    /// link under the others, large ones (read in chunks) too, and GNU tar
    /// brings the links back as links.
    #[test]
    fn hard_links_read_by_several_readers_come_out_once() {
        let tmp = tempfile::tempdir().unwrap();
        let s = tmp.path().join("src");
        sh(&format!(
            "set -e; mkdir -p {s}/a {s}/b; for i in $(seq 1 200); do echo \"file $i\" > {s}/a/f$i; ln {s}/a/f$i {s}/a/g$i; done; \
             head -c 3000000 /dev/urandom > {s}/b/big; ln {s}/b/big {s}/b/big2; ln {s}/b/big {s}/a/big3; \
             for i in $(seq 1 50); do ln {s}/a/f$i {s}/b/h$i; done",
            s = s.display()
        ));
        let made = pack(tmp.path(), "src", "a.tar.zst").unwrap();
        assert_eq!(made.entries, 3 + 400 + 3 + 50);
        let file = tmp.path().join("a.tar.zst");
        let out = tmp.path().join("out");
        std::fs::create_dir(&out).unwrap();
        sh(&format!(
            "tar --zstd -xpf {} -C {}",
            file.display(),
            out.display()
        ));
        assert_eq!(meta(&out), meta(&s));
        // One copy of the data per file: 201 files, the large one once.
        let listing = std::process::Command::new("tar")
            .args(["--zstd", "-tvf"])
            .arg(&file)
            .output()
            .unwrap();
        let listing = String::from_utf8(listing.stdout).unwrap();
        let linked = listing.lines().filter(|l| l.starts_with('h')).count();
        assert_eq!(linked, 200 + 2 + 50, "{listing}");
    }

    /// Photos go out as raw blocks without being compressed, text as
    /// zstd: the concatenated frames read back with GNU tar (zstd's
    /// tool), with `zstd -t`, and with the decoder mend extracts with,
    /// and the archive is no larger than `tar --zstd`'s of the same tree
    /// (beyond a few bytes a frame).
    #[test]
    fn stored_and_compressed_frames_read_back_and_stay_small() {
        let tmp = tempfile::tempdir().unwrap();
        let s = tmp.path().join("src");
        sh(&format!(
            "set -e; mkdir -p {s}/photos {s}/logs; \
             for i in 1 2 3; do head -c 2500000 /dev/urandom > {s}/photos/p$i.jpg; done; \
             seq 1 400000 > {s}/logs/big.log; echo small > {s}/logs/small; \
             head -c 200000 /dev/urandom > {s}/photos/mixed; seq 1 50000 >> {s}/photos/mixed; \
             cat {s}/photos/p1.jpg {s}/logs/big.log {s}/photos/p2.jpg > {s}/photos/half",
            s = s.display()
        ));
        let made = pack(tmp.path(), "src", "a.tar.zst").unwrap();
        let file = tmp.path().join("a.tar.zst");
        let bytes = std::fs::read(&file).unwrap();
        assert_eq!(made.sha256, hex::encode(sha2::Sha256::digest(&bytes)));
        sh(&format!("zstd -q -t {}", file.display()));
        let out = tmp.path().join("out");
        std::fs::create_dir(&out).unwrap();
        sh(&format!(
            "tar --zstd -xpf {} -C {}",
            file.display(),
            out.display()
        ));
        assert_eq!(meta(&out), meta(&s));
        // The decoder `extract` uses reads every frame, not the first.
        let mut plain = Vec::new();
        std::io::Read::read_to_end(
            &mut zstd::stream::read::Decoder::new(&bytes[..]).unwrap(),
            &mut plain,
        )
        .unwrap();
        let native = tmp.path().join("native.tar");
        sh(&format!(
            "tar -cf {} --format=gnu -C {} src",
            native.display(),
            tmp.path().display()
        ));
        let native_len = std::fs::metadata(&native).unwrap().len();
        assert!(
            (plain.len() as u64).abs_diff(native_len) < 64 << 10,
            "{} bytes of tar, GNU tar's {native_len}",
            plain.len()
        );
        let zst = tmp.path().join("native.tar.zst");
        sh(&format!(
            "zstd -q -3 -o {} {}",
            zst.display(),
            native.display()
        ));
        let theirs = std::fs::metadata(&zst).unwrap().len();
        assert!(
            made.bytes <= theirs + theirs / 200 + 1024,
            "mend's archive {} bytes, tar --zstd's {theirs}",
            made.bytes
        );
    }

    /// An error on the reading side (a FIFO, which is never archived)
    /// stops the archive with its reason; neither thread waits for ever.
    #[test]
    fn an_error_while_reading_stops_the_archive_with_its_reason() {
        let tmp = tempfile::tempdir().unwrap();
        let s = tmp.path().join("src");
        sh(&format!(
            "set -e; mkdir -p {s}; head -c 5000000 /dev/urandom > {s}/a-big; mkfifo {s}/pipe",
            s = s.display()
        ));
        let err = pack(tmp.path(), "src", "a.tar.zst")
            .err()
            .expect("a FIFO is refused");
        assert!(format!("{err:#}").contains("special file"), "{err:#}");
    }

    /// A disk that fills while the archive is written fails the archive
    /// (never a short one kept in silence), and the reading side stops.
    #[test]
    fn a_full_disk_fails_the_archive() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: mounting a tmpfs needs root");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let s = tmp.path().join("src");
        let vol = tmp.path().join("vol");
        sh(&format!(
            "set -e; mkdir -p {s} {v}; for i in 1 2 3 4; do head -c 3000000 /dev/urandom > {s}/f$i; done; \
             mount -t tmpfs -o size=4m tmpfs {v}",
            s = s.display(),
            v = vol.display()
        ));
        let g = grant(tmp.path());
        let gv = grant(&vol);
        let r = archive(
            &Resolved {
                grant: &g,
                rel: "src",
            },
            &Resolved {
                grant: &gv,
                rel: "a.tar.zst",
            },
            Format::TarZst,
            &|_| {},
        );
        drop(gv);
        sh(&format!("umount {}", vol.display()));
        let err = r.err().expect("12 MB of random data do not fit in 4 MB");
        assert!(format!("{err:#}").contains("No space left"), "{err:#}");
    }
}
