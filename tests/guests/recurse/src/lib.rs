//! Recurses without end in plan: the host must trap it when its stack runs
//! out, name the step, and live on.
use mend_sdk::prelude::*;

/// Not a tail call, and no locals in linear memory: every frame is on the
/// wasm stack, which wasmtime bounds.
#[inline(never)]
fn down(n: u64) -> u64 {
    // Never true, but the compiler cannot know: no "cannot return" lint.
    if std::hint::black_box(n) == u64::MAX {
        return 0;
    }
    std::hint::black_box(down(n + 1)).wrapping_add(n)
}

pub struct Recurse;
impl Step for Recurse {
    type Params = NoParams;
    const NAME: &'static str = "recurse";
    const SUMMARY: &'static str = "Recurse without end";
    fn plan(_: &Context, _: NoParams, _: &dyn Host) -> Result<Plan, StepError> {
        let n = down(0);
        Ok(Plan::builder().summary(format!("reached {n}")).build())
    }
}
mend_sdk::export_step!(Recurse);
