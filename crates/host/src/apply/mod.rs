//! Performing and undoing actions with cap-std, inside their grants.
//!
//! Every `perform` is safe to repeat: a run killed between journaling an
//! action as intended and as done performs it again on resume, and each
//! operation first looks at the world (the trash entry exists, the
//! destination is in place) and finishes only what is missing. What it needs
//! to tell (the state before) is captured by [`prepare`] and journaled with
//! the intent.

mod archive;
mod attrs;
mod batch;
mod copy;
mod extract;
mod fsops;
mod tar_frame;
#[cfg(test)]
mod tar_roundtrip;
pub(crate) mod tree;
mod unbatch;

use std::time::Duration;

use anyhow::{Context as _, Result, bail};

use mend_plan::{Action, Call, Expect, Planned};

use crate::commands::CommandPolicy;
use crate::grants::{Grants, OwnedPath, Resolved};
pub use attrs::id_of;
pub use batch::Batch;
pub use fsops::{copy_entry as copy_between, dir_times, restore_times};
pub use mend_plan::{DirTimes, Key, Pre, STAGING, TRASH, Undo, under};
pub use unbatch::Unbatch;

/// What apply needs: the grants and commands of the step, the timeout for
/// commands, and the free-space headroom for copies.
pub struct ApplyCtx<'a> {
    pub grants: &'a Grants,
    pub commands: &'a CommandPolicy,
    pub step: &'a str,
    pub timeout: Duration,
    /// Told the bytes a copy or extract has written so far, as it goes.
    pub progress: &'a (dyn Fn(u64) + Sync),
    /// Told what an action made that the journal should keep (an
    /// archive's sha256), one line each.
    pub note: &'a dyn Fn(String),
    /// The write grants are a rehearsal's overlays: a disposable folder
    /// removed whole goes into the graveyard in one rename
    /// ([`tree::remove_exactly`]).
    pub on_overlay: bool,
}

fn writable<'a>(cx: &ApplyCtx<'a>, path: &'a str) -> Result<Resolved<'a>> {
    cx.grants
        .write(path)
        .map_err(|e| anyhow::anyhow!("step `{}`: {e}", cx.step))
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or(path, |(p, _)| p)
}

/// Capture what undo and a repeated perform will need to know.
pub fn prepare(cx: &ApplyCtx, action: &Action) -> Result<Pre> {
    prepare_in(&mut Batch::default(), cx, action)
}

/// [`prepare`], sharing what the actions of one batch have in common.
pub fn prepare_in(batch: &mut Batch, cx: &ApplyCtx, action: &Action) -> Result<Pre> {
    let g = cx.grants;
    let mut pre = Pre::default();
    let mut dirs = |paths: &[&str]| -> Result<()> {
        for p in paths {
            let r = g.write(p).map_err(|e| anyhow::anyhow!("{e}"))?;
            pre.dirs.push(batch.dir_times(&r, parent(r.rel))?);
        }
        Ok(())
    };
    match action {
        // A disposable removal is never undone: no times to put back
        // (putting them back would make a changed tree look untouched).
        Action::Remove { path }
            if g.get(crate::grants::split(path)?.0)
                .is_some_and(|d| d.disposable) => {}
        Action::Remove { path } => dirs(&[path])?,
        Action::CreateDir { path } | Action::WriteFile { path, .. } => dirs(&[path])?,
        Action::Rename { path, to } => dirs(&[path, to])?,
        Action::Swap { path, with } => dirs(&[path, with])?,
        Action::Copy { path, .. } | Action::Extract { path, .. } | Action::Archive { path, .. } => {
            dirs(&[path])?
        }
        // Owners and modes change no directory's time.
        Action::SetOwner { .. } | Action::SetMode { .. } => {}
        Action::Exec {
            creates: Some(c), ..
        } => dirs(&[c])?,
        Action::Exec { .. } => {}
    }
    match action {
        Action::WriteFile { path, .. }
        | Action::Copy { path, .. }
        | Action::Extract { path, .. }
        | Action::Archive { path, .. }
        | Action::Exec {
            creates: Some(path),
            ..
        } => {
            let r = g.write(path).map_err(|e| anyhow::anyhow!("{e}"))?;
            pre.existed = fsops::exists(&r)?;
        }
        Action::CreateDir { path } => {
            let r = g.write(path).map_err(|e| anyhow::anyhow!("{e}"))?;
            pre.existed = fsops::exists(&r)?;
            // The missing directories, outermost first.
            let mut missing = Vec::new();
            let mut rel = r.rel;
            while !rel.is_empty()
                && !fsops::exists(&Resolved {
                    grant: r.grant,
                    rel,
                })?
            {
                missing.push(format!("{}/{}", r.grant.name, rel));
                rel = rel.rsplit_once('/').map_or("", |(p, _)| p);
            }
            missing.reverse();
            pre.created = missing;
        }
        Action::Swap { path, .. } => {
            let r = g.write(path).map_err(|e| anyhow::anyhow!("{e}"))?;
            pre.ino = Some(fsops::ino(&r)?);
        }
        Action::Rename { path, .. } => {
            let r = g.write(path).map_err(|e| anyhow::anyhow!("{e}"))?;
            if fsops::exists(&r)? {
                pre.ino = Some(fsops::ino(&r)?);
            }
        }
        _ => {}
    }
    pre.fresh = true;
    Ok(pre)
}

