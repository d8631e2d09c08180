//! File operations on checked paths, all through cap-std handles: nothing
//! here can leave a grant, and nothing follows a symlink at the final
//! component unless it says so.

use std::borrow::Cow;
use std::io::Write;
use std::path::Path;

use anyhow::{Context as _, Result, bail};
use cap_std::fs::PermissionsExt as _;
use cap_std::fs::{Dir, OpenOptions, Permissions};

use crate::grants::{Grants, Resolved};
use mend_plan::DirTimes;

/// Whether a path exists (a dangling symlink exists).
pub fn exists(r: &Resolved) -> Result<bool> {
    match r.grant.dir.symlink_metadata(r.rel_path()) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("stat {}/{}", r.grant.name, r.rel)),
    }
}

/// Why a write-file of `contents` at `r` must not go ahead: the path no
/// longer holds what the plan saw (`expect`), and not because this run
/// already wrote it (a resumed write finds its own contents there). None:
/// write. A file gone since the plan loses nobody's work: write.
pub fn written_over_changed(
    r: &Resolved,
    expect: mend_plan::Expect,
    contents: &[u8],
) -> Result<Option<String>> {
    use cap_std::fs::MetadataExt as _;
    use mend_plan::Expect;
    let md = match r.grant.dir.symlink_metadata(r.rel_path()) {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("stat {}/{}", r.grant.name, r.rel)),
    };
    let now = (md.len(), mend_plan::mtime_ns(md.mtime(), md.mtime_nsec()));
    let why = match expect {
        Expect::File { size, mtime_ns } if (size, mtime_ns) == now => return Ok(None),
        Expect::File { size, mtime_ns } => format!(
            "it changed since the plan ({} then, {} now{})",
            mend_human::human_bytes(size),
            mend_human::human_bytes(now.0),
            if now.1 != mtime_ns {
                ", modified since"
            } else {
                ""
            }
        ),
        Expect::Absent => format!(
            "a file of {} was put there since the plan, which saw nothing there",
            mend_human::human_bytes(now.0)
        ),
        // Removals only.
        Expect::Dir { .. } | Expect::Tree { .. } => return Ok(None),
    };
    // This run's own write, resumed after a crash: the same bytes.
    Ok((!holds(r, contents)).then_some(why))
}

/// Whether `r` is a file of exactly `contents`: a write-file's own work
/// (it renames a whole staged file into place, so never a part of it).
pub fn holds(r: &Resolved, contents: &[u8]) -> bool {
    r.grant
        .dir
        .symlink_metadata(r.rel_path())
        .is_ok_and(|md| md.is_file() && md.len() == contents.len() as u64)
        && r.grant.dir.read(r.rel_path()).is_ok_and(|b| b == contents)
}

/// The inode of a path (not following a final symlink).
pub fn ino(r: &Resolved) -> Result<u64> {
    use cap_std::fs::MetadataExt as _;
    Ok(r.grant
        .dir
        .symlink_metadata(r.rel_path())
        .with_context(|| format!("stat {}/{}", r.grant.name, r.rel))?
        .ino())
}

/// The permission bits of a path.
pub fn mode(r: &Resolved) -> Result<u32> {
    Ok(r.grant
        .dir
        .symlink_metadata(r.rel_path())?
        .permissions()
        .mode()
        & 0o7777)
}

/// Create the parent directories of a path.
pub fn ensure_parent(r: &Resolved) -> Result<()> {
    if let Some((parent, _)) = r.rel.rsplit_once('/') {
        r.grant
            .dir
            .create_dir_all(mend_plan::names::decode(parent))
            .with_context(|| format!("create {}/{parent}", r.grant.name))?;
    }
    Ok(())
}

/// Rename within one grant.
pub fn rename(from: &Resolved, to: &Resolved) -> Result<()> {
    from.grant
        .dir
        .rename(from.rel_path(), &to.grant.dir, to.rel_path())
        .with_context(|| {
            format!(
                "rename {}/{} to {}/{}",
                from.grant.name, from.rel, to.grant.name, to.rel
            )
        })
}

/// Rename within one grant, failing when the destination exists: for the
/// host's own entries (trash), where something already there was not made
/// by this action and must not be taken for it.
pub fn rename_noreplace(from: &Resolved, to: &Resolved) -> Result<()> {
    let (df, lf) = split_parent(from)?;
    let (dt, lt) = split_parent(to)?;
    rustix::fs::renameat_with(&df, &*lf, &dt, &*lt, rustix::fs::RenameFlags::NOREPLACE)
        .with_context(|| {
            format!(
                "rename {}/{} to {}/{}",
                from.grant.name, from.rel, to.grant.name, to.rel
            )
        })
}

/// Remove a file, a symlink (not its target) or a tree; `false` when it was
/// already gone. One system call for a file.
pub fn remove_if_exists(r: &Resolved) -> Result<bool> {
    match r.grant.dir.remove_file(r.rel_path()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(_) if exists(r)? => remove_any(r).map(|()| true),
        Err(_) => Ok(false),
    }
}

