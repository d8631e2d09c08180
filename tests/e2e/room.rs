//! The operating room's record of a run: secret params masked in every
//! output (terminal, show, report, watch, every route of `mend serve`),
//! who started the run and where, and the timeline picture (served, and
//! written by `mend report --svg`).

use crate::common::*;
use crate::serve::Server;

/// A secret that must appear in no output: interpolated into a step's
/// path (so its actions name it) and into a failing check's message (so
/// the run's error, its events and the rollback carry it).
const SECRET: &str = "hunter2-Zq8vXk3p";

const RUNBOOK: &str = r#"[runbook]
name = "secret-cull"
version = "1.0.0"
summary = "cull a dir named by a secret, then fail a check that names it"

[params.token]
secret = true
required = true
doc = "the API token"

[grants.data]
path = "{root}/data"
access = "write"

[[steps]]
id = "cull-secret-dir"
uses = "std:cache-cull"
grants = ["data"]
with = { path = "data/${token}", days = 30 }

[[steps]]
id = "check"
uses = "std:assert"
grants = ["data"]
with = { when = "after", checks = [{ exists = "data/missing-${token}", message = "<script>x</script> no ${token}" }] }
"#;

fn fixture() -> (Fixture, std::path::PathBuf) {
    let f = Fixture::new();
    populate(&f);
    f.write(&format!("data/{SECRET}/one.log"), "1\n");
    f.write(&format!("data/{SECRET}/two.log"), "2\n");
    let status = std::process::Command::new("touch")
        .args(["-d", "2026-01-02 03:04:05"])
        .arg(f.path(&format!("data/{SECRET}/one.log")))
        .arg(f.path(&format!("data/{SECRET}/two.log")))
        .status()
        .unwrap();
    assert!(status.success());
    let root = f.path("").display().to_string();
    let rb = f.runbook(
        "secret.toml",
        &RUNBOOK.replace("{root}", root.trim_end_matches('/')),
    );
    (f, rb)
}

fn assert_no_secret(what: &str, text: &str) {
    assert!(
        !text.contains(SECRET),
        "the secret is in {what}:\n{}",
        text.chars().take(4000).collect::<String>()
    );
}

/// A small well-formedness check of XML: every tag closed in order,
/// attributes quoted, no bare `<` or `&` in text.
fn assert_well_formed(xml: &str) {
    let body = xml
        .strip_prefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n")
        .expect("an XML declaration");
    let mut stack: Vec<String> = Vec::new();
    let mut rest = body;
    while let Some(i) = rest.find(['<', '&']) {
        let (text, tail) = rest.split_at(i);
        assert!(!text.contains('>'), "a bare `>` in text: {text}");
        if tail.starts_with('&') {
            let end = tail.find(';').expect("an entity ends with ;");
            let name = &tail[1..end];
            assert!(
                ["lt", "gt", "amp", "quot", "#39"].contains(&name),
                "unknown entity &{name};"
            );
            rest = &tail[end + 1..];
            continue;
        }
        let end = tail.find('>').expect("a tag ends");
        let tag = &tail[1..end];
        assert!(!tag.contains('<'), "a `<` inside a tag: {tag}");
        assert_eq!(tag.matches('"').count() % 2, 0, "unbalanced quotes: {tag}");
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop().as_deref(), Some(name), "mismatched </{name}>");
        } else if !tag.ends_with('/') {
            stack.push(tag.split_whitespace().next().unwrap().to_string());
        }
        rest = &tail[end + 1..];
    }
    assert!(rest.trim().is_empty(), "text after the root: {rest}");
    assert!(stack.is_empty(), "unclosed: {stack:?}");
}

