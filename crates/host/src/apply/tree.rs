//! A directory removed whole ([`mend_plan::Seen::Tree`]): read again as the
//! walk that planned it read it, so it goes only if every entry below it is
//! still what the plan showed. A cull that empties a thousand folders then
//! moves a thousand folders into the trash, not a million files: on an
//! overlay (a rehearsal) each moved file is a copy-up and a whiteout.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use cap_std::fs::{Dir, MetadataExt as _};

use crate::walked::Tree;

/// One entry read below the tree's top: its path relative to the top, and
/// whether it is a directory.
pub struct Listed {
    pub rel: PathBuf,
    pub dir: bool,
}

/// What is below the directory `rel` of `dir`, summed as
/// [`crate::walked::Walked`] sums a walk (`path` is the directory's path as
/// the plan writes it), and every entry. `None` when anything below cannot
/// be read or is mend's own (a trash or staging folder): such a tree is not
/// what a walk showed, and is never removed whole.
pub fn read(dir: &Dir, rel: &Path, path: &str) -> Option<(Tree, Vec<Listed>)> {
    let top = dir.open_dir(rel).ok()?;
    let mut tree = Tree::default();
    let mut listed = Vec::new();
    let mut stack = vec![(top, PathBuf::new(), path.to_string())];
    while let Some((d, below, prefix)) = stack.pop() {
        for e in d.entries().ok()? {
            let e = e.ok()?;
            let raw = e.file_name();
            let name = mend_plan::names::encode(&raw);
            if crate::grants::host_owned(&name).is_some() {
                return None;
            }
            let md = e.metadata().ok()?;
            let full = format!("{prefix}/{name}");
            let is_dir = md.is_dir();
            // As the walk reports a time: one before the epoch reads as 0.
            let ns = if md.mtime() < 0 {
                0
            } else {
                mend_plan::mtime_ns(md.mtime(), md.mtime_nsec())
            };
            tree.digest = tree.digest.wrapping_add(mend_plan::tree_entry(
                full.as_bytes(),
                is_dir,
                md.len(),
                ns,
            ));
            let rel = below.join(&raw);
            if is_dir {
                stack.push((e.open_dir().ok()?, rel.clone(), full));
            } else {
                tree.bytes += md.len();
                tree.files += 1;
            }
            listed.push(Listed { rel, dir: is_dir });
        }
    }
    Some((tree, listed))
}

/// Why the tree at `r` is not the one the plan showed; None when it is.
pub fn changed(r: &crate::grants::Resolved, bytes: u64, files: u64, digest: u64) -> Option<String> {
    let path = format!("{}/{}", r.grant.name, r.rel);
    differs(
        read(&r.grant.dir, &r.rel_path(), &path).map(|(t, _)| t),
        bytes,
        files,
        digest,
    )
}

/// Why a tree read as `now` (`None`: not readable whole) is not the one
/// the plan showed.
fn differs(now: Option<Tree>, bytes: u64, files: u64, digest: u64) -> Option<String> {
    match now {
        None => Some(
            "part of it cannot be read now, or holds mend's own trash or staging: it is removed whole only as the plan saw it".into(),
        ),
        Some(t) if t.digest == digest && (t.bytes, t.files) == (bytes, files) => None,
        Some(t) => Some(if (t.bytes, t.files) == (bytes, files) {
            format!(
                "a file in it was rewritten or replaced since the plan ({} of {} then and now)",
                mend_human::files_text(files),
                mend_human::human_bytes(bytes)
            )
        } else {
            format!(
                "it holds {} of {} now, where the plan saw {} of {}",
                mend_human::files_text(t.files),
                mend_human::human_bytes(t.bytes),
                mend_human::files_text(files),
                mend_human::human_bytes(bytes)
            )
        }),
    }
}

/// What [`remove_exactly`] did.
pub enum Removed {
    /// Gone, or nothing was there.
    Whole,
    /// Left in place, and why; `some` when its planned entries were
    /// removed and only the folder stays (something was put in it).
    Left { why: String, some: bool },
}

/// Remove the tree at `r` (a disposable grant's: nothing kept) only as the
/// plan saw it: each entry read once, the whole compared, then exactly
/// those entries removed, deepest first. Something put inside meanwhile is
/// never removed: its folder stays, and the removal says so.
pub fn remove_exactly(
    r: &crate::grants::Resolved,
    key: &mend_plan::Key,
    (bytes, files, digest): (u64, u64, u64),
) -> Result<Removed> {
    let path = format!("{}/{}", r.grant.name, r.rel);
    let top = r.rel_path();
    match r.grant.dir.symlink_metadata(&top) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Removed::Whole),
        Ok(md) if !md.is_dir() => {
            return Ok(Removed::Left {
                why: "it is not a directory now, as it was when the plan was made".into(),
                some: false,
            });
        }
        _ => {}
    }
    // One read, for the comparison and the removal: on an overlay (a
    // rehearsal) each stat is a lookup in two layers.
    let (now, listed) = read(&r.grant.dir, &top, &path).unzip();
    if let Some(why) = differs(now, bytes, files, digest) {
        return Ok(Removed::Left { why, some: false });
    }
    let listed = listed.unwrap_or_default();
    // Found as the plan saw it, not yet removed: where a test puts a file
    // in, as a live service would.
    mend_faults::pause_point("whole", key.step, key.seq);
    for l in listed.iter().filter(|l| !l.dir) {
        let p = top.join(&l.rel);
        match r.grant.dir.remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("remove {path}/{}", l.rel.display())),
        }
    }
    // Deepest first: a directory's entries were listed after it.
    let dirs = listed
        .iter()
        .rev()
        .filter(|l| l.dir)
        .map(|l| top.join(&l.rel));
    for d in dirs.chain(std::iter::once(top.to_path_buf())) {
        match r.grant.dir.remove_dir(&d) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => {
                let at = d.strip_prefix(&top).unwrap_or(&d);
                let folder = if at.as_os_str().is_empty() {
                    String::new()
                } else {
                    format!(" (in {})", at.display())
                };
                return Ok(Removed::Left {
                    why: format!(
                        "something was put in it while its planned files were removed{folder}; the folder and what is new in it stay"
                    ),
                    some: true,
                });
            }
            Err(e) => return Err(e).with_context(|| format!("remove the folder {path}")),
        }
    }
    Ok(Removed::Whole)
}
