//! Asks for 1 GiB in plan: the host must refuse it at the memory limit.
use mend_sdk::prelude::*;

pub struct Hog;
impl Step for Hog {
    type Params = NoParams;
    const NAME: &'static str = "hog";
    const SUMMARY: &'static str = "Allocate 1 GiB";
    fn plan(_: &Context, _: NoParams, _: &dyn Host) -> Result<Plan, StepError> {
        let big = vec![1u8; 1 << 30];
        let sum: u64 = std::hint::black_box(&big)
            .iter()
            .step_by(4096)
            .map(|&b| b as u64)
            .sum();
        Ok(Plan::builder()
            .summary(format!("touched {sum} pages"))
            .build())
    }
}
mend_sdk::export_step!(Hog);
