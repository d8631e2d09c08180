//! A community step as `mend step push` shares it (tests/e2e/oci.rs):
//! version 1.0.0 logs what it would report and plans nothing.
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
        host.log(
            Level::Info,
            &format!("disk-report 1.0.0: top {} of {}", p.top, p.path),
        );
        Ok(Plan::builder().build())
    }
}
mend_sdk::export_step!(DiskReport);
