use mend_sdk::Access;
use mend_sdk::testing::{self, FakeHost};
use serde_json::json;

use super::Restore;

const NOW: i64 = 1_795_316_400; // 2026-11-22T03:00:00Z
const H: i64 = 3600;
const GB: u64 = 1 << 30;

/// rsnapshot-style names say nothing of time, so mtimes decide: daily.10 is
/// the newest, and sorts between daily.1 and daily.2 by name.
fn rsnapshot(free: u64) -> FakeHost {
    FakeHost::new(NOW)
        .grant("backups", Access::Read)
        .grant("srv", Access::Write)
        .dir("backups/snaps", NOW)
        .dir("backups/snaps/daily.0", NOW - 7 * H)
        .file("backups/snaps/daily.0/app/a", 100, NOW - 7 * H)
        .dir("backups/snaps/daily.1", NOW - 31 * H)
        .file("backups/snaps/daily.1/app/a", 90, NOW - 31 * H)
        .dir("backups/snaps/daily.10", NOW - 2 * H)
        .file("backups/snaps/daily.10/app/a", 80, NOW - 2 * H)
        .dir("srv/app", NOW)
        .file("srv/app/a", 5, NOW)
        .free("srv", free, 100 * GB)
}

#[test]
fn chooses_the_newest_by_time_not_by_list_order() {
    let plan = testing::plan::<Restore>(
        &rsnapshot(10 * GB),
        json!({"from": "backups/snaps", "target": "srv/app", "subdir": "app"}),
    )
    .unwrap();
    assert_eq!(
        testing::lines(&plan),
        [
            "copy backups/snaps/daily.10/app -> srv/app.restore-daily.10",
            "swap srv/app <-> srv/app.restore-daily.10",
            "remove srv/app.restore-daily.10",
        ]
    );
    let table = plan.summary.join("\n");
    assert!(
        table.contains("-> daily.10  taken 2026-11-22T01:00:00Z, 2 h 0 min old (by its mtime)"),
        "{table}"
    );
    assert!(
        table.contains("   daily.1   taken 2026-11-20T20:00:00Z, 1 d 7 h old (by its mtime)"),
        "{table}"
    );
}

#[test]
fn a_time_in_the_name_beats_the_mtime() {
    let h = FakeHost::new(NOW)
        .grant("b", Access::Read)
        .grant("srv", Access::Write)
        .dir("b/s", NOW)
        // Copied yesterday (fresh mtime), but taken last month.
        .dir("b/s/app-20261022T030000Z", NOW - H)
        .dir("b/s/app-20261121T030000Z", NOW - 30 * H)
        .free("srv", 10 * GB, 100 * GB);
    let plan = testing::plan::<Restore>(&h, json!({"from": "b/s", "target": "srv/app"})).unwrap();
    assert_eq!(
        testing::lines(&plan),
        ["copy b/s/app-20261121T030000Z -> srv/app"]
    );
}

#[test]
fn refuses_a_newest_snapshot_older_than_max_age_unless_told() {
    let p = json!({"from": "backups/snaps", "target": "srv/app", "max_age": "1h"});
    let err = testing::plan::<Restore>(&rsnapshot(10 * GB), p).unwrap_err();
    assert!(
        err.message
            .starts_with("the newest snapshot, daily.10, is 2 h 0 min old"),
        "{}",
        err.message
    );
    assert!(
        err.message.ends_with("refuses snapshots older than 1h"),
        "{}",
        err.message
    );
    let p =
        json!({"from": "backups/snaps", "target": "srv/app", "max_age": "1h", "allow_old": true});
    assert!(testing::plan::<Restore>(&rsnapshot(10 * GB), p).is_ok());
}

#[test]
fn another_snapshot_by_name_and_a_missing_one_lists_what_there_is() {
    let p = json!({"from": "backups/snaps", "target": "srv/app", "snapshot": "daily.1"});
    let plan = testing::plan::<Restore>(&rsnapshot(10 * GB), p).unwrap();
    assert_eq!(
        testing::lines(&plan)[0],
        "copy backups/snaps/daily.1 -> srv/app.restore-daily.1"
    );
    let p = json!({"from": "backups/snaps", "target": "srv/app", "snapshot": "daily.7"});
    let err = testing::plan::<Restore>(&rsnapshot(10 * GB), p).unwrap_err();
    assert_eq!(
        err.message,
        "there is no snapshot `daily.7` in backups/snaps; newest first: daily.10, daily.0, daily.1"
    );
}

#[test]
fn refuses_before_copying_when_the_space_is_short() {
    let err = testing::plan::<Restore>(
        &rsnapshot(10 << 20),
        json!({"from": "backups/snaps", "target": "srv/app"}),
    )
    .unwrap_err();
    assert!(err.message.starts_with("not enough space to restore backups/snaps/daily.10 into srv/app: it needs 67.1 MB (80 B and 67.1 MB headroom)"), "{}", err.message);
    assert!(err.message.ends_with("10.5 MB is free"), "{}", err.message);
}

