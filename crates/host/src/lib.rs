//! The host: the only crate that runs step code or touches the world.
//!
//! - [`sandbox`]: wasmtime, one store per step call, its grants preopened
//!   read-only, a deadline and a memory limit; the host calls steps import
//! - [`check`]: a step's proposed plan checked against its grants and
//!   commands before anything is done
//! - [`grants`]: `GRANT/relative/path` strings turned into paths that cannot
//!   leave their grant (cap-std)
//! - [`apply`]: performing, looking at and undoing actions
//! - [`commands`]: running the programs a runbook allows (reads confined
//!   read-only, changes as the plan's actions), as their user
//! - [`space`]: free space, and what a copy needs, in blocks and inodes
//! - [`files`]: files opened for reading, special files refused
//! - [`cow`]: rehearsals on overlays (copy-on-write) instead of copies
//! - [`walked`]: what a walk saw, for the check of what is planned from it
//!
//! It knows no CLI and no journal: what it performs, the caller records.

pub mod apply;
pub mod check;
pub mod commands;
pub mod cow;
pub mod files;
pub mod grants;
pub mod huge_pages;
pub mod sandbox;
pub mod space;
pub mod walked;
