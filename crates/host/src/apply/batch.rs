//! What the actions of one journal batch share: an open handle on the
//! directory the last removal was in, this run's trash folder per grant, and
//! the times of the directories already recorded. A cull of 50,000 files in a
//! few hundred directories then costs one system call per file, as `find
//! -delete` does, instead of a path walk, a stat and an open per file.
//!
//! A `Batch` lives for one batch (at most a few hundred actions, journaled
//! in one commit) and is dropped before the next: no handle outlives the
//! intent it was opened for. Every handle is opened through the grant's
//! cap-std `Dir` (resolution stays beneath the grant), and only single path
//! components are used relative to it, so a handle cannot reach further than
//! the path it stands for.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context as _, Result};
use cap_std::fs::Dir;
use rustix::io::Errno;

use super::{DirTimes, Key, TRASH, dir_times};
use crate::grants::Resolved;
use mend_plan::Expect;

#[derive(Default)]
pub struct Batch {
    /// (grant, parent rel) and a handle on that directory.
    parent: Option<(String, String, Dir)>,
    /// Per grant: `.mend-trash/RUN`.
    trash: HashMap<String, Dir>,
    /// Directory times captured for this batch, by (grant, rel).
    times: HashMap<(String, String), DirTimes>,
}

impl Batch {
    /// Let go of the directory handle: the next action may rename or
    /// recreate the directory it stands for.
    pub fn forget(&mut self) {
        self.parent = None;
    }

    /// The modification time of `rel` in `r`'s grant, read once per batch:
    /// every intent of a batch is prepared before any of them is performed,
    /// so all see the same times.
    pub fn dir_times(&mut self, r: &Resolved, rel: &str) -> Result<DirTimes> {
        let key = (r.grant.name.clone(), rel.to_string());
        if let Some(t) = self.times.get(&key) {
            return Ok(t.clone());
        }
        let t = dir_times(&r.grant.dir, &r.grant.name, rel)?;
        self.times.insert(key, t.clone());
        Ok(t)
    }

