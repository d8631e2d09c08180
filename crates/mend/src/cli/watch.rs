//! `mend watch [RUN|--latest] [--runbook NAME]`: follow a run another
//! process writes, from the journal itself (the durable record, not a side
//! channel): the story so far, then each change as it is committed, to the
//! run's end, whose exit code it exits with.
//!
//! It opens the journal read-only and polls `PRAGMA data_version` (no I/O):
//! it takes no lock, so it never stands in a run's way. Actions are counted,
//! never listed: at most one count line a second per step, and the final
//! count when the step ends.

#[allow(unused_imports)]
use crate::secrets::println;
use std::collections::HashMap;
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use mend_journal::{
    ActionState, Change, ChangeRecord, HistoryFilter, Journal, RunRecord, RunStatus, StepRecord,
    StepStatus,
};
use serde_json::json;

use crate::cli::Ctx;
use crate::exit;
use crate::outcome::Failure;

/// Between two polls of the journal.
const POLL: Duration = Duration::from_millis(200);
/// Without a change for this long, check that the run's process still lives.
const QUIET: Duration = Duration::from_secs(2);
/// At most one action count line per step this often.
const COUNT_EVERY: Duration = Duration::from_secs(1);
/// Changes read per query.
const PAGE: usize = 1000;

use crate::exit::RUN_ABANDONED;

pub(crate) fn run(cx: &Ctx, run: Option<&str>, runbook: Option<String>) -> Result<i32, Failure> {
    let state = &cx.settings.state_dir;
    let what = run.unwrap_or("--latest");
    let journal = Journal::open_read_only(state)?
        .ok_or_else(|| Failure::input(what, format!("no journal in {}", state.display()), None))?;
    let record = match run {
        Some(id) => journal
            .run(id)
            .map_err(|e| Failure::input(id, format!("{e:#}"), None))?,
        None => {
            let filter = HistoryFilter {
                runbook: runbook.clone(),
                status: None,
                limit: Some(1),
            };
            journal
                .history(&filter)?
                .into_iter()
                .next()
                .ok_or_else(|| {
                    let of = runbook.map_or(String::new(), |r| format!(" of runbook `{r}`"));
                    Failure::input(what, format!("no runs{of} in the journal"), None)
                })?
        }
    };
    let mut w = Watch::new(journal, record, cx.out.json, state);
    w.follow()
}

struct Watch<'a> {
    journal: Journal,
    run: RunRecord,
    json: bool,
    state: &'a Path,
    last_seq: i64,
    /// The last change read is the run's end mark: its writer is done.
    ended: bool,
    /// What was last printed, so a change that changed nothing shown is quiet.
    shown_status: Option<RunStatus>,
    steps: HashMap<u32, StepStatus>,
    counts: HashMap<u32, Vec<(ActionState, u64)>>,
    /// Counts read but not yet printed (throttled), and when each step's
    /// last count line was printed.
    pending: HashMap<u32, (i64, Vec<(ActionState, u64)>)>,
    counted_at: HashMap<u32, Instant>,
}

