//! `mend prune [--keep-days N] [--keep-runs N] [--dry-run]`: old runs leave
//! the journal, so it does not grow for ever. The limits come from the
//! policy's `[history]` (90 days and 100 runs per runbook by default); the
//! flags override them for this invocation. Runs that can still be resumed
//! or rolled back are never removed. mend also prunes after each committed
//! run.

use mend_journal::{Journal, Pruned, Retention, format_utc, now_ms};
use serde_json::json;

use crate::cli::Ctx;
use crate::cli::render::{plural, short};
use crate::exit;
use crate::outcome::Failure;

/// How many of the pruned runs a dry run lists.
const LISTED: usize = 10;

pub(crate) fn run(
    cx: &Ctx,
    keep_days: Option<u32>,
    keep_runs: Option<u32>,
    dry: bool,
) -> Result<i32, Failure> {
    let policy = cx.settings.trust.policy.history;
    let keep = Retention {
        keep_days: keep_days.unwrap_or(policy.keep_days),
        keep_runs: keep_runs.unwrap_or(policy.keep_runs),
    };
    let Some(journal) = Journal::open_existing(&cx.settings.state_dir)? else {
        cx.out
            .note("no journal yet (no run has been made here): nothing to prune");
        return Ok(exit::SUCCESS);
    };
    let pruned = journal.prune(keep, now_ms(), dry, !mend_journal::reserve::lean())?;
    if cx.out.json {
        cx.out.print_json(&json!({
            "dry_run": dry,
            "keep_days": keep.keep_days,
            "keep_runs": keep.keep_runs,
            "journal": journal.path(),
            "pruned": pruned,
        }));
        return Ok(exit::SUCCESS);
    }
    for line in lines(&pruned, keep, dry) {
        println!("{line}");
    }
    Ok(exit::SUCCESS)
}

/// What the operator reads.
fn lines(p: &Pruned, keep: Retention, dry: bool) -> Vec<String> {
    let limits = match (keep.keep_days, keep.keep_runs) {
        (0, 0) => "no limit".to_string(),
        (0, n) => format!("the last {n} runs of each runbook"),
        (d, 0) => format!("{d} days"),
        (d, n) => format!("{d} days and the last {n} runs of each runbook"),
    };
    let mut out = Vec::new();
    let open = if p.kept_open == 0 {
        String::new()
    } else {
        format!(
            ", {} the limits would remove but that can still be resumed or rolled back",
            p.kept_open
        )
    };
    let verb = if dry { "would prune" } else { "pruned" };
    out.push(format!(
        "{verb} {} (keeping {limits}); {} left{open}",
        plural(p.runs.len() as u64, "run"),
        p.left
    ));
    if dry {
        for r in p.runs.iter().take(LISTED) {
            out.push(format!(
                "  {}  {:<12} {:<24} {}",
                short(&r.id),
                r.status.as_str(),
                r.runbook_name,
                format_utc(r.started_at / 1000)
            ));
        }
        if p.runs.len() > LISTED {
            out.push(format!("  ... and {} more", p.runs.len() - LISTED));
        }
        out.push("nothing removed (--dry-run)".into());
    } else if !p.runs.is_empty() {
        out.push(format!(
            "journal: {} -> {}{}",
            mend_human::human_bytes(p.bytes_before),
            mend_human::human_bytes(p.bytes_after),
            if p.vacuumed {
                " (compacted)"
            } else {
                " (the space freed stays in the file for later runs)"
            }
        ));
    }
    out
}
