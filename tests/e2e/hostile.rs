//! Steps that misbehave: write during plan, loop forever, allocate 1 GiB,
//! propose paths outside their grants. Each is stopped with a message that
//! names the step and the rule, and nothing changes.

use crate::common::*;

fn one_step(f: &Fixture, guest: &str, extra: &str) -> std::path::PathBuf {
    populate(f);
    f.runbook(
        "hostile.toml",
        &format!(
            r#"
[runbook]
name = "hostile"
version = "1.0.0"
summary = "a misbehaving step after a good one"

[grants.data]
path = "{{root}}/data"
access = "write"

[grants.src]
path = "{{root}}/src"
access = "read"

[[steps]]
id = "good"
{{guest:scripted}}
grants = ["data"]
with = {{ actions = [{{ create_dir = "data/made-by-good" }}] }}

[[steps]]
id = "bad"
{{guest:{guest}}}
grants = ["data", "src"]
{extra}
"#
        ),
    )
}

#[test]
fn a_write_during_plan_is_denied() {
    let f = Fixture::new();
    let rb = one_step(&f, "write-in-plan", "with = { grant = \"data\" }");
    let before = tree(&f.path("data"), true);
    let ran = f.mend(&["plan", rb.to_str().unwrap()]);
    assert_eq!(ran.code, 1, "{}", ran.text());
    assert!(
        ran.stdout.contains("step `bad` cannot plan: write denied"),
        "{}",
        ran.stdout
    );
    assert!(!f.path("data/planted.txt").exists());
    assert_same(&before, &tree(&f.path("data"), true), "after the attempt");
}

#[test]
fn an_infinite_loop_is_killed_at_its_deadline_and_the_run_rolled_back() {
    let f = Fixture::new();
    let rb = one_step(&f, "spin", "timeout = \"1s\"");
    let before = tree(&f.path("data"), true);
    let start = std::time::Instant::now();
    let ran = f.mend(&["run", rb.to_str().unwrap()]);
    assert_eq!(ran.code, 1, "{}", ran.text());
    assert!(
        ran.stdout
            .contains("step `bad` was killed at its deadline of 1 s (runbook `timeout`)"),
        "{}",
        ran.stdout
    );
    assert!(ran.stdout.contains("1 action undone"), "{}", ran.stdout);
    assert_same(&before, &tree(&f.path("data"), true), "after the rollback");
    assert!(start.elapsed().as_secs() < 30);
}

#[test]
fn a_huge_allocation_is_refused_at_the_memory_limit() {
    let f = Fixture::new();
    let rb = one_step(&f, "hog", "memory = \"64MiB\"");
    let before = tree(&f.path("data"), true);
    let ran = f.mend(&["run", rb.to_str().unwrap()]);
    assert_eq!(ran.code, 1, "{}", ran.text());
    assert!(
        ran.stdout.contains("step `bad` asked for"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout
            .contains("was stopped at its limit of 67.1 MB (runbook `memory`)"),
        "{}",
        ran.stdout
    );
    assert_same(&before, &tree(&f.path("data"), true), "after the rollback");
}

fn refused(action: &str, expect: &str) {
    let f = Fixture::new();
    std::fs::create_dir_all(f.path("outside")).unwrap();
    f.write("outside/canary", "canary\n");
    let rb = one_step(
        &f,
        "scripted",
        &format!("with = {{ actions = [{{ create_dir = \"data/first\" }}, {action}] }}"),
    );
    std::os::unix::fs::symlink(f.path("outside"), f.path("data/escape")).unwrap();
    let before = tree(f.dir.path(), true);
    let ran = f.mend(&["run", rb.to_str().unwrap()]);
    assert_eq!(ran.code, 1, "{action}: {}", ran.text());
    assert!(
        ran.stdout.contains(expect),
        "{action}: expected `{expect}` in:\n{}",
        ran.stdout
    );
    // The whole plan was refused: not even the step's first action ran.
    let after = tree(f.dir.path(), true);
    let changed: Vec<_> = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(v) && !k.starts_with("./state") && *k != ".")
        .collect();
    assert!(changed.is_empty(), "{action}: changed {changed:?}");
    assert_eq!(
        std::fs::read_to_string(f.path("outside/canary")).unwrap(),
        "canary\n"
    );
}

#[test]
fn paths_outside_the_grants_are_refused_before_anything_is_done() {
    refused(
        "{ remove = \"data/../outside/canary\" }",
        "contains `..`; paths may not climb out of their grant",
    );
    refused(
        "{ remove = \"/etc/passwd\" }",
        "path `/etc/passwd` is absolute",
    );
    refused(
        "{ remove = \"data/escape/canary\" }",
        "path `data/escape/canary` leaves grant `data` through a symlink",
    );
    refused(
        "{ write_file = [\"data/escape/canary\", \"x\"] }",
        "leaves grant `data` through a symlink",
    );
    refused(
        "{ remove = \"src/release/app.txt\" }",
        "grant `src`, which is read-only",
    );
    refused(
        "{ remove = \"etc/passwd\" }",
        "grant `etc`, which this step does not hold",
    );
}
