//! Nothing lost, nothing doubled: each test guards one promise of
//! docs/08-promises.md that a held-out check once broke (names that are not
//! UTF-8, dependent renames on resume, commands that `create` a file, a step
//! squatting on the run's trash, archives whose links chain out, FIFOs, the
//! times of copied symlinks).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::common::*;

/// 2026-11-18 17:46:40 UTC: the clock every run here sees.
pub(crate) const NOW: i64 = 1_795_000_000;

/// A hang must fail the test, not hang the suite.
const HANG: Duration = Duration::from_secs(90);

fn at(f: &Fixture, rel: &[u8]) -> PathBuf {
    f.dir.path().join(OsStr::from_bytes(rel))
}

/// Write a file whose name may be any bytes, with a modification time.
pub(crate) fn put(f: &Fixture, rel: &[u8], contents: &str, mtime: i64) -> PathBuf {
    let p = at(f, rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, contents).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&p)
        .unwrap()
        .set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(mtime as u64))
        .unwrap();
    p
}

/// Directory times fixed too, so rollbacks can be compared with times.
pub(crate) fn fix_dir_times(f: &Fixture, rel: &str) {
    let status = std::process::Command::new("find")
        .arg(f.path(rel))
        .args([
            "-type",
            "d",
            "-exec",
            "touch",
            "-d",
            "2026-01-02 03:04:05",
            "{}",
            "+",
        ])
        .status()
        .unwrap();
    assert!(status.success());
}

