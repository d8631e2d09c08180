//! What people read, shared by the engine and the step SDK: sizes and
//! counts (`22.0 GB`, `33,553`), UTC times and durations, and a step's text
//! neutralised before it reaches a terminal. Plain std: it builds for
//! wasm32-wasip2 as well as for the host, with no bindings in it.

mod text;
pub mod time;
mod units;

pub use text::{head, sanitize, shown};
pub use units::{copy_headroom, files_text, human_bytes, human_count};
