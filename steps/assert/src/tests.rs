use super::*;
use crate::procnet::tests::{TCP, TCP6};
use mend_sdk::testing::{FakeHost, plan, validate, verify};
use serde_json::json;

/// `openssl req -x509 -newkey rsa:2048 -nodes -days 10 -subj /CN=test`;
/// `openssl x509 -enddate -noout`: notAfter=Dec  2 18:01:13 2026 GMT (UTCTime).
const RSA_10_DAYS: &str = "-----BEGIN CERTIFICATE-----
MIIC/zCCAeegAwIBAgIUR5k6dQsa/pzM6FMt208hwcrQ5VkwDQYJKoZIhvcNAQEL
BQAwDzENMAsGA1UEAwwEdGVzdDAeFw0yNjExMjIxODAxMTNaFw0yNjEyMDIxODAx
MTNaMA8xDTALBgNVBAMMBHRlc3QwggEiMA0GCSqGSIb3DQEBAQUAA4IBDwAwggEK
AoIBAQDm/y676XlTVYLJfKdh/EB9DqrCsDEZBbww8wNOYnE/HO2bFviMBkI6F6W/
xEHEXV5MWO701e2YHPEB4U7DOvsgtM+hZ4XUeIg+9ycCZgIFfVeZwDY5OSGrnUVO
yzTptJkfXGG0DJ6GN1AjcWqjUCbO7oQCON74mcJIvLd42AmdGLmWl1qO1mCLcV+N
MLX26LKawVA7AZSGdsOCROCyZTKT15fH/IhMj8w8xVTFLEnyZP9k3xq/ertdtBXJ
ZAaQUV+isuCv7mX19qKld1EoEPRKG2KKCwNcL9ndwaray8QrkMGP63N2CTTIIIXz
ornTBdW1iupe719sL3HAgUX4R2mXAgMBAAGjUzBRMB0GA1UdDgQWBBQMXb+TjAqa
ggt02fKblDLzz9Fx0DAfBgNVHSMEGDAWgBQMXb+TjAqaggt02fKblDLzz9Fx0DAP
BgNVHRMBAf8EBTADAQH/MA0GCSqGSIb3DQEBCwUAA4IBAQBJmPlhMI4PAIjg1Qhz
4EuCs+Z6FBpatcfR3SsF/YX0C2ecI3bURP1lnK3mg18c3Z4Z4UkZjCgEHqrmT6vn
7C+ikdZlb+ZDB+/cqqeNnKUP5AhDrdR+gGJ942PYKczfAjx5V+rggMFvnsiQKnYN
1IAY1rglRg2Da2dMbs/0pibxNHljHHs9C9JuiGWcjVUCRQRx3tUAx0sT7YWyJnIP
uSxxvCsnUei2glinZfz7BInW0pGINu5fElrdQ/dipsHUv1kf/fp/YaF+YXr60+Fh
iz8igrVcGM8xJ5USzMoRMT4hZtBjSQACM7AK2VWUFFddvEwZ3LlWLPVrNupZ3+Im
mk0h
-----END CERTIFICATE-----
";
/// `date -u -d '2026-12-02 18:01:13' +%s`
const RSA_NOT_AFTER: i64 = 1_796_234_473;

/// `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1
/// -nodes -days 40000 -subj /CN=far`: notAfter=May 29 18:01:13 2136 GMT,
/// a GeneralizedTime (after 2049).
const EC_2136: &str = "-----BEGIN CERTIFICATE-----
MIIBczCCARmgAwIBAgIUIqyBAF0LHcqXSvmkAz4n4VELyOMwCgYIKoZIzj0EAwIw
DjEMMAoGA1UEAwwDZmFyMCAXDTI2MTEyMjE4MDExM1oYDzIxMzYwNTI5MTgwMTEz
WjAOMQwwCgYDVQQDDANmYXIwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAT+K1jY
Skuz7b687i/s3vZUy8vDGgE6SFw/TbZLWn8Cv7ZOXchjU6flgYfSo6VmDbMH2Xjr
snp+ngWRSvg6AoZpo1MwUTAdBgNVHQ4EFgQU7fWGZhVxtCr9+4W4ObYSg/z59Low
HwYDVR0jBBgwFoAU7fWGZhVxtCr9+4W4ObYSg/z59LowDwYDVR0TAQH/BAUwAwEB
/zAKBggqhkjOPQQDAgNIADBFAiEAwLgW57iBexd3+gIIyZSQ42L5a8NVXtkFScBe
V3rCwN0CICx0UAoG9gpKeZd7ouHhz1Cd8IsLqn5sHQyK/ecSghY9
-----END CERTIFICATE-----
";

/// Nine and a half days before the RSA certificate expires.
const T: i64 = RSA_NOT_AFTER - 9 * 86_400 - 43_200;
const GIB: u64 = 1 << 30;

const NGINX: &str = "server {
    listen 443 ssl;
    ssl_certificate /etc/letsencrypt/live/example.org/fullchain.pem;
    location /media { autoindex on; }
}
";

