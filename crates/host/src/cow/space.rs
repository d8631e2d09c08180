//! Will a step's changes fit in the upper layer? Not a copy of the grant:
//! what overlayfs writes for what the step does. Measured on kernel 6.18
//! (5,000 entries each): a copy-up of metadata costs an inode and no block
//! on tmpfs, about 4 KiB on ext4 (the overlay's xattrs spill out of a
//! 256 B inode) and 1.3 KiB on btrfs; a rename or removal into the trash
//! copies up the entry and leaves a whiteout (2 inodes), once more per
//! parent directory; new files cost their bytes and an inode each.

use std::collections::BTreeSet;
use std::path::Path;

use mend_plan::{Action, Planned};

/// What a step's actions need in the upper layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Need {
    pub bytes: u64,
    pub inodes: u64,
}

/// A command's changes are unknown: room for a modest rewrite.
const EXEC_BYTES: u64 = 64 << 20;

/// Bytes one copied-up entry's metadata takes on `fs` (a statfs name).
fn per_entry(fs: &str) -> u64 {
    match fs {
        "tmpfs" => 0,
        "btrfs" => 1536,
        _ => 4096,
    }
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map(|(p, _)| p).unwrap_or("")
}

/// The estimate for `actions` with the upper layer on `fs`.
pub fn need(actions: &[&Planned], fs: &str) -> Need {
    let mut e = Estimate::new(fs);
    for p in actions {
        e.add(p);
    }
    e.need()
}

/// [`need`], one action at a time: a step's plan is read a batch at a
/// time (a million removals are never held whole); only the set of
/// directories already counted grows, with the tree's folders.
pub struct Estimate {
    entry: u64,
    n: Need,
    dirs: BTreeSet<String>,
}

impl Estimate {
    pub fn new(fs: &str) -> Estimate {
        Estimate {
            entry: per_entry(fs),
            n: Need::default(),
            dirs: BTreeSet::new(),
        }
    }

    pub fn need(&self) -> Need {
        self.n
    }

    fn touch(&mut self, path: &str, inodes: u64) {
        self.n.inodes += inodes;
        self.n.bytes += self.entry * inodes.min(1);
        // Each directory above a touched entry is copied up once.
        let mut p = parent(path);
        while !p.is_empty() && !self.dirs.contains(p) {
            self.dirs.insert(p.to_string());
            self.n.inodes += 1;
            self.n.bytes += self.entry;
            p = parent(p);
        }
    }

    pub fn add(&mut self, p: &Planned) {
        match &p.action {
            Action::Remove { path } => self.touch(path, 2),
            Action::Rename { path, to } => {
                self.touch(path, 2);
                self.touch(to, 0);
            }
            Action::Swap { path, with } => {
                self.touch(path, 2);
                self.touch(with, 2);
            }
            Action::CreateDir { path } => self.touch(path, 1),
            Action::WriteFile { path, contents, .. } => {
                self.touch(path, 1);
                self.n.bytes += contents.len() as u64;
            }
            Action::Copy { path, .. }
            | Action::Extract { path, .. }
            | Action::Archive { path, .. } => {
                self.touch(path, p.files.max(1));
                self.n.bytes += p.bytes;
            }
            Action::SetOwner {
                path, recursive, ..
            }
            | Action::SetMode {
                path, recursive, ..
            } => {
                let k = if *recursive { p.files.max(1) } else { 1 };
                self.touch(path, k);
                self.n.bytes += self.entry * k.saturating_sub(1);
            }
            Action::Exec { .. } => self.n.bytes += EXEC_BYTES,
        }
    }
}

/// Kernel memory one tmpfs inode takes with its dentry (shmem inode ~0.8 KiB,
/// dentry 0.2 KiB): a private tmpfs's inodes cost memory, not a shared
/// filesystem's inode table.
const INODE_MEMORY: u64 = 1024;

/// What the kernel says it could still give (`MemAvailable`), in bytes.
fn mem_available() -> Option<u64> {
    std::fs::read_to_string("/proc/meminfo")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()
        .map(|k| k * 1024)
}

