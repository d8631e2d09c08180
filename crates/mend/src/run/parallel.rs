//! The removals of one journal batch, performed by a few threads at once.
//!
//! A batch is intended (journaled, one commit) before any of its removals
//! is performed and done after all of them, and each removal checks the
//! world as it goes (a resumed batch finds what was already removed), so
//! the order inside a batch is free as long as no removal depends on
//! another. One does when it names a directory that holds an earlier one
//! of the batch (a cull removes the folders it emptied, after their files)
//! or lies inside an earlier one: such a removal starts a new segment, and
//! segments run one after the other. Inside a segment the removals are
//! grouped by the directory they are in, each group cut into runs of at
//! most [`RUN`], and each thread takes whole runs, in order, with its own
//! directory handles.
//!
//! `find -delete` and `pg_archivecleanup` remove one file at a time; the
//! unlinks are most of their time, and two unlinks wait for each other only
//! while the directory is changed: the check before each (a stat) and the
//! freeing of the inode after it (its pages, its cache entries) run beside
//! the other. Measured on 2 cores (tmpfs, one folder, a stat before each
//! unlink): 5,000 files in 30 ms on one thread, 16.5 ms on two; 100,000 in
//! 645 ms and 330 ms. On ext4, 20,000 files: 1.2 s and 0.8 s.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use mend_host::apply::{self, ApplyCtx, Key};
use mend_plan::{Planned, Pre, Undo};

/// Threads per batch at most: the unlinks of a cull scale to a few cores,
/// and a server has other work.
const THREADS: usize = 4;
/// Removals a thread takes at a time: one directory's, in plan order.
const RUN: usize = 128;
/// Batches smaller than this go one removal at a time: threads would cost
/// more than they save.
const PARALLEL_FROM: usize = 256;

/// What became of each removal of a batch, in the batch's order: `None`
/// when it was not performed (another one failed first).
pub(crate) type Outcomes = Vec<Option<anyhow::Result<Undo>>>;

/// Perform the removals `actions` (step `step`'s actions from seq `lo`, with
/// their journaled states before), with the crash points of every action.
/// While `planning` is set the step's walk keeps a core; when it ends,
/// threads join for the runs left.
pub(crate) fn perform_removals(
    cx: &ApplyCtx<'_>,
    (run, step, lo): (&str, u32, u32),
    actions: &[Planned],
    pres: &[Pre],
    planning: Option<&AtomicBool>,
) -> Outcomes {
    // An armed fault or crash point must meet the action it names: one at
    // a time (see `mend_faults::one_at_a_time`).
    if actions.len() < PARALLEL_FROM || mend_faults::one_at_a_time() {
        return serial(cx, run, step, lo, actions, pres);
    }
    let busy = || usize::from(planning.is_some_and(|p| p.load(Ordering::Relaxed)));
    // The most threads the batch may have, once no step plans beside it.
    let most = threads(cores(), 0, actions);
    if most < 2 {
        return serial(cx, run, step, lo, actions, pres);
    }
    let mut out: Outcomes = (0..actions.len()).map(|_| None).collect();
    let failed = AtomicBool::new(false);
    let sync_cx = SyncCtx::of(cx);
    for seg in segments(actions) {
        let groups = groups(actions, seg.clone());
        let next = AtomicUsize::new(0);
        // One run of one directory's removals; false when none is left or
        // one failed. `between` is called after each removal.
        let take = |work: &mut Work, batch: &mut apply::Batch, between: &mut dyn FnMut()| {
            let Some(group) = groups.get(next.fetch_add(1, Ordering::Relaxed)) else {
                return false;
            };
            batch.forget();
            for &i in group {
                between();
                if failed.load(Ordering::Relaxed) {
                    return false;
                }
                let lines = std::cell::RefCell::new(Vec::new());
                let note = |line: String| lines.borrow_mut().push(line);
                let r = one(
                    batch,
                    &sync_cx.ctx(&note),
                    (run, step),
                    lo,
                    actions,
                    pres,
                    i,
                );
                // Written only on a failure: a write per removal kept the
                // line the other threads read bouncing between cores.
                if r.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                work.notes
                    .extend(lines.into_inner().into_iter().map(|l| (i, l)));
                work.outcomes.push((i, r));
            }
            true
        };
        let work = || {
            let (mut work, mut batch) = (Work::default(), apply::Batch::default());
            while take(&mut work, &mut batch, &mut || {}) {}
            work
        };
        // The calling thread is one of the workers, and starts the others
        // the free cores allow: before its first run, and once the step's
        // planning ends, after the removal it was doing (not at the end of
        // its run: a run of 128 unlinks is a millisecond).
        let most = most.min(groups.len());
        let done: Vec<Work> = std::thread::scope(|s| {
            let mut others = Vec::new();
            let more = |others: &mut Vec<_>| {
                if 1 + others.len() < most {
                    let wanted = on_free_cores(cores(), busy()).min(groups.len());
                    while 1 + others.len() < wanted {
                        others.push(s.spawn(work));
                    }
                }
            };
            let (mut mine, mut batch) = (Work::default(), apply::Batch::default());
            more(&mut others);
            while take(&mut mine, &mut batch, &mut || more(&mut others)) {}
            let mut done = vec![mine];
            done.extend(
                others
                    .into_iter()
                    .map(|w| w.join().expect("a removal thread panicked")),
            );
            done
        });
        // What removals said (one left in place) goes to the caller in plan
        // order, whichever thread did them.
        let mut notes = Vec::new();
        for w in done {
            for (i, r) in w.outcomes {
                out[i] = Some(r);
            }
            notes.extend(w.notes);
        }
        notes.sort_by_key(|(i, _)| *i);
        for (_, line) in notes {
            (cx.note)(line);
        }
        if failed.load(Ordering::Relaxed) {
            break;
        }
    }
    out
}

