//! `mend serve` as a real process, over real HTTP: the history, a run's
//! page and JSON, the event stream resumed from Last-Event-ID (nothing
//! missed, nothing doubled, checked against the journal's change log), the
//! token and the read-only guard; and a real browser (Debian's chromium,
//! headless) that sees a step's status change on a live page without a
//! reload. Runs are held with MEND_PAUSE_AT, so nothing depends on timing.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use crate::common::*;
use crate::lifecycle::kinds;
use crate::watch::{paused_run, wait_running};

/// A `mend serve` child, killed on drop; its stderr lines as they come.
pub(crate) struct Server {
    child: Child,
    pub(crate) port: u16,
    log: mpsc::Receiver<String>,
}

impl Server {
    pub(crate) fn start(f: &Fixture, args: &[&str]) -> Server {
        Server::start_as(f, args, &[])
    }

    /// Started through `wrapper` (e.g. `setpriv --reuid=...`) when not empty.
    pub(crate) fn start_as(f: &Fixture, args: &[&str], wrapper: &[&str]) -> Server {
        let mut cmd = match wrapper.split_first() {
            Some((prog, rest)) => {
                let mut c = Command::new(prog);
                c.args(rest).arg(mend_bin());
                c
            }
            None => Command::new(mend_bin()),
        };
        let mut child = cmd
            .arg("--state-dir")
            .arg(f.state())
            .arg("serve")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, log) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                eprintln!("[serve] {l}");
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let mut s = Server {
            child,
            port: 0,
            log,
        };
        let line = s.until("read-only on http://");
        let addr = line.split("http://").nth(1).unwrap().trim_end_matches('/');
        s.port = addr.rsplit(':').next().unwrap().parse().unwrap();
        s
    }

    /// Reads its log until a line contains `what`.
    pub(crate) fn until(&mut self, what: &str) -> String {
        loop {
            match self.log.recv_timeout(std::time::Duration::from_secs(120)) {
                Ok(l) if l.contains(what) => return l,
                Ok(_) => {}
                Err(_) => panic!("mend serve ended or stalled before `{what}`"),
            }
        }
    }

    pub(crate) fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        request(self.port, "GET", path, headers)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) struct Reply {
    pub(crate) status: u16,
    headers: HashMap<String, String>,
    pub(crate) body: String,
}