/// Perform an action (again, if a crash left it half done). Returns its undo.
pub fn perform(cx: &ApplyCtx, key: &Key, action: &Action, pre: &Pre) -> Result<Undo> {
    perform_in(&mut Batch::default(), cx, key, action, pre)
}

/// [`perform_in`] for an action of a plan: a removal happens only if its
/// path still holds what the plan's check saw ([`Planned::expect`]); one
/// that changed since is left in place, said (a note the run prints and
/// journals), and done as nothing: mend never removes what it did not
/// show.
pub fn perform_planned_in(
    batch: &mut Batch,
    cx: &ApplyCtx,
    key: &Key,
    planned: &Planned,
    pre: &Pre,
) -> Result<Undo> {
    if let Action::Remove { path } = &planned.action {
        // Resolved through the grants once, for the check and the removal.
        let r = writable(cx, path)?;
        // A disposable folder removed whole is read once, by the removal.
        if let (
            true,
            Some(Expect::Tree {
                bytes,
                files,
                digest,
            }),
        ) = (r.grant.disposable, planned.expect())
        {
            mend_faults::action(key.step)?;
            batch.forget();
            return match tree::remove_exactly(&r, key, (bytes, files, digest), cx.on_overlay)
                .with_context(|| format!("step `{}`", cx.step))?
            {
                tree::Removed::Whole => Ok(Undo::Irreversible),
                tree::Removed::Left { why, some } => {
                    (cx.note)(format!("step `{}`: left {path} in place: {why}", cx.step));
                    Ok(if some {
                        Undo::Irreversible
                    } else {
                        Undo::Nothing
                    })
                }
            };
        }
        if let Some(expect) = planned.expect()
            && let Some(why) = batch.changed(&r, expect)?
        {
            (cx.note)(format!("step `{}`: left {path} in place: {why}", cx.step));
            return Ok(Undo::Nothing);
        }
        mend_faults::action(key.step)?;
        let whole = match planned.expect() {
            Some(Expect::Tree { digest, .. }) => Some(digest),
            _ => None,
        };
        return remove_resolved(batch, cx, key, path, r, whole);
    }
    if let (Action::WriteFile { path, contents, .. }, Some(expect)) =
        (&planned.action, planned.expect())
    {
        let r = writable(cx, path)?;
        if let Some(why) = fsops::written_over_changed(&r, expect, contents)? {
            // Someone's edit would go to the trash, purged at commit: the
            // step stops, and the file stays as they left it.
            return Err(Refused(format!(
                "not written: {why}; someone changed it after the plan: look at it, then run the runbook again to plan over what is there now"
            ))
            .into());
        }
    }
    perform_in(batch, cx, key, &planned.action, pre)
}

