//! `mend fleet`: one runbook rolled out over many hosts through the system's
//! OpenSSH client, canary first, stopped by one rule
//! ([`mend_runbook::fleet::rollout`]).

/// What mend says of `fleet.journal = "postgres://..."` until the shared
/// journal is wired in.
pub const PG_NOT_WIRED: &str = "fleet.journal = \"postgres://...\" is parsed but not yet wired: \
     the fleet's history stays in this controller's state directory";

pub mod bundle;
pub mod host;
pub mod plan;
pub mod remote;
pub mod run;
pub mod ssh;
