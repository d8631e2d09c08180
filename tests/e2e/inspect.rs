//! `mend step inspect`: what a step is, before a runbook uses it.

use sha2::Digest;

use crate::common::*;

#[test]
fn inspect_names_the_parameters_imports_and_pin_of_a_step() {
    let f = Fixture::new();
    let ran = f.mend(&["-v", "step", "inspect", "std:release"]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    let text = &ran.stdout;
    let sha = hex::encode(sha2::Sha256::digest(
        mend::load::bundled::get("release").unwrap(),
    ));
    for line in [
        "release 0.1.0: Install a release tarball",
        &format!("sha256 {sha}"),
        "  archive  string   required: GRANT/path of the release tarball",
        "  root     string   default \"\": the directory inside the archive",
        "  mend:runbook/files@0.1.0",
    ] {
        assert!(text.contains(line), "lacks {line:?}:\n{text}");
    }

    let json = f.mend(&["--json", "step", "inspect", "std:release"]);
    assert_eq!(json.code, 0, "{}", json.text());
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["sha256"], sha);
    assert_eq!(v["params"][0]["name"], "archive");
    assert_eq!(v["params"][0]["required"], true);
    assert!(
        v["imports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i == "mend:runbook/probe@0.1.0")
    );

    // A file gets the lines that pin it, capabilities included.
    let (path, sha) = guest("noop");
    let ran = f.mend(&["step", "inspect", &path]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    for line in [
        format!("and sha256 = \"{sha}\""),
        format!("approve what it can do: {}", guest_capabilities("noop")),
    ] {
        assert!(
            ran.stdout.contains(&line),
            "lacks {line:?}:\n{}",
            ran.stdout
        );
    }
}

#[test]
fn inspect_refuses_what_is_not_a_step_with_the_reason() {
    let f = Fixture::new();
    let garbage = f.write("garbage.wasm", "not wasm at all");
    let ran = f.mend(&["step", "inspect", &garbage.display().to_string()]);
    assert_eq!(ran.code, 2, "{}", ran.text());
    assert!(ran.text().contains("not WebAssembly"), "{}", ran.text());

    let ran = f.mend(&["step", "inspect", "std:relase"]);
    assert_eq!(ran.code, 2, "{}", ran.text());
    assert!(
        ran.text().contains("no bundled step `relase`"),
        "{}",
        ran.text()
    );
    assert!(ran.text().contains("std:release"), "{}", ran.text());
}

/// Completions and the man page come from the CLI definition: every
/// subcommand appears in both.
#[test]
fn completions_and_man_page_cover_every_command() {
    let f = Fixture::new();
    let bash = f.mend(&["completions", "bash"]);
    assert_eq!(bash.code, 0, "{}", bash.text());
    let man = f.mend(&["man"]);
    assert_eq!(man.code, 0, "{}", man.text());
    assert!(
        man.stdout.starts_with(".ie"),
        "roff: {}",
        &man.stdout[..80.min(man.stdout.len())]
    );
    for cmd in [
        "plan",
        "run",
        "resume",
        "rollback",
        "rehearse",
        "history",
        "unlock",
        "show",
        "report",
        "lint",
        "step",
        "completions",
        "man",
        "schema",
        "demo",
    ] {
        assert!(
            bash.stdout.contains(&format!("mend__subcmd__{cmd}")),
            "bash lacks {cmd}"
        );
        assert!(
            man.stdout.contains(&format!("mend\\-{cmd}")),
            "man lacks {cmd}"
        );
    }
    assert!(bash.stdout.contains("--plan"), "run --plan is completed");
}

/// A newcomer's path with only the `mend` binary: scaffold a step against
/// the SDK inside the binary (no checkout of mend anywhere in it), run its
/// test, build the component, inspect it, pin it in a runbook and run that.
#[test]
fn a_scaffolded_step_tests_builds_and_runs_in_a_runbook() {
    let f = Fixture::new();
    let dir = f.path("tmp-clean");
    // A home and cache of its own, and cargo offline: nothing of the
    // author's machine but Rust and cargo's download cache (cargo and rustup
    // keep their real homes, found from the test's HOME).
    let real_home = std::env::var("HOME").unwrap();
    let cargo_home = std::env::var("CARGO_HOME").unwrap_or_else(|_| format!("{real_home}/.cargo"));
    let rustup_home =
        std::env::var("RUSTUP_HOME").unwrap_or_else(|_| format!("{real_home}/.rustup"));
    std::fs::create_dir_all(f.path("home")).unwrap();
    let home = f.path("home").display().to_string();
    let xdg = f.path("home/.cache").display().to_string();
    // Its own target dir, kept between runs: the suite's is locked by the
    // cargo that runs this test.
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/scaffold");
    let env = [
        ("HOME", home.as_str()),
        ("XDG_CACHE_HOME", xdg.as_str()),
        ("CARGO_HOME", cargo_home.as_str()),
        ("RUSTUP_HOME", rustup_home.as_str()),
        ("CARGO_NET_OFFLINE", "true"),
        ("CARGO_TARGET_DIR", target.to_str().unwrap()),
        ("CARGO", env!("CARGO")),
    ];
    let dir_arg = dir.display().to_string();
    let ran = f.mend_env(&["step", "new", "tmp-clean", "--dir", &dir_arg], &env);
    assert_eq!(ran.code, 0, "{}", ran.text());
    assert!(dir.join("src/lib.rs").exists());
    let again = f.mend_env(&["step", "new", "tmp-clean", "--dir", &dir_arg], &env);
    assert_eq!(
        again.code,
        2,
        "an existing directory is refused: {}",
        again.text()
    );

    // The SDK is the one inside the binary, written under the cache
    // directory by version and hash, with the WIT mend speaks.
    let checkout = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap();
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    let sdk = manifest
        .lines()
        .find_map(|l| l.strip_prefix("mend-sdk = { path = \""))
        .and_then(|l| l.split_once('"'))
        .map(|(p, _)| std::path::PathBuf::from(p))
        .unwrap_or_else(|| panic!("no mend-sdk path in:\n{manifest}"));
    let versioned = sdk.parent().unwrap();
    assert_eq!(versioned.parent().unwrap(), shared_cache().join("sdk"));
    let name = versioned.file_name().unwrap().to_str().unwrap();
    let (version, hash) = name.split_once('-').unwrap();
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
    assert_eq!(hash.len(), 12, "{name}");
    assert_eq!(
        std::fs::read(versioned.join("wit/runbook.wit")).unwrap(),
        std::fs::read(checkout.join("wit/runbook.wit")).unwrap()
    );
    // Nothing written names the checkout: not the step, not the SDK.
    let mut written = vec![dir.join("Cargo.toml"), dir.join("src/lib.rs")];
    let mut todo = vec![versioned.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p)
            } else {
                written.push(p)
            }
        }
    }
    assert!(written.len() > 10, "{written:?}");
    let needle = checkout.display().to_string();
    // The cache directory itself may sit inside the checkout (a target
    // directory in the tree, as in CI): the scaffold names it, which is
    // fine; only a path into the checkout's sources would not be.
    let cache = shared_cache().display().to_string();
    for p in &written {
        let text = std::fs::read_to_string(p).unwrap().replace(&cache, "");
        assert!(
            !text.contains(&needle),
            "{} names the checkout {needle}",
            p.display()
        );
    }

    let tested = f.mend_env(&["step", "test", "--dir", &dir_arg], &env);
    assert_eq!(tested.code, 0, "{}", tested.text());
    assert!(tested.text().contains("1 passed"), "{}", tested.text());
    let built = f.mend_env(&["--json", "step", "build", "--dir", &dir_arg], &env);
    assert_eq!(built.code, 0, "{}", built.text());
    let info: serde_json::Value = serde_json::from_str(&built.stdout).unwrap();
    assert_eq!(info["name"], "tmp-clean");
    let wasm = target.join("wasm32-wasip2/release/step_tmp_clean.wasm");
    assert_eq!(info["path"], wasm.display().to_string());

    // `step inspect` agrees on what was built.
    let inspect = f.mend(&["--json", "step", "inspect", &wasm.display().to_string()]);
    assert_eq!(inspect.code, 0, "{}", inspect.text());
    let inspected: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
    let sha = info["sha256"].as_str().unwrap();
    assert_eq!(inspected["sha256"], sha);
    assert_eq!(inspected["capabilities"], info["capabilities"]);
    let caps: Vec<String> = serde_json::from_value(info["capabilities"].clone()).unwrap();
    assert!(caps.contains(&"mend:runbook/files".to_string()), "{caps:?}");
    let caps = mend::load::supply::line(&caps);

    f.write("data/uploads/a.jpg", "a photo");
    f.write("data/uploads/b.jpg.tmp", "half a photo");
    let runbook = f.runbook(
        "clean.toml",
        &format!(
            r#"[runbook]
name = "clean"
version = "1.0.0"
summary = "remove leftovers"

[grants.data]
path = "{}"
access = "write"

[[steps]]
id = "clean"
uses = "{}"
sha256 = "{sha}"
{caps}
grants = ["data"]
with = {{ path = "data/uploads" }}
"#,
            f.path("data").display(),
            wasm.display()
        ),
    );
    let ran = f.mend(&["run", &runbook.display().to_string()]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    assert!(f.path("data/uploads/a.jpg").exists());
    assert!(!f.path("data/uploads/b.jpg.tmp").exists());
}

