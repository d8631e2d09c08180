//! Loops forever in plan: the host must kill it at its deadline.
use mend_sdk::prelude::*;

pub struct Spin;
impl Step for Spin {
    type Params = NoParams;
    const NAME: &'static str = "spin";
    const SUMMARY: &'static str = "Loop forever";
    fn plan(_: &Context, _: NoParams, _: &dyn Host) -> Result<Plan, StepError> {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
}
mend_sdk::export_step!(Spin);
