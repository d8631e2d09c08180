//! Every runbook shipped in runbooks/ rehearses cleanly on its fixture: it
//! runs on copies, rolls back, and the copies end byte-identical.

use crate::common::*;

fn repo(rel: &str) -> String {
    format!("{}/../{rel}", env!("CARGO_MANIFEST_DIR"))
}

fn rehearse(f: &Fixture, runbook: &str, sets: &[String]) -> Ran {
    let mut args = vec!["rehearse".to_string(), repo(runbook)];
    for s in sets {
        args.push("--set".into());
        args.push(s.clone());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    f.mend(&args)
}

#[test]
fn mastodon_maintenance_rehearses_on_a_generated_instance() {
    let f = Fixture::new();
    mend::demo::generate(f.dir.path(), std::time::SystemTime::now()).unwrap();
    let system = f.path("mastodon/public/system");
    let ran = rehearse(
        &f,
        "runbooks/mastodon/maintenance.toml",
        &[format!("system={}", system.display())],
    );
    assert_eq!(ran.code, 0, "{}", ran.text());
    assert!(ran.stdout.contains("rehearsal passed"), "{}", ran.stdout);
    assert!(
        ran.stderr.contains("free space: "),
        "the disk-space report is missing:\n{}",
        ran.stderr
    );
}

#[test]
fn wal_archive_cleanup_rehearses_on_a_generated_archive() {
    let f = Fixture::new();
    for seg in 0..64u32 {
        let name = format!("archive/00000001000000000000{seg:04X}");
        let p = f.write(&name, "wal");
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(30 * 86_400);
        std::fs::File::options()
            .write(true)
            .open(p)
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    f.write(
        "archive/000000010000000000000030.00000028.backup",
        "START WAL LOCATION",
    );
    f.write(
        "archive/00000002.history",
        "1\t0/30000000\tno recovery target specified",
    );
    let ran = rehearse(
        &f,
        "runbooks/postgres/wal-archive-cleanup.toml",
        &[format!("archive={}", f.path("archive").display())],
    );
    assert_eq!(ran.code, 0, "{}", ran.text());
    assert!(
        ran.stdout.contains("rolled back 48 actions"),
        "{}",
        ran.stdout
    );
    assert!(ran.stdout.contains("rehearsal passed"), "{}", ran.stdout);
}