#[test]
fn a_secret_param_appears_in_no_output_terminal_show_report_watch_or_serve() {
    let (f, rb) = fixture();
    let rbs = rb.to_str().unwrap();
    let set = format!("token={SECRET}");
    let mut outputs: Vec<(String, String)> = Vec::new();

    let plan = f.mend(&["plan", rbs, "--set", &set]);
    assert_eq!(plan.code, 0, "{}", plan.text());
    assert!(plan.stdout.contains("***"), "{}", plan.stdout);
    outputs.push(("plan".into(), plan.text()));
    let plan_json = f.mend(&["--json", "plan", rbs, "--set", &set]);
    outputs.push(("plan --json".into(), plan_json.text()));

    // The check fails: the run rolls back, its error names the secret.
    let run = f.mend(&["-v", "run", rbs, "--set", &set]);
    assert_eq!(run.code, 1, "{}", run.text());
    outputs.push(("run -v".into(), run.text()));
    let id = history_id(&f);
    // The step really used the secret: its dir was culled, then restored.
    assert!(f.path(&format!("data/{SECRET}/one.log")).exists());

    for args in [
        vec!["show", id.as_str()],
        vec!["--json", "show", id.as_str()],
        vec!["report", id.as_str()],
        vec!["--json", "report", id.as_str()],
        vec!["watch", id.as_str()],
        vec!["--json", "watch", id.as_str()],
        vec!["--json", "history"],
    ] {
        let out = f.mend(&args);
        outputs.push((args.join(" "), out.text()));
    }
    let show = f.mend(&["show", &id]);
    assert!(show.stdout.contains("param token = ***"), "{}", show.stdout);
    let svg = f.path("timeline.svg");
    let rep = f.mend(&["report", &id, "--svg", svg.to_str().unwrap()]);
    assert_eq!(rep.code, 0, "{}", rep.text());
    outputs.push(("report --svg".into(), rep.text()));
    outputs.push((
        "the SVG file".into(),
        std::fs::read_to_string(&svg).unwrap(),
    ));

    let s = Server::start(&f, &["--listen", "127.0.0.1:0"]);
    for path in [
        "/".to_string(),
        format!("/runs/{id}"),
        format!("/runs/{id}.json"),
        format!("/runs/{id}/timeline.svg"),
        format!("/runs/{id}/actions?step=0"),
        format!("/runs/{id}/stream?after=0"),
        "/api/runs".to_string(),
        format!("/api/runs/{id}"),
        format!("/api/runs/{id}/actions?step=0"),
    ] {
        let r = s.get(&path, &[]);
        assert!(r.status < 300, "{path}: {} {}", r.status, r.body);
        outputs.push((path, r.body));
    }
    let page = s.get(&format!("/runs/{id}"), &[]).body;
    assert!(page.contains("<code>***</code>"), "{page}");
    // The masked text is what was shown: the actions name the masked dir.
    let actions = s.get(&format!("/runs/{id}/actions?step=0"), &[]).body;
    assert!(actions.contains("data/***/one.log"), "{actions}");

    for (what, text) in &outputs {
        assert_no_secret(what, text);
    }
    // Kept in the journal (a resume needs it), as the docs say.
    let db = std::fs::read(f.state().join("journal.db")).unwrap();
    let wal = std::fs::read(f.state().join("journal.db-wal")).unwrap_or_default();
    let needle = SECRET.as_bytes();
    assert!(
        db.windows(needle.len()).any(|w| w == needle)
            || wal.windows(needle.len()).any(|w| w == needle),
        "the secret is not journaled: a resume could not use it"
    );
}