/// Remove a file, a symlink (not its target) or a tree.
pub fn remove_any(r: &Resolved) -> Result<()> {
    let md = r.grant.dir.symlink_metadata(r.rel_path())?;
    let what = format!("remove {}/{}", r.grant.name, r.rel);
    if md.is_dir() {
        r.grant.dir.remove_dir_all(r.rel_path()).context(what)
    } else {
        r.grant.dir.remove_file(r.rel_path()).context(what)
    }
}

fn split_parent<'a>(r: &'a Resolved) -> Result<(Dir, Cow<'a, Path>)> {
    let (parent, leaf) = r.rel.rsplit_once('/').unwrap_or(("", r.rel));
    let dir = if parent.is_empty() {
        r.grant.dir.try_clone()?
    } else {
        r.grant.dir.open_dir(mend_plan::names::decode(parent))?
    };
    Ok((dir, mend_plan::names::decode(leaf)))
}

/// Exchange two paths atomically (renameat2 RENAME_EXCHANGE), through
/// handles on their parent directories.
pub fn exchange(a: &Resolved, b: &Resolved) -> Result<()> {
    let (da, la) = split_parent(a)?;
    let (db, lb) = split_parent(b)?;
    rustix::fs::renameat_with(&da, &*la, &db, &*lb, rustix::fs::RenameFlags::EXCHANGE).with_context(
        || {
            format!(
                "swap {}/{} and {}/{}",
                a.grant.name, a.rel, b.grant.name, b.rel
            )
        },
    )
}

/// Write a whole file and make it durable before it is renamed into place.
pub fn write_synced(r: &Resolved, contents: &[u8], mode: u32) -> Result<()> {
    let mut opts = OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    let mut f = r
        .grant
        .dir
        .open_with(r.rel_path(), &opts)
        .with_context(|| format!("write {}/{}", r.grant.name, r.rel))?;
    f.write_all(contents)?;
    f.set_permissions(Permissions::from_mode(mode))?;
    mend_faults::fsync()?;
    f.sync_all()?;
    Ok(())
}

/// Refuse a copy that would not fit, before writing anything.
pub fn check_space(dst: &Resolved, need: u64, what: &str) -> Result<()> {
    let free = crate::space::free_space_of(&dst.grant.dir)?;
    // The same rule steps check at plan time.
    let headroom = mend_human::copy_headroom(need);
    if free < need + headroom {
        bail!(
            "not enough space for {what}: it needs {} (with {} headroom), {} is free in grant `{}` ({})",
            mend_human::human_bytes(need),
            mend_human::human_bytes(headroom),
            mend_human::human_bytes(free),
            dst.grant.name,
            dst.grant.root.display()
        );
    }
    Ok(())
}

/// Copy a file, symlink or tree (permissions and modification times kept;
/// symlinks copied as symlinks, never followed).
pub fn copy_tree(src: &Resolved, dst: &Resolved, progress: &dyn Fn(u64)) -> Result<()> {
    copy_with(
        &src.grant.dir,
        &src.rel_path(),
        &dst.grant.dir,
        &dst.rel_path(),
        progress,
    )
    .with_context(|| {
        format!(
            "copy {}/{} to {}/{}",
            src.grant.name, src.rel, dst.grant.name, dst.rel
        )
    })
}

/// Copy between two open directories (used by rehearsals for whole grants).
pub fn copy_entry(sd: &Dir, sp: &Path, dd: &Dir, dp: &Path) -> Result<()> {
    copy_with(sd, sp, dd, dp, &|_| {})
}

/// The copy itself is `copy.rs`: what `cp -a` keeps (owner, mode, times
/// of files, directories and symlinks, hard links, extended attributes),
/// special files refused before they are opened.
fn copy_with(sd: &Dir, sp: &Path, dd: &Dir, dp: &Path, progress: &dyn Fn(u64)) -> Result<()> {
    super::copy::copy(sd, sp, dd, dp, progress)
}

/// [`sync_filesystem`] of the filesystem `r` is on (a volume mounted in
/// the grant is another filesystem than the grant's own).
pub fn sync_at(r: &Resolved) -> Result<()> {
    let top = fs_top(r)?;
    let d = if top.is_empty() {
        r.grant.dir.try_clone()?
    } else {
        r.grant.dir.open_dir(mend_plan::names::decode(&top))?
    };
    sync_filesystem(&d)
}

/// The top of the filesystem `r` is on, inside its grant: "" when that is
/// the grant's own, else the volume mounted in the grant that holds it.
pub fn fs_top(r: &Resolved) -> Result<String> {
    use cap_std::fs::MetadataExt as _;
    let dir = &r.grant.dir;
    let dev_of = |p: &str| {
        dir.symlink_metadata(mend_plan::names::decode(if p.is_empty() { "." } else { p }))
            .ok()
            .filter(|m| m.is_dir())
            .map(|m| m.dev())
    };
    let root = dev_of("").context("stat the grant's root")?;
    // The nearest directory that exists at or above the path's parent.
    let mut at = r.rel.rsplit_once('/').map_or("", |(p, _)| p);
    let dev = loop {
        if let Some(d) = dev_of(at) {
            break d;
        }
        if at.is_empty() {
            return Ok(String::new());
        }
        at = at.rsplit_once('/').map_or("", |(p, _)| p);
    };
    if dev == root {
        return Ok(String::new());
    }
    let mut prefix = String::new();
    for part in at.split('/') {
        if !prefix.is_empty() {
            prefix.push('/');
        }
        prefix.push_str(part);
        if dev_of(&prefix) == Some(dev) {
            return Ok(prefix);
        }
    }
    Ok(at.to_string())
}