fn host() -> FakeHost {
    FakeHost::new(T)
        .grant("pgdata", Access::Read)
        .grant("backups", Access::Read)
        .grant("nginx", Access::Read)
        .grant("tls", Access::Read)
        .grant("procnet", Access::Read)
        .command("mountpoint")
        .command("nft")
        .file("pgdata/main/PG_VERSION", 3, T)
        .file("pgdata/main/base/1/1259", 3 * GIB, T)
        .file("pgdata/main/base/1/1249", GIB, T)
        .symlink("pgdata/main/pg_wal", "/srv/wal")
        .dir("pgdata/empty", T)
        .file("backups/dump.sql", 2 * GIB, T)
        .free("backups", 9 * GIB, 100 * GIB)
        .file_with("nginx/mastodon.conf", NGINX, T)
        .file_with("tls/fullchain.pem", format!("{RSA_10_DAYS}{EC_2136}"), T)
        .file_with("tls/far.pem", EC_2136, T)
        .file_with("tls/key.pem", "-----BEGIN PRIVATE KEY-----\n", T)
        .file_with("procnet/tcp", TCP, T)
        .file_with("procnet/tcp6", TCP6, T)
        .probe_answer("mountpoint", &["-q", "/srv/pgdata"], 0, "")
        .probe_answer("mountpoint", &["-q", "/srv/scratch"], 32, "")
        .probe_answer(
            "nft",
            &["list", "table", "inet", "filter"],
            0,
            "table inet filter {",
        )
        .probe_answer("nft", &["list", "table", "inet", "nat"], 1, "")
        .url("http://127.0.0.1:3000/health", 200)
        .url("http://127.0.0.1:8008/_matrix/client/versions", 502)
}

/// Plan with one check; the outcome as (ok, the plan's summary line or the error).
fn one(h: &FakeHost, check: Value) -> (bool, String) {
    match plan::<Assert>(h, json!({ "checks": [check] })) {
        Ok(p) => {
            assert!(p.actions.is_empty());
            assert_eq!(p.summary.len(), 2, "{:?}", p.summary);
            assert_eq!(p.summary[1], "the check passed; nothing to change");
            (true, p.summary[0].clone())
        }
        Err(e) => {
            assert_eq!(e.hint.as_deref(), Some(FIX_AND_RERUN));
            assert_eq!(e.param.as_deref(), Some("checks"));
            let m = e
                .message
                .strip_prefix("1 of 1 check FAILED: ")
                .unwrap_or_else(|| {
                    panic!("not a failed check: {}", e.message);
                });
            (false, m.to_string())
        }
    }
}

fn passes(check: Value) -> String {
    let (ok, line) = one(&host(), check.clone());
    assert!(ok, "{check} failed: {line}");
    line
}

fn fails(check: Value) -> String {
    let (ok, line) = one(&host(), check.clone());
    assert!(!ok, "{check} passed: {line}");
    line
}

/// A check the step refuses to make: the runbook is wrong.
fn refused(check: Value) -> StepError {
    match plan::<Assert>(&host(), json!({ "checks": [check] })) {
        Ok(p) => panic!("expected a refusal, got {:?}", p.summary),
        Err(e) => {
            // It points at the check (`checks[0]`, `checks[0].cert.path`).
            let param = e.param.clone().unwrap_or_default();
            assert!(param.starts_with("checks[0]"), "{param}: {}", e.message);
            assert_ne!(e.hint.as_deref(), Some(FIX_AND_RERUN), "{}", e.message);
            e
        }
    }
}

#[test]
fn describe_declares_a_required_list_and_when() {
    let info = mend_sdk::step_info!(Assert);
    assert_eq!(info.name, "assert");
    let params = info.params;
    assert_eq!(params.len(), 2);
    let when = &params[1];
    assert_eq!(
        (
            when.name.as_str(),
            when.kind,
            when.required,
            when.default.as_deref()
        ),
        ("when", mend_sdk::ParamKind::String, false, Some("\"plan\""))
    );
    let p = &params[0];
    assert_eq!(
        (p.name.as_str(), p.kind, p.required),
        ("checks", mend_sdk::ParamKind::List, true)
    );
    for kind in spec::KINDS {
        assert!(p.doc.contains(kind), "{kind}");
    }
}

#[test]
fn exists_finds_files_directories_symlinks_and_grants() {
    assert_eq!(
        passes(json!({ "exists": "pgdata/main/PG_VERSION" })),
        "ok: pgdata/main/PG_VERSION exists"
    );
    assert_eq!(
        passes(json!({ "exists": "pgdata/main/base" })),
        "ok: pgdata/main/base exists"
    );
    assert_eq!(
        passes(json!({ "exists": "pgdata/main/pg_wal" })),
        "ok: pgdata/main/pg_wal exists"
    );
    assert_eq!(
        passes(json!({ "exists": "pgdata/empty/" })),
        "ok: pgdata/empty exists"
    );
    assert_eq!(passes(json!({ "exists": "pgdata" })), "ok: pgdata exists");
    assert_eq!(
        fails(json!({ "exists": "pgdata/main/postmaster.pid" })),
        "pgdata/main/postmaster.pid does not exist"
    );
    assert_eq!(
        fails(json!({ "exists": "pgdata/nowhere/PG_VERSION" })),
        "pgdata/nowhere/PG_VERSION does not exist"
    );
    let e = fails(json!({ "exists": "pgdata/main/PG_VERSION/x", "message": "not a cluster" }));
    assert!(
        e.starts_with("not a cluster (pgdata/main/PG_VERSION/x"),
        "{e}"
    );
}

#[test]
fn not_empty_needs_one_entry() {
    assert_eq!(
        passes(json!({ "not_empty": "pgdata/main" })),
        "ok: pgdata/main is not empty"
    );
    assert_eq!(
        fails(json!({ "not_empty": "pgdata/empty", "message": "data directory is empty" })),
        "data directory is empty (pgdata/empty: no entries)"
    );
    assert_eq!(
        fails(json!({ "not_empty": "pgdata/gone" })),
        "pgdata/gone does not exist"
    );
    assert_eq!(
        fails(json!({ "not_empty": "pgdata/main/PG_VERSION" })),
        "pgdata/main/PG_VERSION is not a directory"
    );
}