#[test]
fn who_started_a_run_and_where_is_in_show_report_and_serve() {
    let (f, rb) = fixture();
    let set = format!("token={SECRET}");
    let run = f.mend_env(
        &["run", rb.to_str().unwrap(), "--set", &set],
        &[("SUDO_USER", "alice-oncall")],
    );
    assert_eq!(run.code, 1, "{}", run.text());
    let id = history_id(&f);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string();
    let me = String::from_utf8(
        std::process::Command::new("id")
            .arg("-un")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    let by = format!("alice-oncall (as {me})");

    let show = f.mend(&["show", &id]);
    assert!(
        show.stdout.contains(&format!("started by {by} on {host}")),
        "{}",
        show.stdout
    );
    let json: serde_json::Value =
        serde_json::from_str(&f.mend(&["--json", "show", &id]).stdout).unwrap();
    assert_eq!(json["run"]["started_by"], by.as_str());
    assert_eq!(json["run"]["host"], host.as_str());
    let report = f.mend(&["report", &id]).stdout;
    assert!(
        report.contains(&format!("| started by | {by} on {host} |")),
        "{report}"
    );
    let s = Server::start(&f, &["--listen", "127.0.0.1:0"]);
    let page = s.get(&format!("/runs/{id}"), &[]).body;
    assert!(page.contains(&format!("<td id=run-by>{by}</td>")), "{page}");
}

#[test]
fn the_timeline_svg_has_a_bar_per_step_and_the_rollback_in_its_colour() {
    let (f, rb) = fixture();
    let set = format!("token={SECRET}");
    let run = f.mend(&["run", rb.to_str().unwrap(), "--set", &set]);
    assert_eq!(run.code, 1, "{}", run.text());
    let id = history_id(&f);
    let s = Server::start(&f, &["--listen", "127.0.0.1:0"]);
    let r = s.get(&format!("/runs/{id}/timeline.svg"), &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    let svg = r.body;
    assert_well_formed(&svg);
    assert_eq!(svg.matches("class=\"bar\"").count(), 2, "{svg}");
    assert!(
        svg.contains("class=\"rollback\" ") && svg.contains("#ef6c00"),
        "{svg}"
    );
    // The culled step's actions were undone: its undo is drawn too.
    assert!(svg.contains("class=\"undo\""), "{svg}");
    // Free space of the write grant, before and after.
    assert_eq!(svg.matches("class=\"space\"").count(), 2, "{svg}");
    assert!(!svg.contains("<script>"), "{svg}");
    // The run page embeds it; the report writes the same picture.
    let page = s.get(&format!("/runs/{id}"), &[]).body;
    assert!(
        page.contains(&format!("<img src='/runs/{id}/timeline.svg'")),
        "{page}"
    );
    let file = f.path("t.svg");
    let rep = f.mend(&["report", &id, "--svg", file.to_str().unwrap()]);
    assert_eq!(rep.code, 0, "{}", rep.text());
    assert!(rep.stdout.contains("](t.svg)"), "{}", rep.stdout);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), svg);

    // A committed run: no rollback drawn.
    let ok = f.runbook(
        "ok.toml",
        &RUNBOOK
            .replace(
                "{root}",
                f.path("").display().to_string().trim_end_matches('/'),
            )
            .replace("data/missing-${token}", "data/a.txt")
            .replace("secret-cull", "ok-cull"),
    );
    let ran = f.mend(&["run", ok.to_str().unwrap(), "--set", &set]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    let id2 = history_id(&f);
    assert_ne!(id, id2);
    let svg = s.get(&format!("/runs/{id2}/timeline.svg"), &[]).body;
    assert_well_formed(&svg);
    assert!(!svg.contains("class=\"rollback\""), "{svg}");
}

/// Runs as `nobody`, with no supplementary groups.
const AS_NOBODY: &[&str] = &[
    "setpriv",
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
];

#[test]
fn another_user_who_can_only_read_the_journal_can_watch_and_serve_a_finished_run() {
    let f = Fixture::new();
    let rb = crate::lifecycle::kinds(&f, "pass", "rollback");
    let ran = f.mend(&["run", rb.to_str().unwrap()]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    let id = history_id(&f);
    // The writer has closed the journal. Let `nobody` read, never write:
    // the fixture and state directories traversable, the files 0644.
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: &std::path::Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
    };
    mode(&f.path(""), 0o755);
    mode(&f.state(), 0o755);
    for e in std::fs::read_dir(f.state()).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            mode(&p, 0o644);
        }
    }
    let watch = std::process::Command::new(AS_NOBODY[0])
        .args(&AS_NOBODY[1..])
        .arg(mend_bin())
        .arg("--state-dir")
        .arg(f.state())
        .args(["watch", &id])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&watch.stdout),
        String::from_utf8_lossy(&watch.stderr)
    );
    assert_eq!(watch.status.code(), Some(0), "watch as nobody:\n{text}");
    assert!(text.contains("committed"), "{text}");

    // The postmortem's readers too: show, report and history.
    for args in [
        vec!["show", id.as_str()],
        vec!["report", id.as_str()],
        vec!["history"],
    ] {
        let out = std::process::Command::new(AS_NOBODY[0])
            .args(&AS_NOBODY[1..])
            .arg(mend_bin())
            .arg("--state-dir")
            .arg(f.state())
            .args(&args)
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(0), "{args:?} as nobody:\n{text}");
        assert!(text.contains("committed"), "{args:?}: {text}");
    }

    let s = Server::start_as(&f, &["--listen", "127.0.0.1:0"], AS_NOBODY);
    let page = s.get(&format!("/runs/{id}"), &[]);
    assert_eq!(page.status, 200, "serve as nobody: {}", page.body);
    assert!(page.body.contains("committed"), "{}", page.body);
    // And it wrote nothing: the journal's files are still root's.
    for e in std::fs::read_dir(f.state()).unwrap() {
        use std::os::unix::fs::MetadataExt as _;
        let m = e.unwrap().metadata().unwrap();
        assert_eq!(m.uid(), 0, "a file of the state dir is not root's");
    }
}

/// A user who may read the journal but not write it, running a command that
/// writes: told that, not to free disk space (the hint a full disk gets).
#[test]
fn a_user_who_cannot_write_the_journal_is_told_so_not_to_free_space() {
    let f = Fixture::new();
    let rb = crate::lifecycle::kinds(&f, "pass", "rollback");
    let ran = f.mend(&["run", rb.to_str().unwrap()]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: &std::path::Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
    };
    // Locks may be taken (a shared state dir), the journal only read.
    mode(&f.path(""), 0o755);
    mode(&f.state(), 0o777);
    for e in std::fs::read_dir(f.state()).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            mode(&p, 0o777);
            for l in std::fs::read_dir(&p).unwrap() {
                mode(&l.unwrap().path(), 0o666);
            }
        } else {
            mode(&p, 0o644);
        }
    }
    for e in walk(&f.path("")) {
        if e.is_dir() {
            mode(&e, 0o777);
        }
    }
    let out = std::process::Command::new(AS_NOBODY[0])
        .args(&AS_NOBODY[1..])
        .arg(mend_bin())
        .arg("--state-dir")
        .arg(f.state())
        .args(["run", rb.to_str().unwrap()])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(70), "{stderr}");
    assert!(
        stderr.contains("this user may not write the journal"),
        "{stderr}"
    );
    assert!(!stderr.contains("free space"), "{stderr}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() && !p.is_symlink() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
