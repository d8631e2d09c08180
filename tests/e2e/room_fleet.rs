//! `mend serve --journal DSN`: the operating room across a fleet, from the
//! shared PostgreSQL journal a real `mend fleet run` wrote over two real
//! sshd hosts (the harness of fleet.rs; the private cluster of
//! tests/support/pg_cluster.rs). The history has a host column and a host
//! filter, a fleet run's page lists its hosts and each host's steps, the
//! JSON matches, a step's words are escaped, a secret param is nowhere,
//! the session cannot write, and the token rules are the single-host ones.

use std::process::Stdio;

use crate::common::*;
use crate::fleet::Fleet;
use crate::pg_cluster::Pg;
use crate::serve::{Server, request};

const SECRET: &str = "hunter2-Zq8vXk3p";

/// The certificate runbook with a secret: it names a stale directory the
/// first step culls (so actions carry it) and the failing check's message
/// (so h2's events and error carry it, beside markup).
const RUNBOOK: &str = r#"[runbook]
name = "distribute-cert"
version = "1.0.0"
summary = "cull the stale certificate dir, check the nginx config"

[params]
data = { required = true, doc = "the host's certificate directory" }
nginx = { default = "/bin/true", doc = "nginx, or a stand-in" }
token = { required = true, secret = true, doc = "the API token" }

[grants.live]
path = "${data}/live"
access = "write"

[commands.nginx]
program = "${nginx}"
reads = [["-t"]]

[[steps]]
id = "cull-stale"
uses = "std:cache-cull"
grants = ["live"]
with = { path = "live/old-${token}", days = 30 }

[[steps]]
id = "nginx-test"
uses = "std:assert"
commands = ["nginx"]
with = { when = "after", checks = [{ command = { command = "nginx", args = ["-t"] }, message = "<script>alert(1)</script> nginx -t failed for ${token}" }] }
"#;

