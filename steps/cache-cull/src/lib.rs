//! `std:cache-cull`: keep a cache directory in bounds, as Mastodon's
//! `tootctl media remove --days N` would: remove files older than N days, or
//! the oldest first until the tree fits a size budget, or both; then remove
//! the directories that were left empty. Symlinks are never followed.

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
        host.walk(root, &mut |e| {
            let rel = &e.path[root.len() + 1..];
            match e.kind {
                EntryKind::Dir => {
                    dirs.insert(e.path);
                }
                EntryKind::File | EntryKind::Symlink if selected(rel, &p.include, &p.exclude) => {
                    match cut {
                        Some((cut, why)) if e.mtime < cut => {
                            let slot = per_dir.entry(top(&e.path)).or_default();
                            slot.0 += 1;
                            slot.1 += e.size;
                            plan = std::mem::take(&mut plan).remove(&e.path, why);
                        }
                        _ if p.max_bytes.is_some() => candidates.push(File {
                            path: e.path,
                            size: e.size,
                            mtime: e.mtime,
                        }),
                        _ => {
                            per_dir.entry(top(&e.path)).or_default().2 += 1;
                            *left.entry(parent(&e.path).to_string()).or_default() += 1;
                        }
                    }
                }
                _ => *left.entry(parent(&e.path).to_string()).or_default() += 1,
            }
        })
        .map_err(|e| StepError::from(e).param("path"))?;

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
                if host.mount_point(d).unwrap_or(false) {
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
                "cache/media/b/old.png",
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