/// On the tmpfs a rehearsal mounted for its upper layers (`at`): raise its
/// size and inode limits so that they hold `need` on top of what it holds
/// now (with room for overlayfs's own entries), when memory allows; else
/// the message. The room check that follows then reads the grown limits.
pub fn grow_private(need: Need, at: &Path, step: &str) -> Result<(), String> {
    let Ok(st) = rustix::fs::statvfs(at) else {
        return Ok(());
    };
    let used_inodes = st.f_files.saturating_sub(st.f_ffree);
    let used_bytes = st.f_blocks.saturating_sub(st.f_bfree) * st.f_frsize;
    let want_inodes = used_inodes + need.inodes + need.inodes / 8 + 4096;
    let want_bytes = used_bytes + need.bytes + need.bytes / 8 + (16 << 20);
    let have_bytes = st.f_blocks * st.f_frsize;
    if want_inodes <= st.f_files && want_bytes <= have_bytes {
        return Ok(());
    }
    let memory = need.bytes + need.inodes * INODE_MEMORY;
    if let Some(avail) = mem_available()
        && memory > avail
    {
        return Err(format!(
            "not enough memory for the rehearsal's changes on its private tmpfs {}: step {step} needs ~{} and {} inodes (~{} of memory), {} available; rehearse with --scratch DIR on a disk",
            at.display(),
            mend_human::human_bytes(need.bytes),
            mend_human::human_count(need.inodes),
            mend_human::human_bytes(memory),
            mend_human::human_bytes(avail),
        ));
    }
    super::overlay::mount_tmpfs(
        at,
        want_bytes.max(have_bytes),
        want_inodes.max(st.f_files),
        true,
    )
    .map_err(|e| {
        format!(
            "cannot grow the rehearsal's private tmpfs {}: {e}",
            at.display()
        )
    })
}

/// Whether the filesystem of `scratch` holds `need`; else the message
/// (naming the step, the sizes, and what to do).
pub fn check(need: Need, scratch: &Path, step: &str) -> Result<(), String> {
    let Ok(st) = rustix::fs::statvfs(scratch) else {
        return Ok(());
    };
    let free = st.f_bavail.saturating_mul(st.f_frsize);
    // Filesystems that count no inodes say 0 of 0.
    let inodes = (st.f_files > 0).then_some(st.f_favail);
    let short_bytes = need.bytes > free;
    let short_inodes = inodes.is_some_and(|i| need.inodes > i);
    if !short_bytes && !short_inodes {
        return Ok(());
    }
    Err(format!(
        "not enough room for the rehearsal's changes in {} ({}): step {step} needs ~{} and {} inodes, {} and {} inodes free; rehearse with --scratch DIR on a filesystem with more room",
        scratch.display(),
        super::overlay::fs_name(scratch),
        mend_human::human_bytes(need.bytes),
        mend_human::human_count(need.inodes),
        mend_human::human_bytes(free),
        inodes
            .map(mend_human::human_count)
            .unwrap_or_else(|| "unlimited".into()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planned(action: Action) -> Planned {
        Planned {
            action,
            bytes: 100,
            files: 1,
            reversible: true,
            reason: String::new(),
            seen: None,
        }
    }

    #[test]
    fn a_cull_needs_inodes_not_the_bytes_it_removes_on_tmpfs() {
        let acts: Vec<Planned> = (0..1000)
            .map(|i| {
                planned(Action::Remove {
                    path: format!("media/d{}/f{i}", i / 500),
                })
            })
            .collect();
        let refs: Vec<&Planned> = acts.iter().collect();
        let n = need(&refs, "tmpfs");
        // 2 per file, and media, media/d0, media/d1 once each.
        assert_eq!(
            n,
            Need {
                bytes: 0,
                inodes: 2003
            }
        );
        let e = need(&refs, "ext4");
        assert_eq!(e.bytes, 1003 * 4096);
    }
}
