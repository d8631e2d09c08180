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

/// Seconds since the epoch, with fractions.
fn now_f64() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn set_mtime(path: &std::path::Path, at: f64) {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(at);
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

#[test]
fn cache_cull_selects_what_find_mmin_does() {
    let f = Fixture::new();
    const N: u64 = 90; // minutes
    let mut paths = Vec::new();
    for i in 0..10_400u32 {
        let name = match i % 5 {
            0 => format!("media_attachments/{:03}/file {i}.png", i % 97),
            1 => format!("media_attachments/{:03}/-dash-{i}", i % 89),
            2 => format!("accounts/ünï {}/{i}.jpg", i % 13),
            3 => format!("preview_cards/{i}"),
            _ => format!("top-{i}"),
        };
        let p = f.write(&format!("cache/{name}"), "c");
        // Ages spread over 0..3 hours, never exactly on a whole second.
        paths.push((p, (i as f64 * 7.0) % 10_800.0 + 0.25));
    }
    // Boundary files, half a second either side of the cut.
    for (name, age) in [
        ("edge/younger", N as f64 * 60.0 - 0.5),
        ("edge/older", N as f64 * 60.0 + 0.5),
    ] {
        paths.push((f.write(&format!("cache/{name}"), "e"), age));
    }
    // A symlink out of the grant, old: it may be removed itself; its target never.
    std::fs::create_dir_all(f.path("outside")).unwrap();
    f.write("outside/precious", "keep me");
    std::os::unix::fs::symlink(f.path("outside"), f.path("cache/escape")).unwrap();
    let rb = f.runbook(
        "cull.toml",
        &r#"
[runbook]
name = "cull"
version = "1.0.0"
summary = "cache-cull against find -mmin"

[grants.cache]
path = "{root}/cache"
access = "write"

[[steps]]
id = "cull"
uses = "std:cache-cull"
grants = ["cache"]
with = { path = "cache", minutes = MINUTES, remove_empty_dirs = false }
"#
        .replace("MINUTES", &N.to_string()),
    );
    // A reference second a little ahead: mtimes are set relative to it, then
    // find runs just after it, so its clock and `--now` agree to well under
    // the half second that separates the boundary files from the cut. On a
    // loaded machine find may start late: then try again with a new second.
    let (t, out) = (0..5)
        .find_map(|_| {
            let t = now_f64().ceil() as i64 + 1;
            for (p, age) in &paths {
                set_mtime(p, t as f64 - age);
            }
            while now_f64() < t as f64 + 0.01 {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            let out = std::process::Command::new("find")
                .arg(f.path("cache"))
                .args(["-type", "f", "-mmin", &format!("+{N}")])
                .output()
                .unwrap();
            (now_f64() < t as f64 + 0.4).then_some((t, out))
        })
        .expect("find never ran within 0.4 s of its reference second");
    let prefix = format!("{}/", f.path("cache").display());
    let mut native: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| format!("cache/{}", l.strip_prefix(&prefix).unwrap()))
        .collect();
    native.sort();
    let ran = f.mend(&[
        "--json",
        "--now",
        &t.to_string(),
        "plan",
        rb.to_str().unwrap(),
    ]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    // find -type f lists regular files: leave the symlink out of the comparison.
    let mine: Vec<String> = planned_removals(&ran)
        .into_iter()
        .filter(|p| p != "cache/escape")
        .collect();
    assert!(
        native.contains(&"cache/edge/older".to_string())
            && !native.contains(&"cache/edge/younger".to_string())
    );
    assert!(native.len() > 4_000, "{}", native.len());
    assert_eq!(mine.len(), native.len());
    assert_eq!(mine, native);
    // And the run removes them, never through the symlink.
    let ran = f.mend(&["--now", &t.to_string(), "run", rb.to_str().unwrap()]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    assert!(!f.path("cache/edge/older").exists() && f.path("cache/edge/younger").exists());
    assert_eq!(
        std::fs::read_to_string(f.path("outside/precious")).unwrap(),
        "keep me"
    );
}

#[test]
fn checksum_verify_agrees_with_sha256sum_c() {
    let f = Fixture::new();
    let names = [
        "a file.tar.gz",
        "-dash.zip",
        "ünïcødé.txt",
        "gone.txt",
        "sub/nested.bin",
    ];
    for (i, n) in names.iter().enumerate() {
        f.write(
            &format!("rel/{n}"),
            &format!("content {i}\n").repeat(1000 * (i + 1)),
        );
    }
    let rel = f.path("rel");
    let sums = std::process::Command::new("sh")
        .current_dir(&rel)
        .args(["-c", "sha256sum -- 'a file.tar.gz' -dash.zip ünïcødé.txt gone.txt sub/nested.bin > SHA256SUMS && echo 'not a checksum line' >> SHA256SUMS"])
        .status()
        .unwrap();
    assert!(sums.success());
    let rb = f.runbook(
        "verify.toml",
        r#"
[runbook]
name = "verify"
version = "1.0.0"
summary = "checksum-verify against sha256sum -c"

[grants.rel]
path = "{root}/rel"
access = "read"

[[steps]]
id = "verify"
uses = "std:checksum-verify"
grants = ["rel"]
with = { list = "rel/SHA256SUMS" }
"#,
    );
    let native = |dir: &std::path::Path| {
        let out = std::process::Command::new("sha256sum")
            .current_dir(dir)
            .args(["-c", "SHA256SUMS"])
            .output()
            .unwrap();
        let failed: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(": FAILED"))
            .map(|l| format!("rel/{}", l.split(": FAILED").next().unwrap()))
            .collect();
        (out.status.success(), failed)
    };
    // All good: both pass.
    let (ok, failed) = native(&rel);
    assert!(ok && failed.is_empty());
    let ran = f.mend(&["plan", rb.to_str().unwrap()]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    assert!(
        ran.stdout.contains("verified 5 files: 5 OK"),
        "{}",
        ran.stdout
    );
    // One file changed, one gone: both fail on the same two files.
    f.write("rel/-dash.zip", "tampered\n");
    std::fs::remove_file(rel.join("gone.txt")).unwrap();
    let (ok, mut failed) = native(&rel);
    assert!(!ok);
    failed.sort();
    let ran = f.mend(&["plan", rb.to_str().unwrap()]);
    assert_eq!(ran.code, 1, "{}", ran.text());
    let mut mine: Vec<String> = ran
        .stderr
        .lines()
        .filter_map(|l| l.strip_prefix("  [verify] error: "))
        .filter_map(|l| l.split(": FAILED").next())
        .map(str::to_string)
        .collect();
    mine.sort();
    assert_eq!(mine, failed);
    assert!(ran.stdout.contains("2 of 5 files FAILED"), "{}", ran.stdout);
    assert!(
        ran.stderr.contains("1 line is improperly formatted"),
        "{}",
        ran.stderr
    );
    // An md5 digest where sha256 belongs is refused with what it looks like.
    let md5 = f.runbook(
        "md5.toml",
        r#"
[runbook]
name = "md5"
version = "1.0.0"
summary = "an md5 digest pasted where sha256 belongs"

[grants.rel]
path = "{root}/rel"
access = "read"

[[steps]]
id = "verify"
uses = "std:checksum-verify"
grants = ["rel"]
with = { files = { "rel/a file.tar.gz" = "sha256:d41d8cd98f00b204e9800998ecf8427e" } }
"#,
    );
    // Bad input, not a failed step: the digest is wrong before anything runs.
    let ran = f.mend(&["plan", md5.to_str().unwrap()]);
    assert_eq!(ran.code, 2, "{}", ran.text());
    assert!(
        ran.stdout
            .contains("this is 32 hex digits, the length of an MD5 digest; sha256 digests have 64"),
        "{}",
        ran.stdout
    );
}

/// A run of std:archive-cleanup SIGKILLed while it removes (inside the
/// second batch the step hands over, with the walk still going) and then
/// resumed leaves the archive exactly as pg_archivecleanup leaves a copy of
/// it: segments of the server's user with mode 640, an old `.partial`, a
/// `.history` and a `.backup` file, a FIFO named like an old segment of
/// another timeline, a name that is not UTF-8. Each removal is journaled
/// done once.
#[test]
fn archive_cleanup_killed_while_it_removes_resumes_to_what_pg_archivecleanup_leaves() {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    let tool = pg_archivecleanup()
        .expect("pg_archivecleanup (Debian's postgresql-15; .ci/run installs it)");
    let f = Fixture::new();
    let root = rustix::process::geteuid().is_root();
    const OLD: u32 = 600;
    let segment = |i: u32| format!("00000001{:08X}{:08X}", i / 256, i % 256);
    for dir in ["mend", "native"] {
        for i in 0..2 * OLD {
            let p = f.write(&format!("{dir}/{}", segment(i)), &format!("wal {i}\n"));
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
            if root {
                std::os::unix::fs::chown(&p, Some(65534), Some(65534)).unwrap();
            }
        }
        f.write(
            &format!("{dir}/000000010000000100000010.partial"),
            "partial\n",
        );
        f.write(&format!("{dir}/00000002.history"), "history\n");
        f.write(
            &format!("{dir}/000000010000000200000058.00000028.backup"),
            "backup\n",
        );
        let fifo = f.path(&format!("{dir}/000000030000000000000010"));
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success(), "mkfifo {}", fifo.display());
        let odd = f
            .path(dir)
            .join(std::ffi::OsStr::from_bytes(b"00000001\xff not a segment"));
        std::fs::write(odd, "odd\n").unwrap();
    }
    let cut = segment(OLD);
    let rb = f.runbook(
        "wal.toml",
        &format!(
            r#"
[runbook]
name = "wal"
version = "1.0.0"
summary = "archive cleanup, killed and resumed"

[grants.archive]
path = "{{root}}/mend"
access = "write"
disposable = true

[[steps]]
id = "clean"
uses = "std:archive-cleanup"
grants = ["archive"]
with = {{ path = "archive", oldest_kept = "{cut}" }}
"#
        ),
    );
    let killed = f.mend_env(
        &["run", rb.to_str().unwrap()],
        &[("MEND_CRASH_AT", "perform:0:300")],
    );
    assert_eq!(killed.code, -1, "expected a SIGKILL: {}", killed.text());
    let id = history_id(&f);
    let resumed = f.mend(&["resume", &id]);
    assert_eq!(resumed.code, 0, "{}", resumed.text());
    let out = std::process::Command::new(&tool)
        .arg(f.path("native"))
        .arg(&cut)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (mine, native) = (tree(&f.path("mend"), false), tree(&f.path("native"), false));
    // The root, the segments from the cut on, .history, .backup, the odd name.
    assert_eq!(native.len(), 1 + OLD as usize + 3, "{native:#?}");
    assert_same(&native, &mine, "the archive after the resumed run");
    // The old segments, the .partial and the FIFO: each done once.
    assert_eq!(crate::bulk::states(&f, &id), vec!["done"; OLD as usize + 2]);
}
