//! What the operator reads: plans as checklists, outcomes that say where the
//! run stands and what to do next, errors with the fix. `--json` prints one
//! JSON document per command instead.

#[allow(unused_imports)]
use crate::secrets::{eprintln, println};
use std::io::IsTerminal;

use serde_json::json;

use crate::exit;
use crate::load::Prepared;
use crate::outcome::{Failure, Outcome as _};
use crate::plan::PlannedStep;
use crate::run::RunOutcome;
use crate::run::rehearse::RehearsalReport;
use crate::run::rollback::RollbackOutcome;
use mend_host::sandbox::bindings::mend::runbook::log::Level;
use mend_human::{human_bytes as bytes, human_count as count, sanitize};
use mend_journal::{ActionRecord, EventRecord, RunRecord, RunStatus, StepRecord, format_utc};
use mend_plan::Planned;

/// "1 step", "2,048 actions".
/// A run id as operators type it: its first 8 hex digits.
pub(super) fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

pub(super) fn plural(n: u64, noun: &str) -> String {
    format!("{} {noun}{}", count(n), if n == 1 { "" } else { "s" })
}

/// What failed, naming the step once (errors usually name it already).
fn failure_text(step: &str, error: Option<&str>) -> String {
    let error = error.unwrap_or("");
    if error.contains(&format!("step `{step}`")) {
        error.to_string()
    } else {
        format!("step `{step}`: {error}")
    }
}

/// How many actions of a step a plan lists without `--all`.
const SHOWN: usize = 12;

/// Every command vector a step's plan runs, in order: each exec (a change)
/// with its undo, all of them, however many actions `--all` leaves out.
fn commands_run(plan: &mend_plan::StepPlan) -> Vec<String> {
    use mend_plan::Action as A;
    plan.actions
        .iter()
        .filter_map(|a| match &a.action {
            A::Exec { call, undo, .. } => Some(match undo {
                Some(u) => format!("{}  (undo: {})", call_line(call), call_line(u)),
                None => call_line(call),
            }),
            _ => None,
        })
        .collect()
}

fn call_line(call: &mend_plan::Call) -> String {
    mend_human::shown(&call.to_string(), 1024)
}

/// Why reads cannot be confined here, when a step of this runbook may run
/// one; `None` when they are (or none can run).
fn unconfined_reads(prepared: &Prepared) -> Option<String> {
    let any_reads = prepared
        .steps
        .iter()
        .any(|s| s.commands.allowed.values().any(|c| !c.reads.is_empty()));
    match mend_host::commands::confine::support() {
        mend_host::commands::confine::Support::Missing(why) if any_reads => Some(why.clone()),
        _ => None,
    }
}

/// Where output goes, and in which form.
#[derive(Clone)]
pub struct Out {
    pub(crate) json: bool,
    color: bool,
}

