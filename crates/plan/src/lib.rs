//! The plan's vocabulary, shared by the host that performs actions and the
//! journal that keeps them: actions and a step's checked plan, the commands
//! they run, what undo needs, its compact journal form, and how names that
//! are not UTF-8 travel as strings.
//!
//! It knows no wasmtime, no SQLite, no filesystem: plain data with serde.

mod action;
pub mod names;
pub mod record;
mod undo;

pub use action::{Action, Call, Format, Planned, StepPlan};
pub use undo::{DirTimes, Key, Pre, STAGING, TRASH, Undo, under};
