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

/// `mend plan --out` then `mend run --plan`: the reviewed plan runs when
/// nothing moved, and nothing runs when the newest snapshot, the free
/// space or the runbook changed in between.
#[test]
fn a_saved_plan_runs_only_while_it_still_holds() {
    let f = Fixture::new();
    world(&f);
    let saved = f.path("noon.plan.json");
    let saved_s = saved.display().to_string();
    let plan = {
        let runbook = repo("runbooks/mastodon/restore.toml");
        let sets = sets(&f);
        let mut args = vec!["plan", runbook.as_str(), "--out", saved_s.as_str()];
        args.extend(sets.iter().map(String::as_str));
        f.mend_env(&args, &[("MEND_FAKE_FREE_BYTES", "10000000000")])
    };
    assert_eq!(plan.code, 0, "{}", plan.text());
    assert!(plan.stdout.contains("plan saved to"), "{}", plan.text());
    let pinned: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    assert_eq!(pinned["format"], "mend-plan/1");
    assert!(
        pinned["grants"]["public"]["mount"]
            .as_str()
            .unwrap()
            .contains("dev ")
    );

    // A newer snapshot arrives and the disk filled up a little.
    f.write("snaps/daily.2/media_attachments/1.png", "newer still");
    let before = tree(&f.path("public"), true);
    let ran = f.mend_env(
        &["run", "--plan", &saved_s],
        &[("MEND_FAKE_FREE_BYTES", "5000000000")],
    );
    assert_eq!(ran.code, 5, "{}", ran.text());
    let text = ran.text();
    for line in [
        "no longer holds; nothing was run",
        "step restore-media: restore.snapshot: daily.1 at plan time, now daily.2",
        "step restore-media: action 1: `copy snapshots/daily.1 -> public/system.restore-daily.1` at plan time, now `copy snapshots/daily.2 -> public/system.restore-daily.2`",
        "grant public: 10.0 GB free at plan time, now 5.0 GB (less than 90% of it)",
    ] {
        assert!(text.contains(line), "drift lacks {line:?}:\n{text}");
    }
    assert_same(&before, &tree(&f.path("public"), true), "the live media");
    assert_eq!(running(&f), [true, true, true], "nothing was stopped");

    // Back as it was at noon: the plan holds and runs.
    std::fs::remove_dir_all(f.path("snaps/daily.2")).unwrap();
    let ran = f.mend_env(
        &["run", "--plan", &saved_s],
        &[("MEND_FAKE_FREE_BYTES", "10000000000")],
    );
    assert_eq!(ran.code, 0, "{}", ran.text());
    assert!(ran.stdout.contains("still holds"), "{}", ran.text());
    assert_same(
        &tree(&f.path("snaps/daily.1"), false),
        &tree(&f.path("public/system"), false),
        "the media restored from the reviewed snapshot",
    );
}

#[test]
fn a_saved_plan_of_an_edited_runbook_does_not_run() {
    let f = Fixture::new();
    world(&f);
    let text = std::fs::read_to_string(repo("runbooks/mastodon/restore.toml")).unwrap();
    let runbook = f.write("restore.toml", &text);
    let runbook_s = runbook.display().to_string();
    let saved = f.path("p.json").display().to_string();
    let sets = sets(&f);
    let mut args = vec!["plan", runbook_s.as_str(), "--out", saved.as_str()];
    args.extend(sets.iter().map(String::as_str));
    assert_eq!(f.mend(&args).code, 0);
    f.write(
        "restore.toml",
        &text.replace("max_age = \"2d\"", "max_age = \"20d\""),
    );
    let ran = f.mend(&["run", "--plan", &saved]);
    assert_eq!(ran.code, 5, "{}", ran.text());
    assert!(
        ran.text()
            .contains(&format!("runbook {runbook_s}: sha256 ")),
        "{}",
        ran.text()
    );
    let garbage = f.write("garbage.json", "{\"format\": 3");
    let ran = f.mend(&["run", "--plan", &garbage.display().to_string()]);
    assert_eq!(ran.code, 2, "{}", ran.text());
    assert!(
        ran.text().contains("not a plan mend saved"),
        "{}",
        ran.text()
    );
}