/// A removal whose path is already resolved through the grants.
///
/// `whole`: a directory the plan removes whole into the trash, by the
/// digest of its tree ([`mend_plan::Seen::Tree`]): read again in the
/// trash, and put back if anything in it is not what the plan saw
/// (something put in between the check and the move). A disposable one
/// goes by [`tree::remove_exactly`] instead.
fn remove_resolved(
    batch: &mut Batch,
    cx: &ApplyCtx,
    key: &Key,
    path: &str,
    r: Resolved,
    whole: Option<u64>,
) -> Result<Undo> {
    if whole.is_some() {
        mend_faults::pause_point("whole", key.step, key.seq);
        batch.forget();
    }
    if r.grant.disposable {
        if batch.unlink_file(&r)?.is_none() {
            fsops::remove_if_exists(&r)?;
        }
        return Ok(Undo::Irreversible);
    }
    let undo = Undo::Restore {
        trash: format!("{}/{}", r.grant.name, key.trash()),
        path: path.to_string(),
    };
    match batch.trash_file(&r, key)? {
        Some(true) => {
            if let Some(digest) = whole {
                batch.forget();
                moved_whole(cx, &r, key, path, digest)?;
            }
            return Ok(undo);
        }
        Some(false) => return Ok(Undo::Nothing),
        None => {}
    }
    // The general path: into the trash of the filesystem the path
    // is on (the grant's, or a volume's mounted in it).
    let trash = OwnedPath {
        grant: r.grant,
        rel: under(&fsops::fs_top(&r)?, key.trash()),
    };
    let undo = Undo::Restore {
        trash: trash.display(),
        path: path.to_string(),
    };
    match (fsops::exists(&trash.borrow())?, fsops::exists(&r)?) {
        // Moved before a crash.
        (true, false) => return Ok(undo),
        // The trash entry is this action's alone; one that is there
        // while the path is too was not made by it.
        (true, true) => bail!(
            "step `{}`: cannot remove {path}: its trash entry {} already exists, and mend never takes another entry for its own",
            cx.step,
            trash.display()
        ),
        (false, false) => return Ok(Undo::Nothing),
        (false, true) => {}
    }
    fsops::ensure_parent(&trash.borrow())?;
    fsops::rename_noreplace(&r, &trash.borrow())?;
    Ok(undo)
}

/// A tree moved whole into the trash, read there as it was read at its
/// path: anything in it the plan did not see (put in between the check and
/// the move) sends it back, and the removal is refused.
fn moved_whole(cx: &ApplyCtx, r: &Resolved, key: &Key, path: &str, digest: u64) -> Result<()> {
    let trash = std::path::PathBuf::from(key.trash());
    // Read with the names it had at its path, as the check read it.
    let at = format!("{}/{}", r.grant.name, r.rel);
    let same = tree::read(&r.grant.dir, &trash, &at).is_some_and(|(t, _)| t.digest == digest);
    if same {
        return Ok(());
    }
    // Back, never over anything: a folder made at its path meanwhile keeps
    // the trash entry where it is, and the rollback words the conflict.
    let moved = OwnedPath {
        grant: r.grant,
        rel: key.trash(),
    };
    match fsops::rename_noreplace(&moved.borrow(), r) {
        Ok(()) => Err(Refused(format!(
            "step `{}`: left {path} in place: something in it changed between the check and the removal",
            cx.step
        ))
        .into()),
        Err(e) => Err(e.context(format!(
            "step `{}`: {path} changed between the check and its move into the trash, and could not be put back: it is in {}/{}",
            cx.step,
            r.grant.name,
            key.trash()
        ))),
    }
}