#[test]
fn mount_and_not_mount_probe_mountpoint() {
    let on = json!({ "command": "mountpoint", "path": "/srv/pgdata" });
    let off = json!({ "path": "/srv/scratch" }); // `command` defaults to mountpoint
    assert_eq!(
        passes(json!({ "mount": on })),
        "ok: /srv/pgdata is a mount point"
    );
    assert_eq!(
        passes(json!({ "not_mount": off })),
        "ok: /srv/scratch is not a mount point"
    );
    assert_eq!(
        fails(
            json!({ "mount": off, "message": "the volume is not mounted: the container would write to the root disk" })
        ),
        "the volume is not mounted: the container would write to the root disk (/srv/scratch is not a mount point (`mountpoint -q /srv/scratch` exited 32))"
    );
    assert_eq!(
        fails(json!({ "not_mount": on })),
        "/srv/pgdata is a mount point"
    );
    // No canned answer: the host's error fails the check.
    let e = fails(json!({ "mount": { "path": "/srv/other" } }));
    assert!(
        e.starts_with("`mountpoint -q /srv/other`: invalid: no canned answer"),
        "{e}"
    );
}

#[test]
fn free_space_in_bytes_shares_and_multiples() {
    assert_eq!(
        passes(json!({ "free": { "path": "backups", "at_least": "8GiB" } })),
        "ok: backups has at least 8GiB free (9.7 GB free of 107.4 GB)"
    );
    assert_eq!(
        fails(json!({ "free": { "path": "backups/nightly", "at_least": "10GiB" } })),
        "backups/nightly: 9.7 GB free of 107.4 GB; at least 10GiB (10.7 GB) wanted"
    );
    assert_eq!(
        fails(json!({ "free": { "path": "backups", "at_least": "10GB" } })),
        "backups: 9.7 GB free of 107.4 GB; at least 10.0 GB wanted"
    );
    passes(json!({ "free": { "path": "backups", "at_least": 9 * GIB } }));
    passes(json!({ "free": { "path": "backups", "at_least": "9%" } }));
    assert_eq!(
        fails(json!({ "free": { "path": "backups", "at_least": "15%" } })),
        "backups: 9.7 GB free of 107.4 GB; at least 15% of 107.4 GB (16.1 GB) wanted"
    );
    // The cluster is 4 GiB of files (the symlink does not count): room for two copies.
    assert_eq!(
        passes(
            json!({ "free": { "path": "backups", "times": { "path": "pgdata/main", "factor": 2 } } })
        ),
        "ok: backups has at least 2 × the size of pgdata/main free (9.7 GB free of 107.4 GB)"
    );
    assert_eq!(
        fails(
            json!({ "free": { "path": "backups", "times": { "path": "pgdata/main", "factor": 2.5 } } })
        ),
        "backups: 9.7 GB free of 107.4 GB; at least 2.5 × pgdata/main (4.3 GB) = 10.7 GB wanted"
    );
    // A file's own size; factor 1 by default.
    passes(json!({ "free": { "path": "backups", "times": { "path": "backups/dump.sql" } } }));
    // Both: each is named when short.
    assert_eq!(
        fails(
            json!({ "free": { "path": "backups", "at_least": "20GB", "times": { "path": "pgdata/main", "factor": 3 } } })
        ),
        "backups: 9.7 GB free of 107.4 GB; at least 20.0 GB and 3 × pgdata/main (4.3 GB) = 12.9 GB wanted"
    );
    assert_eq!(
        fails(json!({ "free": { "path": "backups", "times": { "path": "pgdata/old" } } })),
        "pgdata/old does not exist"
    );
}

#[test]
fn contains_and_not_contains_are_plain_substrings() {
    assert_eq!(
        passes(
            json!({ "contains": { "path": "nginx/mastodon.conf", "pattern": "listen 443 ssl" } })
        ),
        "ok: nginx/mastodon.conf contains \"listen 443 ssl\" (line 2)"
    );
    assert_eq!(
        fails(
            json!({ "contains": { "path": "nginx/mastodon.conf", "pattern": "ssl_stapling on" } })
        ),
        "nginx/mastodon.conf: no \"ssl_stapling on\" in it"
    );
    assert_eq!(
        passes(
            json!({ "not_contains": { "path": "nginx/mastodon.conf", "pattern": "listen 80" } })
        ),
        "ok: nginx/mastodon.conf does not contain \"listen 80\""
    );
    assert_eq!(
        fails(
            json!({ "not_contains": { "path": "nginx/mastodon.conf", "pattern": "autoindex on" }, "message": "media directory listings are public" })
        ),
        "media directory listings are public (nginx/mastodon.conf contains \"autoindex on\" on line 4)"
    );
    // `.*` is text, not a regular expression.
    fails(json!({ "contains": { "path": "nginx/mastodon.conf", "pattern": "listen .* ssl" } }));
    // A file that is not there cannot show it does not contain something.
    assert_eq!(
        fails(
            json!({ "not_contains": { "path": "nginx/default.conf", "pattern": "autoindex on" } })
        ),
        "nginx/default.conf does not exist"
    );
    let e = refused(
        json!({ "contains": { "path": "nginx/mastodon.conf", "pattern": "x.*", "regex": true } }),
    );
    assert!(e.message.contains("unknown key `regex`"), "{}", e.message);
    assert!(
        e.hint
            .unwrap()
            .contains("plain substring, not a regular expression")
    );
}

