use mend_sdk::Access;
use mend_sdk::testing::{self, FakeHost};
use serde_json::json;

use super::Snapshot;

const NOW: i64 = 1_795_316_400; // 2026-11-22T03:00:00Z
const GB: u64 = 1 << 30;

fn host(free: u64) -> FakeHost {
    FakeHost::new(NOW)
        .grant("data", Access::Read)
        .grant("snaps", Access::Write)
        .command("pg_dump")
        .dir("data/media", NOW)
        .file("data/media/a.png", 600 << 20, NOW)
        .file("data/media/sub/b.png", 400 << 20, NOW)
        .dir("snaps/s", NOW)
        .free("snaps", free, 100 * GB)
}

#[test]
fn copies_the_directory_under_a_dated_name() {
    let plan = testing::plan::<Snapshot>(
        &host(10 * GB),
        json!({"into": "snaps/s", "source": "data/media"}),
    )
    .unwrap();
    assert_eq!(
        testing::lines(&plan),
        ["copy data/media -> snaps/s/media-20261122T030000Z"]
    );
    assert!(
        plan.summary[0].contains("the host counts its files and space"),
        "{:?}",
        plan.summary
    );
}

#[test]
fn leaves_the_space_check_to_the_host_which_counts_blocks() {
    // 1000 MiB of files, 1 GiB free: the step does not walk the tree to
    // count bytes (the host counts blocks and inodes once, in the plan,
    // and refuses there: e2e `small_files_are_counted_in_blocks_and_refused_in_the_plan`).
    let plan = testing::plan::<Snapshot>(
        &host(GB),
        json!({"into": "snaps/s", "source": "data/media"}),
    )
    .unwrap();
    assert_eq!(
        testing::lines(&plan),
        ["copy data/media -> snaps/s/media-20261122T030000Z"]
    );
    let err = testing::plan::<Snapshot>(
        &host(GB),
        json!({"into": "snaps/s", "source": "data/missing"}),
    )
    .unwrap_err();
    assert_eq!(err.param.as_deref(), Some("source"), "{}", err.message);
}

#[test]
fn dumps_the_database_to_a_file_the_run_can_remove_on_rollback() {
    let plan = testing::plan::<Snapshot>(
        &host(10 * GB),
        json!({"into": "snaps/s", "database": {"name": "mastodon", "connect": ["-h", "/run/postgresql"]}}),
    )
    .unwrap();
    assert_eq!(
        testing::lines(&plan)[0],
        "exec pg_dump -h /run/postgresql -Fc -f @snaps/s/mastodon-20261122T030000Z.dump mastodon (creates snaps/s/mastodon-20261122T030000Z.dump)"
    );
}

#[test]
fn needs_something_to_snapshot() {
    let err = testing::plan::<Snapshot>(&host(GB), json!({"into": "snaps/s"})).unwrap_err();
    assert!(err.message.contains("give `source`, `database` or both"));
}

#[test]
fn archives_as_tar_zst_under_a_dated_name() {
    let plan = testing::plan::<Snapshot>(
        &host(10 * GB),
        json!({"into": "snaps/s", "source": "data/media", "format": "tar.zst"}),
    )
    .unwrap();
    assert_eq!(
        testing::lines(&plan)[0],
        "archive data/media -> snaps/s/media-20261122T030000Z.tar.zst (tar.zst)"
    );
    let err = testing::plan::<Snapshot>(
        &host(10 * GB),
        json!({"into": "snaps/s", "source": "data/media", "format": "zip"}),
    )
    .unwrap_err();
    assert_eq!(err.param.as_deref(), Some("format"));
}

/// `mend lint` asks the step: every problem its parameters alone show, each
/// naming where it is, none of the host's files looked at.
#[test]
fn validate_names_what_the_parameters_alone_get_wrong() {
    let h = host(GB);
    let wrong = testing::validate::<Snapshot>(&h, json!({"into": "snaps/s", "format": "zip"}));
    let said: Vec<(Option<&str>, &str)> = wrong
        .iter()
        .map(|e| (e.param.as_deref(), e.message.as_str()))
        .collect();
    assert_eq!(
        said,
        [
            (
                None,
                "nothing to snapshot: give `source`, `database` or both"
            ),
            (
                Some("format"),
                "format `zip` is not one of dir, tar, tar.zst"
            ),
        ]
    );
    let wrong = testing::validate::<Snapshot>(
        &h,
        json!({"into": "snaps/s", "database": {"name": "synapse", "command": "dump"}}),
    );
    assert_eq!(wrong.len(), 1, "{wrong:?}");
    assert_eq!(wrong[0].param.as_deref(), Some("database.command"));
    assert!(
        wrong[0].message.contains("may not run command `dump`"),
        "{}",
        wrong[0].message
    );
    let right = testing::validate::<Snapshot>(
        &h,
        json!({"into": "snaps/s", "source": "data/media", "database": {"name": "synapse"}}),
    );
    assert!(right.is_empty(), "{right:?}");
}
