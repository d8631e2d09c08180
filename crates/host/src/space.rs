//! Will it fit? A copy takes whole blocks and one inode per entry on the
//! destination: 20,000 files of 100 B take 80 MiB of 4 KiB blocks on a
//! tmpfs, not 2 MB. Counted here the way the destination allocates (its
//! fragment size), against what an unprivileged writer may still use
//! (`f_bavail`, `f_favail`), so that the plan refuses what the copy could
//! not finish.

use std::path::Path;

use cap_std::fs::Dir;

/// What a tree takes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes of content (what `du --apparent-size` says).
    pub bytes: u64,
    /// Bytes of whole blocks it takes at the destination's block size.
    pub allocated: u64,
    /// Inodes: files, directories and symlinks (hard links once).
    pub inodes: u64,
    /// Files (regular files and symlinks), for messages.
    pub files: u64,
}

/// Room on a filesystem.
#[derive(Clone, Copy, Debug)]
pub struct Room {
    /// Bytes an unprivileged writer may still use.
    pub bytes: u64,
    /// Inodes it may still make (None where the filesystem does not say,
    /// or where `MEND_FAKE_FREE_BYTES` stands in for the disk).
    pub inodes: Option<u64>,
    /// The allocation unit.
    pub block: u64,
}

/// Symlinks this short live in the inode (ext4, tmpfs): no block.
const INLINE_LINK: u64 = 60;

