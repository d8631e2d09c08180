//! `mend lint RUNBOOK`: check a runbook and its steps' parameters without
//! running anything.

use std::path::Path;

use crate::cli::Ctx;
use crate::exit;
use crate::load::{Purpose, prepare_for};
use crate::outcome::Failure;

pub(crate) async fn run(cx: &Ctx, file: &Path, sets: &[(String, String)]) -> Result<i32, Failure> {
    // A laptop or a CI job lacks the server's directories and users: each
    // is a warning, and everything else is checked.
    let prepared = prepare_for(
        &cx.sandbox,
        file,
        sets,
        &Default::default(),
        Purpose::Lint,
        &cx.settings.trust,
    )
    .await?;
    cx.out.lint(&prepared);
    Ok(exit::SUCCESS)
}
