//! Version 1.1.0 of the shared test step (tests/e2e/oci.rs): one more
//! parameter (`depth`) and one more interface (the monotonic clock), for
//! `mend step upgrade`'s diff.
use mend_sdk::prelude::*;
use serde::Deserialize;

#[derive(Params, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// the grant to report on
    path: String,
    /// how many entries to list
    #[serde(default = "top")]
    #[param(default = 20)]
    top: i64,
    /// how deep to look
    #[serde(default = "depth")]
    #[param(default = 3)]
    depth: i64,
}

fn top() -> i64 {
    20
}

fn depth() -> i64 {
    3
}

pub struct DiskReport;
impl Step for DiskReport {
    type Params = Params;
    const NAME: &'static str = "disk-report";
    const SUMMARY: &'static str = "Report what fills the disk";
    fn plan(_: &Context, p: Params, host: &dyn Host) -> Result<Plan, StepError> {
        // Never at the depths the tests use: here so the step imports
        // wasi:clocks/monotonic-clock, which 1.0.0 does not.
        if p.depth > 1000 {
            let started = std::time::Instant::now();
            host.log(Level::Info, &format!("deep: {:?}", started.elapsed()));
        }
        host.log(
            Level::Info,
            &format!(
                "disk-report 1.1.0: top {} of {}, depth {}",
                p.top, p.path, p.depth
            ),
        );
        Ok(Plan::builder().build())
    }
}
mend_sdk::export_step!(DiskReport);
