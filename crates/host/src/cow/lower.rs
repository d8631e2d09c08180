//! Where a rehearsal's walks read the lower layer itself.
//!
//! On an overlay a directory that has nothing in the upper layer (no copy
//! up, no whiteout, no redirect or opaque marker above it) lists and stats
//! exactly as its lower directory does. Reading it through the overlay
//! costs some 7 µs an entry against 1 on tmpfs (each first lookup makes an
//! overlay dentry and inode, and with `index=on` looks in the index), and
//! it contends with the removals the step makes while it still plans, on
//! the same directories' locks. So a walk reads such directories from the
//! lower layer, and the overlay only for what the run has changed.
//!
//! Only the rehearsal's child registers views, after mounting; a real run
//! has none and walks as it always did. Whatever this cannot be sure of (a
//! mount crossed, a marker above, a file with other links that `index=on`
//! may show with another copy's attributes) is read through the overlay.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use cap_std::fs::Dir;
use rustix::fs::{Mode, OFlags};

/// One overlay, as a walk may read it.
#[derive(Debug)]
pub struct View {
    /// The overlay's root (the merged view), as mounted on the grant.
    pub merged: Dir,
    /// Device and inode of `merged`: how a walk finds its view.
    id: (u64, u64),
    /// The real directory beneath (the lower layer), opened before the
    /// overlay hid it.
    pub lower: Dir,
    /// The lower layer's device: a directory on another one is a mount
    /// crossed in the real tree, never read this way.
    lower_dev: u64,
    /// The upper layer's root.
    upper: PathBuf,
}

static VIEWS: OnceLock<Vec<View>> = OnceLock::new();

/// The identity a walk looks a view up by: device and inode of a directory.
pub fn id_of(dir: &impl AsFd) -> io::Result<(u64, u64)> {
    let st = rustix::fs::fstat(dir)?;
    Ok((st.st_dev, st.st_ino))
}

impl View {
    /// A view of the overlay mounted on `merged`, over the real directory
    /// `lower` (an `O_PATH` fd), with its changes in `upper`.
    pub fn new(merged: &Path, lower: &OwnedFd, upper: &Path) -> io::Result<View> {
        let merged = Dir::open_ambient_dir(merged, cap_std::ambient_authority())?;
        let id = id_of(&merged)?;
        let lower = Dir::from_std_file(std::fs::File::from(lower.try_clone()?));
        let lower_dev = rustix::fs::fstat(&lower)?.st_dev;
        Ok(View {
            merged,
            id,
            lower,
            lower_dev,
            upper: upper.to_path_buf(),
        })
    }

    /// Whether `rel` (in this overlay) has no entry in the upper layer.
    pub fn untouched(&self, rel: &Path) -> bool {
        matches!(
            rustix::fs::lstat(self.upper.join(rel)),
            Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR)
        )
    }

    /// Whether the upper directory `rel` (which exists) changes what lies
    /// beneath it (see [`super::upper::hides_lower`]).
    pub fn hides_lower(&self, rel: &Path) -> bool {
        super::upper::hides_lower(&self.upper.join(rel))
    }

    /// `rel`, opened in the lower layer, if it is a directory on the lower
    /// layer's own device (a mount crossed is read through the overlay).
    pub fn open_lower(&self, rel: &Path) -> Option<Dir> {
        self.open_below(&self.lower, rel)
    }

    /// `rel` under `at` (the lower layer or a directory in it), as
    /// [`View::open_lower`]: beneath it, no symlink followed, no mount crossed.
    pub fn open_below(&self, at: &Dir, rel: &Path) -> Option<Dir> {
        use rustix::fs::ResolveFlags as R;
        let fd = rustix::fs::openat2(
            at,
            rel,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            R::BENEATH | R::NO_SYMLINKS | R::NO_XDEV | R::NO_MAGICLINKS,
        )
        .ok()?;
        let st = rustix::fs::fstat(&fd).ok()?;
        (st.st_dev == self.lower_dev).then(|| Dir::from_std_file(std::fs::File::from(fd)))
    }

    /// Where a directory `rel` of this overlay can be read: below when
    /// nothing of it is in the upper layer and no marker is above it;
    /// else through the overlay, `clear` when no marker is on it or above
    /// (so its children may still be read below).
    pub fn place(&self, rel: &Path) -> Place {
        let mut at = PathBuf::from(".");
        let parts = rel.components().filter(|c| *c != Component::CurDir);
        for part in std::iter::once(None).chain(parts.map(Some)) {
            if let Some(p) = part {
                at.push(p);
            }
            if self.untouched(&at) {
                return Place::Below;
            }
            if self.hides_lower(&at) {
                return Place::Merged { clear: false };
            }
        }
        Place::Merged { clear: true }
    }

    /// The merged view's device: a directory of the walk on another one
    /// is a mount inside the grant (a volume, with an overlay of its own).
    pub fn merged_dev(&self) -> u64 {
        self.id.0
    }
}

