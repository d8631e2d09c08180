//! Plans nothing: measures the engine's own overhead per step.
use mend_sdk::prelude::*;

pub struct Noop;
impl Step for Noop {
    type Params = NoParams;
    const NAME: &'static str = "noop";
    const SUMMARY: &'static str = "Plan nothing";
    fn plan(_: &Context, _: NoParams, _: &dyn Host) -> Result<Plan, StepError> {
        Ok(Plan::builder().build())
    }
}
mend_sdk::export_step!(Noop);
