//! Undoing a journal batch of removals: the trash folder and the directory
//! a file goes back into are held open, so each file goes back in one
//! `renameat2`, not a cap-std walk of both paths and two stats; and each
//! directory's time is put back once, when the batch is done, instead of
//! once per file (only the last one counted). On an overlay each of those
//! walks and stats is a lookup in two layers: this is most of a
//! rehearsal's rollback.
//!
//! Handles are opened through the grant's cap-std `Dir` and used with
//! single components only, as in [`super::batch`]. Anything but a plain
//! move back (the file already back, something new in its place, an error)
//! goes to the general [`super::undo_only`], which looks and words it.

use std::collections::HashMap;

use anyhow::Result;
use cap_std::fs::Dir;

use super::batch::open_parent;
use super::{ApplyCtx, DirTimes, Pre, Undo, restore_times, undo_only, writable};

#[derive(Default)]
pub struct Unbatch {
    /// (grant, parent rel) and a handle on that directory.
    parent: Option<(String, String, Dir)>,
    /// (grant, trash folder rel) and a handle on it.
    trash: Option<(String, String, Dir)>,
    /// The directory times to put back, last one per directory.
    times: Vec<DirTimes>,
    index: HashMap<(String, String), usize>,
}

impl Unbatch {
    /// Undo one action of the batch; its directory times wait for
    /// [`Unbatch::finish`].
    pub fn undo(&mut self, cx: &ApplyCtx, undo: &Undo, pre: &Pre) -> Result<()> {
        let fast = match undo {
            Undo::Restore { trash, path } => self.restore(cx, trash, path)?,
            _ => false,
        };
        if !fast {
            // The general path may move or remove any directory.
            self.parent = None;
            self.trash = None;
            undo_only(cx, undo, pre)?;
        }
        self.keep_times(pre);
        Ok(())
    }

    /// The directory times `pre` saved, to be put back at the batch's end:
    /// also for an action found not performed, since a rollback killed
    /// after putting it back had not yet put back its directory's time.
    pub fn keep_times(&mut self, pre: &Pre) {
        for d in &pre.dirs {
            let key = (d.grant.clone(), d.rel.clone());
            match self.index.get(&key) {
                Some(&i) => self.times[i] = d.clone(),
                None => {
                    self.index.insert(key, self.times.len());
                    self.times.push(d.clone());
                }
            }
        }
    }

    /// Put back the times of every directory the batch's undos touched
    /// (also after a failed undo: those before it are recorded undone).
    pub fn finish(self, cx: &ApplyCtx) -> Result<()> {
        drop((self.parent, self.trash));
        for d in &self.times {
            restore_times(cx.grants, d)?;
        }
        Ok(())
    }

    /// The trash entry moved back onto its path, never over anything;
    /// `false` leaves it to the general path.
    fn restore(&mut self, cx: &ApplyCtx, trash: &str, path: &str) -> Result<bool> {
        let (t, p) = (writable(cx, trash)?, writable(cx, path)?);
        if t.rel.is_empty() || p.rel.is_empty() {
            return Ok(false);
        }
        let Ok((tdir, tleaf)) = open_parent(&mut self.trash, &t) else {
            return Ok(false);
        };
        let Ok((pdir, pleaf)) = open_parent(&mut self.parent, &p) else {
            return Ok(false);
        };
        Ok(rustix::fs::renameat_with(
            tdir,
            &*tleaf,
            pdir,
            &*pleaf,
            rustix::fs::RenameFlags::NOREPLACE,
        )
        .is_ok())
    }
}