/// [`perform`], keeping directory handles open across the actions of one
/// batch: culling a directory of many files opens it once.
pub fn perform_in(
    batch: &mut Batch,
    cx: &ApplyCtx,
    key: &Key,
    action: &Action,
    pre: &Pre,
) -> Result<Undo> {
    mend_faults::action(key.step)?;
    let g = cx.grants;
    let w = |p| writable(cx, p);
    if !matches!(action, Action::Remove { .. }) {
        batch.forget();
    }
    match action {
        Action::Remove { path } => {
            let r = w(path)?;
            remove_resolved(batch, cx, key, path, r, None)
        }
        Action::Rename { path, to } => {
            let a = w(path)?;
            let b = w(to)?;
            let back = Undo::RenameBack {
                from: to.clone(),
                to: path.clone(),
            };
            if renamed(&a, &b, pre)? {
                // Done before a crash.
                return Ok(back);
            }
            if fsops::exists(&b)? {
                bail!(
                    "step `{}`: cannot rename {path} to {to}: {to} already exists",
                    cx.step
                );
            }
            fsops::ensure_parent(&b)?;
            fsops::rename(&a, &b)?;
            Ok(back)
        }
        Action::Swap { path, with } => {
            let a = w(path)?;
            let b = w(with)?;
            if pre.ino.is_some() && fsops::ino(&a)? != pre.ino.unwrap_or_default() {
                // Already exchanged before a crash.
                return Ok(Undo::SwapBack {
                    a: path.clone(),
                    b: with.clone(),
                });
            }
            fsops::exchange(&a, &b)?;
            Ok(Undo::SwapBack {
                a: path.clone(),
                b: with.clone(),
            })
        }
        Action::CreateDir { path } => {
            let r = w(path)?;
            r.grant
                .dir
                .create_dir_all(r.rel_path())
                .with_context(|| format!("create {path}"))?;
            let mut dirs = pre.created.clone();
            dirs.reverse();
            Ok(if dirs.is_empty() {
                Undo::Nothing
            } else {
                Undo::RemoveDirs { dirs }
            })
        }
        Action::WriteFile {
            path,
            contents,
            mode,
        } => {
            let r = w(path)?;
            let top = fsops::fs_top(&r)?;
            let trash = OwnedPath {
                grant: r.grant,
                rel: under(&top, key.trash()),
            };
            let staging = OwnedPath {
                grant: r.grant,
                rel: under(&top, key.staging()),
            };
            if pre.existed && !fsops::exists(&trash.borrow())? {
                // Keep the old content by a second name: the rename below
                // then replaces the file atomically.
                fsops::ensure_parent(&trash.borrow())?;
                r.grant
                    .dir
                    .hard_link(r.rel_path(), &r.grant.dir, trash.borrow().rel_path())
                    .with_context(|| format!("keep old {path} for undo"))?;
            }
            let mode = match mode {
                Some(m) => *m,
                None if pre.existed => fsops::mode(&trash.borrow()).unwrap_or(0o644),
                None => 0o644,
            };
            fsops::ensure_parent(&staging.borrow())?;
            fsops::write_synced(&staging.borrow(), contents, mode)?;
            fsops::ensure_parent(&r)?;
            fsops::rename(&staging.borrow(), &r)?;
            Ok(if pre.existed {
                Undo::ReplaceBack {
                    trash: trash.display(),
                    path: path.clone(),
                }
            } else {
                Undo::RemoveCreated { path: path.clone() }
            })
        }
        Action::Copy { from, path }
        | Action::Extract {
            archive: from,
            path,
            ..
        } => {
            let src = g
                .read(from)
                .map_err(|e| anyhow::anyhow!("step `{}`: {e}", cx.step))?;
            let dst = w(path)?;
            if made_before(&dst, pre, cx.step, path, "copies and extracts")? {
                return Ok(Undo::RemoveCreated { path: path.clone() });
            }
            staged(&dst, key, |staging| match action {
                Action::Extract { format, .. } => {
                    let (need, _) = crate::space::tree_size(&src.grant.dir, &src.rel_path());
                    fsops::check_space(&dst, need, path)?;
                    extract::extract(&src, staging, *format, cx.progress)
                }
                _ => {
                    // In blocks and inodes: the plan's count (made moments
                    // ago in this process) against the space free now.
                    crate::space::fits_at_copy(
                        &src,
                        &dst,
                        staging,
                        &format!("copy {from} -> {path}"),
                    )
                    .map_err(anyhow::Error::msg)?;
                    fsops::copy_tree(&src, staging, cx.progress)
                }
            })?;
            Ok(Undo::RemoveCreated { path: path.clone() })
        }
        Action::Archive { from, path, format } => {
            let src = g
                .read(from)
                .map_err(|e| anyhow::anyhow!("step `{}`: {e}", cx.step))?;
            let dst = w(path)?;
            if made_before(&dst, pre, cx.step, path, "archives")? {
                return Ok(Undo::RemoveCreated { path: path.clone() });
            }
            // Its space was counted in the plan, moments ago (no second walk
            // of 120,000 files); a disk that filled since fails the write,
            // in staging, and the step rolls back.
            let made = staged(&dst, key, |staging| {
                archive::archive(&src, staging, *format, cx.progress)
            })?;
            (cx.note)(format!(
                "archive {path}: sha256 {}, {} entries, {}",
                made.sha256,
                mend_human::human_count(made.entries),
                mend_human::human_bytes(made.bytes)
            ));
            Ok(Undo::RemoveCreated { path: path.clone() })
        }
        Action::SetOwner {
            path,
            owner,
            group,
            recursive,
        } => {
            let r = w(path)?;
            let saved = OwnedPath {
                grant: r.grant,
                rel: under(&fsops::fs_top(&r)?, format!("{}.attrs", key.trash())),
            };
            let id = |n: &Option<String>, db: &str| -> Result<Option<u32>> {
                n.as_deref()
                    .map(|n| id_of(n, db).with_context(|| format!("no `{n}` in {db}")))
                    .transpose()
            };
            let change = attrs::Change {
                uid: id(owner, "/etc/passwd")?,
                gid: id(group, "/etc/group")?,
                mode: None,
                recursive: *recursive,
            };
            attrs::apply(&r, &saved.borrow(), &change)?;
            Ok(Undo::Attrs {
                path: path.clone(),
                saved: saved.display(),
            })
        }
        Action::SetMode {
            path,
            mode,
            dir_mode,
            recursive,
        } => {
            let r = w(path)?;
            let saved = OwnedPath {
                grant: r.grant,
                rel: under(&fsops::fs_top(&r)?, format!("{}.attrs", key.trash())),
            };
            let change = attrs::Change {
                uid: None,
                gid: None,
                mode: Some((*mode & 0o7777, dir_mode.unwrap_or(*mode) & 0o7777)),
                recursive: *recursive,
            };
            attrs::apply(&r, &saved.borrow(), &change)?;
            Ok(Undo::Attrs {
                path: path.clone(),
                saved: saved.display(),
            })
        }
        Action::Exec {
            call,
            undo,
            creates,
        } => {
            let undone = match (undo, creates) {
                (Some(u), _) => Undo::Exec { call: u.clone() },
                (None, Some(c)) => Undo::RemoveCreated { path: c.clone() },
                (None, None) => Undo::Irreversible,
            };
            if let Some(c) = creates {
                let r = w(c)?;
                let made = made_marker(&r, key);
                if fsops::exists(&r)? {
                    if pre.existed {
                        bail!(
                            "step `{}`: {c} already exists; `{call}` would overwrite it",
                            cx.step
                        );
                    }
                    if fsops::exists(&made.borrow())? {
                        // The command finished before a crash and its file
                        // is whole: it is not run twice.
                        return Ok(undone);
                    }
                    // Left by this action before a crash, maybe half
                    // written: make it again.
                    fsops::remove_any(&r)?;
                }
                fsops::ensure_parent(&r)?;
                run_checked(cx, call)?;
                if !fsops::exists(&r)? {
                    bail!(
                        "step `{}`: `{call}` exited 0 but did not create {c}, which the plan said it makes",
                        cx.step
                    );
                }
                // The file is durable before the world says it is whole.
                fsops::sync_filesystem(&r.grant.dir)?;
                fsops::ensure_parent(&made.borrow())?;
                fsops::write_synced(&made.borrow(), b"", 0o600)?;
                return Ok(undone);
            }
            run_checked(cx, call)?;
            Ok(undone)
        }
    }
}