/// Prosody's data from std:snapshot-style dated snapshots; the listing puts
/// the older one last, its name says it is older.
fn prosody_world(f: &Fixture, status_ok: bool) -> Vec<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let newer = format!("prosody-{}", mend_sdk::time::utc_stamp(now - 6 * 3600));
    let older = format!("zz-prosody-{}", mend_sdk::time::utc_stamp(now - 30 * 3600));
    f.write("lib/prosody/example.org/accounts/alice.dat", "broken");
    f.write(
        &format!("snaps/{older}/example.org/accounts/alice.dat"),
        "old",
    );
    f.write(
        &format!("snaps/{newer}/example.org/accounts/alice.dat"),
        "good",
    );
    f.write(
        &format!("snaps/{newer}/example.org/roster/alice.dat"),
        "bob",
    );
    let script = f.write(
        "bin/systemctl",
        "#!/bin/sh\nd=\"$(dirname \"$0\")/units\"\ncase \"$1\" in\n  is-active) [ -e \"$d/$2\" ] ;;\n  stop) rm -f \"$d/$2\" ;;\n  start) touch \"$d/$2\" ;;\n  *) exit 2 ;;\nesac\n",
    );
    let status = f.write(
        "bin/prosodyctl",
        &format!(
            "#!/bin/sh\n[ \"$1\" = status ] && [ -e \"$(dirname \"$0\")/units/prosody.service\" ] && {}\n",
            if status_ok { "echo 'Prosody is running'" } else { "echo 'Prosody is not running' && exit 1" }
        ),
    );
    for s in [script, status] {
        std::fs::set_permissions(&s, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    f.write("bin/units/prosody.service", "");
    [
        format!("lib={}", f.path("lib").display()),
        format!("snapshots={}", f.path("snaps").display()),
        format!("systemctl={}", f.path("bin/systemctl").display()),
        format!("prosodyctl={}", f.path("bin/prosodyctl").display()),
    ]
    .into_iter()
    .flat_map(|s| ["--set".to_string(), s])
    .collect()
}

fn mend_prosody(f: &Fixture, cmd: &str, sets: &[String]) -> Ran {
    let runbook = repo("runbooks/prosody/restore.toml");
    let mut args = vec![cmd, runbook.as_str()];
    args.extend(sets.iter().map(String::as_str));
    f.mend(&args)
}

#[test]
fn prosody_data_is_restored_from_the_newest_snapshot_by_its_name() {
    let f = Fixture::new();
    let sets = prosody_world(&f, true);
    let plan = mend_prosody(&f, "plan", &sets);
    assert_eq!(plan.code, 0, "{}", plan.text());
    assert!(plan.text().contains("-> prosody-"), "{}", plan.text());
    let ran = mend_prosody(&f, "run", &sets);
    assert_eq!(ran.code, 0, "{}", ran.text());
    assert_eq!(
        std::fs::read_to_string(f.path("lib/prosody/example.org/accounts/alice.dat")).unwrap(),
        "good"
    );
    assert!(f.path("lib/prosody/example.org/roster/alice.dat").exists());
    assert!(
        f.path("bin/units/prosody.service").exists(),
        "started again"
    );
}

#[test]
fn prosody_that_does_not_come_back_gets_its_old_data_back() {
    let f = Fixture::new();
    let mut sets = prosody_world(&f, false);
    sets.extend(["--set".to_string(), "check_delay=50ms".to_string()]);
    let before = tree(&f.path("lib"), true);
    let ran = mend_prosody(&f, "run", &sets);
    assert_eq!(ran.code, 1, "{}", ran.text());
    assert!(
        ran.text()
            .contains("prosodyctl status must say Prosody is running"),
        "{}",
        ran.text()
    );
    assert_same(
        &before,
        &tree(&f.path("lib"), true),
        "Prosody's data after the rollback",
    );
    assert!(
        f.path("bin/units/prosody.service").exists(),
        "running again"
    );
}

/// The postmortem of a run that rolled back: every step, what it did, what
/// was undone and when, as Markdown.
#[test]
fn a_report_tells_the_rolled_back_run_as_a_timeline() {
    let f = Fixture::new();
    let mut sets = prosody_world(&f, false);
    sets.extend(["--set".to_string(), "check_delay=50ms".to_string()]);
    let ran = mend_prosody(&f, "run", &sets);
    assert_eq!(ran.code, 1, "{}", ran.text());
    let text = ran.text();
    let id = text
        .split_whitespace()
        .skip_while(|w| *w != "run")
        .nth(1)
        .unwrap()
        .trim_end_matches(':')
        .to_string();
    let report = f.mend(&["report", &id]);
    assert_eq!(report.code, 0, "{}", report.text());
    let md = report.stdout;
    println!("{md}");
    for line in [
        &format!("# prosody-restore 1.0.0: run {id}, rolled-back"),
        "| actions | 5 planned, 5 done, 5 undone |",
        "### 2. restore-data (`std:restore`): undone",
        "- fact `restore.snapshot` = `prosody-",
        "| 1 | `exec systemctl stop prosody.service (undo: systemctl start prosody.service)` |",
        "prosodyctl status must say Prosody is running",
        "## Timeline (UTC)",
        "| info | free space before: lib ",
        "| info | free space after: lib ",
    ] {
        assert!(md.contains(line), "report lacks {line:?}:\n{md}");
    }
}

/// `mend rehearse` of the Mastodon restore: its stand-ins stop and start
/// nothing, the media is restored into copies and rolled back, and the
/// real media and services are as they were.
#[test]
fn mastodon_restore_rehearses_on_copies_and_stops_nothing() {
    let f = Fixture::new();
    world(&f);
    let before = tree(&f.path("public"), true);
    let snaps = tree(&f.path("snaps"), true);
    let ran = mend_restore(&f, "rehearse", &[]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    assert!(ran.stdout.contains("rehearsal passed"), "{}", ran.stdout);
    assert_same(&before, &tree(&f.path("public"), true), "the live media");
    assert_same(&snaps, &tree(&f.path("snaps"), true), "the snapshots");
    assert_eq!(running(&f), [true, true, true], "nothing was stopped");
}

/// The plan names every command vector each step will run, and the reads
/// it ran to decide.
#[test]
fn the_plan_shows_the_commands_each_step_will_run() {
    let f = Fixture::new();
    world(&f);
    let plan = mend_restore(&f, "plan", &[]);
    assert_eq!(plan.code, 0, "{}", plan.text());
    for u in UNITS {
        assert!(
            plan.stdout.contains(&format!(
                "    systemctl stop {u}  (undo: systemctl start {u})\n"
            )),
            "{u}: {}",
            plan.stdout
        );
        assert!(
            plan.stdout.contains(&format!(
                "  read while planning: systemctl is-active {u} (exit 0)\n"
            )),
            "{u}: {}",
            plan.stdout
        );
    }
    assert!(
        plan.stdout.contains("  commands it will run (3):\n"),
        "{}",
        plan.stdout
    );
}

/// `mend rehearse` of the Prosody restore: no service touched, the data
/// restored into a copy and rolled back.
#[test]
fn prosody_restore_rehearses_on_copies_and_touches_no_service() {
    let f = Fixture::new();
    let sets = prosody_world(&f, true);
    let before = tree(&f.path("lib"), true);
    let ran = mend_prosody(&f, "rehearse", &sets);
    assert_eq!(ran.code, 0, "{}", ran.text());
    assert!(ran.stdout.contains("rehearsal passed"), "{}", ran.stdout);
    assert_same(&before, &tree(&f.path("lib"), true), "Prosody's data");
    assert!(
        f.path("bin/units/prosody.service").exists(),
        "prosody was not stopped"
    );
}
