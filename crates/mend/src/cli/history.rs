//! `mend history [--runbook NAME] [--status S] [--limit N]`: past runs.

use mend_journal::{HistoryFilter, Journal};

use crate::cli::Ctx;
use crate::exit;
use crate::outcome::Failure;

pub(crate) fn run(cx: &Ctx, filter: HistoryFilter) -> Result<i32, Failure> {
    let runs = match Journal::open_existing(&cx.settings.state_dir)? {
        Some(j) => j.history(&filter)?,
        None => Vec::new(),
    };
    // Each run's secret params masked in its inputs and error.
    let runs: Vec<_> = runs
        .into_iter()
        .map(|r| mend_journal::Redact::of_run(&r).run(r))
        .collect();
    cx.out.history(&runs);
    Ok(exit::SUCCESS)
}
