//! Loops forever in plan: the host must kill it at its deadline.
use mend_sdk::prelude::*;

#[derive(Deserialize)]
pub struct Params {}

pub struct Spin;
impl Step for Spin {
    type Params = Params;
    const NAME: &'static str = "spin";
    const VERSION: &'static str = "0.1.0";
    const SUMMARY: &'static str = "Loop forever";
    fn params() -> Vec<ParamSpec> {
        Vec::new()
    }
    fn plan(_: &Context, _: Params, _: &dyn Host) -> Result<Plan, StepError> {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
}
mend_sdk::export_step!(Spin);