/// What one thread did, each by the removal's index in the batch.
#[derive(Default)]
struct Work {
    outcomes: Vec<(usize, anyhow::Result<Undo>)>,
    notes: Vec<(usize, String)>,
}

/// The machine's cores, read once: `available_parallelism` reads the
/// cgroup's files each call (0.6% of a 1,000,000-file cull, once a batch).
fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Threads for a batch of removals on a machine of `cores` cores, `busy` of
/// them with other work of the run (1: one at a time). Trash moves never
/// go on threads: every one renames into the same trash folder, and a
/// rename across folders holds the filesystem's rename lock and both
/// folders' locks, so threads only queue (the profile of a threaded trash
/// cull shows them spinning on that lock). No more threads than free
/// cores: each unlink leaves work the kernel finishes (the inode and dentry
/// freed by RCU callbacks, the pages given back through the zone's lock),
/// and a thread that takes the core of the step's walk slows both. The
/// count never changes what is done, only how fast: each removal checks
/// the world, and the outcomes are read in plan order.
fn threads(cores: usize, busy: usize, actions: &[Planned]) -> usize {
    if forced().is_none() && actions.iter().any(|a| a.reversible) {
        return 1;
    }
    on_free_cores(cores, busy)
}

/// Threads for unlinks on `cores` cores, `busy` of them with other work:
/// what [`threads`] gives once a batch is known to hold no trash moves,
/// asked again after each removal of the calling thread's until the step's
/// planning ends.
fn on_free_cores(cores: usize, busy: usize) -> usize {
    if let Some(n) = forced() {
        return n;
    }
    let free = cores.saturating_sub(busy);
    if free < 2 { 1 } else { free.min(THREADS) }
}

/// `MEND_REMOVAL_THREADS=N` (1 to 16): threads for every batch of
/// removals, trash moves too, whatever the machine and however busy. The
/// tests run the threaded path with it for trash moves, and for unlinks
/// while a step plans, where it is otherwise never taken; an operator can
/// try another count on a machine of their own.
fn forced() -> Option<usize> {
    static FORCED: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    *FORCED.get_or_init(|| {
        let v = std::env::var("MEND_REMOVAL_THREADS").ok()?;
        match v.trim().parse::<usize>() {
            Ok(n @ 1..=16) => Some(n),
            _ => {
                tracing::warn!("MEND_REMOVAL_THREADS=`{v}` is not 1 to 16: ignored");
                None
            }
        }
    })
}

/// One removal, between its crash points, as the serial loop does it.
fn one(
    batch: &mut apply::Batch,
    cx: &ApplyCtx<'_>,
    (run, step): (&str, u32),
    lo: u32,
    actions: &[Planned],
    pres: &[Pre],
    i: usize,
) -> anyhow::Result<Undo> {
    let seq = lo + i as u32;
    let k = Key { run, step, seq };
    mend_faults::crash_point("intent", step, seq);
    let r = apply::perform_planned_in(batch, cx, &k, &actions[i], &pres[i]);
    if r.is_ok() {
        mend_faults::crash_point("perform", step, seq);
    }
    r
}

