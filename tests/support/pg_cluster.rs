//! A private PostgreSQL 15 cluster for tests: initdb in a temporary
//! directory, a Unix socket of its own (no TCP), run as `nobody` when the
//! tests run as root (initdb and postgres refuse root), stopped
//! (immediately) on drop. And a PgBouncer in front of it, on a socket too.
//! `.ci/run` installs Debian's postgresql-15 and pgbouncer. Shared by
//! tests/e2e (the restore runbook) and crates/journal/tests/pg.rs (the
//! fleet's shared journal), each including this file with `#[path]`.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const BIN: &str = "/usr/lib/postgresql/15/bin";
pub const PGBOUNCER: &str = "/usr/sbin/pgbouncer";

/// A running cluster; stopped on drop.
pub struct Pg {
    pub root: tempfile::TempDir,
    pub port: u16,
    bouncers: Vec<std::process::Child>,
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A server-side program (initdb, pg_ctl, pgbouncer) as `nobody` under root.
fn unprivileged(path: &str) -> Command {
    if is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", path]);
        c
    } else {
        Command::new(path)
    }
}

/// A PostgreSQL program.
pub fn pg_command(program: &str) -> Command {
    let path = format!("{BIN}/{program}");
    if matches!(program, "initdb" | "pg_ctl") {
        unprivileged(&path)
    } else {
        Command::new(&path)
    }
}

/// Runs a PostgreSQL program; it must succeed.
pub fn pg(program: &str, args: &[&str]) -> std::process::Output {
    let out = pg_command(program).args(args).output().unwrap_or_else(|e| {
        panic!("cannot run {BIN}/{program} ({e}); install postgresql-15 (.ci/run does)")
    });
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A directory the unprivileged server owns.
fn owned_dir(d: &Path) {
    std::fs::create_dir_all(d).unwrap();
    if is_root() {
        std::os::unix::fs::chown(d, Some(65534), Some(65534)).unwrap();
    }
}

fn owned_file(f: &Path, text: &str) {
    std::fs::write(f, text).unwrap();
    if is_root() {
        std::os::unix::fs::chown(f, Some(65534), Some(65534)).unwrap();
    }
}

impl Pg {
    pub fn start() -> Pg {
        let root = tempfile::tempdir().unwrap();
        // Readable by the unprivileged server; its data directory its own.
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let data = root.path().join("data");
        let sock = root.path().join("sock");
        owned_dir(&data);
        owned_dir(&sock);
        // A port number only names the socket file; nothing listens on TCP.
        let port = 20_000 + (std::process::id() % 20_000) as u16;
        let d = data.display().to_string();
        pg(
            "initdb",
            &[
                "-D",
                &d,
                "-U",
                "mend",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        let opts = format!(
            "-k {} -c listen_addresses= -p {port} -c fsync=off -c full_page_writes=off",
            sock.display()
        );
        let log = root.path().join("log");
        owned_file(&log, "");
        let log = log.display().to_string();
        pg(
            "pg_ctl",
            &["-D", &d, "-o", &opts, "-l", &log, "-w", "-t", "60", "start"],
        );
        Pg {
            root,
            port,
            bouncers: Vec::new(),
        }
    }

    pub fn sock(&self) -> String {
        self.root.path().join("sock").display().to_string()
    }

    /// A libpq-style DSN for database `postgres` as `mend`.
    pub fn dsn(&self) -> String {
        format!(
            "host={} port={} user=mend dbname=postgres",
            self.sock(),
            self.port
        )
    }

    pub fn conn(&self) -> Vec<String> {
        vec![
            "-h".into(),
            self.sock(),
            "-p".into(),
            self.port.to_string(),
            "-U".into(),
            "mend".into(),
        ]
    }

    pub fn run(&self, program: &str, rest: &[&str]) -> String {
        let conn = self.conn();
        let mut args: Vec<&str> = conn.iter().map(String::as_str).collect();
        args.extend(rest);
        String::from_utf8_lossy(&pg(program, &args).stdout)
            .trim()
            .to_string()
    }

    /// One SQL command through psql; its unaligned output.
    pub fn sql(&self, db: &str, sql: &str) -> String {
        self.run(
            "psql",
            &["-At", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql],
        )
    }

    pub fn dump(&self, db: &str, to: &Path) {
        self.run("pg_dump", &["-Fc", "-f", &to.display().to_string(), db]);
    }

    /// Starts a PgBouncer with `pool_mode` in front of this cluster,
    /// listening on a socket of its own; returns its DSN. `None` when
    /// pgbouncer is not installed.
    pub fn bouncer(&mut self, pool_mode: &str) -> Option<String> {
        if !Path::new(PGBOUNCER).exists() {
            return None;
        }
        let n = self.bouncers.len();
        let dir: PathBuf = self.root.path().join(format!("bouncer-{n}"));
        owned_dir(&dir);
        let port = self.port + 1 + n as u16;
        owned_file(&dir.join("users.txt"), "\"mend\" \"\"\n");
        owned_file(
            &dir.join("pgbouncer.ini"),
            &format!(
                "[databases]\n* = host={} port={}\n[pgbouncer]\nlisten_addr =\n\
                 listen_port = {port}\nunix_socket_dir = {}\nauth_type = trust\n\
                 auth_file = {}/users.txt\npool_mode = {pool_mode}\nlogfile = {}/log\n",
                self.sock(),
                self.port,
                dir.display(),
                dir.display(),
                dir.display()
            ),
        );
        let child = unprivileged(PGBOUNCER)
            .arg(dir.join("pgbouncer.ini"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start pgbouncer");
        self.bouncers.push(child);
        // Ready once its socket exists; bounded, so a broken setup fails.
        let socket = dir.join(format!(".s.PGSQL.{port}"));
        for _ in 0..2000 {
            if socket.exists() {
                return Some(format!(
                    "host={} port={port} user=mend dbname=postgres",
                    dir.display()
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        panic!(
            "pgbouncer did not open {}; its log: {}",
            socket.display(),
            std::fs::read_to_string(dir.join("log")).unwrap_or_default()
        );
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        for mut b in self.bouncers.drain(..) {
            let _ = b.kill();
            let _ = b.wait();
        }
        let d = self.root.path().join("data").display().to_string();
        let _ = pg_command("pg_ctl")
            .args(["-D", &d, "-m", "immediate", "stop"])
            .output();
    }
}
