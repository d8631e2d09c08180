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
    cx.out.history(&runs);
    Ok(exit::SUCCESS)
}
