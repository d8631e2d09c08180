//! Restores from restic and borg repositories, with the real tools from
//! Debian (`.ci/run` installs restic and borgbackup) on local repositories
//! made here. Both tools list snapshots oldest first; the newest snapshot
//! of the right tag must be chosen all the same, listed by a read and
//! restored by a change into staging, swapped in whole, owners kept.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use crate::backups::{NOW, owned_tree};
use crate::common::*;

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (.ci/run installs restic and borgbackup)"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Three versions of a service's data, owned nobody:nogroup, backed up
/// with times out of the order they were made in, and one of another tag
/// newest of all.
fn versions(f: &Fixture) {
    for (v, text) in [
        ("v1", "old"),
        ("v2", "newest"),
        ("v3", "older"),
        ("other", "other tag"),
    ] {
        let d = f.path(&format!("src/{v}/data"));
        std::fs::create_dir_all(d.join("accounts")).unwrap();
        std::fs::write(d.join("accounts/alice.dat"), text).unwrap();
        run(Command::new("chown").args(["-R", "65534:65534"]).arg(&d));
        run(Command::new("chmod")
            .arg("640")
            .arg(d.join("accounts/alice.dat")));
    }
    f.write("lib/data/accounts/alice.dat", "damaged");
}

/// (version, tag, time): made in this order.
const MADE: [(&str, &str, &str); 4] = [
    ("v2", "data", "2026-11-21 03:00:00"),
    ("v1", "data", "2026-11-19 03:00:00"),
    ("v3", "data", "2026-11-20 03:00:00"),
    ("other", "config", "2026-11-22 02:00:00"),
];

fn runbook(f: &Fixture, tool: &str, with: &str) -> std::path::PathBuf {
    f.runbook(
        &format!("{tool}.toml"),
        &format!(
            r#"[runbook]
name = "restore-from-{tool}"
version = "1.0.0"
summary = "restore a data directory from a {tool} repository"

[grants.lib]
path = "{{root}}/lib"
access = "write"

[grants.backups]
path = "{{root}}/backups"
access = "read"

[commands.{tool}]
program = "/usr/bin/{tool}"
reads = [["**"]]
changes = [["**"]]
# A read may write only in its own scratch directory: borg keeps what it
# learned of a repository there, not in ~/.config/borg/security.
# (The test's repository is unencrypted, which borg asks about once.)
env = {{ BORG_SECURITY_DIR = "$MEND_SCRATCH/borg-security", BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK = "yes" }}

[[steps]]
id = "restore"
uses = "std:restore"
grants = ["lib", "backups"]
commands = ["{tool}"]
with = {{ target = "lib/data", {with} }}
"#
        ),
    )
}

fn check(f: &Fixture, tool: &str, rb: &Path) {
    // Commands run in a clean environment (nothing of mend's reaches borg),
    // with a scratch directory of their own: what the runbook's env says.
    let plan = f.mend(&["--now", NOW, "plan", rb.to_str().unwrap()]);
    assert_eq!(plan.code, 0, "{}", plan.text());
    let ran = f.mend(&["--now", NOW, "run", rb.to_str().unwrap()]);
    assert_eq!(ran.code, 0, "{tool}: {}", ran.text());
    assert!(
        ran.text().contains("taken 2026-11-21T03:00:00Z"),
        "{}",
        ran.text()
    );
    assert!(
        ran.text().contains("1 of other tags skipped"),
        "{}",
        ran.text()
    );
    assert_eq!(
        std::fs::read_to_string(f.path("lib/data/accounts/alice.dat")).unwrap(),
        "newest",
        "{tool}: the newest of the right tag, by time"
    );
    let md = std::fs::metadata(f.path("lib/data/accounts/alice.dat")).unwrap();
    assert_eq!(
        (md.uid(), md.gid(), md.mode() & 0o777),
        (65534, 65534, 0o640),
        "{tool}"
    );
    let left: Vec<String> = std::fs::read_dir(f.path("lib"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["data"], "{tool}: no staging or trash left");
    let _ = owned_tree(&f.path("lib/data"));
}

#[test]
fn restic_restores_the_newest_snapshot_of_its_tag() {
    let f = Fixture::new();
    versions(&f);
    let repo = f.path("backups/restic");
    f.write("backups/pw", "correct horse\n");
    let restic = |args: &[&str]| {
        let mut c = Command::new("restic");
        c.arg("--password-file")
            .arg(f.path("backups/pw"))
            .arg("-r")
            .arg(&repo)
            .args(args);
        c
    };
    run(&mut restic(&["init"]));
    for (v, tag, time) in MADE {
        // The same path in every snapshot, as a nightly backup has it.
        let _ = std::fs::remove_dir_all(f.path("src/data"));
        run(Command::new("cp")
            .arg("-a")
            .arg(f.path(&format!("src/{v}/data")))
            .arg(f.path("src/data")));
        run(restic(&["backup", "--tag", tag, "--time", time]).arg(f.path("src/data")));
    }
    let src = f.path("src/data").display().to_string();
    let rb = runbook(
        &f,
        "restic",
        &format!(
            r#"restic = {{ repo = "@backups/restic", path = "{src}", args = ["--password-file", "@backups/pw"] }}"#
        ),
    );
    check(&f, "restic", &rb);
}

#[test]
fn borg_restores_the_newest_archive_of_its_label() {
    let f = Fixture::new();
    versions(&f);
    let repo = f.path("backups/borg");
    std::fs::create_dir_all(f.path("backups")).unwrap();
    run(Command::new("borg")
        .args(["init", "-e", "none"])
        .arg(&repo)
        .env("BORG_BASE_DIR", f.path("borg-home")));
    for (i, (v, tag, time)) in MADE.iter().enumerate() {
        run(Command::new("borg")
            .arg("create")
            .arg("--timestamp")
            .arg(time.replace(' ', "T"))
            .arg(format!("{}::{tag}-{i}", repo.display()))
            .arg("data")
            .current_dir(f.path(&format!("src/{v}")))
            .env("BORG_BASE_DIR", f.path("borg-home")));
    }
    let rb = runbook(
        &f,
        "borg",
        r#"borg = { repo = "@backups/borg", path = "data" }"#,
    );
    check(&f, "borg", &rb);
}
