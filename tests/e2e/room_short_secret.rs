//! A secret too short to mask in free text (`"a"`) must not mask every `a`
//! of every path and message: its own field shows as `***`, the run warns
//! once naming it, and a long secret in the same run is still masked
//! everywhere.

use crate::common::*;
use crate::serve::Server;

/// Long enough to mask wherever it appears.
const LONG: &str = "hunter2-Zq8vXk3p";

const RUNBOOK: &str = r#"[runbook]
name = "short-secret"
version = "1.0.0"
summary = "cull a dir named by a long secret, with a one-byte secret beside it"

[params.token]
secret = true
required = true
doc = "the API token"

[params.pin]
secret = true
required = true
doc = "a one-byte pin"

[grants.data]
path = "{root}/data"
access = "write"

[[steps]]
id = "cull-archive"
uses = "std:cache-cull"
grants = ["data"]
with = { path = "data/archive-${token}", days = 30 }
"#;

#[test]
fn a_one_byte_secret_is_shown_as_stars_in_its_field_and_warned_of_not_masked_in_every_path() {
    let f = Fixture::new();
    populate(&f);
    for name in ["alpha.log", "bravo.log"] {
        f.write(&format!("data/archive-{LONG}/{name}"), "1\n");
        let status = std::process::Command::new("touch")
            .args(["-d", "2026-01-02 03:04:05"])
            .arg(f.path(&format!("data/archive-{LONG}/{name}")))
            .status()
            .unwrap();
        assert!(status.success());
    }
    let root = f.path("").display().to_string();
    let rb = f.runbook(
        "short.toml",
        &RUNBOOK.replace("{root}", root.trim_end_matches('/')),
    );
    let rbs = rb.to_str().unwrap();
    let sets = ["--set", &format!("token={LONG}"), "--set", "pin=a"];
    let mut outputs: Vec<(String, String)> = Vec::new();

    let plan = f.mend(&[&["plan", rbs][..], &sets[..]].concat());
    assert_eq!(plan.code, 0, "{}", plan.text());
    // The paths keep their `a`s; the long secret in them is masked.
    assert!(
        plan.stdout.contains("data/archive-***/alpha.log"),
        "{}",
        plan.stdout
    );
    outputs.push(("plan".into(), plan.text()));

    let lint = f.mend(&[&["lint", rbs][..], &sets[..]].concat());
    assert_eq!(lint.code, 0, "{}", lint.text());
    assert!(
        lint.stderr
            .contains("warning: secret param `pin` is 1 byte long"),
        "{}",
        lint.text()
    );
    outputs.push(("lint".into(), lint.text()));

    let run = f.mend(&[&["run", rbs][..], &sets[..]].concat());
    assert_eq!(run.code, 0, "{}", run.text());
    let warned: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("warning") && l.contains("secret param `pin`"))
        .collect();
    assert_eq!(warned.len(), 1, "one warning naming pin:\n{}", run.stderr);
    assert!(warned[0].contains("shorter than 4 bytes"), "{}", warned[0]);
    assert!(!run.stderr.contains("`token`"), "{}", run.stderr);
    outputs.push(("run".into(), run.text()));
    assert!(!f.path(&format!("data/archive-{LONG}/alpha.log")).exists());

    let id = history_id(&f);
    let show = f.mend(&["show", &id]);
    assert_eq!(show.code, 0, "{}", show.text());
    assert!(show.stdout.contains("param pin = ***"), "{}", show.stdout);
    assert!(show.stdout.contains("param token = ***"), "{}", show.stdout);
    assert!(show.stdout.contains("short-secret"), "{}", show.stdout);
    outputs.push(("show".into(), show.text()));
    let json = f.mend(&["--json", "show", &id]);
    assert_eq!(json.code, 0, "{}", json.text());
    assert!(json.stdout.contains("\"short-secret\""), "{}", json.stdout);
    // The pin's value shows nowhere as a param value.
    assert!(!json.stdout.contains(r#"\"a\""#), "{}", json.stdout);
    assert!(!json.stdout.contains(r#""a""#), "{}", json.stdout);
    outputs.push(("show --json".into(), json.text()));
    for args in [
        vec!["report", id.as_str()],
        vec!["--json", "history"],
        vec!["history"],
    ] {
        let out = f.mend(&args);
        assert_eq!(out.code, 0, "{args:?}: {}", out.text());
        assert!(
            out.stdout.contains("short-secret"),
            "{args:?}: {}",
            out.stdout
        );
        outputs.push((args.join(" "), out.text()));
    }

    let s = Server::start(&f, &["--listen", "127.0.0.1:0"]);
    let page = s.get(&format!("/runs/{id}"), &[]).body;
    assert!(page.contains("short-secret"), "{page}");
    assert!(page.contains("<code>***</code>"), "{page}");
    let actions = s.get(&format!("/runs/{id}/actions?step=0"), &[]).body;
    assert!(actions.contains("data/archive-***/alpha.log"), "{actions}");
    outputs.push(("/runs/ID".into(), page));
    outputs.push(("/runs/ID/actions".into(), actions));
    let api = s.get(&format!("/api/runs/{id}"), &[]).body;
    assert!(api.contains("short-secret"), "{api}");
    outputs.push(("/api/runs/ID".into(), api));

    for (what, text) in &outputs {
        assert!(
            !text.contains(LONG),
            "the long secret is in {what}:\n{text}"
        );
        // An over-masked `a`: `d***t***`, `***rchive`.
        assert!(
            !text.contains("***rchive") && !text.contains("d***t***"),
            "every `a` masked in {what}:\n{text}"
        );
    }
}
