//! mend: runbooks for self-hosted services, run as sandboxed WebAssembly
//! steps with an enforced dry-run, a journal, resume and rollback.
//!
//! The binary is a thin CLI ([`cli`]) over this library. Data flows one way:
//! runbook file -> [`runbook`] model -> for each step: [`sandbox`] (plan,
//! read-only) -> [`plan`] (checked actions) -> [`apply`] (performed with
//! cap-std) -> [`journal`].

pub mod accounts;
pub mod apply;
pub mod bundled;
pub mod cli;
pub mod commands;
pub mod demo;
pub mod exit;
pub mod faults;
pub mod grants;
pub mod journal;
pub mod names;
pub mod output;
pub mod pinned;
pub mod plan;
pub mod runbook;
pub mod runner;
pub mod sandbox;
pub mod space;
pub mod supply;
