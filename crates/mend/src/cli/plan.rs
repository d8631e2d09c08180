//! `mend plan RUNBOOK [--set K=V] [--all] [--out FILE]`: what a run would
//! do, changing nothing anywhere; optionally saved for `mend run --plan`.

use std::path::Path;

use crate::cli::Ctx;
use crate::exit;
use crate::load::{Prepared, prepare};
use crate::outcome::Failure;
use crate::plan::{PlannedStep, StepCx, plan_step, saved};
use crate::settings::now;

/// Plan every step against the world as it is now (nothing runs between
/// them): what `mend plan` shows and a saved plan is checked against.
pub(crate) async fn plan_all<'a>(
    cx: &Ctx,
    prepared: &'a Prepared,
    now: i64,
) -> Vec<PlannedStep<'a>> {
    let mut steps = Vec::new();
    for step in &prepared.steps {
        let step_cx = StepCx {
            step,
            now,
            settings: &cx.settings,
        };
        let planned = plan_step(&cx.sandbox, &prepared.runbook, &step_cx).await;
        steps.push((step, planned));
    }
    steps
}

pub(crate) async fn run(
    cx: &Ctx,
    file: &Path,
    sets: &[(String, String)],
    all: bool,
    save: Option<&Path>,
) -> Result<i32, Failure> {
    let (settings, out) = (&cx.settings, &cx.out);
    let prepared = prepare(
        &cx.sandbox,
        file,
        sets,
        &Default::default(),
        false,
        &settings.trust,
    )
    .await?;
    let now = now(settings);
    let steps = plan_all(cx, &prepared, now).await;
    let code = out.plan(&prepared, &steps, all);
    let Some(save) = save else {
        return Ok(code);
    };
    match saved::capture(&prepared.runbook, sets, now, &steps) {
        Ok(plan) => {
            saved::save(&plan, save)
                .map_err(|e| anyhow::anyhow!("cannot write the plan to {}: {e}", save.display()))?;
            out.note(&format!(
                "plan saved to {}; `mend run --plan {}` runs exactly it, or nothing if anything it rests on has moved",
                save.display(),
                save.display()
            ));
            Ok(code)
        }
        Err(failed) => {
            out.note(&format!(
                "plan not saved to {}: a plan that cannot run is not worth keeping ({})",
                save.display(),
                failed.join("; ")
            ));
            Ok(exit::STEP_FAILED)
        }
    }
}
