//! A step's plan as the host accepts it: each action the component proposed,
//! checked against the step's grants and commands before anything is done,
//! and sized.

use mend_plan::{Action, Call, Format, Planned, Seen, StepPlan, mtime_ns};

use crate::grants::{Grants, PathError};
use crate::sandbox::wit;

impl From<wit::ArchiveFormat> for Format {
    fn from(f: wit::ArchiveFormat) -> Format {
        match f {
            wit::ArchiveFormat::Tar => Format::Tar,
            wit::ArchiveFormat::TarGz => Format::TarGz,
            wit::ArchiveFormat::TarZst => Format::TarZst,
        }
    }
}

impl From<wit::ActionKind> for Action {
    fn from(k: wit::ActionKind) -> Action {
        use wit::ActionKind as K;
        let call = |c: wit::CommandCall| Call {
            command: c.command,
            args: c.args,
        };
        match k {
            K::Remove(path) => Action::Remove { path },
            K::Rename(a) => Action::Rename {
                path: a.src,
                to: a.dst,
            },
            K::Swap(a) => Action::Swap {
                path: a.a,
                with: a.b,
            },
            K::CreateDir(path) => Action::CreateDir { path },
            K::WriteFile(a) => Action::WriteFile {
                path: a.path,
                contents: a.contents,
                mode: a.mode,
            },
            K::Copy(a) => Action::Copy {
                from: a.src,
                path: a.dst,
            },
            K::Extract(a) => Action::Extract {
                archive: a.archive,
                path: a.dst,
                format: a.format.into(),
            },
            K::Archive(a) => Action::Archive {
                from: a.src,
                path: a.dst,
                format: a.format.into(),
            },
            K::SetOwner(a) => Action::SetOwner {
                path: a.path,
                owner: a.owner,
                group: a.group,
                recursive: a.recursive,
            },
            K::SetMode(a) => Action::SetMode {
                path: a.path,
                mode: a.mode,
                dir_mode: a.dir_mode,
                recursive: a.recursive,
            },
            K::Exec(a) => Action::Exec {
                call: call(a.call),
                undo: a.undo.map(call),
                creates: a.creates,
            },
        }
    }
}

/// Check every action of a step's plan against its grants and commands, and
/// size it. The first refused action refuses the whole plan: nothing is done.
/// An `exec` (and its undo) must be one of its command's `changes`, and
/// each of its `@GRANT/path` arguments is checked as an action path is.
pub fn check(
    plan: wit::Plan,
    grants: &Grants,
    commands: &crate::commands::CommandPolicy,
    step: &str,
) -> Result<StepPlan, String> {
    let mut out = outline(&plan);
    let mut removals = Removals::default();
    for a in plan.actions {
        out.actions.push(check_action(
            a,
            grants,
            commands,
            step,
            &mut removals,
            None,
        )?);
    }
    Ok(out)
}

/// A step's plan without its actions: its summary, checks and facts, as
/// they are kept.
pub fn outline(plan: &wit::Plan) -> StepPlan {
    StepPlan {
        summary: lines(&plan.summary, "summary"),
        checks: lines(&plan.checks, "check"),
        facts: plan
            .facts
            .iter()
            .map(|f| (f.key.clone(), f.value.clone()))
            .collect(),
        ..StepPlan::default()
    }
}

/// What a plan's removals so far freed below each directory (every
/// ancestor of a removed path), so that a directory removed after its
/// files (a cull that removes the folders it emptied) is not counted
/// twice. One entry per directory, not per file: a cull of a million files
/// in a thousand directories keeps a thousand.
#[derive(Default, Debug)]
pub struct Removals {
    below: std::collections::HashMap<String, (u64, u64)>,
    /// The directory the last removal was in, held open (grant, parent
    /// rel, handle): the next removal in it is sized by one `fstatat` of
    /// its name, not by a resolution of its whole path from the grant.
    parent: Option<(String, String, cap_std::fs::Dir)>,
}

impl Removals {
    /// Bytes and files of a removal of `path` that earlier removals below
    /// it have not counted, then counted for every directory above it.
    fn count(&mut self, path: &str, bytes: u64, files: u64) -> (u64, u64) {
        let (eb, ef) = self.below.get(path).copied().unwrap_or_default();
        let (b, f) = (bytes.saturating_sub(eb), files.saturating_sub(ef));
        let mut up = path;
        while let Some((parent, _)) = up.rsplit_once('/') {
            // A million removals in a thousand directories: look up first,
            // allocate a key only for a directory not seen yet.
            match self.below.get_mut(parent) {
                Some(slot) => {
                    slot.0 += b;
                    slot.1 += f;
                }
                None => {
                    self.below.insert(parent.to_string(), (b, f));
                }
            }
            up = parent;
        }
        (b, f)
    }