/// Whether a rename is found done: what it moved (known by its inode when
/// the intent was journaled) is at the destination. Without an inode (an
/// older journal), a missing source and a present destination say so.
/// Whether a copy, extract or archive to `dst` was made by this action
/// before a crash (it was absent when the action began); an existing
/// `dst` that was there before is refused: these never overwrite.
fn made_before(dst: &Resolved, pre: &Pre, step: &str, path: &str, what: &str) -> Result<bool> {
    if !fsops::exists(dst)? {
        return Ok(false);
    }
    if pre.existed {
        bail!("step `{step}`: {path} already exists; {what} never overwrite");
    }
    if pre.fresh {
        // Not there when this process looked just before: someone put it
        // there since. Only a resumed action finds its own earlier work.
        return Err(Refused(format!(
            "not made: {path} appeared after the plan, which saw nothing there; {what} never overwrite. Look at it, then run the runbook again"
        ))
        .into());
    }
    Ok(true)
}

/// An action refused just before it was performed, having done nothing:
/// what is at its path changed since the plan. The step fails; the
/// journal records the action undone (not in effect), so a rollback
/// leaves what is there alone.
#[derive(Debug)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// Make `dst` whole in this action's staging path (on `dst`'s filesystem,
/// emptied of what a crash left), synced, then renamed into place: a crash
/// leaves a staging path (redone on resume), never a half copy in place.
/// Shared by copy, extract and archive.
fn staged<T>(dst: &Resolved, key: &Key, make: impl FnOnce(&Resolved) -> Result<T>) -> Result<T> {
    let staging = OwnedPath {
        grant: dst.grant,
        rel: under(&fsops::fs_top(dst)?, key.staging()),
    };
    if fsops::exists(&staging.borrow())? {
        fsops::remove_any(&staging.borrow())?;
    }
    fsops::ensure_parent(&staging.borrow())?;
    let made = make(&staging.borrow())?;
    fsops::sync_at(&staging.borrow())?;
    fsops::ensure_parent(dst)?;
    fsops::rename(&staging.borrow(), dst)?;
    Ok(made)
}

