//! `mend run RUNBOOK [--set K=V]` and `mend run --plan FILE`: a run, or
//! exactly a saved plan that must still hold.

use std::path::{Path, PathBuf};

use mend_journal::RunMode;

use crate::cli::Ctx;
use crate::cli::plan::plan_all;
use crate::load::prepare;
use crate::outcome::{Failure, Outcome as _};
use crate::plan::saved;
use crate::settings::now;

pub(crate) async fn run(
    cx: &Ctx,
    runbook: Option<PathBuf>,
    sets: Vec<(String, String)>,
    saved_plan: Option<&Path>,
    hold: bool,
) -> Result<i32, Failure> {
    let (settings, out) = (&cx.settings, &cx.out);
    let (file, sets) = match saved_plan {
        None => (runbook.expect("clap requires it"), sets),
        Some(saved_file) => {
            let plan = saved::load(saved_file)
                .map_err(|e| Failure::input(&saved_file.display().to_string(), e, None))?;
            if let Some(given) = &runbook
                && std::path::absolute(given).ok().as_ref() != Some(&plan.runbook.path)
            {
                return Err(Failure::input(
                    &saved_file.display().to_string(),
                    format!(
                        "the plan is of {}, not {}",
                        plan.runbook.path.display(),
                        given.display()
                    ),
                    Some("leave the runbook out: the plan names it".to_string()),
                ));
            }
            let prepared = prepare(
                &cx.sandbox,
                &plan.runbook.path,
                &plan.sets,
                &Default::default(),
                false,
                &settings.trust,
            )
            .await?;
            let now = now(settings);
            let steps = plan_all(cx, &prepared, now).await;
            let drift = match saved::capture(&prepared.runbook, &plan.sets, now, &steps) {
                Ok(current) => saved::drift(&plan, &current),
                Err(failed) => failed
                    .into_iter()
                    .map(|f| format!("step {f} (it planned at plan time)"))
                    .collect(),
            };
            if !drift.is_empty() {
                let drifted = saved::Drifted {
                    plan: saved_file.to_path_buf(),
                    drift,
                };
                out.drifted(&drifted);
                return Ok(drifted.exit_code());
            }
            out.note(&format!(
                "the plan in {} still holds: runbook, steps, actions, facts, mounts and free space",
                saved_file.display()
            ));
            (plan.runbook.path, plan.sets)
        }
    };
    let o = crate::run::run(
        &cx.sandbox,
        settings,
        &file,
        &sets,
        RunMode::Run,
        &Default::default(),
        hold,
    )
    .await?;
    out.run_outcome(&o);
    Ok(o.exit_code())
}

/// `mend commit RUN`: a held run committed, its trash purged.
pub(crate) async fn commit(cx: &Ctx, run: &str) -> Result<i32, Failure> {
    let o = crate::run::commit_held(&cx.sandbox, &cx.settings, run).await?;
    cx.out.run_outcome(&o);
    Ok(o.exit_code())
}
