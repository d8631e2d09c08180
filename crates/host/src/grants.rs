//! The directories a step holds, opened once with cap-std, and the one place
//! where a `GRANT/relative/path` string is checked and turned into a grant and
//! a relative path. Every host file operation goes through here.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use cap_std::ambient_authority;
use cap_std::fs::Dir;

use mend_runbook::Access;

/// One granted directory, opened.
#[derive(Debug)]
pub struct GrantDir {
    /// The grant's name in the runbook.
    pub name: String,
    /// Where it is on the host.
    pub root: PathBuf,
    /// Read or write.
    pub access: Access,
    /// Removals are unlinked at once, not kept for undo.
    pub disposable: bool,
    /// The open directory: every operation is relative to it and cannot leave it.
    pub dir: Dir,
}

/// The grants of one step (or of a whole run), by name.
#[derive(Debug, Default)]
pub struct Grants {
    dirs: Vec<GrantDir>,
    /// Parent directories already found to stay inside their grant, so a cull
    /// of 100,000 files in 1,000 folders checks each folder once. Every
    /// operation still goes through cap-std, which refuses an escape made
    /// after the check.
    /// By grant, then parent: looked up without allocating a key.
    checked: std::sync::Mutex<std::collections::HashMap<String, std::collections::HashSet<String>>>,
}

/// The longest path a step may give (Linux's PATH_MAX). A longer one is
/// refused without being copied into the message.
pub const MAX_PATH: usize = 4096;

/// A path from a step as a message shows it: control characters escaped,
/// cut when long.
fn p(path: &str) -> String {
    mend_human::shown(path, 512)
}

/// Why a path was refused. The text names the path and what to do.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    #[error("path `{}` is absolute; paths are GRANT/relative/path, e.g. `media/cache/x`", p(.0))]
    Absolute(String),
    #[error("path `{}` contains `..`; paths may not climb out of their grant", p(.0))]
    DotDot(String),
    #[error("path `{}` is not GRANT/relative/path (empty component, `.` or NUL)", p(.0))]
    Malformed(String),
    #[error(
        "path `{}` is {} bytes long; paths are at most {} bytes",
        p(.head),
        mend_human::human_count(*.len as u64),
        mend_human::human_count(MAX_PATH as u64)
    )]
    TooLong { head: String, len: usize },
    #[error(
        "path `{}` is in grant `{}`, which this step does not hold; add \"{}\" to the step's `grants` (and declare [grants.{}])",
        p(.path), p(.grant), p(.grant), p(.grant)
    )]
    NoGrant { path: String, grant: String },
    #[error(
        "path `{}` is in grant `{grant}`, which is read-only; set `access = \"write\"` in [grants.{grant}] if the step must change it",
        p(.path)
    )]
    ReadOnly { path: String, grant: String },
    #[error(
        "path `{}` leaves grant `{grant}` through a symlink; mend never follows a symlink out of a grant",
        p(.path)
    )]
    Escapes { path: String, grant: String },
    #[error(
        "path `{}` goes through a symlink loop in grant `{grant}`; fix or remove the looping link",
        p(.path)
    )]
    Loop { path: String, grant: String },
    #[error(
        "path `{}` ends in `/`, but `{}` in grant `{grant}` is a symlink, not a directory; name the link without the `/` to act on the link itself",
        p(.path),
        p(.path.trim_end_matches('/'))
    )]
    SlashOnSymlink { path: String, grant: String },
    #[error(
        "path `{}` has a bad escape at byte {at}: names that are not UTF-8 are written `\\xHH` (bytes 80 to ff, lower case) and a backslash `\\\\`, exactly as a walk reports them",
        p(.path)
    )]
    BadEscape { path: String, at: usize },
    #[error(
        "path `{}` is inside `{top}`, which belongs to mend (the trash and staging of runs); a step may not act on it",
        p(.path)
    )]
    HostOwned { path: String, top: &'static str },
}

/// A checked path: its grant and the relative rest ("" for the grant's root).
#[derive(Debug, Clone, Copy)]
pub struct Resolved<'a> {
    pub grant: &'a GrantDir,
    pub rel: &'a str,
}

impl Resolved<'_> {
    /// The real relative path for cap-std (`.` for the root), escapes of
    /// names that are not UTF-8 decoded (see [`crate::names`]).
    pub fn rel_path(&self) -> Cow<'_, Path> {
        mend_plan::names::decode(if self.rel.is_empty() { "." } else { self.rel })
    }
}

