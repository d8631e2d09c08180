//! Loading whole runbooks: the valid round trip and every error class.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use super::*;

const BUNDLED: &[&str] = &["cache-cull", "http-check", "pg-dump"];
const FILE: &str = "runbooks/mastodon/maintenance.toml";
const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn load_with(src: &str, sets: &[(&str, &str)]) -> Result<Runbook, Vec<Diagnostic>> {
    let sets: Vec<(String, String)> = sets
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Runbook::from_source(Path::new(FILE), src.to_string(), &sets, BUNDLED)
}

fn load(src: &str) -> Result<Runbook, Vec<Diagnostic>> {
    load_with(src, &[])
}

fn errors_with(src: &str, sets: &[(&str, &str)]) -> Vec<Diagnostic> {
    match load_with(src, sets) {
        Ok(_) => panic!("expected errors"),
        Err(e) => e,
    }
}

fn errors(src: &str) -> Vec<Diagnostic> {
    errors_with(src, &[])
}

/// The only error, checked for its position and a piece of its message.
fn one_error(src: &str, line: usize, column: usize, message_part: &str) -> Diagnostic {
    let errs = errors(src);
    assert_eq!(errs.len(), 1, "{}", render(&errs));
    let d = errs.into_iter().next().unwrap();
    assert_eq!((d.line, d.column), (line, column), "{d}");
    assert!(d.message.contains(message_part), "{d}");
    d
}

fn render(errs: &[Diagnostic]) -> String {
    errs.iter().map(|d| format!("{d}\n")).collect()
}

const HEAD: &str = r#"[runbook]
name = "t"
version = "1"
summary = "s"
"#;

/// HEAD (4 lines) + `rest`: line numbers in `rest` start at 5.
fn with_head(rest: &str) -> String {
    format!("{HEAD}{rest}")
}

const FULL: &str = r#"[runbook]
name = "mastodon-maintenance"
version = "1.2.0"
summary = "Cull remote media caches"
on_failure = "stop"

[params]
root = "/var/lib/mastodon"
days = 7
ratio = 0.5
dry = false
db = { required = true, doc = "database to restore" }
opt = { doc = "optional" }
port = { default = 3000 }

[grants.media]
path = "${root}/public/system/cache"
access = "write"
disposable = true

[grants.backups]
path = "backups"
access = "read"

[commands.systemctl]
program = "/usr/bin/systemctl"
reads = ["is-active **"]
changes = [["restart", "mastodon-*.service"]]
user = "nobody"
env = { RAILS_ENV = "production", DB = "${db}" }

[[steps]]
id = "cull"
uses = "std:cache-cull"
grants = ["media"]
commands = ["systemctl"]
urls = ["http://127.0.0.1:3000/health"]
with = { days = "${days}", exclude = ["*.keep", "$${x}"], nested = { db = "${db}", n = [1, { p = "${port}" }] }, when = 1979-05-27T07:32:00Z, f = 1.5, on = true }
retry = { attempts = 5, delay = "2s" }
timeout = "90s"
memory = "512MiB"

[[steps]]
id = "check_2"
uses = "steps/check.wasm"
sha256 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
retry = 3
timeout = 5
memory = 1048576

[rehearsal.commands.systemctl]
program = "/bin/true"
args = ["x", "${args}", "${db}"]
"#;