/// What `rel` (a file or tree under `dir`) would take at `block`-byte
/// allocation. Unreadable entries count as nothing: the copy itself then
/// fails on them and says which.
///
/// The walk is the plan's one pass over the tree (a `stat` per entry: 0.2
/// s for 120,000 files), so it runs on every core: directories are taken
/// from a shared queue, each opened relative to its parent with
/// `O_NOFOLLOW`, one component at a time.
pub fn usage(dir: &Dir, rel: &Path, block: u64) -> Usage {
    use cap_std::fs::MetadataExt as _;
    let block = block.max(1);
    let Ok(md) = dir.symlink_metadata(rel) else {
        return Usage::default();
    };
    let mut tally = Tally::new(block);
    tally.add(
        md.is_dir(),
        md.file_type().is_symlink(),
        md.len(),
        md.nlink(),
        (md.dev(), md.ino()),
    );
    if !md.is_dir() {
        return tally.usage(&mut std::collections::HashSet::new());
    }
    let Ok(top) = dir.open_dir(rel) else {
        return tally.usage(&mut std::collections::HashSet::new());
    };
    let top: std::os::fd::OwnedFd = top.into_std_file().into();
    let queue = Queue {
        todo: std::sync::Mutex::new((vec![Todo::In(top.into(), c".".into())], 0)),
        ready: std::sync::Condvar::new(),
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let tallies: Vec<Tally> = std::thread::scope(|scope| {
        let walkers: Vec<_> = (1..threads)
            .map(|_| scope.spawn(|| walk(&queue, block)))
            .collect();
        let mut all = vec![walk(&queue, block)];
        all.extend(walkers.into_iter().filter_map(|w| w.join().ok()));
        all
    });
    let mut seen = std::collections::HashSet::new();
    let mut u = tally.usage(&mut seen);
    for t in tallies {
        let more = t.usage(&mut seen);
        u.bytes += more.bytes;
        u.allocated += more.allocated;
        u.inodes += more.inodes;
        u.files += more.files;
    }
    u
}

/// A directory still to read: a name in an open parent (the top is `.`
/// in itself: cap-std holds directories as `O_PATH`, which cannot be read).
enum Todo {
    In(std::sync::Arc<std::os::fd::OwnedFd>, std::ffi::CString),
}

/// Directories to read, and how many walkers are reading one (the walk
/// is over when none is and none is left).
struct Queue {
    todo: std::sync::Mutex<(Vec<Todo>, usize)>,
    ready: std::sync::Condvar,
}

/// One walker's count; a file with several links is kept aside by
/// (device, inode) so that it counts once across walkers.
struct Tally {
    block: u64,
    u: Usage,
    linked: Vec<((u64, u64), u64)>,
}

impl Tally {
    fn new(block: u64) -> Self {
        Tally {
            block,
            u: Usage::default(),
            linked: Vec::new(),
        }
    }

    fn add(&mut self, is_dir: bool, is_link: bool, len: u64, nlink: u64, id: (u64, u64)) {
        let block = self.block;
        if is_dir {
            self.u.inodes += 1;
            self.u.allocated += block;
            return;
        }
        self.u.files += 1;
        self.u.bytes += len;
        let allocated = if is_link {
            if len > INLINE_LINK { block } else { 0 }
        } else {
            len.div_ceil(block) * block
        };
        if nlink > 1 {
            self.linked.push((id, allocated));
            return;
        }
        self.u.inodes += 1;
        self.u.allocated += allocated;
    }

    /// The count, with each linked file not in `seen` once.
    fn usage(self, seen: &mut std::collections::HashSet<(u64, u64)>) -> Usage {
        let mut u = self.u;
        for (id, allocated) in self.linked {
            if seen.insert(id) {
                u.inodes += 1;
                u.allocated += allocated;
            }
        }
        u
    }
}

fn walk(queue: &Queue, block: u64) -> Tally {
    use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
    use std::sync::Arc;
    let mut tally = Tally::new(block);
    loop {
        let todo = {
            let mut q = queue.todo.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(t) = q.0.pop() {
                    q.1 += 1;
                    break t;
                }
                if q.1 == 0 {
                    return tally;
                }
                q = queue.ready.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        };
        let Todo::In(parent, name) = todo;
        let fd = rfs::openat(
            &*parent,
            name.as_c_str(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        );
        drop(parent);
        let mut found = Vec::new();
        if let Ok(fd) = fd {
            let fd = Arc::new(fd);
            if let Ok(mut rd) = rfs::Dir::read_from(&*fd) {
                while let Some(Ok(e)) = rd.read() {
                    let n = e.file_name();
                    if n == c"." || n == c".." {
                        continue;
                    }
                    if e.file_type() == FileType::Directory {
                        tally.add(true, false, 0, 1, (0, 0));
                        found.push(Todo::In(fd.clone(), n.to_owned()));
                        continue;
                    }
                    let Ok(st) = rfs::statat(&*fd, n, AtFlags::SYMLINK_NOFOLLOW) else {
                        continue;
                    };
                    let ft = FileType::from_raw_mode(st.st_mode);
                    tally.add(
                        ft == FileType::Directory,
                        ft == FileType::Symlink,
                        st.st_size as u64,
                        st.st_nlink,
                        (st.st_dev, st.st_ino),
                    );
                    if ft == FileType::Directory {
                        found.push(Todo::In(fd.clone(), n.to_owned()));
                    }
                }
            }
        }
        let mut q = queue.todo.lock().unwrap_or_else(|e| e.into_inner());
        q.0.extend(found);
        q.1 -= 1;
        queue.ready.notify_all();
    }
}

/// The room on the filesystem where `rel` (under `dir`) is or would be:
/// that of its nearest existing directory, so a path inside a volume
/// mounted below the grant counts the volume's space.
pub fn room_at(dir: &Dir, rel: &str) -> std::io::Result<Room> {
    let mut at = rel.trim_end_matches('/');
    let fd = loop {
        let p = if at.is_empty() { "." } else { at };
        let real = mend_plan::names::decode(p);
        match dir.symlink_metadata(&real) {
            Ok(md) if md.is_dir() => break dir.open_dir(&real)?,
            _ if at.is_empty() => break dir.try_clone()?,
            _ => at = at.rsplit_once('/').map_or("", |(parent, _)| parent),
        }
    };
    let st = rustix::fs::fstatvfs(&fd)?;
    let block = st.f_frsize.max(512);
    if let Ok(free) = crate::space::free_space_of(&fd)
        && std::env::var_os("MEND_FAKE_FREE_BYTES").is_some()
    {
        return Ok(Room {
            bytes: free,
            inodes: None,
            block,
        });
    }
    Ok(Room {
        bytes: st.f_bavail.saturating_mul(st.f_frsize),
        inodes: (st.f_files > 0).then_some(st.f_favail),
        block,
    })
}

/// A block size as operators read it: `4 KiB`, `512 B`.
fn block_text(b: u64) -> String {
    if b >= 1024 && b.is_multiple_of(1024) {
        format!("{} KiB", b / 1024)
    } else {
        format!("{b} B")
    }
}

/// Refuse a copy of `u` into `room` with the same headroom rule steps use
/// (5%, at least 64 MiB). `what` names the copy, `where_` the grant.
pub fn check(u: &Usage, room: &Room, what: &str, where_: &str) -> Result<(), String> {
    let headroom = mend_human::copy_headroom(u.allocated);
    if room.bytes < u.allocated.saturating_add(headroom) {
        return Err(format!(
            "not enough space for {what}: its {} ({}) take {} in {} blocks on the destination, plus {} headroom; {} is free in {where_}",
            mend_human::files_text(u.files),
            mend_human::human_bytes(u.bytes),
            mend_human::human_bytes(u.allocated),
            block_text(room.block),
            mend_human::human_bytes(headroom),
            mend_human::human_bytes(room.bytes),
        ));
    }
    if let Some(free) = room.inodes
        && free < u.inodes
    {
        return Err(format!(
            "not enough inodes for {what}: it makes {} files, directories and links, and only {} inodes are free in {where_}",
            mend_human::human_count(u.inodes),
            mend_human::human_count(free),
        ));
    }
    Ok(())
}

/// Whether a copy of `src` fits where `dst` goes: what it takes, or why not.
pub fn fits(
    src: &crate::grants::Resolved,
    dst: &crate::grants::Resolved,
    what: &str,
) -> Result<Usage, String> {
    let room = room_at(&dst.grant.dir, dst.rel).map_err(|e| {
        format!(
            "cannot see the free space for {what} in grant `{}`: {e}",
            dst.grant.name
        )
    })?;
    let u = usage(&src.grant.dir, &src.rel_path(), room.block);
    check(
        &u,
        &room,
        what,
        &format!("grant `{}` ({})", dst.grant.name, dst.grant.root.display()),
    )?;
    counted()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(copy_key(src, dst, room.block), u);
    Ok(u)
}

/// What the plans made in this process counted, by copy: `mend run` plans
/// each step just before it performs it, so the copy re-checks the free
/// space (one statvfs) against the plan's count instead of walking the
/// tree again. A resumed run, or a saved plan applied by another process,
/// finds nothing here and counts again.
fn counted() -> &'static std::sync::Mutex<std::collections::HashMap<CopyKey, Usage>> {
    static COUNTED: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<CopyKey, Usage>>,
    > = std::sync::OnceLock::new();
    COUNTED.get_or_init(Default::default)
}

/// A copy: source (grant root, path), destination (grant root, path), and
/// the destination's block size the count was made at.
type CopyKey = (std::path::PathBuf, String, std::path::PathBuf, String, u64);

fn copy_key(src: &crate::grants::Resolved, dst: &crate::grants::Resolved, block: u64) -> CopyKey {
    (
        src.grant.root.clone(),
        src.rel.to_string(),
        dst.grant.root.clone(),
        dst.rel.to_string(),
        block,
    )
}

/// [`fits`] at the time of the copy: `planned` is where the plan checked
/// it would go (the copy writes into a staging path beside it, on the same
/// filesystem). With the plan's count from this process, only the free
/// space and inodes are read again; without it, the tree is counted again.
pub fn fits_at_copy(
    src: &crate::grants::Resolved,
    planned: &crate::grants::Resolved,
    staging: &crate::grants::Resolved,
    what: &str,
) -> Result<Usage, String> {
    let room = room_at(&staging.grant.dir, staging.rel).map_err(|e| {
        format!(
            "cannot see the free space for {what} in grant `{}`: {e}",
            staging.grant.name
        )
    })?;
    let plan = counted()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&copy_key(src, planned, room.block));
    let Some(u) = plan else {
        return fits(src, staging, what);
    };
    check(
        &u,
        &room,
        what,
        &format!(
            "grant `{}` ({})",
            staging.grant.name,
            staging.grant.root.display()
        ),
    )?;
    Ok(u)
}

