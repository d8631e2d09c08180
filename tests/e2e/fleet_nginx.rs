//! `runbooks/nginx/distribute-certificate.toml` over four real sshd hosts,
//! each with a REAL nginx (Debian's /usr/sbin/nginx) on its own loopback
//! port, started by the test with its own configuration, pid file, logs and
//! temp paths. The certificates are made here with openssl; `openssl
//! s_client` against each host's port says which serial is served. Only
//! systemctl is a stand-in (systemd cannot run here): its `is-active` asks
//! the real master by its pid file, its `reload` is the real `nginx -s
//! reload`. The files are a real server's shape: owned by www-data, the key
//! mode 640.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::free_port;
use crate::fleet::{Fleet, Host, Tree};

const RUNBOOK: &str = "runbooks/nginx/distribute-certificate.toml";
const DOMAIN: &str = "cdn.test";

fn repo(p: &str) -> String {
    format!("{}/../../{p}", env!("CARGO_MANIFEST_DIR"))
}

fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A self-signed certificate and its key with this serial, in `dir`.
fn make_cert(dir: &Path, serial: &str) {
    std::fs::create_dir_all(dir).unwrap();
    sh(Command::new("openssl").args([
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "90",
        "-subj",
        "/CN=cdn.test",
        "-set_serial",
        &format!("0x{serial}"),
        "-keyout",
        dir.join("privkey.pem").to_str().unwrap(),
        "-out",
        dir.join("fullchain.pem").to_str().unwrap(),
    ]));
}

/// The shape on a server: owned by the service user, the key 640.
fn own(dir: &Path) {
    let www = Command::new("id")
        .args(["-u", "www-data"])
        .output()
        .unwrap();
    let uid: u32 = String::from_utf8_lossy(&www.stdout).trim().parse().unwrap();
    let root = rustix::process::geteuid().is_root();
    for (f, mode) in [("fullchain.pem", 0o644), ("privkey.pem", 0o640)] {
        let p = dir.join(f);
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
        if root {
            std::os::unix::fs::chown(&p, Some(uid), Some(uid)).unwrap();
        }
    }
}

/// The serial nginx serves on this port, as openssl s_client sees it.
fn served_serial(port: u16) -> String {
    let mut s = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-servername", DOMAIN])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let x = Command::new("openssl")
        .args(["x509", "-noout", "-serial"])
        .stdin(s.stdout.take().unwrap())
        .output()
        .unwrap();
    let _ = s.wait();
    String::from_utf8_lossy(&x.stdout).trim().to_string()
}

