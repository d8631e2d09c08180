//! The dry-run holds for commands too: a step that asks `probe` for a change
//! is refused, a read that writes is stopped by Landlock, `@GRANT/path`
//! arguments that lead out of their grant are refused before the first
//! action, and commands run as their user, in a clean environment, in a
//! process group that ends with them at the deadline.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

use crate::common::*;

/// `ctl is-active UNIT` reads; `ctl stop UNIT` leaves a marker beside the
/// grant (the world a stop changes).
fn ctl(f: &Fixture) -> String {
    let p = f.write(
        "bin/ctl",
        &format!(
            "#!/bin/sh\ncase \"$1\" in\n  is-active) exit 0 ;;\n  stop) echo stopped > '{}/stopped-'\"$2\" ;;\n  *) exit 2 ;;\nesac\n",
            f.dir.path().display()
        ),
    );
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p.display().to_string()
}

fn probing(f: &Fixture, commands: &str, probe: &str, actions: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(f.path("data")).unwrap();
    f.runbook(
        "probe.toml",
        &format!(
            r#"
[runbook]
name = "probe"
version = "1.0.0"
summary = "a step that probes"

[grants.data]
path = "{{root}}/data"
access = "write"

{commands}

[[steps]]
id = "hostile"
{{guest:scripted}}
grants = ["data"]
commands = ["ctl"]
with = {{ probe = [{probe}], actions = [{actions}] }}
"#
        ),
    )
}

