//! The host's view of a plan: each action a step proposed, checked against
//! the step's grants, with its size and whether it can be undone.

use serde::{Deserialize, Serialize};

use crate::commands::Call;
use crate::grants::{Grants, PathError};
use crate::sandbox::wit;

/// An archive format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    Tar,
    TarGz,
    TarZst,
}

impl From<wit::ArchiveFormat> for Format {
    fn from(f: wit::ArchiveFormat) -> Format {
        match f {
            wit::ArchiveFormat::Tar => Format::Tar,
            wit::ArchiveFormat::TarGz => Format::TarGz,
            wit::ArchiveFormat::TarZst => Format::TarZst,
        }
    }
}

impl Format {
    /// As a file extension says it.
    pub fn word(self) -> &'static str {
        match self {
            Format::Tar => "tar",
            Format::TarGz => "tar.gz",
            Format::TarZst => "tar.zst",
        }
    }
}

/// One change, as the host performs it. Paths are `GRANT/relative/path`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Action {
    Remove {
        path: String,
    },
    Rename {
        path: String,
        to: String,
    },
    Swap {
        path: String,
        with: String,
    },
    CreateDir {
        path: String,
    },
    WriteFile {
        path: String,
        #[serde(with = "hex_bytes")]
        contents: Vec<u8>,
        mode: Option<u32>,
    },
    Copy {
        from: String,
        path: String,
    },
    Extract {
        archive: String,
        path: String,
        format: Format,
    },
    Archive {
        from: String,
        path: String,
        format: Format,
    },
    SetOwner {
        path: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group: Option<String>,
        recursive: bool,
    },
    SetMode {
        path: String,
        mode: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dir_mode: Option<u32>,
        recursive: bool,
    },
    Exec {
        call: Call,
        undo: Option<Call>,
        /// The `GRANT/path` the command creates, removed on rollback.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        creates: Option<String>,
    },
}

mod hex_bytes {
    pub fn serialize<S: serde::Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s: String = serde::Deserialize::deserialize(d)?;
        hex::decode(s).map_err(serde::de::Error::custom)
    }
}

impl Action {
    /// The path the action changes (or the command it runs).
    pub fn target(&self) -> String {
        crate::output::shown(&self.raw_target(), 1024)
    }

    fn raw_target(&self) -> String {
        match self {
            Action::Remove { path }
            | Action::Rename { path, .. }
            | Action::Swap { path, .. }
            | Action::CreateDir { path }
            | Action::WriteFile { path, .. }
            | Action::Copy { path, .. }
            | Action::Extract { path, .. }
            | Action::Archive { path, .. }
            | Action::SetOwner { path, .. }
            | Action::SetMode { path, .. } => path.clone(),
            Action::Exec { call, .. } => call.to_string(),
        }
    }

    /// Every `GRANT/path` the action names (read or changed).
    pub fn paths(&self) -> Vec<&str> {
        match self {
            Action::Remove { path }
            | Action::CreateDir { path }
            | Action::WriteFile { path, .. }
            | Action::SetOwner { path, .. }
            | Action::SetMode { path, .. } => vec![path],
            Action::Rename { path, to } => vec![path, to],
            Action::Swap { path, with } => vec![path, with],
            Action::Copy { from, path } | Action::Archive { from, path, .. } => vec![from, path],
            Action::Extract { archive, path, .. } => vec![archive, path],
            Action::Exec { creates, .. } => creates.iter().map(String::as_str).collect(),
        }
    }

    /// The `GRANT/path`s the action changes (not what it reads): a
    /// command's only when it names what it creates.
    pub fn changed_paths(&self) -> Vec<&str> {
        match self {
            Action::Copy { path, .. }
            | Action::Extract { path, .. }
            | Action::Archive { path, .. } => vec![path],
            other => other.paths(),
        }
    }

    /// What the action does to what, on one line: `rename a -> b`,
    /// `exec cmd args (undo: ...)`.
    pub fn line(&self) -> String {
        format!("{} {}", self.kind(), self.what())
    }

    /// The action's object: its path, paths or command line.
    pub fn what(&self) -> String {
        crate::output::sanitize(&self.raw_what())
    }

