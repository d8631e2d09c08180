//! The standard steps, compiled into the binary so `std:NAME` works from
//! anywhere, and the test steps' paths (for the test suite).

include!(concat!(env!("OUT_DIR"), "/guests.rs"));

/// A bundled step's component by name.
pub fn get(name: &str) -> Option<&'static [u8]> {
    BUNDLED.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}