/// Until nginx serves `serial` (a reload is asynchronous); bounded only
/// against a broken nginx, never a measurement.
fn wait_served(port: u16, serial: &str) {
    let t = Instant::now();
    loop {
        let got = served_serial(port);
        if got == format!("serial={serial}") {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "port {port} serves {got:?}, not serial={serial}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One host's nginx: its prefix directory, port, and the running master.
struct Nginx {
    prefix: PathBuf,
    port: u16,
    child: Child,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Nginx {
    fn conf(&self) -> PathBuf {
        self.prefix.join("nginx.conf")
    }
    fn pid(&self) -> PathBuf {
        self.prefix.join("nginx.pid")
    }
    fn logs(&self) -> PathBuf {
        self.prefix.join("logs")
    }
    fn systemctl(&self) -> PathBuf {
        self.prefix.join("systemctl")
    }

    /// A real nginx for host `h`, serving `h`'s live certificate.
    fn start(h: &Host) -> Nginx {
        let prefix = h.dir.join("nginx");
        for d in ["logs", "tmp"] {
            std::fs::create_dir_all(prefix.join(d)).unwrap();
        }
        let port = free_port();
        let live = h.data().join("live").join(DOMAIN);
        let p = |s: &str| prefix.join(s).display().to_string();
        let user = if rustix::process::geteuid().is_root() {
            "user www-data;\n"
        } else {
            ""
        };
        let conf = format!(
            "daemon off;\nmaster_process on;\nworker_processes 1;\n{user}pid {pid};\n\
             error_log {err};\nevents {{ worker_connections 64; }}\nhttp {{\n  \
             access_log {acc};\n  client_body_temp_path {tmp}/body;\n  proxy_temp_path {tmp}/proxy;\n  \
             fastcgi_temp_path {tmp}/fastcgi;\n  uwsgi_temp_path {tmp}/uwsgi;\n  scgi_temp_path {tmp}/scgi;\n  \
             server {{\n    listen 127.0.0.1:{port} ssl;\n    server_name {DOMAIN};\n    \
             ssl_certificate {live}/fullchain.pem;\n    ssl_certificate_key {live}/privkey.pem;\n    \
             return 200 \"ok\\n\";\n  }}\n}}\n",
            pid = p("nginx.pid"),
            err = p("logs/error.log"),
            acc = p("logs/access.log"),
            tmp = p("tmp"),
            live = live.display(),
        );
        std::fs::write(prefix.join("nginx.conf"), conf).unwrap();
        // systemd's two verbs the runbook uses, without systemd: is-active
        // asks the real master (by its pid file), reload is nginx's own.
        let ctl = format!(
            "#!/bin/sh\ncase \"$1\" in\n  is-active) kill -0 \"$(cat {pid})\" ;;\n  \
             reload) exec /usr/sbin/nginx -c {conf} -e {err} -s reload ;;\n  *) exit 2 ;;\nesac\n",
            pid = p("nginx.pid"),
            conf = p("nginx.conf"),
            err = p("logs/error.log"),
        );
        std::fs::write(prefix.join("systemctl"), ctl).unwrap();
        std::fs::set_permissions(
            prefix.join("systemctl"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let child = Command::new("/usr/sbin/nginx")
            .arg("-c")
            .arg(prefix.join("nginx.conf"))
            .arg("-e")
            .arg(prefix.join("logs/error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let n = Nginx {
            prefix,
            port,
            child,
        };
        let t = Instant::now();
        while !(n.pid().exists() && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()) {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "nginx of {} did not start: {}",
                h.name,
                std::fs::read_to_string(n.logs().join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        // The access log exists from the start on a real server too.
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(n.logs().join("access.log"))
            .unwrap();
        n
    }
}

/// Four hosts, each with the old certificate (serial 1001) in live and a
/// real nginx serving it; the renewed one (1002) packed as on the renewal
/// host. Returns the fleet, the nginxes, and the tarball with its sha256.
fn setup(n: usize) -> (Fleet, Vec<Nginx>, PathBuf, String) {
    let f = Fleet::start(n);
    let old = f.root().join("old");
    make_cert(&old, "1001");
    let new = f.root().join("renewed");
    make_cert(&new, "1002");
    own(&new);
    let tarball = f.root().join("cdn.test-1002.tar");
    sh(Command::new("tar")
        .arg("-cf")
        .arg(&tarball)
        .arg("-C")
        .arg(&new)
        .args(["fullchain.pem", "privkey.pem"]));
    let sum = sh(Command::new("sha256sum").arg(&tarball));
    let sum = sum.split_whitespace().next().unwrap().to_string();
    let mut nginxes = vec![];
    for h in &f.hosts {
        let live = h.data().join("live").join(DOMAIN);
        std::fs::create_dir_all(&live).unwrap();
        for file in ["fullchain.pem", "privkey.pem"] {
            std::fs::copy(old.join(file), live.join(file)).unwrap();
        }
        own(&live);
        nginxes.push(Nginx::start(h));
    }
    for n in &nginxes {
        assert_eq!(served_serial(n.port), "serial=1001");
    }
    (f, nginxes, tarball, sum)
}

/// The inventory: each host's live directory, nginx and its files.
fn inventory(f: &Fleet, nginxes: &[Nginx], rollout: &str, nginx_of: &dyn Fn(usize) -> String) {
    f.inventory(rollout, &|i| {
        let n = &nginxes[i];
        format!(
            "params = {{ live = \"{live}\", nginx = \"{nginx}\", conf = \"{conf}\", pid = \"{pid}\", \
             logs = \"{logs}\", systemctl = \"{ctl}\", connect = \"127.0.0.1:{port}\", served_delay = \"50ms\" }}",
            live = f.hosts[i].data().join("live").display(),
            nginx = nginx_of(i),
            conf = n.conf().display(),
            pid = n.pid().display(),
            logs = n.logs().display(),
            ctl = n.systemctl().display(),
            port = n.port,
        )
    });
}

fn plan(f: &Fleet, tarball: &Path, sum: &str, out: &str) -> crate::fleet::Ran {
    f.mend(&[
        "fleet",
        "plan",
        &repo(RUNBOOK),
        "--ship",
        &format!("incoming={}", tarball.display()),
        "--set",
        "release=cdn.test-1002.tar",
        "--set",
        &format!("sha256={sum}"),
        "--set",
        &format!("domain={DOMAIN}"),
        "--out",
        out,
    ])
}

fn live_tree(h: &Host) -> Tree {
    crate::common::tree(&h.data().join("live").join(DOMAIN), true)
        .into_iter()
        .collect()
}

#[test]
fn fleet_nginx_certificate_reaches_every_hosts_real_nginx_canary_first() {
    let (f, nginxes, tarball, sum) = setup(4);
    inventory(&f, &nginxes, "batches = [1, \"rest\"]", &|_| {
        "/usr/sbin/nginx".into()
    });
    let p = plan(&f, &tarball, &sum, "p");
    assert_eq!(p.code, 0, "{}", p.text());
    for h in &f.hosts {
        assert!(
            p.stdout.contains(&format!("  {}  planned", h.name)),
            "{}",
            p.text()
        );
    }
    // Nothing served changed at plan time.
    for n in &nginxes {
        assert_eq!(served_serial(n.port), "serial=1001");
    }
    let run = f.mend(&["fleet", "run", "p"]);
    assert_eq!(run.code, 0, "{}", run.text());
    assert!(
        run.stdout.contains("every host committed"),
        "{}",
        run.text()
    );
    // The run waits until nginx serves what is in live: no waiting here.
    for (h, n) in f.hosts.iter().zip(&nginxes) {
        assert_eq!(served_serial(n.port), "serial=1002", "{}", h.name);
        let live = h.data().join("live").join(DOMAIN);
        let renewed = f.root().join("renewed");
        for file in ["fullchain.pem", "privkey.pem"] {
            assert_eq!(
                std::fs::read(live.join(file)).unwrap(),
                std::fs::read(renewed.join(file)).unwrap(),
                "{} {file}",
                h.name
            );
        }
        // Owner and mode as packed on the renewal host.
        use std::os::unix::fs::MetadataExt;
        let key = std::fs::metadata(live.join("privkey.pem")).unwrap();
        assert_eq!(key.mode() & 0o777, 0o640, "{}", h.name);
        if rustix::process::geteuid().is_root() {
            assert_eq!(key.uid(), 33, "{}: the key is www-data's", h.name);
        }
    }
}

#[test]
fn fleet_nginx_a_failing_nginx_t_stops_the_rollout_and_rollback_fleet_restores_the_canary() {
    let (f, nginxes, tarball, sum) = setup(4);
    // h2's `nginx -t` fails (a stand-in: the certificate is fine, the check
    // says no); every other host tests with the real nginx.
    inventory(&f, &nginxes, "batches = [1, 1, \"rest\"]", &|i| {
        if i == 1 {
            "/bin/false".into()
        } else {
            "/usr/sbin/nginx".into()
        }
    });
    let before: Vec<Tree> = f.hosts.iter().map(live_tree).collect();
    let p = plan(&f, &tarball, &sum, "p");
    assert_eq!(p.code, 0, "{}", p.text());
    let untouched: Vec<_> = (0..4).map(|i| f.snapshot(i)).collect();

    let run = f.mend(&["fleet", "run", "p", "--rollback-fleet"]);
    assert_eq!(run.code, 1, "{}", run.text());
    assert!(
        run.stdout.contains("h2  rolled back  nginx-test"),
        "{}",
        run.text()
    );
    assert!(
        run.stdout
            .contains("batch 3/3: not started; failures 1 > max_failures 0: stopping"),
        "{}",
        run.text()
    );
    assert!(run.stdout.contains("h1  undone by fleet"), "{}", run.text());
    // h3 and h4 were never reached: data and mend state byte for byte.
    for i in [2, 3] {
        assert_eq!(f.snapshot(i), untouched[i], "h{} changed", i + 1);
        assert_eq!(served_serial(nginxes[i].port), "serial=1001");
    }
    // h2 rolled itself back, h1 was rolled back by the fleet: the old
    // certificate and key, byte for byte with owner, mode and times.
    for i in [0, 1] {
        assert_eq!(live_tree(&f.hosts[i]), before[i], "h{}", i + 1);
        // The canary's undo reloaded nginx with the old files.
        wait_served(nginxes[i].port, "1001");
    }
}
