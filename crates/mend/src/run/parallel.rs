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
//! grouped by the directory they are in (so threads do not queue on one
//! directory's lock), and each thread takes whole groups, in order, with
//! its own directory handles.
//!
//! `find -delete` removes one file at a time; on a cache of a million files
//! the unlinks are most of its time, and unlinks in different directories
//! do not wait for each other.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use mend_host::apply::{self, ApplyCtx, Key};
use mend_plan::{Planned, Pre, Undo};

/// Threads per batch at most: the unlinks of a cull scale to a few cores,
/// and a server has other work.
const THREADS: usize = 4;
/// Cores a machine needs before unlinks go on threads. Measured on 2 cores
/// (tmpfs, 1,000 folders): two unlink threads gained 10% on 100,000 files
/// and lost 30% on 1,000,000. Each unlink leaves work the kernel finishes on
/// every core (the inode and dentry are freed by RCU callbacks, the page
/// goes back through the zone's lock, the inode leaves the superblock's
/// list), and on 2 cores the second thread takes the core that work needs;
/// a profile of the threaded run shows those locks and callbacks, not ours.
/// Decided by the machine, never by timing, so a run is the same every time.
const MIN_CORES: usize = 4;
/// Batches smaller than this go one removal at a time: threads would cost
/// more than they save.
const PARALLEL_FROM: usize = 256;

/// What became of each removal of a batch, in the batch's order: `None`
/// when it was not performed (another one failed first).
pub(crate) type Outcomes = Vec<Option<anyhow::Result<Undo>>>;

/// Perform the removals `actions` (step `step`'s actions from seq `lo`, with
/// their journaled states before), with the crash points of every action.
pub(crate) fn perform_removals(
    cx: &ApplyCtx<'_>,
    run: &str,
    step: u32,
    lo: u32,
    actions: &[Planned],
    pres: &[Pre],
) -> Outcomes {
    // An armed fault or crash point must meet the action it names: one at
    // a time (see `mend_faults::one_at_a_time`).
    if actions.len() < PARALLEL_FROM || mend_faults::one_at_a_time() {
        return serial(cx, run, step, lo, actions, pres);
    }
    let threads = threads(cores(), actions);
    if threads < 2 {
        return serial(cx, run, step, lo, actions, pres);
    }
    let mut out: Outcomes = (0..actions.len()).map(|_| None).collect();
    let failed = AtomicBool::new(false);
    for seg in segments(actions) {
        let groups = groups(actions, seg.clone());
        if groups.len() < 2 {
            for i in seg {
                if failed.load(Ordering::Relaxed) {
                    break;
                }
                let r = one(
                    &mut apply::Batch::default(),
                    cx,
                    (run, step),
                    lo,
                    actions,
                    pres,
                    i,
                );
                failed.fetch_or(r.is_err(), Ordering::Relaxed);
                out[i] = Some(r);
            }
        } else {
            let next = AtomicUsize::new(0);
            // A removal's notes (one left in place) go back to the caller's
            // note on this thread, after the workers.
            let notes = std::sync::Mutex::new(Vec::new());
            let note = |line: String| notes.lock().expect("notes").push(line);
            let sync_cx = &SyncCtx::of(cx, &note);
            let done: Vec<Vec<(usize, anyhow::Result<Undo>)>> = std::thread::scope(|s| {
                let workers: Vec<_> = (0..threads.min(groups.len()))
                    .map(|_| {
                        s.spawn(|| {
                            let cx = sync_cx.ctx();
                            let mut batch = apply::Batch::default();
                            let mut mine = Vec::new();
                            loop {
                                let g = next.fetch_add(1, Ordering::Relaxed);
                                let Some(group) = groups.get(g) else { break };
                                batch.forget();
                                for &i in group {
                                    if failed.load(Ordering::Relaxed) {
                                        return mine;
                                    }
                                    let r = one(&mut batch, &cx, (run, step), lo, actions, pres, i);
                                    failed.fetch_or(r.is_err(), Ordering::Relaxed);
                                    mine.push((i, r));
                                }
                            }
                            mine
                        })
                    })
                    .collect();
                workers
                    .into_iter()
                    .map(|w| w.join().expect("a removal thread panicked"))
                    .collect()
            });
            for (i, r) in done.into_iter().flatten() {
                out[i] = Some(r);
            }
            for line in notes.into_inner().expect("notes") {
                (cx.note)(line);
            }
        }
        if failed.load(Ordering::Relaxed) {
            break;
        }
    }
    out
}

/// The machine's cores, read once: `available_parallelism` reads the
/// cgroup's files each call (0.6% of a 1,000,000-file cull, once a batch).
fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Threads for a batch of removals on a machine of `cores` cores (1: one
/// at a time). Trash moves never go on threads: every one renames into the
/// same trash folder, and a rename across folders holds the filesystem's
/// rename lock and both folders' locks, so threads only queue (the profile
/// of a threaded trash cull shows them spinning on that lock).
fn threads(cores: usize, actions: &[Planned]) -> usize {
    if let Some(n) = forced() {
        return n;
    }
    if cores < MIN_CORES || actions.iter().any(|a| a.reversible) {
        return 1;
    }
    cores.min(THREADS)
}

/// `MEND_REMOVAL_THREADS=N` (1 to 16): threads for every batch of
/// removals, trash moves too, whatever the machine. The tests run the
/// threaded path with it on 2 cores, where it is otherwise never taken; an
/// operator can try another count on a machine of their own.
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
/// order, groups in order of their first removal.
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
    out
}

/// What a worker thread needs of [`ApplyCtx`]: its progress callback
/// stays on the calling thread (a removal reports none); its notes are
/// collected for the calling thread.
struct SyncCtx<'a> {
    grants: &'a mend_host::grants::Grants,
    commands: &'a mend_host::commands::CommandPolicy,
    step: &'a str,
    timeout: std::time::Duration,
    note: &'a (dyn Fn(String) + Sync),
}

impl<'a> SyncCtx<'a> {
    fn of(cx: &ApplyCtx<'a>, note: &'a (dyn Fn(String) + Sync)) -> Self {
        SyncCtx {
            grants: cx.grants,
            commands: cx.commands,
            step: cx.step,
            timeout: cx.timeout,
            note,
        }
    }
    fn ctx(&self) -> ApplyCtx<'a> {
        ApplyCtx {
            grants: self.grants,
            commands: self.commands,
            step: self.step,
            timeout: self.timeout,
            progress: &|_| {},
            note: self.note,
            on_overlay: crate::run::overlay::upper_scratch().is_some(),
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
    fn threads_only_for_unlinks_on_machines_with_cores_to_spare() {
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
        assert_eq!(threads(1, &unlinks), 1);
        assert_eq!(
            threads(2, &unlinks),
            1,
            "2 cores: the kernel needs the other"
        );
        assert_eq!(threads(4, &unlinks), 4);
        assert_eq!(threads(64, &unlinks), THREADS);
        assert_eq!(
            threads(64, &moves),
            1,
            "trash moves queue on the rename lock"
        );
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
