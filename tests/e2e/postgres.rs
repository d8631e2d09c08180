//! `runbooks/postgres/restore.toml` against a real PostgreSQL server: a
//! cluster of its own (initdb, a private socket directory, no TCP), run as
//! an unprivileged user, stopped when the test ends. `.ci/run` installs
//! Debian's postgresql-15 for these.

use std::path::{Path, PathBuf};

use crate::common::*;
use crate::pg_cluster::{BIN, Pg};

/// `--now` for the runs: 2026-11-22T03:00:00Z.
const NOW: &str = "1795316400";

/// A database `app` with `accounts`: two dumps in `dumps` (3 rows, taken
/// 2026-11-21 03:00; 5 rows, taken 2026-11-22 02:00, whose file is the
/// older one by mtime), then 10 more rows (15) that are not in any dump.
fn world(f: &Fixture, pg: &Pg) -> PathBuf {
    let dumps = f.path("dumps");
    std::fs::create_dir_all(&dumps).unwrap();
    pg.sql("postgres", "CREATE DATABASE app");
    pg.sql(
        "app",
        "CREATE TABLE accounts (id int PRIMARY KEY, name text)",
    );
    pg.sql(
        "app",
        "INSERT INTO accounts SELECT g, 'user' || g FROM generate_series(1, 3) g",
    );
    pg.dump("app", &dumps.join("app-20261121T030000Z.dump"));
    pg.sql(
        "app",
        "INSERT INTO accounts SELECT g, 'user' || g FROM generate_series(4, 5) g",
    );
    let newest = dumps.join("app-20261122T020000Z.dump");
    pg.dump("app", &newest);
    // Copied later than the other: the mtime would pick the wrong one.
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    std::fs::File::options()
        .write(true)
        .open(&newest)
        .unwrap()
        .set_modified(old)
        .unwrap();
    pg.sql(
        "app",
        "INSERT INTO accounts SELECT g, 'late' || g FROM generate_series(6, 15) g",
    );
    dumps
}

fn sets(pg: &Pg, dumps: &Path, expect: &str) -> Vec<String> {
    [
        "db=app".to_string(),
        format!("dumps={}", dumps.display()),
        format!("pgbin={BIN}"),
        format!("host={}", pg.sock()),
        format!("port={}", pg.port),
        "user=mend".to_string(),
        "check_query=SELECT count(*) FROM accounts".to_string(),
        format!("check_expect={expect}"),
    ]
    .into_iter()
    .flat_map(|s| ["--set".to_string(), s])
    .collect()
}

fn mend_with(f: &Fixture, cmd: &str, sets: &[String]) -> Ran {
    let runbook = repo("runbooks/postgres/restore.toml");
    let mut args = vec!["--now", NOW, cmd, runbook.as_str()];
    args.extend(sets.iter().map(String::as_str));
    f.mend(&args)
}

#[test]
fn restores_the_newest_dump_and_a_failed_check_puts_the_database_back() {
    let pg = Pg::start();
    let f = Fixture::new();
    let dumps = world(&f, &pg);

    // The plan names the dump by its time, its age, and every command.
    let plan = mend_with(&f, "plan", &sets(&pg, &dumps, "5"));
    assert_eq!(plan.code, 0, "{}", plan.text());
    let text = plan.text();
    assert!(
        text.contains(
            "-> app-20261122T020000Z.dump  taken 2026-11-22T02:00:00Z, 1 h 0 min old (by its name)"
        ),
        "{text}"
    );
    assert!(text.contains("dropdb"), "{text}");
    assert_eq!(
        pg.sql("app", "SELECT count(*) FROM accounts"),
        "15",
        "a plan changes nothing"
    );

    // A check that cannot pass: the run rolls back to the database as it was.
    let failed = mend_with(&f, "run", &sets(&pg, &dumps, "999"));
    assert_eq!(failed.code, 1, "{}", failed.text());
    assert!(
        failed.text().contains("it answered `5`"),
        "{}",
        failed.text()
    );
    assert_eq!(
        pg.sql("app", "SELECT count(*) FROM accounts"),
        "15",
        "rolled back"
    );
    assert_eq!(
        pg.sql("app", "SELECT name FROM accounts WHERE id = 15"),
        "late15"
    );
    let left: Vec<String> = std::fs::read_dir(&dumps)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("pre-restore-"))
        .collect();
    assert!(
        left.is_empty(),
        "the rollback removes the dump it made: {left:?}"
    );

    // The real thing: 5 rows, from the newest dump, and the old database kept as a dump.
    let ran = mend_with(&f, "run", &sets(&pg, &dumps, "5"));
    assert_eq!(ran.code, 0, "{}", ran.text());
    assert_eq!(pg.sql("app", "SELECT count(*) FROM accounts"), "5");
    let kept = dumps.join("pre-restore-app-20261122T030000Z.dump");
    assert!(
        kept.exists(),
        "the database before the restore is kept at {}",
        kept.display()
    );
    let restored_from_kept = pg.run("pg_restore", &["-l", &kept.display().to_string()]);
    assert!(
        restored_from_kept.contains("TABLE DATA public accounts"),
        "{restored_from_kept}"
    );
}

#[test]
fn refuses_a_newest_dump_older_than_max_age() {
    let pg = Pg::start();
    let f = Fixture::new();
    let dumps = world(&f, &pg);
    let mut s = sets(&pg, &dumps, "5");
    s.extend(["--set".into(), "max_age=30min".into()]);
    let ran = mend_with(&f, "run", &s);
    assert_eq!(ran.code, 1, "{}", ran.text());
    assert!(
        ran.text()
            .contains("the newest snapshot, app-20261122T020000Z.dump, is 1 h 0 min old"),
        "{}",
        ran.text()
    );
    assert_eq!(
        pg.sql("app", "SELECT count(*) FROM accounts"),
        "15",
        "nothing ran"
    );
}

/// `mend rehearse` of the restore against a live server: stand-ins dump
/// into a copy of `dumps` and drop nothing; the database keeps its 15 rows
/// and the real dumps are as they were.
#[test]
fn the_restore_rehearses_without_touching_the_database() {
    let pg = Pg::start();
    let f = Fixture::new();
    let dumps = world(&f, &pg);
    let before = tree(&dumps, true);
    let ran = mend_with(&f, "rehearse", &sets(&pg, &dumps, "5"));
    assert_eq!(ran.code, 0, "{}", ran.text());
    assert!(ran.stdout.contains("rehearsal passed"), "{}", ran.stdout);
    assert_eq!(pg.sql("app", "SELECT count(*) FROM accounts"), "15");
    assert_same(&before, &tree(&dumps, true), "the dumps");
}