#[test]
fn a_change_asked_of_probe_is_refused_and_runs_only_as_an_exec_action() {
    let f = Fixture::new();
    let program = ctl(&f);
    let commands = format!(
        "[commands.ctl]\nprogram = \"{program}\"\nreads = [[\"is-active\", \"*\"]]\nchanges = [[\"stop\", \"*\"]]"
    );
    let rb = probing(
        &f,
        &commands,
        r#"["ctl", ["is-active", "web"]], ["ctl", ["stop", "web"]]"#,
        "",
    );
    let ran = f.mend(&["plan", rb.to_str().unwrap()]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    assert!(
        ran.stdout.contains("probe ctl stop web: error: denied: step `hostile` asked probe to run `ctl stop web`, and `stop` is a change (in `changes` of [commands.ctl]): only an exec action of the plan may run it"),
        "{}",
        ran.stdout
    );
    // The read ran, and the plan says so.
    assert!(
        ran.stdout.contains("probe ctl is-active web: exit 0"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout
            .contains("read while planning: ctl is-active web (exit 0)"),
        "{}",
        ran.stdout
    );
    assert!(
        !f.path("stopped-web").exists(),
        "mend plan ran a change through probe"
    );

    // The same vector as an exec action of the plan: shown, then run.
    let rb = probing(
        &f,
        &commands,
        r#"["ctl", ["stop", "web"]]"#,
        r#"{ exec = ["ctl", ["stop", "web"]] }"#,
    );
    let plan = f.mend(&["plan", rb.to_str().unwrap()]);
    assert_eq!(plan.code, 0, "{}", plan.text());
    assert!(
        plan.stdout
            .contains("commands it will run (1):\n    ctl stop web\n"),
        "{}",
        plan.stdout
    );
    assert!(!f.path("stopped-web").exists());
    let ran = f.mend(&["run", rb.to_str().unwrap()]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    assert_eq!(
        std::fs::read_to_string(f.path("stopped-web")).unwrap(),
        "stopped\n"
    );

    // And a read is never an exec action.
    let rb = probing(
        &f,
        &commands,
        "",
        r#"{ exec = ["ctl", ["is-active", "web"]] }"#,
    );
    let plan = f.mend(&["plan", rb.to_str().unwrap()]);
    assert_eq!(plan.code, 1, "{}", plan.text());
    assert!(
        plan.stdout.contains("step `hostile` plans `exec ctl is-active web`, but `is-active` is a read (in `reads` of [commands.ctl]): an exec action runs only `changes`"),
        "{}",
        plan.stdout
    );
}

#[test]
fn a_read_that_writes_is_stopped_by_landlock_and_changes_nothing() {
    let f = Fixture::new();
    f.write("data/kept.txt", "kept\n");
    f.write("outside/canary", "canary\n");
    let root = f.dir.path().display().to_string();
    // Each try, and what it got: create, write, truncate, remove, rename,
    // make a directory, link.
    let script = format!(
        "cd '{root}'; \
         echo new > data/new.txt && echo created; \
         echo more >> data/kept.txt && echo appended; \
         true > outside/canary && echo truncated; \
         rm data/kept.txt && echo removed; \
         mv data/kept.txt data/moved.txt && echo renamed; \
         mkdir data/dir && echo made; \
         ln -s kept.txt data/link && echo linked; \
         cat data/kept.txt; echo to-null > /dev/null && echo null-ok"
    );
    let commands = "[commands.ctl]\nprogram = \"/bin/sh\"\nreads = [[\"-c\", \"**\"]]";
    let rb = probing(
        &f,
        commands,
        &format!("[\"ctl\", [\"-c\", {script:?}]]"),
        "",
    );
    let before = tree(f.dir.path(), true);
    let ran = f.mend(&["plan", rb.to_str().unwrap()]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    let line = ran
        .stdout
        .lines()
        .find(|l| l.contains("probe ctl -c"))
        .unwrap_or_else(|| panic!("{}", ran.stdout));
    // It read, and wrote to /dev/null; nothing else: none of the echoes
    // after a write ran.
    assert!(
        line.contains(r#": exit 0, stdout "kept\nnull-ok\n", stderr"#),
        "{line}"
    );
    let stderr = line.split(", stderr ").nth(1).unwrap();
    assert_eq!(stderr.matches("Permission denied").count(), 7, "{stderr}");
    let after = tree(f.dir.path(), true);
    let changed: Vec<_> = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(v) && !k.starts_with("./state") && *k != ".")
        .collect();
    assert!(changed.is_empty(), "a read changed {changed:?}");
    assert!(
        !ran.stdout.contains("not confined"),
        "this kernel has Landlock: {}",
        ran.stdout
    );

    // Where the kernel lacks Landlock, the plan says so, once.
    let ran = f.mend_env(&["plan", rb.to_str().unwrap()], &[("MEND_LANDLOCK", "off")]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    assert_eq!(
        ran.stdout
            .matches("note: read commands are not confined on this machine (MEND_LANDLOCK=off): a read that writes is not stopped")
            .count(),
        1,
        "{}",
        ran.stdout
    );
}

/// Links out of the grant, a chain of them, and `..`, beside a canary.
fn plant(f: &Fixture) {
    f.write("data/a.txt", "alpha\n");
    f.write("outside/canary", "secret canary\n");
    let link = |target: &str, name: &str| {
        std::os::unix::fs::symlink(target, f.path(name)).unwrap();
    };
    link(
        &f.path("outside/canary").display().to_string(),
        "data/leaf-link",
    );
    link("chain-2", "data/chain-1");
    link("../outside/canary", "data/chain-2");
    link("a.txt", "data/inside-link");
}

fn canary(f: &Fixture) -> (String, i64, u64) {
    let p = f.path("outside/canary");
    let md = std::fs::metadata(&p).unwrap();
    (
        std::fs::read_to_string(&p).unwrap(),
        md.mtime_nsec() + md.mtime() * 1_000_000_000,
        md.ino(),
    )
}

#[test]
fn at_arguments_that_leave_their_grant_are_refused_before_the_first_action() {
    let touch = "[commands.ctl]\nprogram = \"/usr/bin/touch\"\nchanges = [[\"@data/*\"]]";
    for (arg, rule) in [
        (
            "@data/leaf-link",
            "path `data/leaf-link` leaves grant `data` through a symlink",
        ),
        (
            "@data/chain-1",
            "path `data/chain-1` leaves grant `data` through a symlink",
        ),
        (
            "@data/../outside/canary",
            "path `data/../outside/canary` contains `..`",
        ),
    ] {
        let f = Fixture::new();
        plant(&f);
        let rb = probing(
            &f,
            touch,
            "",
            &format!(
                r#"{{ exec = ["ctl", ["@data/touched-first"]] }}, {{ exec = ["ctl", ["{arg}"]] }}"#
            ),
        );
        let before = canary(&f);
        let ran = f.mend(&["run", rb.to_str().unwrap()]);
        assert_eq!(ran.code, 1, "{arg}: {}", ran.text());
        assert!(
            ran.stdout.contains(&format!(
                "step `hostile`: `ctl {arg}`: argument `{arg}`: {rule}"
            )),
            "{arg}: {}",
            ran.stdout
        );
        assert!(
            !f.path("data/touched-first").exists(),
            "{arg}: the plan's first exec ran before the refusal"
        );
        assert_eq!(canary(&f), before, "{arg}: the canary changed");
    }

    // A link that stays inside is followed as the program would.
    let f = Fixture::new();
    plant(&f);
    let rb = probing(
        &f,
        touch,
        "",
        r#"{ exec = ["ctl", ["@data/inside-link"]] }"#,
    );
    let ran = f.mend(&["run", rb.to_str().unwrap()]);
    assert_eq!(ran.code, 0, "{}", ran.text());

    // A probe gets no outside content either.
    let cat = "[commands.ctl]\nprogram = \"/bin/cat\"\nreads = [[\"@data/*\"]]";
    for arg in [
        "@data/leaf-link",
        "@data/chain-1",
        "@data/../outside/canary",
    ] {
        let f = Fixture::new();
        plant(&f);
        let rb = probing(&f, cat, &format!(r#"["ctl", ["{arg}"]]"#), "");
        let ran = f.mend(&["plan", rb.to_str().unwrap()]);
        assert_eq!(ran.code, 0, "{}", ran.text());
        assert!(!ran.text().contains("secret"), "{arg}: {}", ran.text());
        assert!(
            ran.stdout
                .contains(&format!("probe ctl {arg}: error: denied: step `hostile`")),
            "{arg}: {}",
            ran.stdout
        );
    }
}

#[test]
fn a_command_runs_as_its_user_with_only_the_documented_environment() {
    let f = Fixture::new();
    // Traversable, but the file is root's: only its owner may write it.
    std::fs::set_permissions(f.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let owned = f.write("data/root-owned.txt", "root's\n");
    std::fs::set_permissions(f.path("data"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&owned, std::fs::Permissions::from_mode(0o644)).unwrap();
    let rb = f.runbook(
        "as-user.toml",
        r#"
[runbook]
name = "as-user"
version = "1.0.0"
summary = "commands as nobody, in a clean environment"

[params]
greeting = "hello"

[grants.data]
path = "{root}/data"
access = "write"

[commands.id]
program = "/usr/bin/id"
user = "nobody"
reads = [["-u"], ["-g"], ["-G"]]

[commands.env]
program = "/usr/bin/env"
reads = [[]]
env = { GREETING = "${greeting} world" }

[commands.write]
program = "/bin/sh"
user = "nobody"
changes = [["-c", "**"]]

[[steps]]
id = "look"
{guest:scripted}
grants = ["data"]
commands = ["id", "env"]
with = { probe = [["id", ["-u"]], ["id", ["-g"]], ["id", ["-G"]], ["env", []]] }

[[steps]]
id = "write"
{guest:scripted}
grants = ["data"]
commands = ["write"]
with = { actions = [{ exec = ["write", ["-c", "echo nobody was here >> \"$1\"", "sh", "@data/root-owned.txt"]] }] }
"#,
    );
    let ran = f.mend_env(
        &["plan", rb.to_str().unwrap()],
        &[
            ("SSH_AUTH_SOCK", "/tmp/agent.sock"),
            ("AWS_SECRET_ACCESS_KEY", "do-not-leak"),
        ],
    );
    assert_eq!(ran.code, 0, "{}", ran.text());
    for (flag, want) in [("-u", "65534"), ("-g", "65534"), ("-G", "65534")] {
        assert!(
            ran.stdout
                .contains(&format!("probe id {flag}: exit 0, stdout \"{want}\\n\"")),
            "id {flag}: {}",
            ran.stdout
        );
    }
    let line = ran
        .stdout
        .lines()
        .find(|l| l.contains("probe env : exit 0"))
        .unwrap_or_else(|| panic!("{}", ran.stdout));
    let stdout = line
        .split("stdout \"")
        .nth(1)
        .unwrap()
        .split("\", stderr")
        .next()
        .unwrap();
    // The command's own scratch directory (a new one each time) is one
    // path, named three ways.
    let scratch = stdout
        .split("\\n")
        .find_map(|l| l.strip_prefix("MEND_SCRATCH="))
        .expect("MEND_SCRATCH is set");
    assert!(scratch.contains("mend-scratch-"), "{scratch}");
    let stdout = stdout.replace(scratch, "[SCRATCH]");
    let mut vars: Vec<&str> = stdout.split("\\n").filter(|l| !l.is_empty()).collect();
    vars.sort();
    let data = f.path("data").display().to_string();
    let mut want = vec![
        "GREETING=hello world".to_string(),
        "LANG=C.UTF-8".to_string(),
        // mend's user's, from the passwd entry: the tests run as root.
        "HOME=/root".to_string(),
        format!("MEND_GRANT_DATA={data}"),
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
        "MEND_SCRATCH=[SCRATCH]".to_string(),
        "TMPDIR=[SCRATCH]".to_string(),
        "XDG_CACHE_HOME=[SCRATCH]".to_string(),
    ];
    want.sort();
    assert_eq!(vars, want, "{line}");

    // A change as nobody cannot write root's file: the step fails, the
    // file is as it was.
    let ran = f.mend(&["run", rb.to_str().unwrap()]);
    assert_eq!(ran.code, 1, "{}", ran.text());
    assert!(ran.stdout.contains("Permission denied"), "{}", ran.text());
    assert_eq!(std::fs::read_to_string(&owned).unwrap(), "root's\n");
}

#[test]
fn a_command_that_hangs_is_ended_with_its_whole_process_group_at_the_deadline() {
    let f = Fixture::new();
    let pids = f.path("data/pids");
    // A child that ignores SIGTERM, one that does not, and the command
    // itself waiting for ever (`$$$$` is `$$` once the runbook is read).
    let script = format!(
        "(trap '' TERM; exec sleep 1000) & echo $! >> {p}; sleep 1000 & echo $! >> {p}; echo $$$$ >> {p}; wait",
        p = pids.display()
    );
    let commands = "[commands.ctl]\nprogram = \"/bin/sh\"\nchanges = [[\"-c\", \"**\"]]";
    std::fs::create_dir_all(f.path("data")).unwrap();
    let rb = f.runbook(
        "hang.toml",
        &format!(
            r#"
[runbook]
name = "hang"
version = "1.0.0"
summary = "a command that never ends"

[grants.data]
path = "{{root}}/data"
access = "write"

{commands}

[[steps]]
id = "hang"
{{guest:scripted}}
grants = ["data"]
commands = ["ctl"]
timeout = "2s"
with = {{ actions = [{{ exec = ["ctl", ["-c", {script:?}]] }}] }}
"#
        ),
    );
    let ran = f.mend_within(
        &["run", rb.to_str().unwrap()],
        std::time::Duration::from_secs(60),
    );
    assert_eq!(ran.code, 1, "{}", ran.text());
    assert!(
        ran.stdout
            .contains("killed after 2 s (the step's timeout): its process group got SIGTERM, and SIGKILL 5 s later"),
        "{}",
        ran.stdout
    );
    let pids: Vec<u32> = std::fs::read_to_string(&pids)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 3, "{pids:?}");
    for pid in pids {
        // Gone, or a zombie waiting for init: nothing of it runs.
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, r)| r.split_whitespace().next().unwrap_or("").to_string())
            });
        assert!(
            matches!(state.as_deref(), None | Some("Z") | Some("X")),
            "process {pid} of the group still runs ({state:?})"
        );
    }
}

#[test]
fn a_step_reading_the_wall_clock_through_wasi_gets_the_clock_of_now() {
    let f = Fixture::new();
    std::fs::create_dir_all(f.path("data")).unwrap();
    let rb = f.runbook(
        "clock.toml",
        r#"
[runbook]
name = "clock"
version = "1.0.0"
summary = "what time a step sees"

[grants.data]
path = "{root}/data"
access = "read"

[[steps]]
id = "clock"
{guest:scripted}
grants = ["data"]
with = { inspect = ["clock:"] }
"#,
    );
    let now: u64 = 1_500_000_000;
    let ran = f.mend(&["--now", &now.to_string(), "plan", rb.to_str().unwrap()]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    let line = ran
        .stdout
        .lines()
        .find(|l| l.contains("wall clock "))
        .unwrap_or_else(|| panic!("{}", ran.stdout));
    let wall: u64 = line
        .split_whitespace()
        .nth(2)
        .unwrap()
        .trim_end_matches(',')
        .parse()
        .unwrap();
    assert!(line.ends_with(&format!("host clock {now}")), "{line}");
    // The same clock, moving on from `--now` while the step runs.
    assert!((now..now + 60).contains(&wall), "{line}");
}

/// mend keeps its own memory in 4 KiB pages (`PR_SET_THP_DISABLE`, which
/// every child keeps across exec); a command it runs, and any service that
/// command starts, has transparent huge pages as whoever started mend had
/// them.
#[test]
fn a_command_gets_huge_pages_as_mend_found_them() {
    let f = Fixture::new();
    std::fs::create_dir_all(f.path("data")).unwrap();
    let ours = std::fs::read_to_string("/proc/self/status").unwrap();
    let Some(want) = ours.lines().find(|l| l.starts_with("THP_enabled:")) else {
        // A kernel before 5.0 does not say.
        return;
    };
    let rb = f.runbook(
        "thp.toml",
        r#"
[runbook]
name = "thp"
version = "1.0.0"
summary = "a command reads its own huge page setting"

[grants.data]
path = "{root}/data"
access = "read"

[commands.status]
program = "/bin/grep"
reads = [["THP_enabled", "/proc/self/status"]]

[[steps]]
id = "look"
{guest:scripted}
grants = ["data"]
commands = ["status"]
with = { probe = [["status", ["THP_enabled", "/proc/self/status"]]] }
"#,
    );
    let ran = f.mend(&["plan", rb.to_str().unwrap()]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    let said = want.replace('\t', "\\t");
    assert!(
        ran.stdout.contains(&format!("stdout \"{said}\\n\"")),
        "the command should see `{said}`:\n{}",
        ran.stdout
    );
}