    fn parent<'r>(&mut self, r: &Resolved<'r>) -> std::io::Result<(&Dir, Cow<'r, Path>)> {
        open_parent(&mut self.parent, r)
    }

    /// Why the removal of `r` must not happen: its path no longer holds
    /// what the plan's check saw (a live service rewrote the file, put a
    /// directory in its place, or added to a directory the plan emptied).
    /// None when it does, or when nothing is there (the removal then finds
    /// nothing to do).
    pub fn changed(&mut self, r: &Resolved, expect: Expect) -> Result<Option<String>> {
        if r.rel.is_empty() {
            return Ok(None);
        }
        let st = match open_parent(&mut self.parent, r) {
            Ok((dir, leaf)) => {
                rustix::fs::statat(dir, &*leaf, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("look at {}/{}", r.grant.name, r.rel)),
        };
        let st = match st {
            Ok(st) => st,
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => {
                return Err(std::io::Error::from(e))
                    .with_context(|| format!("look at {}/{}", r.grant.name, r.rel));
            }
        };
        let is_dir =
            rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory;
        Ok(match expect {
            Expect::File { size, mtime_ns } => {
                let now_size = st.st_size.max(0) as u64;
                let now_mtime = mend_plan::mtime_ns(st.st_mtime, st.st_mtime_nsec as i64);
                if is_dir {
                    Some("it is a directory now, not the file the plan showed".to_string())
                } else if (now_size, now_mtime) != (size, mtime_ns) {
                    Some(format!(
                        "it changed since the plan ({} then, {} now{})",
                        mend_human::human_bytes(size),
                        mend_human::human_bytes(now_size),
                        if now_mtime != mtime_ns {
                            ", modified since"
                        } else {
                            ""
                        }
                    ))
                } else {
                    None
                }
            }
            Expect::Absent => Some("something is there now, where the plan saw nothing".into()),
            Expect::Tree {
                bytes,
                files,
                digest,
            } => {
                if !is_dir {
                    Some("it is not a directory now, as it was when the plan was made".to_string())
                } else {
                    super::tree::changed(r, bytes, files, digest)
                }
            }
            Expect::Dir { bytes, files } => {
                if !is_dir {
                    Some("it is not a directory now, as it was when the plan was made".to_string())
                } else {
                    let (b, f) = crate::space::tree_size(&r.grant.dir, &r.rel_path());
                    ((b, f) != (bytes, files)).then(|| {
                        format!(
                            "it holds {} of {} now, where the plan left {} of {}",
                            mend_human::files_text(f),
                            mend_human::human_bytes(b),
                            mend_human::files_text(files),
                            mend_human::human_bytes(bytes)
                        )
                    })
                }
            }
        })
    }

    /// Unlink a file or symlink. `Some(removed)` when done here, `None` when
    /// the path is something else (a directory) or its parent cannot be
    /// opened: the caller's general path handles those and words the error.
    pub fn unlink_file(&mut self, r: &Resolved) -> Result<Option<bool>> {
        if r.rel.is_empty() {
            return Ok(None);
        }
        let (dir, leaf) = match self.parent(r) {
            Ok(p) => p,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Some(false)),
            Err(_) => return Ok(None),
        };
        match rustix::fs::unlinkat(dir, &*leaf, rustix::fs::AtFlags::empty()) {
            Ok(()) => Ok(Some(true)),
            Err(Errno::NOENT) => Ok(Some(false)),
            Err(_) => {
                self.parent = None;
                Ok(None)
            }
        }
    }

    /// Move a path into this run's trash as `STEP-SEQ`, never over an entry
    /// already there (a resumed run finds its own earlier move). `Some(true)`
    /// when it is in the trash, `Some(false)` when neither it nor its trash
    /// entry exists, `None` to leave it to the general path.
    pub fn trash_file(&mut self, r: &Resolved, key: &Key) -> Result<Option<bool>> {
        if r.rel.is_empty() {
            return Ok(None);
        }
        let name = key.leaf();
        if !self.trash.contains_key(&r.grant.name) {
            let rel = format!("{TRASH}/{}", key.run);
            r.grant
                .dir
                .create_dir_all(&rel)
                .with_context(|| format!("create {}/{rel}", r.grant.name))?;
            let dir = r
                .grant
                .dir
                .open_dir(&rel)
                .with_context(|| format!("open {}/{rel}", r.grant.name))?;
            self.trash.insert(r.grant.name.clone(), dir);
        }
        let trash = &self.trash[&r.grant.name];
        let (dir, leaf) = match open_parent(&mut self.parent, r) {
            Ok(p) => p,
            Err(_) => return Ok(None),
        };
        match rustix::fs::renameat_with(
            dir,
            &*leaf,
            trash,
            name.as_str(),
            rustix::fs::RenameFlags::NOREPLACE,
        ) {
            Ok(()) => Ok(Some(true)),
            // The path is still there and so is an entry by this action's
            // trash name: not made by it (a resumed move finds the path
            // gone, below), so never taken for it.
            Err(Errno::EXIST) => anyhow::bail!(
                "cannot remove {}/{}: its trash entry {}/{TRASH}/{}/{name} already exists, and mend never takes another entry for its own",
                r.grant.name,
                r.rel,
                r.grant.name,
                key.run
            ),
            Err(Errno::NOENT) => Ok(Some(
                rustix::fs::statat(trash, name.as_str(), rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
                    .is_ok(),
            )),
            Err(_) => {
                self.parent = None;
                Ok(None)
            }
        }
    }
}

/// The directory holding `r`, opened once for consecutive paths in it, and
/// `r`'s last component (a batch's removals and a rollback's undos).
pub(super) fn open_parent<'s, 'r>(
    slot: &'s mut Option<(String, String, Dir)>,
    r: &Resolved<'r>,
) -> std::io::Result<(&'s Dir, Cow<'r, Path>)> {
    let (parent, leaf) = r.rel.rsplit_once('/').unwrap_or(("", r.rel));
    let hit = matches!(slot, Some((g, p, _)) if *g == r.grant.name && p == parent);
    if !hit {
        *slot = None;
        let dir = if parent.is_empty() {
            r.grant.dir.try_clone()?
        } else {
            r.grant.dir.open_dir(mend_plan::names::decode(parent))?
        };
        *slot = Some((r.grant.name.clone(), parent.to_string(), dir));
    }
    let dir = &slot.as_ref().expect("just set").2;
    Ok((dir, mend_plan::names::decode(leaf)))
}
