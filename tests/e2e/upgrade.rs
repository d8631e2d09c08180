//! `runbooks/mastodon/upgrade.toml` through the binary, on a real HTTP
//! service: each release is a small Python web server packed as a tarball
//! by the test, answering `/version` and `/health` on the port its
//! `.env.production` names. A stand-in `systemctl` starts and stops it; a
//! stand-in `pg_dump` and each release's `bin/rails` record that they ran.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;

const UNITS: [&str; 3] = [
    "mastodon-web.service",
    "mastodon-sidekiq.service",
    "mastodon-streaming.service",
];

/// A release's web server: `/health` answers `HEALTH`.
const SERVER: &str = r#"import http.server, os
here = os.path.dirname(os.path.abspath(__file__))
env = dict(l.strip().split("=", 1) for l in open(os.path.join(here, ".env.production")) if "=" in l)
version = open(os.path.join(here, "VERSION")).read().strip()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/version":
            code, body = 200, version
        elif self.path == "/health":
            code, body = HEALTH, "health of " + version
        else:
            code, body = 404, "not here"
        self.send_response(code)
        self.end_headers()
        self.wfile.write(body.encode())
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(env["PORT"])), H).serve_forever()
"#;

fn executable(f: &Fixture, rel: &str, text: &str) {
    let p = f.write(rel, text);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn python() -> String {
    let out = Command::new("sh")
        .args(["-c", "command -v python3"])
        .output()
        .unwrap();
    let path = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(!path.is_empty(), "python3 is needed (.ci/run installs it)");
    path
}

/// Write release `version` into `dir`, serving `/health` with `health`.
fn release_tree(f: &Fixture, dir: &str, version: &str, health: u16) {
    f.write(
        &format!("{dir}/server.py"),
        &SERVER.replace("HEALTH", &health.to_string()),
    );
    f.write(&format!("{dir}/VERSION"), &format!("{version}\n"));
    f.write(
        &format!("{dir}/public/assets/app-{version}.js"),
        "console.log(1)",
    );
    // What the migration ran with: its environment, program and arguments.
    executable(
        f,
        &format!("{dir}/bin/rails"),
        &format!(
            "#!/bin/sh\necho \"$RAILS_ENV $SKIP_POST_DEPLOYMENT_MIGRATIONS $0 $*\" >> \"{}\"\n",
            f.path("migrations.log").display()
        ),
    );
}

/// Pack `src/app-VERSION` as `releases/app-VERSION.tar.gz`; its sha256.
fn pack(f: &Fixture, version: &str) -> String {
    let name = format!("app-{version}");
    let out = f.path(&format!("releases/{name}.tar.gz"));
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let ok = Command::new("tar")
        .arg("czf")
        .arg(&out)
        .arg("-C")
        .arg(f.path("src"))
        .arg(&name)
        .status()
        .unwrap();
    assert!(ok.success());
    let sum = Command::new("sha256sum").arg(&out).output().unwrap();
    String::from_utf8(sum.stdout).unwrap()[..64].to_string()
}

/// GET `path`: the status and body, or None when nothing answers.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// Wait until the service answers `/version`.
fn version(port: u16) -> Option<String> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(15) {
        if let Some((200, body)) = get(port, "/version") {
            return Some(body);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// The live release 1 (running), its config and media, the stand-ins.
struct World {
    f: Fixture,
    port: u16,
}

impl World {
    fn new() -> World {
        let f = Fixture::new();
        let port = free_port();
        release_tree(&f, "home/live", "1", 200);
        f.write("home/live/.env.production", &format!("PORT={port}\n"));
        f.write("home/live/public/system/media/1.png", "a cat");
        f.write("home/live/public/system/media/2.png", "a dog");
        f.write("backups/.keep", "");
        let units = f.path("bin/units");
        let live = f.path("home/live");
        executable(
            &f,
            "bin/systemctl",
            &format!(
                r#"#!/bin/sh
d="{units}"
f="$d/$2"
case "$1" in
  is-active) [ -e "$f" ] || exit 3; p=$(cat "$f"); [ "$p" = up ] || kill -0 "$p" 2>/dev/null ;;
  stop) [ -e "$f" ] || exit 0; p=$(cat "$f"); rm -f "$f"
        [ "$p" = up ] || {{ kill "$p"; while kill -0 "$p" 2>/dev/null; do sleep 0.05; done; }} ;;
  start) if [ "$2" = mastodon-web.service ]; then
           {python} "{live}/server.py" >/dev/null 2>&1 </dev/null & echo $! > "$f"
         else echo up > "$f"; fi ;;
  *) exit 2 ;;
esac
"#,
                units = units.display(),
                live = live.display(),
                python = python(),
            ),
        );
        std::fs::create_dir_all(&units).unwrap();
        executable(
            &f,
            "bin/pg_dump",
            "#!/bin/sh\nwhile [ $# -gt 0 ]; do [ \"$1\" = -f ] && echo dump > \"$2\"; shift; done\n",
        );
        let w = World { f, port };
        for u in UNITS {
            assert!(w.systemctl(&["start", u]));
        }
        assert_eq!(version(port).as_deref(), Some("1"), "release 1 is up");
        w
    }

    fn systemctl(&self, args: &[&str]) -> bool {
        Command::new(self.f.path("bin/systemctl"))
            .args(args)
            .status()
            .unwrap()
            .success()
    }

    fn running(&self) -> Vec<bool> {
        UNITS
            .iter()
            .map(|u| self.systemctl(&["is-active", u]))
            .collect()
    }

    fn mend(&self, cmd: &str, release: &str, sha256: &str) -> Ran {
        let f = &self.f;
        let sets = [
            format!("home={}", f.path("home").display()),
            format!("releases={}", f.path("releases").display()),
            format!("backups={}", f.path("backups").display()),
            format!("pgbin={}", f.path("bin").display()),
            format!("systemctl={}", f.path("bin/systemctl").display()),
            // The fixture belongs to root; the test of the drop to another
            // user is in hostile.rs.
            "mastodon_user=root".to_string(),
            format!("health=http://127.0.0.1:{}/health", self.port),
            "health_delay=100ms".to_string(),
            format!("release={release}.tar.gz"),
            format!("root={release}"),
            format!("sha256={sha256}"),
        ];
        let runbook = repo("runbooks/mastodon/upgrade.toml");
        let mut args = vec![cmd, runbook.as_str()];
        for s in &sets {
            args.extend(["--set", s.as_str()]);
        }
        f.mend(&args)
    }

    fn migrations(&self) -> Vec<String> {
        std::fs::read_to_string(self.f.path("migrations.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn listing(&self, rel: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.f.path(rel))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for World {
    /// No server outlives its test.
    fn drop(&mut self) {
        for u in UNITS {
            self.systemctl(&["stop", u]);
        }
    }
}

fn live_tree(w: &World) -> std::collections::BTreeMap<String, String> {
    tree(Path::new(&w.f.path("home")), true)
}

#[test]
fn upgrade_from_1_to_2_swaps_the_release_carries_the_data_and_passes_health() {
    let w = World::new();
    release_tree(&w.f, "src/app-2", "2", 200);
    let sum = pack(&w.f, "2");

    let plan = w.mend("plan", "app-2", &sum);
    assert_eq!(plan.code, 0, "{}", plan.text());
    let text = plan.text();
    for line in [
        "releases/app-2.tar.gz: OK (sha256)",
        "stop 3 of 3 units",
        "release app-2: unpack releases/app-2.tar.gz",
        "carry .env.production, public/system from the current release (moved, not copied)",
        "IRREVERSIBLE",
        "then check: http://127.0.0.1:",
    ] {
        assert!(text.contains(line), "plan lacks {line:?}:\n{text}");
    }
    assert_eq!(w.running(), [true, true, true], "a plan stops nothing");

    let ran = w.mend("run", "app-2", &sum);
    assert_eq!(ran.code, 0, "{}", ran.text());
    assert_eq!(version(w.port).as_deref(), Some("2"), "release 2 answers");
    assert_eq!(get(w.port, "/health").unwrap().0, 200);
    assert_eq!(w.running(), [true, true, true]);
    let home = w.f.path("home/live");
    assert_eq!(
        std::fs::read_to_string(home.join("public/system/media/1.png")).unwrap(),
        "a cat",
        "the media came along"
    );
    assert!(
        home.join(".env.production").exists(),
        "the config came along"
    );
    assert!(home.join("public/assets/app-2.js").exists());
    assert!(!home.join("public/assets/app-1.js").exists());
    assert_eq!(
        w.listing("home"),
        ["live"],
        "no staging or old release left"
    );
    assert_eq!(
        w.migrations().len(),
        1,
        "migrated once: {:?}",
        w.migrations()
    );
    let migration = &w.migrations()[0];
    assert!(
        migration.starts_with("production true ")
            && migration.ends_with("/home/live/bin/rails db:migrate"),
        "run in the new release with the runbook's env: {migration}"
    );
    let dumps = w.listing("backups");
    assert!(
        dumps
            .iter()
            .any(|d| d.starts_with("pre-upgrade-") && d.ends_with(".dump")),
        "the database was dumped first: {dumps:?}"
    );
}

#[test]
fn a_release_whose_health_fails_is_rolled_back_and_release_1_answers_again() {
    let w = World::new();
    release_tree(&w.f, "src/app-2", "2", 503);
    let sum = pack(&w.f, "2");
    let before = live_tree(&w);

    let ran = w.mend("run", "app-2", &sum);
    assert_eq!(ran.code, 1, "{}", ran.text());
    let text = ran.text();
    assert!(
        text.contains("answered 503; 200 wanted"),
        "the health check says why:\n{text}"
    );
    assert!(text.contains("rolled back"), "{text}");
    assert!(
        text.contains("migrate"),
        "the migration is named as not undone:\n{text}"
    );
    assert_eq!(
        version(w.port).as_deref(),
        Some("1"),
        "release 1 answers again"
    );
    assert_eq!(w.running(), [true, true, true]);
    assert_same(
        &before,
        &live_tree(&w),
        "the live release after the rollback",
    );
    assert_eq!(w.listing("home"), ["live"], "no staging left");
}

#[test]
fn a_tarball_whose_checksum_does_not_match_changes_nothing() {
    let w = World::new();
    release_tree(&w.f, "src/app-2", "2", 200);
    let sum = pack(&w.f, "2");
    let wrong = sum.replace(&sum[..4], "0000");
    let before = live_tree(&w);

    let ran = w.mend("run", "app-2", &wrong);
    assert_eq!(ran.code, 1, "{}", ran.text());
    assert!(
        ran.text().contains("releases/app-2.tar.gz: FAILED"),
        "{}",
        ran.text()
    );
    assert_same(&before, &live_tree(&w), "the live release");
    assert_eq!(version(w.port).as_deref(), Some("1"));
    assert_eq!(w.running(), [true, true, true], "nothing was stopped");
    assert!(w.migrations().is_empty());
    assert_eq!(w.listing("backups"), [".keep"], "nothing was dumped");
}

#[test]
fn an_md5_digest_given_as_sha256_is_bad_input_and_nothing_runs() {
    let w = World::new();
    release_tree(&w.f, "src/app-2", "2", 200);
    pack(&w.f, "2");
    let before = live_tree(&w);
    // What md5sum prints, pasted where the sha256 belongs.
    let md5 = "d41d8cd98f00b204e9800998ecf8427e";
    for cmd in ["plan", "run"] {
        let ran = w.mend(cmd, "app-2", md5);
        assert_eq!(ran.code, 2, "{cmd}: {}", ran.text());
        assert!(
            ran.stdout.contains("the length of an MD5 digest"),
            "{cmd}: {}",
            ran.stdout
        );
        assert!(!ran.stdout.contains("rolled back"), "{cmd}: {}", ran.stdout);
    }
    assert_same(&before, &live_tree(&w), "the live release");
    assert_eq!(w.running(), [true, true, true], "nothing was stopped");
    assert_eq!(w.listing("backups"), [".keep"], "nothing was dumped");
}

/// `mend rehearse` of the upgrade: the release is swapped in and back in
/// copies of `home`; no service stops, nothing migrates, release 1 answers
/// all along, and the copies end as they started.
#[test]
fn the_upgrade_rehearses_on_copies_and_release_1_keeps_running() {
    let w = World::new();
    release_tree(&w.f, "src/app-2", "2", 200);
    let sum = pack(&w.f, "2");
    let before = live_tree(&w);
    let ran = w.mend("rehearse", "app-2", &sum);
    assert_eq!(ran.code, 0, "{}", ran.text());
    assert!(ran.stdout.contains("rehearsal passed"), "{}", ran.stdout);
    assert_same(&before, &live_tree(&w), "the live release");
    assert_eq!(version(w.port).as_deref(), Some("1"));
    assert_eq!(w.running(), [true, true, true], "nothing was stopped");
    assert!(w.migrations().is_empty(), "{:?}", w.migrations());
    assert_eq!(w.listing("backups"), [".keep"], "nothing was dumped");
}