#[test]
fn full_runbook_round_trip() {
    let rb = load_with(FULL, &[("db", "main"), ("days", "3"), ("days", "9")])
        .unwrap_or_else(|e| panic!("{}", render(&e)));
    assert_eq!(rb.file, PathBuf::from(FILE));
    assert_eq!(rb.source, FULL);
    assert_eq!(rb.sha256.len(), 64);
    assert_eq!(rb.name, "mastodon-maintenance");
    assert_eq!(rb.version, "1.2.0");
    assert_eq!(rb.summary, "Cull remote media caches");
    assert_eq!(rb.on_failure, OnFailure::Stop);

    let params: Vec<(&str, &str)> = rb
        .params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        params,
        [
            ("days", "9"),
            ("db", "main"),
            ("dry", "false"),
            ("opt", ""),
            ("port", "3000"),
            ("ratio", "0.5"),
            ("root", "/var/lib/mastodon"),
        ]
    );

    let media = &rb.grants["media"];
    assert_eq!(media.name, "media");
    assert_eq!(
        media.path,
        PathBuf::from("/var/lib/mastodon/public/system/cache")
    );
    assert_eq!(media.access, Access::Write);
    assert!(media.disposable);
    assert_eq!(&FULL[media.span.start..media.span.end], "[grants.media]");
    let backups = &rb.grants["backups"];
    assert_eq!(
        backups.path,
        std::env::current_dir().unwrap().join("backups")
    );
    assert_eq!(backups.access, Access::Read);
    assert!(!backups.disposable);

    let sc = &rb.commands["systemctl"];
    assert_eq!(sc.program, "/usr/bin/systemctl");
    assert_eq!(
        sc.changes,
        vec![vec![
            "restart".to_string(),
            "mastodon-*.service".to_string()
        ]]
    );
    assert_eq!(
        sc.reads,
        vec![vec!["is-active".to_string(), "**".to_string()]]
    );
    let (r, c) = (Class::Read, Class::Change);
    assert!(sc.allows(c, &["restart".into(), "mastodon-web.service".into()]));
    assert!(!sc.allows(r, &["restart".into(), "mastodon-web.service".into()]));
    assert!(sc.allows(r, &["is-active".into(), "a".into(), "b".into()]));
    assert!(!sc.allows(c, &["stop".into(), "mastodon-web.service".into()]));
    let run_as = sc.run_as.as_ref().unwrap();
    assert_eq!(run_as.user, "nobody");
    assert_eq!(run_as.account.as_ref().unwrap().uid, 65534);
    assert_eq!(
        sc.env,
        [
            ("RAILS_ENV".to_string(), "production".to_string()),
            ("DB".to_string(), "main".to_string())
        ]
    );

    assert_eq!(rb.steps.len(), 2);
    let cull = &rb.steps[0];
    assert_eq!(cull.id, "cull");
    assert_eq!(cull.uses, Uses::Std("cache-cull".into()));
    assert_eq!(cull.uses.to_string(), "std:cache-cull");
    assert_eq!(cull.grants, ["media"]);
    assert_eq!(cull.commands, ["systemctl"]);
    assert_eq!(cull.urls, ["http://127.0.0.1:3000/health"]);
    assert_eq!(
        serde_json::Value::Object(cull.with.clone()),
        json!({
            // `${days}` and `${port}` alone keep their params' integer type.
            "days": 9,
            "exclude": ["*.keep", "${x}"],
            "nested": { "db": "main", "n": [1, { "p": 3000 }] },
            "when": "1979-05-27T07:32:00Z",
            "f": 1.5,
            "on": true,
        })
    );
    let days = cull.with_spans["days"];
    assert_eq!(&FULL[days.start..days.end], "\"${days}\"");
    let nested = cull.with_spans["nested"];
    assert!(FULL[nested.start..nested.end].starts_with("{ db = "));
    // A step's error points at the deepest part of its path the runbook has.
    let at = |p: &str| {
        let s = cull.param_span(p);
        &FULL[s.start..s.end]
    };
    assert_eq!(at("nested.n[1].p"), "p");
    assert_eq!(at("nested.n[1].zz"), "{ p = \"${port}\" }");
    assert_eq!(at("nested.n[0]"), "1");
    assert_eq!(at("days"), "\"${days}\"");
    assert!(at("nope[3].x").starts_with("{ days = "));
    assert!(FULL[cull.with_span.start..cull.with_span.end].starts_with("{ days = "));
    assert_eq!(&FULL[cull.span.start..cull.span.end], "[[steps]]");
    assert_eq!(
        cull.retry,
        Retry {
            attempts: 5,
            delay: Duration::from_secs(2)
        }
    );
    assert_eq!(cull.timeout, Duration::from_secs(90));
    assert_eq!(cull.memory, 512 << 20);

    let check = &rb.steps[1];
    assert_eq!(check.id, "check_2");
    assert_eq!(
        check.uses,
        Uses::File {
            path: PathBuf::from("runbooks/mastodon/steps/check.wasm"),
            sha256: SHA.into(),
            capabilities: None
        }
    );
    assert_eq!(check.uses.to_string(), "runbooks/mastodon/steps/check.wasm");
    assert!(check.grants.is_empty() && check.commands.is_empty() && check.urls.is_empty());
    assert!(check.with.is_empty() && check.with_spans.is_empty());
    assert_eq!(check.with_span, check.span);
    assert_eq!(
        check.retry,
        Retry {
            attempts: 3,
            delay: Duration::from_secs(1)
        }
    );
    assert_eq!(check.timeout, Duration::from_secs(5));
    assert_eq!(check.memory, 1 << 20);
    assert_eq!(rb.step("check_2").map(|s| s.id.as_str()), Some("check_2"));

    assert_eq!(
        rb.rehearsal_commands["systemctl"],
        StandIn {
            program: "/bin/true".into(),
            args: Some(vec!["x".into(), ARGS.into(), "main".into()])
        }
    );

    // Later diagnostics point into the kept source.
    let d = rb.diagnostic(days, "`days` must be at least 1", Some("raise it".into()));
    assert_eq!((d.line, d.column), (38, 17));
    assert!(d.to_string().contains("38 | with = { days = \"${days}\""));
}

#[test]
fn defaults() {
    let rb = load(&with_head(
        "[[steps]]\nid = \"a\"\nuses = \"std:pg-dump\"\n",
    ))
    .unwrap();
    assert_eq!(rb.on_failure, OnFailure::Rollback);
    assert!(rb.params.is_empty() && rb.grants.is_empty() && rb.commands.is_empty());
    assert!(rb.rehearsal_commands.is_empty());
    let s = &rb.steps[0];
    assert_eq!(s.retry, Retry::default());
    assert_eq!(
        s.retry,
        Retry {
            attempts: 1,
            delay: Duration::from_secs(1)
        }
    );
    assert_eq!(s.timeout, Duration::from_secs(60));
    assert_eq!(s.memory, 256 << 20);
}