    /// Bytes and files of what `r` names (a file: its size; a directory:
    /// its tree), by lstat: a symlink is sized as itself; and what it is,
    /// for the removal to find again. Nothing there sizes as nothing.
    ///
    /// `tree`: a directory is kept whole (`Seen::Tree`, its digest), not
    /// only by its totals (`Seen::Dir`).
    fn size(&mut self, r: &crate::grants::Resolved, tree: bool) -> (u64, u64, Option<Seen>) {
        // A name at the grant's top (a flat WAL archive) is looked up in
        // the grant's own directory, held open already.
        let (dir, leaf) = match r.rel.rsplit_once('/') {
            None => (&r.grant.dir, r.rel),
            Some((parent, leaf)) => {
                let hit =
                    matches!(&self.parent, Some((g, p, _)) if *g == r.grant.name && p == parent);
                if !hit {
                    // Opened beneath the grant by cap-std, as every host operation.
                    let Ok(dir) = r.grant.dir.open_dir(mend_plan::names::decode(parent)) else {
                        self.parent = None;
                        return whole(r, tree);
                    };
                    self.parent = Some((r.grant.name.clone(), parent.to_string(), dir));
                }
                (&self.parent.as_ref().expect("just set").2, leaf)
            }
        };
        // One name, not followed: the lookup cannot leave the directory.
        match rustix::fs::statat(
            dir,
            &*mend_plan::names::decode(leaf),
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        ) {
            Ok(st)
                if rustix::fs::FileType::from_raw_mode(st.st_mode)
                    != rustix::fs::FileType::Directory =>
            {
                let size = st.st_size.max(0) as u64;
                let mtime_ns = mtime_ns(st.st_mtime, st.st_mtime_nsec as i64);
                (size, 1, Some(Seen::File { size, mtime_ns }))
            }
            Err(rustix::io::Errno::NOENT) => (0, 0, None),
            // A directory (sized by its tree), or an error the general
            // path words.
            _ => whole(r, tree),
        }
    }
}

/// [`Removals::size`] by cap-std's path walk, for what one `fstatat` in a
/// held directory cannot answer (a directory, an unopenable parent).
fn whole(r: &crate::grants::Resolved, tree: bool) -> (u64, u64, Option<Seen>) {
    use cap_std::fs::MetadataExt as _;
    let Ok(md) = r.grant.dir.symlink_metadata(r.rel_path()) else {
        return (0, 0, None);
    };
    let path = format!("{}/{}", r.grant.name, r.rel);
    if md.is_dir()
        && tree
        && let Some((t, _)) = crate::apply::tree::read(&r.grant.dir, &r.rel_path(), &path)
    {
        return (t.bytes, t.files, Some(Seen::Tree { digest: t.digest }));
    }
    if md.is_dir() {
        let (b, f) = crate::space::tree_size(&r.grant.dir, &r.rel_path());
        return (b, f, Some(Seen::Dir));
    }
    let size = md.len();
    let mtime_ns = mtime_ns(md.mtime(), md.mtime_nsec());
    (size, 1, Some(Seen::File { size, mtime_ns }))
}