/// Volumes mounted below `root`, relative to it (from /proc/self/mountinfo).
pub fn mounts_below(root: &Path) -> Vec<String> {
    let Ok(root) = std::fs::canonicalize(root) else {
        return Vec::new();
    };
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out: Vec<String> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mount)
        .filter_map(|m| {
            Path::new(&m)
                .strip_prefix(&root)
                .ok()
                .map(|p| p.to_string_lossy().into_owned())
        })
        .filter(|p| !p.is_empty())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// mountinfo writes space, tab, newline and backslash as `\040` and such.
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Make everything written on the filesystem of `dir` durable: one syncfs
/// for a copy or extract of 20,000 files instead of 20,000 fsyncs.
pub fn sync_filesystem(dir: &Dir) -> Result<()> {
    // cap-std may hold directories as O_PATH, which syncfs refuses (EBADF):
    // open the directory itself for reading.
    let fd = dir
        .open(".")
        .context("open a directory to sync its filesystem")?;
    mend_faults::fsync().context("sync the filesystem")?;
    rustix::fs::syncfs(&fd).context("sync the filesystem")?;
    Ok(())
}

pub fn set_times(dir: &Dir, path: &Path, secs: i64, nanos: u32) -> Result<()> {
    let times = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: secs,
            tv_nsec: nanos as _,
        },
    };
    // The kernel would follow a symlink in the parent part of `path` (even
    // one swapped in since the path was checked): open the parent through
    // cap-std, which stays beneath the grant, and name only the last part.
    let (parent, leaf) = match (path.parent(), path.file_name()) {
        (Some(p), Some(leaf)) if !p.as_os_str().is_empty() => (Some(p), Path::new(leaf)),
        _ => (None, path),
    };
    let parent = match parent {
        Some(p) => dir.open_dir(p)?,
        None => dir.try_clone()?,
    };
    rustix::fs::utimensat(&parent, leaf, &times, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}

/// Record the modification time of `rel` ("" for the grant's root).
pub fn dir_times(dir: &Dir, grant: &str, rel: &str) -> Result<DirTimes> {
    use cap_std::fs::MetadataExt as _;
    let path = mend_plan::names::decode(if rel.is_empty() { "." } else { rel });
    let (secs, nanos) = match dir.metadata(&path) {
        Ok(md) => (md.mtime(), md.mtime_nsec() as u32),
        // Created by the action itself: nothing to put back.
        Err(_) => (-1, 0),
    };
    Ok(DirTimes {
        grant: grant.to_string(),
        rel: rel.to_string(),
        secs,
        nanos,
    })
}

/// Put a directory's modification time back (when it still exists).
pub fn restore_times(grants: &Grants, t: &DirTimes) -> Result<()> {
    let Some(g) = grants.get(&t.grant) else {
        return Ok(());
    };
    let path = mend_plan::names::decode(if t.rel.is_empty() { "." } else { &t.rel });
    if t.secs < 0 || g.dir.metadata(&path).is_err() {
        return Ok(());
    }
    set_times(&g.dir, &path, t.secs, t.nanos)
        .with_context(|| format!("restore the time of {}/{}", t.grant, t.rel))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt as _;

    /// A symlink in the parent part of a path (swapped in after the path was
    /// checked) must not let set_times reach outside the directory.
    #[test]
    fn set_times_never_follows_a_symlink_in_the_parent_part() {
        let tmp = tempfile::tempdir().unwrap();
        let (grant, outside) = (tmp.path().join("grant"), tmp.path().join("outside"));
        std::fs::create_dir_all(outside.join("sub")).unwrap();
        std::fs::create_dir_all(&grant).unwrap();
        std::os::unix::fs::symlink(&outside, grant.join("sw")).unwrap();
        let before = std::fs::metadata(outside.join("sub")).unwrap().mtime();
        let dir = Dir::open_ambient_dir(&grant, cap_std::ambient_authority()).unwrap();
        assert!(set_times(&dir, Path::new("sw/sub"), 1, 0).is_err());
        assert_eq!(
            std::fs::metadata(outside.join("sub")).unwrap().mtime(),
            before
        );
        // Inside the grant it works, on the last component, link or not.
        std::fs::create_dir_all(grant.join("real/sub")).unwrap();
        set_times(&dir, Path::new("real/sub"), 1, 0).unwrap();
        assert_eq!(
            std::fs::metadata(grant.join("real/sub")).unwrap().mtime(),
            1
        );
        set_times(&dir, Path::new("sw"), 2, 0).unwrap();
        assert_eq!(
            std::fs::symlink_metadata(grant.join("sw")).unwrap().mtime(),
            2
        );
    }
}