/// Whether `rel` (relative to a grant's root) is inside the host's own
/// trash or staging folder, and which. They are at the grant's root and at
/// the top of each volume mounted in it, so any component of that name is.
pub fn host_owned(rel: &str) -> Option<&'static str> {
    rel.split('/').find_map(|part| {
        [mend_plan::TRASH, mend_plan::STAGING]
            .into_iter()
            .find(|t| *t == part)
    })
}

/// Split `GRANT/rel` and check its shape, without touching the filesystem.
pub fn split(path: &str) -> Result<(&str, &str), PathError> {
    if path.len() > MAX_PATH {
        return Err(PathError::TooLong {
            head: mend_human::head(path, 64).0.to_string(),
            len: path.len(),
        });
    }
    if path.starts_with('/') {
        return Err(PathError::Absolute(path.to_string()));
    }
    let trimmed = path.trim_end_matches('/');
    let mut parts = trimmed.split('/');
    for part in trimmed.split('/') {
        if part == ".." {
            return Err(PathError::DotDot(path.to_string()));
        }
        if part.is_empty() || part == "." || part.contains('\0') {
            return Err(PathError::Malformed(path.to_string()));
        }
    }
    mend_plan::names::check(path).map_err(|e| PathError::BadEscape {
        path: path.to_string(),
        at: e.at,
    })?;
    let grant = parts.next().unwrap_or_default();
    Ok((grant, trimmed[grant.len()..].trim_start_matches('/')))
}

impl Grants {
    /// One writable grant `data` at `root`, for the host's own unit tests.
    #[cfg(test)]
    pub(crate) fn one_for_tests(root: &Path, disposable: bool) -> Grants {
        Grants::from_dirs(vec![GrantDir {
            name: "data".into(),
            root: root.to_path_buf(),
            access: mend_runbook::Access::Write,
            disposable,
            dir: Dir::open_ambient_dir(root, ambient_authority()).unwrap(),
        }])
    }

    /// Open the named grants of a runbook. A missing directory is an error
    /// that names the grant and its path.
    pub fn open<'a>(
        runbook: &mend_runbook::Runbook,
        names: impl IntoIterator<Item = &'a String>,
    ) -> anyhow::Result<Grants> {
        let mut dirs = Vec::new();
        for name in names {
            let g = &runbook.grants[name];
            let dir = Dir::open_ambient_dir(&g.path, ambient_authority()).map_err(|e| {
                anyhow::anyhow!(
                    "grant `{name}`: cannot open {}: {e}; create it or point the grant elsewhere (--set)",
                    g.path.display()
                )
            })?;
            dirs.push(GrantDir {
                name: name.clone(),
                root: g.path.clone(),
                access: g.access,
                disposable: g.disposable,
                dir,
            });
        }
        Ok(Grants {
            dirs,
            checked: Default::default(),
        })
    }

    /// Grants made directly (tests, and callers without a runbook).
    pub fn from_dirs(dirs: Vec<GrantDir>) -> Grants {
        Grants {
            dirs,
            checked: Default::default(),
        }
    }

    /// All grants.
    pub fn iter(&self) -> impl Iterator<Item = &GrantDir> {
        self.dirs.iter()
    }

    /// A grant by name.
    pub fn get(&self, name: &str) -> Option<&GrantDir> {
        self.dirs.iter().find(|g| g.name == name)
    }

    /// Check a path for reading: shape, grant held, no symlink out of it.
    pub fn read<'a>(&'a self, path: &'a str) -> Result<Resolved<'a>, PathError> {
        let (grant, rel) = split(path)?;
        let grant = self.get(grant).ok_or_else(|| PathError::NoGrant {
            path: path.to_string(),
            grant: grant.to_string(),
        })?;
        let r = Resolved { grant, rel };
        // `link/` means "the directory link points to": mend never follows
        // a link at the end of a path, so it refuses to guess.
        if path.ends_with('/')
            && !rel.is_empty()
            && grant
                .dir
                .symlink_metadata(mend_plan::names::decode(rel))
                .is_ok_and(|m| m.file_type().is_symlink())
        {
            return Err(PathError::SlashOnSymlink {
                path: path.to_string(),
                grant: grant.name.clone(),
            });
        }
        if let Some((parent, _)) = r.rel.rsplit_once('/') {
            let mut checked = self.checked.lock().expect("not poisoned");
            let seen = checked
                .get(&r.grant.name)
                .is_some_and(|dirs| dirs.contains(parent));
            if !seen {
                check_parents(&r, path)?;
                checked
                    .entry(r.grant.name.clone())
                    .or_default()
                    .insert(parent.to_string());
            }
        }
        Ok(r)
    }

    /// Check a path for changing: as `read`, and the grant must be writable.
    pub fn write<'a>(&'a self, path: &'a str) -> Result<Resolved<'a>, PathError> {
        let r = self.read(path)?;
        if r.grant.access != Access::Write {
            return Err(PathError::ReadOnly {
                path: path.to_string(),
                grant: r.grant.name.clone(),
            });
        }
        Ok(r)
    }
}

