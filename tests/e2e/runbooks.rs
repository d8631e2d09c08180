//! Every runbook shipped in runbooks/ rehearses cleanly on its fixture: it
//! runs on copies, rolls back, and the copies end byte-identical.

use crate::common::*;

fn rehearse(f: &Fixture, runbook: &str, sets: &[String]) -> Ran {
    let mut args = vec!["rehearse".to_string(), repo(runbook)];
    for s in sets {
        args.push("--set".into());
        args.push(s.clone());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let ran = f.mend(&args);
    // As root (this suite), a rehearsal runs on overlays unless told not to.
    if std::env::var_os("MEND_REHEARSE_ON").is_none() && ran.code == 0 {
        let first = ran.stderr.lines().next().unwrap_or("");
        assert!(
            first.contains(" on overlays (real directories read-only"),
            "{runbook}: {}",
            ran.text()
        );
    }
    // A rehearsal that changed nothing proves nothing: every shipped
    // runbook but the preflight (checks only) must act on its fixture.
    if ran.code == 0 && !runbook.contains("preflight") {
        let undone = regex::Regex::new(r"rolled back ([\d,]+) actions?")
            .unwrap()
            .captures(&ran.text())
            .map(|c| c[1].replace(',', "").parse::<u64>().unwrap());
        assert!(
            undone.is_some_and(|n| n > 0),
            "{runbook}: the rehearsal planned no action on its fixture:\n{}",
            ran.text()
        );
    }
    ran
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

/// A /proc/net/tcp with one listening socket.
fn procnet(f: &Fixture, local: &str) {
    f.write(
        "procnet/tcp",
        &format!(
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: {local} 00000000:0000 0A 00000000:00000000 00:00000000 00000000   100        0 12345 1 0000000000000000 100 0 0 10 0\n"
        ),
    );
    f.write("procnet/tcp6", "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n");
}

fn preflight_fixture(f: &Fixture, days: u32) -> Vec<String> {
    f.write(
        "system/media_attachments/files/000/a.png",
        &"p".repeat(5000),
    );
    std::fs::create_dir_all(f.path("backups")).unwrap();
    std::fs::create_dir_all(f.path("tls")).unwrap();
    let ok = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=example.org",
            "-keyout",
            "/dev/null",
        ])
        .args(["-days", &days.to_string(), "-out"])
        .arg(f.path("tls/fullchain.pem"))
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    ["system", "backups", "tls", "procnet"]
        .iter()
        .map(|g| format!("{g}={}", f.path(g).display()))
        .collect()
}

fn preflight(f: &Fixture, sets: &[String], free: &str) -> Ran {
    let mut args = vec!["plan".to_string(), repo("runbooks/mastodon/preflight.toml")];
    for s in sets {
        args.push("--set".into());
        args.push(s.clone());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    f.mend_env(&args, &[("MEND_FAKE_FREE_BYTES", free)])
}

#[test]
fn mastodon_preflight_passes_on_a_healthy_host_and_names_each_failure() {
    let f = Fixture::new();
    let sets = preflight_fixture(&f, 60);
    procnet(&f, "0100007F:18EB"); // Redis on 127.0.0.1 only
    let ran = preflight(&f, &sets, "5000000000");
    assert_eq!(ran.code, 0, "{}", ran.text());
    let rehearsal = rehearse(&f, "runbooks/mastodon/preflight.toml", &sets);
    assert_eq!(rehearsal.code, 0, "{}", rehearsal.text());

    // Redis on all addresses, the media gone, the certificate about to expire.
    let f = Fixture::new();
    let sets = preflight_fixture(&f, 5);
    procnet(&f, "00000000:18EB");
    std::fs::remove_dir_all(f.path("system/media_attachments/files")).unwrap();
    let ran = preflight(&f, &sets, "5000000000");
    assert_eq!(ran.code, 1, "{}", ran.text());
    for want in [
        "3 of 5 checks FAILED",
        "local media is missing: is the volume mounted?",
        "Redis is open beyond this machine (port 6379 listens on 0.0.0.0 (all addresses))",
        "renew the TLS certificate",
    ] {
        assert!(
            ran.stdout.contains(want),
            "expected `{want}` in:\n{}",
            ran.stdout
        );
    }
    // Too little room for a backup.
    let f = Fixture::new();
    let sets = preflight_fixture(&f, 60);
    procnet(&f, "0100007F:18EB");
    let ran = preflight(&f, &sets, "1000");
    assert_eq!(ran.code, 1, "{}", ran.text());
    assert!(
        ran.stdout.contains("no room for a backup of the media"),
        "{}",
        ran.stdout
    );
}

/// After a restart, a check that waits for the service (the firewall that
/// stayed off after a reboot): `when = "after"` checks in verify, retried.
fn restart_then_check(f: &Fixture, comes_back: bool) -> Ran {
    std::fs::create_dir_all(f.path("run")).unwrap();
    let start = if comes_back {
        "(sleep 1; touch \\\"$MEND_GRANT_RUN/ready\\\") >/dev/null 2>&1 &"
    } else {
        "true"
    };
    let rb = f.runbook(
        "restart.toml",
        &r#"
[runbook]
name = "restart-then-check"
version = "1.0.0"
summary = "restart a service, then check it came back"

[grants.run]
path = "{root}/run"
access = "read"

[commands.restart]
program = "/bin/sh"
changes = [["-c", "**"]]

[[steps]]
id = "restart"
{guest:scripted}
grants = ["run"]
commands = ["restart"]
with = { actions = [{ exec = ["restart", ["-c", "START"]], undo = ["restart", ["-c", "true"]] }] }

[[steps]]
id = "firewall-is-back"
uses = "std:assert"
grants = ["run"]
retry = { attempts = 6, delay = "500ms" }
with = { when = "after", checks = [{ exists = "run/ready", message = "the firewall did not come back" }] }
"#
        .replace("START", start),
    );
    f.mend(&["run", rb.to_str().unwrap()])
}

#[test]
fn a_check_after_a_restart_waits_for_the_service_and_fails_the_run_if_it_never_comes() {
    let f = Fixture::new();
    let ran = restart_then_check(&f, true);
    assert_eq!(ran.code, 0, "{}", ran.text());
    assert!(
        ran.stderr.contains("retry 1/5"),
        "expected at least one retry:\n{}",
        ran.stderr
    );

    let f = Fixture::new();
    let ran = restart_then_check(&f, false);
    assert_eq!(ran.code, 1, "{}", ran.text());
    assert!(
        ran.stdout.contains("failed: step `firewall-is-back`: verify failed: run/ready exists (the firewall did not come back"),
        "{}",
        ran.stdout
    );
    assert!(ran.stdout.contains("after 6 attempts"), "{}", ran.stdout);
    assert!(ran.stdout.contains("1 action undone"), "{}", ran.stdout);
}
