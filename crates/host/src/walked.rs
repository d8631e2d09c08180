//! What the walk saw of the entries it last handed to a step, so that the
//! check of a removal the step plans from them sizes it and records its
//! [`mend_plan::Seen`] from that one `fstatat`, not a second: the plan then
//! shows and keeps what the step saw (no window between the walk's stat and
//! the check's), and a cull of a million files stats each once while it
//! plans. Bounded: the files of the last two generations of what a walk
//! handed over ([`GENERATION`] files each), whatever the plan's size.
//!
//! The same for a folder the step removes whole: the walk hands a folder's
//! tree over right after it (depth first), so the tree's size, count and
//! digest ([`mend_plan::Seen::Tree`]) are summed as it passes. A folder's
//! removal reaches the check up to a whole batch of actions after its tree
//! ended (thousands of walk batches later, if the folders between keep
//! their files), so trees are kept until the second check after they
//! ended ([`Walked::checked`]), at most [`TREES`] of them per generation.

use std::collections::HashMap;

/// (size, mtime in nanoseconds) of each non-directory entry of the last
/// two batches handed to the step, by the path the walk gave it.
#[derive(Default, Debug)]
pub struct Walked {
    last: HashMap<String, (u64, i64)>,
    before: HashMap<String, (u64, i64)>,
    /// Trees that ended since the last check, and before it.
    trees: HashMap<String, Tree>,
    trees_before: HashMap<String, Tree>,
    /// The directories the walk is inside, outermost first.
    open: Vec<(String, Tree)>,
}

/// What a walk saw below a directory: bytes and files (as a removal counts
/// them: everything but directories), and the digest of every entry
/// ([`mend_plan::tree_entry`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tree {
    pub bytes: u64,
    pub files: u64,
    pub digest: u64,
    /// An entry's time could not be trusted (see [`Walked::keep`]): the
    /// check reads the tree itself.
    pub unsure: bool,
}

impl Tree {
    fn add(&mut self, other: &Tree) {
        self.bytes += other.bytes;
        self.files += other.files;
        self.digest = self.digest.wrapping_add(other.digest);
        self.unsure |= other.unsure;
    }
}

/// Files a generation holds: a walk hands over its entries in batches of a
/// few hundred (as soon as they are stat'ed), while a step hands its plan
/// over every 2,048 actions, so at least this many of the files the walk
/// handed over last are kept.
pub const GENERATION: usize = 4096;