impl Grants {
    /// Check a path a step's action names: as `read` (or `write` when the
    /// action changes it), and never inside the host's trash or staging,
    /// which hold what undo needs.
    pub fn action<'a>(&'a self, path: &'a str, write: bool) -> Result<Resolved<'a>, PathError> {
        let r = if write {
            self.write(path)?
        } else {
            self.read(path)?
        };
        if let Some(top) = host_owned(r.rel) {
            return Err(PathError::HostOwned {
                path: path.to_string(),
                top,
            });
        }
        Ok(r)
    }
}

/// Refuse a path whose existing parent directories lead out of the grant
/// through a symlink. (cap-std refuses such escapes on every operation too;
/// checking here refuses the whole plan before anything is done.)
fn check_parents(r: &Resolved, path: &str) -> Result<(), PathError> {
    let Some((parent, _)) = r.rel.rsplit_once('/') else {
        return Ok(());
    };
    // A parent that does not exist yet is fine: check the part that does.
    let parent = mend_plan::names::decode(parent);
    let mut p: &Path = &parent;
    loop {
        match r.grant.dir.canonicalize(p) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match p.parent() {
                Some(up) if !up.as_os_str().is_empty() => p = up,
                _ => return Ok(()),
            },
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
                return Err(PathError::Loop {
                    path: path.to_string(),
                    grant: r.grant.name.clone(),
                });
            }
            Err(_) => {
                return Err(PathError::Escapes {
                    path: path.to_string(),
                    grant: r.grant.name.clone(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert_eq!(split("media/a/b").unwrap(), ("media", "a/b"));
        assert_eq!(split("media").unwrap(), ("media", ""));
        assert_eq!(split("media/").unwrap(), ("media", ""));
        assert!(matches!(split("/etc/passwd"), Err(PathError::Absolute(_))));
        assert!(matches!(split("media/../etc"), Err(PathError::DotDot(_))));
        assert!(matches!(split("media//x"), Err(PathError::Malformed(_))));
        assert!(matches!(split("media/./x"), Err(PathError::Malformed(_))));
        assert!(matches!(split(""), Err(PathError::Malformed(_))));
        let long = format!("media/{}", "x".repeat(MAX_PATH));
        let e = split(&long).unwrap_err();
        assert!(matches!(e, PathError::TooLong { len: 4102, .. }));
        assert!(e.to_string().len() < 200, "{e}");
        let shown = PathError::Absolute("/\x1b[2J".into()).to_string();
        assert!(shown.contains("`/\\x1b[2J`"), "{shown}");
    }
}

/// A checked path that owns its relative part (for derived paths such as a
/// trash entry).
#[derive(Debug)]
pub struct OwnedPath<'a> {
    pub grant: &'a GrantDir,
    pub rel: String,
}

impl<'a> Resolved<'a> {
    /// Copy the relative part.
    pub fn owned(&self) -> OwnedPath<'a> {
        OwnedPath {
            grant: self.grant,
            rel: self.rel.to_string(),
        }
    }
}

impl OwnedPath<'_> {
    /// Borrow as a [`Resolved`].
    pub fn borrow(&self) -> Resolved<'_> {
        Resolved {
            grant: self.grant,
            rel: &self.rel,
        }
    }
    /// `GRANT/rel`.
    pub fn display(&self) -> String {
        format!("{}/{}", self.grant.name, self.rel)
    }
}
