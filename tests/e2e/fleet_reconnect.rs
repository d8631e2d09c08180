//! A host whose sshd is stopped mid-run: its run goes on alone (started
//! detached), the controller reports it unreachable (exit 7) and stops
//! before the next batch; `mend fleet resume` reconciles it once sshd is
//! back, and the rollout goes on. Every wait is on a file or a process the
//! test controls, bounded only against a broken machine.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::mend_bin;
use crate::fleet::{Fleet, copies};

fn wait_for(what: &str, f: impl Fn() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(120), "{what}: never");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn host_runs(state: &Path) -> Vec<serde_json::Value> {
    let out = Command::new(mend_bin())
        .arg("--state-dir")
        .arg(state)
        .args(["--json", "history"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array()
        .or_else(|| v["runs"].as_array())
        .cloned()
        .unwrap_or_default()
}

#[test]
fn fleet_sshd_stopped_mid_run_is_unreachable_then_resume_reconciles_it() {
    let mut f = Fleet::start(2);
    let release = f.plan_with_waiting_canary();
    let h2_before = f.snapshot(1);
    let controller = f
        .controller(&["fleet", "run", "p"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let runs = f.hosts[0].state().join("fleet/runs");
    let run_dir = |runs: &PathBuf| -> Option<PathBuf> {
        std::fs::read_dir(runs)
            .ok()?
            .next()
            .map(|e| e.unwrap().path())
            .filter(|d| d.join("pid").exists())
    };
    wait_for("the canary's run starts", || run_dir(&runs).is_some());
    let dir = run_dir(&runs).unwrap();
    let fleet_run = dir.file_name().unwrap().to_str().unwrap().to_string();
    // Every sshd process of h1 goes, mid-run.
    f.stop_host(0);
    let out = controller.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(7), "{text}");
    assert!(text.contains("h1  unreachable"), "{text}");
    assert!(
        text.contains("batch 2/2: not started; failures 1 > max_failures 0: stopping"),
        "{text}"
    );
    assert_eq!(f.snapshot(1), h2_before, "h2 was reached");

    // h1's run goes on alone once its check passes, and is held.
    assert!(!dir.join("exit").exists(), "ended before the drop: {text}");
    std::fs::write(&release, "").unwrap();
    wait_for("h1's run ends", || dir.join("exit").exists());
    assert_eq!(std::fs::read_to_string(dir.join("exit")).unwrap(), "0");

    // Still down: resume says so again (exit 7) and changes nothing.
    let down = f.mend(&["fleet", "resume", &fleet_run]);
    assert_eq!(down.code, 7, "{}", down.text());
    assert!(down.stdout.contains("h1  unreachable"), "{}", down.text());
    assert_eq!(f.snapshot(1), h2_before, "h2 was reached");

    // sshd is back: resume finds h1's run, held; the rollout goes on to h2;
    // both are committed.
    f.start_host(0);
    let back = f.mend(&["fleet", "resume", &fleet_run]);
    assert_eq!(back.code, 0, "{}", back.text());
    assert!(
        back.stdout.contains("batch 1/2: in flight, finishing it"),
        "{}",
        back.text()
    );
    assert!(
        back.stdout.contains("every host committed"),
        "{}",
        back.text()
    );
    for h in &f.hosts {
        // One run of this fleet run per host, one copy, committed.
        let runs = host_runs(&h.state());
        assert_eq!(runs.len(), 1, "{}: {runs:?}", h.name);
        assert_eq!(runs[0]["status"], "committed", "{}: {runs:?}", h.name);
        assert_eq!(copies(h).len(), 1, "{}", h.name);
    }
    let shown = f.mend(&["fleet", "show", &fleet_run]);
    assert!(
        shown.stdout.contains("h1  batch 1  committed")
            && shown.stdout.contains("h2  batch 2  committed"),
        "{}",
        shown.text()
    );
    // Nothing left to reconcile.
    let again = f.mend(&["fleet", "resume", &fleet_run]);
    assert_eq!(again.code, 2, "{}", again.text());
}