#[test]
fn command_exits_zero() {
    assert_eq!(
        passes(
            json!({ "command": { "command": "nft", "args": ["list", "table", "inet", "filter"] } })
        ),
        "ok: `nft list table inet filter` exits 0"
    );
    let h = host().probe_answer(
        "nft",
        &["list", "ruleset"],
        1,
        "Error: Could not process rule: No such file or directory\nlist ruleset\n^^^^^^^^^^^^",
    );
    let (ok, line) = one(
        &h,
        json!({ "command": { "command": "nft", "args": ["list", "ruleset"] }, "message": "the firewall is not loaded: Redis is open" }),
    );
    assert!(!ok);
    assert_eq!(
        line,
        "the firewall is not loaded: Redis is open (`nft list ruleset` exited 1: Error: Could not process rule: No such file or directory)"
    );
    assert_eq!(
        fails(json!({ "command": { "command": "nft", "args": ["list", "table", "inet", "nat"] } })),
        "`nft list table inet nat` exited 1"
    );
    let killed = host().probe_answer("nft", &[], -1, "");
    let (_, line) = one(&killed, json!({ "command": { "command": "nft" } }));
    assert_eq!(line, "`nft` was killed by a signal");
}

#[test]
fn http_status_defaults_to_200() {
    assert_eq!(
        passes(json!({ "http": { "url": "http://127.0.0.1:3000/health" } })),
        "ok: http://127.0.0.1:3000/health answers 200"
    );
    passes(
        json!({ "http": { "url": "http://127.0.0.1:8008/_matrix/client/versions", "status": 502 } }),
    );
    assert_eq!(
        fails(
            json!({ "http": { "url": "http://127.0.0.1:8008/_matrix/client/versions" }, "message": "Synapse did not come back" })
        ),
        "Synapse did not come back (http://127.0.0.1:8008/_matrix/client/versions answered 502; 200 wanted)"
    );
    // Not in the step's `urls`: the host's refusal fails the check.
    let e = fails(json!({ "http": { "url": "http://127.0.0.1:9000/" } }));
    assert_eq!(
        e,
        "http://127.0.0.1:9000/: denied: url http://127.0.0.1:9000/ not allowed"
    );
}

#[test]
fn not_listening_reads_the_kernel_tables() {
    assert_eq!(
        fails(
            json!({ "not_listening": { "port": 6379, "procnet": "procnet" }, "message": "Redis is open beyond this machine" })
        ),
        "Redis is open beyond this machine (port 6379 listens on 0.0.0.0 (all addresses) and :: (all addresses))"
    );
    assert_eq!(
        passes(json!({ "not_listening": { "port": 5432 } })),
        "ok: nothing listens on TCP port 5432 beyond loopback (listens on 127.0.0.1 and ::1 only)"
    );
    assert_eq!(
        passes(json!({ "not_listening": { "port": 8080 } })),
        "ok: nothing listens on TCP port 8080 beyond loopback (listens on ::ffff:127.0.0.1 only)"
    );
    assert_eq!(
        passes(json!({ "not_listening": { "port": 25 } })),
        "ok: nothing listens on TCP port 25 beyond loopback (nothing listens on it)"
    );
    assert_eq!(
        fails(json!({ "not_listening": { "port": 443 } })),
        "port 443 listens on 2001:db8::1"
    );
    // IPv6 off: no tcp6.
    let v4 = FakeHost::new(T)
        .grant("net", Access::Read)
        .file_with("net/tcp", TCP, T);
    let (ok, line) = one(
        &v4,
        json!({ "not_listening": { "port": 6379, "procnet": "net" } }),
    );
    assert!(!ok);
    assert_eq!(line, "port 6379 listens on 0.0.0.0 (all addresses)");
    // The grant is not /proc/net.
    let (ok, line) = one(
        &host(),
        json!({ "not_listening": { "port": 22, "procnet": "pgdata" } }),
    );
    assert!(!ok);
    assert_eq!(line, "pgdata/tcp: not found (grant /proc/net as `pgdata`)");
    let wrong = FakeHost::new(T).grant("procnet", Access::Read).file_with(
        "procnet/tcp",
        "Inter-| Receive\n",
        T,
    );
    let (_, line) = one(&wrong, json!({ "not_listening": { "port": 22 } }));
    assert_eq!(
        line,
        "procnet/tcp does not look like /proc/net/tcp: no `local_address` header"
    );
}

