//! Version 1.2.0 of the shared test step (tests/e2e/oci.rs): `path` is
//! gone, so `mend step upgrade` must refuse a runbook that sets it.
use mend_sdk::prelude::*;
use serde::Deserialize;

#[derive(Params, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// how many entries to list
    #[serde(default = "top")]
    #[param(default = 20)]
    top: i64,
}

fn top() -> i64 {
    20
}

pub struct DiskReport;
impl Step for DiskReport {
    type Params = Params;
    const NAME: &'static str = "disk-report";
    const SUMMARY: &'static str = "Report what fills the disk";
    fn plan(_: &Context, p: Params, host: &dyn Host) -> Result<Plan, StepError> {
        host.log(Level::Info, &format!("disk-report 1.2.0: top {}", p.top));
        Ok(Plan::builder().build())
    }
}
mend_sdk::export_step!(DiskReport);
