//! End-to-end tests: the `mend` binary on generated fixtures.

mod common;

mod bad_input;
mod crash;
mod host;
mod hostile;
mod lifecycle;