#[test]
fn a_database_is_dumped_dropped_and_created_each_with_its_undo() {
    let h = FakeHost::new(NOW)
        .grant("dumps", Access::Write)
        .dir("dumps/pg", NOW)
        .file("dumps/pg/app-20261121T030000Z.dump", 10, NOW - 24 * H)
        .file("dumps/pg/app-20261122T020000Z.dump", 10, NOW - H)
        .file(
            "dumps/pg/pre-restore-app-20261122T025000Z.dump",
            10,
            NOW - 600,
        );
    let p = json!({"from": "dumps/pg", "database": {"name": "app", "connect": ["-p", "5433"], "counts": {"accounts": 3}}});
    let plan = testing::plan::<Restore>(&h, p).unwrap();
    assert_eq!(
        testing::lines(&plan),
        [
            "exec pg_dump -p 5433 -Fc -f @dumps/pg/pre-restore-app-20261122T030000Z.dump app (creates dumps/pg/pre-restore-app-20261122T030000Z.dump)",
            "exec dropdb -p 5433 app (undo: pg_restore -p 5433 --create -d postgres @dumps/pg/pre-restore-app-20261122T030000Z.dump)",
            "exec pg_restore -p 5433 --create -d postgres @dumps/pg/app-20261122T020000Z.dump (undo: dropdb -p 5433 --if-exists app)",
        ]
    );
    assert_eq!(plan.checks, ["app.accounts has 3 rows"]);
}

#[test]
fn verify_counts_rows_through_psql() {
    let p = json!({"from": "dumps/pg", "database": {"name": "app", "counts": {"accounts": 3, "statuses": 5}}});
    let h = FakeHost::new(NOW)
        .command("psql")
        .probe_answer(
            "psql",
            &["-At", "-d", "app", "-c", "SELECT count(*) FROM accounts"],
            0,
            "3\n",
        )
        .probe_answer(
            "psql",
            &["-At", "-d", "app", "-c", "SELECT count(*) FROM statuses"],
            0,
            "4\n",
        );
    let checks = testing::verify::<Restore>(&h, p).unwrap();
    let seen: Vec<(bool, String)> = checks.iter().map(|c| (c.ok, c.detail.clone())).collect();
    assert_eq!(
        seen,
        [(true, String::new()), (false, "it has 4".to_string())]
    );
}

#[test]
fn a_table_name_that_is_not_plain_is_refused() {
    let h = FakeHost::new(NOW)
        .grant("dumps", Access::Write)
        .dir("dumps/pg", NOW)
        .file("dumps/pg/app-20261122.dump", 1, NOW);
    let p =
        json!({"from": "dumps/pg", "database": {"name": "app", "counts": {"x; DROP TABLE y": 1}}});
    let err = testing::plan::<Restore>(&h, p).unwrap_err();
    assert!(
        err.message.contains("is not a plain table name"),
        "{}",
        err.message
    );
}

/// Defect 3: `media-` and `config-` snapshots side by side; a restore of
/// media chose the config snapshot, the newer of the two.
#[test]
fn a_restore_chooses_among_its_own_labels_snapshots_and_says_which_it_skipped() {
    let h = FakeHost::new(NOW)
        .grant("b", Access::Read)
        .grant("srv", Access::Write)
        .dir("b/s", NOW)
        .dir("b/s/media-20261122T010000Z", NOW)
        .file("b/s/media-20261122T010000Z/1.png", 10, NOW)
        .dir("b/s/config-20261122T020000Z", NOW)
        .file("b/s/config-20261122T020000Z/app.yml", 10, NOW)
        .free("srv", 10 * GB, 100 * GB);
    let plan = testing::plan::<Restore>(&h, json!({"from": "b/s", "target": "srv/media"})).unwrap();
    assert_eq!(
        testing::lines(&plan),
        ["copy b/s/media-20261122T010000Z -> srv/media"]
    );
    let text = plan.summary.join("\n");
    assert!(
        text.contains("skipped 1 snapshot of other labels: config-20261122T020000Z"),
        "{text}"
    );
    // Named otherwise, the label says which.
    let plan = testing::plan::<Restore>(
        &h,
        json!({"from": "b/s", "target": "srv/app", "label": "config"}),
    )
    .unwrap();
    assert_eq!(
        testing::lines(&plan),
        ["copy b/s/config-20261122T020000Z -> srv/app"]
    );
    let err =
        testing::plan::<Restore>(&h, json!({"from": "b/s", "target": "srv/app"})).unwrap_err();
    assert_eq!(
        err.message,
        "no snapshot labelled `app` in b/s; 2 of other labels: config-20261122T020000Z, media-20261122T010000Z"
    );
    assert_eq!(err.param.as_deref(), Some("label"));
}

/// Defect 4: a snapshot named an hour ahead (local time written as UTC)
/// won as "0 s old". It is refused with the reason, or chosen with
/// allow_future, and flagged.
#[test]
fn a_snapshot_dated_in_the_future_is_refused_unless_allowed() {
    let h = FakeHost::new(NOW)
        .grant("b", Access::Read)
        .grant("srv", Access::Write)
        .dir("b/s", NOW)
        .dir("b/s/app-20261122T020000Z", NOW)
        .dir("b/s/app-20261122T040000Z", NOW)
        .free("srv", 10 * GB, 100 * GB);
    let err =
        testing::plan::<Restore>(&h, json!({"from": "b/s", "target": "srv/app"})).unwrap_err();
    assert!(
        err.message.starts_with(
            "the newest snapshot, app-20261122T040000Z, is dated 1 h 0 min in the future"
        ),
        "{}",
        err.message
    );
    assert!(err.hint.unwrap().contains("allow_future = true"));
    let plan = testing::plan::<Restore>(
        &h,
        json!({"from": "b/s", "target": "srv/app", "allow_future": true}),
    )
    .unwrap();
    assert_eq!(
        testing::lines(&plan),
        ["copy b/s/app-20261122T040000Z -> srv/app"]
    );
    let text = plan.summary.join("\n");
    assert!(text.contains("1 h 0 min IN THE FUTURE"), "{text}");
    assert!(
        text.contains("WARNING: app-20261122T040000Z is dated"),
        "{text}"
    );
}