/// Whether an archive of `src` fits where `dst` goes, counted as its
/// uncompressed tar (a 512-byte header per entry, contents in 512-byte
/// records): compression only makes it smaller.
pub fn fits_archive(
    src: &crate::grants::Resolved,
    dst: &crate::grants::Resolved,
    what: &str,
) -> Result<Usage, String> {
    let room = room_at(&dst.grant.dir, dst.rel).map_err(|e| {
        format!(
            "cannot see the free space for {what} in grant `{}`: {e}",
            dst.grant.name
        )
    })?;
    let mut u = usage(&src.grant.dir, &src.rel_path(), 512);
    u.allocated = (u.allocated + u.inodes * 512 + 2 * 512).div_ceil(room.block) * room.block;
    let inodes = Usage { inodes: 1, ..u };
    check(
        &inodes,
        &room,
        what,
        &format!("grant `{}` ({})", dst.grant.name, dst.grant.root.display()),
    )?;
    Ok(u)
}

/// Size and file count of a file or tree; symlinks count as themselves.
pub fn tree_size(dir: &cap_std::fs::Dir, rel: &std::path::Path) -> (u64, u64) {
    let Ok(md) = dir.symlink_metadata(rel) else {
        return (0, 0);
    };
    if !md.is_dir() {
        return (md.len(), 1);
    }
    let Ok(sub) = dir.open_dir(rel) else {
        return (0, 0);
    };
    let mut stack = vec![sub];
    let (mut bytes, mut files) = (0, 0);
    while let Some(d) = stack.pop() {
        let Ok(entries) = d.entries() else { continue };
        for e in entries.flatten() {
            let Ok(md) = e.metadata() else { continue };
            if md.is_dir() {
                if let Ok(s) = e.open_dir() {
                    stack.push(s);
                }
            } else {
                bytes += md.len();
                files += 1;
            }
        }
    }
    (bytes, files)
}

