//! `std:cache-cull`: keep a cache directory in bounds, as Mastodon's
//! `tootctl media remove --days N` would: remove files older than N days, or
//! the oldest first until the tree fits a size budget, or both; then remove
//! the directories that were left empty. Symlinks are never followed.
//!
//! A folder whose every file goes (nothing kept, excluded or mounted below
//! it) is removed whole, in one action: the host checks its tree is still
//! exactly what the walk saw, and moves it to the trash in one rename
//! instead of a rename per file.

use std::collections::{BTreeMap, BTreeSet};

use mend_sdk::prelude::*;

/// The runbook's `with` table.
#[derive(Params, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// GRANT/dir: the cache to cull
    path: String,
    /// remove files older than this many days
    days: Option<u64>,
    /// remove files older than this many minutes
    ///
    /// Strictly older, as `find -mmin +N`.
    minutes: Option<u64>,
    /// then remove oldest files until at most this
    ///
    /// Bytes the tree may hold after the age cut, oldest removed first.
    max_bytes: Option<u64>,
    /// only cull files matching these globs
    ///
    /// Globs on the path below `path`.
    #[serde(default)]
    include: Vec<String>,
    /// never cull files matching these globs
    #[serde(default)]
    exclude: Vec<String>,
    /// remove directories left empty
    #[param(default = true)]
    remove_empty_dirs: bool,
}

/// The step.
pub struct CacheCull;

struct File {
    path: String,
    size: u64,
    mtime: i64,
}

/// A folder the walk is inside.
struct Open {
    path: String,
    /// Every file below it goes, so far, and it is no mount point.
    whole: bool,
    /// Where its removals start in [`Whole::held`].
    start: usize,
    /// Files culled below it.
    files: u64,
}

/// A removal held back while its folder may still go whole.
enum Held {
    File(String),
    Folder(String, u64),
}

/// The folders the walk is inside and the removals held for them: at most
/// [`HELD_CAP`], whatever the cache's size (a folder of more goes file by
/// file, as before).
struct Whole<'a> {
    open: Vec<Open>,
    held: Vec<Held>,
    why: &'a str,
}

/// Removals held back at most (see [`Whole`]).
const HELD_CAP: usize = 4096;

impl Whole<'_> {
    /// Close the folders `path` is not in.
    fn enter(&mut self, path: &str, plan: &mut PlanBuilder, dirs: &mut BTreeSet<String>) {
        while let Some(top) = self.open.last() {
            let inside = path.len() > top.path.len()
                && path.as_bytes()[top.path.len()] == b'/'
                && path.starts_with(top.path.as_str());
            if inside {
                break;
            }
            self.close(plan, dirs);
        }
    }

    fn close(&mut self, plan: &mut PlanBuilder, dirs: &mut BTreeSet<String>) {
        let Some(o) = self.open.pop() else { return };
        // A folder with no file below is left to the empty-folder pass.
        if !o.whole || o.files == 0 {
            return;
        }
        self.held.truncate(o.start);
        match self.open.last_mut() {
            Some(up) if up.whole => {
                up.files += o.files;
                self.held.push(Held::Folder(o.path, o.files));
            }
            _ => self.emit(Held::Folder(o.path, o.files), plan, dirs),
        }
    }

    /// A culled file.
    fn file(&mut self, path: String, plan: &mut PlanBuilder, dirs: &mut BTreeSet<String>) {
        match self.open.last_mut() {
            Some(o) if o.whole => {
                o.files += 1;
                self.held.push(Held::File(path));
                if self.held.len() > HELD_CAP {
                    self.spoil(plan, dirs);
                }
            }
            _ => *plan = std::mem::take(plan).remove(&path, self.why),
        }
    }

    /// Something below every open folder stays: none of them goes whole,
    /// and what was held goes file by file.
    fn spoil(&mut self, plan: &mut PlanBuilder, dirs: &mut BTreeSet<String>) {
        for o in &mut self.open {
            o.whole = false;
        }
        for h in std::mem::take(&mut self.held) {
            self.emit(h, plan, dirs);
        }
    }

    fn emit(&self, h: Held, plan: &mut PlanBuilder, dirs: &mut BTreeSet<String>) {
        *plan = match h {
            Held::File(path) => std::mem::take(plan).remove(&path, self.why),
            Held::Folder(path, n) => {
                // Its tree goes with it: no empty-folder removal below it.
                let below: Vec<String> = dirs
                    .range(format!("{path}/")..format!("{path}0"))
                    .cloned()
                    .collect();
                for d in below {
                    dirs.remove(&d);
                }
                dirs.remove(&path);
                std::mem::take(plan).remove(
                    &path,
                    &format!(
                        "all {} file{} in it {}",
                        human_count(n),
                        if n == 1 { "" } else { "s" },
                        self.why
                    ),
                )
            }
        };
    }
}