#[test]
fn cert_days_left_against_the_host_clock() {
    assert_eq!(
        fails(
            json!({ "cert": { "path": "tls/fullchain.pem", "days_left": 14 }, "message": "renew the certificate" })
        ),
        "renew the certificate (tls/fullchain.pem expires 2026-12-02 (9 days left; at least 14 wanted))"
    );
    // The default is 14 days; the first certificate of the chain counts.
    assert_eq!(
        fails(json!({ "cert": { "path": "tls/fullchain.pem" } })),
        "tls/fullchain.pem expires 2026-12-02 (9 days left; at least 14 wanted)"
    );
    assert_eq!(
        passes(json!({ "cert": { "path": "tls/fullchain.pem", "days_left": 9 } })),
        "ok: the certificate in tls/fullchain.pem has at least 9 days left (expires 2026-12-02 (9 days left))"
    );
    fails(json!({ "cert": { "path": "tls/fullchain.pem", "days_left": 10 } }));
    // GeneralizedTime, after 2049.
    assert_eq!(
        passes(json!({ "cert": { "path": "tls/far.pem", "days_left": 3650 } })),
        "ok: the certificate in tls/far.pem has at least 3650 days left (expires 2136-05-29 (39999 days left))"
    );
    // Expired.
    let later = FakeHost::new(RSA_NOT_AFTER + 3 * 86_400 + 5)
        .grant("tls", Access::Read)
        .file_with("tls/c.pem", RSA_10_DAYS, T);
    let (ok, line) = one(&later, json!({ "cert": { "path": "tls/c.pem" } }));
    assert!(!ok);
    assert_eq!(
        line,
        "tls/c.pem expired 2026-12-02 (3 days ago; at least 14 days left wanted)"
    );
    // To the second: one second short of 9 days is 8 days.
    let edge = FakeHost::new(RSA_NOT_AFTER - 9 * 86_400 + 1)
        .grant("tls", Access::Read)
        .file_with("tls/c.pem", RSA_10_DAYS, T);
    let (ok, line) = one(
        &edge,
        json!({ "cert": { "path": "tls/c.pem", "days_left": 9 } }),
    );
    assert!(!ok);
    assert_eq!(
        line,
        "tls/c.pem expires 2026-12-02 (8 days left; at least 9 wanted)"
    );
    assert_eq!(
        fails(json!({ "cert": { "path": "tls/key.pem" } })),
        "tls/key.pem: no `-----BEGIN CERTIFICATE-----` block in it"
    );
    assert_eq!(
        fails(json!({ "cert": { "path": "tls/old.pem" } })),
        "tls/old.pem does not exist"
    );
    let mangled = RSA_10_DAYS.replace("MIIC/zCC", "MIIC/z!C");
    let bad = FakeHost::new(T)
        .grant("tls", Access::Read)
        .file_with("tls/c.pem", mangled, T);
    let (_, line) = one(&bad, json!({ "cert": { "path": "tls/c.pem" } }));
    assert_eq!(line, "tls/c.pem: '!' is not base64");
}

#[test]
fn failures_are_counted_named_and_logged() {
    let h = host();
    let checks = json!([
        { "exists": "pgdata/main/PG_VERSION" },
        { "not_empty": "pgdata/empty", "message": "data directory is empty" },
        { "mount": { "path": "/srv/pgdata" } },
        { "not_listening": { "port": 6379 }, "message": "Redis is open beyond this machine" },
        { "http": { "url": "http://127.0.0.1:3000/health" } },
    ]);
    let e = plan::<Assert>(&h, json!({ "checks": checks })).unwrap_err();
    assert_eq!(
        e.message,
        "2 of 5 checks FAILED: data directory is empty (pgdata/empty: no entries); Redis is open beyond this machine (port 6379 listens on 0.0.0.0 (all addresses) and :: (all addresses))"
    );
    assert_eq!(
        e.hint.as_deref(),
        Some("nothing was changed: fix what the checks say, then run again")
    );
    assert_eq!(e.param.as_deref(), Some("checks"));
    let logs = h.logs();
    let lines: Vec<(Level, &str)> = logs.iter().map(|(l, m)| (*l, m.as_str())).collect();
    assert_eq!(
        lines,
        [
            (Level::Debug, "ok: pgdata/main/PG_VERSION exists"),
            (
                Level::Error,
                "FAILED: data directory is empty (pgdata/empty: no entries)"
            ),
            (Level::Debug, "ok: /srv/pgdata is a mount point"),
            (
                Level::Error,
                "FAILED: Redis is open beyond this machine (port 6379 listens on 0.0.0.0 (all addresses) and :: (all addresses))"
            ),
            (Level::Debug, "ok: http://127.0.0.1:3000/health answers 200"),
        ]
    );
}

#[test]
fn passing_checks_plan_nothing_and_announce_verify() {
    let checks = json!([
        { "exists": "pgdata/main/PG_VERSION" },
        { "not_empty": "pgdata/main" },
        { "mount": { "path": "/srv/pgdata" } },
        { "not_mount": { "path": "/srv/scratch" } },
        { "free": { "path": "backups", "times": { "path": "pgdata/main", "factor": 2 } } },
        { "contains": { "path": "nginx/mastodon.conf", "pattern": "ssl_certificate" } },
        { "not_contains": { "path": "nginx/mastodon.conf", "pattern": "listen 80" } },
        { "command": { "command": "nft", "args": ["list", "table", "inet", "filter"] } },
        { "http": { "url": "http://127.0.0.1:3000/health" } },
        { "not_listening": { "port": 5432 } },
        { "cert": { "path": "tls/far.pem" } },
    ]);
    let p = plan::<Assert>(&host(), json!({ "checks": checks })).unwrap();
    assert!(p.actions.is_empty());
    assert!(p.facts.is_empty());
    assert_eq!(p.summary.len(), 12);
    assert!(
        p.summary[..11].iter().all(|l| l.starts_with("ok: ")),
        "{:?}",
        p.summary
    );
    assert_eq!(p.summary[11], "all 11 checks passed; nothing to change");
    assert_eq!(p.checks.len(), 11);
    assert_eq!(p.checks[0], "pgdata/main/PG_VERSION exists");
    assert_eq!(
        p.checks[9],
        "nothing listens on TCP port 5432 beyond loopback"
    );
}