/// What a write-file's path holds at the plan: a file's size and time, or
/// nothing. A directory is left to the write, which refuses it.
fn written_over(r: &crate::grants::Resolved) -> Option<Seen> {
    use cap_std::fs::MetadataExt as _;
    match r.grant.dir.symlink_metadata(r.rel_path()) {
        Ok(md) if md.is_dir() => None,
        Ok(md) => Some(Seen::File {
            size: md.len(),
            mtime_ns: mtime_ns(md.mtime(), md.mtime_nsec()),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(Seen::Absent),
        Err(_) => None,
    }
}

/// Check one action of a step's plan (see [`check`]) and size it;
/// `removals` carries what the plan's earlier removals freed; `walked`, what
/// the step's walk last handed over: a removal of an entry of it is sized
/// and seen as the walk saw it, not stat'ed again.
pub fn check_action(
    a: wit::Action,
    grants: &Grants,
    commands: &crate::commands::CommandPolicy,
    step: &str,
    removals: &mut Removals,
    walked: Option<&crate::walked::Walked>,
) -> Result<Planned, String> {
    let refuse = |e: PathError| format!("step `{step}`: {e}");
    {
        let reason = mend_human::shown(&a.reason, LINE_CAP);
        let action = Action::from(a.kind);
        let mut seen = None;
        let (bytes, files, reversible) = match &action {
            Action::Remove { path } => {
                let r = grants.action(path, true).map_err(refuse)?;
                if r.rel.is_empty() {
                    return Err(format!(
                        "step `{step}`: refusing to remove the root of grant `{}`",
                        r.grant.name
                    ));
                }
                let whole = !removals.below.contains_key(path.as_str());
                let (b, f, s) = match walked.and_then(|w| w.get(path)) {
                    Some((size, mtime_ns)) => (size, 1, Some(Seen::File { size, mtime_ns })),
                    None => match walked.and_then(|w| w.tree(path)).filter(|_| whole) {
                        // A folder removed whole, as the walk saw its tree.
                        Some(t) => (t.bytes, t.files, Some(Seen::Tree { digest: t.digest })),
                        // A folder nothing of which was removed before is
                        // read for its digest as it stands.
                        None => removals.size(&r, whole),
                    },
                };
                seen = s;
                let (b, f) = removals.count(path, b, f);
                (b, f, !r.grant.disposable)
            }
            Action::Rename { path, to } => {
                let a = grants.action(path, true).map_err(refuse)?;
                let b = grants.action(to, true).map_err(refuse)?;
                same_grant(step, path, to, a.grant, b.grant)?;
                // A rename costs the same whatever it moves: not sized, so a
                // plan that carries 1M media files does not walk them.
                (0, 0, true)
            }
            Action::Swap { path, with } => {
                let a = grants.action(path, true).map_err(refuse)?;
                let b = grants.action(with, true).map_err(refuse)?;
                same_grant(step, path, with, a.grant, b.grant)?;
                (0, 0, true)
            }
            Action::CreateDir { path } => {
                grants.action(path, true).map_err(refuse)?;
                (0, 0, true)
            }
            Action::WriteFile { path, contents, .. } => {
                let r = grants.action(path, true).map_err(refuse)?;
                if r.grant
                    .dir
                    .symlink_metadata(r.rel_path())
                    .is_ok_and(|m| m.file_type().is_symlink())
                {
                    return Err(format!(
                        "step `{step}`: path `{}` in grant `{}` is a symlink; write-file never writes through a link: write the file the link names, or remove the link first",
                        mend_human::shown(path, 512),
                        r.grant.name
                    ));
                }
                seen = written_over(&r);
                (contents.len() as u64, 1, true)
            }
            Action::Copy { from, path } => {
                let src = grants.action(from, false).map_err(refuse)?;
                let dst = grants.action(path, true).map_err(refuse)?;
                let u = crate::space::fits(&src, &dst, &format!("copy {from} -> {path}"))
                    .map_err(|m| format!("step `{step}`: {m}"))?;
                (u.bytes, u.files, true)
            }
            Action::Extract { archive, path, .. } => {
                let src = grants.action(archive, false).map_err(refuse)?;
                grants.action(path, true).map_err(refuse)?;
                let (b, _) = crate::space::tree_size(&src.grant.dir, &src.rel_path());
                (b, 1, true)
            }
            Action::Archive { from, path, format } => {
                let src = grants.action(from, false).map_err(refuse)?;
                let dst = grants.action(path, true).map_err(refuse)?;
                if *format == Format::TarGz {
                    return Err(format!(
                        "step `{step}`: mend writes tar and tar.zst archives, not tar.gz"
                    ));
                }
                let u =
                    crate::space::fits_archive(&src, &dst, &format!("archive {from} -> {path}"))
                        .map_err(|m| format!("step `{step}`: {m}"))?;
                (u.bytes, u.files, true)
            }
            Action::SetOwner {
                path, owner, group, ..
            } => {
                let r = grants.action(path, true).map_err(refuse)?;
                for (what, name, db) in [
                    ("user", owner, "/etc/passwd"),
                    ("group", group, "/etc/group"),
                ] {
                    if let Some(n) = name
                        && crate::apply::id_of(n, db).is_none()
                    {
                        return Err(format!(
                            "step `{step}`: set-owner {}: there is no {what} `{}` on this host ({db})",
                            mend_human::shown(path, 512),
                            mend_human::shown(n, 64)
                        ));
                    }
                }
                let (b, f) = crate::space::tree_size(&r.grant.dir, &r.rel_path());
                (b, f, true)
            }
            Action::SetMode { path, .. } => {
                let r = grants.action(path, true).map_err(refuse)?;
                let (b, f) = crate::space::tree_size(&r.grant.dir, &r.rel_path());
                (b, f, true)
            }
            Action::Exec {
                call,
                undo,
                creates,
            } => {
                commands.check(step, call)?;
                if let Some(u) = undo {
                    commands.check(step, u)?;
                }
                if let Some(c) = creates {
                    grants.action(c, true).map_err(refuse)?;
                }
                (0, 0, undo.is_some() || creates.is_some())
            }
        };
        Ok(Planned {
            action,
            bytes,
            files,
            reversible,
            reason,
            seen,
        })
    }
}

/// The longest summary line, check or reason kept from a step.
const LINE_CAP: usize = 4096;
/// The most summary lines (or checks) kept from a step.
const LINES_CAP: usize = 1000;

/// A step's lines for the operator: escaped, each cut at [`LINE_CAP`], at
/// most [`LINES_CAP`] of them.
fn lines(from: &[String], what: &str) -> Vec<String> {
    let mut out: Vec<String> = from
        .iter()
        .take(LINES_CAP)
        .map(|s| mend_human::shown(s, LINE_CAP))
        .collect();
    if from.len() > LINES_CAP {
        out.push(format!(
            "... {} more {what} lines dropped",
            mend_human::human_count((from.len() - LINES_CAP) as u64)
        ));
    }
    out
}

fn same_grant(
    step: &str,
    from: &str,
    to: &str,
    a: &crate::grants::GrantDir,
    b: &crate::grants::GrantDir,
) -> Result<(), String> {
    if a.name == b.name {
        Ok(())
    } else {
        Err(format!(
            "step `{step}`: `{}` and `{}` are in two grants (`{}` and `{}`), and a rename or swap must stay inside one grant; copy instead",
            mend_human::shown(from, 512),
            mend_human::shown(to, 512),
            a.name,
            b.name
        ))
    }
}
