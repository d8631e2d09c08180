//! `mend resume RUN`: finish a run that was interrupted or stopped.

use crate::cli::Ctx;
use crate::outcome::{Failure, Outcome as _};

pub(crate) async fn run(cx: &Ctx, run: &str) -> Result<i32, Failure> {
    let o = crate::run::resume(&cx.sandbox, &cx.settings, run).await?;
    cx.out.run_outcome(&o);
    Ok(o.exit_code())
}