impl Step for CacheCull {
    type Params = Params;
    const SUMMARY: &'static str = "Remove cache files by age and size budget";

    fn plan(_cx: &Context, p: Params, host: &dyn Host) -> Result<Plan, StepError> {
        let age = match (p.days, p.minutes) {
            (Some(_), Some(_)) => {
                return Err(StepError::new("both `days` and `minutes` are set")
                    .hint("give the age cut once, in days or in minutes")
                    .param("minutes"));
            }
            (Some(d), None) => Some((d as i64 * 86_400, format!("older than {d} days"))),
            (None, Some(m)) => Some((m as i64 * 60, format!("older than {m} minutes"))),
            (None, None) => None,
        };
        if age.is_none() && p.max_bytes.is_none() {
            return Err(StepError::new(
                "nothing to cull by: neither `days` nor `max_bytes` is set",
            )
            .hint("set `days = 30` to cull by age, `max_bytes` for a size budget, or both"));
        }
        let root = p.path.trim_end_matches('/');
        let now = host.now();
        // Older than the cut means strictly older: as `find -mmin +N`, a file
        // exactly N minutes old stays.
        let cut = age.as_ref().map(|(secs, why)| (now - secs, why.as_str()));
        // Files culled by age go into the plan as the walk finds them (the
        // builder hands them to the host in batches): a cache of millions
        // of files is never held. Only the candidates of a size budget are.
        let mut plan = Plan::builder();
        let mut dirs = BTreeSet::new();
        // Per top-level subdirectory: files removed, their bytes, files kept.
        let mut per_dir: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
        // Directory -> entries that stay below it (kept files, excluded
        // ones, sockets): such a directory is never empty.
        let mut left: BTreeMap<String, usize> = BTreeMap::new();
        let mut candidates: Vec<File> = Vec::new();
        let top = |path: &str| -> String {
            let rel = &path[root.len() + 1..];
            rel.split_once('/').map_or(".", |(t, _)| t).to_string()
        };
        // Folders go whole only when emptied ones are removed at all, and
        // only by the age cut (a size budget's choice waits for the walk's end).
        let wholes = p.remove_empty_dirs && cut.is_some();
        let mut mount_points = BTreeSet::new();
        let mut whole = Whole {
            open: Vec::new(),
            held: Vec::new(),
            why: cut.map_or("", |(_, why)| why),
        };
        host.walk(root, &mut |e| {
            let rel = &e.path[root.len() + 1..];
            if wholes {
                whole.enter(&e.path, &mut plan, &mut dirs);
            }
            match e.kind {
                EntryKind::Dir => {
                    if wholes {
                        // A volume's mount point stays (see below), and so
                        // does every folder above it.
                        let mount = host.mount_point(&e.path).unwrap_or(false);
                        if mount {
                            mount_points.insert(e.path.clone());
                            whole.spoil(&mut plan, &mut dirs);
                        }
                        whole.open.push(Open {
                            path: e.path.clone(),
                            whole: !mount,
                            start: whole.held.len(),
                            files: 0,
                        });
                    }
                    dirs.insert(e.path);
                }
                EntryKind::File | EntryKind::Symlink if selected(rel, &p.include, &p.exclude) => {
                    match cut {
                        Some((cut, _)) if e.mtime < cut => {
                            let slot = per_dir.entry(top(&e.path)).or_default();
                            slot.0 += 1;
                            slot.1 += e.size;
                            if wholes {
                                whole.file(e.path, &mut plan, &mut dirs);
                            } else {
                                plan = std::mem::take(&mut plan).remove(&e.path, whole.why);
                            }
                        }
                        _ if p.max_bytes.is_some() => {
                            whole.spoil(&mut plan, &mut dirs);
                            candidates.push(File {
                                path: e.path,
                                size: e.size,
                                mtime: e.mtime,
                            })
                        }
                        _ => {
                            whole.spoil(&mut plan, &mut dirs);
                            per_dir.entry(top(&e.path)).or_default().2 += 1;
                            *left.entry(parent(&e.path).to_string()).or_default() += 1;
                        }
                    }
                }
                _ => {
                    whole.spoil(&mut plan, &mut dirs);
                    *left.entry(parent(&e.path).to_string()).or_default() += 1
                }
            }
        })
        .map_err(|e| StepError::from(e).param("path"))?;
        while !whole.open.is_empty() {
            whole.close(&mut plan, &mut dirs);
        }

        if let Some(budget) = p.max_bytes {
            let mut cull = vec![false; candidates.len()];
            let mut kept: u64 = candidates.iter().map(|f| f.size).sum();
            let mut order: Vec<usize> = (0..candidates.len()).collect();
            order.sort_by_key(|&i| (candidates[i].mtime, candidates[i].path.clone()));
            for i in order {
                if kept <= budget {
                    break;
                }
                cull[i] = true;
                kept -= candidates[i].size;
            }
            for (f, &c) in candidates.iter().zip(&cull) {
                let slot = per_dir.entry(top(&f.path)).or_default();
                if c {
                    slot.0 += 1;
                    slot.1 += f.size;
                    plan = plan.remove(&f.path, "over the size budget, oldest first");
                } else {
                    slot.2 += 1;
                    *left.entry(parent(&f.path).to_string()).or_default() += 1;
                }
            }
        }

        let (count, bytes) = per_dir.values().fold((0, 0), |a, v| (a.0 + v.0, a.1 + v.1));
        // The directories that free the most, then one line for the rest: a
        // cache of a thousand directories is read at 3am, and its total and
        // free space must not drown below a thousand lines.
        // (Those shown stay in name order, as a short list always was.)
        let mut biggest: Vec<(&String, &(u64, u64, u64))> = per_dir.iter().collect();
        biggest.sort_by(|a, b| b.1.1.cmp(&a.1.1).then(b.1.0.cmp(&a.1.0)).then(a.0.cmp(b.0)));
        let mut shown = biggest[..biggest.len().min(TOP_DIRS)].to_vec();
        shown.sort_by_key(|(top, _)| *top);
        for (top, (n, b, kept)) in shown {
            plan = plan.summary(format!(
                "{top}: {} files, {} to remove; {} kept",
                human_count(*n),
                human_bytes(*b),
                human_count(*kept)
            ));
        }
        if biggest.len() > TOP_DIRS {
            let rest = &biggest[TOP_DIRS..];
            let (n, b, kept) = rest
                .iter()
                .fold((0, 0, 0), |a, (_, v)| (a.0 + v.0, a.1 + v.1, a.2 + v.2));
            plan = plan.summary(format!(
                "{} more directories: {} files, {} to remove; {} kept",
                human_count(rest.len() as u64),
                human_count(n),
                human_bytes(b),
                human_count(kept)
            ));
        }
        plan = plan.summary(format!(
            "total: {} files, {}",
            human_count(count),
            human_bytes(bytes)
        ));
        // The disk-space report: what is free now, and after the cull.
        if let Ok(space) = host.free_space(root) {
            plan = plan.summary(format!(
                "free space: {} of {} now, about {} after",
                human_bytes(space.available),
                human_bytes(space.total),
                human_bytes(space.available.saturating_add(bytes))
            ));
        }

        if p.remove_empty_dirs {
            // A volume's mount point cannot be removed (EBUSY) and must not
            // be: it stays, and so does every directory above it.
            let mut mounts = 0;
            for d in &dirs {
                let mount = if wholes {
                    mount_points.contains(d)
                } else {
                    host.mount_point(d).unwrap_or(false)
                };
                if mount {
                    left.entry(d.clone()).or_default();
                    mounts += 1;
                }
            }
            if mounts > 0 {
                plan = plan.summary(format!(
                    "{mounts} mount point{} kept, though left empty",
                    if mounts == 1 { "" } else { "s" }
                ));
            }
            // A directory is left empty when no kept file or kept directory is below it.
            for d in &dirs {
                if left.contains_key(d) {
                    let mut up = parent(d);
                    while up.len() > root.len() {
                        left.entry(up.to_string()).or_default();
                        up = parent(up);
                    }
                }
            }
            // Deepest first, so children go before parents.
            let mut empty: Vec<&String> = dirs.iter().filter(|d| !left.contains_key(*d)).collect();
            empty.sort_by_key(|d| std::cmp::Reverse(d.matches('/').count()));
            for d in empty {
                plan = plan.remove(d, "left empty");
            }
        }
        Ok(plan.check(format!("{root} holds no culled file")).build())
    }
}