impl<'a> Watch<'a> {
    fn new(journal: Journal, run: RunRecord, json: bool, state: &'a Path) -> Watch<'a> {
        // Every line printed from here on masks the run's secret params.
        crate::secrets::add(&mend_journal::Redact::of_run(&run));
        Watch {
            journal,
            run,
            json,
            state,
            last_seq: 0,
            ended: false,
            shown_status: None,
            steps: HashMap::new(),
            counts: HashMap::new(),
            pending: HashMap::new(),
            counted_at: HashMap::new(),
        }
    }

    fn follow(&mut self) -> Result<i32, Failure> {
        let r = &self.run;
        if self.json {
            self.emit_json(json!({"watching": r.id, "runbook": r.runbook_name,
                "started_at": r.started_at}));
        } else {
            println!(
                "watching run {} · {} {} · started {}{}",
                r.id,
                mend_human::sanitize(&r.runbook_name),
                mend_human::sanitize(&r.runbook_version),
                mend_human::time::format_utc(r.started_at.div_euclid(1000)),
                r.started_by
                    .as_deref()
                    .map(|by| format!(" by {}", mend_human::sanitize(by)))
                    .unwrap_or_default()
            );
        }
        let mut version = self.journal.data_version()?;
        let mut quiet_since = Instant::now();
        loop {
            let batch = self
                .journal
                .changes_after(self.last_seq, Some(&self.run.id), PAGE)?;
            if !batch.is_empty() {
                self.show(&batch)?;
                quiet_since = Instant::now();
                continue;
            }
            // The end mark, not the terminal status: a commit still writes
            // the free space its purge left after it says "committed".
            if self.ended {
                return Ok(self.end());
            }
            self.flush_counts(false);
            // Nothing new: wait for a commit by anyone, then look again.
            loop {
                std::thread::sleep(POLL);
                let v = self.journal.data_version()?;
                if v != version {
                    version = v;
                    break;
                }
                if quiet_since.elapsed() >= QUIET {
                    quiet_since = Instant::now();
                    if !run_is_held(self.state, &self.run) {
                        // One more look: it may have ended as it let go.
                        if self.journal.data_version()? == version {
                            // Settled, but its writer died before the end
                            // mark: nothing more will come.
                            if self.run.status.is_terminal() {
                                return Ok(self.end());
                            }
                            return Ok(self.abandoned());
                        }
                        break;
                    }
                }
                self.flush_counts(false);
            }
        }
    }

    /// Shows a batch of changes: each key (the run, a step, a step's
    /// actions) once, at its latest change, in order; every event.
    fn show(&mut self, batch: &[ChangeRecord]) -> Result<(), Failure> {
        let last_of = |key: &Change| {
            batch
                .iter()
                .rposition(|c| same_key(&c.change, key))
                .expect("the key is in the batch")
        };
        for (i, c) in batch.iter().enumerate() {
            self.last_seq = c.seq;
            self.ended = c.change == Change::End;
            if !matches!(c.change, Change::Event { .. } | Change::End) && last_of(&c.change) != i {
                continue;
            }
            match c.change {
                Change::End => self.run = self.journal.run(&c.run_id)?,
                Change::Run => {
                    self.run = self.journal.run(&c.run_id)?;
                    if self.shown_status != Some(self.run.status) {
                        self.shown_status = Some(self.run.status);
                        if !self.run.status.is_terminal() {
                            let status = self.run.status.to_string();
                            self.line(c, "run", &status, json!({"status": status}));
                        }
                    }
                }
                Change::Step { step } => self.show_step(c, step)?,
                Change::Actions { step, .. } => {
                    let counts = self.journal.action_counts(&c.run_id, step)?;
                    if self.counts.get(&step) != Some(&counts) {
                        self.pending.insert(step, (c.at, counts));
                    }
                    self.flush_counts(false);
                }
                Change::Event { id } => {
                    let e = self.journal.event_by_id(id)?;
                    let who = match e.step_idx {
                        Some(s) => format!("{} step {s}", e.level),
                        None => e.level.clone(),
                    };
                    let text = mend_human::sanitize(&e.message);
                    self.line(
                        c,
                        &who,
                        &text,
                        json!({"level": e.level, "step": e.step_idx, "message": e.message}),
                    );
                }
            }
        }
        Ok(())
    }

    fn show_step(&mut self, c: &ChangeRecord, idx: u32) -> Result<(), Failure> {
        let steps = self.journal.steps(&c.run_id)?;
        let Some(step) = steps.into_iter().find(|s| s.idx == idx) else {
            return Ok(());
        };
        if self.steps.get(&idx) == Some(&step.status) {
            return Ok(());
        }
        self.steps.insert(idx, step.status);
        if step.status.is_finished() {
            // The step's final count before the line that ends it.
            self.flush_step_count(idx);
        }
        let text = step_text(&step);
        self.line(
            c,
            &format!("step {idx}"),
            &text,
            json!({"step": idx, "id": step.step_id, "status": step.status,
                   "error": step.error}),
        );
        Ok(())
    }

    /// Prints the pending count lines whose step was not counted in the
    /// last second (all of them with `all`).
    fn flush_counts(&mut self, all: bool) {
        let due: Vec<u32> = self
            .pending
            .keys()
            .copied()
            .filter(|s| {
                all || self
                    .counted_at
                    .get(s)
                    .is_none_or(|t| t.elapsed() >= COUNT_EVERY)
            })
            .collect();
        for step in due {
            self.flush_step_count(step);
        }
    }

    fn flush_step_count(&mut self, step: u32) {
        let Some((at, counts)) = self.pending.remove(&step) else {
            return;
        };
        let total: u64 = counts.iter().map(|(_, n)| n).sum();
        let finished: u64 = counts
            .iter()
            .filter(|(s, _)| matches!(s, ActionState::Done | ActionState::Undone))
            .map(|(_, n)| n)
            .sum();
        let parts: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
        let text = format!("actions {finished}/{total}: {}", parts.join(", "));
        let by_state: serde_json::Map<String, serde_json::Value> = counts
            .iter()
            .map(|(s, n)| (s.to_string(), json!(n)))
            .collect();
        self.print(
            at,
            &format!("step {step}"),
            &text,
            json!({"kind": "actions", "seq": self.last_seq, "step": step, "counts": by_state}),
        );
        self.counted_at.insert(step, Instant::now());
        self.counts.insert(step, counts);
    }

    fn line(&mut self, c: &ChangeRecord, who: &str, text: &str, mut data: serde_json::Value) {
        if let serde_json::Value::Object(m) = &mut data {
            m.insert("seq".into(), json!(c.seq));
            m.insert("kind".into(), json!(kind(&c.change)));
        }
        self.print(c.at, who, text, data);
    }

    fn print(&self, at_ms: i64, who: &str, text: &str, data: serde_json::Value) {
        if self.json {
            let mut data = data;
            if let serde_json::Value::Object(m) = &mut data {
                m.insert("at".into(), json!(at_ms));
            }
            self.emit_json(data);
        } else {
            let stamp = mend_human::time::format_utc(at_ms.div_euclid(1000));
            let time = stamp.get(11..19).unwrap_or(&stamp);
            println!("{time}  {who:<8} {text}");
            let _ = std::io::stdout().flush();
        }
    }

    fn emit_json(&self, v: serde_json::Value) {
        println!("{v}");
        let _ = std::io::stdout().flush();
    }

    /// The run ended: the last counts, the end line, the run's exit code.
    fn end(&mut self) -> i32 {
        self.flush_counts(true);
        let r = &self.run;
        let code = match r.status {
            RunStatus::Committed => exit::SUCCESS,
            RunStatus::RollbackFailed => exit::ROLLBACK_FAILED,
            _ => exit::STEP_FAILED,
        };
        let at = r.finished_at.unwrap_or(r.started_at);
        let secs = (at - r.started_at) as f64 / 1000.0;
        let mut text = format!("{} after {secs:.1} s (exit {code})", r.status);
        if let Some(e) = &r.error {
            text.push_str(&format!(": {}", mend_human::sanitize(e)));
        }
        self.print(
            at,
            "run",
            &text,
            json!({"kind": "end", "seq": self.last_seq, "status": r.status, "exit": code,
                   "error": r.error}),
        );
        code
    }

    fn abandoned(&mut self) -> i32 {
        self.flush_counts(true);
        let id = self.run.id.clone();
        self.print(
            mend_journal::now_ms(),
            "run",
            &format!(
                "{} in the journal, but no process runs it: it was killed \
                 (mend resume {id}, or mend rollback {id}; exit {RUN_ABANDONED})",
                self.run.status
            ),
            json!({"kind": "abandoned", "seq": self.last_seq, "status": self.run.status,
                   "exit": RUN_ABANDONED}),
        );
        RUN_ABANDONED
    }
}

fn kind(c: &Change) -> &'static str {
    match c {
        Change::Run => "run",
        Change::Step { .. } => "step",
        Change::Actions { .. } => "actions",
        Change::Event { .. } => "event",
        Change::End => "end",
    }
}

