//! The plan's vocabulary, shared by the host that performs actions and the
//! journal that keeps them: actions and a step's checked plan, the commands
//! they run, what undo needs, its compact journal form, and how names that
//! are not UTF-8 travel as strings.
//!
//! It knows no wasmtime, no SQLite, no filesystem: plain data with serde.

mod action;
// Real file names are the host's (Unix bytes); the step SDK links this
// crate for wasm32-wasip2 to describe actions and needs none of it.
#[cfg(unix)]
pub mod names;
pub mod record;
mod undo;

pub use action::{
    Action, Arrival, Call, Expect, Format, Packed, Planned, Seen, StepPlan, mtime_ns, tree_entry,
};
pub use undo::{DirTimes, Key, Pre, STAGING, TRASH, Undo, under};