/// Top-level directories named one by one in the plan's summary.
const TOP_DIRS: usize = 10;

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(p, _)| p)
}

fn selected(rel: &str, include: &[String], exclude: &[String]) -> bool {
    (include.is_empty() || include.iter().any(|g| glob(g, rel)))
        && !exclude.iter().any(|g| glob(g, rel))
}

/// `*` matches any run (also across `/`), `?` one character.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

mend_sdk::export_step!(CacheCull);

#[cfg(test)]
mod tests {
    use super::*;
    use mend_sdk::testing::{FakeHost, plan, removed};
    use serde_json::json;

    const NOW: i64 = 1_700_000_000;
    const DAY: i64 = 86_400;

    fn host() -> FakeHost {
        FakeHost::new(NOW)
            .disposable_grant("cache")
            .file("cache/media/a/old.png", 1000, NOW - 40 * DAY)
            .file("cache/media/a/new.png", 2000, NOW - DAY)
            .file("cache/media/b/old.png", 3000, NOW - 31 * DAY)
            .file("cache/cards/x.jpg", 500, NOW - 100 * DAY)
            .file("cache/cards/keep.jpg", 500, NOW - 100 * DAY)
    }

    #[test]
    fn culls_by_age_and_empty_dirs() {
        let p = plan::<CacheCull>(
            &host(),
            json!({"path": "cache", "days": 30, "exclude": ["*/keep.*"]}),
        )
        .unwrap();
        assert_eq!(
            removed(&p),
            [
                "cache/cards/x.jpg",
                "cache/media/a/old.png",
                "cache/media/b"
            ]
        );
        assert!(
            p.summary
                .contains(&"media: 2 files, 4.0 kB to remove; 1 kept".to_string()),
            "{:?}",
            p.summary
        );
    }

