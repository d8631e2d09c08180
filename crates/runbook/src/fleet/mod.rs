//! A fleet: the inventory of hosts a runbook is rolled out to, and the rule
//! that stops a rollout.
//!
//! - [`inventory`]: `fleet.toml`, parsed and checked like a runbook
//! - [`rollout`]: the one stop rule and the split into batches, pure

pub mod ansible;
pub mod inventory;
pub mod rollout;

pub use inventory::{Host, Inventory, JournalTarget};
pub use rollout::{BatchSize, Decision, HostEnd, batches, rollout};