/// In plan order, stopping at the first failure.
fn serial(
    cx: &ApplyCtx<'_>,
    run: &str,
    step: u32,
    lo: u32,
    actions: &[Planned],
    pres: &[Pre],
) -> Outcomes {
    let mut batch = apply::Batch::default();
    let mut out: Outcomes = (0..actions.len()).map(|_| None).collect();
    for (i, slot) in out.iter_mut().enumerate() {
        let r = one(&mut batch, cx, (run, step), lo, actions, pres, i);
        let stop = r.is_err();
        *slot = Some(r);
        if stop {
            break;
        }
    }
    out
}

fn path(p: &Planned) -> &str {
    match &p.action {
        mend_plan::Action::Remove { path } => path.trim_end_matches('/'),
        // Not a removal: shares nothing with anything (a batch of the
        // journal's bulk form only holds removals).
        _ => "",
    }
}

fn ancestors(p: &str) -> impl Iterator<Item = &str> {
    let mut up = p;
    std::iter::from_fn(move || {
        let (parent, _) = up.rsplit_once('/')?;
        up = parent;
        Some(parent)
    })
}

/// The batch cut where a removal depends on an earlier one of its segment:
/// it names a directory above one of them, or lies at or below one.
fn segments(actions: &[Planned]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut paths, mut dirs) = (0, HashSet::new(), HashSet::new());
    for (i, a) in actions.iter().enumerate() {
        let p = path(a);
        let depends = p.is_empty()
            || paths.contains(p)
            || dirs.contains(p)
            || ancestors(p).any(|d| paths.contains(d));
        if depends && i > start {
            out.push(start..i);
            start = i;
            paths.clear();
            dirs.clear();
        }
        paths.insert(p);
        dirs.extend(ancestors(p));
    }
    if start < actions.len() {
        out.push(start..actions.len());
    }
    out
}

/// A segment's removals by the directory they are in, each group in plan
/// order and cut into runs of at most [`RUN`], groups in order of their
/// first removal.
fn groups(actions: &[Planned], seg: std::ops::Range<usize>) -> Vec<Vec<usize>> {
    let mut at: HashMap<&str, usize> = HashMap::new();
    let mut out: Vec<Vec<usize>> = Vec::new();
    for i in seg {
        let parent = path(&actions[i]).rsplit_once('/').map_or("", |(d, _)| d);
        let g = *at.entry(parent).or_insert_with(|| {
            out.push(Vec::new());
            out.len() - 1
        });
        out[g].push(i);
    }
    out.into_iter()
        .flat_map(|g| g.chunks(RUN).map(<[usize]>::to_vec).collect::<Vec<_>>())
        .collect()
}

/// What a worker thread needs of [`ApplyCtx`]: its progress callback
/// stays on the calling thread (a removal reports none), and each removal
/// gets a note of its own (see `perform_removals`).
struct SyncCtx<'a> {
    grants: &'a mend_host::grants::Grants,
    commands: &'a mend_host::commands::CommandPolicy,
    step: &'a str,
    timeout: std::time::Duration,
    on_overlay: bool,
}