    #[test]
    fn a_volume_left_empty_stays_with_the_dirs_above_it() {
        // cache/media/b is a volume's mount point, at cache/media/b: its only
        // file goes, the mount point and cache/media stay.
        let p = plan::<CacheCull>(
            &host().mount("cache/media/b"),
            json!({"path": "cache", "days": 30, "exclude": ["*/keep.*"]}),
        )
        .unwrap();
        assert_eq!(
            removed(&p),
            [
                "cache/cards/x.jpg",
                "cache/media/a/old.png",
                "cache/media/b/old.png"
            ]
        );
        assert!(
            p.summary
                .contains(&"1 mount point kept, though left empty".to_string()),
            "{:?}",
            p.summary
        );
    }

    #[test]
    fn a_cache_of_many_directories_names_the_ten_biggest_and_sums_the_rest() {
        let mut h = FakeHost::new(NOW).disposable_grant("cache");
        for i in 0..30u64 {
            // d00 frees the least, d29 the most.
            h = h.file(&format!("cache/d{i:02}/old"), 100 * (i + 1), NOW - 40 * DAY);
        }
        let p = plan::<CacheCull>(&h, json!({"path": "cache", "days": 30})).unwrap();
        let dirs: Vec<&String> = p.summary.iter().filter(|l| l.starts_with('d')).collect();
        assert_eq!(dirs.len(), 10, "{:?}", p.summary);
        // The ten that free the most, in name order.
        assert!(dirs[0].starts_with("d20: 1 files, 2.1 kB"), "{:?}", dirs);
        assert!(dirs[9].starts_with("d29: 1 files, 3.0 kB"), "{:?}", dirs);
        assert!(
            p.summary
                .contains(&"20 more directories: 20 files, 21.0 kB to remove; 0 kept".to_string()),
            "{:?}",
            p.summary
        );
        assert!(
            p.summary.iter().any(|l| l == "total: 30 files, 46.5 kB"),
            "{:?}",
            p.summary
        );
    }

