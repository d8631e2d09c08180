//! Steps that misbehave: write during plan, loop forever, block in WASI,
//! recurse without end, allocate 1 GiB, flood the log, print escape
//! sequences, propose paths outside their grants, come as bad components.
//! Each is stopped with a message that names the step and the rule, and
//! nothing changes.

use std::os::unix::fs::MetadataExt as _;
use std::time::Duration;

use crate::common::*;

fn one_step(f: &Fixture, guest: &str, extra: &str) -> std::path::PathBuf {
    populate(f);
    std::fs::create_dir_all(f.path("other")).unwrap();
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

[grants.other]
path = "{{root}}/other"
access = "write"

[[steps]]
id = "good"
{{guest:scripted}}
grants = ["data"]
with = {{ actions = [{{ create_dir = "data/made-by-good" }}] }}

[[steps]]
id = "bad"
{{guest:{guest}}}
grants = ["data", "src", "other"]
{extra}
"#
        ),
    )
}

#[test]
pub(crate) fn a_write_during_plan_is_denied() {
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
pub(crate) fn an_infinite_loop_is_killed_at_its_deadline_and_the_run_rolled_back() {
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
pub(crate) fn a_huge_allocation_is_refused_at_the_memory_limit() {
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

/// A step blocked in a host call (a WASI sleep or poll), where epoch
/// interruption cannot reach it, is still killed at its deadline.
#[test]
pub(crate) fn a_step_blocked_in_a_wasi_sleep_or_poll_is_killed_at_its_deadline() {
    for how in ["sleep", "poll"] {
        let f = Fixture::new();
        let rb = one_step(
            &f,
            "sleep",
            &format!("timeout = \"1s\"\nwith = {{ how = \"{how}\" }}"),
        );
        let before = tree(&f.path("data"), true);
        let start = std::time::Instant::now();
        let ran = f.mend_within(&["run", rb.to_str().unwrap()], Duration::from_secs(60));
        assert_eq!(ran.code, 1, "{how}: {}", ran.text());
        assert!(
            ran.stdout
                .contains("step `bad` was killed at its deadline of 1 s (runbook `timeout`)"),
            "{how}: {}",
            ran.stdout
        );
        assert!(
            ran.stdout.contains("1 action undone"),
            "{how}: {}",
            ran.stdout
        );
        assert_same(&before, &tree(&f.path("data"), true), how);
        assert!(start.elapsed() < Duration::from_secs(30), "{how}");
    }
}

#[test]
pub(crate) fn unbounded_recursion_runs_out_of_stack_and_the_run_is_rolled_back() {
    let f = Fixture::new();
    let rb = one_step(&f, "recurse", "");
    let before = tree(&f.path("data"), true);
    let ran = f.mend_within(&["run", rb.to_str().unwrap()], Duration::from_secs(60));
    assert_eq!(ran.code, 1, "{}", ran.text());
    assert!(
        ran.stdout.contains(
            "step `bad` ran out of stack (recursion too deep or without end) and was stopped"
        ),
        "{}",
        ran.stdout
    );
    assert!(ran.stdout.contains("1 action undone"), "{}", ran.stdout);
    assert_same(&before, &tree(&f.path("data"), true), "after the rollback");
}

/// 64 MiB of log in 1,024 calls: the first 1 MiB is kept (each message cut
/// at 4 KiB), the rest is counted in one line, in the terminal and the journal.
#[test]
pub(crate) fn a_log_flood_is_cut_at_the_log_budget_with_one_line_that_says_so() {
    let f = Fixture::new();
    let rb = one_step(&f, "flood", "with = { how = \"flood\", mib = 64 }");
    let ran = f.mend_within(&["run", rb.to_str().unwrap()], Duration::from_secs(120));
    assert_eq!(ran.code, 0, "{}", &ran.text()[..2000.min(ran.text().len())]);
    // 255 messages of 4,096 bytes (and ` [cut]`) fit in 1 MiB; the rest of
    // each, and all of the other 769, are dropped.
    let line = "66,064,384 more bytes of log dropped (step `bad` is over its log budget of 1.0 MB per call)";
    assert!(
        ran.stderr.contains(line),
        "{}",
        &ran.stderr[ran.stderr.len().saturating_sub(2000)..]
    );
    assert!(
        ran.stderr.len() < 1_200_000,
        "{} bytes on stderr",
        ran.stderr.len()
    );
    let report = f.mend(&["report", &history_id(&f)]);
    assert!(
        report
            .stdout
            .contains("66,064,384 more bytes of log dropped")
    );
    assert!(
        report.stdout.len() < 1_500_000,
        "{} bytes of report",
        report.stdout.len()
    );
}

/// Ten million empty strings in one host call: wasmtime would copy them into
/// 240 MB of host memory; the host's per-call bound stops the step first.
#[test]
fn a_huge_list_handed_to_the_host_is_stopped_at_the_per_call_bound() {
    let f = Fixture::new();
    let rb = one_step(
        &f,
        "flood",
        "memory = \"1GiB\"\nwith = { how = \"list\", n = 10000000 }",
    );
    let before = tree(&f.path("data"), true);
    let ran = f.mend_within(&["run", rb.to_str().unwrap()], Duration::from_secs(120));
    assert_eq!(ran.code, 1, "{}", ran.text());
    assert!(
        ran.stdout.contains(
            "step `bad` handed the host more than 134.2 MB in one call and was stopped; pass large data as files in a grant"
        ),
        "{}",
        ran.stdout
    );
    assert_same(&before, &tree(&f.path("data"), true), "after the rollback");
}

/// Everything a step can say reaches the terminal (and the journal's
/// report) with its escape sequences shown, not obeyed.
#[test]
fn escape_sequences_from_a_step_are_shown_not_obeyed() {
    let f = Fixture::new();
    populate(&f);
    // TOML escapes: ESC [2J (clear), OSC 52 (clipboard), BEL, CR, CSI (C1),
    // and a right-to-left override.
    let evil = r"\u001b[2J\u001b]52;c;cm0gLXJmIH4K\u0007 \rover \u009b31m \u202eexe.txt";
    let rb = f.runbook(
        "loud.toml",
        &format!(
            r#"
[runbook]
name = "loud"
version = "1.0.0"
summary = "a step that prints escape sequences"

[grants.data]
path = "{{root}}/data"
access = "write"

[[steps]]
id = "loud"
{{guest:scripted}}
grants = ["data"]
with = {{ log = ["log {evil}"], summary = ["summary {evil}"], actions = [{{ create_dir = "data/dir {evil}" }}], verify = "fail" }}
"#
        ),
    );
    let refused = f.runbook(
        "refused.toml",
        &std::fs::read_to_string(&rb).unwrap().replace(
            "actions = [",
            &format!("fail_plan = \"error {evil}\", actions = ["),
        ),
    );
    let bad_path = f.runbook(
        "bad-path.toml",
        &std::fs::read_to_string(&rb)
            .unwrap()
            .replace("create_dir = \"data/", "create_dir = \"etc/"),
    );
    let mut outputs = vec![
        f.mend(&["plan", rb.to_str().unwrap()]),
        f.mend(&["run", rb.to_str().unwrap()]),
    ];
    let first = history_id(&f);
    outputs.push(f.mend(&["run", refused.to_str().unwrap()]));
    outputs.push(f.mend(&["run", bad_path.to_str().unwrap()]));
    outputs.push(f.mend(&["plan", bad_path.to_str().unwrap()]));
    for args in [
        vec!["report", first.as_str()],
        vec!["show", first.as_str()],
        vec!["history"],
    ] {
        outputs.push(f.mend(&args));
    }
    let all: String = outputs.iter().map(|r| r.text()).collect();
    for (name, bad) in [
        ("ESC", '\x1b'),
        ("BEL", '\x07'),
        ("CR", '\r'),
        ("CSI", '\u{9b}'),
        ("RLO", '\u{202e}'),
    ] {
        assert!(
            !all.contains(bad),
            "a raw {name} reached the terminal:\n{all}"
        );
    }
    // Shown visibly, in each place a step's words appear.
    let shown = r"\x1b[2J\x1b]52;c;cm0gLXJmIH4K\x07 \rover \u{9b}31m \u{202e}exe.txt";
    for what in ["log", "summary", "dir", "error"] {
        assert!(
            all.contains(&format!("{what} {shown}")),
            "`{what}` not shown escaped:\n{all}"
        );
    }
    assert!(all.contains(&format!("etc/dir {shown}")), "{all}");
}

/// What an attempt must leave alone: the canary outside every grant, in
/// content, modification time and inode.
fn canary(f: &Fixture) -> (String, i64, i64, u64) {
    let p = f.path("outside/canary");
    let md = std::fs::symlink_metadata(&p).unwrap();
    (
        std::fs::read_to_string(&p).unwrap(),
        md.mtime(),
        md.mtime_nsec(),
        md.ino(),
    )
}

/// Links the path tests go through: `escape` (absolute) and `rel-escape`
/// (relative) out of grant `data`, and `loop`, a link to itself.
fn plant_links(f: &Fixture) {
    std::fs::create_dir_all(f.path("outside/sub")).unwrap();
    f.write("outside/canary", "canary\n");
    std::os::unix::fs::symlink(f.path("outside"), f.path("data/escape")).unwrap();
    std::os::unix::fs::symlink("../outside", f.path("data/rel-escape")).unwrap();
    std::os::unix::fs::symlink("loop", f.path("data/loop")).unwrap();
}

/// Plan `action` after a harmless one: the whole plan must be refused with a
/// message naming step `bad`, `path` and `rule`, and nothing may change.
fn refused(action: &str, path: &str, rule: &str) {
    let f = Fixture::new();
    let rb = one_step(
        &f,
        "scripted",
        &format!("with = {{ actions = [{{ create_dir = \"data/first\" }}, {action}] }}"),
    );
    plant_links(&f);
    let before = tree(f.dir.path(), true);
    let canary_before = canary(&f);
    let ran = f.mend(&["run", rb.to_str().unwrap()]);
    assert_eq!(ran.code, 1, "{action}: {}", ran.text());
    let said = ran
        .stdout
        .lines()
        .find(|l| l.contains("step `bad`: ") && l.contains(rule))
        .unwrap_or_else(|| panic!("{action}: expected `{rule}` in:\n{}", ran.stdout));
    assert!(
        said.contains(&format!("`{path}`")),
        "{action}: the message does not name `{path}`: {said}"
    );
    // The whole plan was refused: not even the step's first action ran.
    let after = tree(f.dir.path(), true);
    let changed: Vec<_> = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(v) && !k.starts_with("./state") && *k != ".")
        .collect();
    assert!(changed.is_empty(), "{action}: changed {changed:?}");
    assert_eq!(canary(&f), canary_before, "{action}: the canary changed");
}

#[test]
fn paths_outside_the_grants_are_refused_before_anything_is_done() {
    refused(
        "{ remove = \"data/../outside/canary\" }",
        "data/../outside/canary",
        "contains `..`; paths may not climb out of their grant",
    );
    refused("{ remove = \"/etc/passwd\" }", "/etc/passwd", "is absolute");
    refused(
        "{ remove = \"etc/passwd\" }",
        "etc/passwd",
        "is in grant `etc`, which this step does not hold",
    );
    refused(
        "{ remove = \"src/release/app.txt\" }",
        "src/release/app.txt",
        "is in grant `src`, which is read-only",
    );
}

#[test]
fn symlinks_out_of_a_grant_are_refused_in_every_form() {
    let escapes = "leaves grant `data` through a symlink";
    for (action, path, rule) in [
        // Absolute and relative links to a directory outside.
        (
            "{ remove = \"data/escape/canary\" }",
            "data/escape/canary",
            escapes,
        ),
        (
            "{ write_file = [\"data/escape/canary\", \"x\"] }",
            "data/escape/canary",
            escapes,
        ),
        (
            "{ rename = [\"data/escape/canary\", \"data/got\"] }",
            "data/escape/canary",
            escapes,
        ),
        (
            "{ copy = [\"data/escape/canary\", \"data/got\"] }",
            "data/escape/canary",
            escapes,
        ),
        (
            "{ create_dir = \"data/escape/sub/new\" }",
            "data/escape/sub/new",
            escapes,
        ),
        (
            "{ remove = \"data/rel-escape/canary\" }",
            "data/rel-escape/canary",
            escapes,
        ),
        (
            "{ write_file = [\"data/rel-escape/canary\", \"x\"] }",
            "data/rel-escape/canary",
            escapes,
        ),
        (
            "{ rename = [\"data/a.txt\", \"data/rel-escape/a.txt\"] }",
            "data/rel-escape/a.txt",
            escapes,
        ),
        // A link to itself.
        (
            "{ remove = \"data/loop/x\" }",
            "data/loop/x",
            "goes through a symlink loop in grant `data`",
        ),
        (
            "{ write_file = [\"data/loop/x\", \"x\"] }",
            "data/loop/x",
            "goes through a symlink loop in grant `data`",
        ),
        // A trailing slash asks to follow the link: refused, not guessed.
        (
            "{ remove = \"data/escape/\" }",
            "data/escape/",
            "ends in `/`, but `data/escape` in grant `data` is a symlink",
        ),
        (
            "{ rename = [\"data/rel-escape/\", \"data/moved\"] }",
            "data/rel-escape/",
            "is a symlink, not a directory",
        ),
        // Writing onto a link would replace it, not write where it points.
        (
            "{ write_file = [\"data/escape\", \"x\"] }",
            "data/escape",
            "is a symlink; write-file never writes through a link",
        ),
    ] {
        refused(action, path, rule);
    }
}

#[test]
fn read_only_grants_and_grant_boundaries_hold_for_writes_and_renames() {
    for (action, path, rule) in [
        // write_file truncates: never on a read-only grant.
        (
            "{ write_file = [\"src/release/app.txt\", \"\"] }",
            "src/release/app.txt",
            "is in grant `src`, which is read-only",
        ),
        (
            "{ rename = [\"data/a.txt\", \"src/a.txt\"] }",
            "src/a.txt",
            "is in grant `src`, which is read-only",
        ),
        (
            "{ rename = [\"src/release/app.txt\", \"data/app.txt\"] }",
            "src/release/app.txt",
            "is in grant `src`, which is read-only",
        ),
        (
            "{ rename = [\"data/a.txt\", \"other/a.txt\"] }",
            "data/a.txt",
            "are in two grants (`data` and `other`), and a rename or swap must stay inside one grant",
        ),
        (
            "{ swap = [\"data/x\", \"other/x\"] }",
            "other/x",
            "are in two grants (`data` and `other`)",
        ),
    ] {
        refused(action, path, rule);
    }
}

/// A hard link in a write grant to a file in a read grant: writing or
/// removing it changes the name in the write grant, never the content,
/// time or inode of the read grant's file, also through a rollback.
#[test]
fn a_hard_link_to_a_read_only_file_is_replaced_never_written_through() {
    let f = Fixture::new();
    let write_then_fail = one_step(
        &f,
        "scripted",
        "with = { actions = [{ write_file = [\"data/hl\", \"pwned\"] }], verify = \"fail\" }",
    );
    std::fs::hard_link(f.path("src/release/app.txt"), f.path("data/hl")).unwrap();
    let src = || {
        let p = f.path("src/release/app.txt");
        let md = std::fs::metadata(&p).unwrap();
        (
            std::fs::read_to_string(&p).unwrap(),
            md.mtime(),
            md.mtime_nsec(),
            md.ino(),
        )
    };
    let before = src();
    assert_eq!(before.0, "release 2\n");

    let ran = f.mend(&["run", write_then_fail.to_str().unwrap()]);
    assert_eq!(ran.code, 1, "{}", ran.text());
    assert_eq!(
        src(),
        before,
        "after a write through the link and its rollback"
    );
    assert_eq!(
        std::fs::metadata(f.path("data/hl")).unwrap().ino(),
        before.3,
        "the link is back"
    );

    let write = f.runbook(
        "write.toml",
        &std::fs::read_to_string(&write_then_fail)
            .unwrap()
            .replace(", verify = \"fail\"", ""),
    );
    let ran = f.mend(&["run", write.to_str().unwrap()]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    assert_eq!(std::fs::read_to_string(f.path("data/hl")).unwrap(), "pwned");
    assert_eq!(src(), before, "after a committed write");

    std::fs::remove_file(f.path("data/hl")).unwrap();
    std::fs::hard_link(f.path("src/release/app.txt"), f.path("data/hl")).unwrap();
    let remove = f.runbook(
        "remove.toml",
        &std::fs::read_to_string(&write).unwrap().replace(
            "write_file = [\"data/hl\", \"pwned\"]",
            "remove = \"data/hl\"",
        ),
    );
    let ran = f.mend(&["run", remove.to_str().unwrap()]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    assert!(!f.path("data/hl").exists());
    assert_eq!(src().0, before.0, "after a committed removal");
    assert_eq!((src().1, src().2, src().3), (before.1, before.2, before.3));
}

/// A test thread swaps `data/sw` between a real directory and a symlink
/// out of the grant, hundreds of times, while mend plans, performs and
/// rolls back actions under it. Runs may fail (the path changed under
/// them), but nothing outside the grant ever changes: not a byte, a time
/// or an inode.
#[test]
fn a_symlink_swapped_under_the_host_never_lets_it_out() {
    let f = Fixture::new();
    let rb = one_step(
        &f,
        "scripted",
        "with = { actions = [\
            { create_dir = \"data/sw/sub/new\" }, \
            { write_file = [\"data/sw/sub/file\", \"pwned\"] }, \
            { remove = \"data/sw/sub/old\" }, \
            { rename = [\"data/sw/sub/keep\", \"data/sw/sub/kept\"] }, \
            { copy = [\"data/a.txt\", \"data/sw/sub/copy\"] }\
        ], verify = \"fail\" }",
    );
    plant_links(&f);
    // The same names inside and outside, so an escape would find its target.
    for dir in ["data/sw/sub", "outside/sub"] {
        f.write(&format!("{dir}/old"), "old\n");
        f.write(&format!("{dir}/keep"), "keep\n");
        f.write(&format!("{dir}/file"), "file\n");
    }
    std::os::unix::fs::symlink(f.path("outside"), f.path("data/sw-alt")).unwrap();
    let outside = || {
        let mut t = tree(&f.path("outside"), true);
        for (k, v) in t.iter_mut() {
            let ino = std::fs::symlink_metadata(f.path("outside").join(k))
                .unwrap()
                .ino();
            v.push_str(&format!(" ino={ino}"));
        }
        t
    };
    let before = outside();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swaps = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let swapper = {
        let (stop, swaps) = (stop.clone(), swaps.clone());
        let data = rustix::fs::open(
            f.path("data"),
            rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::RDONLY,
            rustix::fs::Mode::empty(),
        )
        .unwrap();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                rustix::fs::renameat_with(
                    &data,
                    "sw",
                    &data,
                    "sw-alt",
                    rustix::fs::RenameFlags::EXCHANGE,
                )
                .unwrap();
                swaps.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };
    let mut codes = Vec::new();
    let start = std::time::Instant::now();
    while codes.len() < 3 || swaps.load(std::sync::atomic::Ordering::Relaxed) < 500 {
        let ran = f.mend(&["run", rb.to_str().unwrap()]);
        codes.push(ran.code);
        // The verify fails on purpose: the run fails and rolls back (1), or
        // its rollback finds a directory swapped away and says what is
        // still changed (3), or a path is refused before anything ran (1).
        // Never success, never a crash or an internal error.
        assert!(
            [1, 3].contains(&ran.code),
            "run {}: exit {}: {}",
            codes.len(),
            ran.code,
            ran.text()
        );
        if ran.code == 3 {
            assert!(
                ran.text().contains("rollback failed:"),
                "a failed rollback must say what is left: {}",
                ran.text()
            );
        }
        assert_same(
            &before,
            &outside(),
            &format!("outside, after run {}", codes.len()),
        );
        if start.elapsed() > Duration::from_secs(120) {
            break;
        }
        // A run that cannot roll back (its directory swapped away) leaves a
        // journaled run behind: start afresh.
        let _ = std::fs::remove_dir_all(f.state());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    swapper.join().unwrap();
    assert_same(&before, &outside(), "outside, at the end");
    assert!(swaps.load(std::sync::atomic::Ordering::Relaxed) >= 500);
    eprintln!(
        "{} runs ({codes:?}) under {} swaps",
        codes.len(),
        swaps.load(std::sync::atomic::Ordering::Relaxed)
    );
}

/// `uses = "x.wasm"`, pinned by its sha256, that is not a step mend can run:
/// a clear error naming the file and what is wrong, exit code 2, before
/// anything runs (no run journaled, nothing changed). `mend step inspect`
/// says the same.
#[test]
pub(crate) fn bad_components_are_refused_before_anything_runs() {
    let noop = std::fs::read(guest("noop").0).unwrap();
    let evil = std::fs::read(guest("evil-import").0).unwrap();
    let cases: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        (
            "garbage",
            b"#!/bin/sh\nrm -rf /\n".to_vec(),
            vec!["not WebAssembly (it starts with bytes 23 21 2f 62 69 6e 2f 73"],
        ),
        ("empty", Vec::new(), vec!["the file is empty"]),
        (
            "truncated",
            noop[..noop.len() / 2].to_vec(),
            vec!["not a valid component (truncated or corrupt?)"],
        ),
        (
            "core",
            b"\0asm\x01\0\0\0".to_vec(),
            vec!["this is a core WebAssembly module, not a component"],
        ),
        (
            "evil",
            evil,
            vec!["asks for something mend does not offer", "evil:net/raw"],
        ),
        // Sparse: 65 MiB on paper, refused before it is read (or hashed).
        (
            "huge",
            Vec::new(),
            vec!["is 68.2 MB, more than the 67.1 MB a step component may be"],
        ),
    ];
    for (name, bytes, expect) in cases {
        let f = Fixture::new();
        populate(&f);
        let wasm = f.path(&format!("steps/{name}.wasm"));
        std::fs::create_dir_all(wasm.parent().unwrap()).unwrap();
        std::fs::write(&wasm, &bytes).unwrap();
        if name == "huge" {
            std::fs::File::options()
                .write(true)
                .open(&wasm)
                .unwrap()
                .set_len(65 << 20)
                .unwrap();
        }
        let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
            std::fs::read(&wasm).unwrap(),
        ));
        let rb = f.runbook(
            "bad.toml",
            &format!(
                r#"
[runbook]
name = "bad-component"
version = "1.0.0"
summary = "a good step, then a bad component"

[grants.data]
path = "{{root}}/data"
access = "write"

[[steps]]
id = "good"
{{guest:scripted}}
grants = ["data"]
with = {{ actions = [{{ create_dir = "data/made-by-good" }}] }}

[[steps]]
id = "bad"
uses = "steps/{name}.wasm"
sha256 = "{sha}"
grants = ["data"]
"#
            ),
        );
        let before = tree(f.dir.path(), true);
        for cmd in ["plan", "run"] {
            let ran = f.mend(&[cmd, rb.to_str().unwrap()]);
            assert_eq!(ran.code, 2, "{name} {cmd}: {}", ran.text());
            for e in expect.iter().chain(&[
                "step `bad`",
                &format!("{name}.wasm"),
                "nothing was run and nothing changed",
            ]) {
                assert!(
                    ran.stderr.contains(e),
                    "{name} {cmd}: expected `{e}` in:\n{}",
                    ran.stderr
                );
            }
        }
        let ran = f.mend(&["step", "inspect", wasm.to_str().unwrap()]);
        assert_eq!(ran.code, 2, "{name} inspect: {}", ran.text());
        for e in &expect {
            assert!(
                ran.stderr.contains(e),
                "{name} inspect: expected `{e}` in:\n{}",
                ran.stderr
            );
        }
        assert!(!f.state().exists(), "{name}: a run was journaled");
        assert_same(&before, &tree(f.dir.path(), true), name);
    }
}