impl<'a> SyncCtx<'a> {
    fn of(cx: &ApplyCtx<'a>) -> Self {
        SyncCtx {
            grants: cx.grants,
            commands: cx.commands,
            step: cx.step,
            timeout: cx.timeout,
            on_overlay: cx.on_overlay,
        }
    }
    fn ctx<'n>(&self, note: &'n dyn Fn(String)) -> ApplyCtx<'n>
    where
        'a: 'n,
    {
        ApplyCtx {
            grants: self.grants,
            commands: self.commands,
            step: self.step,
            timeout: self.timeout,
            progress: &|_| {},
            note,
            on_overlay: self.on_overlay,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rm(p: &str) -> Planned {
        Planned {
            action: mend_plan::Action::Remove { path: p.into() },
            bytes: 0,
            files: 1,
            reversible: false,
            reason: String::new(),
            seen: None,
        }
    }

    #[test]
    fn a_folder_emptied_by_the_batch_waits_for_its_files() {
        let a: Vec<Planned> = ["c/a/1", "c/b/1", "c/a/2", "c/a", "c/b/2", "c/b", "c"]
            .iter()
            .map(|p| rm(p))
            .collect();
        // c/a holds c/a/1: cut before it; c/b holds c/b/1... but c/b/1 is in
        // the first segment, c/b/2 in the second with c/a: cut before c/b;
        // c holds c/b: cut before c.
        assert_eq!(segments(&a), vec![0..3, 3..5, 5..6, 6..7]);
        assert_eq!(groups(&a, 0..3), vec![vec![0, 2], vec![1]]);
    }

    #[test]
    fn threads_only_for_unlinks_and_only_on_free_cores() {
        let unlinks: Vec<Planned> = (0..300)
            .map(|i| rm(&format!("c/d{}/f{i}", i % 9)))
            .collect();
        let moves: Vec<Planned> = unlinks
            .iter()
            .cloned()
            .map(|p| Planned {
                reversible: true,
                ..p
            })
            .collect();
        assert_eq!(threads(1, 0, &unlinks), 1);
        assert_eq!(threads(2, 0, &unlinks), 2);
        assert_eq!(
            threads(2, 1, &unlinks),
            1,
            "2 cores, one planning: the step's walk keeps its core"
        );
        assert_eq!(threads(4, 0, &unlinks), 4);
        assert_eq!(threads(4, 1, &unlinks), 3);
        assert_eq!(threads(64, 0, &unlinks), THREADS);
        assert_eq!(
            threads(64, 0, &moves),
            1,
            "trash moves queue on the rename lock"
        );
    }

    #[test]
    fn one_directory_is_cut_into_runs_in_plan_order() {
        let a: Vec<Planned> = (0..300)
            .map(|i| rm(&format!("wal/{i:024X}")))
            .chain(std::iter::once(rm("other/x")))
            .collect();
        let g = groups(&a, 0..a.len());
        let lens: Vec<usize> = g.iter().map(Vec::len).collect();
        assert_eq!(lens, vec![RUN, RUN, 300 - 2 * RUN, 1]);
        let flat: Vec<usize> = g.concat();
        let mut wal: Vec<usize> = flat[..300].to_vec();
        wal.sort_unstable();
        assert_eq!(flat[..300], wal[..], "each run and the runs in plan order");
        assert_eq!(flat[300], 300);
    }

    /// On threads (2 free cores or more), files rewritten since the plan
    /// are each left in place and said, in plan order, and every other one
    /// is removed once.
    #[test]
    fn what_threads_say_comes_back_in_plan_order() {
        use std::os::unix::fs::MetadataExt as _;
        let tmp = tempfile::tempdir().unwrap();
        let n = 600;
        let seen = |i: usize| {
            let p = tmp.path().join(format!("f{i:03}"));
            std::fs::write(&p, b"x").unwrap();
            let m = std::fs::metadata(&p).unwrap();
            mend_plan::Seen::File {
                size: m.len(),
                mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
            }
        };
        let actions: Vec<Planned> = (0..n)
            .map(|i| Planned {
                seen: Some(seen(i)),
                ..rm(&format!("data/f{i:03}"))
            })
            .collect();
        // Rewritten after the plan saw them: a service touched them.
        let changed: Vec<usize> = (0..n).filter(|i| i % 97 == 5).collect();
        for i in &changed {
            std::fs::write(tmp.path().join(format!("f{i:03}")), b"longer").unwrap();
        }
        let grants = mend_host::grants::Grants::from_dirs(vec![mend_host::grants::GrantDir {
            name: "data".into(),
            root: tmp.path().to_path_buf(),
            access: mend_runbook::Access::Write,
            disposable: true,
            dir: cap_std::fs::Dir::open_ambient_dir(tmp.path(), cap_std::ambient_authority())
                .unwrap(),
        }]);
        let notes = std::cell::RefCell::new(Vec::new());
        let note = |line: String| notes.borrow_mut().push(line);
        let cx = ApplyCtx {
            grants: &grants,
            commands: &Default::default(),
            step: "cull",
            timeout: std::time::Duration::from_secs(60),
            progress: &|_| {},
            note: &note,
            on_overlay: false,
        };
        let pres: Vec<Pre> = vec![Pre::default(); n];
        let out = perform_removals(&cx, ("run", 0, 0), &actions, &pres, None);
        assert!(out.iter().all(|o| matches!(o, Some(Ok(_)))));
        let said: Vec<String> = notes.into_inner();
        let want: Vec<String> = changed.iter().map(|i| format!("data/f{i:03}")).collect();
        assert_eq!(said.len(), want.len(), "{said:#?}");
        for (line, path) in said.iter().zip(&want) {
            assert!(
                line.contains(path.as_str()),
                "{line} is not about {path}: {said:#?}"
            );
        }
        let mut left: Vec<String> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| format!("data/{}", e.unwrap().file_name().to_string_lossy()))
            .collect();
        left.sort();
        assert_eq!(left, want, "exactly the rewritten files are left");
    }

    #[test]
    fn a_path_inside_an_earlier_tree_or_twice_waits() {
        let a: Vec<Planned> = ["c/t", "c/t/x", "c/u", "c/u"]
            .iter()
            .map(|p| rm(p))
            .collect();
        assert_eq!(segments(&a), vec![0..1, 1..3, 3..4]);
    }
}
