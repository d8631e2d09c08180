//! The fleet's operating room, live: a real `mend fleet run` over a real
//! sshd host into a private PostgreSQL, its host's run held open by a
//! command stand-in that waits for a gate file. While it waits, the run is
//! in the shared journal and on `mend serve --journal`'s pages (steps with
//! their actions counted); its event stream, dropped and resumed with
//! Last-Event-ID, gives every event of the host's journal once (compared
//! with `mend show --json` on the host); the timeline is drawn, actions
//! page beyond 200, and the secret is nowhere. Nothing waits on a clock:
//! every wait is for a row, a page or an event.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::fleet::Fleet;
use crate::pg_cluster::Pg;
use crate::serve::{Server, Sse, assert_received_in_order, chromium, dump_dom, stream};

const SECRET: &str = "hunter2-Lv7wQp2m";
/// More than a page of actions (200).
const FILES: usize = 230;

const RUNBOOK: &str = r#"[runbook]
name = "live-cull"
version = "1.0.0"
summary = "cull a stale dir, then wait for the gate"

[params]
data = { required = true, doc = "the host's data directory" }
gate = { required = true, doc = "a command that returns once the gate is open" }
nginx = { default = "/bin/true", doc = "unused here" }
token = { required = true, secret = true, doc = "the API token" }

[grants.live]
path = "${data}/live"
access = "write"

[commands.gate]
program = "${gate}"
reads = [["wait"]]

[[steps]]
id = "cull-stale"
uses = "std:cache-cull"
grants = ["live"]
with = { path = "live/old-${token}", days = 30 }

[[steps]]
id = "wait-for-gate"
uses = "std:assert"
commands = ["gate"]
with = { when = "after", checks = [{ command = { command = "gate", args = ["wait"] }, message = "the gate of ${token} failed" }] }
"#;

/// Until `f` answers, or panics naming `what` after a bound far above any
/// honest wait (a failure guard, not a timed assertion).
fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let give_up = Instant::now() + Duration::from_secs(240);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < give_up, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn json(s: &Server, path: &str) -> serde_json::Value {
    let r = s.get(path, &[]);
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    assert!(
        !r.body.contains(SECRET),
        "the secret is in {path}:\n{}",
        r.body
    );
    serde_json::from_str(&r.body).unwrap()
}

fn page(s: &Server, path: &str) -> String {
    let r = s.get(path, &[]);
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    assert!(
        !r.body.contains(SECRET),
        "the secret is in {path}:\n{}",
        r.body
    );
    r.body
}

/// Events until `stop` says so (or the stream ends).
fn read_until(rx: &std::sync::mpsc::Receiver<Sse>, mut stop: impl FnMut(&Sse) -> bool) -> Vec<Sse> {
    let mut got = Vec::new();
    while let Ok(e) = rx.recv_timeout(Duration::from_secs(240)) {
        assert!(!e.data.contains(SECRET), "the secret is in {e:?}");
        let done = stop(&e);
        got.push(e);
        if done {
            break;
        }
    }
    got
}

/// A fleet run of one host, started, its host's run held at the gate.
struct Gated {
    pg: Pg,
    f: Fleet,
    gate_file: std::path::PathBuf,
    run: Option<std::process::Child>,
}

