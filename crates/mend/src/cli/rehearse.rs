//! `mend rehearse RUNBOOK [--faults]`: run on copies of the grants, roll
//! back, and prove nothing is left changed; with `--faults`, again after a
//! kill at each action and a full disk at each step.

use std::path::{Path, PathBuf};

use crate::cli::Ctx;
use crate::outcome::{Failure, Outcome as _};
use crate::run::{faults, rehearse};

/// Which rehearsal the command line asks for.
pub(crate) enum Mode {
    /// Copies made here, then run, roll back, compare.
    Plain,
    /// Every fault variant, each on fresh copies, in child processes.
    Faults { max_kills: usize },
    /// Internal: a child of `--faults`, on copies already made in DIR.
    OnCopies(PathBuf),
}

pub(crate) async fn run(
    cx: &Ctx,
    runbook: &Path,
    sets: &[(String, String)],
    mode: Mode,
) -> Result<i32, Failure> {
    let (sandbox, settings, out) = (&cx.sandbox, &cx.settings, &cx.out);
    match mode {
        Mode::Faults { max_kills } => {
            let r =
                faults::rehearse_faults(settings, &cx.cache_dir, runbook, sets, max_kills).await?;
            out.fault_rehearsal(&r);
            Ok(r.exit_code())
        }
        Mode::OnCopies(dir) => {
            let o = rehearse::rehearse_on_copies(sandbox, settings, runbook, sets, &dir).await?;
            out.run_outcome(&o);
            Ok(o.exit_code())
        }
        Mode::Plain => {
            let r = rehearse::rehearse(sandbox, settings, runbook, sets).await?;
            out.rehearsal(&r);
            Ok(r.exit_code())
        }
    }
}
