//! Hold before commit across a fleet: every host's run is held (verified,
//! its undo data kept) until the rollout's end settles it. `--rollback-fleet`
//! and `mend fleet rollback` undo hosts that had verified, byte for byte.
//! Four real sshd hosts, the harness of `fleet.rs`.

use std::process::{Command, Stdio};

use crate::common::*;
use crate::fleet::{Fleet, Ran, copies};

/// The fleet run's id from the first line `fleet run F-...: ...`.
fn fleet_run_id(run: &Ran) -> String {
    run.stdout
        .lines()
        .find_map(|l| l.strip_prefix("fleet run ")?.split(':').next())
        .unwrap_or_else(|| panic!("no fleet run id: {}", run.text()))
        .to_string()
}

/// A host's own journal, as `mend history` on it says.
fn host_history(f: &Fleet, i: usize) -> serde_json::Value {
    let out = Command::new(mend_bin())
        .arg("--json")
        .arg("--state-dir")
        .arg(f.hosts[i].state())
        .arg("history")
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

fn trash_in_live(f: &Fleet, i: usize) -> bool {
    tree(&f.hosts[i].data().join("live"), false)
        .keys()
        .any(|k| k.contains(".mend-trash"))
}

/// h2's `nginx -t` fails; batches of 1, 1, then the rest.
fn failing_h2(f: &Fleet) {
    f.inventory("batches = [1, 1, \"rest\"]\nmax_failures = 0", &|i| {
        if i == 1 {
            format!(
                "params = {{ data = \"{}\", nginx = \"/bin/false\" }}",
                f.hosts[i].data().display()
            )
        } else {
            String::new()
        }
    });
}

#[test]
fn fleet_rollback_fleet_returns_the_canary_byte_for_byte_when_host_2_fails() {
    let f = Fleet::start(4);
    failing_h2(&f);
    let rb = f.runbook();
    let before: Vec<_> = (0..4).map(|i| f.snapshot(i).0).collect();
    let plan = f.mend(&["fleet", "plan", rb.to_str().unwrap(), "--out", "p"]);
    assert_eq!(plan.code, 0, "{}", plan.text());
    let after_plan: Vec<_> = (0..4).map(|i| f.snapshot(i)).collect();

    let run = f.mend(&["fleet", "run", "p", "--rollback-fleet"]);
    assert_eq!(run.code, 1, "{}", run.text());
    for line in [
        "h2  rolled back  nginx-test",
        "batch 3/3: not started; failures 1 > max_failures 0: stopping",
        "rolling back 1 held host, newest batch first",
        "h1  undone by fleet",
        "the hosts done were rolled back by the fleet",
    ] {
        assert!(run.stdout.contains(line), "no `{line}`: {}", run.text());
    }
    // h1 (the canary) and h2 as before: content, mode, times, links.
    assert_same(
        &before[0].iter().cloned().collect(),
        &f.snapshot(0).0.into_iter().collect(),
        "h1 after the fleet's rollback",
    );
    assert_eq!(f.snapshot(1).0, before[1], "h2 after its own rollback");
    assert!(copies(&f.hosts[0]).is_empty());
    for i in [2, 3] {
        assert_eq!(f.snapshot(i), after_plan[i], "h{} changed", i + 1);
    }
    assert_eq!(host_history(&f, 0)[0]["status"], "rolled-back");

    let shown = f.mend(&["fleet", "show", &fleet_run_id(&run)]);
    assert!(
        shown.stdout.contains("h1  batch 1  undone"),
        "{}",
        shown.text()
    );
}

#[test]
fn fleet_without_rollback_fleet_a_stopped_rollout_commits_the_canary() {
    let f = Fleet::start(4);
    failing_h2(&f);
    let rb = f.runbook();
    let plan = f.mend(&["fleet", "plan", rb.to_str().unwrap(), "--out", "p"]);
    assert_eq!(plan.code, 0, "{}", plan.text());
    let run = f.mend(&["fleet", "run", "p"]);
    assert_eq!(run.code, 1, "{}", run.text());
    assert!(
        run.stdout.contains("committing 1 held host")
            && run.stdout.contains("the hosts done are committed"),
        "{}",
        run.text()
    );
    // h1's own journal says committed, and its undo data is gone.
    assert_eq!(host_history(&f, 0)[0]["status"], "committed");
    assert!(!trash_in_live(&f, 0), "h1's trash is left after its commit");
    assert_eq!(copies(&f.hosts[0]).len(), 1);
}

#[test]
fn fleet_rollback_undoes_the_hosts_a_dead_controller_left_held() {
    let f = Fleet::start(4);
    f.inventory("batches = [1, \"rest\"]", &|_| String::new());
    let rb = f.runbook();
    let before: Vec<_> = (0..4).map(|i| f.snapshot(i).0).collect();
    let plan = f.mend(&["fleet", "plan", rb.to_str().unwrap(), "--out", "p"]);
    assert_eq!(plan.code, 0, "{}", plan.text());
    // The controller dies after every host verified, before it settles one.
    let out = Command::new(mend_bin())
        .current_dir(f.root())
        .env_remove("MEND_STATE_DIR")
        .env("MEND_CACHE_DIR", shared_cache())
        .env("MEND_CRASH_AT", "fleet-settle:0:0")
        .arg("--state-dir")
        .arg(f.root().join("controller"))
        .args(["fleet", "run", "p"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let killed = Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert_eq!(killed.code, -1, "not killed: {}", killed.text());
    let id = fleet_run_id(&killed);
    // Every host holds its run: changed, undo data kept.
    for i in 0..4 {
        let h = host_history(&f, i);
        assert_eq!(h[0]["status"], "held", "h{}: {h}", i + 1);
        assert!(trash_in_live(&f, i) || copies(&f.hosts[i]).len() == 1);
    }
    // On a host, a second run of the runbook waits for the held one.
    let held = host_history(&f, 0)[0]["id"].as_str().unwrap().to_string();
    let bundle_rb = host_history(&f, 0)[0]["runbook_path"]
        .as_str()
        .unwrap()
        .to_string();
    let local = Command::new(mend_bin())
        .env("MEND_CACHE_DIR", shared_cache())
        .arg("--state-dir")
        .arg(f.hosts[0].state())
        .args(["run", &bundle_rb, "--set"])
        .arg(format!("data={}", f.hosts[0].data().display()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&local.stderr);
    assert_eq!(local.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains(&format!("held run {held}")), "{stderr}");

    let back = f.mend(&["fleet", "rollback", &id]);
    assert_eq!(back.code, 0, "{}", back.text());
    // Newest batch first: h2..h4 (batch 2) before h1 (the canary).
    let pos = |h: &str| {
        back.stdout
            .find(&format!("{h}  undone by fleet"))
            .unwrap_or_else(|| panic!("no {h}: {}", back.text()))
    };
    for h in ["h2", "h3", "h4"] {
        assert!(pos(h) < pos("h1"), "{}", back.text());
    }
    for (i, was) in before.iter().enumerate() {
        assert_eq!(&f.snapshot(i).0, was, "h{} not as before", i + 1);
        assert_eq!(host_history(&f, i)[0]["status"], "rolled-back");
    }
    // Settled: a resume finds nothing to do.
    let again = f.mend(&["fleet", "resume", &id]);
    assert_eq!(again.code, 2, "{}", again.text());
}
