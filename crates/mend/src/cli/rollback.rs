//! `mend rollback RUN`: undo a run that failed, stopped or was interrupted.

use crate::cli::Ctx;
use crate::outcome::{Failure, Outcome as _};

pub(crate) async fn run(cx: &Ctx, run: &str) -> Result<i32, Failure> {
    let (id, o) = crate::run::rollback::rollback(&cx.sandbox, &cx.settings, run).await?;
    cx.out.rollback_outcome(&id, &o);
    Ok(o.exit_code())
}
