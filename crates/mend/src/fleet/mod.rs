//! `mend fleet`: one runbook rolled out over many hosts through the system's
//! OpenSSH client, canary first, stopped by one rule
//! ([`mend_runbook::fleet::rollout`]).

pub mod bundle;
pub mod host;
pub mod install;
pub mod plan;
pub mod remote;
pub mod run;
pub mod shared;
pub mod ssh;
