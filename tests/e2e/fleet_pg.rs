//! `mend fleet run` with the shared PostgreSQL journal (a private cluster,
//! tests/support/pg_cluster.rs) over four real sshd hosts (the harness of
//! fleet.rs): the fleet-wide lease refuses a second controller naming the
//! holder, a SIGKILLed holder frees it, every host's run reaches the shared
//! history that a controller with no state reads, a bad DSN changes
//! nothing. Nothing waits on a clock: the canary's `nginx -t` stand-in waits
//! on a file the test creates.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{mend_bin, shared_cache};
use crate::fleet::{Fleet, Ran};
use crate::pg_cluster::Pg;

/// A controller with its own state directory, the shared journal named by
/// MEND_FLEET_JOURNAL.
fn ctl(f: &Fleet, state: &str, dsn: &str, args: &[&str]) -> Ran {
    let out = ctl_cmd(f, state, dsn, args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ctl_cmd(f: &Fleet, state: &str, dsn: &str, args: &[&str]) -> Command {
    let mut c = Command::new(mend_bin());
    c.current_dir(f.root())
        .env_remove("MEND_STATE_DIR")
        .env("MEND_CACHE_DIR", shared_cache())
        .env("MEND_FLEET_JOURNAL", dsn)
        .arg("--state-dir")
        .arg(f.root().join(state))
        .args(args);
    c
}

fn fleet_runs(state: &Path) -> Vec<String> {
    std::fs::read_dir(state.join("fleet/runs"))
        .map(|r| {
            r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn fleet_pg_lease_refuses_a_second_controller_a_killed_holder_frees_it_history_from_anywhere() {
    let pg = Pg::start();
    let dsn = pg.dsn();
    let f = Fleet::start(4);
    let release = f.plan_with_waiting_canary();

    // Controller A: holds the lease while its canary waits.
    let mut a = ctl_cmd(&f, "ctl-a", &dsn, &["fleet", "run", "p"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    let fleet_run = loop {
        if let Some(r) = fleet_runs(&f.hosts[0].state()).pop()
            && f.hosts[0]
                .state()
                .join("fleet/runs")
                .join(&r)
                .join("pid")
                .exists()
        {
            break r;
        }
        // Only a bound on a broken run, never a measurement.
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "the canary never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let before: Vec<_> = (1..4).map(|i| f.snapshot(i)).collect();

    // Controller B, its own (empty) state directory: refused, named, exit 4.
    let b = ctl(&f, "ctl-b", &dsn, &["fleet", "run", "p"]);
    assert_eq!(b.code, 4, "{}", b.text());
    for want in [
        "fleet lock on distribute-cert held by".to_string(),
        format!("pid {}", a.id()),
        format!("(fleet run {fleet_run}, since "),
    ] {
        assert!(b.stderr.contains(&want), "{want:?} in {}", b.text());
    }
    // --break-lock with no terminal and no --yes: refused, nothing broken.
    let brk = ctl(&f, "ctl-b", &dsn, &["fleet", "run", "p", "--break-lock"]);
    assert_eq!(brk.code, 4, "{}", brk.text());
    assert!(brk.stderr.contains("no terminal"), "{}", brk.text());
    assert_eq!(
        pg.sql("postgres", "SELECT count(*) FROM mend_fleet_events"),
        "0"
    );
    // Nothing started anywhere by B: the canary's one run, the rest untouched.
    assert_eq!(fleet_runs(&f.hosts[0].state()), vec![fleet_run.clone()]);
    for (i, snap) in (1..4).zip(&before) {
        assert_eq!(&f.snapshot(i), snap, "{} changed", f.hosts[i].name);
    }
    assert_eq!(
        pg.sql("postgres", "SELECT count(*) FROM mend_fleet_runs"),
        "1"
    );

    // A is SIGKILLed: its session ends and the server frees the lock.
    a.kill().unwrap();
    a.wait().unwrap();
    let t = Instant::now();
    while pg.sql(
        "postgres",
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'",
    ) != "0"
    {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the killed controller's lock stayed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::write(&release, "").unwrap();
    let resumed = ctl(&f, "ctl-a", &dsn, &["fleet", "resume", &fleet_run]);
    assert_eq!(resumed.code, 0, "{}", resumed.text());
    assert!(
        resumed.stdout.contains("every host committed"),
        "{}",
        resumed.text()
    );
    assert!(!resumed.stdout.contains("warning"), "{}", resumed.text());

    // Controller C, an empty state directory, reads it all back.
    let hist = ctl(
        &f,
        "ctl-c",
        &dsn,
        &["--json", "fleet", "history", "--journal", &dsn],
    );
    assert_eq!(hist.code, 0, "{}", hist.text());
    let v: serde_json::Value = serde_json::from_str(&hist.stdout).unwrap();
    let runs = v.as_array().unwrap();
    assert_eq!(runs.len(), 1, "{v}");
    assert_eq!(runs[0]["id"], fleet_run.as_str());
    assert_eq!(runs[0]["status"], "committed");
    let hosts = runs[0]["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 4, "{v}");
    for (h, fh) in hosts.iter().zip(&f.hosts) {
        assert_eq!(h["host"], fh.name.as_str(), "{v}");
        assert_eq!(h["status"], "committed", "{v}");
        // The host's own run, shipped: its status came from the host.
        assert_eq!(h["run_status"], "committed", "{v}");
        let run_id = h["run_id"].as_str().unwrap();
        let events: i64 = pg
            .sql(
                "postgres",
                &format!("SELECT count(*) FROM mend_run_records WHERE run_id = '{run_id}'"),
            )
            .parse()
            .unwrap();
        assert!(events > 0, "no records shipped for {run_id}");
    }
    let show = ctl(
        &f,
        "ctl-c",
        &dsn,
        &["fleet", "show", &fleet_run, "--journal", &dsn],
    );
    assert_eq!(show.code, 0, "{}", show.text());
    for h in &f.hosts {
        assert!(
            show.stdout
                .lines()
                .any(|l| l.starts_with(&format!("  {}  batch ", h.name))
                    && l.contains("committed")),
            "{} in {}",
            h.name,
            show.text()
        );
    }
    assert!(!f.root().join("ctl-c/fleet.db").exists());

    // Retention: nothing is older than a day; 0 days keeps nothing finished.
    let keep = ctl(&f, "ctl-c", &dsn, &["fleet", "prune", "--keep-days", "1"]);
    assert_eq!(keep.code, 0, "{}", keep.text());
    assert!(
        keep.stdout.starts_with("pruned 0 fleet runs"),
        "{}",
        keep.text()
    );
    let all = ctl(&f, "ctl-c", &dsn, &["fleet", "prune", "--keep-days", "0"]);
    assert_eq!(all.code, 0, "{}", all.text());
    assert!(
        all.stdout.starts_with("pruned 1 fleet runs"),
        "{}",
        all.text()
    );
    assert_eq!(
        pg.sql("postgres", "SELECT count(*) FROM mend_fleet_runs"),
        "0"
    );
}

#[test]
fn fleet_pg_a_bad_dsn_is_exit_2_and_changes_nothing_on_the_hosts() {
    let f = Fleet::start(2);
    let inv = f.inventory("batches = [1, \"rest\"]", &|_| String::new());
    let text = std::fs::read_to_string(&inv).unwrap().replacen(
        "[fleet]\n",
        "[fleet]\njournal = \"postgres://mend@127.0.0.1:notaport/mend\"\n",
        1,
    );
    std::fs::write(&inv, text).unwrap();
    let rb = f.runbook();
    let plan = f.mend(&["fleet", "plan", rb.to_str().unwrap(), "--out", "p"]);
    assert_eq!(plan.code, 0, "{}", plan.text());
    let before: Vec<_> = (0..2).map(|i| f.snapshot(i)).collect();
    let ran = f.mend(&["fleet", "run", "p"]);
    assert_eq!(ran.code, 2, "{}", ran.text());
    assert!(
        ran.stderr.contains("the DSN does not parse"),
        "{}",
        ran.text()
    );
    for (i, snap) in before.iter().enumerate() {
        assert_eq!(&f.snapshot(i), snap, "{} changed", f.hosts[i].name);
        assert!(fleet_runs(&f.hosts[i].state()).is_empty());
    }
}
