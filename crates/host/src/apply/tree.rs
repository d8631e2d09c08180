//! A directory removed whole ([`mend_plan::Seen::Tree`]): read again as the
//! walk that planned it read it, so it goes only if every entry below it is
//! still what the plan showed. A cull that empties a thousand folders then
//! moves a thousand folders into the trash, not a million files: on an
//! overlay (a rehearsal) each moved file is a copy-up and a whiteout.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use cap_std::fs::{Dir, MetadataExt as _};

use crate::cow::skip::GRAVEYARD;
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
///
/// `hide`: the grant is a rehearsal's overlay. The folder, once checked, is
/// renamed into the [`GRAVEYARD`] instead: overlayfs records that as one
/// whiteout and a redirect, where removing it costs a whiteout per file (a
/// rehearsal of a disposable cull of a million files spent most of its
/// time there). Nothing else writes in a rehearsal's private overlay
/// between the check and the rename. A folder on another filesystem (a
/// volume mounted inside) cannot be renamed there and is removed as in a
/// run.
pub fn remove_exactly(
    r: &crate::grants::Resolved,
    key: &mend_plan::Key,
    (bytes, files, digest): (u64, u64, u64),
    hide: bool,
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
    if hide && to_graveyard(r, key, &top).with_context(|| format!("move {path} out of sight"))? {
        return Ok(Removed::Whole);
    }
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

/// Rename the folder `top` into the graveyard; false when it is on another
/// filesystem than the grant's root.
fn to_graveyard(r: &crate::grants::Resolved, key: &mend_plan::Key, top: &Path) -> Result<bool> {
    let at = Path::new(GRAVEYARD).join(key.run);
    r.grant.dir.create_dir_all(&at)?;
    match r.grant.dir.rename(top, &r.grant.dir, at.join(key.leaf())) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grants::Grants;

    fn grants(root: &Path) -> Grants {
        Grants::one_for_tests(root, true)
    }

    fn folder(root: &Path, name: &str) {
        std::fs::create_dir_all(root.join(name).join("b")).unwrap();
        std::fs::write(root.join(name).join("a"), "a").unwrap();
        std::fs::write(root.join(name).join("b/c"), "cc").unwrap();
    }

    const KEY: mend_plan::Key = mend_plan::Key {
        run: "r1",
        step: 0,
        seq: 4,
    };

    /// Hidden (a rehearsal's overlay): the checked folder is renamed into
    /// the graveyard whole, under the run and the action's name; a folder
    /// changed since the plan stays where it is, as in a run.
    #[test]
    fn a_hidden_folder_goes_to_the_graveyard_whole_and_only_as_planned() {
        let tmp = tempfile::tempdir().unwrap();
        folder(tmp.path(), "gone");
        folder(tmp.path(), "changed");
        let g = grants(tmp.path());
        let seen = |rel: &str| {
            let (t, _) = read(
                &g.iter().next().unwrap().dir,
                Path::new(rel),
                &format!("data/{rel}"),
            )
            .unwrap();
            (t.bytes, t.files, t.digest)
        };
        let (gone, changed) = (seen("gone"), seen("changed"));
        std::fs::write(tmp.path().join("changed/new"), "n").unwrap();

        let r = g.write("data/gone").unwrap();
        assert!(matches!(
            remove_exactly(&r, &KEY, gone, true).unwrap(),
            Removed::Whole
        ));
        assert!(!tmp.path().join("gone").exists());
        let at = tmp.path().join(GRAVEYARD).join("r1/0-4");
        assert_eq!(std::fs::read_to_string(at.join("b/c")).unwrap(), "cc");
        assert_eq!(std::fs::read_to_string(at.join("a")).unwrap(), "a");

        let r = g.write("data/changed").unwrap();
        let left = remove_exactly(&r, &KEY, changed, true).unwrap();
        assert!(matches!(left, Removed::Left { some: false, .. }));
        assert!(tmp.path().join("changed/b/c").exists());
    }

    /// Not hidden (a run): every file and folder unlinked, no graveyard.
    #[test]
    fn a_folder_in_a_run_is_unlinked_and_no_graveyard_is_made() {
        let tmp = tempfile::tempdir().unwrap();
        folder(tmp.path(), "gone");
        let g = grants(tmp.path());
        let (t, _) = read(
            &g.iter().next().unwrap().dir,
            Path::new("gone"),
            "data/gone",
        )
        .unwrap();
        let r = g.write("data/gone").unwrap();
        let removed = remove_exactly(&r, &KEY, (t.bytes, t.files, t.digest), false).unwrap();
        assert!(matches!(removed, Removed::Whole));
        assert!(!tmp.path().join("gone").exists());
        assert!(!tmp.path().join(mend_plan::TRASH).exists());
    }
}
