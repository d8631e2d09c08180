//! Bad runbooks: each a clear error with file:line:column, exit code 2,
//! nothing run and nothing written.

use crate::common::*;

fn bad(text: &str, expect: &[&str]) {
    let f = Fixture::new();
    populate(&f);
    let rb = f.runbook("bad.toml", text);
    let before = tree(f.dir.path(), true);
    for cmd in ["plan", "run"] {
        let ran = f.mend(&[cmd, rb.to_str().unwrap()]);
        assert_eq!(ran.code, 2, "{cmd}: {}", ran.text());
        for e in expect {
            assert!(
                ran.stderr.contains(e),
                "{cmd}: expected `{e}` in:\n{}",
                ran.stderr
            );
        }
        assert!(
            ran.stderr.contains("nothing was run and nothing changed"),
            "{}",
            ran.stderr
        );
    }
    assert_same(&before, &tree(f.dir.path(), true), "after a bad runbook");
    assert!(!f.state().exists());
}

const HEAD: &str = "[runbook]\nname = \"bad\"\nversion = \"1\"\nsummary = \"s\"\n\n[grants.data]\npath = \"{root}/data\"\naccess = \"write\"\n";

#[test]
fn malformed_toml() {
    bad("[runbook\nname = 1\n", &["bad.toml:1:"]);
}

#[test]
fn unknown_key() {
    bad(
        &format!("{HEAD}\n[[steps]]\nid = \"s\"\nuses = \"std:cache-cull\"\ngrnats = [\"data\"]\n"),
        &["bad.toml:13:1", "did you mean `grants`?"],
    );
}

#[test]
fn undeclared_grant() {
    bad(
        &format!(
            "{HEAD}\n[[steps]]\nid = \"s\"\nuses = \"std:cache-cull\"\ngrants = [\"media\"]\n"
        ),
        &[
            "bad.toml:13:11",
            "uses grant `media`, which the runbook does not declare",
        ],
    );
}

#[test]
fn missing_param() {
    bad(
        &format!("{HEAD}\n[params]\nroot = {{ required = true }}\n"),
        &["bad.toml:11:1", "--set root="],
    );
}

#[test]
fn unknown_step_parameter_points_at_its_line() {
    bad(
        &format!(
            "{HEAD}\n[[steps]]\nid = \"s\"\nuses = \"std:cache-cull\"\ngrants = [\"data\"]\nwith = {{ path = \"data\", dayz = 3 }}\n"
        ),
        &[
            "bad.toml:14:32",
            "takes no parameter `dayz`",
            "its parameters are: path, days",
        ],
    );
}

#[test]
pub(crate) fn a_pin_that_does_not_match() {
    let (path, _) = guest("noop");
    let wrong = "0".repeat(64);
    bad(
        &format!("{HEAD}\n[[steps]]\nid = \"s\"\nuses = \"{path}\"\nsha256 = \"{wrong}\"\n"),
        &["bad.toml:", "but the runbook pins 0000", "sha256 = \""],
    );
}

/// Every runbook in tests/e2e/invalid/ is refused with exactly the text in
/// its `.stderr` file, by lint, plan and run alike, before anything is
/// instantiated or written (no state directory appears).
#[test]
fn invalid_runbooks_match_their_golden_errors() {
    let dir = std::path::PathBuf::from(repo("tests/e2e/invalid"));
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 12, "only {} cases", cases.len());
    for case in cases {
        let name = case.file_name().unwrap().to_str().unwrap();
        let f = Fixture::new();
        let mut first = None;
        for cmd in ["lint", "plan", "run"] {
            let out = std::process::Command::new(mend_bin())
                .current_dir(&dir)
                .args(["--state-dir", f.state().to_str().unwrap()])
                .args(["--cache-dir", shared_cache().to_str().unwrap()])
                .args([cmd, name])
                .env("NO_COLOR", "1")
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            assert_eq!(out.status.code(), Some(2), "{cmd} {name}: {stderr}");
            assert!(out.stdout.is_empty(), "{cmd} {name} printed on stdout");
            match &first {
                None => {
                    golden(
                        &format!("tests/e2e/invalid/{}", name.replace(".toml", ".stderr")),
                        &stderr,
                    );
                    first = Some(stderr);
                }
                Some(text) => assert_eq!(&stderr, text, "{cmd} {name} differs from lint"),
            }
        }
        assert!(!f.state().exists(), "{name}: a state directory appeared");
    }
}

#[test]
fn a_command_user_that_does_not_exist_is_refused_with_its_line() {
    bad(
        r#"[runbook]
name = "as-user"
version = "1.0.0"
summary = "migrate as the app's user"

[commands.rails]
program = "/bin/true"
user = "no-such-user-mend"
changes = [["db:migrate"]]

[[steps]]
id = "noop"
{guest:noop}
"#,
        &[
            "error: command `rails` runs as user `no-such-user-mend`, which does not exist on this machine",
            "bad.toml:8:8",
            "commands never fall back to root",
        ],
    );
}

/// On a laptop or a CI job: the server's directories and users are not
/// there. lint says so, once each, and checks everything else.
#[test]
fn lint_warns_per_missing_grant_and_user_and_checks_the_rest() {
    let f = Fixture::new();
    let upgrade = repo("runbooks/mastodon/upgrade.toml");
    let sets = [
        "--set",
        "home=/nonexistent/mend-test/home",
        "--set",
        "releases=/nonexistent/mend-test/releases",
        "--set",
        "backups=/nonexistent/mend-test/backups",
        "--set",
        "mastodon_user=no-such-user-mend",
    ];
    let mut args = vec!["lint", upgrade.as_str()];
    args.extend(sets);
    let ran = f.mend(&args);
    assert_eq!(ran.code, 0, "{}", ran.text());
    for grant in ["home", "releases", "backups"] {
        assert_eq!(
            ran.stderr
                .matches(&format!("warning: grant `{grant}`: /nonexistent/mend-test/{grant} is not a directory on this machine"))
                .count(),
            1,
            "{grant}: {}",
            ran.stderr
        );
    }
    assert!(
        ran.stderr.contains("warning: command `migrate` runs as user `no-such-user-mend`, which does not exist on this machine"),
        "{}",
        ran.stderr
    );
    assert!(ran.stdout.contains("upgrade.toml: ok"), "{}", ran.stdout);
    // Everything else is still checked: a bad value fails the lint.
    args.extend(["--set", "health_delay=soon"]);
    let ran = f.mend(&args);
    assert_eq!(ran.code, 2, "{}", ran.text());
    assert!(
        ran.stderr.contains("`retry.delay` is not a duration"),
        "{}",
        ran.stderr
    );
    // plan and run refuse what lint only warned about.
    let mut args = vec!["plan", upgrade.as_str()];
    args.extend(sets);
    let ran = f.mend(&args);
    assert_eq!(ran.code, 2, "{}", ran.text());
}