/// Bytes available to an unprivileged writer where the host path `path` is
/// (a grant's root, outside any step), for reports and pinned plans.
pub fn free_space_at(path: &std::path::Path) -> std::io::Result<u64> {
    free_space_of(&Dir::open_ambient_dir(path, cap_std::ambient_authority())?)
}

/// `MEND_FAKE_FREE_BYTES=FREE` or `FREE/TOTAL`: the free (and total) space
/// every filesystem reports. Tests use it to rehearse a full disk without
/// filling the machine's, and to print the same plan on every machine.
pub(crate) fn fake_space() -> Option<(u64, Option<u64>)> {
    let v = std::env::var("MEND_FAKE_FREE_BYTES").ok()?;
    match v.split_once('/') {
        Some((free, total)) => Some((free.parse().ok()?, Some(total.parse().ok()?))),
        None => Some((v.parse().ok()?, None)),
    }
}

/// Bytes available to an unprivileged writer on the filesystem of `dir`
/// (or what `MEND_FAKE_FREE_BYTES` says).
pub fn free_space_of(dir: &Dir) -> std::io::Result<u64> {
    if let Some((free, _)) = fake_space() {
        return Ok(free);
    }
    let st = rustix::fs::fstatvfs(dir)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_files_take_whole_blocks_and_hard_links_one_inode() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("t");
        std::fs::create_dir_all(d.join("sub")).unwrap();
        for i in 0..10 {
            std::fs::write(d.join(format!("sub/{i}")), [0u8; 100]).unwrap();
        }
        std::fs::hard_link(d.join("sub/0"), d.join("again")).unwrap();
        std::os::unix::fs::symlink("sub/0", d.join("link")).unwrap();
        let dir = Dir::open_ambient_dir(tmp.path(), cap_std::ambient_authority()).unwrap();
        let u = usage(&dir, Path::new("t"), 4096);
        assert_eq!(u.bytes, 11 * 100 + 5);
        assert_eq!(u.files, 12);
        assert_eq!(u.inodes, 2 + 10 + 1, "two dirs, ten files, one link");
        assert_eq!(u.allocated, 2 * 4096 + 10 * 4096);
        let room = Room {
            bytes: 70 << 20,
            inodes: Some(5),
            block: 4096,
        };
        let err = check(&u, &room, "copy t -> u", "grant `vol`").unwrap_err();
        assert!(
            err.starts_with("not enough inodes for copy t -> u: it makes 13"),
            "{err}"
        );
        let room = Room {
            bytes: 64 << 20,
            inodes: None,
            block: 4096,
        };
        let err = check(&u, &room, "copy t -> u", "grant `vol`").unwrap_err();
        assert!(
            err.contains("12 files (1.1 kB) take 49.2 kB in 4 KiB blocks"),
            "{err}"
        );
    }

    /// Walked on every core, a wide tree counts as it did on one: a file
    /// linked from every directory is one inode and its blocks once, its
    /// bytes once a name (as `du --apparent-size` of names would).
    #[test]
    fn a_wide_tree_walked_in_parallel_counts_each_inode_once() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("t");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("shared"), [7u8; 5000]).unwrap();
        for i in 0..64 {
            let sub = d.join(format!("d{i}/deeper"));
            std::fs::create_dir_all(&sub).unwrap();
            for j in 0..20 {
                std::fs::write(sub.join(format!("f{j}")), vec![1u8; 10 + j]).unwrap();
            }
            std::fs::hard_link(d.join("shared"), sub.join("shared")).unwrap();
        }
        let dir = Dir::open_ambient_dir(tmp.path(), cap_std::ambient_authority()).unwrap();
        let u = usage(&dir, Path::new("t"), 4096);
        let per_dir: u64 = (0..20).map(|j| 10 + j).sum();
        assert_eq!(u.files, 64 * 21 + 1);
        assert_eq!(u.bytes, 64 * per_dir + 65 * 5000);
        assert_eq!(u.inodes, 1 + 64 * 2 + 64 * 20 + 1);
        assert_eq!(u.allocated, (1 + 64 * 2 + 64 * 20) * 4096 + 8192);
    }

    /// The copy carries the plan's count: the tree is walked once (in the
    /// plan), and the copy only reads the free space again. Files added
    /// between plan and copy are not in the count (the copy still copies
    /// them: it walks the tree itself); a second copy of the same planned
    /// action (a resumed run) finds no count and walks again.
    #[test]
    fn a_copy_carries_the_plans_count_instead_of_walking_again() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("t")).unwrap();
        std::fs::create_dir_all(tmp.path().join(".staging")).unwrap();
        for i in 0..3 {
            std::fs::write(tmp.path().join(format!("t/{i}")), [1u8; 10]).unwrap();
        }
        let g = crate::grants::GrantDir {
            name: "data".into(),
            root: tmp.path().to_path_buf(),
            access: mend_runbook::Access::Write,
            disposable: false,
            dir: Dir::open_ambient_dir(tmp.path(), cap_std::ambient_authority()).unwrap(),
        };
        let at = |rel| crate::grants::Resolved { grant: &g, rel };
        let planned = fits(&at("t"), &at("snap"), "copy t -> snap").unwrap();
        assert_eq!(planned.files, 3);
        for i in 3..5 {
            std::fs::write(tmp.path().join(format!("t/{i}")), [1u8; 10]).unwrap();
        }
        let at_copy = fits_at_copy(&at("t"), &at("snap"), &at(".staging/snap"), "copy").unwrap();
        assert_eq!(at_copy, planned, "the plan's count, not a second walk");
        let resumed = fits_at_copy(&at("t"), &at("snap"), &at(".staging/snap"), "copy").unwrap();
        assert_eq!(resumed.files, 5, "no count left: walked again");
    }
}
