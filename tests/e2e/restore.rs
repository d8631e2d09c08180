//! `runbooks/mastodon/restore.toml` through the binary: services stopped and
//! started by a stand-in `systemctl` (a script keeping unit states in
//! files), media restored from rsnapshot-style snapshots whose names say
//! nothing of their time.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::common::*;

const UNITS: [&str; 3] = [
    "mastodon-web.service",
    "mastodon-sidekiq.service",
    "mastodon-streaming.service",
];

fn age(path: &Path, hours: u64) {
    let t = SystemTime::now() - Duration::from_secs(hours * 3600);
    std::fs::File::open(path).unwrap().set_modified(t).unwrap();
}

/// Live media, two snapshots (daily.1 is the newer by its mtime, though a
/// listing puts daily.0 first) and every unit running.
fn world(f: &Fixture) {
    f.write("public/system/media_attachments/1.png", "broken");
    f.write("public/system/accounts/avatars/a.png", "broken avatar");
    f.write("snaps/daily.0/media_attachments/1.png", "older");
    f.write("snaps/daily.1/media_attachments/1.png", "newest");
    f.write("snaps/daily.1/media_attachments/2.png", "newest two");
    f.write("snaps/daily.1/accounts/avatars/a.png", "avatar");
    age(&f.path("snaps/daily.0"), 30);
    age(&f.path("snaps/daily.1"), 6);
    let script = f.write(
        "bin/systemctl",
        "#!/bin/sh\nd=\"$(dirname \"$0\")/units\"\ncase \"$1\" in\n  is-active) [ -e \"$d/$2\" ] ;;\n  stop) rm -f \"$d/$2\" ;;\n  start) touch \"$d/$2\" ;;\n  *) exit 2 ;;\nesac\n",
    );
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    for u in UNITS {
        f.write(&format!("bin/units/{u}"), "");
    }
}

fn sets(f: &Fixture) -> Vec<String> {
    [
        format!("public={}", f.path("public").display()),
        format!("snapshots={}", f.path("snaps").display()),
        format!("systemctl={}", f.path("bin/systemctl").display()),
    ]
    .into_iter()
    .flat_map(|s| ["--set".to_string(), s])
    .collect()
}

fn mend_restore(f: &Fixture, cmd: &str, env: &[(&str, &str)]) -> Ran {
    let runbook = repo("runbooks/mastodon/restore.toml");
    let sets = sets(f);
    let mut args = vec![cmd, runbook.as_str()];
    args.extend(sets.iter().map(String::as_str));
    f.mend_env(&args, env)
}

fn running(f: &Fixture) -> Vec<bool> {
    UNITS
        .iter()
        .map(|u| f.path(&format!("bin/units/{u}")).exists())
        .collect()
}

#[test]
fn restores_the_newest_snapshot_whole_between_a_stop_and_a_start() {
    let f = Fixture::new();
    world(&f);
    let plan = mend_restore(&f, "plan", &[]);
    assert_eq!(plan.code, 0, "{}", plan.text());
    let text = plan.text();
    assert!(
        text.contains("-> daily.1"),
        "the newest by time is chosen:\n{text}"
    );
    assert!(text.contains("(by its mtime)"), "{text}");
    assert!(
        text.contains(
            "the current public/system (2 files, 19 B) is kept in the trash until the run commits"
        ),
        "{text}"
    );
    assert_eq!(running(&f), [true, true, true], "a plan stops nothing");

    let ran = mend_restore(&f, "run", &[]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    assert_same(
        &tree(&f.path("snaps/daily.1"), false),
        &tree(&f.path("public/system"), false),
        "the live media after the restore",
    );
    assert_eq!(running(&f), [true, true, true], "started again");
    let left: Vec<String> = std::fs::read_dir(f.path("public"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["system"], "no copy, trash or staging left behind");
}

#[test]
fn too_little_space_stops_before_copying_and_the_services_come_back() {
    let f = Fixture::new();
    world(&f);
    let before = tree(&f.path("public"), true);
    let ran = mend_restore(&f, "run", &[("MEND_FAKE_FREE_BYTES", "1000000")]);
    assert_eq!(ran.code, 1, "{}", ran.text());
    let text = ran.text();
    assert!(
        text.contains("not enough space to restore snapshots/daily.1 into public/system: it needs 67.1 MB (22 B and 67.1 MB headroom), 1.0 MB is free"),
        "{text}"
    );
    assert_same(&before, &tree(&f.path("public"), true), "the live media");
    assert_eq!(running(&f), [true, true, true], "the stop was rolled back");
}
