//! What the walk saw of the entries it last handed to a step, so that the
//! check of a removal the step plans from them sizes it and records its
//! [`mend_plan::Seen`] from that one `fstatat`, not a second: the plan then
//! shows and keeps what the step saw (no window between the walk's stat and
//! the check's), and a cull of a million files stats each once while it
//! plans. Bounded: the last two batches a walk handed over, whatever the
//! plan's size.

use std::collections::HashMap;

/// (size, mtime in nanoseconds) of each non-directory entry of the last
/// two batches handed to the step, by the path the walk gave it.
#[derive(Default, Debug)]
pub struct Walked {
    last: HashMap<String, (u64, i64)>,
    before: HashMap<String, (u64, i64)>,
}

/// One walk entry as [`Walked::keep`] takes it: path, whether it is a
/// directory, size, mtime (seconds, nanoseconds).
pub struct Entry<'a> {
    pub path: &'a str,
    pub dir: bool,
    pub size: u64,
    pub secs: i64,
    pub nanos: u32,
}

impl Walked {
    /// Keep a batch the walk hands over; the batch before the last is
    /// forgotten.
    pub fn keep<'a>(&mut self, batch: impl IntoIterator<Item = Entry<'a>>) {
        self.before = std::mem::take(&mut self.last);
        self.last.clear();
        for e in batch {
            // A directory is sized by its tree, which the walk did not see
            // whole. A time of 0 may be a time before the epoch the walk
            // reported as 0: stat again rather than record the wrong one.
            if e.dir || (e.secs == 0 && e.nanos == 0) {
                continue;
            }
            let ns = mend_plan::mtime_ns(e.secs, i64::from(e.nanos));
            self.last.insert(e.path.to_string(), (e.size, ns));
        }
    }

    /// What the walk saw at `path`, if it handed it over lately and it was
    /// not a directory.
    pub fn get(&self, path: &str) -> Option<(u64, i64)> {
        self.last
            .get(path)
            .or_else(|| self.before.get(path))
            .copied()
    }

    /// Entries held (for the tests of its bound).
    pub fn len(&self) -> usize {
        self.last.len() + self.before.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str) -> Entry<'_> {
        Entry {
            path,
            dir: false,
            size: 7,
            secs: 1_700_000_000,
            nanos: 5,
        }
    }

    #[test]
    fn keeps_the_last_two_batches_of_files_only() {
        let mut w = Walked::default();
        let dir = Entry {
            path: "g/d",
            dir: true,
            ..file("g/d")
        };
        w.keep([file("g/a"), dir]);
        assert_eq!(w.get("g/a"), Some((7, 1_700_000_000_000_000_005)));
        assert_eq!(w.get("g/d"), None, "a directory is sized by its tree");
        w.keep([file("g/b")]);
        assert!(w.get("g/a").is_some() && w.get("g/b").is_some());
        w.keep([file("g/c")]);
        assert_eq!(w.get("g/a"), None, "the batch before the last is forgotten");
        assert_eq!(w.len(), 2);
    }

    #[test]
    fn a_time_of_zero_is_not_trusted() {
        let mut w = Walked::default();
        w.keep([Entry {
            secs: 0,
            nanos: 0,
            ..file("g/old")
        }]);
        assert_eq!(w.get("g/old"), None);
    }
}
