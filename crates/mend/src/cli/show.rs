//! `mend show RUN`: one run, its steps, actions and events.

use mend_journal::Journal;

use crate::cli::Ctx;
use crate::exit;
use crate::outcome::Failure;
use crate::settings::Settings;

pub(crate) fn run(cx: &Ctx, run: &str) -> Result<i32, Failure> {
    let (record, steps, actions, events) = load_run(&cx.settings, run)?;
    cx.out.show(&record, &steps, &actions, &events);
    Ok(exit::SUCCESS)
}

/// A run and everything the journal holds of it.
pub(crate) type RunRecords = (
    mend_journal::RunRecord,
    Vec<mend_journal::StepRecord>,
    Vec<mend_journal::ActionRecord>,
    Vec<mend_journal::EventRecord>,
);

pub(crate) fn load_run(settings: &Settings, run: &str) -> Result<RunRecords, Failure> {
    let journal = Journal::open_existing(&settings.state_dir)?.ok_or_else(|| {
        Failure::input(
            run,
            format!("no journal in {}", settings.state_dir.display()),
            None,
        )
    })?;
    let record = journal
        .run(run)
        .map_err(|e| Failure::input(run, format!("{e:#}"), None))?;
    // Secret params are masked here, before any renderer sees a record.
    let r = mend_journal::Redact::of_run(&record);
    crate::secrets::add(&r);
    let steps = journal.steps(&record.id)?;
    let actions = journal.actions(&record.id)?;
    let events = journal.events(&record.id)?;
    Ok((
        r.run(record),
        steps.into_iter().map(|s| r.step(s)).collect(),
        actions.into_iter().map(|a| r.action(a)).collect(),
        events.into_iter().map(|e| r.event(e)).collect(),
    ))
}
