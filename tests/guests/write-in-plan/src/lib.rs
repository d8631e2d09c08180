//! Tries to write into its grant during plan: the mount is read-only, so the
//! write must fail; the step reports what the sandbox said.
use mend_sdk::prelude::*;

#[derive(Params, Deserialize)]
pub struct Params {
    /// the grant to write into
    grant: String,
}

pub struct WriteInPlan;
impl Step for WriteInPlan {
    type Params = Params;
    const NAME: &'static str = "write-in-plan";
    const SUMMARY: &'static str = "Try to write during plan";
    fn plan(_: &Context, p: Params, _: &dyn Host) -> Result<Plan, StepError> {
        let target = format!("/{}/planted.txt", p.grant);
        let create = std::fs::write(&target, b"written during plan");
        let remove = std::fs::remove_dir_all(format!("/{}", p.grant));
        match (create, remove) {
            (Err(c), Err(r)) => Err(StepError::new(format!(
                "write denied: create {target}: {c}; remove /{}: {r}",
                p.grant
            ))),
            _ => Ok(Plan::builder().summary("the sandbox let me write").build()),
        }
    }
}
mend_sdk::export_step!(WriteInPlan);
