//! `mend rehearse RUNBOOK [--faults] [--on auto|overlay|reflink|copy]`: run
//! on overlays (or copies) of the grants, roll back, and prove nothing is
//! left changed; with `--faults`, again after a
//! kill at each action and a full disk at each step.

use std::path::{Path, PathBuf};

use crate::cli::Ctx;
use crate::outcome::{Failure, Outcome as _};
use crate::run::{faults, overlay, rehearse};

/// Which rehearsal the command line asks for.
pub(crate) enum Mode {
    /// On overlays or copies (`--on`), in `--scratch`.
    Plain {
        on: rehearse::On,
        scratch: Option<PathBuf>,
    },
    /// Internal: the child that mounts the overlays the spec names.
    InOverlay(PathBuf),
    /// Every fault variant, each on fresh copies, in child processes.
    Faults { max_kills: usize, on: rehearse::On },
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
        Mode::Faults { max_kills, on } => {
            let r = faults::rehearse_faults(settings, &cx.cache_dir, runbook, sets, max_kills, on)
                .await?;
            out.fault_rehearsal(&r);
            Ok(r.exit_code())
        }
        Mode::OnCopies(dir) => {
            let o = rehearse::rehearse_on_copies(sandbox, settings, runbook, sets, &dir).await?;
            out.run_outcome(&o);
            Ok(o.exit_code())
        }
        Mode::Plain { on, scratch } => {
            match rehearse::rehearse(sandbox, settings, runbook, sets, on, scratch.as_deref())
                .await?
            {
                rehearse::Rehearsed::Here(r) => {
                    out.rehearsal(&r);
                    Ok(r.exit_code())
                }
                // The child printed its report.
                rehearse::Rehearsed::InChild(code) => Ok(code),
            }
        }
        Mode::InOverlay(spec) => {
            match overlay::rehearse_in_overlay(sandbox, settings, runbook, sets, &spec).await? {
                Some(r) => {
                    out.rehearsal(&r);
                    Ok(r.exit_code())
                }
                // The mounts failed: the parent reads why; nothing ran.
                None => Ok(crate::exit::BAD_INPUT),
            }
        }
    }
}
