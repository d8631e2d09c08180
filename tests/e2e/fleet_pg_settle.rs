//! The shared journal hears how each host ended after the fleet settled it,
//! with its actions: a canary rolled back by `--rollback-fleet` shows, from
//! a second controller with no state of its own, as rolled back, each of its
//! actions undone, and the controller's decisions (`rollback-fleet`,
//! `settle: rollback`) in order. Real sshd hosts, a private PostgreSQL.

use std::process::{Command, Stdio};

use crate::common::{mend_bin, shared_cache};
use crate::fleet::{Fleet, Ran};
use crate::pg_cluster::Pg;

fn ctl(f: &Fleet, state: &str, dsn: &str, args: &[&str]) -> Ran {
    let out = Command::new(mend_bin())
        .current_dir(f.root())
        .env_remove("MEND_STATE_DIR")
        .env("MEND_CACHE_DIR", shared_cache())
        .env("MEND_FLEET_JOURNAL", dsn)
        .arg("--state-dir")
        .arg(f.root().join(state))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn fleet_pg_a_host_the_fleet_rolled_back_shows_rolled_back_with_its_actions_from_anywhere() {
    let pg = Pg::start();
    let dsn = pg.dsn();
    let f = Fleet::start(3);
    f.inventory("batches = [1, 1, \"rest\"]", &|i| {
        if i == 1 {
            format!(
                "params = {{ data = \"{}\", nginx = \"/bin/false\" }}",
                f.hosts[i].data().display()
            )
        } else {
            String::new()
        }
    });
    let rb = f.runbook();
    let plan = f.mend(&["fleet", "plan", rb.to_str().unwrap(), "--out", "p"]);
    assert_eq!(plan.code, 0, "{}", plan.text());
    let run = ctl(
        &f,
        "ctl-a",
        &dsn,
        &["fleet", "run", "p", "--rollback-fleet"],
    );
    assert_eq!(run.code, 1, "{}", run.text());
    assert!(run.stdout.contains("h1  undone by fleet"), "{}", run.text());
    let fleet_run = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("fleet run ")?.split(':').next())
        .unwrap()
        .to_string();

    // Another controller, no state of its own.
    let shown = ctl(&f, "ctl-b", &dsn, &["fleet", "show", &fleet_run]);
    assert_eq!(shown.code, 0, "{}", shown.text());
    let lines: Vec<&str> = shown.stdout.lines().collect();
    let h1 = lines
        .iter()
        .position(|l| l.starts_with("  h1  batch 1  rolled-back  "))
        .unwrap_or_else(|| panic!("{}", shown.text()));
    // Its own journal's word, shipped after the fleet settled it.
    assert!(lines[h1].ends_with("(rolled-back)"), "{}", shown.text());
    let h1_actions: Vec<&&str> = lines[h1 + 1..]
        .iter()
        .take_while(|l| l.starts_with("      "))
        .collect();
    assert!(!h1_actions.is_empty(), "{}", shown.text());
    assert!(
        h1_actions.iter().all(|l| l.ends_with("  (undone)")),
        "{}",
        shown.text()
    );
    assert!(
        h1_actions.iter().any(|l| l.contains("live/cert-")),
        "the copy into live: {}",
        shown.text()
    );
    // h2 rolled itself back: shown so, with its actions undone too.
    assert!(
        shown.stdout.contains("  h2  batch 2  rolled-back  "),
        "{}",
        shown.text()
    );
    assert!(!shown.stdout.contains("  h3  "), "{}", shown.text());
    // The decisions, in the order taken.
    let d1 = shown.stdout.find("  decision: rollback-fleet  by ");
    let d2 = shown.stdout.find("  decision: settle: rollback  by ");
    assert!(d1.is_some() && d2.is_some() && d1 < d2, "{}", shown.text());

    // The same as JSON: every shipped action of h1 undone.
    let j = ctl(&f, "ctl-b", &dsn, &["--json", "fleet", "show", &fleet_run]).json();
    let acts = j["actions"]["h1"].as_array().unwrap();
    assert!(!acts.is_empty(), "{j}");
    assert!(acts.iter().all(|a| a[1] == true), "{j}");
    let kinds: Vec<&str> = j["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["rollback-fleet", "settle: rollback"], "{j}");
}

/// `mend fleet rollback` of a run whose controller died before settling:
/// the shared journal hears the decision, each host's runs shipped again as
/// rolled back, and the fleet run's own end.
#[test]
fn fleet_pg_fleet_rollback_after_a_dead_controller_is_shipped() {
    let pg = Pg::start();
    let dsn = pg.dsn();
    let f = Fleet::start(2);
    f.inventory("batches = [1, \"rest\"]", &|_| String::new());
    let rb = f.runbook();
    let plan = f.mend(&["fleet", "plan", rb.to_str().unwrap(), "--out", "p"]);
    assert_eq!(plan.code, 0, "{}", plan.text());
    // The controller dies after every host verified, before it settles one.
    let out = Command::new(mend_bin())
        .current_dir(f.root())
        .env_remove("MEND_STATE_DIR")
        .env("MEND_CACHE_DIR", shared_cache())
        .env("MEND_FLEET_JOURNAL", &dsn)
        .env("MEND_CRASH_AT", "fleet-settle:0:0")
        .arg("--state-dir")
        .arg(f.root().join("ctl-a"))
        .args(["fleet", "run", "p"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), None, "not killed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let fleet_run = stdout
        .lines()
        .find_map(|l| l.strip_prefix("fleet run ")?.split(':').next())
        .unwrap_or_else(|| panic!("{stdout}"))
        .to_string();

    let back = ctl(&f, "ctl-a", &dsn, &["fleet", "rollback", &fleet_run]);
    assert_eq!(back.code, 0, "{}", back.text());

    let j = ctl(&f, "ctl-b", &dsn, &["--json", "fleet", "show", &fleet_run]).json();
    let kinds: Vec<&str> = j["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"settle: rollback"), "{j}");
    assert_eq!(j["status"], "rolled-back", "the fleet run's own end: {j}");
    for h in ["h1", "h2"] {
        let acts = j["actions"][h].as_array().unwrap();
        assert!(!acts.is_empty(), "{h}: {j}");
        assert!(acts.iter().all(|a| a[1] == true), "{h}: {j}");
    }
    let shown = ctl(&f, "ctl-b", &dsn, &["fleet", "show", &fleet_run]);
    for h in ["h1", "h2"] {
        assert!(
            shown
                .stdout
                .lines()
                .any(|l| l.starts_with(&format!("  {h}  ")) && l.ends_with("(rolled-back)")),
            "{}",
            shown.text()
        );
    }
}
