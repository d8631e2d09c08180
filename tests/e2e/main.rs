//! End-to-end tests: the `mend` binary on generated fixtures.

mod common;

mod backups;
mod bad_input;
mod bulk;
mod bulk_rollback;
mod changed_since_plan;
mod commands;
mod crash;
mod describe;
mod faults;
mod fleet;
mod fleet_ansible;
mod fleet_ansible_params;
mod fleet_bench;
mod fleet_drift;
mod fleet_history;
mod fleet_install;
mod fleet_nginx;
mod fleet_pg;
mod fleet_pg_settle;
mod fleet_reconnect;
mod fleet_rollback;
mod golden;
mod held;
mod host;
mod hostile;
mod inspect;
mod layout;
mod lifecycle;
mod nothing_lost;
mod oci;
mod overlap;
mod overlay;
mod overlay_mounts;
mod overlay_upper;
mod overlay_walk;
mod parallel_removals;
mod postgres;
// The private PostgreSQL cluster, shared with crates/journal/tests/pg.rs.
#[path = "../support/pg_cluster.rs"]
mod pg_cluster;
mod prosody;
mod prune;
mod reflink;
mod rehearse_cost;
mod removal_shapes;
mod repos;
mod restore;
mod room;
mod room_fleet;
mod room_fleet_live;
mod room_short_secret;
mod runbooks;
mod schema;
mod serve;
mod steps_native;
mod stream;
mod stream_end;
mod supply;
mod synapse_upgrade;
mod upgrade;
mod walk_edges;
mod walk_seen;
mod watch;
mod whole_folders;
mod written_over;

/// The test that exercises each test step that build.rs compiles (by its
/// crate name, `-` as `_`). `foreach_test_guest!` is generated from
/// tests/guests at build time: a guest added there without a line here is
/// a build error, not a step built and forgotten (wasmtime's
/// test-programs rule).
mod guest_tests {
    pub(crate) use crate::bad_input::a_pin_that_does_not_match as noop;
    pub(crate) use crate::hostile::a_huge_allocation_is_refused_at_the_memory_limit as hog;
    pub(crate) use crate::hostile::a_log_flood_is_cut_at_the_log_budget_with_one_line_that_says_so as flood;
    pub(crate) use crate::hostile::a_step_blocked_in_a_wasi_sleep_or_poll_is_killed_at_its_deadline as sleep;
    pub(crate) use crate::hostile::a_write_during_plan_is_denied as write_in_plan;
    pub(crate) use crate::hostile::an_infinite_loop_is_killed_at_its_deadline_and_the_run_rolled_back as spin;
    pub(crate) use crate::hostile::bad_components_are_refused_before_anything_runs as evil_import;
    pub(crate) use crate::hostile::unbounded_recursion_runs_out_of_stack_and_the_run_is_rolled_back as recurse;
    pub(crate) use crate::lifecycle::plan_changes_nothing_and_lists_every_action as scripted;
    pub(crate) use crate::nothing_lost::a_later_step_cannot_squat_on_the_runs_trash as trash_squat;
    pub(crate) use crate::oci::a_step_pushed_from_one_state_dir_is_pulled_pinned_and_run_from_another as shared_1_0;
    pub(crate) use crate::oci::upgrade_shows_the_diff_and_rewrites_three_lines_only_on_confirmation as shared_1_1;
    pub(crate) use crate::oci::upgrade_shows_the_diff_and_rewrites_three_lines_only_on_confirmation as shared_1_2;
}

macro_rules! assert_test_exists {
    ($guest:ident) => {
        const _: fn() = guest_tests::$guest;
    };
}
mend::foreach_test_guest!(assert_test_exists);
