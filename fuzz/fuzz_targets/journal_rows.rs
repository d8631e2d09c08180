//! The text and JSON the journal stores in its rows, decoded as mend decodes
//! them (`types.rs`'s enums through `FromStr`, the JSON columns through
//! serde). Damaged rows decode to errors; what decodes renders without
//! panicking, and serializes back to something that decodes the same.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mend_journal::{ActionState, RunMode, RunStatus, StepStatus};
use mend_plan::{Action, Planned};
use mend_journal::{Journaled, RunInputs, SavedStep};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Decodes `text` as `T`; if it does, encodes and decodes it again and
/// hands both to `same`.
fn round_trip<T: Serialize + DeserializeOwned>(text: &str, same: impl Fn(&T, &T)) -> Option<T> {
    let v: T = serde_json::from_str(text).ok()?;
    let again = serde_json::to_string(&v).expect("a decoded record encodes");
    let w: T = serde_json::from_str(&again)
        .unwrap_or_else(|e| panic!("{again} does not decode again: {e}"));
    same(&v, &w);
    Some(v)
}

fn json(v: &impl Serialize) -> String {
    serde_json::to_string(v).expect("encodes")
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Status and mode columns: a known text parses to the variant with that
    // very text; anything else is an error naming the valid ones.
    macro_rules! text_enum {
        ($($ty:ty),+) => {$(
            match text.parse::<$ty>() {
                Ok(v) => assert_eq!(v.as_str(), text),
                Err(e) => assert!(e.to_string().contains("one of:")),
            }
        )+};
    }
    text_enum!(RunMode, RunStatus, StepStatus, ActionState);

    // action_json: read as a plan's action (rollback) and as an action
    // alone (report, show).
    if let Some(p) = round_trip::<Planned>(text, |a, b| assert_eq!(json(a), json(b))) {
        let _ = (p.action.line(), p.action.target(), p.action.kind());
    }
    if let Some(a) = round_trip::<Action>(text, |a, b| assert_eq!(a, b)) {
        let _ = (a.line(), a.target(), a.kind());
    }
    // plan_json, undo_json, params_json.
    round_trip::<SavedStep>(text, |a, b| assert_eq!(json(a), json(b)));
    round_trip::<Journaled>(text, |a, b| assert_eq!(json(a), json(b)));
    round_trip::<RunInputs>(text, |a, b| assert_eq!(json(a), json(b)));
});