    fn raw_what(&self) -> String {
        match self {
            Action::Rename { path, to } => format!("{path} -> {to}"),
            Action::Swap { path, with } => format!("{path} <-> {with}"),
            Action::Copy { from, path } => format!("{from} -> {path}"),
            Action::Extract { archive, path, .. } => format!("{archive} -> {path}"),
            Action::Archive {
                from, path, format, ..
            } => format!("{from} -> {path} ({})", format.word()),
            Action::SetOwner {
                path,
                owner,
                group,
                recursive,
            } => format!(
                "{path}{} to {}{}",
                if *recursive { " (recursively)" } else { "" },
                owner.as_deref().unwrap_or(""),
                group
                    .as_deref()
                    .map(|g| format!(":{g}"))
                    .unwrap_or_default()
            ),
            Action::SetMode {
                path,
                mode,
                dir_mode,
                recursive,
            } => format!(
                "{path}{} to {mode:o}{}",
                if *recursive { " (recursively)" } else { "" },
                dir_mode
                    .map(|d| format!(", directories {d:o}"))
                    .unwrap_or_default()
            ),
            Action::Exec {
                call,
                undo: Some(u),
                ..
            } => format!("{call} (undo: {u})"),
            Action::Exec {
                call,
                creates: Some(c),
                ..
            } => format!("{call} (creates {c})"),
            other => other.raw_target(),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Action::Remove { .. } => "remove",
            Action::Rename { .. } => "rename",
            Action::Swap { .. } => "swap",
            Action::CreateDir { .. } => "create-dir",
            Action::WriteFile { .. } => "write-file",
            Action::Copy { .. } => "copy",
            Action::Extract { .. } => "extract",
            Action::Archive { .. } => "archive",
            Action::SetOwner { .. } => "set-owner",
            Action::SetMode { .. } => "set-mode",
            Action::Exec { .. } => "exec",
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

/// An action in a plan, checked and sized.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Planned {
    #[serde(flatten)]
    pub action: Action,
    /// Bytes the action moves, removes or writes (a tree's total).
    pub bytes: u64,
    /// Files it touches (a tree's count; 1 for a file).
    pub files: u64,
    /// Whether rollback can undo it.
    pub reversible: bool,
    /// The step's reason.
    pub reason: String,
}

/// A step's plan as the host keeps it (and journals it).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StepPlan {
    pub actions: Vec<Planned>,
    pub summary: Vec<String>,
    pub checks: Vec<String>,
    pub facts: Vec<(String, String)>,
    /// The reads the step ran through `probe` while planning, with their
    /// exit status: `systemctl is-active x (exit 0)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reads: Vec<String>,
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
    let mut out = StepPlan {
        summary: lines(&plan.summary, "summary"),
        checks: lines(&plan.checks, "check"),
        facts: plan.facts.into_iter().map(|f| (f.key, f.value)).collect(),
        actions: Vec::with_capacity(plan.actions.len()),
        reads: Vec::new(),
    };
    let refuse = |e: PathError| format!("step `{step}`: {e}");
    // Removals so far, so that a directory removed after its files (a cull
    // that removes the folders it emptied) is not counted twice.
    let mut removed: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for a in plan.actions {
        let reason = crate::output::shown(&a.reason, LINE_CAP);
        let action = Action::from(a.kind);
        let (bytes, files, reversible) = match &action {
            Action::Remove { path } => {
                let r = grants.action(path, true).map_err(refuse)?;
                if r.rel.is_empty() {
                    return Err(format!(
                        "step `{step}`: refusing to remove the root of grant `{}`",
                        r.grant.name
                    ));
                }
                let (mut b, mut f) = tree_size(&r.grant.dir, &r.rel_path());
                let below = format!("{path}/");
                for (_, (eb, ef)) in removed
                    .range(below.clone()..)
                    .take_while(|(k, _)| k.starts_with(&below))
                {
                    b = b.saturating_sub(*eb);
                    f = f.saturating_sub(*ef);
                }
                removed.insert(path.clone(), (b, f));
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
                        crate::output::shown(path, 512),
                        r.grant.name
                    ));
                }
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
                let (b, _) = tree_size(&src.grant.dir, &src.rel_path());
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
                            crate::output::shown(path, 512),
                            crate::output::shown(n, 64)
                        ));
                    }
                }
                let (b, f) = tree_size(&r.grant.dir, &r.rel_path());
                (b, f, true)
            }
            Action::SetMode { path, .. } => {
                let r = grants.action(path, true).map_err(refuse)?;
                let (b, f) = tree_size(&r.grant.dir, &r.rel_path());
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
        out.actions.push(Planned {
            action,
            bytes,
            files,
            reversible,
            reason,
        });
    }
    Ok(out)
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
        .map(|s| crate::output::shown(s, LINE_CAP))
        .collect();
    if from.len() > LINES_CAP {
        out.push(format!(
            "... {} more {what} lines dropped",
            crate::output::count((from.len() - LINES_CAP) as u64)
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
            crate::output::shown(from, 512),
            crate::output::shown(to, 512),
            a.name,
            b.name
        ))
    }
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