#[test]
fn load_reads_the_file_and_hashes_it() {
    let dir = std::env::temp_dir().join(format!("mend-runbook-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("rb.toml");
    let src = with_head(&format!(
        "[[steps]]\nid = \"a\"\nuses = \"x/step.wasm\"\nsha256 = \"{SHA}\"\n"
    ));
    std::fs::write(&file, &src).unwrap();
    let rb = Runbook::load(&file, &[], BUNDLED).unwrap();
    use sha2::Digest;
    assert_eq!(rb.sha256, hex::encode(sha2::Sha256::digest(src.as_bytes())));
    assert_eq!(
        rb.steps[0].uses,
        Uses::File {
            path: dir.join("x/step.wasm"),
            sha256: SHA.into(),
            capabilities: None
        }
    );
    std::fs::remove_dir_all(&dir).unwrap();

    let errs = Runbook::load(&dir.join("missing.toml"), &[], BUNDLED).unwrap_err();
    assert_eq!(errs[0].line, 0);
    assert!(errs[0].message.contains("cannot read runbook"));
}

#[test]
fn spec_example_rendering() {
    // `grants = ["media"]` on line 14, as in the documented example.
    let src = r#"[runbook]
name = "mastodon-maintenance"
version = "1.2.0"
summary = "Cull remote media caches"

[params]
days = 7

[[steps]]
id = "cull"
uses = "std:cache-cull"
# the grant below was never declared
with = { days = "${days}" }
grants = ["media"]
"#;
    let d = one_error(src, 14, 11, "does not declare");
    assert_eq!(
        d.to_string(),
        "error: step `cull` uses grant `media`, which the runbook does not declare
  --> runbooks/mastodon/maintenance.toml:14:11
   |
14 | grants = [\"media\"]
   |           ^^^^^^^
   = help: declare it: [grants.media] with `path` and `access`, or remove it from the step"
    );
}

#[test]
fn syntax_error_stops() {
    let errs = errors("[runbook]\nname = \"x\nversion = 3\nbogus = 1\n");
    assert_eq!(errs.len(), 1, "{}", render(&errs));
    assert!(errs[0].message.starts_with("invalid TOML"), "{}", errs[0]);
    assert_eq!(errs[0].line, 2);
    let d = one_error(
        "[runbook]\nname = \"a\"\nname = \"b\"\n",
        3,
        1,
        "duplicate key",
    );
    assert_eq!(
        d.hint.as_deref(),
        Some("a key can be set only once per table: remove or rename one")
    );
}

#[test]
fn unknown_keys_list_valid_ones() {
    let d = one_error(
        &with_head(
            "[grants.media]\npath = \"/x\"\naccess = \"read\"\ndisposible = true\n[[steps]]\nid = \"a\"\nuses = \"std:pg-dump\"\n",
        ),
        8,
        1,
        "unknown key `disposible` in [grants.media]",
    );
    assert_eq!(
        d.hint.as_deref(),
        Some(
            "did you mean `disposable`? valid keys in [grants.media]: `path`, `access`, `disposable`"
        )
    );
    let d = one_error(
        &with_head("[[steps]]\nid = \"a\"\nuses = \"std:pg-dump\"\ntimout = 3\n"),
        8,
        1,
        "unknown key `timout` in step `a`",
    );
    assert!(d.hint.unwrap().contains("`timeout`"));
    one_error(
        &with_head("[[steps]]\nid = \"a\"\nuses = \"std:pg-dump\"\n[extra]\n"),
        8,
        2,
        "unknown key `extra` at the top level",
    );
    one_error(
        "[runbook]\nname = \"t\"\nversion = \"1\"\nsummary = \"s\"\nowner = \"x\"\n[[steps]]\nid = \"a\"\nuses = \"std:pg-dump\"\n",
        5,
        1,
        "unknown key `owner` in [runbook]",
    );
    one_error(
        &with_head(
            "[params]\ndb = { requird = true }\n[[steps]]\nid = \"a\"\nuses = \"std:pg-dump\"\n",
        ),
        6,
        8,
        "unknown key `requird` in param `db`",
    );
    one_error(
        &with_head(
            "[[steps]]\nid = \"a\"\nuses = \"std:pg-dump\"\nretry = { attempts = 2, wait = \"1s\" }\n",
        ),
        8,
        25,
        "unknown key `wait` in `retry`",
    );
}

#[test]
fn wrong_types() {
    let d = one_error(
        &with_head(
            "[grants.media]\npath = \"/x\"\naccess = 3\n[[steps]]\nid = \"a\"\nuses = \"std:pg-dump\"\n",
        ),
        7,
        10,
        "",
    );
    assert_eq!(
        d.message,
        "`access` must be \"read\" or \"write\", found integer 3"
    );
    let d = one_error(
        &with_head(
            "[grants.media]\npath = \"/x\"\naccess = \"rw\"\n[[steps]]\nid = \"a\"\nuses = \"std:pg-dump\"\n",
        ),
        7,
        10,
        "",
    );
    assert_eq!(
        d.message,
        "`access` must be \"read\" or \"write\", found string \"rw\""
    );
    let d = one_error(
        &with_head(
            "[grants.media]\npath = \"/x\"\naccess = \"wirte\"\n[[steps]]\nid = \"a\"\nuses = \"std:pg-dump\"\n",
        ),
        7,
        10,
        "found string \"wirte\"",
    );
    assert_eq!(d.hint.as_deref(), Some("did you mean \"write\"?"));
    let errs = errors(
        "[runbook]\nname = \"t\"\nversion = 1\nsummary = \"s\"\non_failure = \"retry\"\n[[steps]]\nid = \"a\"\nuses = \"std:pg-dump\"\n",
    );
    assert_eq!(errs.len(), 2);
    assert_eq!((errs[0].line, errs[0].column), (3, 11));
    assert_eq!(
        errs[0].message,
        "`version` must be a string, found integer 1"
    );
    assert_eq!(errs[0].hint.as_deref(), Some("change it to a string"));
    assert_eq!((errs[1].line, errs[1].column), (5, 14));
    assert_eq!(
        errs[1].message,
        "`on_failure` must be \"rollback\" or \"stop\", found string \"retry\""
    );
    assert_eq!(
        errs[1].hint.as_deref(),
        Some("change it to \"rollback\" or \"stop\"")
    );
    one_error(
        &with_head("[[steps]]\nid = \"a\"\nuses = \"std:pg-dump\"\ngrants = \"media\"\n"),
        8,
        10,
        "`grants` must be an array of strings, found string \"media\"",
    );
    one_error(
        &with_head("[[steps]]\nid = \"a\"\nuses = \"std:pg-dump\"\nwith = [1]\n"),
        8,
        8,
        "`with` must be a table, found an array",
    );
    one_error(
        &with_head("[[steps]]\nid = \"a\"\nuses = \"std:pg-dump\"\nretry = \"3\"\n"),
        8,
        9,
        "`retry` must be an integer (attempts) or a table",
    );
    one_error(
        &with_head("[params]\nwhen = 2024-01-01\n[[steps]]\nid = \"a\"\nuses = \"std:pg-dump\"\n"),
        6,
        8,
        "`when` must be a string, integer, float or boolean, found datetime 2024-01-01",
    );
    one_error(
        &format!("steps = {{ id = \"a\" }}\n{HEAD}"),
        1,
        9,
        "`steps` must be an array of tables",
    );
}

#[test]
fn missing_required_keys_point_at_the_table() {
    let errs = errors(
        "[runbook]\nname = \"Bad Name\"\n\n[grants.media]\naccess = \"read\"\n\n[[steps]]\nuses = \"std:pg-dump\"\n",
    );
    let got: Vec<(usize, usize, &str)> = errs
        .iter()
        .map(|d| (d.line, d.column, d.message.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (1, 1, "missing `version` in [runbook]"),
            (1, 1, "missing `summary` in [runbook]"),
            (
                2,
                8,
                "runbook name \"Bad Name\" must match [a-z0-9][a-z0-9-_]*"
            ),
            (4, 1, "missing `path` in [grants.media]"),
            (7, 1, "missing `id` in step #1"),
        ],
        "{}",
        render(&errs)
    );
    let errs = errors("# nothing\n");
    assert_eq!(errs.len(), 2);
    assert!(errs.iter().all(|d| d.line == 0));
    assert_eq!(errs[0].message, "the runbook has no [runbook] table");
    assert_eq!(errs[1].message, "the runbook has no steps");
}

#[test]
fn set_overrides_and_unknown_set() {
    let src = with_head(
        "[params]\ndays = 7\nroot = \"/srv\"\n[[steps]]\nid = \"a\"\nuses = \"std:pg-dump\"\nwith = { d = \"${days}\" }\n",
    );
    let rb = load_with(&src, &[("days", "30")]).unwrap();
    assert_eq!(rb.params["days"], "30");
    assert_eq!(rb.steps[0].with["d"], json!(30));
    let rb = load(&src).unwrap();
    assert_eq!(rb.params["days"], "7");

    let errs = errors_with(&src, &[("dayz", "1"), ("days", "2")]);
    assert_eq!(errs.len(), 1);
    let d = &errs[0];
    assert_eq!((d.line, d.column), (0, 0));
    assert_eq!(
        d.message,
        "--set dayz=...: the runbook declares no param `dayz`"
    );
    assert_eq!(
        d.hint.as_deref(),
        Some(
            "did you mean `--set days=...`? declared params: `days`, `root` (this comes from the command line, not the file)"
        )
    );
    assert_eq!(
        d.to_string(),
        format!(
            "error: {}\n --> {FILE}\n  = help: {}",
            d.message,
            d.hint.as_ref().unwrap()
        )
    );
}

#[test]
fn required_param_without_value() {
    let src = with_head(
        "[params]\ndb = { required = true, doc = \"database\" }\n[[steps]]\nid = \"a\"\nuses = \"std:pg-dump\"\nwith = { db = \"${db}\" }\n",
    );
    let d = one_error(&src, 6, 1, "param `db` is required but has no value");
    assert_eq!(d.hint.as_deref(), Some("pass --set db=VALUE"));
    let rb = load_with(&src, &[("db", "main")]).unwrap();
    assert_eq!(rb.steps[0].with["db"], json!("main"));
    one_error(
        &with_head(
            "[params]\ndb = { required = true, default = \"x\" }\n[[steps]]\nid = \"a\"\nuses = \"std:pg-dump\"\n",
        ),
        6,
        19,
        "is required but also has a `default`",
    );
}

#[test]
fn unknown_param_in_interpolation() {
    let src = with_head(
        "[params]\nroot = \"/srv\"\n[grants.g]\npath = \"${rot}/x\"\naccess = \"read\"\n[[steps]]\nid = \"a\"\nuses = \"std:pg-dump\"\nwith = { list = [\"ok\", { deep = \"${nope}\" }] }\n",
    );
    let errs = errors(&src);
    assert_eq!(errs.len(), 2, "{}", render(&errs));
    assert_eq!((errs[0].line, errs[0].column), (8, 8));
    assert_eq!(
        errs[0].message,
        "`path` refers to `${rot}`, which is not a declared param"
    );
    assert_eq!(
        errs[0].hint.as_deref(),
        Some(
            "did you mean `${root}`? declared params: `root`; declare it under [params], or write `$$` for a literal `$`"
        )
    );
    // Caret under the whole string.
    assert_eq!(errs[0].snippet.as_ref().unwrap().2, "\"${rot}/x\"".len());
    assert_eq!((errs[1].line, errs[1].column), (13, 33));
    assert_eq!(
        errs[1].message,
        "`with.list[1].deep` refers to `${nope}`, which is not a declared param"
    );

    one_error(
        &with_head(
            "[commands.c]\nprogram = \"${bin\"\nchanges = [\"x\"]\n[[steps]]\nid = \"a\"\nuses = \"std:pg-dump\"\n",
        ),
        6,
        11,
        "`program` has a `${` without a closing `}`",
    );
}

#[test]
fn interpolation_in_program_and_escapes() {
    let rb = load(&with_head(
        "[params]\nbin = \"/usr/bin\"\n[commands.c]\nprogram = \"${bin}/c$$\"\nreads = [\"\"]\n[[steps]]\nid = \"a\"\nuses = \"std:pg-dump\"\nwith = { price = \"$$5 for ${bin}\", keep = \"a$b\" }\n",
    ))
    .unwrap();
    assert_eq!(rb.commands["c"].program, "/usr/bin/c$");
    assert_eq!(rb.commands["c"].reads, vec![Vec::<String>::new()]);
    assert!(rb.commands["c"].allows(Class::Read, &[]));
    assert_eq!(rb.steps[0].with["price"], json!("$5 for /usr/bin"));
    assert_eq!(rb.steps[0].with["keep"], json!("a$b"));
}

#[test]
fn duplicate_step_ids() {
    let src = with_head(
        "[[steps]]\nid = \"a\"\nuses = \"std:pg-dump\"\n\n[[steps]]\nid = \"a\"\nuses = \"std:pg-dump\"\n",
    );
    let d = one_error(&src, 10, 6, "duplicate step id `a`");
    assert_eq!(
        d.hint.as_deref(),
        Some("step ids must be unique; `a` is first used on line 6")
    );
}

#[test]
fn empty_and_invalid_step_ids() {
    one_error(
        &with_head("[[steps]]\nid = \"\"\nuses = \"std:pg-dump\"\n"),
        6,
        6,
        "step #1 has an empty `id`",
    );
    one_error(
        &with_head("[[steps]]\nid = \"Cull\"\nuses = \"std:pg-dump\"\n"),
        6,
        6,
        "step id \"Cull\" must match",
    );
}

#[test]
fn undeclared_grants_and_commands_in_steps() {
    let src = with_head(
        "[grants.media]\npath = \"/m\"\naccess = \"read\"\n[commands.systemctl]\nprogram = \"/bin/systemctl\"\nreads = [\"status\"]\n[[steps]]\nid = \"a\"\nuses = \"std:pg-dump\"\ngrants = [\"media\", \"medai\", \"db\"]\ncommands = [\"systemctl\", \"psql\"]\n[[steps]]\nid = \"b\"\nuses = \"std:pg-dump\"\ngrants = [\"media\", \"media\"]\n",
    );
    let errs = errors(&src);
    let got: Vec<(usize, usize, &str)> = errs
        .iter()
        .map(|d| (d.line, d.column, d.message.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (
                14,
                20,
                "step `a` uses grant `medai`, which the runbook does not declare"
            ),
            (
                14,
                29,
                "step `a` uses grant `db`, which the runbook does not declare"
            ),
            (
                15,
                26,
                "step `a` uses command `psql`, which the runbook does not declare"
            ),
            (19, 20, "step `b` lists grant `media` twice"),
        ],
        "{}",
        render(&errs)
    );
    assert_eq!(
        errs[0].hint.as_deref(),
        Some(
            "did you mean `media`? declare it: [grants.medai] with `path` and `access`, or remove it from the step"
        )
    );
    assert_eq!(
        errs[2].hint.as_deref(),
        Some(
            "declare it: [commands.psql] with `program` and `reads` or `changes`, or remove it from the step"
        )
    );
}

#[test]
fn unknown_std_step_lists_bundled() {
    let d = one_error(
        &with_head("[[steps]]\nid = \"a\"\nuses = \"std:cache-cul\"\n"),
        7,
        8,
        "step `a` uses `std:cache-cul`, which is not a bundled step",
    );
    assert_eq!(
        d.hint.as_deref(),
        Some("did you mean `std:cache-cull`? bundled steps: `cache-cull`, `http-check`, `pg-dump`")
    );
    let d = one_error(
        &with_head("[[steps]]\nid = \"a\"\nuses = \"pg-dump\"\n"),
        7,
        8,
        "`uses` must be \"std:NAME\", a path to a .wasm file or an oci:// reference, found \"pg-dump\"",
    );
    assert_eq!(d.hint.as_deref(), Some("did you mean `std:pg-dump`?"));
}

#[test]
fn sha256_pins() {
    one_error(
        &with_head("[[steps]]\nid = \"a\"\nuses = \"s.wasm\"\n"),
        7,
        8,
        "step `a` uses a component file but has no `sha256` pin",
    );
    let d = one_error(
        &with_head("[[steps]]\nid = \"a\"\nuses = \"s.wasm\"\nsha256 = \"abc\"\n"),
        8,
        10,
        "`sha256` must be 64 lowercase hex digits",
    );
    assert!(d.hint.unwrap().contains("3 characters"));
    let upper = SHA.to_uppercase();
    let d = one_error(
        &with_head(&format!(
            "[[steps]]\nid = \"a\"\nuses = \"s.wasm\"\nsha256 = \"{upper}\"\n"
        )),
        8,
        10,
        "`sha256` must be 64 lowercase hex digits",
    );
    assert_eq!(d.hint.as_deref(), Some("write it in lowercase"));
    one_error(
        &with_head(&format!(
            "[[steps]]\nid = \"a\"\nuses = \"std:pg-dump\"\nsha256 = \"{SHA}\"\n"
        )),
        8,
        10,
        "bundled `std:` steps are not pinned",
    );
}

#[test]
fn command_args_validation() {
    one_error(
        &with_head(
            "[commands.c]\nprogram = \"/bin/c\"\nreads = []\n[[steps]]\nid = \"a\"\nuses = \"std:pg-dump\"\n",
        ),
        7,
        9,
        "command `c` allows nothing: `reads` is empty",
    );
    one_error(
        &with_head(
            "[commands.c]\nprogram = \"/bin/c\"\n[[steps]]\nid = \"a\"\nuses = \"std:pg-dump\"\n",
        ),
        5,
        1,
        "command `c` allows nothing: it has neither `reads` nor `changes`",
    );
    one_error(
        &with_head(
            "[commands.c]\nprogram = \"/bin/c\"\nchanges = [\"ok\", 3]\n[[steps]]\nid = \"a\"\nuses = \"std:pg-dump\"\n",
        ),
        7,
        18,
        "each entry of `changes` must be an array of patterns or a string, found integer 3",
    );
    one_error(
        &with_head(
            "[commands.c]\nprogram = \"/bin/c\"\nreads = [[\"a\", 1]]\n[[steps]]\nid = \"a\"\nuses = \"std:pg-dump\"\n",
        ),
        7,
        16,
        "each entry of `reads` must be a string, found integer 1",
    );
    one_error(
        &with_head(
            "[commands.c]\nprogram = \"/bin/c\"\nchanges = [\"** x\"]\n[[steps]]\nid = \"a\"\nuses = \"std:pg-dump\"\n",
        ),
        7,
        12,
        "`**` can only be the last pattern",
    );
}

#[test]
fn the_old_args_key_says_how_to_write_it_now() {
    let errs = errors(&with_head(
        "[commands.c]\nprogram = \"/bin/c\"\nargs = [\"status\"]\n[[steps]]\nid = \"a\"\nuses = \"std:pg-dump\"\n",
    ));
    assert_eq!(errs.len(), 1, "{}", render(&errs));
    assert_eq!((errs[0].line, errs[0].column), (7, 1));
    assert!(
        errs[0]
            .message
            .starts_with("`args` is no longer allowed in [commands.c]"),
        "{}",
        errs[0].message
    );
    let hint = errs[0].hint.as_deref().unwrap();
    assert!(
        hint.contains("`reads = [...]`") && hint.contains("`changes = [...]`"),
        "{hint}"
    );
}

#[test]
fn users_groups_and_env_of_commands() {
    let cmd = |rest: &str| {
        with_head(&format!(
            "[commands.c]\nprogram = \"/bin/c\"\nchanges = [\"x\"]\n{rest}\n[[steps]]\nid = \"a\"\nuses = \"std:pg-dump\"\n"
        ))
    };
    one_error(
        &cmd("user = \"no-such-user-mend-test\""),
        8,
        8,
        "command `c` runs as user `no-such-user-mend-test`, which does not exist on this machine",
    );
    one_error(
        &cmd("user = \"nobody\"\ngroup = \"no-such-group-mend-test\""),
        9,
        9,
        "there is no group `no-such-group-mend-test` on this machine",
    );
    one_error(
        &cmd("group = \"root\""),
        8,
        9,
        "command `c` names a `group` but no `user`",
    );
    one_error(
        &cmd("env = { MEND_GRANT_DATA = \"/x\" }"),
        8,
        9,
        "`env` of command `c` sets MEND_GRANT_DATA, which mend sets itself",
    );
    one_error(
        &cmd("env = { \"1X\" = \"y\" }"),
        8,
        9,
        "\"1X\" is not a variable name",
    );
    one_error(&cmd("env = { X = 1 }"), 8, 13, "`env.X` must be a string");
    // lint: a user this machine lacks is a warning, not an error.
    let rb = Runbook::parse_source(
        Path::new(FILE),
        cmd("user = \"no-such-user-mend-test\""),
        &[],
        BUNDLED,
        true,
    )
    .unwrap();
    assert_eq!(rb.warnings.len(), 1);
    assert!(rb.commands["c"].run_as.as_ref().unwrap().account.is_none());
}

#[test]
fn string_args_split_on_whitespace() {
    let rb = load(&with_head(
        "[commands.c]\nprogram = \"/bin/c\"\nreads = [\"  status\\tunit-?  **\", [\"a b\"]]\n[[steps]]\nid = \"a\"\nuses = \"std:pg-dump\"\n",
    ))
    .unwrap();
    let c = &rb.commands["c"];
    let r = Class::Read;
    assert_eq!(c.reads[0], ["status", "unit-?", "**"]);
    assert_eq!(c.reads[1], ["a b"]);
    assert!(c.allows(r, &["status".into(), "unit-1".into()]));
    assert!(c.allows(r, &["status".into(), "unit-1".into(), "--now".into()]));
    assert!(!c.allows(r, &["status".into(), "unit-10".into()]));
    assert!(c.allows(r, &["a b".into()]));
    assert!(!c.allows(r, &["a".into(), "b".into()]));
}

#[test]
fn durations_sizes_and_retry_in_steps() {
    let step = |extra: &str| {
        with_head(&format!(
            "[[steps]]\nid = \"a\"\nuses = \"std:pg-dump\"\n{extra}\n"
        ))
    };
    let rb = load(&step(
        "timeout = \"250ms\"\nmemory = \"1GiB\"\nretry = { attempts = 2 }",
    ))
    .unwrap();
    assert_eq!(rb.steps[0].timeout, Duration::from_millis(250));
    assert_eq!(rb.steps[0].memory, 1 << 30);
    assert_eq!(rb.steps[0].retry.attempts, 2);
    assert_eq!(rb.steps[0].retry.delay, Duration::from_secs(1));
    let rb = load(&step("timeout = \"1h\"\nretry = { delay = \"0s\" }")).unwrap();
    assert_eq!(rb.steps[0].timeout, Duration::from_secs(3600));
    assert_eq!(rb.steps[0].retry.delay, Duration::ZERO);

    one_error(
        &step("timeout = \"90\""),
        8,
        11,
        "`timeout` is not a duration: `90` has no unit",
    );
    one_error(
        &step("timeout = 0"),
        8,
        11,
        "`timeout` must be longer than zero",
    );
    one_error(
        &step("timeout = -5"),
        8,
        11,
        "`timeout` must not be negative",
    );
    one_error(
        &step("timeout = 1.5"),
        8,
        11,
        "`timeout` must be a duration",
    );
    one_error(&step("memory = \"256MB\""), 8, 10, "binary units");
    one_error(
        &step("memory = 0"),
        8,
        10,
        "`memory` must be more than zero",
    );
    one_error(
        &step("retry = 0"),
        8,
        9,
        "`retry` must be at least 1, found 0",
    );
    one_error(
        &step("retry = { attempts = 2, delay = \"soon\" }"),
        8,
        33,
        "`retry.delay` is not a duration",
    );
}

#[test]
fn with_values_become_json() {
    let rb = load(&with_head(
        "[params]\nn = 3\n[[steps]]\nid = \"a\"\nuses = \"std:pg-dump\"\n[steps.with]\nhex = 0x10\nlist = [[\"${n}\"], []]\nt.u = \"${n}${n}\"\nd = 07:32:00\n",
    ))
    .unwrap();
    let s = &rb.steps[0];
    assert_eq!(
        serde_json::Value::Object(s.with.clone()),
        json!({"hex": 16, "list": [[3], []], "t": {"u": "33"}, "d": "07:32:00"})
    );
    assert_eq!(
        &rb.source[s.with_span.start..s.with_span.end],
        "[steps.with]"
    );
    one_error(
        &with_head("[[steps]]\nid = \"a\"\nuses = \"std:pg-dump\"\nwith = { x = nan }\n"),
        8,
        14,
        "`with.x` is nan, which steps cannot receive",
    );
}

#[test]
fn rehearsal_stand_ins() {
    let base = "[commands.c]\nprogram = \"/bin/c\"\nchanges = [\"x\"]\n[[steps]]\nid = \"a\"\nuses = \"std:pg-dump\"\n";
    let rb = load(&with_head(&format!(
        "{base}[rehearsal.commands.c]\nprogram = \"/bin/true\"\n"
    )))
    .unwrap();
    assert_eq!(
        rb.rehearsal_commands["c"],
        StandIn {
            program: "/bin/true".into(),
            args: None
        }
    );
    one_error(
        &with_head(&format!(
            "{base}[rehearsal.commands.d]\nprogram = \"/bin/true\"\n"
        )),
        11,
        21,
        "rehearsal stand-in for command `d`, which the runbook does not declare",
    );
    one_error(
        &with_head(&format!("{base}[rehearsal.commands.c]\nargs = [\"y\"]\n")),
        11,
        1,
        "missing `program` in [rehearsal.commands.c]",
    );
    one_error(
        &with_head(&format!("{base}[rehearsal]\nprogram = \"/bin/true\"\n")),
        12,
        1,
        "unknown key `program` in [rehearsal]",
    );
    one_error(
        &with_head(&format!(
            "{base}[rehearsal.commands.c]\nprogram = \"/bin/true\"\nargs = [\"-x${{args}}\"]\n"
        )),
        13,
        9,
        "`${args}` must be an entry of its own",
    );
}

#[test]
fn many_errors_are_collected_in_source_order() {
    let src = with_head(
        "[grants.g]\npath = \"/g\"\naccess = \"append\"\n[[steps]]\nid = \"a\"\nuses = \"std:nope\"\ngrants = [\"x\"]\n[[steps]]\nid = \"b\"\nuses = \"std:pg-dump\"\ntimeout = \"forever\"\n",
    );
    let errs = errors(&src);
    let lines: Vec<usize> = errs.iter().map(|d| d.line).collect();
    assert_eq!(lines, [7, 10, 11, 15], "{}", render(&errs));
}

#[test]
fn diagnostics_serialize_without_snippet() {
    let d = one_error(
        &with_head("[[steps]]\nid = \"a\"\nuses = \"std:nope\"\n"),
        7,
        8,
        "not a bundled step",
    );
    let v = serde_json::to_value(&d).unwrap();
    assert_eq!(v["file"], json!(FILE));
    assert_eq!(v["line"], json!(7));
    assert_eq!(v["column"], json!(8));
    assert!(v.get("snippet").is_none());
}

#[test]
fn a_whole_value_reference_keeps_the_params_type() {
    let src = with_head(
        "[params]\ndays = 7\nratio = 1.5\nquiet = true\nname = \"7\"\n\n[[steps]]\nid = \"s\"\nuses = \"std:cache-cull\"\nwith = { a = \"${days}\", b = [\"${days}\", { c = \"${ratio}\" }], d = \"${quiet}\", e = \"${name}\", f = \"x${days}\" }\n",
    );
    let rb = load(&src).unwrap();
    let with = serde_json::Value::Object(rb.steps[0].with.clone());
    assert_eq!(
        with,
        serde_json::json!({"a": 7, "b": [7, {"c": 1.5}], "d": true, "e": "7", "f": "x7"})
    );
    let rb = load_with(&src, &[("days", "30")]).unwrap();
    assert_eq!(rb.steps[0].with["a"], serde_json::json!(30));
    let errs = errors_with(&src, &[("days", "a week")]);
    assert!(
        render(&errs).contains("whose default is of type integer, but its value is \"a week\""),
        "{}",
        render(&errs)
    );
}

fn grants_and_a_step(grants: &[(&str, &str, &str)]) -> String {
    let mut src = HEAD.to_string();
    for (name, path, access) in grants {
        src.push_str(&format!(
            "[grants.{name}]\npath = \"{path}\"\naccess = \"{access}\"\n"
        ));
    }
    src.push_str("[[steps]]\nid = \"s\"\nuses = \"std:cache-cull\"\n");
    src
}

#[test]
fn grants_that_nest_are_refused_when_one_is_written() {
    for (a, b, overlap) in [
        ("/srv/m/system", "/srv/m/system/cache", true),
        ("/srv/m/system", "/srv/m/system", true),
        ("/srv/m/system/", "/srv/m/./system", true),
        ("/srv/m/system", "/srv/m/x/../system/cache", true),
        ("/srv/m/system", "/srv/m/systemd", false),
        ("/srv/m/a", "/srv/m/b", false),
    ] {
        for (access_a, access_b) in [
            ("write", "read"),
            ("read", "write"),
            ("write", "write"),
            ("read", "read"),
        ] {
            let src = grants_and_a_step(&[("one", a, access_a), ("two", b, access_b)]);
            let refused = overlap && (access_a, access_b) != ("read", "read");
            match load(&src) {
                Ok(_) => assert!(!refused, "{a} ({access_a}) and {b} ({access_b}) accepted"),
                Err(errs) => {
                    assert!(refused, "{a} and {b}: {}", render(&errs));
                    assert_eq!(errs.len(), 1, "{}", render(&errs));
                    // At the later grant, naming both and their access.
                    assert_eq!(errs[0].line, 8, "{}", errs[0]);
                    assert!(
                        errs[0].message.starts_with(&format!(
                            "grants `one` ({access_a}) and `two` ({access_b}) overlap"
                        )),
                        "{}",
                        errs[0]
                    );
                }
            }
        }
    }
}

#[test]
fn params_in_both_forms_of_command_args_are_matched_literally() {
    let src = with_head(
        r#"[params]
unit = "mastodon-*"
[commands.systemctl]
program = "/usr/bin/systemctl"
changes = [["restart", "${unit}"], "status ${unit}"]
[[steps]]
id = "s"
uses = "std:cache-cull"
commands = ["systemctl"]
"#,
    );
    let rb = load(&src).unwrap_or_else(|e| panic!("{}", render(&e)));
    let c = &rb.commands["systemctl"];
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    for verb in ["restart", "status"] {
        assert!(
            c.allows(Class::Change, &args(&[verb, "mastodon-*"])),
            "{verb}"
        );
        // The param's `*` is no wildcard.
        assert!(
            !c.allows(Class::Change, &args(&[verb, "mastodon-web"])),
            "{verb}"
        );
    }
    let bad = with_head(
        "[commands.c]\nprogram = \"/bin/c\"\nreads = [\"status ${nope}\"]\n[[steps]]\nid = \"s\"\nuses = \"std:cache-cull\"\n",
    );
    one_error(&bad, 7, 10, "`${nope}`");
}

/// Every shipped runbook loads with its own defaults (and the real bundled
/// steps): a default that breaks a rule (grants that nest, say) is caught
/// here, not by an operator.
#[test]
fn shipped_runbooks_load_with_their_defaults() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let root = repo.join("runbooks");
    // The bundled steps' names: the crates in steps/ (as the engine's build
    // script finds them).
    let names: Vec<String> = std::fs::read_dir(repo.join("steps"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let bundled: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut n = 0;
    for dir in std::fs::read_dir(&root).unwrap() {
        for file in std::fs::read_dir(dir.unwrap().path()).unwrap() {
            let path = file.unwrap().path();
            let source = std::fs::read_to_string(&path).unwrap();
            // Leniently: the users they name need not exist here.
            if let Err(e) = Runbook::parse_source(&path, source, &[], &bundled, true) {
                panic!("{}", render(&e));
            }
            n += 1;
        }
    }
    assert!(n >= 7, "{n} runbooks");
}