#[test]
fn verify_makes_the_same_checks() {
    let checks = json!([
        { "http": { "url": "http://127.0.0.1:3000/health" } },
        { "http": { "url": "http://127.0.0.1:8008/_matrix/client/versions" }, "message": "Synapse did not come back" },
        { "free": { "path": "backups", "at_least": "1GiB" } },
    ]);
    let got = verify::<Assert>(&host(), json!({ "checks": checks })).unwrap();
    let got: Vec<(&str, bool, &str)> = got
        .iter()
        .map(|c| (c.name.as_str(), c.ok, c.detail.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("http://127.0.0.1:3000/health answers 200", true, ""),
            (
                "http://127.0.0.1:8008/_matrix/client/versions answers 200",
                false,
                "Synapse did not come back; http://127.0.0.1:8008/_matrix/client/versions answered 502; 200 wanted"
            ),
            (
                "backups has at least 1GiB free",
                true,
                "9.7 GB free of 107.4 GB"
            ),
        ]
    );
    // A bad check is refused in verify as in plan.
    let e = verify::<Assert>(&host(), json!({ "checks": [{ "exist": "pgdata" }] })).unwrap_err();
    assert_eq!(e.param.as_deref(), Some("checks[0].exist"));
}

#[test]
fn unknown_kinds_are_refused_with_the_list() {
    let e = refused(json!({ "exist": "pgdata/main" }));
    assert_eq!(e.message, "check 1: unknown kind `exist`");
    let hint = e.hint.unwrap();
    assert!(hint.starts_with("did you mean `exists`? each check is a table with one of `exists`, `not_empty`, `mount`"), "{hint}");
    assert!(hint.contains("`cert`"), "{hint}");
    let e = refused(json!({ "not-listening": { "port": 22 } }));
    assert!(e.hint.unwrap().starts_with("did you mean `not_listening`?"));
    let e = refused(json!({ "uptime": "5m" }));
    assert!(
        e.hint
            .unwrap()
            .starts_with("each check is a table with one of")
    );
    // The number of the check is given.
    let e = plan::<Assert>(
        &host(),
        json!({ "checks": [{ "exists": "pgdata" }, { "tls": "x" }] }),
    )
    .unwrap_err();
    assert_eq!(e.message, "check 2: unknown kind `tls`");
}

#[test]
fn malformed_tables_are_refused() {
    let e = refused(json!({ "exists": "pgdata", "not_empty": "pgdata" }));
    assert_eq!(
        e.message,
        "check 1: several kinds in one table (`exists`, `not_empty`); one check per table"
    );
    let e = refused(json!({ "message": "lonely" }));
    assert_eq!(e.message, "check 1: no kind of check is given");
    let e = refused(json!("pgdata/main"));
    assert_eq!(e.message, "check 1: `\"pgdata/main\"` is not a table");
    let e = refused(json!({ "exists": "pgdata", "message": 3 }));
    assert_eq!(
        e.message,
        "check 1: `message = 3` is not a non-empty string"
    );
    let e = refused(json!({ "exists": ["pgdata"] }));
    assert_eq!(
        e.message,
        "check 1 (`exists`): `exists = [\"pgdata\"]` is not a \"GRANT/path\" string"
    );
    let e = refused(json!({ "mount": { "path": "/srv", "options": "-q" } }));
    assert!(
        e.message
            .starts_with("check 1 (`mount`): unknown key `options`"),
        "{}",
        e.message
    );
    assert!(
        e.hint
            .unwrap()
            .contains("{ mount = { command = \"mountpoint\", path = \"/srv/postgres\" } }")
    );
    let e = refused(json!({ "http": { "url": "http://x/", "message": "down" } }));
    assert_eq!(
        e.message,
        "check 1 (`http`): `message` is inside the `http` table"
    );
    assert_eq!(
        e.hint.as_deref(),
        Some("put it beside the kind: { http = { ... }, message = \"...\" }")
    );
    let e = refused(json!({ "mount": { "path": "srv/pgdata" } }));
    assert_eq!(
        e.message,
        "check 1 (`mount`): `path = \"srv/pgdata\"` is not an absolute path"
    );
    let e = refused(json!({ "http": { "url": "https://example.org/" } }));
    assert_eq!(
        e.message,
        "check 1 (`http`): `url = \"https://example.org/\"` is not an http:// URL"
    );
    let e = refused(json!({ "http": { "url": "http://x/", "status": 42 } }));
    assert_eq!(
        e.message,
        "check 1 (`http`): `status = 42` is not an HTTP status"
    );
    let e = refused(json!({ "not_listening": { "port": 70000 } }));
    assert!(
        e.message
            .starts_with("check 1 (`not_listening`): invalid value"),
        "{}",
        e.message
    );
    let e = refused(json!({ "contains": { "path": "nginx/x", "pattern": "" } }));
    assert_eq!(e.message, "check 1 (`contains`): `pattern` is empty");
    let e = refused(json!({ "cert": { "path": "tls/x.pem", "days_left": -1 } }));
    assert!(
        e.message.starts_with("check 1 (`cert`): invalid value"),
        "{}",
        e.message
    );
    let e = plan::<Assert>(&host(), json!({ "checks": [] })).unwrap_err();
    assert_eq!(e.message, "`checks` is empty: there is nothing to assert");
    assert_eq!(e.param.as_deref(), Some("checks"));
}

#[test]
fn free_needs_a_floor_it_can_read() {
    let e = refused(json!({ "free": { "path": "backups" } }));
    assert_eq!(
        e.message,
        "check 1 (`free`): neither `at_least` nor `times` is given"
    );
    let e = refused(json!({ "free": { "path": "backups", "at_least": "10 gigs" } }));
    assert!(
        e.message.starts_with(
            "check 1 (`free`): `at_least = \"10 gigs\"` is not a size such as \"10GiB\""
        ),
        "{}",
        e.message
    );
    let e = refused(
        json!({ "free": { "path": "backups", "times": { "path": "pgdata", "factor": 0 } } }),
    );
    assert_eq!(
        e.message,
        "check 1 (`free`): `times.factor = 0` is not a number above 0"
    );
    let e = refused(json!({ "free": { "path": "backups", "times": { "path": "elsewhere/x" } } }));
    assert!(e.message.contains("no grant `elsewhere`"), "{}", e.message);
}

