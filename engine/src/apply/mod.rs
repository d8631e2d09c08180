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

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};

use crate::commands::{Call, CommandPolicy};
use crate::grants::{Grants, OwnedPath, Resolved};
use crate::plan::Action;
pub use attrs::id_of;
pub use batch::Batch;
pub use fsops::{DirTimes, copy_entry as copy_between, dir_times, restore_times};

/// Where trash and staging live inside each write grant.
pub const TRASH: &str = ".mend-trash";
/// Copies and extracts are built here, then renamed into place.
pub const STAGING: &str = ".mend-staging";

/// Names an action: its trash and staging entries are derived from it.
#[derive(Clone, Debug)]
pub struct Key<'a> {
    pub run: &'a str,
    pub step: u32,
    pub seq: u32,
}

impl Key<'_> {
    fn trash(&self) -> String {
        format!("{TRASH}/{}/{}", self.run, self.leaf())
    }
    /// The name of its entry inside this run's trash or staging folder.
    fn leaf(&self) -> String {
        format!("{}-{}", self.step, self.seq)
    }
    fn staging(&self) -> String {
        format!("{STAGING}/{}/{}-{}", self.run, self.step, self.seq)
    }
}

/// `rel` inside `top` (a volume mounted in the grant; "" for the grant's
/// root): trash and staging stay on the filesystem of what they hold, so
/// that moving in and out of them is a rename, never a copy.
fn under(top: &str, rel: String) -> String {
    if top.is_empty() {
        rel
    } else {
        format!("{top}/{rel}")
    }
}

/// The world before an action, journaled with its intent.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Pre {
    /// Whether the target existed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub existed: bool,
    /// Inode of the first path of a swap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ino: Option<u64>,
    /// Directories created by a create-dir, outermost first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub created: Vec<String>,
    /// Modification times of the directories the action changes, restored on undo.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dirs: Vec<DirTimes>,
}

/// How to undo a performed action.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "undo", rename_all = "kebab-case")]
pub enum Undo {
    /// Nothing was changed.
    Nothing,
    /// Cannot be undone (a disposable removal, an exec without compensation).
    Irreversible,
    /// Move the trash entry back to `path`.
    Restore { trash: String, path: String },
    /// Rename `from` back to `to`.
    RenameBack { from: String, to: String },
    /// Exchange the two paths again.
    SwapBack { a: String, b: String },
    /// Remove the directories created, innermost first.
    RemoveDirs { dirs: Vec<String> },
    /// Remove the file or tree the action created.
    RemoveCreated { path: String },
    /// Remove the new file, then move the old one back from the trash.
    ReplaceBack { trash: String, path: String },
    /// Run the compensating command.
    Exec { call: Call },
    /// Put back the owners and modes saved before a set-owner or set-mode.
    Attrs { path: String, saved: String },
}

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
        _ => {}
    }
    Ok(pre)
}

