//! Host helpers about filesystems that restores need: whether a granted
//! directory is a mount point (a volume, which cannot be swapped away), and
//! how two granted trees differ in what a restore must bring back (owner,
//! group, mode, times, types, sizes, link targets).

use std::collections::BTreeMap;
use std::path::Path;

use cap_std::fs::{Dir, MetadataExt as _};

use super::bindings::mend::runbook::types::HostError;
use crate::grants::Grants;

fn denied(e: crate::grants::PathError) -> HostError {
    HostError::Denied(e.to_string())
}

fn io(path: &str, e: std::io::Error) -> HostError {
    match e.kind() {
        std::io::ErrorKind::NotFound => HostError::NotFound(path.to_string()),
        _ => HostError::Io(format!("{path}: {e}")),
    }
}

/// Whether `path` is the top of a mounted filesystem: its device differs
/// from its parent's (or it is its own parent, `/`).
pub fn mount_point(grants: &Grants, path: &str) -> Result<bool, HostError> {
    let r = grants.read(path).map_err(denied)?;
    let md = r
        .grant
        .dir
        .symlink_metadata(r.rel_path())
        .map_err(|e| io(path, e))?;
    if !md.is_dir() {
        return Ok(false);
    }
    let parent = match r.rel.rsplit_once('/') {
        Some((p, _)) => r
            .grant
            .dir
            .symlink_metadata(mend_plan::names::decode(p))
            .map(|m| (m.dev(), m.ino())),
        None if !r.rel.is_empty() => r.grant.dir.metadata(".").map(|m| (m.dev(), m.ino())),
        // The grant's own root: its parent is outside the grant.
        None => {
            let up = r.grant.root.parent().unwrap_or(Path::new("/"));
            std::fs::metadata(up).map(|m| {
                use std::os::unix::fs::MetadataExt as _;
                (m.dev(), m.ino())
            })
        }
    }
    .map_err(|e| io(path, e))?;
    Ok(parent.0 != md.dev() || parent == (md.dev(), md.ino()))
}

/// What a restore must bring back of one entry.
#[derive(PartialEq, Eq)]
struct Meta {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: (i64, i64),
    link: Option<std::path::PathBuf>,
}

impl Meta {
    fn line(&self) -> String {
        format!(
            "{} {:o} {}:{} {} B, mtime {}.{:09}{}",
            self.kind,
            self.mode & 0o7777,
            self.uid,
            self.gid,
            self.size,
            self.mtime.0,
            self.mtime.1,
            self.link
                .as_ref()
                .map(|l| format!(" -> {}", l.display()))
                .unwrap_or_default()
        )
    }
}

/// Entries below `rel` (not `rel` itself), by path relative to it. mend's
/// own trash and staging folders are not part of the data.
fn entries(dir: &Dir, rel: &Path) -> std::io::Result<BTreeMap<String, Meta>> {
    let mut out = BTreeMap::new();
    let top = dir.open_dir(rel)?;
    let mut stack = vec![(top, String::new())];
    while let Some((d, at)) = stack.pop() {
        for e in d.entries()? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if at.is_empty() && (name == mend_plan::TRASH || name == mend_plan::STAGING) {
                continue;
            }
            let md = e.metadata()?;
            let ft = md.file_type();
            let path = if at.is_empty() {
                name.clone()
            } else {
                format!("{at}/{name}")
            };
            let kind = if ft.is_symlink() {
                "link"
            } else if ft.is_dir() {
                "dir"
            } else if ft.is_file() {
                "file"
            } else {
                "special"
            };
            let link = if ft.is_symlink() {
                Some(d.read_link_contents(&name)?)
            } else {
                None
            };
            if ft.is_dir() {
                stack.push((e.open_dir()?, path.clone()));
            }
            out.insert(
                path,
                Meta {
                    kind,
                    mode: md.mode(),
                    uid: md.uid(),
                    gid: md.gid(),
                    size: if ft.is_dir() { 0 } else { md.len() },
                    mtime: (md.mtime(), md.mtime_nsec()),
                    link,
                },
            );
        }
    }
    Ok(out)
}

/// How the contents of `a` and `b` differ: at most `max` lines.
pub fn compare(grants: &Grants, a: &str, b: &str, max: u32) -> Result<Vec<String>, HostError> {
    let ra = grants.read(a).map_err(denied)?;
    let rb = grants.read(b).map_err(denied)?;
    let ea = entries(&ra.grant.dir, &ra.rel_path()).map_err(|e| io(a, e))?;
    let eb = entries(&rb.grant.dir, &rb.rel_path()).map_err(|e| io(b, e))?;
    let max = max.clamp(1, 10_000) as usize;
    let mut out = Vec::new();
    let mut more = 0u64;
    let mut say = |line: String| {
        if out.len() < max {
            out.push(line)
        } else {
            more += 1
        }
    };
    for (path, m) in &ea {
        match eb.get(path) {
            None => say(format!("{path}: missing from {b}")),
            Some(n) if n != m => say(format!("{path}: {} in {a}, {} in {b}", m.line(), n.line())),
            _ => {}
        }
    }
    for path in eb.keys().filter(|p| !ea.contains_key(*p)) {
        say(format!("{path}: in {b}, not in {a}"));
    }
    if more > 0 {
        out.push(format!("... and {} more", mend_human::human_count(more)));
    }
    Ok(out)
}
