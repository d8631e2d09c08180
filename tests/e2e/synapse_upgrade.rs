//! `runbooks/synapse/upgrade.toml` through the binary, on real
//! virtualenvs: each "Synapse" is a small wheel built by the test
//! (`matrix-synapse` with `synapse/__init__.py` and a
//! `synapse.app.homeserver` that serves `/health` and the federation
//! version on the port its config names), installed by pip into a real
//! `python3 -m venv --copies` made somewhere else (offline: `pip --no-index`, as
//! pip cannot reach PyPI here), and packed as a tarball. A stand-in
//! `systemctl` starts it as matrix.org's unit does
//! (`venv/bin/python -m synapse.app.homeserver --config-path ...`) and
//! stops it; a stand-in `pg_dump` writes a file.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;

const UNIT: &str = "matrix-synapse.service";

/// The stand-in homeserver: `/health` answers HEALTH.
const HOMESERVER: &str = r#"import http.server, sys, synapse
cfg = sys.argv[sys.argv.index("--config-path") + 1]
port = int([l.split(":")[1] for l in open(cfg) if l.startswith("port:")][0])
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health":
            code, body = HEALTH, "OK"
        elif self.path == "/_matrix/federation/v1/version":
            code, body = 200, synapse.__version__
        else:
            code, body = 404, "not here"
        self.send_response(code)
        self.end_headers()
        self.wfile.write(body.encode())
    def log_message(self, *args):
        pass
def main():
    http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
if __name__ == "__main__":
    main()
"#;

