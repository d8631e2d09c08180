//! `mend resume RUN`: finish a run that was interrupted or stopped.

use crate::cli::Ctx;
use crate::outcome::{Failure, Outcome as _};

pub(crate) async fn run(
    cx: &Ctx,
    run: &str,
    in_overlay: Option<&std::path::Path>,
) -> Result<i32, Failure> {
    if let Some(spec) = in_overlay {
        // A killed fault rehearsal, resumed on the same upper layers.
        return match crate::run::overlay::resume_in_overlay(&cx.sandbox, &cx.settings, run, spec)
            .await?
        {
            Some(r) => {
                cx.out.rehearsal(&r);
                Ok(r.exit_code())
            }
            None => Ok(crate::exit::BAD_INPUT),
        };
    }
    let o = crate::run::resume(&cx.sandbox, &cx.settings, run).await?;
    cx.out.run_outcome(&o);
    Ok(o.exit_code())
}
