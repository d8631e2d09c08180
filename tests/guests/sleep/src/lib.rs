//! Blocks in WASI for an hour in plan, in a host call where epoch
//! interruption cannot reach it: the host must still stop it at its deadline.
//! `how = "sleep"`: `std::thread::sleep`; `how = "poll"`: `wasi:io/poll` on a
//! monotonic-clock pollable.
use mend_sdk::prelude::*;

#[derive(Params, Deserialize)]
pub struct Params {
    /// `sleep` or `poll`
    how: String,
}

const HOUR_NS: u64 = 3600 * 1_000_000_000;

pub struct Sleep;
impl Step for Sleep {
    type Params = Params;
    const NAME: &'static str = "sleep";
    const SUMMARY: &'static str = "Block in WASI for an hour";
    fn plan(_: &Context, p: Params, _: &dyn Host) -> Result<Plan, StepError> {
        match p.how.as_str() {
            "sleep" => std::thread::sleep(std::time::Duration::from_nanos(HOUR_NS)),
            "poll" => {
                let hour = wasip2::clocks::monotonic_clock::subscribe_duration(HOUR_NS);
                wasip2::io::poll::poll(&[&hour]);
            }
            other => return Err(StepError::new(format!("unknown how `{other}`"))),
        }
        Ok(Plan::builder().summary("woke up after an hour").build())
    }
}
mend_sdk::export_step!(Sleep);
