//! The paths a rehearsal's check leaves out: what the plan called
//! irreversible (a disposable removal), each `NAME/rel`, and everything
//! below it. A disposable cull of half a million single files skips half a
//! million paths, and the check asks about every entry it reads: a sorted
//! set answers in the depth of the path, where a list cost entries times
//! paths (hours at that size).

use std::collections::BTreeSet;

/// Where a rehearsal on overlays moves a disposable folder it removes
/// whole, relative to the grant: one rename on the overlay instead of a
/// whiteout per file. Inside mend's trash, so no walk sees it; never in a
/// real run.
pub const GRAVEYARD: &str = ".mend-trash/rehearsal-removed";

/// Irreversible paths, as `NAME/rel`, borrowed from the run's outcome (a
/// copy of half a million paths would double a rehearsal's memory).
#[derive(Debug, Default, Clone)]
pub struct Skip<'a>(BTreeSet<&'a str>);

impl<'a> Skip<'a> {
    pub fn new(paths: impl IntoIterator<Item = &'a str>) -> Self {
        Skip(paths.into_iter().collect())
    }

    pub fn insert(&mut self, path: &'a str) {
        self.0.insert(path);
    }

    /// `full` is a skipped path or below one.
    pub fn covers(&self, full: &str) -> bool {
        if self.0.contains(full) {
            return true;
        }
        full.char_indices()
            .filter(|(_, c)| *c == '/')
            .any(|(i, _)| self.0.contains(&full[..i]))
    }

    /// A skipped path is strictly below `full`: a directory whose entries
    /// and times the run changed by design.
    pub fn is_above(&self, full: &str) -> bool {
        // Every path below `full` sorts after "full/" and before "full0"
        // ('0' follows '/'): the first one at or after "full/" tells.
        let prefix = format!("{full}/");
        self.0
            .range(prefix.as_str()..)
            .next()
            .is_some_and(|s| s.starts_with(&prefix))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skipped_path_covers_itself_and_below_only() {
        let s = Skip::new(["media/a", "media/x/y"]);
        assert!(s.covers("media/a"));
        assert!(s.covers("media/a/b"));
        assert!(s.covers("media/a/b/c"));
        assert!(!s.covers("media/ab"));
        assert!(!s.covers("media"));
        assert!(!s.covers("media/x"));
        assert!(s.covers("media/x/y/z"));
        assert!(!s.covers("media/x/yz"));
    }

    #[test]
    fn a_directory_is_above_only_what_is_strictly_below_it() {
        // "media/a-b" and "media/a.b" sort between "media/a" and
        // "media/a/": neither is below "media/a".
        let s = Skip::new(["media/a-b", "media/a.b"]);
        assert!(!s.is_above("media/a"));
        assert!(s.is_above("media"));
        let s = Skip::new(["media/a/b/c"]);
        assert!(s.is_above("media/a"));
        assert!(s.is_above("media/a/b"));
        assert!(!s.is_above("media/a/b/c"));
        assert!(!s.is_above("media/ab"));
    }

    /// The set answers as the list it replaced did, on names that sort
    /// around '/' ('-', '.', '0').
    #[test]
    fn the_set_answers_as_a_scan_of_the_list() {
        let names = ["a", "a-1", "a.1", "a0", "a/b", "a/b-c", "a/b/c", "b"];
        let paths: Vec<String> = names.iter().map(|n| format!("g/{n}")).collect();
        for k in 0..(1 << names.len()) {
            let chosen: Vec<String> = (0..names.len())
                .filter(|i| k & (1 << i) != 0)
                .map(|i| paths[i].clone())
                .collect();
            let s = Skip::new(chosen.iter().map(String::as_str));
            for p in paths.iter().map(String::as_str).chain(["g"]) {
                let covers = chosen.iter().any(|c| {
                    p.strip_prefix(c.as_str())
                        .is_some_and(|r| r.is_empty() || r.starts_with('/'))
                });
                let above = chosen.iter().any(|c| c.starts_with(&format!("{p}/")));
                assert_eq!(s.covers(p), covers, "covers {p} of {chosen:?}");
                assert_eq!(s.is_above(p), above, "is_above {p} of {chosen:?}");
            }
        }
    }

    #[test]
    fn the_graveyard_is_inside_the_trash() {
        assert!(GRAVEYARD.starts_with(&format!("{}/", mend_plan::TRASH)));
        assert!(crate::grants::host_owned(GRAVEYARD).is_some());
    }
}