/// Under systemd, stderr is the journal (JOURNAL_STREAM names it): mend's
/// logs then carry a `<N>` syslog priority journald files them under, and no
/// colour; elsewhere they are plain.
#[test]
fn logs_carry_journald_priorities_when_stderr_is_the_journal() {
    use std::os::unix::fs::MetadataExt;
    let f = Fixture::new();
    let log = f.path("journal.log");
    let run = |journal: bool| {
        let file = std::fs::File::create(&log).unwrap();
        let meta = file.metadata().unwrap();
        let mut cmd = std::process::Command::new(mend_bin());
        cmd.args(["--state-dir", f.state().to_str().unwrap()])
            .args(["--cache-dir", f.path("fresh-cache").to_str().unwrap()])
            .args(["-v", "step", "inspect", "std:assert"])
            .stdout(std::process::Stdio::null())
            .stderr(file);
        if journal {
            cmd.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()));
        } else {
            cmd.env_remove("JOURNAL_STREAM");
        }
        assert!(cmd.status().unwrap().success());
        std::fs::read_to_string(&log).unwrap()
    };
    let journal = run(true);
    let line = journal
        .lines()
        .find(|l| l.contains("compiled component"))
        .unwrap_or_else(|| panic!("no compile log in:\n{journal}"));
    assert!(
        line.starts_with("<6>mend_host::sandbox: compiled component"),
        "{line}"
    );
    assert!(
        !journal.contains('\x1b'),
        "colour codes in the journal: {journal}"
    );
    std::fs::remove_dir_all(f.path("fresh-cache")).unwrap();
    let plain = run(false);
    assert!(
        plain.contains(" INFO mend_host::sandbox: compiled component") && !plain.contains("<6>"),
        "{plain}"
    );
}

/// `mend step inspect std:assert` shows each check kind with its keys, and
/// the imports only with -v.
#[test]
fn inspect_of_assert_shows_each_checks_keys_and_imports_only_when_verbose() {
    let f = Fixture::new();
    let ran = f.mend(&["step", "inspect", "std:assert"]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    for line in [
        "cert = { path = \"GRANT/fullchain.pem\", days_left = 14 }",
        "not_listening = { port = 6379, procnet = \"procnet\" }",
        "can ask the host for: capabilities = [",
    ] {
        assert!(ran.stdout.contains(line), "lacks {line:?}:\n{}", ran.stdout);
    }
    assert!(
        !ran.stdout.contains("mend:runbook/files@"),
        "{}",
        ran.stdout
    );
}
