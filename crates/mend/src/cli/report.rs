//! `mend report RUN`: a run as a Markdown timeline, the way operators write
//! postmortems: what ran, when, how long, what each step planned and did,
//! what was rolled back and what could not be, in UTC.

#[allow(unused_imports)]
use crate::secrets::print;
use std::fmt::Write as _;

use mend_human::sanitize;
use mend_journal::SavedStep;
use mend_journal::{ActionRecord, ActionState, EventRecord, RunRecord, StepRecord};
use mend_plan::{Action, StepPlan};

use crate::cli::Ctx;
use crate::exit;
use crate::outcome::Failure;

/// `mend report RUN`: the Markdown on stdout (in a JSON document with `--json`).
pub(crate) fn run(cx: &Ctx, run: &str, svg: Option<&std::path::Path>) -> Result<i32, Failure> {
    let (record, steps, actions, events) = crate::cli::show::load_run(&cx.settings, run)?;
    let mut md = markdown(&record, &steps, &actions, &events);
    if let Some(file) = svg {
        // The same picture `mend serve` draws, secrets masked as there.
        let j = mend_journal::Journal::open_read_only(&cx.settings.state_dir)?
            .ok_or_else(|| anyhow::anyhow!("the journal went away"))?;
        let picture = mend_serve::timeline_svg(&j, &record.id)?;
        std::fs::write(file, picture)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", file.display()))?;
        let name = file.file_name().map_or_else(
            || file.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        md = md.replacen(
            "\n## Time per step",
            &format!(
                "\n![timeline of run {}]({name})\n\n## Time per step",
                record.id
            ),
            1,
        );
    }
    if cx.out.json {
        cx.out
            .print_json(&serde_json::json!({"run": record.id, "markdown": md}));
    } else {
        print!("{md}");
    }
    Ok(exit::SUCCESS)
}

/// The report of one run, as Markdown.
pub fn markdown(
    run: &RunRecord,
    steps: &[StepRecord],
    actions: &[ActionRecord],
    events: &[EventRecord],
) -> String {
    let mut md = String::new();
    let w = &mut md;
    let _ = writeln!(
        w,
        "# {} {}: run {}, {}\n",
        run.runbook_name,
        run.runbook_version,
        run.id,
        run.status.as_str()
    );
    let _ = writeln!(w, "| | |\n|---|---|");
    let _ = writeln!(
        w,
        "| runbook | `{}` (sha256 {}) |",
        run.runbook_path,
        run.short_sha256()
    );
    let _ = writeln!(w, "| mode | {} |", run.mode.as_str());
    if let Some(sets) = parameters(&run.params_json) {
        let _ = writeln!(w, "| parameters | {sets} |");
    }
    if let Some(by) = &run.started_by {
        let host = run.host.as_deref().map(|h| format!(" on {}", cell(h)));
        let _ = writeln!(
            w,
            "| started by | {}{} |",
            cell(by),
            host.unwrap_or_default()
        );
    }
    let _ = writeln!(w, "| started | {} |", utc_ms(run.started_at));
    if let Some(end) = run.finished_at {
        let _ = writeln!(
            w,
            "| finished | {} ({}) |",
            utc_ms(end),
            duration(end.saturating_sub(run.started_at))
        );
    }
    let done = actions.iter().filter(|a| a.done_at.is_some()).count();
    let undone = actions
        .iter()
        .filter(|a| a.state == ActionState::Undone)
        .count();
    let _ = writeln!(
        w,
        "| actions | {} planned, {done} done, {undone} undone |",
        actions.len()
    );
    if let Some(e) = &run.error {
        let _ = writeln!(w, "| error | {} |", cell(e));
    }

    // The slow part at a glance: planning to verify passing, per step.
    let _ = writeln!(
        w,
        "\n## Time per step\n\n| step | until its verify passed |\n|---|---|"
    );
    for s in steps {
        let verified = events
            .iter()
            .find(|e| e.step_idx == Some(s.idx) && e.message == crate::run::VERIFIED);
        let _ = writeln!(
            w,
            "| {}. {} | {} |",
            u64::from(s.idx) + 1,
            cell(&s.step_id),
            verified.map_or("did not verify".to_string(), |e| duration(
                e.at.saturating_sub(s.started_at)
            ))
        );
    }

    let _ = writeln!(w, "\n## Steps");
    for s in steps {
        let took = s
            .finished_at
            .map(|f| format!(", {}", duration(f.saturating_sub(s.started_at))))
            .unwrap_or_default();
        let _ = writeln!(
            w,
            "\n### {}. {} (`{}`): {}{took}",
            u64::from(s.idx) + 1,
            s.step_id,
            s.uses,
            s.status.as_str()
        );
        if let Some(e) = &s.error {
            let _ = writeln!(w, "\n**Failed:** {}", cell(e));
        }
        let plan: Option<StepPlan> = s
            .plan_json
            .as_deref()
            .and_then(|p| serde_json::from_str::<SavedStep>(p).ok())
            .map(|saved| saved.plan);
        if let Some(plan) = plan
            .as_ref()
            .filter(|p| !p.summary.is_empty() || !p.facts.is_empty())
        {
            let _ = writeln!(w);
            if !plan.summary.is_empty() {
                // A block, so the steps' own alignment (snapshot tables) holds.
                let _ = writeln!(w, "~~~text");
                for line in &plan.summary {
                    let _ = writeln!(w, "{}", sanitize(line).replace("~~~", "---"));
                }
                let _ = writeln!(w, "~~~");
            }
            for (k, v) in &plan.facts {
                let _ = writeln!(w, "- fact `{k}` = `{}`", sanitize(v));
            }
        }
        let mine: Vec<&ActionRecord> = actions.iter().filter(|a| a.step_idx == s.idx).collect();
        if mine.is_empty() {
            continue;
        }
        let _ = writeln!(
            w,
            "\n| # | action | done | undone | result |\n|---|---|---|---|---|"
        );
        const SHOWN: usize = 50;
        for a in mine.iter().take(SHOWN) {
            let what = action_line(a);
            let result = match (&a.state, &a.error, a.reversible) {
                (_, Some(e), _) => format!("{}: {}", a.state.as_str(), e),
                (ActionState::Done, None, false) => "done; irreversible".to_string(),
                (state, None, _) => state.as_str().to_string(),
            };
            let _ = writeln!(
                w,
                "| {} | `{}` | {} | {} | {} |",
                u64::from(a.seq) + 1,
                cell(&what),
                a.done_at.map(time_ms).unwrap_or_default(),
                a.undone_at.map(time_ms).unwrap_or_default(),
                cell(&result)
            );
        }
        if mine.len() > SHOWN {
            let _ = writeln!(
                w,
                "\n… and {} more (`mend show {} --json` lists all).",
                super::render::plural((mine.len() - SHOWN) as u64, "action"),
                run.id
            );
        }
    }

    let left: Vec<&ActionRecord> = actions
        .iter()
        .filter(|a| a.state == ActionState::Done && !a.reversible)
        .collect();
    if run.status.as_str() != "committed" && !left.is_empty() {
        let _ = writeln!(w, "\n## Not undone (irreversible)\n");
        for a in left {
            let _ = writeln!(
                w,
                "- step {}: `{}`",
                u64::from(a.step_idx) + 1,
                cell(&action_line(a))
            );
        }
    }

    let _ = writeln!(
        w,
        "\n## Timeline (UTC)\n\n| time | step | level | event |\n|---|---|---|---|"
    );
    for e in events {
        let step = e
            .step_idx
            .and_then(|i| steps.iter().find(|s| s.idx == i))
            .map(|s| format!("{}. {}", u64::from(s.idx) + 1, s.step_id))
            .unwrap_or_default();
        let _ = writeln!(
            w,
            "| {} | {step} | {} | {} |",
            time_ms(e.at),
            e.level,
            cell(&e.message)
        );
    }
    md
}

/// A journaled action as `mend plan` shows it (its JSON if unreadable).
fn action_line(a: &ActionRecord) -> String {
    serde_json::from_str::<Action>(&a.action_json)
        .map(|x| x.to_string())
        .unwrap_or_else(|_| a.action_json.clone())
}

/// `key=value, ...` from the run's inputs, if it had any.
fn parameters(json: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let sets = v.get("sets")?.as_array()?;
    if sets.is_empty() {
        return None;
    }
    Some(
        sets.iter()
            .filter_map(|kv| {
                let kv = kv.as_array()?;
                Some(format!(
                    "`{}={}`",
                    kv.first()?.as_str()?,
                    kv.get(1)?.as_str()?
                ))
            })
            .collect::<Vec<_>>()
            .join(", "),
    )
}

/// Text safe inside a Markdown table cell.
fn cell(text: &str) -> String {
    sanitize(text).replace('|', "\\|").replace('\n', " ")
}

fn utc_ms(ms: i64) -> String {
    mend_journal::format_utc(ms.div_euclid(1000))
}

/// `20:05:31.120`: the time of day, to the millisecond.
fn time_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000).rem_euclid(86_400);
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        ms.rem_euclid(1000)
    )
}

