//! mend: runbooks for self-hosted services, run as sandboxed WebAssembly
//! steps with an enforced dry-run, a journal, resume and rollback.
//!
//! The binary is a thin CLI ([`cli`]) over this library and the crates that
//! do the work. The modules follow a run:
//!
//! - [`load`]: runbook file -> a prepared run (pins, signatures,
//!   capabilities, parameters, grants), before any step code plans;
//! - [`plan`]: each step asked what it would do, read-only, and checked;
//!   plans saved for later;
//! - [`run`]: apply (journal, perform), verify, resume, roll back, rehearse;
//!   the run locks;
//! - [`outcome`] and [`exit`]: what a command ended in, and its exit code.

pub mod cli;
pub mod demo;
pub mod exit;
pub mod fleet;
pub mod load;
pub mod outcome;
pub mod plan;
pub mod run;
pub mod secrets;
pub mod settings;
