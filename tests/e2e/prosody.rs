//! A real Prosody (Debian's `prosody`; `.ci/run` installs it), started by
//! the test without systemd, on loopback, with its own config and data
//! directory, dropping to the `prosody` user as it does in production.
//! Users made with `prosodyctl`, the data backed up as tar.zst by the
//! shipped `prosody/backup.toml`, damaged, put back by the shipped
//! `prosody/restore.toml`; Prosody must then log those users in over XMPP
//! on 127.0.0.1, and read files it owns.

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

/// A Prosody of the test's own: its config, data directory, log and port.
struct Prosody {
    root: PathBuf,
    port: u16,
}

fn id(name: &str, db: &str) -> u32 {
    std::fs::read_to_string(db)
        .unwrap()
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f[0] == name).then(|| f[2].parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no `{name}` in {db}: install Debian's prosody (.ci/run does)"))
}

impl Prosody {
    fn new(root: &Path) -> Prosody {
        let port = 30_000 + (std::process::id() % 20_000) as u16;
        let (uid, gid) = (id("prosody", "/etc/passwd"), id("prosody", "/etc/group"));
        let data = root.join("lib/prosody");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::create_dir_all(root.join("modules/modules")).unwrap();
        std::fs::write(
            root.join("modules/modules/mod_example.lua"),
            "-- a third-party module\n",
        )
        .unwrap();
        std::fs::create_dir_all(root.join("run")).unwrap();
        for d in [root, &root.join("lib")] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::os::unix::fs::chown(&data, Some(uid), Some(gid)).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o750)).unwrap();
        std::os::unix::fs::chown(root.join("run"), Some(uid), Some(gid)).unwrap();
        let r = root.display();
        std::fs::write(
            root.join("prosody.cfg.lua"),
            format!(
                r#"pidfile = "{r}/run/prosody.pid"
data_path = "{r}/lib/prosody"
daemonize = true
c2s_ports = {{ {port} }}
c2s_interfaces = {{ "127.0.0.1" }}
s2s_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
admin_socket = "{r}/run/prosody.sock"
log = {{ info = "{r}/run/prosody.log" }}
modules_enabled = {{ "roster"; "saslauth"; "disco"; "posix"; "ping"; "admin_shell" }}
modules_disabled = {{ "s2s"; "tls" }}
authentication = "internal_hashed"
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
VirtualHost "example.test"
"#
            ),
        )
        .unwrap();
        let p = Prosody {
            root: root.to_path_buf(),
            port,
        };
        // What the runbooks call systemctl and prosodyctl: Prosody's own
        // prosodyctl with this config (no systemd here).
        let cfg = root.join("prosody.cfg.lua");
        let svc = f_write(
            &root.join("bin/svc"),
            &format!(
                "#!/bin/sh\ncd /\ncase \"$1\" in\n  is-active) exec prosodyctl --config {c} status >/dev/null 2>&1 ;;\n  stop|start) exec prosodyctl --config {c} \"$1\" ;;\n  *) exit 2 ;;\nesac\n",
                c = cfg.display()
            ),
        );
        let ctl = f_write(
            &root.join("bin/prosodyctl"),
            &format!(
                "#!/bin/sh\ncd /\nexec prosodyctl --config {} \"$@\"\n",
                cfg.display()
            ),
        );
        for s in [svc, ctl] {
            std::fs::set_permissions(&s, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        p
    }

    fn ctl(&self, args: &[&str]) -> std::process::Output {
        Command::new(self.root.join("bin/prosodyctl"))
            .args(args)
            .output()
            .expect("run prosodyctl: install Debian's prosody (.ci/run does)")
    }

    fn start(&self) {
        let out = self.ctl(&["start"]);
        assert!(out.status.success(), "prosodyctl start: {out:?}");
        // Bounded: a Prosody that never listens fails the test.
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("Prosody never listened on 127.0.0.1:{}", self.port);
    }

    /// An XMPP client's SASL PLAIN login on 127.0.0.1: Prosody's answer.
    fn login(&self, user: &str, password: &str) -> String {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        s.write_all(b"<?xml version='1.0'?><stream:stream to='example.test' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>").unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&got).contains("</stream:features>") {
            let n = s.read(&mut buf).unwrap();
            assert!(
                n > 0,
                "Prosody closed the stream: {}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
        }
        let token = b64(format!("\0{user}\0{password}").as_bytes());
        s.write_all(
            format!(
                "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>"
            )
            .as_bytes(),
        )
        .unwrap();
        let n = s.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

impl Drop for Prosody {
    fn drop(&mut self) {
        let _ = self.ctl(&["stop"]);
    }
}

fn f_write(path: &Path, text: &str) -> PathBuf {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    path.to_path_buf()
}

fn b64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn prosody_comes_back_from_a_tar_zst_backup_and_logs_its_users_in() {
    let f = Fixture::new();
    let p = Prosody::new(f.dir.path());
    for (user, pw) in [("alice", "wonder-1"), ("bob", "builder-2")] {
        let out = p.ctl(&["register", user, "example.test", pw]);
        assert!(out.status.success(), "register {user}: {out:?}");
    }
    p.start();
    assert!(p.login("alice", "wonder-1").contains("<success"), "before");
    let sets = |extra: &[(&str, String)]| -> Vec<String> {
        let mut v = vec![
            ("lib", f.path("lib").display().to_string()),
            ("snapshots", f.path("snaps").display().to_string()),
        ];
        v.extend(extra.iter().cloned());
        v.into_iter()
            .flat_map(|(k, val)| ["--set".to_string(), format!("{k}={val}")])
            .collect()
    };
    std::fs::create_dir_all(f.path("snaps")).unwrap();
    let backup = repo("runbooks/prosody/backup.toml");
    let mut args = vec!["run".to_string(), backup];
    args.extend(sets(&[(
        "modules",
        f.path("modules").display().to_string(),
    )]));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let ran = f.mend(&args);
    assert_eq!(ran.code, 0, "{}", ran.text());
    assert!(
        ran.text().contains("sha256 "),
        "the archive's digest: {}",
        ran.text()
    );
    let archives: Vec<String> = std::fs::read_dir(f.path("snaps"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        archives
            .iter()
            .any(|a| a.starts_with("prosody-2") && a.ends_with(".tar.zst")),
        "{archives:?}"
    );
    // The disk loses Prosody's accounts.
    let host_dir = f.path("lib/prosody/example%2etest");
    std::fs::remove_dir_all(host_dir.join("accounts")).unwrap();
    assert!(
        !p.login("alice", "wonder-1").contains("<success"),
        "damaged"
    );
    let restore = repo("runbooks/prosody/restore.toml");
    let mut args = vec!["run".to_string(), restore];
    args.extend(sets(&[
        ("systemctl", f.path("bin/svc").display().to_string()),
        ("prosodyctl", f.path("bin/prosodyctl").display().to_string()),
        ("pidfile", f.path("run/prosody.pid").display().to_string()),
        ("check_delay", "200ms".to_string()),
    ]));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let ran = f.mend(&args);
    assert_eq!(ran.code, 0, "{}", ran.text());
    for l in ["-> prosody-2", ".tar.zst"] {
        assert!(ran.text().contains(l), "{l}: {}", ran.text());
    }
    let uid = id("prosody", "/etc/passwd");
    for e in [
        "",
        "example%2etest",
        "example%2etest/accounts",
        "example%2etest/accounts/alice.dat",
    ] {
        let md = std::fs::metadata(f.path("lib/prosody").join(e)).unwrap();
        assert_eq!(md.uid(), uid, "{e} is Prosody's");
    }
    // Bounded: Prosody answers within 10 s of its start.
    let mut answer = String::new();
    for _ in 0..50 {
        if std::net::TcpStream::connect(("127.0.0.1", p.port)).is_ok() {
            answer = p.login("alice", "wonder-1");
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(
        answer.contains("<success"),
        "alice after the restore: {answer}"
    );
    assert!(p.login("bob", "builder-2").contains("<success"), "bob");
    assert!(
        !p.login("bob", "wrong").contains("<success"),
        "a wrong password fails"
    );
}