#[test]
fn room_fleet_serve_shows_every_hosts_runs_and_steps_from_the_shared_journal_read_only() {
    let pg = Pg::start();
    let dsn = pg.dsn();
    let f = Fleet::start(2);
    // h1 commits; h2's nginx -t fails: it is rolled back, the rollout stops.
    let inv = f.inventory("batches = [1, \"rest\"]", &|i| {
        let nginx = if i == 1 { "/bin/false" } else { "/bin/true" };
        format!(
            "params = {{ data = \"{}\", nginx = \"{nginx}\" }}",
            f.hosts[i].data().display()
        )
    });
    let text = std::fs::read_to_string(&inv).unwrap().replace(
        "params = { nginx = \"/bin/true\" }",
        &format!("params = {{ nginx = \"/bin/true\", token = \"{SECRET}\" }}"),
    );
    std::fs::write(&inv, text).unwrap();
    for h in &f.hosts {
        let dir = h.data().join(format!("live/old-{SECRET}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cert.pem"), "old\n").unwrap();
        let ok = std::process::Command::new("touch")
            .args(["-d", "2026-01-02 03:04:05"])
            .arg(dir.join("cert.pem"))
            .status()
            .unwrap();
        assert!(ok.success());
    }
    let rb = f.root().join("distribute-cert.toml");
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
        .output()
        .unwrap();
    let run_text = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert_ne!(run.status.code(), Some(0), "{run_text}");
    for (what, text) in [("fleet plan", plan.text()), ("fleet run", run_text.clone())] {
        assert!(!text.contains(SECRET), "the secret is in {what}:\n{text}");
    }
    let fleet_run = pg.sql("postgres", "SELECT id FROM mend_fleet_runs");
    assert!(!fleet_run.is_empty(), "{run_text}");
    let run_of = |host: &str| {
        pg.sql(
            "postgres",
            &format!("SELECT run_id FROM mend_fleet_hosts WHERE host = '{host}'"),
        )
    };
    let (r1, r2) = (run_of("h1"), run_of("h2"));
    assert!(!r1.is_empty() && !r2.is_empty(), "{run_text}");
    let tables = "SELECT (SELECT count(*) FROM mend_fleet_runs) || ' ' || \
                  (SELECT count(*) FROM mend_fleet_hosts) || ' ' || \
                  (SELECT count(*) FROM mend_host_runs) || ' ' || \
                  (SELECT count(*) FROM mend_run_records) || ' ' || \
                  (SELECT count(*) FROM mend_fleet_events)";
    let before = pg.sql("postgres", tables);

    // A viewer with no state of its own.
    let viewer = Fixture::new();
    let s = Server::start(&viewer, &["--listen", "127.0.0.1:0", "--journal", &dsn]);
    let mut bodies: Vec<(String, String)> = Vec::new();
    let mut get = |path: &str| {
        let r = s.get(path, &[]);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        bodies.push((path.to_string(), r.body.clone()));
        r.body
    };

    // `/`: both hosts' runs with their host, and the fleet run.
    let home = get("/");
    for (host, id) in [("h1", &r1), ("h2", &r2)] {
        assert!(
            home.contains(&format!("<a href='/runs/{id}'>"))
                && home.contains(&format!("<td class=host>{host}</td>")),
            "{host} in {home}"
        );
    }
    assert!(
        home.contains(&format!("<a href='/fleet/{fleet_run}'>")),
        "{home}"
    );
    assert!(home.contains("1/2 committed"), "{home}");
    // The host filter.
    let only = get("/?host=h2");
    assert_eq!(only.matches("<td class=host>").count(), 1, "{only}");
    assert!(only.contains("<td class=host>h2</td>"), "{only}");
    let none = get("/?host=h9");
    assert!(
        none.contains("no runs") && none.contains("no fleet runs"),
        "{none}"
    );

    // The fleet run: its hosts, and each host's steps and status.
    let page = get(&format!("/fleet/{fleet_run}"));
    assert!(
        page.contains("id=\"host-h1\" class='s-committed'"),
        "{page}"
    );
    assert!(
        page.contains("id=\"host-h2\" class='s-rolled-back'"),
        "{page}"
    );
    for host in ["h1", "h2"] {
        let steps = page
            .split(&format!("<table class=steps data-host=\"{host}\">"))
            .nth(1)
            .unwrap_or_else(|| panic!("no steps of {host} in {page}"));
        let steps = &steps[..steps.find("</table>").unwrap()];
        assert!(steps.contains("cull-stale"), "{host}: {steps}");
        assert!(steps.contains("nginx-test"), "{host}: {steps}");
        if host == "h1" {
            assert!(steps.contains("<td class=status>verified</td>"), "{steps}");
            assert!(steps.contains("1 done"), "{steps}");
        } else {
            assert!(steps.contains("<td class=status>undone</td>"), "{steps}");
            assert!(steps.contains("1 done, 1 undone"), "{steps}");
        }
    }
    // The same as JSON.
    let json: serde_json::Value =
        serde_json::from_str(&get(&format!("/api/fleet/{fleet_run}"))).unwrap();
    assert_eq!(json["id"], fleet_run.as_str(), "{json}");
    assert_eq!(json["hosts"][0]["host"], "h1", "{json}");
    assert_eq!(json["hosts"][1]["status"], "rolled-back", "{json}");
    assert_eq!(json["steps"]["h1"][0]["status"], "verified", "{json}");
    assert_eq!(json["steps"]["h2"][0]["undone"], 1, "{json}");
    let runs: serde_json::Value = serde_json::from_str(&get("/api/runs?host=h1")).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs}");
    assert_eq!(runs[0]["run_id"], r1.as_str(), "{runs}");
    let api_fleet: serde_json::Value = serde_json::from_str(&get("/api/fleet")).unwrap();
    assert_eq!(api_fleet[0]["id"], fleet_run.as_str(), "{api_fleet}");

    // h2's run: the failing check's words as text, never markup.
    let h2 = get(&format!("/runs/{r2}"));
    assert!(h2.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{h2}");
    assert!(!h2.contains("<script>alert"), "{h2}");
    assert!(h2.contains("live/old-***/cert.pem"), "{h2}");
    let h2json: serde_json::Value = serde_json::from_str(&get(&format!("/api/runs/{r2}"))).unwrap();
    assert_eq!(h2json["run"]["host"], "h2", "{h2json}");
    get(&format!("/runs/{r1}"));
    get(&format!("/fleet/{fleet_run}.json"));

    // The secret: in no page, no JSON, and not in the shared journal.
    for (path, body) in &bodies {
        assert!(!body.contains(SECRET), "the secret is in {path}:\n{body}");
    }
    let rows_with = |needle: &str| {
        pg.sql(
            "postgres",
            &format!(
                "SELECT count(*) FROM (SELECT t::text AS x FROM mend_run_records t
                 UNION ALL SELECT t::text FROM mend_host_runs t
                 UNION ALL SELECT t::text FROM mend_fleet_hosts t
                 UNION ALL SELECT t::text FROM mend_fleet_runs t
                 UNION ALL SELECT t::text FROM mend_fleet_events t) a
                 WHERE x LIKE '%{needle}%'"
            ),
        )
    };
    assert_ne!(rows_with("cull-stale"), "0", "the steps were shipped");
    assert_eq!(
        rows_with(SECRET),
        "0",
        "the secret is in the shared journal"
    );

    // Read-only: no route takes a write; reading changed no row.
    for m in ["POST", "PUT", "DELETE"] {
        let r = request(s.port, m, "/", &[]);
        assert_eq!(r.status, 405, "{m}: {}", r.body);
    }
    assert_eq!(pg.sql("postgres", tables), before);
    // ... and its session cannot write, whatever it is sent.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let err = rt.block_on(async {
        let ro = mend_journal::pg::ReadOnly::connect(&dsn).await.unwrap();
        ro.client()
            .batch_execute("DELETE FROM mend_run_records")
            .await
            .unwrap_err()
    });
    let msg = err.as_db_error().map(|d| d.message().to_string());
    assert_eq!(
        msg.as_deref(),
        Some("cannot execute DELETE in a read-only transaction"),
        "{err:?}"
    );
    assert_eq!(pg.sql("postgres", tables), before);
    drop(s);

    // Token rules unchanged: a non-loopback address needs one.
    let refused = viewer.mend(&["serve", "--listen", "0.0.0.0:0", "--journal", &dsn]);
    assert_eq!(refused.code, 2, "{}", refused.text());
    let token = viewer.path("token");
    std::fs::write(&token, "0123456789abcdef-fleet\n").unwrap();
    let t = Server::start(
        &viewer,
        &[
            "--listen",
            "0.0.0.0:0",
            "--token-file",
            token.to_str().unwrap(),
            "--journal",
            &dsn,
        ],
    );
    assert_eq!(t.get("/", &[]).status, 401);
    let ok = t.get(
        &format!("/fleet/{fleet_run}"),
        &[("Authorization", "Bearer 0123456789abcdef-fleet")],
    );
    assert_eq!(ok.status, 200, "{}", ok.body);
    drop(t);

    // A bad DSN is bad input: exit 2, nothing listens.
    let bad = viewer.mend(&["serve", "--journal", "host=/x port=many"]);
    assert_eq!(bad.code, 2, "{}", bad.text());
    assert!(
        bad.stderr.contains("the DSN does not parse"),
        "{}",
        bad.text()
    );
    // The viewer kept no state.
    assert!(!viewer.state().join("journal.db").exists());
}