/// Writes a pure-Python wheel by hand (no setuptools, no network).
const WHEEL: &str = r#"import base64, hashlib, sys, zipfile
version, out, homeserver = sys.argv[1:4]
dist = "matrix_synapse-%s.dist-info" % version
files = {
    "synapse/__init__.py": "__version__ = %r\n" % version,
    "synapse/app/__init__.py": "",
    "synapse/app/homeserver.py": open(homeserver).read(),
    dist + "/METADATA": "Metadata-Version: 2.1\nName: matrix-synapse\nVersion: %s\n" % version,
    dist + "/WHEEL": "Wheel-Version: 1.0\nGenerator: mend-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    dist + "/entry_points.txt": "[console_scripts]\nsynapse_homeserver = synapse.app.homeserver:main\n",
}
record = []
with zipfile.ZipFile(out, "w") as z:
    for name, text in files.items():
        data = text.encode()
        z.writestr(name, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append("%s,sha256=%s,%d" % (name, digest, len(data)))
    record.append(dist + "/RECORD,,")
    z.writestr(dist + "/RECORD", "\n".join(record) + "\n")
"#;

fn sh(script: &str) -> String {
    let out = Command::new("sh").args(["-c", script]).output().unwrap();
    assert!(
        out.status.success(),
        "{script}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn executable(f: &Fixture, rel: &str, text: &str) {
    let p = f.write(rel, text);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A virtualenv with Synapse `version` installed by pip, built under
/// `build/VERSION/venv` (not where it will run), packed as
/// `releases/synapse-VERSION.tar.gz`; its sha256.
fn release(f: &Fixture, version: &str, health: u16) -> String {
    let build = f.path(&format!("build/{version}"));
    std::fs::create_dir_all(&build).unwrap();
    let hs = f.write(
        &format!("build/{version}.homeserver.py"),
        &HOMESERVER.replace("HEALTH", &health.to_string()),
    );
    let maker = f.write("build/wheel.py", WHEEL);
    let wheel = build.join(format!("matrix_synapse-{version}-py3-none-any.whl"));
    std::fs::create_dir_all(f.path("releases")).unwrap();
    let out = f.path(&format!("releases/synapse-{version}.tar.gz"));
    sh(&format!(
        "set -e; python3 {maker} {version} {wheel} {hs}; python3 -m venv --copies {b}/venv; \
         {b}/venv/bin/python -m pip install --quiet --no-index --no-deps --disable-pip-version-check {wheel}; \
         tar -C {b} -czf {out} venv",
        maker = maker.display(),
        wheel = wheel.display(),
        hs = hs.display(),
        b = build.display(),
        out = out.display(),
    ));
    sh(&format!("sha256sum {}", out.display()))[..64].to_string()
}

/// The version the federation endpoint answers, once it answers.
fn served(port: u16) -> Option<String> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(15) {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = write!(
                s,
                "GET /_matrix/federation/v1/version HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
            );
            let mut text = String::new();
            if s.read_to_string(&mut text).is_ok()
                && text.starts_with("HTTP/1.0 200")
                && let Some((_, body)) = text.split_once("\r\n\r\n")
            {
                return Some(body.to_string());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// Synapse 1.0.0 live in `opt/venv` and running, the stand-ins.
struct World {
    f: Fixture,
    port: u16,
}

impl World {
    fn new() -> World {
        let f = Fixture::new();
        let port = free_port();
        release(&f, "1.0.0", 200);
        std::fs::create_dir_all(f.path("opt")).unwrap();
        sh(&format!(
            "tar -C {} -xzf {}",
            f.path("opt").display(),
            f.path("releases/synapse-1.0.0.tar.gz").display()
        ));
        let cfg = f.write("etc/homeserver.yaml", &format!("port: {port}\n"));
        f.write("backups/.keep", "");
        let pid = f.path("run/synapse.pid");
        std::fs::create_dir_all(pid.parent().unwrap()).unwrap();
        executable(
            &f,
            "bin/systemctl",
            &format!(
                r#"#!/bin/sh
p="{pid}"
case "$1" in
  is-active) [ -e "$p" ] && kill -0 "$(cat "$p")" 2>/dev/null ;;
  stop) [ -e "$p" ] || exit 0; k=$(cat "$p"); rm -f "$p"
        kill "$k"; while kill -0 "$k" 2>/dev/null; do sleep 0.05; done ;;
  start) "{opt}/venv/bin/python" -m synapse.app.homeserver --config-path "{cfg}" >/dev/null 2>&1 </dev/null &
         echo $! > "$p" ;;
  *) exit 2 ;;
esac
"#,
                pid = pid.display(),
                opt = f.path("opt").display(),
                cfg = cfg.display(),
            ),
        );
        executable(
            &f,
            "bin/pg_dump",
            "#!/bin/sh\nwhile [ $# -gt 0 ]; do [ \"$1\" = -f ] && echo dump > \"$2\"; shift; done\n",
        );
        let w = World { f, port };
        assert!(w.systemctl(&["start", UNIT]));
        assert_eq!(served(port).as_deref(), Some("1.0.0"), "1.0.0 is up");
        w
    }

    fn systemctl(&self, args: &[&str]) -> bool {
        Command::new(self.f.path("bin/systemctl"))
            .args(args)
            .status()
            .unwrap()
            .success()
    }

    fn mend(&self, cmd: &str, version: &str, sha256: &str) -> Ran {
        let f = &self.f;
        let sets = [
            format!("opt={}", f.path("opt").display()),
            format!("releases={}", f.path("releases").display()),
            format!("backups={}", f.path("backups").display()),
            format!("pgbin={}", f.path("bin").display()),
            format!("systemctl={}", f.path("bin/systemctl").display()),
            format!("health=http://127.0.0.1:{}/health", self.port),
            "health_delay=100ms".to_string(),
            format!("release=synapse-{version}.tar.gz"),
            format!("sha256={sha256}"),
            format!("version={version}"),
        ];
        let runbook = repo("runbooks/synapse/upgrade.toml");
        let mut args = vec![cmd, runbook.as_str()];
        for s in &sets {
            args.extend(["--set", s.as_str()]);
        }
        f.mend(&args)
    }

    /// What the live virtualenv's interpreter imports.
    fn imported(&self) -> String {
        sh(&format!(
            "{}/venv/bin/python -c 'import synapse; print(synapse.__version__)'",
            self.f.path("opt").display()
        ))
        .trim()
        .to_string()
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
        self.systemctl(&["stop", UNIT]);
    }
}

#[test]
fn synapse_upgrades_in_its_virtualenv_and_answers_with_the_new_version() {
    let w = World::new();
    let sum = release(&w.f, "1.1.0", 200);
    let plan = w.mend("plan", "1.1.0", &sum);
    assert_eq!(plan.code, 0, "{}", plan.text());
    assert!(plan.text().contains("swap"), "{}", plan.text());

    let ran = w.mend("run", "1.1.0", &sum);
    assert_eq!(ran.code, 0, "{}", ran.text());
    assert!(ran.text().contains("committed"), "{}", ran.text());
    assert_eq!(served(w.port).as_deref(), Some("1.1.0"), "1.1.0 answers");
    assert_eq!(w.imported(), "1.1.0");
    assert_eq!(w.listing("opt"), ["venv"], "no staging left");
    assert!(
        w.listing("backups")
            .iter()
            .any(|n| n.starts_with("pre-upgrade-") && n.ends_with(".dump")),
        "the database was dumped first: {:?}",
        w.listing("backups")
    );
}

#[test]
fn a_synapse_that_does_not_come_back_is_rolled_back_to_the_old_virtualenv() {
    let w = World::new();
    let sum = release(&w.f, "1.1.0", 500);
    let ran = w.mend("run", "1.1.0", &sum);
    assert_eq!(ran.code, 1, "{}", ran.text());
    let text = ran.text();
    assert!(text.contains("answered 500; 200 wanted"), "{text}");
    assert!(text.contains("rolled back"), "{text}");
    assert!(w.systemctl(&["is-active", UNIT]), "started again");
    assert_eq!(
        served(w.port).as_deref(),
        Some("1.0.0"),
        "the old version answers again"
    );
    assert_eq!(w.imported(), "1.0.0", "the old virtualenv is back whole");
    assert_eq!(w.listing("opt"), ["venv"], "no staging left");
}

#[test]
fn a_virtualenv_of_another_version_than_asked_is_rolled_back_before_it_starts() {
    let w = World::new();
    let sum = release(&w.f, "1.1.0", 200);
    // The tarball holds 1.1.0; the operator asked for 1.2.0.
    let f = &w.f;
    std::fs::rename(
        f.path("releases/synapse-1.1.0.tar.gz"),
        f.path("releases/synapse-1.2.0.tar.gz"),
    )
    .unwrap();
    let ran = w.mend("run", "1.2.0", &sum);
    assert_eq!(ran.code, 1, "{}", ran.text());
    assert!(
        ran.text().contains("must import Synapse 1.2.0"),
        "{}",
        ran.text()
    );
    assert!(ran.text().contains("rolled back"), "{}", ran.text());
    assert_eq!(served(w.port).as_deref(), Some("1.0.0"));
    assert_eq!(w.imported(), "1.0.0");
}
