//! Bundled steps against the native tools they replace, on the same data.

use crate::common::*;

fn pg_archivecleanup() -> Option<std::path::PathBuf> {
    let mut found: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin/pg_archivecleanup"))
        .filter(|p| p.exists())
        .collect();
    found.sort();
    found.pop()
}

/// The paths a `mend plan --json` would remove, as `GRANT/name`.
fn planned_removals(ran: &Ran) -> Vec<String> {
    let v: serde_json::Value =
        serde_json::from_str(&ran.stdout).unwrap_or_else(|e| panic!("{e}: {}", ran.text()));
    let mut out: Vec<String> = v["steps"][0]["actions"]
        .as_array()
        .unwrap_or_else(|| panic!("no actions: {}", ran.stdout))
        .iter()
        .map(|a| a["path"].as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

#[test]
fn archive_cleanup_selects_what_pg_archivecleanup_does() {
    let tool = pg_archivecleanup()
        .expect("pg_archivecleanup (Debian's postgresql-15; .ci/run installs it)");
    let f = Fixture::new();
    // 10,200 segments on two timelines across log boundaries, .partial,
    // .history, .backup and compressed files, and names that only look alike.
    let mut n = 0;
    for tli in 1..=2u32 {
        for log in 0..40u32 {
            for seg in 0..=0xFFu32 {
                if tli == 2 && log < 30 {
                    continue;
                }
                let name = format!("{tli:08X}{log:08X}{seg:08X}");
                let name = match (seg % 50, tli) {
                    (7, _) => format!("{name}.gz"),
                    (8, 1) => format!("{name}.partial"),
                    _ => name,
                };
                f.write(&format!("archive/{name}"), "w");
                n += 1;
            }
        }
    }
    assert!(n >= 10_000, "{n}");
    for other in [
        "00000002.history",
        "0000000100000020000000A0.00000028.backup",
        "00000002000000210000001F.00000060.backup",
        "0000000100000000000000fe",
        "RECOVERYHISTORY",
        "00000001000000000000000Z",
        "-leading dash",
        "spaced name 000000010000000000000001",
    ] {
        f.write(&format!("archive/{other}"), "x");
    }
    let rb = f.runbook(
        "wal.toml",
        r#"
[runbook]
name = "wal"
version = "1.0.0"
summary = "archive cleanup against pg_archivecleanup"

[grants.archive]
path = "{root}/archive"
access = "write"

[[steps]]
id = "clean"
uses = "std:archive-cleanup"
grants = ["archive"]
with = { path = "archive", extension = ".gz" }
"#,
    );
    let ran = f.mend(&["--json", "plan", rb.to_str().unwrap()]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    let mine = planned_removals(&ran);
    // The step found the newest .backup itself; pg_archivecleanup is told it.
    let out = std::process::Command::new(&tool)
        .args(["-n", "-x", ".gz"])
        .arg(f.path("archive"))
        .arg("00000002000000210000001F.00000060.backup")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let prefix = format!("{}/", f.path("archive").display());
    let mut native: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| format!("archive/{}", l.strip_prefix(&prefix).unwrap_or(l)))
        .collect();
    native.sort();
    assert!(native.len() > 5_000, "too few to compare: {}", native.len());
    assert_eq!(mine.len(), native.len(), "counts differ");
    assert_eq!(mine, native);
}
