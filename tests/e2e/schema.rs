//! `mend schema`: the runbook JSON Schema is generated from the format the
//! parser checks, kept in docs/ for editors, and accepts every shipped
//! runbook while refusing what mend refuses.

use crate::common::*;

/// TOML to JSON as an editor's TOML language server sees it: datetimes as
/// strings.
fn to_json(v: toml::Value) -> serde_json::Value {
    match v {
        toml::Value::String(s) => s.into(),
        toml::Value::Integer(i) => i.into(),
        toml::Value::Float(f) => f.into(),
        toml::Value::Boolean(b) => b.into(),
        toml::Value::Datetime(d) => d.to_string().into(),
        toml::Value::Array(a) => a.into_iter().map(to_json).collect(),
        toml::Value::Table(t) => t.into_iter().map(|(k, v)| (k, to_json(v))).collect(),
    }
}

fn schema() -> serde_json::Value {
    let f = Fixture::new();
    let ran = f.mend(&["schema"]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    // The copy editors point at stays what `mend schema` prints.
    golden("docs/runbook.schema.json", &ran.stdout);
    serde_json::from_str(&ran.stdout).expect("the schema is JSON")
}

fn errors(validator: &jsonschema::Validator, toml_text: &str) -> Vec<String> {
    let doc = to_json(toml::from_str(toml_text).expect("valid TOML"));
    validator
        .iter_errors(&doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

#[test]
fn shipped_runbooks_pass_and_mistakes_fail() {
    let schema = schema();
    let validator = jsonschema::draft202012::new(&schema).expect("a valid 2020-12 schema");
    let mut checked = 0;
    for dir in std::fs::read_dir(repo("runbooks")).unwrap() {
        for file in std::fs::read_dir(dir.unwrap().path()).unwrap() {
            let path = file.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let errs = errors(&validator, &text);
            assert!(errs.is_empty(), "{}: {errs:#?}", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 7, "only {checked} runbooks found");

    let good = r#"
[runbook]
name = "cull"
version = "1"
summary = "cull the cache"
[params]
days = 7
[grants.cache]
path = "/var/cache/x"
access = "write"
disposable = true
[[steps]]
id = "cull"
uses = "std:cache-cull"
grants = ["cache"]
with = { path = "cache", days = "${days}" }
timeout = "5m"
retry = { attempts = 3, delay = "2s" }
"#;
    assert_eq!(errors(&validator, good), Vec::<String>::new());
    // Each mistake alone, caught by the schema as mend's parser catches it.
    for (mistake, from, to) in [
        ("an unknown top-level key", "[params]", "[paramz]"),
        ("an unknown step key", "timeout = \"5m\"", "timeot = \"5m\""),
        ("a bad access", "access = \"write\"", "access = \"rw\""),
        ("a bad duration", "\"5m\"", "\"5 minutes\""),
        ("zero attempts", "attempts = 3", "attempts = 0"),
        ("a bad step id", "id = \"cull\"", "id = \"Cull Step\""),
        (
            "an unknown step parameter",
            "path = \"cache\"",
            "directory = \"cache\"",
        ),
        (
            "a wrongly typed step parameter",
            "days = \"${days}\"",
            "days = \"seven\"",
        ),
        ("a missing summary", "summary = \"cull the cache\"", ""),
    ] {
        let bad = good.replacen(from, to, 1);
        assert_ne!(bad, good, "{mistake}: `{from}` not in the runbook");
        assert!(
            !errors(&validator, &bad).is_empty(),
            "the schema accepts {mistake}"
        );
        let f = Fixture::new();
        let file = f.write("bad.toml", &bad);
        let lint = f.mend(&["lint", file.to_str().unwrap()]);
        assert_eq!(lint.code, 2, "mend accepts {mistake}: {}", lint.text());
    }
}

/// Output cut short by its reader (`mend --json plan | head`) ends mend by
/// SIGPIPE, quietly, as it does `find` and `cat`: no panic message. The
/// plan is made far longer than a pipe's buffer, so mend is still writing
/// when its reader goes.
#[test]
fn a_reader_that_goes_away_ends_mend_quietly() {
    let f = Fixture::new();
    for i in 0..3000 {
        f.write(&format!("data/cache/{:02}/file-{i:05}.jpg", i % 30), "x");
    }
    let rb = f.runbook(
        "cull.toml",
        r#"[runbook]
name = "cull"
version = "1.0.0"
summary = "a long plan"

[grants.data]
path = "{root}/data"
access = "write"

[[steps]]
id = "cull"
uses = "std:cache-cull"
grants = ["data"]
with = { path = "data/cache", minutes = 0 }
"#,
    );
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "'{}' --cache-dir '{}' --now 4000000000 --json plan --all '{}' | head -c 10 >/dev/null",
            mend_bin(),
            shared_cache().display(),
            rb.display()
        ))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}

/// `mend schema --fleet`: the inventory's schema, from the same declaration
/// the inventory parser checks, accepts an inventory mend accepts and
/// refuses the unknown key mend refuses.
#[test]
fn the_fleet_schema_agrees_with_the_inventory_parser() {
    let f = Fixture::new();
    let ran = f.mend(&["schema", "--fleet"]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    let schema: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    let validator = jsonschema::draft202012::new(&schema).expect("a valid 2020-12 schema");
    let good = r#"
[fleet]
name = "hachyderm"
parallel = 4
[rollout]
batches = [1, "50%", "rest"]
max_failures = 1
[groups.cdn]
params = { nginx = "/usr/sbin/nginx", port = 443 }
[hosts.cdn1]
ssh = "root@cdn1.example.org"
groups = ["cdn"]
params = { live = "/etc/letsencrypt/live/cdn" }
"#;
    assert_eq!(errors(&validator, good), Vec::<String>::new());
    let inv = f.dir.path().join("fleet.toml");
    std::fs::write(&inv, good).unwrap();
    let lint = f.mend(&["lint", inv.to_str().unwrap()]);
    assert_eq!(lint.code, 0, "{}", lint.text());

    let bad = good.replace("max_failures", "max_failure");
    assert!(!errors(&validator, &bad).is_empty());
    std::fs::write(&inv, &bad).unwrap();
    let lint = f.mend(&["lint", inv.to_str().unwrap()]);
    assert_eq!(lint.code, 2, "{}", lint.text());
    assert!(
        lint.stderr.contains("did you mean `max_failures`?"),
        "{}",
        lint.text()
    );
    let no_ssh = good.replace("ssh = \"root@cdn1.example.org\"\n", "");
    assert!(!errors(&validator, &no_ssh).is_empty());
}