fn states(f: &Fixture, id: &str) -> Vec<String> {
    let show: serde_json::Value =
        serde_json::from_str(&f.mend(&["--json", "show", id]).stdout).unwrap();
    show["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["state"].as_str().unwrap().to_string())
        .collect()
}

/// The cull of `cache` (disposable or trash) started with `--now NOW` and
/// held at pause point `point`, its `cache` times fixed first: for tests
/// that change the cache exactly there, as a live service would.
pub(crate) fn held_cull(f: &Fixture, disposable: bool, point: &str) -> Held {
    std::fs::create_dir_all(f.path("check")).unwrap();
    fix_dir_times(f, "cache");
    let rb = f.runbook(
        "cull.toml",
        &CULL
            .replace("{disposable}", if disposable { "true" } else { "false" })
            .replace("{verify}", "pass"),
    );
    let now = NOW.to_string();
    Held::start(f, &["--now", &now, "run", rb.to_str().unwrap()], point)
}

pub(crate) const CULL: &str = r#"[runbook]
name = "cull-odd-names"
version = "1.0.0"
summary = "cull a cache whose names are not all UTF-8"

[grants.cache]
path = "{root}/cache"
access = "write"
disposable = {disposable}

[grants.check]
path = "{root}/check"
access = "read"

[[steps]]
id = "cull"
uses = "std:cache-cull"
grants = ["cache"]
with = { path = "cache", days = 7 }

[[steps]]
id = "then"
{guest:scripted}
grants = ["check"]
with = { verify = "{verify}" }
"#;

/// (name, young): young files stay, old ones go, whatever their bytes.
const ODD: &[(&[u8], bool)] = &[
    (b"cache/d1/old.jpg", false),
    (b"cache/d1/young\xff.jpg", true),
    (b"cache/d2/old\xff.jpg", false),
    (b"cache/d3/young\nnewline.jpg", true),
    (b"cache/d4/young\xed\xa0\x80 surrogate.jpg", true),
    (b"cache/d5/old\xed\xa0\x80 surrogate.jpg", false),
    (b"cache/d6/old back\\slash.jpg", false),
    (b"cache/d6/\xfe young.jpg", true),
];

fn odd_cache(f: &Fixture) {
    for (name, young) in ODD {
        let mtime = if *young { NOW - 60 } else { 1000 };
        put(f, name, &String::from_utf8_lossy(name), mtime);
    }
    std::fs::create_dir_all(f.path("check")).unwrap();
    fix_dir_times(f, "cache");
}

#[test]
fn a_walk_never_hides_a_name_that_is_not_utf8() {
    let now = NOW.to_string();
    for disposable in ["true", "false"] {
        // Committed: every young file and its directory stay, every old
        // file goes, whatever bytes its name holds.
        let f = Fixture::new();
        odd_cache(&f);
        let rb = f.runbook(
            "cull.toml",
            &CULL
                .replace("{disposable}", disposable)
                .replace("{verify}", "pass"),
        );
        let ran = f.mend(&["--now", &now, "run", rb.to_str().unwrap()]);
        assert_eq!(ran.code, 0, "disposable={disposable}: {}", ran.text());
        for (name, young) in ODD {
            let p = at(&f, name);
            assert_eq!(
                p.exists(),
                *young,
                "disposable={disposable}: {} {}",
                String::from_utf8_lossy(name),
                if *young { "was lost" } else { "was kept" }
            );
            if *young {
                assert_eq!(
                    std::fs::read_to_string(&p).unwrap(),
                    String::from_utf8_lossy(name)
                );
            }
        }
        for (dir, stays) in [("d1", true), ("d2", false), ("d3", true), ("d5", false)] {
            assert_eq!(f.path(&format!("cache/{dir}")).exists(), stays, "{dir}");
        }
        // The plan names the odd files escaped, never as raw bytes.
        let f = Fixture::new();
        odd_cache(&f);
        let rb = f.runbook(
            "cull.toml",
            &CULL
                .replace("{disposable}", disposable)
                .replace("{verify}", "pass"),
        );
        let plan = f.mend(&["--now", &now, "plan", "--all", rb.to_str().unwrap()]);
        assert_eq!(plan.code, 0, "{}", plan.text());
        // d2 goes whole (its one file is old); d6's old file alone.
        assert!(
            plan.stdout.contains("cache/d2 ") && plan.stdout.contains("all 1 file in it"),
            "{}",
            plan.stdout
        );
        assert!(
            plan.stdout.contains("cache/d6/old back\\\\slash.jpg"),
            "{}",
            plan.stdout
        );
        assert!(!plan.stdout.contains("young"), "{}", plan.stdout);
    }
    // With trash: a failed run rolls back to the same bytes and times, and
    // a rehearsal proves it too.
    let f = Fixture::new();
    odd_cache(&f);
    let before = tree(&f.path("cache"), true);
    let rb = f.runbook(
        "cull.toml",
        &CULL
            .replace("{disposable}", "false")
            .replace("{verify}", "fail"),
    );
    let ran = f.mend(&["--now", &now, "run", rb.to_str().unwrap()]);
    assert_eq!(ran.code, 1, "{}", ran.text());
    assert_same(&before, &tree(&f.path("cache"), true), "after the rollback");
    let rb = f.runbook(
        "cull.toml",
        &CULL
            .replace("{disposable}", "false")
            .replace("{verify}", "pass"),
    );
    let ran = f.mend(&["--now", &now, "rehearse", rb.to_str().unwrap()]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    assert!(ran.stdout.contains("rehearsal passed"), "{}", ran.stdout);
    assert_same(
        &before,
        &tree(&f.path("cache"), true),
        "after the rehearsal",
    );
}

/// A release switch: the live release moves aside, the next one moves in.
/// The second rename depends on the first (it needs `current` free).
const SWITCH: &str = r#"[runbook]
name = "switch"
version = "1.0.0"
summary = "switch releases by two dependent renames"

[grants.data]
path = "{root}/data"
access = "write"

[[steps]]
id = "prepare"
{guest:scripted}
grants = ["data"]
with = { actions = [{ create_dir = "data/logs" }] }

[[steps]]
id = "switch"
{guest:scripted}
grants = ["data"]
with = { actions = [
  { rename = ["data/app/current", "data/app/previous"] },
  { rename = ["data/app/next", "data/app/current"] },
] }
"#;

fn releases(f: &Fixture) -> PathBuf {
    f.write("data/app/current/VERSION", "1\n");
    f.write("data/app/next/VERSION", "2\n");
    fix_dir_times(f, "data");
    f.runbook("switch.toml", SWITCH)
}

/// Every kill point of a plan: before and after each action of each step.
fn kill_points(actions_per_step: &[u32]) -> Vec<String> {
    let mut points = Vec::new();
    for (step, n) in actions_per_step.iter().enumerate() {
        for seq in 0..*n {
            for phase in ["intent", "perform"] {
                points.push(format!("{phase}:{step}:{seq}"));
            }
        }
    }
    points
}

#[test]
fn dependent_renames_resume_exactly_once_and_roll_back_whole() {
    let want = {
        let f = Fixture::new();
        let rb = releases(&f);
        let ran = f.mend(&["run", rb.to_str().unwrap()]);
        assert_eq!(ran.code, 0, "{}", ran.text());
        assert_eq!(
            std::fs::read_to_string(f.path("data/app/current/VERSION")).unwrap(),
            "2\n"
        );
        tree(&f.path("data"), false)
    };
    for point in kill_points(&[1, 2]) {
        // Resumed: the switch ends as an uninterrupted run's does.
        let f = Fixture::new();
        let rb = releases(&f);
        let ran = f.mend_env(&["run", rb.to_str().unwrap()], &[("MEND_CRASH_AT", &point)]);
        assert_eq!(
            ran.code,
            -1,
            "{point}: expected a SIGKILL, got {}",
            ran.text()
        );
        let id = started_run(&ran);
        let resumed = f.mend(&["resume", &id]);
        assert_eq!(resumed.code, 0, "{point}: {}", resumed.text());
        assert_same(&want, &tree(&f.path("data"), false), &point);
        assert_eq!(states(&f, &id), vec!["done"; 3], "{point}");

        // Rolled back instead: the release that was live is live again.
        let f = Fixture::new();
        let rb = releases(&f);
        let before = tree(&f.path("data"), true);
        let ran = f.mend_env(&["run", rb.to_str().unwrap()], &[("MEND_CRASH_AT", &point)]);
        assert_eq!(ran.code, -1, "{point}: {}", ran.text());
        let id = started_run(&ran);
        let rolled = f.mend(&["rollback", &id]);
        assert_eq!(rolled.code, 0, "{point}: {}", rolled.text());
        assert_same(&before, &tree(&f.path("data"), true), &point);
    }
}

const DUMP: &str = r#"[runbook]
name = "dump"
version = "1.0.0"
summary = "a command that creates a file, between two other actions"

[grants.data]
path = "{root}/data"
access = "write"

[commands.dump]
program = "{root}/bin/dump.sh"
changes = [["@data/dump.sql"]]

[[steps]]
id = "dump"
{guest:scripted}
grants = ["data"]
commands = ["dump"]
with = { actions = [
  { create_dir = "data/before" },
  { exec = ["dump", ["@data/dump.sql"]], creates = "data/dump.sql" },
  { create_dir = "data/after" },
] }
"#;

fn dump_fixture(f: &Fixture) -> PathBuf {
    std::fs::create_dir_all(f.path("data")).unwrap();
    let script = f.write(
        "bin/dump.sh",
        &format!(
            "#!/bin/sh\necho ran >> '{}'\nprintf 'dump\\n' > \"$1\"\n",
            f.path("count").display()
        ),
    );
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    fix_dir_times(f, "data");
    f.runbook("dump.toml", DUMP)
}

fn runs(f: &Fixture) -> usize {
    std::fs::read_to_string(f.path("count"))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

#[test]
fn a_command_that_creates_a_file_runs_once_across_a_kill() {
    for point in kill_points(&[3]) {
        let f = Fixture::new();
        let rb = dump_fixture(&f);
        let ran = f.mend_env(&["run", rb.to_str().unwrap()], &[("MEND_CRASH_AT", &point)]);
        assert_eq!(ran.code, -1, "{point}: {}", ran.text());
        let id = started_run(&ran);
        let resumed = f.mend(&["resume", &id]);
        assert_eq!(resumed.code, 0, "{point}: {}", resumed.text());
        assert_eq!(runs(&f), 1, "{point}: the command ran {} times", runs(&f));
        assert_eq!(
            std::fs::read_to_string(f.path("data/dump.sql")).unwrap(),
            "dump\n"
        );
        assert_eq!(states(&f, &id), vec!["done"; 3], "{point}");

        let f = Fixture::new();
        let rb = dump_fixture(&f);
        let before = tree(&f.path("data"), true);
        let ran = f.mend_env(&["run", rb.to_str().unwrap()], &[("MEND_CRASH_AT", &point)]);
        assert_eq!(ran.code, -1, "{point}: {}", ran.text());
        let id = started_run(&ran);
        let rolled = f.mend(&["rollback", &id]);
        assert_eq!(rolled.code, 0, "{point}: {}", rolled.text());
        assert_same(&before, &tree(&f.path("data"), true), &point);
        assert!(runs(&f) <= 1, "{point}: rollback ran the command again");
    }
}

const SQUAT: &str = r#"[runbook]
name = "squat"
version = "1.0.0"
summary = "a cull, then a step that plans inside the run's trash"

[grants.data]
path = "{root}/data"
access = "write"

[[steps]]
id = "cull"
uses = "std:cache-cull"
grants = ["data"]
with = { path = "data/cache", days = 7 }

[[steps]]
id = "squat"
{guest:trash-squat}
grants = ["data"]
with = { grant = "data", victim = "data/victim.txt", step = 1 }

[[steps]]
id = "check"
{guest:scripted}
grants = ["data"]
with = { verify = "{verify}" }
"#;

#[test]
pub(crate) fn a_later_step_cannot_squat_on_the_runs_trash() {
    for verify in ["pass", "fail"] {
        let f = Fixture::new();
        put(&f, b"data/cache/old.jpg", "old", 1000);
        put(&f, b"data/victim.txt", "victim", 1000);
        fix_dir_times(&f, "data");
        let before = tree(&f.path("data"), true);
        let rb = f.runbook("squat.toml", &SQUAT.replace("{verify}", verify));
        let ran = f.mend(&["--now", &NOW.to_string(), "run", rb.to_str().unwrap()]);
        assert_eq!(ran.code, 1, "verify={verify}: {}", ran.text());
        assert!(
            ran.text().contains("belongs to mend"),
            "verify={verify}: the refusal should say why:\n{}",
            ran.text()
        );
        // The cull is undone and the victim never moved.
        assert_same(&before, &tree(&f.path("data"), true), verify);
    }
}

/// An archive entry: its name, and its link target (`None`: a directory).
type Entry<'a> = (&'a str, Option<&'a str>);

/// A tar built with Python's tarfile.
fn evil_tar(f: &Fixture, name: &str, entries: &[Entry]) {
    let mut script = String::from("import tarfile,sys\nt=tarfile.open(sys.argv[1],'w')\n");
    for (entry, target) in entries {
        script += &match target {
            None => format!(
                "i=tarfile.TarInfo('{entry}');i.type=tarfile.DIRTYPE;i.mode=0o755;t.addfile(i)\n"
            ),
            Some(t) => format!(
                "i=tarfile.TarInfo('{entry}');i.type=tarfile.SYMTYPE;i.linkname='{t}';t.addfile(i)\n"
            ),
        };
    }
    script += "t.close()\n";
    std::fs::create_dir_all(f.path("data")).unwrap();
    let status = std::process::Command::new("python3")
        .args(["-c", &script])
        .arg(f.path(&format!("data/{name}")))
        .status()
        .unwrap();
    assert!(status.success());
}

const EXTRACT: &str = r#"[runbook]
name = "unpack"
version = "1.0.0"
summary = "unpack an archive"

[grants.data]
path = "{root}/data"
access = "write"

[[steps]]
id = "unpack"
{guest:scripted}
grants = ["data"]
with = { actions = [{ extract = ["data/{archive}", "data/unpacked", "tar"] }] }
"#;

#[test]
fn an_archive_whose_links_chain_out_of_the_grant_is_refused() {
    let cases: &[(&str, &[Entry])] = &[
        // A link through a link the archive made: `d/up/y` lands at the
        // root, where `../..` leaves the grant.
        (
            "through.tar",
            &[("d", None), ("d/up", Some("..")), ("d/up/y", Some("../.."))],
        ),
        // A target that climbs through a link: `d/up/..` is above the root.
        (
            "climb.tar",
            &[("d", None), ("d/up", Some("..")), ("x", Some("d/up/../.."))],
        ),
        // The link it climbs through comes later in the archive.
        (
            "later.tar",
            &[
                ("d", None),
                ("x", Some("d/later/..")),
                ("d/later", Some("..")),
            ],
        ),
    ];
    for (archive, entries) in cases {
        let f = Fixture::new();
        evil_tar(&f, archive, entries);
        let rb = f.runbook("unpack.toml", &EXTRACT.replace("{archive}", archive));
        let ran = f.mend(&["run", rb.to_str().unwrap()]);
        assert_eq!(ran.code, 1, "{archive}: {}", ran.text());
        assert!(
            ran.text().contains("out of the archive")
                || ran.text().contains("mend never unpacks through a link"),
            "{archive}: {}",
            ran.text()
        );
        assert!(
            !f.path("data/unpacked").exists(),
            "{archive}: left in place"
        );
        // Nothing anywhere in the grant points out of it.
        let leftovers = std::process::Command::new("find")
            .arg(f.path("data"))
            .args(["-type", "l"])
            .output()
            .unwrap();
        assert!(
            leftovers.stdout.is_empty(),
            "{archive}: links left: {}",
            String::from_utf8_lossy(&leftovers.stdout)
        );
    }
    // A good archive with links inside it still unpacks.
    let f = Fixture::new();
    evil_tar(
        &f,
        "good.tar",
        &[
            ("d", None),
            ("d/e", None),
            ("d/up", Some("..")),
            ("d/e/side", Some("../up")),
        ],
    );
    let rb = f.runbook("unpack.toml", &EXTRACT.replace("{archive}", "good.tar"));
    let ran = f.mend(&["run", rb.to_str().unwrap()]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    assert_eq!(
        std::fs::read_link(f.path("data/unpacked/d/e/side")).unwrap(),
        PathBuf::from("../up")
    );
}

const FIFO: &str = r#"[runbook]
name = "fifo"
version = "1.0.0"
summary = "a grant holding a FIFO"

[grants.data]
path = "{root}/data"
access = "write"

[[steps]]
id = "touch-fifo"
{guest:scripted}
grants = ["data"]
timeout = "3s"
with = { inspect = {inspect}, actions = {actions} }
"#;

fn fifo_fixture(f: &Fixture, inspect: &str, actions: &str) -> PathBuf {
    std::fs::create_dir_all(f.path("data/tree")).unwrap();
    f.write("data/tree/file", "file\n");
    for p in ["data/fifo", "data/tree/fifo"] {
        let status = std::process::Command::new("mkfifo")
            .arg(f.path(p))
            .status()
            .unwrap();
        assert!(status.success());
    }
    f.runbook(
        "fifo.toml",
        &FIFO
            .replace("{inspect}", inspect)
            .replace("{actions}", actions),
    )
}

#[test]
fn a_fifo_in_a_grant_never_hangs_mend() {
    // The host's digest refuses it by name, at once.
    let f = Fixture::new();
    let rb = fifo_fixture(&f, r#"["digest:data/fifo"]"#, "[]");
    let ran = f.mend_within(&["plan", rb.to_str().unwrap()], HANG);
    assert_eq!(ran.code, 0, "{}", ran.text());
    assert!(
        ran.stdout.contains("digest data/fifo: error") && ran.stdout.contains("FIFO"),
        "{}",
        ran.stdout
    );
    // A read through WASI blocks in the kernel: the step's deadline ends it.
    let f = Fixture::new();
    let rb = fifo_fixture(&f, r#"["read:data/fifo"]"#, "[]");
    let ran = f.mend_within(&["plan", rb.to_str().unwrap()], HANG);
    assert_ne!(ran.code, 0, "{}", ran.text());
    assert!(
        ran.text().contains("killed at its deadline of 3 s"),
        "{}",
        ran.text()
    );
    // A copy recreates a FIFO as a FIFO (as `cp -a` does), never reading it.
    let f = Fixture::new();
    let rb = fifo_fixture(
        &f,
        "[]",
        r#"[{ copy = ["data/fifo", "data/fifo-copy"] }, { copy = ["data/tree", "data/tree-copy"] }]"#,
    );
    let ran = f.mend_within(&["run", rb.to_str().unwrap()], HANG);
    assert_eq!(ran.code, 0, "{}", ran.text());
    use std::os::unix::fs::FileTypeExt as _;
    for p in ["data/fifo-copy", "data/tree-copy/fifo"] {
        let md = std::fs::symlink_metadata(f.path(p)).unwrap();
        assert!(md.file_type().is_fifo(), "{p} is not a FIFO");
    }
    // Killed before a copy was recorded done, then rolled back: the
    // rollback never performs the copy again, so it cannot hang on it.
    let f = Fixture::new();
    let rb = fifo_fixture(&f, "[]", r#"[{ copy = ["data/tree", "data/tree-copy"] }]"#);
    let before = tree(&f.path("data"), true);
    let ran = f.mend_env(
        &["run", rb.to_str().unwrap()],
        &[("MEND_CRASH_AT", "intent:0:0")],
    );
    assert_eq!(ran.code, -1, "{}", ran.text());
    let id = started_run(&ran);
    let rolled = f.mend_within(&["rollback", &id], HANG);
    assert_eq!(rolled.code, 0, "{}", rolled.text());
    assert_same(&before, &tree(&f.path("data"), true), "after the rollback");
}

const COPY_LINK: &str = r#"[runbook]
name = "copy-link"
version = "1.0.0"
summary = "copy a symlink and a tree holding one"

[grants.data]
path = "{root}/data"
access = "write"

[[steps]]
id = "copy"
{guest:scripted}
grants = ["data"]
with = { actions = [
  { copy = ["data/link", "data/link-copy"] },
  { copy = ["data/snap", "data/restored"] },
] }
"#;

#[test]
fn a_copied_symlink_keeps_its_own_mtime() {
    let f = Fixture::new();
    f.write("data/target", "t\n");
    std::os::unix::fs::symlink("target", f.path("data/link")).unwrap();
    f.write("data/snap/file", "f\n");
    std::os::unix::fs::symlink("file", f.path("data/snap/link")).unwrap();
    for p in ["data/link", "data/snap/link"] {
        let status = std::process::Command::new("touch")
            .args(["-h", "-d", "@1700000000"])
            .arg(f.path(p))
            .status()
            .unwrap();
        assert!(status.success());
    }
    let rb = f.runbook("copy.toml", COPY_LINK);
    let ran = f.mend(&["run", rb.to_str().unwrap()]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    for p in ["data/link-copy", "data/restored/link"] {
        let md = std::fs::symlink_metadata(f.path(p)).unwrap();
        assert!(md.file_type().is_symlink(), "{p}");
        assert_eq!(md.mtime(), 1_700_000_000, "{p} lost its own mtime");
    }
}

#[test]
fn a_path_is_journaled_once_per_action() {
    // Long, unique names (a plan of 100,000 such actions once journaled
    // 6.7 KB each): each must appear once in the whole journal.
    let f = Fixture::new();
    let deep = "deep-directory-name-".repeat(10);
    let mut files = Vec::new();
    for i in 0..40 {
        let rel = format!(
            "data/cache/{deep}{}/{}-{i:03}.jpg",
            i % 4,
            "long-file-name-".repeat(12)
        );
        put(&f, rel.as_bytes(), "x", 1000);
        files.push(rel);
    }
    // A young file in each folder: the old ones go one by one, not with
    // their folder whole.
    for k in 0..4 {
        put(
            &f,
            format!("data/cache/{deep}{k}/young").as_bytes(),
            "y",
            NOW - 60,
        );
    }
    let rb = f.runbook(
        "cull.toml",
        r#"[runbook]
name = "cull-long"
version = "1.0.0"
summary = "cull long paths"

[grants.data]
path = "{root}/data"
access = "write"

[[steps]]
id = "cull"
uses = "std:cache-cull"
grants = ["data"]
with = { path = "data/cache", days = 7 }
"#,
    );
    let ran = f.mend(&["--now", &NOW.to_string(), "run", rb.to_str().unwrap()]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    let db = rusqlite::Connection::open(f.state().join("journal.db")).unwrap();
    let mut text = String::new();
    for sql in [
        "SELECT plan_json FROM steps",
        "SELECT action_json || ' ' || coalesce(undo_json, '') FROM actions",
        "SELECT message FROM events",
    ] {
        let mut stmt = db.prepare(sql).unwrap();
        let rows = stmt
            .query_map([], |r| r.get::<_, Option<String>>(0))
            .unwrap();
        for r in rows {
            text += &r.unwrap().unwrap_or_default();
            text.push('\n');
        }
    }
    // Batches of removals keep their actions and undo data compressed.
    let mut stmt = db.prepare("SELECT actions, undo FROM bulk").unwrap();
    let blobs = stmt
        .query_map([], |r| {
            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Option<Vec<u8>>>(1)?))
        })
        .unwrap();
    for b in blobs {
        let (actions, undo) = b.unwrap();
        for blob in [Some(actions), undo].into_iter().flatten() {
            text += &String::from_utf8(zstd::decode_all(&blob[..]).unwrap()).unwrap();
        }
    }
    for file in &files {
        assert_eq!(
            text.matches(file.as_str()).count(),
            1,
            "{file} is journaled more than once"
        );
    }
}