fn renamed(a: &Resolved, b: &Resolved, pre: &Pre) -> Result<bool> {
    let at_b = if fsops::exists(b)? {
        Some(fsops::ino(b)?)
    } else {
        None
    };
    Ok(match pre.ino {
        Some(ino) => at_b == Some(ino),
        None => at_b.is_some() && !fsops::exists(a)?,
    })
}

/// The marker an exec with `creates` leaves in staging once its command
/// exited 0 and the file is durable: a resumed run then knows the file is
/// whole and does not run the command again.
fn made_marker<'a>(r: &Resolved<'a>, key: &Key) -> OwnedPath<'a> {
    OwnedPath {
        grant: r.grant,
        rel: format!("{}.made", key.staging()),
    }
}

/// What of an action not recorded done is present in the world, as the
/// undo that takes it back: for a rollback after a kill between intent and
/// done, or after a perform that failed. Nothing is performed here (a
/// rollback must never do more of what it undoes, and a copy from a FIFO
/// would hang it). `None`: nothing of it is there.
pub fn present(cx: &ApplyCtx, key: &Key, action: &Action, pre: &Pre) -> Result<Option<Undo>> {
    let w = |p| writable(cx, p);
    Ok(match action {
        Action::Remove { path } => {
            let r = w(path)?;
            if r.grant.disposable {
                (!fsops::exists(&r)?).then_some(Undo::Irreversible)
            } else {
                // In the trash of the filesystem the path is on: the
                // grant's, or a volume's mounted in it.
                let trash = OwnedPath {
                    grant: r.grant,
                    rel: under(&fsops::fs_top(&r)?, key.trash()),
                };
                fsops::exists(&trash.borrow())?.then(|| Undo::Restore {
                    trash: trash.display(),
                    path: path.clone(),
                })
            }
        }
        Action::Rename { path, to } => {
            renamed(&w(path)?, &w(to)?, pre)?.then(|| Undo::RenameBack {
                from: to.clone(),
                to: path.clone(),
            })
        }
        Action::Swap { path, with } => {
            let a = w(path)?;
            let moved = match pre.ino {
                Some(ino) => fsops::exists(&a)? && fsops::ino(&a)? != ino,
                None => false,
            };
            moved.then(|| Undo::SwapBack {
                a: path.clone(),
                b: with.clone(),
            })
        }
        Action::CreateDir { .. } => {
            let mut dirs = Vec::new();
            for d in pre.created.iter().rev() {
                if fsops::exists(&w(d)?)? {
                    dirs.push(d.clone());
                }
            }
            (!dirs.is_empty()).then_some(Undo::RemoveDirs { dirs })
        }
        Action::WriteFile { path, contents, .. } => {
            let r = w(path)?;
            let trash = OwnedPath {
                grant: r.grant,
                rel: under(&fsops::fs_top(&r)?, key.trash()),
            };
            if pre.existed {
                fsops::exists(&trash.borrow())?.then(|| Undo::ReplaceBack {
                    trash: trash.display(),
                    path: path.clone(),
                })
            } else {
                // Only its own bytes: a file someone put there after the
                // intent (the write then refused to replace it) is theirs.
                fsops::holds(&r, contents).then(|| Undo::RemoveCreated { path: path.clone() })
            }
        }
        Action::Copy { path, .. } | Action::Extract { path, .. } | Action::Archive { path, .. } => {
            // Renamed into place only when whole: present means done.
            (!pre.existed && fsops::exists(&w(path)?)?)
                .then(|| Undo::RemoveCreated { path: path.clone() })
        }
        Action::SetOwner { path, .. } | Action::SetMode { path, .. } => {
            // What it changed is saved before it changes anything.
            let r = w(path)?;
            let saved = OwnedPath {
                grant: r.grant,
                rel: under(&fsops::fs_top(&r)?, format!("{}.attrs", key.trash())),
            };
            fsops::exists(&saved.borrow())?.then(|| Undo::Attrs {
                path: path.clone(),
                saved: saved.display(),
            })
        }
        Action::Exec {
            creates: Some(c),
            undo,
            ..
        } => {
            let r = w(c)?;
            if pre.existed || !fsops::exists(&r)? {
                None
            } else if fsops::exists(&made_marker(&r, key).borrow())?
                && let Some(u) = undo
            {
                // The command finished: its own compensation undoes it.
                Some(Undo::Exec { call: u.clone() })
            } else {
                Some(Undo::RemoveCreated { path: c.clone() })
            }
        }
        Action::Exec { .. } => None,
    })
}

