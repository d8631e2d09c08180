//! mend: runbooks for self-hosted services, run as sandboxed WebAssembly
//! steps with an enforced dry-run, a journal, resume and rollback.
//!
//! The binary is a thin CLI ([`cli`]) over the crates that do the work. Data
//! flows one way: runbook file -> `mend_runbook` (the validated model) ->
//! for each step: load (pins, signatures, capabilities, parameters: [`supply`],
//! [`bundled`], [`runner`]) -> plan (`mend_host::sandbox`, read-only, then
//! `mend_host::check`) -> apply (`mend_host::apply`) -> `mend_journal`.

pub mod bundled;
pub mod cli;
pub mod demo;
pub mod exit;
pub mod lock;
pub mod pinned;
pub mod runner;
pub mod supply;
