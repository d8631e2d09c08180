//! Copy-on-write presentations of a rehearsal's grants: the real directory
//! stays the read-only lower layer of an overlay mounted on its own path in
//! a private mount namespace, and the run's changes go to an upper layer in
//! a scratch area. A rehearsal then costs what the run touches, not what the
//! grant holds.
//!
//! - [`overlay`]: the namespace, the mounts, what the kernel really mounted
//! - [`upper`]: the proof after a rollback, read from the upper layer only
//! - [`lower`]: where a walk reads the lower layer itself (what the run
//!   has not touched), not the overlay
//! - [`skip`]: what that proof leaves out (irreversible by the plan)
//! - [`space`]: what a step's changes need in the upper layer
//! - [`reflink`]: where overlays cannot be had, copies whose files share
//!   the grant's extents (btrfs, XFS)

pub mod lower;
pub mod overlay;
pub mod reflink;
pub mod skip;
pub mod space;
pub mod upper;