/// Where a walk reads a directory from; see [`View::place`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Below,
    Merged { clear: bool },
}

/// Register this process's overlays once they are mounted; a second call
/// changes nothing.
pub fn register(views: Vec<View>) {
    let _ = VIEWS.set(views);
}

/// The view whose merged root is the directory `id`, if any.
pub fn view(id: (u64, u64)) -> Option<&'static View> {
    VIEWS.get()?.iter().find(|v| v.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An upper layer as the run leaves it: a copied-up folder, an opaque
    /// one (removed and made again), a renamed one (redirect), and names
    /// with nothing in it. `trusted.` markers need root, as overlays do.
    #[test]
    fn a_walk_reads_below_only_where_the_upper_layer_has_nothing_above_or_at_it() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: trusted.overlay markers need root");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let (lower, upper) = (t.path().join("lower"), t.path().join("upper"));
        for d in ["copied/sub", "opaque/sub", "moved/sub", "plain/sub"] {
            std::fs::create_dir_all(lower.join(d)).unwrap();
        }
        std::os::unix::fs::symlink("plain", lower.join("link")).unwrap();
        for d in ["copied", "opaque/sub", "moved"] {
            std::fs::create_dir_all(upper.join(d)).unwrap();
        }
        let mark = |d: &str, name: &str, value: &[u8]| {
            rustix::fs::setxattr(upper.join(d), name, value, rustix::fs::XattrFlags::empty())
                .unwrap()
        };
        mark("opaque", "trusted.overlay.opaque", b"y");
        mark("moved", "trusted.overlay.redirect", b"/elsewhere");
        let view = View::new(
            &lower,
            &super::super::overlay::open_path(&lower).unwrap(),
            &upper,
        )
        .unwrap();
        let place = |rel: &str| view.place(Path::new(rel));
        let clear = Place::Merged { clear: true };
        let hidden = Place::Merged { clear: false };
        // The upper root is always there; nothing marks it.
        assert_eq!(place(""), clear);
        assert_eq!(place("plain"), Place::Below);
        assert_eq!(place("plain/sub"), Place::Below);
        assert_eq!(place("copied"), clear);
        assert_eq!(place("copied/sub"), Place::Below);
        // Below an opaque or redirected folder the lower layer is not what
        // the overlay shows, even where the upper has nothing.
        assert_eq!(place("opaque"), hidden);
        assert_eq!(place("opaque/sub"), hidden);
        assert_eq!(place("opaque/other"), hidden);
        assert_eq!(place("moved"), hidden);
        assert_eq!(place("moved/sub"), hidden);
        // Opened below: never through a symlink, never what is not a folder.
        assert!(view.open_lower(Path::new("plain/sub")).is_some());
        assert!(view.open_lower(Path::new("link")).is_none());
        assert!(view.open_lower(Path::new("link/sub")).is_none());
        assert!(view.open_lower(Path::new("../lower")).is_none());
    }
}
