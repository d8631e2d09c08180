//! `mend watch`: a run in one process, followed from another through the
//! journal, to its end and its exit code. The run is held at a point with
//! `MEND_PAUSE_AT` (crates/faults) until the test opens the gate, so what
//! watch must have shown by then does not depend on timing.

use std::io::BufRead as _;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use crate::common::*;
use crate::lifecycle::kinds;

/// `mend run RUNBOOK` held at `point` until `gate` exists.
pub(crate) fn paused_run(
    f: &Fixture,
    runbook: &std::path::Path,
    point: &str,
) -> (Child, std::path::PathBuf) {
    let gate = f.path("gate");
    let child = Command::new(mend_bin())
        .arg("--state-dir")
        .arg(f.state())
        .arg("--cache-dir")
        .arg(shared_cache())
        .arg("run")
        .arg(runbook)
        .env("MEND_PAUSE_AT", format!("{point}@{}", gate.display()))
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (child, gate)
}

/// `mend watch ARGS`, its stdout lines sent as they come.
pub(crate) struct Watcher {
    pub child: Child,
    pub lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Watcher {
    pub fn start(f: &Fixture, args: &[&str]) -> Watcher {
        let mut child = Command::new(mend_bin())
            .arg("--state-dir")
            .arg(f.state())
            .arg("watch")
            .args(args)
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Watcher {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads lines until one has all of `words`; panics if watch ends first.
    pub fn until(&mut self, words: &[&str]) -> String {
        loop {
            let Ok(l) = self.lines.recv_timeout(std::time::Duration::from_secs(120)) else {
                panic!(
                    "watch ended or stalled before a line with {words:?}:\n{}",
                    self.seen.join("\n")
                );
            };
            self.seen.push(l.clone());
            if words.iter().all(|w| l.contains(w)) {
                return l;
            }
        }
    }

    /// Waits for the end: its exit code and all it printed.
    pub fn finish(mut self) -> (i32, String) {
        let status = self.child.wait().unwrap();
        self.seen.extend(self.lines.iter());
        (status.code().unwrap_or(-1), self.seen.join("\n"))
    }
}

pub(crate) fn wait_running(f: &Fixture) {
    while !f.state().join("journal.db").exists()
        || !f
            .mend(&["--json", "history"])
            .stdout
            .contains("\"running\"")
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn watch_follows_a_run_of_another_process_to_its_end_and_exits_with_its_code() {
    let f = Fixture::new();
    let rb = kinds(&f, "pass", "rollback");
    let (mut run, gate) = paused_run(&f, &rb, "intent:0:3");
    wait_running(&f);
    let mut w = Watcher::start(&f, &["--latest"]);
    let head = w.until(&["watching run", "kinds"]);
    // Seen while the run is held: step 0 has started, the run has not ended.
    w.until(&["step 0", "change applying"]);
    assert!(
        run.try_wait().unwrap().is_none(),
        "the run ended before the gate opened"
    );
    std::fs::write(&gate, "").unwrap();
    let run_code = run.wait().unwrap().code().unwrap();
    let (code, text) = w.finish();
    assert_eq!(run_code, 0);
    assert_eq!(code, run_code, "{text}");
    for want in [
        "actions 9/9: 9 done",
        "change verified",
        "check verified",
        "committed after",
        "(exit 0)",
    ] {
        assert!(text.contains(want), "no `{want}` in:\n{text}");
    }
    // The story ends with the end.
    assert!(
        text.lines().last().unwrap().contains("committed after"),
        "{text}"
    );
    // Watching the finished run again prints it and exits at once, same code.
    let id = head.split_whitespace().nth(2).unwrap();
    let again = f.mend(&["watch", id]);
    assert_eq!(again.code, 0, "{}", again.text());
    assert!(again.stdout.contains("committed after"), "{}", again.stdout);
}

#[test]
fn watch_follows_a_rollback_and_exits_with_the_runs_code() {
    let f = Fixture::new();
    let rb = kinds(&f, "fail", "rollback");
    let (mut run, gate) = paused_run(&f, &rb, "intent:0:3");
    wait_running(&f);
    let mut w = Watcher::start(&f, &["--latest", "--runbook", "kinds"]);
    w.until(&["step 0", "change applying"]);
    std::fs::write(&gate, "").unwrap();
    let run_code = run.wait().unwrap().code().unwrap();
    let (code, text) = w.finish();
    assert_eq!(run_code, 1);
    assert_eq!(code, run_code, "{text}");
    // (`rolling-back` may fall in one poll with `rolled-back`: watch shows
    // the run's state as it reads it, not each state it passed through.)
    for want in [
        "verify failed",
        "actions 9/9: 9 undone",
        "change undone",
        "rolled-back after",
        "(exit 1)",
    ] {
        assert!(text.contains(want), "no `{want}` in:\n{text}");
    }
    // --json: one object a line, in seq order, ending with the end.
    let ran = f.mend(&["--json", "watch", "--latest"]);
    assert_eq!(ran.code, 1, "{}", ran.text());
    let lines: Vec<serde_json::Value> = ran
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let seqs: Vec<i64> = lines.iter().filter_map(|l| l["seq"].as_i64()).collect();
    assert!(seqs.windows(2).all(|w| w[0] <= w[1]), "{seqs:?}");
    let end = lines.last().unwrap();
    assert_eq!(
        (end["kind"].as_str(), end["exit"].as_i64()),
        (Some("end"), Some(1))
    );
}

#[test]
fn watch_of_a_killed_run_says_so_and_exits_8() {
    let f = Fixture::new();
    let rb = kinds(&f, "pass", "rollback");
    let ran = f.mend_env(
        &["run", rb.to_str().unwrap()],
        &[("MEND_CRASH_AT", "perform:0:4")],
    );
    assert_eq!(ran.code, -1, "{}", ran.text());
    let id = started_run(&ran);
    let w = f.mend(&["watch", &id]);
    assert_eq!(w.code, 8, "{}", w.text());
    assert!(
        w.stdout.contains(&format!("mend resume {id}")),
        "{}",
        w.stdout
    );
    // And the unknown: bad input.
    let w = f.mend(&["watch", "ffffffffffffffff"]);
    assert_eq!(w.code, 2, "{}", w.text());
}