fn run_checked(cx: &ApplyCtx, call: &Call) -> Result<()> {
    let out = cx
        .commands
        .run(cx.step, call, cx.timeout)
        .map_err(anyhow::Error::msg)?;
    if out.status != 0 {
        let err = mend_human::sanitize(out.stderr.trim());
        bail!(
            "step `{}`: `{call}` exited with status {}{}",
            cx.step,
            out.status,
            if err.is_empty() {
                String::new()
            } else {
                format!(": {err}")
            }
        );
    }
    Ok(())
}

/// Undo a performed action, then put back the directory times it changed.
/// Safe to repeat: an undo found already done does nothing.
pub fn undo(cx: &ApplyCtx, undo: &Undo, pre: &Pre) -> Result<()> {
    undo_only(cx, undo, pre)?;
    for d in &pre.dirs {
        restore_times(cx.grants, d)?;
    }
    Ok(())
}

/// Undo a performed action, leaving the directory times it changed to the
/// caller. Safe to repeat.
pub fn undo_only(cx: &ApplyCtx, undo: &Undo, pre: &Pre) -> Result<()> {
    let w = |p| writable(cx, p);
    match undo {
        Undo::Nothing | Undo::Irreversible => {}
        Undo::Restore { trash, path } => {
            let (t, p) = (w(trash)?, w(path)?);
            if fsops::exists(&t)? {
                if fsops::exists(&p)? {
                    bail!("cannot put {path} back: something new is in its place");
                }
                fsops::rename(&t, &p)?;
            }
        }
        Undo::RenameBack { from, to } => {
            let (f, t) = (w(from)?, w(to)?);
            if fsops::exists(&f)? && !fsops::exists(&t)? {
                fsops::rename(&f, &t)?;
            }
        }
        Undo::SwapBack { a, b } => {
            let (ra, rb) = (w(a)?, w(b)?);
            if pre
                .ino
                .is_none_or(|ino| fsops::ino(&ra).map(|i| i != ino).unwrap_or(false))
            {
                fsops::exchange(&ra, &rb)?;
            }
        }
        Undo::RemoveDirs { dirs } => {
            for d in dirs {
                let r = w(d)?;
                if fsops::exists(&r)? {
                    r.grant.dir.remove_dir(r.rel_path()).with_context(|| {
                        format!("cannot remove {d}, created by this run: it is not empty (something else wrote there)")
                    })?;
                }
            }
        }
        Undo::RemoveCreated { path } => {
            let r = w(path)?;
            if fsops::exists(&r)? {
                fsops::remove_any(&r)?;
            }
        }
        Undo::ReplaceBack { trash, path } => {
            let (t, p) = (w(trash)?, w(path)?);
            if fsops::exists(&t)? {
                fsops::rename(&t, &p)?;
            }
        }
        Undo::Exec { call } => run_checked(cx, call)?,
        Undo::Attrs { path, saved } => attrs::undo(&w(path)?, &w(saved)?)?,
    }
    Ok(())
}