/// Trees kept at most per generation (about 100 bytes each): a walk that
/// passes more folders than that between a folder's end and the check of
/// its removal has the check read the folder again.
const TREES: usize = 65_536;

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
    /// Keep a batch the walk hands over. The files of the last two
    /// generations are kept: a generation ends once it holds
    /// [`GENERATION`] files, and the one before it is then forgotten.
    pub fn keep<'a>(&mut self, batch: impl IntoIterator<Item = Entry<'a>>) {
        self.rotate();
        let mut empty = true;
        for e in batch {
            empty = false;
            self.pass(&e);
            self.file(&e);
        }
        // The walk's end: every tree still open ended.
        if empty {
            while let Some((path, tree)) = self.open.pop() {
                self.ended(path, tree);
            }
        }
    }

    /// An entry the step asked `stat` for: kept as a walk's file is (a
    /// directory is not: its tree was not read), so that a removal the
    /// step plans from it is checked against what the step saw. One stat
    /// is a batch of its own.
    pub fn saw(&mut self, e: Entry<'_>) {
        self.rotate();
        self.file(&e);
    }

    /// A new generation, once the last holds [`GENERATION`] files.
    fn rotate(&mut self) {
        if self.last.len() >= GENERATION {
            self.before = std::mem::take(&mut self.last);
        }
    }

    /// Keep what `e` is, when it is a file whose time can be trusted.
    fn file(&mut self, e: &Entry) {
        // A directory is sized by its tree, which the walk did not see
        // whole. A time of 0 may be a time before the epoch the walk
        // reported as 0: stat again rather than record the wrong one.
        if e.dir || (e.secs == 0 && e.nanos == 0) {
            return;
        }
        let ns = mend_plan::mtime_ns(e.secs, i64::from(e.nanos));
        self.last.insert(e.path.to_string(), (e.size, ns));
    }

    /// A new walk starts: the trees a walk dropped half way never ended.
    pub fn start(&mut self) {
        self.open.clear();
    }

    /// Count `e` into the trees it is in, ending those it is not in.
    fn pass(&mut self, e: &Entry) {
        while let Some((top, _)) = self.open.last() {
            let inside = e.path.len() > top.len()
                && e.path.as_bytes()[top.len()] == b'/'
                && e.path.starts_with(top.as_str());
            if inside {
                break;
            }
            let (path, tree) = self.open.pop().expect("just seen");
            self.ended(path, tree);
        }
        if let Some((_, tree)) = self.open.last_mut() {
            let ns = mend_plan::mtime_ns(e.secs, i64::from(e.nanos));
            tree.digest = tree.digest.wrapping_add(mend_plan::tree_entry(
                e.path.as_bytes(),
                e.dir,
                e.size,
                ns,
            ));
            if !e.dir {
                tree.bytes += e.size;
                tree.files += 1;
                tree.unsure |= e.secs == 0 && e.nanos == 0;
            }
        }
        if e.dir {
            self.open.push((e.path.to_string(), Tree::default()));
        }
    }

    fn ended(&mut self, path: String, tree: Tree) {
        if let Some((_, parent)) = self.open.last_mut() {
            parent.add(&tree);
        }
        if !tree.unsure {
            if self.trees.len() >= TREES {
                self.trees_before = std::mem::take(&mut self.trees);
            }
            self.trees.insert(path, tree);
        }
    }

    /// The host checked what the step handed over: trees that ended before
    /// the check before are forgotten.
    pub fn checked(&mut self) {
        self.trees_before = std::mem::take(&mut self.trees);
    }

    /// What the walk saw below the directory `path`, if its tree ended in
    /// one of the last two batches.
    pub fn tree(&self, path: &str) -> Option<Tree> {
        self.trees
            .get(path)
            .or_else(|| self.trees_before.get(path))
            .copied()
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
        self.last.len() + self.before.len() + self.trees.len() + self.trees_before.len()
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
    fn keeps_the_files_of_the_last_two_generations_only() {
        let mut w = Walked::default();
        let dir = Entry {
            path: "g/d",
            dir: true,
            ..file("g/d")
        };
        let many = |from: usize| -> Vec<String> {
            (from..from + GENERATION - 1)
                .map(|i| format!("g/f{i}"))
                .collect()
        };
        let first = many(0);
        w.keep(std::iter::once(file("g/a")).chain(first.iter().map(|p| file(p))));
        w.keep([dir]);
        assert_eq!(w.get("g/a"), Some((7, 1_700_000_000_000_000_005)));
        assert_eq!(w.get("g/d"), None, "a directory is sized by its tree");
        // A generation is full: the next batches start another.
        w.keep([file("g/b")]);
        w.keep([file("g/c")]);
        assert!(w.get("g/a").is_some() && w.get("g/b").is_some() && w.get("g/c").is_some());
        let second = many(GENERATION);
        w.keep(second.iter().map(|p| file(p)));
        assert!(
            w.get("g/a").is_some(),
            "kept while its generation is the one before"
        );
        w.keep([file("g/e")]);
        assert_eq!(
            w.get("g/a"),
            None,
            "the generation before the last is forgotten"
        );
        assert!(w.get("g/b").is_some() && w.get("g/e").is_some());
        // The second generation (b, c and the rest), e, and g/d's tree,
        // which ended when g/b came.
        assert_eq!(w.len(), 2 + (GENERATION - 1) + 1 + 1);
    }

    #[test]
    fn a_tree_is_summed_as_the_walk_passes_and_kept_two_batches() {
        let mut w = Walked::default();
        let dir = |path| Entry {
            path,
            dir: true,
            size: 4096,
            secs: 1_700_000_000,
            nanos: 0,
        };
        let ns = 1_700_000_000_000_000_005;
        w.keep([dir("g/d"), file("g/d/a"), dir("g/d/e")]);
        assert_eq!(w.tree("g/d"), None, "not ended yet");
        w.keep([file("g/d/e/b"), file("g/z")]);
        let e = w.tree("g/d/e").expect("ended at g/z");
        assert_eq!((e.bytes, e.files), (7, 1));
        assert_eq!(e.digest, mend_plan::tree_entry(b"g/d/e/b", false, 7, ns));
        let d = w.tree("g/d").unwrap();
        assert_eq!((d.bytes, d.files), (14, 2));
        assert_eq!(
            d.digest,
            mend_plan::tree_entry(b"g/d/a", false, 7, ns)
                .wrapping_add(mend_plan::tree_entry(b"g/d/e", true, 0, 0))
                .wrapping_add(e.digest)
        );
        // The walk's end closes what is open.
        w.keep([dir("g/y"), file("g/y/c")]);
        assert_eq!(w.tree("g/y"), None);
        w.keep([]);
        assert_eq!(w.tree("g/y").map(|t| t.files), Some(1));
        // Kept across walk batches, until the second check after.
        w.checked();
        assert!(w.tree("g/d").is_some());
        w.checked();
        assert_eq!(w.tree("g/d"), None, "two checks later, forgotten");
    }

    #[test]
    fn a_tree_with_an_untrusted_time_is_read_again() {
        let mut w = Walked::default();
        let d = Entry {
            path: "g/d",
            dir: true,
            ..file("g/d")
        };
        let old = Entry {
            secs: 0,
            nanos: 0,
            ..file("g/d/old")
        };
        w.keep([d, old]);
        w.keep([]);
        assert_eq!(w.tree("g/d"), None);
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