fn duration(ms: i64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 120_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{} min {} s", ms / 60_000, ms / 1000 % 60)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use mend_journal::{RunMode, RunStatus, StepStatus};

    /// Records as a damaged journal.db can hold them: SQLite's CHECKs and
    /// mend's own writes do not hold once the file's bytes are wrong.
    pub(crate) fn damaged() -> (
        RunRecord,
        Vec<StepRecord>,
        Vec<ActionRecord>,
        Vec<EventRecord>,
    ) {
        let run = RunRecord {
            id: "0ea41512fa391fa7".into(),
            runbook_name: "x".into(),
            runbook_version: "1".into(),
            runbook_path: "/x.toml".into(),
            // A multi-byte char across byte 12.
            runbook_sha256: "0123456789aé".into(),
            mode: RunMode::Run,
            status: RunStatus::Failed,
            params_json: "{".into(),
            now: i64::MIN,
            started_at: i64::MAX,
            finished_at: Some(i64::MIN),
            error: Some("|\n".into()),
            started_by: Some("<b>|\n".into()),
            host: None,
        };
        let steps = vec![StepRecord {
            run_id: run.id.clone(),
            idx: u32::MAX,
            step_id: "s".into(),
            uses: "std:x".into(),
            component_sha256: String::new(),
            status: StepStatus::Failed,
            plan_json: Some("null".into()),
            started_at: i64::MAX,
            finished_at: Some(i64::MIN),
            error: None,
        }];
        let actions = vec![ActionRecord {
            run_id: run.id.clone(),
            step_idx: u32::MAX,
            seq: u32::MAX,
            action_json: "[]".into(),
            reversible: false,
            state: ActionState::Done,
            undo_json: None,
            intended_at: Some(i64::MIN),
            done_at: Some(i64::MIN),
            undone_at: Some(i64::MAX),
            error: None,
        }];
        let events = vec![EventRecord {
            run_id: run.id.clone(),
            step_idx: Some(u32::MAX),
            at: i64::MIN,
            level: "info".into(),
            message: "m".into(),
        }];
        (run, steps, actions, events)
    }

    #[test]
    fn a_damaged_journal_still_reports() {
        // Each of these panicked: the step and action numbers (`idx + 1` on
        // 4294967295), the durations (`i64::MIN - i64::MAX`), and the sha256
        // cut at byte 12 inside `é`.
        let (run, steps, actions, events) = damaged();
        let md = markdown(&run, &steps, &actions, &events);
        assert!(md.contains("(sha256 0123456789aé)"), "{md}");
        assert!(md.contains("### 4294967296. s (`std:x`): failed"), "{md}");
        assert!(md.contains("| 4294967296 | `[]` |"), "{md}");
        assert!(md.contains("- step 4294967296: `[]`"), "{md}");
        assert!(md.contains("| 4294967296. s | info | m |"), "{md}");
    }
}