/// After a commit or a rollback: remove this run's trash and staging in every
/// write grant, and the trash folders themselves when empty.
pub fn purge(grants: &Grants, run: &str) -> Result<()> {
    for g in grants
        .iter()
        .filter(|g| g.access == mend_runbook::Access::Write)
    {
        // The grant's root, and every volume mounted inside it.
        for vol in std::iter::once(String::new()).chain(fsops::mounts_below(&g.root)) {
            for top in [TRASH, STAGING] {
                let top = under(&vol, top.to_string());
                let mine = format!("{top}/{run}");
                if g.dir.symlink_metadata(&mine).is_ok() {
                    g.dir
                        .remove_dir_all(&mine)
                        .with_context(|| format!("purge {}/{mine}", g.name))?;
                }
                if g.dir.remove_dir(&top).is_err() {
                    // Not empty (another run's) or absent: leave it.
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(root: &std::path::Path, disposable: bool) -> Grants {
        Grants::one_for_tests(root, disposable)
    }

    fn cx(g: &Grants) -> ApplyCtx<'_> {
        static NO_COMMANDS: std::sync::OnceLock<CommandPolicy> = std::sync::OnceLock::new();
        ApplyCtx {
            grants: g,
            commands: NO_COMMANDS.get_or_init(CommandPolicy::default),
            step: "s",
            timeout: Duration::from_secs(5),
            progress: &|_| {},
            note: &|_| {},
            on_overlay: false,
        }
    }

    /// A trash entry already there under this action's name was not made by
    /// it: the removal fails, and the file stays where it is, on both the
    /// batched path and the general one.
    #[test]
    fn a_trash_entry_made_by_someone_else_is_never_taken_for_done() {
        for batched in [true, false] {
            let tmp = tempfile::tempdir().unwrap();
            std::fs::write(tmp.path().join("victim.txt"), "v").unwrap();
            std::fs::create_dir_all(tmp.path().join(".mend-trash/r/0-3")).unwrap();
            let g = grants(tmp.path(), false);
            let cx = cx(&g);
            let key = Key {
                run: "r",
                step: 0,
                seq: 3,
            };
            let action = Action::Remove {
                path: "data/victim.txt".into(),
            };
            let pre = prepare(&cx, &action).unwrap();
            let result = if batched {
                perform_in(&mut Batch::default(), &cx, &key, &action, &pre)
            } else {
                // A tree is never batched: the general path.
                std::fs::remove_file(tmp.path().join("victim.txt")).unwrap();
                std::fs::create_dir(tmp.path().join("victim.txt")).unwrap();
                perform(&cx, &key, &action, &pre)
            };
            let e = result.expect_err("the squatted entry was taken for done");
            assert!(e.to_string().contains("already exists"), "{e:#}");
            assert!(tmp.path().join("victim.txt").exists());
        }
    }

    /// Two renames where the second needs the first's source free: after
    /// both ran, each is found done by what it moved, not by names.
    #[test]
    fn renames_are_found_done_by_what_they_moved() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("current")).unwrap();
        std::fs::create_dir_all(tmp.path().join("next")).unwrap();
        let g = grants(tmp.path(), false);
        let cx = cx(&g);
        let first = Action::Rename {
            path: "data/current".into(),
            to: "data/previous".into(),
        };
        let second = Action::Rename {
            path: "data/next".into(),
            to: "data/current".into(),
        };
        let key = |seq| Key {
            run: "r",
            step: 0,
            seq,
        };
        let p1 = prepare(&cx, &first).unwrap();
        perform(&cx, &key(0), &first, &p1).unwrap();
        let p2 = prepare(&cx, &second).unwrap();
        perform(&cx, &key(1), &second, &p2).unwrap();
        // Performed again, as a resume would: both are done already.
        assert!(perform(&cx, &key(0), &first, &p1).is_ok());
        assert!(perform(&cx, &key(1), &second, &p2).is_ok());
        assert!(matches!(
            present(&cx, &key(0), &first, &p1),
            Ok(Some(Undo::RenameBack { .. }))
        ));
        assert!(matches!(
            present(&cx, &key(1), &second, &p2),
            Ok(Some(Undo::RenameBack { .. }))
        ));
    }
}