/// Changes that a later one of the same key supersedes (events never are).
fn same_key(a: &Change, b: &Change) -> bool {
    match (a, b) {
        (Change::Run, Change::Run) => true,
        (Change::Step { step: x }, Change::Step { step: y }) => x == y,
        (Change::Actions { step: x, .. }, Change::Actions { step: y, .. }) => x == y,
        _ => false,
    }
}

fn step_text(s: &StepRecord) -> String {
    let mut t = format!("{} {}", mend_human::sanitize(&s.step_id), s.status);
    if let Some(f) = s.finished_at {
        t.push_str(&format!(" ({:.1} s)", (f - s.started_at) as f64 / 1000.0));
    }
    if let (StepStatus::Failed, Some(e)) = (s.status, &s.error) {
        t.push_str(&format!(": {}", mend_human::sanitize(e)));
    }
    t
}

/// Whether a process holds the run lock of `run`'s runbook for this run.
/// Read from `/proc/locks`, never by trying the lock: a try, however
/// brief, could refuse a `mend run` starting at that instant. When it
/// cannot tell, it says held (watch waits rather than give up wrongly).
fn run_is_held(state: &Path, run: &RunRecord) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let lock = state
        .join(crate::run::lock::LOCKS_DIR)
        .join(crate::run::lock::lock_file_name(&run.runbook_name));
    let Ok(meta) = std::fs::metadata(&lock) else {
        return false;
    };
    // The lock file names its holder's run: a later run of the same
    // runbook holding it does not keep this one alive.
    if let Ok(text) = std::fs::read_to_string(&lock)
        && let Ok(h) = serde_json::from_str::<crate::run::lock::Holder>(text.trim_end_matches('\0'))
        && h.run_id.as_deref().is_some_and(|id| id != run.id)
    {
        return false;
    }
    let Ok(locks) = std::fs::read_to_string("/proc/locks") else {
        return true;
    };
    let dev = meta.dev();
    let want = format!(
        "{:02x}:{:02x}:{}",
        rustix::fs::major(dev),
        rustix::fs::minor(dev),
        meta.ino()
    );
    locks.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // `1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF` (a blocked
        // waiter's line has `->` after the number).
        f.contains(&"FLOCK") && !f.contains(&"->") && f.iter().any(|x| same_file(x, &want))
    })
}

/// `/proc/locks` prints the device as hex `major:minor`, at least two
/// digits each: compare numerically.
fn same_file(field: &str, want: &str) -> bool {
    let parse = |s: &str| -> Option<(u64, u64, u64)> {
        let mut it = s.split(':');
        let maj = u64::from_str_radix(it.next()?, 16).ok()?;
        let min = u64::from_str_radix(it.next()?, 16).ok()?;
        let ino = it.next()?.parse().ok()?;
        Some((maj, min, ino))
    };
    matches!((parse(field), parse(want)), (Some(a), Some(b)) if a == b)
}
