use mend_sdk::Access;
use mend_sdk::testing::{self, FakeHost};
use serde_json::json;

use super::Release;

const NOW: i64 = 1_795_316_400; // 2026-11-22T03:00:00Z
const GB: u64 = 1 << 30;

fn world(free: u64) -> FakeHost {
    FakeHost::new(NOW)
        .grant("dist", Access::Read)
        .grant("srv", Access::Write)
        .command("migrate")
        .file("dist/app-2.tar.gz", 4 << 20, NOW - 3600)
        .dir("srv/app", NOW)
        .file("srv/app/server.py", 900, NOW)
        .file("srv/app/app.conf", 20, NOW)
        .dir("srv/app/public/system", NOW)
        .free("srv", free, 100 * GB)
}

#[test]
fn unpacks_beside_carries_swaps_and_migrates_in_that_order() {
    let plan = testing::plan::<Release>(
        &world(10 * GB),
        json!({
            "archive": "dist/app-2.tar.gz", "current": "srv/app", "root": "app-2",
            "carry": ["app.conf", "public/system"],
            "migrate": {"command": "migrate", "args": ["up"], "undo": ["down"]},
        }),
    )
    .unwrap();
    assert_eq!(
        testing::lines(&plan),
        [
            "extract dist/app-2.tar.gz -> srv/app.release-app-2",
            "rename srv/app/app.conf -> srv/app.release-app-2/app-2/app.conf",
            "rename srv/app/public/system -> srv/app.release-app-2/app-2/public/system",
            "swap srv/app <-> srv/app.release-app-2/app-2",
            "remove srv/app.release-app-2",
            "exec migrate up (undo: migrate down)",
        ]
    );
    let text = plan.summary.join("\n");
    assert!(
        text.contains("release app-2: unpack dist/app-2.tar.gz (4.2 MB, tar.gz)"),
        "{text}"
    );
    assert!(text.contains("carry app.conf, public/system"), "{text}");
    assert!(text.contains("undone by migrate down"), "{text}");
}

#[test]
fn a_migration_without_undo_is_called_irreversible() {
    let plan = testing::plan::<Release>(
        &world(10 * GB),
        json!({"archive": "dist/app-2.tar.gz", "current": "srv/app",
               "migrate": {"command": "migrate", "args": ["up"]}}),
    )
    .unwrap();
    assert!(plan.summary.join("\n").contains("IRREVERSIBLE"));
    assert_eq!(testing::lines(&plan).last().unwrap(), "exec migrate up");
}

#[test]
fn a_carried_path_that_is_missing_stops_the_plan() {
    let err = testing::plan::<Release>(
        &world(10 * GB),
        json!({"archive": "dist/app-2.tar.gz", "current": "srv/app", "carry": [".env.production"]}),
    )
    .unwrap_err();
    assert!(
        err.message.starts_with(
            "srv/app/.env.production does not exist, so the new release would start without it"
        ),
        "{}",
        err.message
    );
    assert_eq!(err.param.as_deref(), Some("carry"));
}

#[test]
fn carry_entries_must_stay_inside_the_release() {
    for bad in ["../etc", "/etc/passwd", "a/../../b", ""] {
        let err = testing::plan::<Release>(
            &world(10 * GB),
            json!({"archive": "dist/app-2.tar.gz", "current": "srv/app", "carry": [bad]}),
        )
        .unwrap_err();
        assert!(
            err.message.contains("is not a path inside the release"),
            "{bad}: {}",
            err.message
        );
    }
}

#[test]
fn refuses_without_room_to_unpack_and_names_both_sizes() {
    let err = testing::plan::<Release>(
        &world(1 << 20),
        json!({"archive": "dist/app-2.tar.gz", "current": "srv/app"}),
    )
    .unwrap_err();
    assert_eq!(
        err.message,
        "not enough space to unpack dist/app-2.tar.gz beside srv/app: it needs at least 71.3 MB (4.2 MB and 67.1 MB headroom), 1.0 MB is free"
    );
}

#[test]
fn a_leftover_staging_directory_is_named_with_the_fix() {
    let host = world(10 * GB).dir("srv/app.release-app-2", NOW);
    let err = testing::plan::<Release>(
        &host,
        json!({"archive": "dist/app-2.tar.gz", "current": "srv/app"}),
    )
    .unwrap_err();
    assert!(
        err.message.contains("srv/app.release-app-2 already exists"),
        "{}",
        err.message
    );
    assert!(err.hint.unwrap().contains("rm -r srv/app.release-app-2"));
}

#[test]
fn a_first_install_renames_the_release_into_place() {
    let host = FakeHost::new(NOW)
        .grant("dist", Access::Read)
        .grant("srv", Access::Write)
        .file("dist/app-1.tar", 1000, NOW)
        .dir("srv", NOW)
        .free("srv", 10 * GB, 100 * GB);
    let plan = testing::plan::<Release>(
        &host,
        json!({"archive": "dist/app-1.tar", "current": "srv/app", "root": "app-1"}),
    )
    .unwrap();
    assert_eq!(
        testing::lines(&plan),
        [
            "extract dist/app-1.tar -> srv/app.release-app-1",
            "rename srv/app.release-app-1/app-1 -> srv/app",
            "remove srv/app.release-app-1",
        ]
    );
}

#[test]
fn an_unknown_extension_asks_for_format() {
    let host = world(10 * GB).file("dist/app.zip", 10, NOW);
    let err = testing::plan::<Release>(
        &host,
        json!({"archive": "dist/app.zip", "current": "srv/app"}),
    )
    .unwrap_err();
    assert_eq!(err.param.as_deref(), Some("format"));
}
