use mend_sdk::testing::{self, FakeHost};
use serde_json::json;

use super::Service;

/// A host where `svc is-active UNIT` answers as `states` says.
fn host(states: &[(&str, bool)]) -> FakeHost {
    states.iter().fold(
        FakeHost::new(1_700_000_000).command("svc"),
        |h, (unit, up)| h.probe_answer("svc", &["is-active", unit], if *up { 0 } else { 3 }, ""),
    )
}

#[test]
fn stop_runs_in_reverse_order_and_is_undone_by_start() {
    let h = host(&[("db", true), ("web", true)]);
    let plan = testing::plan::<Service>(
        &h,
        json!({"units": ["db", "web"], "action": "stop", "command": "svc"}),
    )
    .unwrap();
    assert_eq!(
        testing::lines(&plan),
        [
            "exec svc stop web (undo: svc start web)",
            "exec svc stop db (undo: svc start db)"
        ]
    );
}

#[test]
fn a_unit_already_stopped_is_left_alone_so_rollback_does_not_start_it() {
    let h = host(&[("db", true), ("worker", false)]);
    let plan = testing::plan::<Service>(
        &h,
        json!({"units": ["db", "worker"], "action": "stop", "command": "svc"}),
    )
    .unwrap();
    assert_eq!(
        testing::lines(&plan),
        ["exec svc stop db (undo: svc start db)"]
    );
    assert!(
        plan.summary
            .iter()
            .any(|l| l.contains("worker: already inactive; left alone")),
        "{:?}",
        plan.summary
    );
}

#[test]
fn start_only_what_is_down_and_restart_everything() {
    let h = host(&[("a", true), ("b", false)]);
    let start = testing::plan::<Service>(
        &h,
        json!({"units": ["a", "b"], "action": "start", "command": "svc"}),
    )
    .unwrap();
    assert_eq!(
        testing::lines(&start),
        ["exec svc start b (undo: svc stop b)"]
    );
    let restart = testing::plan::<Service>(
        &h,
        json!({"units": ["a", "b"], "action": "restart", "command": "svc"}),
    )
    .unwrap();
    assert_eq!(
        testing::lines(&restart),
        [
            "exec svc restart a (undo: svc restart a)",
            "exec svc restart b (undo: svc restart b)"
        ]
    );
}

#[test]
fn reload_of_a_stopped_unit_is_refused_before_anything_runs() {
    let h = host(&[("a", false)]);
    let err = testing::plan::<Service>(
        &h,
        json!({"units": ["a"], "action": "reload", "command": "svc"}),
    )
    .unwrap_err();
    assert!(
        err.message
            .contains("a is not running, so it cannot be reloaded"),
        "{}",
        err.message
    );
}

#[test]
fn unknown_action_names_the_param() {
    let h = host(&[("a", true)]);
    let err = testing::plan::<Service>(
        &h,
        json!({"units": ["a"], "action": "bounce", "command": "svc"}),
    )
    .unwrap_err();
    assert_eq!(err.param.as_deref(), Some("action"));
    assert!(err.message.contains("use stop, start, restart or reload"));
}

#[test]
fn verify_reports_each_unit_that_is_not_in_the_wanted_state() {
    let h = host(&[("a", true), ("b", false)]);
    let checks = testing::verify::<Service>(
        &h,
        json!({"units": ["a", "b"], "action": "start", "command": "svc"}),
    )
    .unwrap();
    let seen: Vec<(String, bool)> = checks.iter().map(|c| (c.name.clone(), c.ok)).collect();
    assert_eq!(
        seen,
        [
            ("a is active".to_string(), true),
            ("b is active".to_string(), false)
        ]
    );
    let stopped = testing::verify::<Service>(
        &h,
        json!({"units": ["b"], "action": "stop", "command": "svc"}),
    )
    .unwrap();
    assert!(stopped[0].ok);
}

/// Without systemd: OpenRC's rc-service, runit's sv, prosodyctl and
/// docker compose, each with the same compensations.
#[test]
fn other_service_managers_speak_their_own_verbs() {
    let h = FakeHost::new(1_700_000_000)
        .command("rc")
        .command("sv")
        .command("pctl")
        .command("dc")
        .probe_answer("rc", &["nginx", "status"], 0, "")
        .probe_answer("sv", &["check", "redis"], 0, "")
        .probe_answer("pctl", &["status"], 0, "Prosody is running")
        .probe_answer(
            "dc",
            &["ps", "--status", "running", "--services"],
            0,
            "db\nweb\n",
        );
    let stop = |command: &str, manager: &str, unit: &str| {
        testing::lines(
            &testing::plan::<Service>(
                &h,
                json!({"units": [unit], "action": "stop", "command": command, "manager": manager}),
            )
            .unwrap(),
        )
    };
    assert_eq!(
        stop("rc", "openrc", "nginx"),
        ["exec rc nginx stop (undo: rc nginx start)"]
    );
    assert_eq!(
        stop("sv", "runit", "redis"),
        ["exec sv down redis (undo: sv up redis)"]
    );
    assert_eq!(
        stop("pctl", "prosodyctl", "prosody"),
        ["exec pctl stop (undo: pctl start)"]
    );
    assert_eq!(
        stop("dc", "compose", "web"),
        ["exec dc stop web (undo: dc start web)"]
    );
    // Not listed by compose: not running, left alone.
    assert!(stop("dc", "compose", "worker").is_empty());
    let custom = testing::plan::<Service>(
        &h,
        json!({"units": ["nginx"], "action": "restart", "command": "rc", "manager": "openrc",
               "verbs": {"restart": ["{unit}", "--ifstarted", "restart"]}}),
    )
    .unwrap();
    assert_eq!(
        testing::lines(&custom),
        ["exec rc nginx --ifstarted restart (undo: rc nginx --ifstarted restart)"]
    );
    let err = testing::plan::<Service>(
        &h,
        json!({"units": ["x"], "action": "stop", "command": "rc", "manager": "upstart"}),
    )
    .unwrap_err();
    assert_eq!(err.param.as_deref(), Some("manager"));
}