pub(crate) fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .collect();
    let body = if headers
        .get("transfer-encoding")
        .is_some_and(|t| t == "chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// One server-sent event.
#[derive(Debug, Clone)]
pub(crate) struct Sse {
    pub(crate) id: String,
    pub(crate) event: String,
    pub(crate) data: String,
}

impl Sse {
    pub(crate) fn seq(&self) -> i64 {
        self.id.split_once(':').unwrap().1.parse().unwrap()
    }
}

/// Opens the run's event stream; events are sent as they come, until the
/// server ends the stream (the run ended) or the receiver is dropped.
pub(crate) fn stream(port: u16, run: &str, last_id: Option<&str>) -> mpsc::Receiver<Sse> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut req = format!(
        "GET /runs/{run}/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Accept: text/event-stream\r\nConnection: close\r\n"
    );
    if let Some(id) = last_id {
        req.push_str(&format!("Last-Event-ID: {id}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(s);
        let mut line = String::new();
        // Headers.
        loop {
            line.clear();
            if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
        }
        let mut ev = Sse {
            id: String::new(),
            event: String::new(),
            data: String::new(),
        };
        loop {
            line.clear();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let l = line.trim_end_matches(['\r', '\n']);
            // Chunk sizes of the chunked body are lines of hex: not fields.
            if let Some(v) = l.strip_prefix("id: ").or(l.strip_prefix("id:")) {
                ev.id = v.to_string();
            } else if let Some(v) = l.strip_prefix("event: ").or(l.strip_prefix("event:")) {
                ev.event = v.to_string();
            } else if let Some(v) = l.strip_prefix("data: ").or(l.strip_prefix("data:")) {
                ev.data.push_str(v);
            } else if l.is_empty() && !ev.event.is_empty() {
                if tx.send(ev.clone()).is_err() {
                    return;
                }
                ev.event.clear();
                ev.data.clear();
            }
        }
    });
    rx
}

/// The journal's change log, straight from SQLite: (seq, kind, key).
fn changes(f: &Fixture, run: &str) -> (String, Vec<(i64, String, String)>) {
    let c = rusqlite::Connection::open_with_flags(
        f.state().join("journal.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let jid: String = c
        .query_row("SELECT id FROM journal_meta", [], |r| r.get(0))
        .unwrap();
    let mut st = c
        .prepare(
            "SELECT seq, kind, coalesce(step_idx, -1), coalesce(lo, -1) FROM changes
             WHERE run_id = ?1 ORDER BY seq",
        )
        .unwrap();
    let rows = st
        .query_map([run], |r| {
            let kind: String = r.get(1)?;
            let step: i64 = r.get(2)?;
            let lo: i64 = r.get(3)?;
            let key = match kind.as_str() {
                "event" => format!("event {lo}"),
                "run" => "run".to_string(),
                k => format!("{k} {step}"),
            };
            Ok((r.get(0)?, kind, key))
        })
        .unwrap()
        .collect::<rusqlite::Result<Vec<_>>>()
        .unwrap();
    (jid, rows)
}

fn run_id_of(f: &Fixture) -> String {
    let h: serde_json::Value =
        serde_json::from_str(&f.mend(&["--json", "history"]).stdout).unwrap();
    h[0]["id"].as_str().unwrap().to_string()
}

#[test]
fn serve_shows_a_live_run_and_its_stream_resumes_from_last_event_id_missing_nothing() {
    let f = Fixture::new();
    let rb = kinds(&f, "pass", "rollback");
    let (mut run, gate) = paused_run(&f, &rb, "intent:0:3");
    wait_running(&f);
    let id = run_id_of(&f);
    let s = Server::start(&f, &["--listen", "127.0.0.1:0"]);

    // The history and the run's page, while it runs.
    let home = s.get("/", &[]);
    assert_eq!(home.status, 200, "{}", home.body);
    assert!(
        home.body.contains(&id) && home.body.contains("running"),
        "{}",
        home.body
    );
    assert!(!s.get("/?status=committed", &[]).body.contains(&id));
    let page = s.get(&format!("/runs/{id}"), &[]);
    assert_eq!(page.status, 200);
    for want in [
        "id=step-0",
        "applying",
        "sha256",
        "data-live='1'",
        "/static/live.js",
    ] {
        assert!(page.body.contains(want), "no `{want}` in:\n{}", page.body);
    }
    assert!(page.headers["content-security-policy"].contains("default-src 'none'"));
    let json: serde_json::Value =
        serde_json::from_str(&s.get(&format!("/runs/{id}.json"), &[]).body).unwrap();
    assert_eq!(json["run"]["status"], "running");
    assert_eq!(json["steps"][0]["status"], "applying");

    // A viewer follows the live run, then loses its connection.
    let first = stream(s.port, &id, None);
    let mut got: Vec<Sse> = Vec::new();
    while !got
        .iter()
        .any(|e| e.event == "step" && e.data.contains("\"applying\""))
    {
        got.push(first.recv().expect("the stream ended early"));
    }
    drop(first);
    // The run goes on and ends while it is away.
    std::fs::write(&gate, "").unwrap();
    assert_eq!(run.wait().unwrap().code(), Some(0));
    // It comes back with the last id it saw and gets the rest; the stream
    // ends with the run's end.
    let last = got.last().unwrap().id.clone();
    got.extend(stream(s.port, &id, Some(&last)).iter());

    let (jid, log) = changes(&f, &id);
    assert!(got.iter().all(|e| e.id.starts_with(&format!("{jid}:"))));
    let seqs: Vec<i64> = got.iter().map(Sse::seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "doubled or out of order: {seqs:?}"
    );
    // Every event of the journal arrived, once.
    let want_events: Vec<i64> = log.iter().filter(|c| c.1 == "event").map(|c| c.0).collect();
    let got_events: Vec<i64> = got
        .iter()
        .filter(|e| e.event == "event")
        .map(Sse::seq)
        .collect();
    assert_eq!(got_events, want_events);
    // Every other key arrived at its last change: the viewer ends equal to the journal.
    for (seq, _, key) in &log {
        let last_of_key = log.iter().rev().find(|c| &c.2 == key).unwrap().0;
        if *seq == last_of_key {
            assert!(
                seqs.contains(seq),
                "missed the last change of {key} (seq {seq})"
            );
        }
    }
    let end = got.iter().rev().find(|e| e.event == "run").unwrap();
    assert!(end.data.contains("\"committed\""), "{}", end.data);
    let end = got.last().unwrap();

    // Resuming from any point gets exactly what the journal changed after it.
    let mid = &got[got.len() / 2];
    let again: Vec<Sse> = stream(s.port, &id, Some(&mid.id)).iter().collect();
    let after: Vec<&(i64, String, String)> = log.iter().filter(|c| c.0 > mid.seq()).collect();
    let want: Vec<i64> = after
        .iter()
        .filter(|c| c.1 == "event" || after.iter().rev().find(|d| d.2 == c.2).unwrap().0 == c.0)
        .map(|c| c.0)
        .collect();
    assert_eq!(again.iter().map(Sse::seq).collect::<Vec<_>>(), want);
    // A finished run with nothing after the id: 204, the browser stops asking.
    let done = s.get(&format!("/runs/{id}/stream"), &[("Last-Event-ID", &end.id)]);
    assert_eq!(done.status, 204);
    // An id from another journal: start over.
    let other = stream(s.port, &id, Some("0000000000000000:3"));
    assert_eq!(other.recv().unwrap().event, "reset");
    // The finished page says so, and has no script.
    let page = s.get(&format!("/runs/{id}"), &[]);
    assert!(
        page.body.contains("committed") && !page.body.contains("<script"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("id=step-1 class='s-verified'"),
        "{}",
        page.body
    );
    let actions = s.get(&format!("/runs/{id}/actions?step=0"), &[]);
    assert_eq!(actions.status, 200);
    assert_eq!(
        actions.body.matches("<tr class='a-done'>").count(),
        9,
        "{}",
        actions.body
    );
}

#[test]
fn serve_is_read_only_and_needs_its_token_beyond_loopback() {
    let f = Fixture::new();
    let rb = kinds(&f, "pass", "rollback");
    assert_eq!(f.mend(&["run", rb.to_str().unwrap()]).code, 0);
    let id = run_id_of(&f);

    // Beyond loopback without a token: refused before it listens.
    let ran = f.mend(&["serve", "--listen", "0.0.0.0:0"]);
    assert_eq!(ran.code, 2, "{}", ran.text());
    assert!(ran.stderr.contains("--token-file"), "{}", ran.stderr);

    let token = "s3cret-token-of-24-chars";
    let tf = f.write("token", &format!("{token}\n"));
    let s = Server::start(
        &f,
        &[
            "--listen",
            "0.0.0.0:0",
            "--token-file",
            tf.to_str().unwrap(),
        ],
    );
    let page = format!("/runs/{id}");
    for path in ["/", page.as_str(), "/api/runs", "/static/live.js"] {
        let r = s.get(path, &[]);
        assert_eq!(r.status, 401, "{path} without a token: {}", r.body);
        assert!(!r.body.contains(&id));
        let r = s.get(
            path,
            &[("Authorization", "Bearer wrong-token-of-24-chars!")],
        );
        assert_eq!(r.status, 401, "{path} with a wrong token");
    }
    let bearer = format!("Bearer {token}");
    let r = s.get(&page, &[("Authorization", &bearer)]);
    assert_eq!(r.status, 200);
    assert!(r.body.contains(&id));
    // ?token= sets a cookie and sends the browser to the URL without it.
    let r = s.get(&format!("{page}?token={token}"), &[]);
    assert_eq!(r.status, 303);
    assert_eq!(r.headers["location"], page);
    assert!(r.headers["set-cookie"].contains("HttpOnly"));
    let cookie = format!("mend_token={token}");
    assert_eq!(s.get(&page, &[("Cookie", &cookie)]).status, 200);
    // No route changes anything.
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        for path in ["/", page.as_str(), "/api/runs"] {
            let r = request(s.port, method, path, &[("Authorization", &bearer)]);
            assert_eq!(r.status, 405, "{method} {path}");
        }
    }
    // Loopback without a token answers only to loopback names.
    let s = Server::start(&f, &["--listen", "127.0.0.1:0"]);
    assert_eq!(s.get("/", &[]).status, 200);
    let mut r = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    r.write_all(b"GET / HTTP/1.1\r\nHost: evil.example:80\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    r.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 421"), "{text}");
}

/// A real browser: Debian's chromium, headless, loads the live page of a
/// held run; the test lets the run go once the page's script is following
/// it; the DOM chromium dumps at the end shows the steps verified, changed
/// in place by the script (the ids it received are on the body), not by a
/// reload (a finished page has no script to set them).
#[test]
fn a_browser_sees_a_live_run_page_change_without_a_reload() {
    let Some(chromium) = chromium() else {
        eprintln!("skipped: no chromium (.ci/run installs Debian's chromium)");
        return;
    };
    let f = Fixture::new();
    let rb = kinds(&f, "pass", "rollback");
    let (mut run, gate) = paused_run(&f, &rb, "intent:0:3");
    wait_running(&f);
    let id = run_id_of(&f);
    let mut s = Server::start(&f, &["--listen", "127.0.0.1:0"]);
    let (browser, _profile) = dump_dom(chromium, &format!("http://127.0.0.1:{}/runs/{id}", s.port));
    // The page's script is following the run: let the run go.
    s.until(&format!("stream of run {id}"));
    std::fs::write(&gate, "").unwrap();
    assert_eq!(run.wait().unwrap().code(), Some(0));
    let out = browser.wait_with_output().unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(dom.contains("id=\"step-0\" class=\"s-verified\""), "{dom}");
    assert!(dom.contains("id=\"step-1\" class=\"s-verified\""), "{dom}");
    assert!(dom.contains("badge s-committed"), "{dom}");
    assert_received_in_order(&dom);
}

/// Debian's chromium, if installed (.ci/run installs it).
pub(crate) fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser"].into_iter().find(|c| {
        Command::new("sh")
            .args(["-c", &format!("command -v {c}")])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// Headless chromium loading `url`: it dumps the DOM on stdout when its
/// virtual time runs out, which waits while the page's event stream is
/// open. Keep the profile directory until the browser has ended.
pub(crate) fn dump_dom(chromium: &str, url: &str) -> (std::process::Child, tempfile::TempDir) {
    let profile = tempfile::tempdir().unwrap();
    let browser = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            // Virtual time waits while the event stream is open, and runs
            // on once the page closed it at the run's end.
            "--virtual-time-budget=30000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (browser, profile)
}

/// The page's script lists the event ids it received (`data-received`):
/// there must be some, each seq after the one before (none lost to a
/// reorder, none doubled).
pub(crate) fn assert_received_in_order(dom: &str) {
    let received = dom
        .split("data-received=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("the script received nothing:\n{dom}"));
    let seqs: Vec<i64> = received
        .split(' ')
        .map(|i| i.split(':').nth(1).unwrap().parse().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
}