/// Perform an action (again, if a crash left it half done). Returns its undo.
pub fn perform(cx: &ApplyCtx, key: &Key, action: &Action, pre: &Pre) -> Result<Undo> {
    perform_in(&mut Batch::default(), cx, key, action, pre)
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
    crate::faults::action(key.step)?;
    let g = cx.grants;
    let w = |p| writable(cx, p);
    if !matches!(action, Action::Remove { .. }) {
        batch.forget();
    }
    match action {
        Action::Remove { path } => {
            let r = w(path)?;
            if r.grant.disposable {
                if batch.unlink_file(&r)?.is_none() {
                    fsops::remove_if_exists(&r)?;
                }
                return Ok(Undo::Irreversible);
            }
            let undo = Undo::Restore {
                trash: format!("{}/{}", r.grant.name, key.trash()),
                path: path.clone(),
            };
            match batch.trash_file(&r, key)? {
                Some(true) => return Ok(undo),
                Some(false) => return Ok(Undo::Nothing),
                None => {}
            }
            let trash = OwnedPath {
                grant: r.grant,
                rel: under(&fsops::fs_top(&r)?, key.trash()),
            };
            if fsops::exists(&trash.borrow())? {
                return Ok(Undo::Restore {
                    trash: trash.display(),
                    path: path.clone(),
                });
            }
            if !fsops::exists(&r)? {
                return Ok(Undo::Nothing);
            }
            fsops::ensure_parent(&trash.borrow())?;
            fsops::rename(&r, &trash.borrow())?;
            Ok(Undo::Restore {
                trash: trash.display(),
                path: path.clone(),
            })
        }
        Action::Rename { path, to } => {
            let a = w(path)?;
            let b = w(to)?;
            let (src, dst) = (fsops::exists(&a)?, fsops::exists(&b)?);
            if !src && dst {
                return Ok(Undo::RenameBack {
                    from: to.clone(),
                    to: path.clone(),
                });
            }
            if dst {
                bail!(
                    "step `{}`: cannot rename {path} to {to}: {to} already exists",
                    cx.step
                );
            }
            fsops::ensure_parent(&b)?;
            fsops::rename(&a, &b)?;
            Ok(Undo::RenameBack {
                from: to.clone(),
                to: path.clone(),
            })
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
            if fsops::exists(&dst)? {
                if pre.existed {
                    bail!(
                        "step `{}`: {path} already exists; copies and extracts never overwrite",
                        cx.step
                    );
                }
                return Ok(Undo::RemoveCreated { path: path.clone() });
            }
            let staging = OwnedPath {
                grant: dst.grant,
                rel: under(&fsops::fs_top(&dst)?, key.staging()),
            };
            if fsops::exists(&staging.borrow())? {
                fsops::remove_any(&staging.borrow())?;
            }
            fsops::ensure_parent(&staging.borrow())?;
            match action {
                Action::Extract { format, .. } => {
                    let (need, _) = crate::plan::tree_size(&src.grant.dir, src.rel_path());
                    fsops::check_space(&dst, need, path)?;
                    extract::extract(&src, &staging.borrow(), *format, cx.progress)?
                }
                _ => {
                    // In blocks and inodes, as the plan counted it.
                    crate::space::fits(&src, &staging.borrow(), &format!("copy {from} -> {path}"))
                        .map_err(anyhow::Error::msg)?;
                    fsops::copy_tree(&src, &staging.borrow(), cx.progress)?
                }
            }
            // Whole on disk before it gets its name: a crash leaves a
            // staging path (redone on resume), never a half copy in place.
            fsops::sync_at(&staging.borrow())?;
            fsops::ensure_parent(&dst)?;
            fsops::rename(&staging.borrow(), &dst)?;
            Ok(Undo::RemoveCreated { path: path.clone() })
        }
        Action::Archive { from, path, format } => {
            let src = g
                .read(from)
                .map_err(|e| anyhow::anyhow!("step `{}`: {e}", cx.step))?;
            let dst = w(path)?;
            if fsops::exists(&dst)? {
                if pre.existed {
                    bail!(
                        "step `{}`: {path} already exists; archives never overwrite",
                        cx.step
                    );
                }
                return Ok(Undo::RemoveCreated { path: path.clone() });
            }
            let staging = OwnedPath {
                grant: dst.grant,
                rel: under(&fsops::fs_top(&dst)?, key.staging()),
            };
            if fsops::exists(&staging.borrow())? {
                fsops::remove_any(&staging.borrow())?;
            }
            fsops::ensure_parent(&staging.borrow())?;
            // Its space was counted in the plan, moments ago (no second walk
            // of 120,000 files); a disk that filled since fails the write,
            // in staging, and the step rolls back.
            let made = archive::archive(&src, &staging.borrow(), *format, cx.progress)?;
            fsops::sync_at(&staging.borrow())?;
            fsops::ensure_parent(&dst)?;
            fsops::rename(&staging.borrow(), &dst)?;
            (cx.note)(format!(
                "archive {path}: sha256 {}, {} entries, {}",
                made.sha256,
                crate::output::count(made.entries),
                crate::output::bytes(made.bytes)
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
            if let Some(c) = creates {
                let r = w(c)?;
                if fsops::exists(&r)? {
                    if pre.existed {
                        bail!(
                            "step `{}`: {c} already exists; `{call}` would overwrite it",
                            cx.step
                        );
                    }
                    // Left by this action before a crash, maybe half
                    // written: make it again.
                    fsops::remove_any(&r)?;
                }
                fsops::ensure_parent(&r)?;
            }
            run_checked(cx, call)?;
            Ok(match (undo, creates) {
                (Some(u), _) => Undo::Exec { call: u.clone() },
                (None, Some(c)) => Undo::RemoveCreated { path: c.clone() },
                (None, None) => Undo::Irreversible,
            })
        }
    }
}

fn run_checked(cx: &ApplyCtx, call: &Call) -> Result<()> {
    let out = cx
        .commands
        .run(cx.step, call, cx.timeout)
        .map_err(anyhow::Error::msg)?;
    if out.status != 0 {
        let err = crate::output::sanitize(out.stderr.trim());
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
    let g = cx.grants;
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
    for d in &pre.dirs {
        restore_times(g, d)?;
    }
    Ok(())
}

/// After a commit or a rollback: remove this run's trash and staging in every
/// write grant, and the trash folders themselves when empty.
pub fn purge(grants: &Grants, run: &str) -> Result<()> {
    for g in grants
        .iter()
        .filter(|g| g.access == crate::runbook::Access::Write)
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
