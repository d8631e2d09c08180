//! `#[derive(Params)]`: a whole step with one defaulted `u32` and one
//! required string is the 14 lines between the markers below (a component
//! adds `mend_sdk::export_step!(Tidy);`).

// -- a step, start
use mend_sdk::prelude::*;
#[derive(Params, Deserialize)]
pub struct Tidy {
    path: String,
    #[param(default = 7)]
    days: u32,
}
impl Step for Tidy {
    type Params = Self;
    fn plan(_: &Context, p: Self, _: &dyn Host) -> Result<Plan, StepError> {
        let line = format!("{}: {} days", p.path, p.days);
        Ok(Plan::builder().summary(line).build())
    }
}
// -- a step, end

use mend_sdk::testing::{self, FakeHost};
use mend_sdk::{ParamKind, ParamSpec};
use serde_json::json;

fn spec(name: &str) -> ParamSpec {
    let info = mend_sdk::step_info!(Tidy);
    info.params.into_iter().find(|s| s.name == name).unwrap()
}

#[test]
fn the_step_is_short() {
    let me = include_str!("derive.rs");
    let start = me.find("// -- a step, start\n").unwrap();
    let end = me.find("// -- a step, end").unwrap();
    let lines = me[start..end].lines().count() - 1;
    assert!(lines < 15, "{lines} lines");
}

#[test]
fn specs_come_from_the_fields() {
    let info = mend_sdk::step_info!(Tidy);
    // The crate's own name and version (this test crate's: the SDK's).
    assert_eq!(info.name, "mend-sdk");
    assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    let path = spec("path");
    assert_eq!(
        (path.kind, path.required, path.default, path.doc.as_str()),
        (ParamKind::String, true, None, "")
    );
    let days = spec("days");
    assert_eq!(
        (
            days.kind,
            days.required,
            days.default.as_deref(),
            days.doc.as_str()
        ),
        (ParamKind::Integer, false, Some("7"), "")
    );
}

#[test]
fn a_default_is_filled_in_and_a_bad_value_names_its_field() {
    let host = FakeHost::new(0);
    let plan = testing::plan::<Tidy>(&host, json!({"path": "data/x"})).unwrap();
    assert_eq!(plan.summary, ["data/x: 7 days"]);
    // Not found from serde's wording but from the field whose type refused it.
    let e = testing::plan::<Tidy>(&host, json!({"path": "data/x", "days": "a week"})).unwrap_err();
    assert_eq!(e.param.as_deref(), Some("days"), "{}", e.message);
    assert!(e.message.starts_with("parameter `days`: "), "{}", e.message);
    let e = testing::plan::<Tidy>(&host, json!({"path": "data/x", "days": -1})).unwrap_err();
    assert_eq!(e.param.as_deref(), Some("days"), "{}", e.message);
}
