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
fn a_pin_that_does_not_match() {
    let (path, _) = guest("noop");
    let wrong = "0".repeat(64);
    bad(
        &format!("{HEAD}\n[[steps]]\nid = \"s\"\nuses = \"{path}\"\nsha256 = \"{wrong}\"\n"),
        &["bad.toml:", "but the runbook pins 0000", "sha256 = \""],
    );
}