    #[test]
    fn budget_takes_oldest_first() {
        let p = plan::<CacheCull>(
            &host(),
            json!({"path": "cache", "max_bytes": 3000, "remove_empty_dirs": false}),
        )
        .unwrap();
        // 7000 bytes in all; the oldest go until at most 3000 are left.
        assert_eq!(
            removed(&p),
            [
                "cache/cards/keep.jpg",
                "cache/cards/x.jpg",
                "cache/media/a/old.png",
                "cache/media/b/old.png"
            ]
        );
    }

    fn reason(p: &Plan, path: &str) -> String {
        p.actions
            .iter()
            .find(|a| matches!(&a.kind, mend_sdk::ActionKind::Remove(r) if r == path))
            .map(|a| a.reason.clone())
            .unwrap_or_else(|| panic!("no removal of {path}"))
    }

    #[test]
    fn a_folder_whose_every_file_goes_is_removed_whole_once() {
        let old = NOW - 40 * DAY;
        let h = FakeHost::new(NOW)
            .disposable_grant("cache")
            .file("cache/m/1/a/x", 10, old)
            .file("cache/m/1/a/y", 10, old)
            .file("cache/m/1/b/z", 10, old)
            // Sorts between `m/1` and `m/1/a` byte by byte: the walk is
            // depth first, so it comes after m/1's tree.
            .file("cache/m/1-2/keep", 10, NOW - DAY)
            .file("cache/m/2/old", 10, old)
            .file("cache/m/2/new", 10, NOW - DAY);
        let p = plan::<CacheCull>(&h, json!({"path": "cache", "days": 30})).unwrap();
        assert_eq!(removed(&p), ["cache/m/1", "cache/m/2/old"]);
        assert_eq!(
            reason(&p, "cache/m/1"),
            "all 3 files in it older than 30 days"
        );
        assert!(
            p.summary
                .contains(&"m: 4 files, 40 B to remove; 2 kept".to_string()),
            "{:?}",
            p.summary
        );
    }

    #[test]
    fn a_folder_with_a_volume_inside_goes_file_by_file() {
        let old = NOW - 40 * DAY;
        let h = FakeHost::new(NOW)
            .disposable_grant("cache")
            .file("cache/v/f", 10, old)
            .file("cache/v/inner/g", 10, old)
            .mount("cache/v/inner");
        let p = plan::<CacheCull>(&h, json!({"path": "cache", "days": 30})).unwrap();
        assert_eq!(removed(&p), ["cache/v/f", "cache/v/inner/g"]);
    }

    #[test]
    fn a_folder_of_more_files_than_are_held_goes_file_by_file() {
        let mut h = FakeHost::new(NOW).disposable_grant("cache");
        let n = HELD_CAP + 5;
        for i in 0..n {
            h = h.file(&format!("cache/big/{i:05}"), 1, NOW - 40 * DAY);
        }
        let p = plan::<CacheCull>(&h, json!({"path": "cache", "days": 30})).unwrap();
        let r = removed(&p);
        assert_eq!(r.len(), n + 1, "every file, then the folder left empty");
        assert_eq!(r[0], "cache/big/00000");
        assert_eq!(r[n], "cache/big");
        assert_eq!(reason(&p, "cache/big"), "left empty");
    }

    #[test]
    fn without_empty_folder_removal_every_file_goes_on_its_own() {
        let p = plan::<CacheCull>(
            &host(),
            json!({"path": "cache", "days": 30, "remove_empty_dirs": false}),
        )
        .unwrap();
        assert_eq!(
            removed(&p),
            [
                "cache/cards/keep.jpg",
                "cache/cards/x.jpg",
                "cache/media/a/old.png",
                "cache/media/b/old.png"
            ]
        );
    }

    #[test]
    fn refuses_without_a_criterion() {
        let e = plan::<CacheCull>(&host(), json!({"path": "cache"})).unwrap_err();
        assert!(e.message.contains("neither `days` nor `max_bytes`"));
    }

    #[test]
    fn glob_matches() {
        assert!(glob("*.png", "a/b.png"));
        assert!(glob("a/?.png", "a/b.png"));
        assert!(!glob("*.png", "a/b.jpg"));
    }
}