impl Gated {
    fn start() -> Gated {
        let pg = Pg::start();
        let dsn = pg.dsn();
        let f = Fleet::start(1);
        let h = &f.hosts[0];
        let gate_file = f.root().join("gate-open");
        let gate = f.root().join("gate.sh");
        std::fs::write(
            &gate,
            format!(
                "#!/bin/sh\nwhile [ ! -e '{}' ]; do /bin/sleep 0.05; done\nexit 0\n",
                gate_file.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&gate, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let inv = f.inventory("batches = [\"rest\"]", &|_| {
            format!(
                "params = {{ data = \"{}\", gate = \"{}\" }}",
                h.data().display(),
                gate.display()
            )
        });
        let text = std::fs::read_to_string(&inv).unwrap().replace(
            "params = { nginx = \"/bin/true\" }",
            &format!("params = {{ nginx = \"/bin/true\", token = \"{SECRET}\" }}"),
        );
        std::fs::write(&inv, text).unwrap();
        let stale = h.data().join(format!("live/old-{SECRET}"));
        std::fs::create_dir_all(&stale).unwrap();
        for i in 0..FILES {
            std::fs::write(stale.join(format!("c{i:03}.pem")), "old\n").unwrap();
        }
        let ok = std::process::Command::new("find")
            .arg(&stale)
            .args([
                "-type",
                "f",
                "-exec",
                "touch",
                "-d",
                "2026-01-02 03:04:05",
                "{}",
                "+",
            ])
            .status()
            .unwrap();
        assert!(ok.success());
        let rb = f.root().join("live-cull.toml");
        std::fs::write(&rb, RUNBOOK).unwrap();
        let plan = f.mend(&[
            "fleet",
            "plan",
            rb.to_str().unwrap(),
            "-i",
            "fleet.toml",
            "--out",
            "p",
        ]);
        assert_eq!(plan.code, 0, "{}", plan.text());
        let run = f
            .controller(&["fleet", "run", "p"])
            .env("MEND_FLEET_JOURNAL", &dsn)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Gated {
            pg,
            f,
            gate_file,
            run: Some(run),
        }
    }

    fn open_gate(&self) {
        std::fs::write(&self.gate_file, "").unwrap();
    }

    /// The controller's exit code and output.
    fn finish(&mut self) -> (Option<i32>, String) {
        let out = self.run.take().unwrap().wait_with_output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    }

    /// The host's run, once the shared journal has it as running.
    fn running_run(&self) -> String {
        until("the running run in mend_host_runs", || {
            let made = self.pg.sql(
                "postgres",
                "SELECT to_regclass('mend_host_runs') IS NOT NULL",
            );
            if made != "t" {
                return None;
            }
            let t = self.pg.sql(
                "postgres",
                "SELECT coalesce(string_agg(run_id, ','), '') FROM mend_host_runs
                 WHERE status = 'running'",
            );
            (!t.is_empty()).then_some(t)
        })
    }
}

impl Drop for Gated {
    /// A failed test leaves nothing running: the host's run goes on to its
    /// end, the controller is killed.
    fn drop(&mut self) {
        let _ = std::fs::write(&self.gate_file, "");
        if let Some(mut c) = self.run.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The host's journal's word on `run_id` (`mend show --json`).
fn shown(h: &crate::fleet::Host, run_id: &str) -> serde_json::Value {
    let shown = std::process::Command::new(mend_bin())
        .arg("--state-dir")
        .arg(h.state())
        .args(["--json", "show", run_id])
        .output()
        .unwrap();
    assert!(shown.status.success(), "{shown:?}");
    serde_json::from_slice(&shown.stdout).unwrap()
}

#[test]
fn room_fleet_live_a_running_hosts_run_is_followed_from_the_shared_journal() {
    let mut g = Gated::start();
    let dsn = g.pg.dsn();
    let gate_file = g.gate_file.clone();
    // The host's run reaches the shared journal while it waits at the gate:
    // its first step verified with every action counted.
    let run_id = g.running_run();
    assert!(!gate_file.exists());
    let viewer = Fixture::new();
    let s = Server::start(&viewer, &["--listen", "127.0.0.1:0", "--journal", &dsn]);
    let runs = json(&s, "/api/runs");
    assert_eq!(runs[0]["run_id"], run_id.as_str(), "{runs}");
    assert_eq!(runs[0]["status"], "running", "{runs}");
    let v = until("step 1 verified with its actions, on the page", || {
        let v = json(&s, &format!("/api/runs/{run_id}"));
        (v["steps"][0]["status"] == "verified" && v["steps"][0]["done"] == FILES as i64)
            .then_some(v)
    });
    assert_eq!(v["run"]["status"], "running", "{v}");
    assert!(!gate_file.exists(), "the run was seen while it waits");
    let live = page(&s, &format!("/runs/{run_id}"));
    assert!(live.contains("data-live='1'"), "{live}");
    assert!(live.contains("<script src=/static/live.js"), "{live}");
    assert!(
        live.contains("<noscript><meta http-equiv=refresh"),
        "{live}"
    );
    assert!(live.contains("<tr id=step-0 class='s-verified'>"), "{live}");
    // The fleet run's page links the running host's run.
    let fleet_run = g.pg.sql("postgres", "SELECT id FROM mend_fleet_runs");
    let fp = page(&s, &format!("/fleet/{fleet_run}"));
    assert!(fp.contains(&format!("<a href='/runs/{run_id}'>")), "{fp}");

    // The stream, from the start, dropped after the first step's message.
    let first = read_until(&stream(s.port, &run_id, None), |e| {
        e.event == "step" || e.event == "actions"
    });
    let last = first.last().expect("events before the drop").id.clone();
    // Then the gate opens and the run goes on to its end, unwatched; the
    // stream resumes from the last id seen, to the run's end.
    g.open_gate();
    let rest = read_until(&stream(s.port, &run_id, Some(&last)), |e| {
        e.event == "run" && e.data.contains("\"committed\"")
    });
    let (code, run_text) = g.finish();
    assert_eq!(code, Some(0), "{run_text}");
    assert!(!run_text.contains(SECRET), "{run_text}");
    assert!(!run_text.contains("not shipped"), "{run_text}");
    let all: Vec<&Sse> = first.iter().chain(&rest).collect();
    let seqs: Vec<i64> = all.iter().map(|e| e.seq()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "ids not strictly increasing: {seqs:?}"
    );
    // Every event of the host's journal, once, in order.
    let shown = shown(&g.f.hosts[0], &run_id);
    let want: Vec<(String, String)> = shown["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["level"].as_str().unwrap().into(),
                e["message"].as_str().unwrap().into(),
            )
        })
        .collect();
    let got: Vec<(String, String)> = all
        .iter()
        .filter(|e| e.event == "event")
        .map(|e| {
            let d: serde_json::Value = serde_json::from_str(&e.data).unwrap();
            (
                d["level"].as_str().unwrap().into(),
                d["message"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(!want.is_empty());
    assert_eq!(got, want, "the stream's events against mend show --json");
    // The last step message says what the journal says at the end.
    let end = json(&s, &format!("/api/runs/{run_id}"));
    assert_eq!(end["run"]["status"], "committed", "{end}");
    assert_eq!(end["steps"][1]["status"], "verified", "{end}");

    // The timeline, drawn as on one host: a bar per step.
    let svg = page(&s, &format!("/runs/{run_id}/timeline.svg"));
    assert!(svg.starts_with("<svg") || svg.contains("<svg"), "{svg}");
    assert!(
        svg.contains("1. cull-stale") && svg.contains("2. wait-for-gate"),
        "{svg}"
    );
    // And the write grant's free space before and after, shipped from the
    // host's journal (the JSON has the same figures).
    let space = end["space"].as_array().expect("space in the JSON");
    let moments: Vec<&str> = space
        .iter()
        .map(|g| g["moment"].as_str().unwrap())
        .collect();
    assert_eq!(moments, ["before", "after"], "{end}");
    assert!(
        space.iter().all(|g| g["free"].as_u64().unwrap() > 0),
        "{end}"
    );
    let grant = space[0]["grant"].as_str().unwrap();
    for moment in ["before", "after"] {
        assert!(
            svg.contains(&format!("{grant} {moment}</text>")),
            "no {grant} {moment} row in the timeline: {svg}"
        );
    }
    // Actions page on past the first 200, each once.
    let done = page(&s, &format!("/runs/{run_id}"));
    assert_eq!(done.matches("<tr><td>1</td>").count(), 200, "{done}");
    let next = done
        .split("<a id=next href='")
        .nth(1)
        .and_then(|t| t.split('\'').next())
        .unwrap_or_else(|| panic!("no next page in {done}"))
        .replace("&amp;", "&");
    let more = page(&s, &next);
    assert_eq!(
        more.matches("<tr><td>1</td>").count(),
        FILES - 200,
        "{more}"
    );
    assert!(!more.contains("id=next"), "{more}");
    let mut names: Vec<String> = json(&s, &format!("/api/runs/{run_id}/actions"))
        .as_array()
        .unwrap()
        .iter()
        .chain(
            json(&s, &format!("/api/runs/{run_id}/actions?after=199"))
                .as_array()
                .unwrap(),
        )
        .map(|a| a["action"].to_string())
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), FILES, "{names:?}");
    assert!(names.iter().all(|n| n.contains("old-***")), "{names:?}");

    // Nothing was shipped twice: one row per record key, and no secret.
    let dup = g.pg.sql(
        "postgres",
        "SELECT count(*) - count(DISTINCT (run_id, seq)) FROM mend_run_records",
    );
    assert_eq!(dup, "0");
    let with_secret = g.pg.sql(
        "postgres",
        &format!("SELECT count(*) FROM mend_run_records t WHERE t::text LIKE '%{SECRET}%'"),
    );
    assert_eq!(with_secret, "0");
}

/// The shared journal goes away while the host runs: the run goes on to
/// its end on the host, and the controller says once that the progress
/// was not shipped.
#[test]
fn room_fleet_live_a_shared_journal_outage_costs_the_live_view_not_the_run() {
    let mut g = Gated::start();
    let run_id = g.running_run();
    let data = std::path::Path::new(&g.pg.sock())
        .parent()
        .unwrap()
        .join("data");
    let out = crate::pg_cluster::pg_command("pg_ctl")
        .args([
            "-D",
            data.to_str().unwrap(),
            "-m",
            "immediate",
            "-w",
            "stop",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // The next shipment fails: wait for the controller's warning, then
    // let the host go on.
    let stdout = g.run.as_mut().unwrap().stdout.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let mut said = Vec::new();
    while let Ok(l) = lines.recv_timeout(Duration::from_secs(240)) {
        let warned = l.contains("not shipped to the shared journal while it runs");
        said.push(l);
        if warned {
            break;
        }
    }
    g.open_gate();
    let (code, rest) = g.finish();
    said.extend(lines.iter());
    let text = format!("{}\n{rest}", said.join("\n"));
    let warned = text
        .matches("progress not shipped to the shared journal while it runs")
        .count();
    assert_eq!(warned, 1, "exit {code:?}: {text}");
    assert!(text.contains("the run goes on"), "{text}");
    let shown = shown(&g.f.hosts[0], &run_id);
    assert_eq!(
        shown["run"]["status"], "committed",
        "exit {code:?}: {text}\n{shown}"
    );
}

/// In a real browser (Debian's chromium, headless): the fleet page of a
/// host's run that waits at the gate follows it to its end through the
/// single-host script, without a reload.
#[test]
fn room_fleet_live_a_browser_follows_a_running_hosts_run_to_its_end() {
    let Some(chromium) = chromium() else {
        eprintln!("skipped: no chromium (.ci/run installs Debian's chromium)");
        return;
    };
    let mut g = Gated::start();
    let run_id = g.running_run();
    let viewer = Fixture::new();
    let mut s = Server::start(
        &viewer,
        &["--listen", "127.0.0.1:0", "--journal", &g.pg.dsn()],
    );
    let (browser, _profile) = dump_dom(
        chromium,
        &format!("http://127.0.0.1:{}/runs/{run_id}", s.port),
    );
    // The page's script follows the run: let the run go.
    s.until(&format!("stream of run {run_id}"));
    g.open_gate();
    let (code, text) = g.finish();
    assert_eq!(code, Some(0), "{text}");
    let out = browser.wait_with_output().unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(!dom.contains(SECRET), "{dom}");
    assert!(dom.contains("id=\"step-1\" class=\"s-verified\""), "{dom}");
    assert!(dom.contains("badge s-committed"), "{dom}");
    assert_received_in_order(&dom);
}