#[test]
fn paths_and_commands_must_be_granted() {
    let e = refused(json!({ "exists": "media/cache" }));
    assert_eq!(
        e.message,
        "check 1 (`exists`): `media/cache`: the step holds no grant `media` (it holds `pgdata`, `backups`, `nginx`, `tls`, `procnet`)"
    );
    assert_eq!(
        e.hint.as_deref(),
        Some(
            "add \"media\" to the step's `grants` and declare [grants.media] with its `path`; `access = \"read\"` is enough"
        )
    );
    let e = refused(json!({ "exists": "/var/lib/postgresql" }));
    assert_eq!(
        e.message,
        "check 1 (`exists`): `/var/lib/postgresql` is absolute"
    );
    let e = refused(json!({ "not_empty": "pgdata/../etc" }));
    assert_eq!(
        e.message,
        "check 1 (`not_empty`): `pgdata/../etc` contains `..`"
    );
    let e = refused(json!({ "exists": "" }));
    assert_eq!(e.message, "check 1 (`exists`): `` is empty");
    let e = refused(json!({ "cert": { "path": "letsencrypt/a.pem" } }));
    assert!(e.message.contains("no grant `letsencrypt`"));
    let e = refused(json!({ "command": { "command": "redis-cli", "args": ["ping"] } }));
    assert_eq!(
        e.message,
        "check 1 (`command`): the step may not run command `redis-cli`"
    );
    assert!(e.hint.unwrap().contains("[commands.redis-cli]"));
    let e = refused(json!({ "mount": { "command": "findmnt", "path": "/srv" } }));
    assert_eq!(
        e.message,
        "check 1 (`mount`): the step may not run command `findmnt`"
    );
    // A bad check anywhere stops them all before any is made.
    let h = host();
    let e = plan::<Assert>(
        &h,
        json!({ "checks": [{ "not_empty": "pgdata/empty" }, { "exists": "x/y" }] }),
    )
    .unwrap_err();
    assert!(e.message.starts_with("check 2 (`exists`)"), "{}", e.message);
    assert!(h.logs().is_empty());
}

#[test]
fn unknown_parameters_are_refused() {
    let e = plan::<Assert>(
        &host(),
        json!({ "checks": [{ "exists": "pgdata" }], "strict": true }),
    )
    .unwrap_err();
    assert_eq!(e.param.as_deref(), Some("strict"));
    let e = plan::<Assert>(&host(), json!({})).unwrap_err();
    assert_eq!(e.param.as_deref(), Some("checks"));
}

#[test]
fn when_after_checks_only_in_verify() {
    let host = FakeHost::new(1_700_000_000).grant("data", Access::Read);
    let params = serde_json::json!({"checks": [{"exists": "data/ready"}], "when": "after"});
    let plan =
        mend_sdk::testing::plan::<Assert>(&host, params.clone()).expect("the plan does not check");
    assert_eq!(plan.checks, vec!["data/ready exists".to_string()]);
    let checks = mend_sdk::testing::verify::<Assert>(&host, params.clone()).unwrap();
    assert!(!checks[0].ok, "{checks:?}");
    let host = host.file("data/ready", 1, 1_700_000_000);
    let checks = mend_sdk::testing::verify::<Assert>(&host, params).unwrap();
    assert!(checks[0].ok, "{checks:?}");
    let bad = serde_json::json!({"checks": [], "when": "later"});
    let e = mend_sdk::testing::plan::<Assert>(&FakeHost::new(0), bad).unwrap_err();
    assert_eq!(e.param.as_deref(), Some("when"));
}

const ENV: &str = "# Generated by mastodon:setup\n\
LOCAL_DOMAIN=hachyderm.io\n\
export S3_ENABLED=\"true\"   # since the move\n\
S3_ENABLED=FALSE\n\
3_BUCKET=files.hachyderm.io\n";

