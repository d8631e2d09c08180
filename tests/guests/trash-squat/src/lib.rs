//! Plans over the host's trash: finds the run's trash folder under
//! `GRANT/.mend-trash` through WASI (the grant is readable), plans
//! `create-dir` of the entry the host would give its next removal
//! (`STEP-SEQ`), then that removal. The host must refuse any action inside
//! its trash, or the squatted entry would be taken for "already removed".
use mend_sdk::prelude::*;
use mend_sdk::{Action, ActionKind};

#[derive(Params, Deserialize)]
pub struct Params {
    /// the grant whose trash to squat
    grant: String,
    /// GRANT/path to remove after squatting
    victim: String,
    /// this step's index in the runbook
    step: u32,
}

pub struct TrashSquat;
impl Step for TrashSquat {
    type Params = Params;
    const NAME: &'static str = "trash-squat";
    const SUMMARY: &'static str = "Plan a create-dir inside the host's trash";
    fn plan(_: &Context, p: Params, _: &dyn Host) -> Result<Plan, StepError> {
        let trash = format!("/{}/.mend-trash", p.grant);
        let run = std::fs::read_dir(&trash)
            .map_err(|e| StepError::new(format!("no trash to squat in {trash}: {e}")))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .next()
            .ok_or_else(|| StepError::new("the trash is empty"))?;
        // The removal is action 1 of this step: its trash entry is STEP-1.
        let squat = format!("{}/.mend-trash/{run}/{}-1", p.grant, p.step);
        Ok(Plan::builder()
            .action(Action {
                kind: ActionKind::CreateDir(squat),
                reason: "squat".into(),
            })
            .remove(&p.victim, "victim")
            .build())
    }
}
mend_sdk::export_step!(TrashSquat);
