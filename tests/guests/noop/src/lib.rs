//! Plans nothing: measures the engine's own overhead per step.
use mend_sdk::prelude::*;

#[derive(Deserialize)]
pub struct Params {}

pub struct Noop;
impl Step for Noop {
    type Params = Params;
    const NAME: &'static str = "noop";
    const VERSION: &'static str = "0.1.0";
    const SUMMARY: &'static str = "Plan nothing";
    fn params() -> Vec<ParamSpec> {
        Vec::new()
    }
    fn plan(_: &Context, _: Params, _: &dyn Host) -> Result<Plan, StepError> {
        Ok(Plan::builder().build())
    }
}
mend_sdk::export_step!(Noop);