impl Out {
    pub fn new(json: bool) -> Out {
        let color = std::io::stdout().is_terminal()
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        Out { json, color }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    pub(crate) fn print_json(&self, v: &serde_json::Value) {
        let mut v = v.clone();
        crate::secrets::mask_json(&mut v);
        println!(
            "{}",
            serde_json::to_string_pretty(&v).expect("JSON values serialize")
        );
    }

    /// A step's log line, as it happens (stderr).
    pub fn step_log(&self, step: &str, level: Level, msg: &str) {
        if self.json && !matches!(level, Level::Warn | Level::Error) {
            return;
        }
        let tag = match level {
            Level::Debug => return,
            Level::Info => "",
            Level::Warn => "warning: ",
            Level::Error => "error: ",
        };
        eprintln!("  [{step}] {tag}{msg}");
    }

    pub fn plan(&self, prepared: &Prepared, steps: &[PlannedStep], all: bool) -> i32 {
        let rb = &prepared.runbook;
        let failed = steps.iter().any(|(_, r)| r.is_err());
        let code = steps.exit_code();
        let unconfined = unconfined_reads(prepared);
        if self.json {
            let steps: Vec<_> = steps
                .iter()
                .map(|(s, r)| match r {
                    // --json holds the plan whole: it prints every action.
                    Ok((p, _)) => match crate::plan::spool::all_planned(p) {
                        Ok(actions) => json!({"id": s.def.id, "uses": s.def.uses.to_string(), "summary": p.summary, "actions": actions, "checks": p.checks, "facts": p.facts, "commands": commands_run(p), "reads": p.reads, "arrival": p.arrival}),
                        Err(e) => json!({"id": s.def.id, "uses": s.def.uses.to_string(), "error": format!("{e:#}")}),
                    },
                    Err(e) => json!({"id": s.def.id, "uses": s.def.uses.to_string(), "error": e}),
                })
                .collect();
            self.print_json(&json!({"runbook": {"name": rb.name, "version": rb.version, "sha256": rb.sha256}, "steps": steps, "reads_confined": unconfined.is_none()}));
            return code;
        }
        println!(
            "plan: {} {} ({}, sha256 {})",
            rb.name,
            rb.version,
            rb.file.display(),
            &rb.sha256[..12]
        );
        println!(
            "a plan changes nothing; at run time each step is planned again after the ones before it."
        );
        if let Some(why) = &unconfined {
            println!(
                "{} read commands are not confined on this machine ({why}): a read that writes is not stopped",
                self.paint("33", "note:")
            );
        }
        let (mut n_actions, mut n_bytes, mut n_irrev) = (0usize, 0u64, 0usize);
        let total = steps.len();
        for (i, (step, result)) in steps.iter().enumerate() {
            println!();
            println!(
                "{} {}/{total} {} ({})",
                self.paint("1", "step"),
                i + 1,
                self.paint("1", &step.def.id),
                step.def.uses
            );
            let plan = match result {
                Ok((p, _)) => p,
                Err(e) => {
                    println!("  {} {}", self.paint("31", "error:"), e);
                    continue;
                }
            };
            for line in &plan.summary {
                println!("  {line}");
            }
            let len = plan.len();
            if len == 0 {
                println!("  no actions");
            }
            let shown = if all { len } else { SHOWN.min(len) };
            // One packed batch unpacked at a time, even with --all.
            let each = |f: &mut dyn FnMut(&Planned)| {
                let mut k = 0;
                let listed = crate::plan::spool::each_planned(plan, |a| {
                    if k < shown {
                        f(a);
                    }
                    k += 1;
                });
                if let Err(e) = listed {
                    println!("  {} {e:#}", self.paint("31", "error:"));
                }
            };
            let mut width = 0;
            if all {
                each(&mut |a| width = width.max(a.action.target().chars().count()));
            } else {
                for a in crate::plan::spool::first_planned(plan, shown).unwrap_or_default() {
                    width = width.max(a.action.target().chars().count());
                }
            }
            let width = width.min(60);
            if all {
                each(&mut |a| println!("  {}", self.action_line(a, width)));
            } else {
                match crate::plan::spool::first_planned(plan, shown) {
                    Ok(first) => first
                        .iter()
                        .for_each(|a| println!("  {}", self.action_line(a, width))),
                    Err(e) => println!("  {} {e:#}", self.paint("31", "error:")),
                }
            }
            if shown < len {
                println!(
                    "  ... and {} more (--all lists every action)",
                    count((len - shown) as u64)
                );
            }
            for r in &plan.reads {
                println!("  read while planning: {r}");
            }
            let runs = commands_run(plan);
            if !runs.is_empty() {
                println!("  commands it will run ({}):", runs.len());
                for c in &runs {
                    println!("    {c}");
                }
            }
            for c in &plan.checks {
                println!("  then check: {c}");
            }
            n_actions += plan.len();
            n_bytes += plan.bytes();
            n_irrev += plan.irreversible();
        }
        println!();
        let irrev = if n_irrev > 0 {
            self.paint("33", &format!("; {} irreversible", count(n_irrev as u64)))
        } else {
            String::new()
        };
        println!(
            "total: {}, {}{irrev}",
            plural(n_actions as u64, "action"),
            bytes(n_bytes)
        );
        if code == exit::BAD_INPUT {
            println!(
                "{}",
                self.paint(
                    "31",
                    "a step refused its parameters: fix the runbook (or --set); a run would stop before changing anything"
                )
            );
        } else if failed {
            println!(
                "{}",
                self.paint(
                    "31",
                    "some steps cannot plan: a run would stop there and roll back"
                )
            );
        }
        code
    }

    fn action_line(&self, a: &Planned, width: usize) -> String {
        use mend_plan::Action as A;
        let target = a.action.what();
        let size = match (&a.action, a.files) {
            (A::Exec { .. } | A::CreateDir { .. } | A::Swap { .. }, _) => String::new(),
            // Not there yet at plan time (made by an earlier action): no size.
            (_, 0) => String::new(),
            (_, f) if f > 1 => format!("{} files, {}", count(f), bytes(a.bytes)),
            _ => bytes(a.bytes),
        };
        let mark = if a.reversible {
            String::new()
        } else {
            self.paint("33", "  IRREVERSIBLE")
        };
        format!(
            "{:<10} {target:<width$}  {size:>9}  {}{mark}",
            a.action.kind(),
            a.reason
        )
    }

    pub fn lint(&self, prepared: &Prepared) -> i32 {
        let rb = &prepared.runbook;
        if self.json {
            self.print_json(&json!({"ok": true, "runbook": {"name": rb.name, "version": rb.version, "sha256": rb.sha256}, "steps": prepared.steps.iter().map(|s| json!({"id": s.def.id, "uses": s.def.uses.to_string(), "component_sha256": s.loaded.sha256})).collect::<Vec<_>>(), "warnings": prepared.warnings}));
        } else {
            for w in &prepared.warnings {
                eprintln!("{w}\n");
            }
            println!(
                "{}: ok ({} {}, {} steps)",
                rb.file.display(),
                rb.name,
                rb.version,
                prepared.steps.len()
            );
        }
        exit::SUCCESS
    }

    pub fn run_outcome(&self, o: &RunOutcome) -> i32 {
        let code = o.exit_code();
        if self.json {
            self.print_json(&json!({"run": o, "exit_code": code}));
            return code;
        }
        if o.bad_input {
            println!(
                "{} {}",
                self.paint("31", "refused:"),
                failure_text(o.failed_step.as_deref().unwrap_or("?"), o.error.as_deref())
            );
            println!(
                "a step refused its parameters before run {} changed anything: nothing ran and nothing changed.",
                short(&o.run_id)
            );
            println!("  = help: fix the runbook (or the --set value) and run it again");
            return code;
        }
        match o.status {
            RunStatus::Committed => println!(
                "{} run {} of {}: {}, {}; committed",
                self.paint("32", "done:"),
                o.run_id,
                o.runbook,
                plural(o.steps_done.len() as u64, "step"),
                plural(o.actions_done, "action")
            ),
            RunStatus::Held => println!(
                "{} run {} of {}: {}, {}; held, not committed (its undo data kept)\n  = help: `mend commit {}` keeps the changes, `mend rollback {}` undoes them",
                self.paint("33", "held:"),
                o.run_id,
                o.runbook,
                plural(o.steps_done.len() as u64, "step"),
                plural(o.actions_done, "action"),
                o.run_id,
                o.run_id
            ),
            RunStatus::Failed => {
                println!(
                    "{} {}",
                    self.paint("31", "failed:"),
                    failure_text(o.failed_step.as_deref().unwrap_or("?"), o.error.as_deref())
                );
                println!("the runbook says on_failure = \"stop\": nothing was rolled back.");
                println!(
                    "  = help: fix the cause and `mend resume {}`, or undo it with `mend rollback {}`",
                    o.run_id, o.run_id
                );
            }
            _ => {
                if let Some(step) = &o.failed_step {
                    println!(
                        "{} {}",
                        self.paint("31", "failed:"),
                        failure_text(step, o.error.as_deref())
                    );
                }
                if let Some(r) = &o.rollback {
                    self.rollback_text(&o.run_id, r);
                }
                println!(
                    "  = help: fix the cause and run it again; `mend report {}` has the timeline",
                    short(&o.run_id)
                );
            }
        }
        code
    }

    fn rollback_text(&self, run: &str, r: &RollbackOutcome) {
        match &r.failed {
            None => {
                let steps = if r.steps_undone.is_empty() {
                    "no step had changed anything".to_string()
                } else {
                    format!("steps {} rolled back", r.steps_undone.join(", "))
                };
                let left = if r.irreversible.is_empty() {
                    "; nothing left changed".to_string()
                } else {
                    String::new()
                };
                println!(
                    "rolled back run {run}: {} undone; {steps}{left}",
                    plural(r.undone, "action")
                );
                if !r.irreversible.is_empty() {
                    println!(
                        "{} {} could not be undone by design:",
                        self.paint("33", "irreversible:"),
                        plural(r.irreversible.len() as u64, "action")
                    );
                    // A disposable cull that failed after its removals:
                    // the first few, then the count (as a rehearsal does).
                    for w in r.irreversible.iter().take(SHOWN) {
                        println!("  {w}");
                    }
                    if r.irreversible.len() > SHOWN {
                        println!(
                            "  ... and {} more (--json and `mend show {run} --all` list them all)",
                            count((r.irreversible.len() - SHOWN) as u64)
                        );
                    }
                }
            }
            Some(f) => {
                println!("{} {f}", self.paint("31", "rollback failed:"));
                println!("still changed ({}):", r.not_undone.len());
                for w in &r.not_undone {
                    println!("  {w}");
                }
                println!(
                    "  = help: fix the cause, then `mend rollback {run}` continues where it stopped"
                );
            }
        }
    }

    pub fn rollback_outcome(&self, run: &str, r: &RollbackOutcome) -> i32 {
        let code = r.exit_code();
        if self.json {
            self.print_json(&json!({"run_id": run, "rollback": r, "exit_code": code}));
        } else {
            self.rollback_text(run, r);
        }
        code
    }

    /// `mend rehearse --faults`: each variant was reported as it ended;
    /// this is the verdict.
    pub fn fault_rehearsal(&self, r: &crate::run::faults::FaultReport) -> i32 {
        let code = r.exit_code();
        if self.json {
            self.print_json(&json!({"ok": r.ok, "report": r, "exit_code": code}));
            return code;
        }
        let failed: Vec<_> = r.variants.iter().filter(|v| !v.ok).collect();
        if r.ok {
            println!(
                "{} {}: {} (a kill after {} of {} actions, each then resumed; no space at each step, then rolled back); each ended with every grant as it started",
                self.paint("32", "fault rehearsal passed:"),
                r.runbook,
                plural(r.variants.len() as u64, "variant"),
                r.kills,
                r.actions,
            );
            return code;
        }
        println!(
            "{} {}: {} of {} did not end as they started:",
            self.paint("31", "fault rehearsal failed:"),
            r.runbook,
            failed.len(),
            plural(r.variants.len() as u64, "variant")
        );
        for v in failed {
            println!("  {}: {}", v.name, v.detail);
            if !v.fault.is_empty() {
                println!("    fault: {}", v.fault);
            }
            for d in v.differences.iter().take(10) {
                println!("    {d}");
            }
            if v.differences.len() > 10 {
                println!("    ... and {} more", v.differences.len() - 10);
            }
            if let Some(dir) = &v.dir {
                println!(
                    "    kept: {} (copies in grants/, journal in state/)",
                    dir.display()
                );
            }
        }
        code
    }

    pub fn rehearsal(&self, r: &RehearsalReport) -> i32 {
        let code = r.exit_code();
        if self.json {
            self.print_json(&json!({"ok": r.ok, "report": r, "exit_code": code}));
            return code;
        }
        if let Some(step) = &r.run.failed_step {
            println!(
                "{} {}",
                self.paint("31", "failed:"),
                failure_text(step, r.run.error.as_deref())
            );
        }
        if let Some(rb) = &r.run.rollback {
            println!("rolled back {}", plural(rb.undone, "action"));
            if let Some(f) = &rb.failed {
                println!("{} {f}", self.paint("31", "rollback failed:"));
            }
        }
        if !r.irreversible.is_empty() {
            println!(
                "irreversible by the plan ({}), not compared:",
                r.irreversible.len()
            );
            // A disposable cull of a million files would print a million
            // lines (a write each): the first few, then the count; --json
            // and `mend show --all` list every one.
            for w in r.irreversible.iter().take(SHOWN) {
                println!("  {w}");
            }
            if r.irreversible.len() > SHOWN {
                println!(
                    "  ... and {} more (--json lists them all)",
                    count((r.irreversible.len() - SHOWN) as u64)
                );
            }
        }
        if let Some(e) = r.elapsed_ms {
            println!(
                "time until the last verify passed: {}{}",
                millis(e),
                r.budget_ms
                    .map(|b| format!(" (budget {})", millis(b)))
                    .unwrap_or_default()
            );
            for (step, ms) in &r.step_ms {
                println!("  {step}: {}", millis(*ms));
            }
        }
        if r.over_budget {
            let slowest = r.step_ms.iter().max_by_key(|(_, ms)| *ms);
            println!(
                "{} the drill took {}, over its budget of {}{}",
                self.paint("31", "rehearsal failed:"),
                millis(r.elapsed_ms.unwrap_or_default()),
                millis(r.budget_ms.unwrap_or_default()),
                slowest
                    .map(|(s, ms)| format!("; slowest step: {s} ({})", millis(*ms)))
                    .unwrap_or_default()
            );
        } else if r.ok {
            println!(
                "{} every grant is byte-identical to where it started ({} entries compared, metadata included)",
                self.paint("32", "rehearsal passed:"),
                count(r.files)
            );
        } else if r.differences.is_empty() {
            // The rollback was clean; the rehearsal failed for its run.
            println!(
                "{} the run did not get through (above); its rollback left every grant byte-identical ({} entries compared)",
                self.paint("31", "rehearsal failed:"),
                count(r.files)
            );
        } else {
            println!(
                "{} {} after the rollback:",
                self.paint("31", "rehearsal failed:"),
                plural(r.differences.len() as u64, "difference")
            );
            for d in &r.differences {
                println!("  {d}");
            }
        }
        code
    }

    pub fn history(&self, runs: &[RunRecord]) -> i32 {
        if self.json {
            self.print_json(&json!(runs));
            return exit::SUCCESS;
        }
        if runs.is_empty() {
            println!("no runs yet");
        }
        for r in runs {
            println!(
                "{}  {:<16} {:<28} {:<9} {}",
                &r.id,
                r.status.as_str(),
                format!("{} {}", r.runbook_name, r.runbook_version),
                format!("{:?}", r.mode).to_lowercase(),
                format_utc(r.started_at / 1000)
            );
        }
        exit::SUCCESS
    }

    pub fn show(
        &self,
        run: &RunRecord,
        steps: &[StepRecord],
        actions: &[ActionRecord],
        events: &[EventRecord],
    ) -> i32 {
        if self.json {
            self.print_json(
                &json!({"run": run, "steps": steps, "actions": actions, "events": events}),
            );
            return exit::SUCCESS;
        }
        println!(
            "run {} of {} {}: {}",
            run.id,
            run.runbook_name,
            run.runbook_version,
            run.status.as_str()
        );
        println!(
            "  started {}{}",
            format_utc(run.started_at / 1000),
            run.finished_at
                .map(|f| format!(", finished {}", format_utc(f / 1000)))
                .unwrap_or_default()
        );
        if let Some(by) = &run.started_by {
            println!(
                "  started by {}{}",
                sanitize(by),
                run.host
                    .as_deref()
                    .map(|h| format!(" on {}", sanitize(h)))
                    .unwrap_or_default()
            );
        }
        for (k, v) in mend_journal::Redact::params(run) {
            println!("  param {} = {}", sanitize(&k), sanitize(&v));
        }
        if let Some(e) = &run.error {
            println!("  error: {e}");
        }
        for s in steps {
            let n = actions.iter().filter(|a| a.step_idx == s.idx).count();
            println!(
                "step {} {} ({}): {}, {}",
                u64::from(s.idx) + 1,
                s.step_id,
                s.uses,
                s.status.as_str(),
                plural(n as u64, "action")
            );
        }
        for e in events {
            println!(
                "  {} {} {}",
                format_utc(e.at / 1000),
                e.level,
                sanitize(&e.message)
            );
        }
        exit::SUCCESS
    }

    /// Print a failure and return its exit code.
    /// One line for the operator beside the main output (stderr under
    /// `--json`, so stdout stays one JSON document).
    pub fn note(&self, line: &str) {
        if self.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }

    /// A saved plan that no longer holds: what moved. Nothing ran.
    pub fn drifted(&self, d: &crate::plan::saved::Drifted) -> i32 {
        let code = d.exit_code();
        if self.json {
            self.print_json(&json!({"exit_code": code, "plan": d.plan, "drift": d.drift}));
        } else {
            eprintln!(
                "{} the plan in {} no longer holds; nothing was run:",
                self.paint("31", "error:"),
                d.plan.display()
            );
            for line in &d.drift {
                eprintln!("  {line}");
            }
            eprintln!(
                "  = help: make a new plan (mend plan RUNBOOK --out FILE), review it, and run that one"
            );
        }
        code
    }

    pub fn failure(&self, f: &Failure) -> i32 {
        let code = f.exit_code();
        if self.json {
            let body = match f {
                Failure::BadInput(d) => json!({"error": "bad-input", "diagnostics": d}),
                Failure::Locked(m) => json!({"error": "locked", "message": m}),
                Failure::Damaged(d) => {
                    json!({"error": "journal-damaged", "message": d.to_string(), "help": d.help()})
                }
                Failure::Journal { error, run } => {
                    json!({"error": "journal-write", "message": format!("{error:#}"), "run": run})
                }
                Failure::Internal(e) => json!({"error": "internal", "message": format!("{e:#}")}),
                Failure::Unavailable(d) => json!({"error": "unreachable", "diagnostics": d}),
            };
            self.print_json(&json!({"exit_code": code, "failure": body}));
        } else {
            eprintln!("{f}");
            match f {
                Failure::BadInput(_) | Failure::Unavailable(_) => {
                    eprintln!("nothing was run and nothing changed.")
                }
                Failure::Damaged(d) => {
                    eprintln!("{}", mend_journal::Damaged::REFUSAL);
                    eprintln!("  = help: {}", d.help());
                }
                Failure::Journal {
                    run: Some(run),
                    error,
                } => {
                    eprintln!(
                        "run {run} stopped before its next change: what it did is journaled up to here"
                    );
                    eprintln!(
                        "  = help: {}, then `mend resume {run}`; nothing is retried until then",
                        journal_fix(error)
                    );
                }
                Failure::Journal { run: None, error } => {
                    eprintln!("  = help: {}, then try again", journal_fix(error))
                }
                _ => {}
            }
        }
        code
    }
}

/// What to do about a journal that could not be opened or written: a
/// permission problem is not a full disk, and saying so saves a 3am hunt.
fn journal_fix(error: &anyhow::Error) -> &'static str {
    let denied = error.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::PermissionDenied)
            || e.downcast_ref::<rusqlite::Error>().is_some_and(|q| {
                matches!(
                    q.sqlite_error_code(),
                    Some(rusqlite::ErrorCode::ReadOnly | rusqlite::ErrorCode::PermissionDenied)
                )
            })
    });
    if denied {
        "this user may not write the journal (`mend watch` and `mend serve` only read it): \
         run mend as the owner of the state directory, or pass another --state-dir"
    } else {
        "free space on (or repair) the journal's disk"
    }
}

/// A duration as a drill reports it: `1 h 2 min 3 s`, `4.2 s`.
fn millis(ms: u64) -> String {
    let s = ms / 1000;
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, _) => format!("{:.1} s", ms as f64 / 1000.0),
        (0, m, s) => format!("{m} min {s} s"),
        (h, m, s) => format!("{h} h {m} min {s} s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_survives_a_damaged_journal() {
        // A damaged journal.db held a step with idx 4294967295: `show`
        // numbered it `idx + 1` and overflowed.
        let (run, steps, actions, events) = super::super::report::tests::damaged();
        for json in [false, true] {
            let out = Out { json, color: false };
            assert_eq!(out.show(&run, &steps, &actions, &events), exit::SUCCESS);
            out.history(std::slice::from_ref(&run));
        }
    }
}