#[test]
fn dotenv_reads_the_value_and_records_the_fact() {
    let h = host()
        .grant("mastodon", Access::Read)
        .file_with("mastodon/.env.production", ENV, T);
    let p = plan::<Assert>(
        &h,
        json!({ "checks": [
            { "dotenv": { "path": "mastodon/.env.production", "key": "LOCAL_DOMAIN", "equals": "hachyderm.io" } },
            { "dotenv": { "path": "mastodon//.env.production", "key": "3_BUCKET" } },
        ] }),
    )
    .unwrap();
    assert_eq!(
        p.summary[0],
        "ok: LOCAL_DOMAIN is \"hachyderm.io\" in mastodon/.env.production (LOCAL_DOMAIN=hachyderm.io)"
    );
    let facts: Vec<(&str, &str)> = p
        .facts
        .iter()
        .map(|f| (f.key.as_str(), f.value.as_str()))
        .collect();
    assert_eq!(
        facts,
        [
            (
                "dotenv:mastodon/.env.production:LOCAL_DOMAIN",
                "hachyderm.io"
            ),
            (
                "dotenv:mastodon/.env.production:3_BUCKET",
                "files.hachyderm.io"
            ),
        ]
    );

    // The last assignment wins; a typo'd key leaves the right one absent.
    let (ok, why) = one(
        &h,
        json!({ "dotenv": { "path": "mastodon/.env.production", "key": "S3_ENABLED", "equals": "true" } }),
    );
    assert!(!ok);
    assert_eq!(
        why,
        "mastodon/.env.production: S3_ENABLED is \"FALSE\", not \"true\""
    );
    let (ok, why) = one(
        &h,
        json!({ "dotenv": { "path": "mastodon/.env.production", "key": "S3_BUCKET" }, "message": "media go to S3" }),
    );
    assert!(!ok);
    assert_eq!(
        why,
        "media go to S3 (mastodon/.env.production: S3_BUCKET is not set)"
    );
    let (ok, why) = one(
        &h,
        json!({ "dotenv": { "path": "mastodon/.env.missing", "key": "S3_BUCKET" } }),
    );
    assert!(!ok);
    assert_eq!(why, "mastodon/.env.missing does not exist");

    // In verify, the same values decide.
    let checks = verify::<Assert>(
        &h,
        json!({ "checks": [{ "dotenv": { "path": "mastodon/.env.production", "key": "S3_ENABLED", "equals": "FALSE" } }] }),
    )
    .unwrap();
    assert!(checks[0].ok, "{:?}", checks[0]);
}

#[test]
fn dotenv_checks_need_a_grant_and_a_key() {
    let e =
        refused(json!({ "dotenv": { "path": "mastodon/.env.production", "key": "S3_ENABLED" } }));
    assert!(
        e.message.contains("holds no grant `mastodon`"),
        "{}",
        e.message
    );
    let e = refused(json!({ "dotenv": { "path": "nginx/x", "key": "S3 ENABLED" } }));
    assert!(e.message.contains("is not a dotenv key"), "{}", e.message);
    let e = refused(json!({ "dotenv": { "path": "nginx/x", "key": "A", "value": "B" } }));
    assert!(e.message.contains("unknown key `value`"), "{}", e.message);
}

/// `mend lint`'s question: every problem of the runbook's checks, each
/// pointing at its check and key, with what to write instead; nothing on
/// the host is looked at.
#[test]
fn validate_finds_every_wrong_check_with_what_to_write() {
    let h = FakeHost::new(0)
        .grant("procnet", Access::Read)
        .grant("ssl", Access::Read);
    let wrong = validate::<Assert>(
        &h,
        json!({ "checks": [
            { "exists": "procnet/tcp" },
            { "not_listen": { "port": 6379 } },
            { "cert": { "path": "ssl/fullchain.pem", "days": 14 } },
            { "mount": { "command": "mountpoint", "path": "/srv/postgres" } },
            { "exists": "letsencrypt/live" },
        ] }),
    );
    let seen: Vec<(String, String, String)> = wrong
        .iter()
        .map(|e| {
            (
                e.param.clone().unwrap_or_default(),
                e.message.clone(),
                e.hint.clone().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(seen.len(), 4, "{seen:#?}");
    assert_eq!(seen[0].0, "checks[1].not_listen");
    assert_eq!(seen[0].1, "check 2: unknown kind `not_listen`");
    assert!(
        seen[0].2.starts_with("did you mean `not_listening`?"),
        "{}",
        seen[0].2
    );
    assert_eq!(seen[1].0, "checks[2].cert.days");
    assert_eq!(seen[1].1, "check 3 (`cert`): unknown key `days`");
    assert_eq!(
        seen[1].2,
        "did you mean `days_left`? `cert` takes `path`, `days_left`"
    );
    assert_eq!(seen[2].0, "checks[3].mount.command");
    assert_eq!(
        seen[2].1,
        "check 4 (`mount`): the step may not run command `mountpoint`"
    );
    assert_eq!(seen[3].0, "checks[4].exists");
    assert!(
        seen[3].1.contains("the step holds no grant `letsencrypt`"),
        "{}",
        seen[3].1
    );
    assert!(h.logs().is_empty());
    // A right runbook: nothing to say.
    let right = validate::<Assert>(
        &h,
        json!({ "checks": [{ "cert": { "path": "ssl/fullchain.pem", "days_left": 14 } }], "when": "after" }),
    );
    assert!(right.is_empty(), "{right:?}");
    // `when` too, and a parameter the step does not take.
    let wrong = validate::<Assert>(
        &h,
        json!({ "checks": [{ "exists": "ssl" }], "when": "later" }),
    );
    assert_eq!(wrong.len(), 1);
    assert_eq!(wrong[0].param.as_deref(), Some("when"));
    let wrong = validate::<Assert>(
        &h,
        json!({ "checks": [{ "exists": "ssl" }], "strict": true }),
    );
    assert_eq!(wrong[0].param.as_deref(), Some("strict"));
}

/// What `mend step inspect std:assert` shows of `checks` names every kind
/// and every key the step accepts, so the two cannot drift apart.
#[test]
fn the_described_checks_name_every_kind_and_key() {
    let info = mend_sdk::step_info!(Assert);
    let doc = &info.params[0].doc;
    for kind in spec::KINDS {
        assert!(doc.contains(kind), "{kind} is not described:\n{doc}");
    }
    for (kind, keys) in spec::KEYS {
        let line = doc
            .lines()
            .find(|l| l.split(['|', '=']).any(|w| w.trim() == kind))
            .unwrap_or_else(|| panic!("no line for {kind}:\n{doc}"));
        for key in keys {
            assert!(
                line.contains(&format!("{key} =")),
                "{kind}: `{key}` not in {line}"
            );
        }
    }
}
