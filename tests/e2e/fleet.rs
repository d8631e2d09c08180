//! `mend fleet` against real hosts: each host is a real sshd (Debian's
//! openssh-server) on 127.0.0.1 with its own port, host key, login key and
//! mend state, reached through the system's ssh client with strict host
//! keys. The key line of each host's authorized_keys gives the login its own
//! HOME and MEND_STATE_DIR (PermitUserEnvironment), as a separate machine
//! would have. No traffic leaves loopback; nothing here waits on a clock.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{free_port, mend_bin, shared_cache, tree};

fn sh(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn keygen(path: &Path, comment: &str) {
    sh(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path));
}

/// The login the hosts accept: root here (CI), else whoever runs the tests.
pub(crate) fn user() -> String {
    if rustix::process::geteuid().is_root() {
        "root".into()
    } else {
        std::env::var("USER").unwrap_or_else(|_| "nobody".into())
    }
}

pub(crate) struct Host {
    pub(crate) name: String,
    pub(crate) port: u16,
    pub(crate) dir: PathBuf,
    sshd: Option<Child>,
}

impl Host {
    pub(crate) fn data(&self) -> PathBuf {
        self.dir.join("data")
    }
    pub(crate) fn state(&self) -> PathBuf {
        self.dir.join("state")
    }
}

/// N hosts, each a real sshd; the ssh_config and known_hosts that reach them.
pub(crate) struct Fleet {
    root: tempfile::TempDir,
    pub(crate) hosts: Vec<Host>,
}

impl Fleet {
    pub(crate) fn start(n: usize) -> Fleet {
        let root = tempfile::Builder::new()
            .prefix("mend-fleet.")
            .tempdir()
            .unwrap();
        let r = root.path().to_path_buf();
        if rustix::process::geteuid().is_root() {
            // sshd's privilege-separation directory; systemd's unit makes
            // it (RuntimeDirectory=sshd), so without systemd the test does.
            std::fs::create_dir_all("/run/sshd").unwrap();
        }
        keygen(&r.join("client"), "mend-fleet-test");
        let client_pub = std::fs::read_to_string(r.join("client.pub")).unwrap();
        let (mut known, mut cfg, mut hosts) = (String::new(), String::new(), Vec::new());
        for i in 1..=n {
            let name = format!("h{i}");
            let dir = r.join(&name);
            for d in ["home", "state", "data/incoming", "data/live"] {
                std::fs::create_dir_all(dir.join(d)).unwrap();
            }
            // The certificate as it is before the rollout, and the new one
            // waiting to be distributed.
            std::fs::write(
                dir.join("data/live/cert.pem"),
                format!("old cert of {name}\n"),
            )
            .unwrap();
            std::fs::write(
                dir.join("data/incoming/cert.pem"),
                "new cert, serial 1002\n",
            )
            .unwrap();
            std::fs::write(dir.join("data/incoming/key.pem"), "new key\n").unwrap();
            keygen(&dir.join("hostkey"), &name);
            let port = free_port();
            let env = |k: &str, v: &Path| format!("environment=\"{k}={}\"", v.display());
            std::fs::write(
                dir.join("authorized_keys"),
                format!(
                    "{},{},{},restrict {client_pub}",
                    env("HOME", &dir.join("home")),
                    env("MEND_STATE_DIR", &dir.join("state")),
                    // Content-addressed, safe to share: each "host" is
                    // spared compiling every step again.
                    env("MEND_CACHE_DIR", &shared_cache()),
                ),
            )
            .unwrap();
            std::fs::write(
                dir.join("sshd_config"),
                format!(
                    "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nPidFile {pid}\n\
                     AuthorizedKeysFile {ak}\nAuthenticationMethods publickey\n\
                     PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
                     StrictModes no\nPermitRootLogin prohibit-password\nAllowUsers {user}\n\
                     PermitUserEnvironment MEND_*,HOME\nX11Forwarding no\nAllowTcpForwarding no\n\
                     AllowAgentForwarding no\nMaxStartups 100:30:200\nMaxSessions 50\nUseDNS no\n",
                    hk = dir.join("hostkey").display(),
                    pid = dir.join("sshd.pid").display(),
                    ak = dir.join("authorized_keys").display(),
                    user = user(),
                ),
            )
            .unwrap();
            let hostpub = std::fs::read_to_string(dir.join("hostkey.pub")).unwrap();
            let mut f = hostpub.split_whitespace();
            // HostKeyAlias: known_hosts names the host, not 127.0.0.1:PORT.
            known.push_str(&format!(
                "{name} {} {}\n",
                f.next().unwrap(),
                f.next().unwrap()
            ));
            cfg.push_str(&format!(
                "Host {name}\n  HostName 127.0.0.1\n  Port {port}\n  User {}\n  HostKeyAlias {name}\n",
                user()
            ));
            hosts.push(Host {
                name,
                port,
                dir,
                sshd: None,
            });
        }
        std::fs::write(r.join("known_hosts"), known).unwrap();
        cfg.push_str(&format!(
            "Host *\n  IdentityFile {k}\n  IdentitiesOnly yes\n  UserKnownHostsFile {kh}\n  \
             GlobalKnownHostsFile /dev/null\n  BatchMode yes\n  LogLevel ERROR\n  \
             KexAlgorithms curve25519-sha256\n",
            k = r.join("client").display(),
            kh = r.join("known_hosts").display()
        ));
        std::fs::write(r.join("ssh_config"), cfg).unwrap();
        let mut fleet = Fleet { root, hosts };
        for i in 0..n {
            fleet.start_host(i);
        }
        fleet
    }

    /// A stand-in `nginx -t` that waits until `release` exists, so a test
    /// holds a host's run in flight for as long as it needs, whatever the
    /// machine's speed: (the script, the file that releases it).
    /// A canary (h1) whose `nginx -t` waits on the returned file, a batch
    /// of the rest after it, planned into `p`: the shape of every test that
    /// acts while the canary runs.
    pub(crate) fn plan_with_waiting_canary(&self) -> PathBuf {
        let (waiter, release) = self.waiter();
        self.inventory("batches = [1, \"rest\"]", &|i| {
            if i == 0 {
                format!(
                    "params = {{ data = \"{}\", nginx = \"{}\" }}",
                    self.hosts[i].data().display(),
                    waiter.display()
                )
            } else {
                String::new()
            }
        });
        let rb = self.runbook();
        let plan = self.mend(&["fleet", "plan", rb.to_str().unwrap(), "--out", "p"]);
        assert_eq!(plan.code, 0, "{}", plan.text());
        release
    }

    pub(crate) fn waiter(&self) -> (PathBuf, PathBuf) {
        let release = self.root().join("release");
        let waiter = self.root().join("waiter.sh");
        std::fs::write(
            &waiter,
            format!(
                "#!/bin/sh\nwhile [ ! -e {} ]; do sleep 0.05; done\n",
                release.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&waiter, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        (waiter, release)
    }

    /// The controller, as the operator starts it (no MEND_STATE_DIR: its
    /// own state directory), to spawn with the stdio a test wants.
    pub(crate) fn controller(&self, args: &[&str]) -> Command {
        let mut c = Command::new(mend_bin());
        c.current_dir(self.root())
            .env_remove("MEND_STATE_DIR")
            .env("MEND_CACHE_DIR", shared_cache())
            .arg("--state-dir")
            .arg(self.root().join("controller"))
            .args(args);
        c
    }

    pub(crate) fn root(&self) -> &Path {
        self.root.path()
    }

    /// Start a host's sshd and wait for its banner.
    pub(crate) fn start_host(&mut self, i: usize) {
        let h = &mut self.hosts[i];
        let log = std::fs::File::create(h.dir.join("sshd.log")).unwrap();
        // sshd re-executes itself: its path must be absolute.
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(h.dir.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut child = child;
        let t = Instant::now();
        loop {
            use std::io::Read;
            // This host's own sshd, not another's on the port: it wrote
            // its pid file once it was listening, and it is still there.
            assert!(
                child.try_wait().unwrap().is_none(),
                "sshd {} exited: {}",
                h.name,
                std::fs::read_to_string(h.dir.join("sshd.log")).unwrap_or_default()
            );
            let ours = std::fs::read_to_string(h.dir.join("sshd.pid"))
                .is_ok_and(|p| p.trim() == child.id().to_string());
            if ours && let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", h.port)) {
                let mut b = [0u8; 8];
                if s.read(&mut b).is_ok_and(|n| b[..n].starts_with(b"SSH-2.0")) {
                    break;
                }
            }
            // Only a bound on a broken sshd, never a measurement.
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "sshd {} did not start",
                h.name
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        h.sshd = Some(child);
    }

    /// Stop a host's sshd: the listener and every connection it forked
    /// (each is a session leader of its own, so not in the listener's group).
    pub(crate) fn stop_host(&mut self, i: usize) {
        if let Some(mut c) = self.hosts[i].sshd.take() {
            let sessions = sshd_descendants(c.id() as i32);
            let _ = c.kill();
            for p in sessions {
                // SAFETY: a plain kill(2) of a pid this test's sshd forked.
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
            let _ = c.wait();
        }
    }

    /// The inventory: every host with the test's mend, its data as a param.
    pub(crate) fn inventory(&self, rollout: &str, per_host: &dyn Fn(usize) -> String) -> PathBuf {
        let mut s = format!(
            "[fleet]\nname = \"test\"\nparallel = 4\n[ssh]\nconfig = \"ssh_config\"\n\
             [rollout]\n{rollout}\n[groups.cdn]\nparams = {{ nginx = \"/bin/true\" }}\n"
        );
        for (i, h) in self.hosts.iter().enumerate() {
            let own = per_host(i);
            s.push_str(&format!(
                "[hosts.{}]\nssh = \"{}\"\ngroups = [\"cdn\"]\n{own}\n",
                h.name, h.name
            ));
            if !own.contains("mend = ") {
                s.push_str(&format!("mend = \"{}\"\n", mend_bin()));
            }
            if !own.contains("params") {
                s.push_str(&format!(
                    "params = {{ data = \"{}\" }}\n",
                    h.data().display()
                ));
            }
        }
        let p = self.root().join("fleet.toml");
        std::fs::write(&p, s).unwrap();
        p
    }

    /// The certificate-distribution runbook: the new certificate and key
    /// copied into `live` as a checked snapshot, then `nginx -t` (a stand-in
    /// per host: the inventory's `nginx` param) checked after it.
    pub(crate) fn runbook(&self) -> PathBuf {
        let p = self.root().join("distribute-cert.toml");
        std::fs::write(
            &p,
            r#"[runbook]
name = "distribute-cert"
version = "1.0.0"
summary = "copy the renewed certificate into live, then check the nginx config"

[params]
data = { required = true, doc = "the host's certificate directory" }
nginx = { default = "/bin/true", doc = "nginx, or a stand-in" }

[grants.incoming]
path = "${data}/incoming"
access = "read"

[grants.live]
path = "${data}/live"
access = "write"

[commands.nginx]
program = "${nginx}"
reads = [["-t"]]

[[steps]]
id = "copy-cert"
uses = "std:snapshot"
grants = ["incoming", "live"]
with = { source = "incoming", into = "live", label = "cert" }

[[steps]]
id = "nginx-test"
uses = "std:assert"
commands = ["nginx"]
with = { when = "after", checks = [{ command = { command = "nginx", args = ["-t"] }, message = "nginx -t failed" }] }
"#,
        )
        .unwrap();
        p
    }

    /// The controller: mend with its own state directory, run from the root.
    pub(crate) fn mend(&self, args: &[&str]) -> Ran {
        let out = self.controller(args).stdin(Stdio::null()).output().unwrap();
        Ran {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Every host's data and state, for "nothing changed".
    pub(crate) fn snapshot(&self, i: usize) -> (Tree, Tree) {
        let h = &self.hosts[i];
        (
            tree(&h.data(), true).into_iter().collect(),
            tree(&h.state(), false).into_iter().collect(),
        )
    }
}

/// The sshd processes below `pid`, found by their parent in /proc.
fn sshd_descendants(pid: i32) -> Vec<i32> {
    let parent_of = |p: i32| -> Option<(i32, String)> {
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
        let (head, rest) = stat.rsplit_once(')')?;
        let comm = head.split_once('(')?.1.to_string();
        Some((rest.split_whitespace().nth(1)?.parse().ok()?, comm))
    };
    let all: Vec<(i32, i32, String)> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|p| parent_of(p).map(|(pp, comm)| (p, pp, comm)))
        .collect();
    let mut out = vec![];
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for (c, _, comm) in all.iter().filter(|(_, pp, _)| *pp == p) {
            if comm.starts_with("sshd") {
                out.push(*c);
                frontier.push(*c);
            }
        }
    }
    out
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for i in 0..self.hosts.len() {
            self.stop_host(i);
        }
    }
}

/// A tree as `common::tree` lists it: path, then what is there.
pub(crate) type Tree = Vec<(String, String)>;

pub(crate) struct Ran {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Ran {
    pub(crate) fn text(&self) -> String {
        format!(
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }
}

/// The snapshot directories a host's `live` holds after the rollout.
pub(crate) fn copies(h: &Host) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(h.data().join("live"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("cert-"))
        .collect();
    v.sort();
    v
}

#[test]
fn fleet_certificate_rollout_canary_then_rest_commits_on_all_four() {
    let f = Fleet::start(4);
    let inv = f.inventory("batches = [1, \"rest\"]", &|_| String::new());
    let rb = f.runbook();
    let lint = f.mend(&["lint", inv.to_str().unwrap()]);
    assert_eq!(lint.code, 0, "{}", lint.text());
    assert!(
        lint.stdout.contains("fleet inventory, 4 hosts"),
        "{}",
        lint.text()
    );

    let plan = f.mend(&[
        "fleet",
        "plan",
        rb.to_str().unwrap(),
        "-i",
        "fleet.toml",
        "--out",
        "p",
    ]);
    assert_eq!(plan.code, 0, "{}", plan.text());
    for h in &f.hosts {
        assert!(
            plan.stdout.contains(&format!("  {}  planned: ", h.name)),
            "{}",
            plan.text()
        );
        // A plan changes nothing.
        assert!(copies(h).is_empty());
    }
    assert!(
        plan.stdout.contains("batches: 1: h1 | 2: h2 h3 h4"),
        "{}",
        plan.text()
    );
    // Only the data path differs between hosts.
    assert!(plan.stdout.contains("param data"), "{}", plan.text());
    assert!(!plan.stdout.contains("param nginx"), "{}", plan.text());

    let run = f.mend(&["--json", "fleet", "run", "p"]);
    assert_eq!(run.code, 0, "{}", run.text());
    let v = run.json();
    let hosts = v["hosts"].as_array().unwrap();
    let got: Vec<(String, u64, String)> = hosts
        .iter()
        .map(|h| {
            (
                h["host"].as_str().unwrap().to_string(),
                h["batch"].as_u64().unwrap(),
                h["end"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("h1".into(), 1, "committed".into()),
            ("h2".into(), 2, "committed".into()),
            ("h3".into(), 2, "committed".into()),
            ("h4".into(), 2, "committed".into()),
        ],
        "{}",
        run.text()
    );
    for h in &f.hosts {
        let c = copies(h);
        assert_eq!(c.len(), 1, "{}: {c:?}", h.name);
        let cert =
            std::fs::read_to_string(h.data().join("live").join(&c[0]).join("cert.pem")).unwrap();
        assert_eq!(cert, "new cert, serial 1002\n");
        // The old certificate is still where it was.
        assert_eq!(
            std::fs::read_to_string(h.data().join("live/cert.pem")).unwrap(),
            format!("old cert of {}\n", h.name)
        );
    }
    // The host's own journal has the run: `mend show` there knows it.
    let fleet_run = v["fleet_run"].as_str().unwrap();
    let run_id = hosts[0]["run_id"].as_str().unwrap();
    let shown = Command::new(mend_bin())
        .arg("--state-dir")
        .arg(f.hosts[0].state())
        .args(["show", run_id])
        .output()
        .unwrap();
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    // A second start of the same fleet run on a host reports the run there
    // and starts nothing.
    let plan_sum = std::fs::read_to_string(
        f.hosts[0]
            .state()
            .join("fleet/runs")
            .join(fleet_run)
            .join("plan"),
    )
    .unwrap();
    let again = Command::new(mend_bin())
        .arg("--state-dir")
        .arg(f.hosts[0].state())
        .args([
            "--json",
            "fleet",
            "host",
            "start",
            "--fleet-run",
            fleet_run,
            "--plan",
            plan_sum.trim(),
        ])
        .output()
        .unwrap();
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("\"started\": false"));
    assert_eq!(copies(&f.hosts[0]).len(), 1);
    // The controller's history has it.
    let hist = f.mend(&["fleet", "history"]);
    assert!(
        hist.stdout.contains(fleet_run) && hist.stdout.contains("committed"),
        "{}",
        hist.text()
    );
}

#[test]
fn fleet_a_failing_check_on_host_2_stops_before_batch_3_and_hosts_3_4_are_untouched() {
    let f = Fleet::start(4);
    let inv = f.inventory("batches = [1, 1, \"rest\"]\nmax_failures = 0", &|i| {
        // h2's nginx -t fails, after its certificate was copied.
        if i == 1 {
            format!(
                "params = {{ data = \"{}\", nginx = \"/bin/false\" }}",
                f.hosts[i].data().display()
            )
        } else {
            String::new()
        }
    });
    let _ = inv;
    let rb = f.runbook();
    let before: Vec<_> = (0..4).map(|i| f.snapshot(i).0).collect();
    let plan = f.mend(&["fleet", "plan", rb.to_str().unwrap(), "--out", "p"]);
    assert_eq!(plan.code, 0, "{}", plan.text());
    // The per-host nginx shows in the drift table.
    assert!(plan.stdout.contains("param nginx"), "{}", plan.text());
    let after_plan: Vec<_> = (0..4).map(|i| f.snapshot(i)).collect();

    let run = f.mend(&["fleet", "run", "p"]);
    assert_eq!(run.code, 1, "{}", run.text());
    assert!(run.stdout.contains("h1  committed"), "{}", run.text());
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
    // h2 rolled itself back; h3 and h4 were never touched, byte for byte.
    assert_eq!(f.snapshot(1).0, before[1]);
    for i in [2, 3] {
        assert_eq!(f.snapshot(i), after_plan[i], "h{} changed", i + 1);
        assert_eq!(f.snapshot(i).0, before[i]);
    }
    assert_eq!(copies(&f.hosts[0]).len(), 1);

    // The controller's journal says where each host stands.
    let fleet_run = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("fleet run ")?.split(':').next())
        .unwrap()
        .to_string();
    let shown = f.mend(&["fleet", "show", &fleet_run]);
    assert!(shown.stdout.contains("(stopped)"), "{}", shown.text());
    assert!(
        shown.stdout.contains("h1  batch 1  committed"),
        "{}",
        shown.text()
    );
    assert!(
        shown.stdout.contains("h2  batch 2  rolled-back"),
        "{}",
        shown.text()
    );
    assert!(!shown.stdout.contains("h3"), "{}", shown.text());
}

#[test]
fn fleet_an_unreachable_host_is_named_with_sshs_own_words_exit_7() {
    let mut f = Fleet::start(2);
    f.inventory("batches = [1, \"rest\"]", &|_| String::new());
    let rb = f.runbook();
    f.stop_host(1);
    let plan = f.mend(&["fleet", "plan", rb.to_str().unwrap(), "--out", "p"]);
    assert_eq!(plan.code, 7, "{}", plan.text());
    assert!(
        plan.stdout
            .contains("h2  unreachable: ssh: connect to host 127.0.0.1 port")
            && plan.stdout.contains("Connection refused"),
        "{}",
        plan.text()
    );
    assert!(plan.stdout.contains("h1  planned"), "{}", plan.text());
    assert!(
        !f.root().join("p").exists(),
        "a plan with an unreachable host is not saved"
    );

    // A host whose key is not the one known: unreachable too, never asked.
    f.start_host(1);
    let kh = f.root().join("known_hosts");
    let text = std::fs::read_to_string(&kh).unwrap();
    let h1_line = text.lines().next().unwrap().replacen("h1", "h2", 1);
    let others: Vec<&str> = text.lines().filter(|l| !l.starts_with("h2 ")).collect();
    std::fs::write(&kh, format!("{}\n{h1_line}\n", others.join("\n"))).unwrap();
    let plan = f.mend(&["fleet", "plan", rb.to_str().unwrap()]);
    assert_eq!(plan.code, 7, "{}", plan.text());
    assert!(
        plan.stdout.contains("Host key verification failed."),
        "{}",
        plan.text()
    );
}

#[test]
fn fleet_bad_input_is_refused_with_its_place_and_changes_nothing() {
    let f = Fleet::start(2);
    let rb = f.runbook();
    let before: Vec<_> = (0..2).map(|i| f.snapshot(i)).collect();
    // An unknown key: file:line:column, exit 2.
    let inv = f.inventory("batches = [1, \"rest\"]\nmax_failure = 1", &|_| {
        String::new()
    });
    let plan = f.mend(&[
        "fleet",
        "plan",
        rb.to_str().unwrap(),
        "-i",
        inv.to_str().unwrap(),
    ]);
    assert_eq!(plan.code, 2, "{}", plan.text());
    assert!(
        plan.stderr
            .contains("unknown key `max_failure` in [rollout]"),
        "{}",
        plan.text()
    );
    assert!(plan.stderr.contains("fleet.toml:8:1"), "{}", plan.text());
    assert!(
        plan.stderr.contains("did you mean `max_failures`?"),
        "{}",
        plan.text()
    );

    // --hosts naming nothing.
    f.inventory("batches = [1, \"rest\"]", &|_| String::new());
    let plan = f.mend(&["fleet", "plan", rb.to_str().unwrap(), "--hosts", "cnd"]);
    assert_eq!(plan.code, 2, "{}", plan.text());
    assert!(
        plan.stderr.contains("`cnd` is no host or group"),
        "{}",
        plan.text()
    );

    // Another mend version on h2: refused, exit 2, by name.
    let fake = f.root().join("old-mend");
    std::fs::write(&fake, "#!/bin/sh\necho 'mend 0.0.9'\n").unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    f.inventory("batches = [1, \"rest\"]", &|i| {
        if i == 1 {
            format!(
                "params = {{ data = \"{}\" }}\nmend = \"{}\"",
                f.hosts[i].data().display(),
                fake.display()
            )
        } else {
            String::new()
        }
    });
    let plan = f.mend(&["fleet", "plan", rb.to_str().unwrap(), "--hosts", "h2"]);
    assert_eq!(plan.code, 2, "{}", plan.text());
    assert!(
        plan.stdout
            .contains("\"mend 0.0.9\", this controller is \"mend "),
        "{}",
        plan.text()
    );
    for (i, b) in before.iter().enumerate() {
        assert_eq!(&f.snapshot(i), b, "h{} changed", i + 1);
    }
}

/// A connection that drops while a host runs does not stop the run there:
/// it was started detached (its own session, stdio off the connection).
/// The controller reports the host unreachable with ssh's words (exit 7);
/// the host's run goes on, commits, and its journal says so.
#[test]
fn fleet_a_dropped_connection_does_not_stop_the_run_on_the_host() {
    let mut f = Fleet::start(1);
    // nginx -t stand-in that waits for the test's word: the run is certain
    // to be in flight when the connection drops, whatever the machine's speed.
    let (waiter, release) = f.waiter();
    f.inventory("batches = [1]", &|i| {
        format!(
            "params = {{ data = \"{}\", nginx = \"{}\" }}",
            f.hosts[i].data().display(),
            waiter.display()
        )
    });
    let rb = f.runbook();
    let plan = f.mend(&["fleet", "plan", rb.to_str().unwrap(), "--out", "p"]);
    assert_eq!(plan.code, 0, "{}", plan.text());
    let controller = f
        .controller(&["fleet", "run", "p"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Until the host's run has started (its supervisor's pid is written).
    let runs = f.hosts[0].state().join("fleet/runs");
    let t = Instant::now();
    let run_dir = loop {
        if let Some(d) = std::fs::read_dir(&runs)
            .ok()
            .and_then(|mut r| r.next())
            .map(|e| e.unwrap().path())
            .filter(|d| d.join("pid").exists())
        {
            break d;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "the run never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    f.stop_host(0);
    let out = controller.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(7), "{text}");
    assert!(text.contains("h1  unreachable"), "{text}");
    assert!(
        !run_dir.join("exit").exists(),
        "the run ended before the drop: {text}"
    );
    // The host carries on alone once its check passes.
    std::fs::write(&release, "").unwrap();
    let t = Instant::now();
    while !run_dir.join("exit").exists() {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "the run never ended"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(std::fs::read_to_string(run_dir.join("exit")).unwrap(), "0");
    assert_eq!(copies(&f.hosts[0]).len(), 1);
    let hist = Command::new(mend_bin())
        .arg("--state-dir")
        .arg(f.hosts[0].state())
        .args(["history"])
        .output()
        .unwrap();
    // Verified and held: the controller that lost it settles it later.
    assert!(String::from_utf8_lossy(&hist.stdout).contains("held"));
}

/// A controller SIGKILLed while the canary runs: `mend fleet resume` asks
/// the canary where it stands (its start finds the run already there),
/// finishes it, then rolls out the rest; each host ran exactly once.
#[test]
fn fleet_resume_after_the_controller_is_killed_mid_canary_runs_each_host_once() {
    let f = Fleet::start(3);
    let release = f.plan_with_waiting_canary();
    let mut controller = f
        .controller(&["fleet", "run", "p"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let runs = f.hosts[0].state().join("fleet/runs");
    let t = Instant::now();
    let run_dir = loop {
        if let Some(d) = std::fs::read_dir(&runs)
            .ok()
            .and_then(|mut r| r.next())
            .map(|e| e.unwrap().path())
            .filter(|d| d.join("pid").exists())
        {
            break d;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "the canary never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    controller.kill().unwrap();
    controller.wait().unwrap();
    let fleet_run = run_dir.file_name().unwrap().to_str().unwrap().to_string();
    // The canary is still in flight; the others were never started.
    assert!(!run_dir.join("exit").exists());
    for h in &f.hosts[1..] {
        assert!(!h.state().join("fleet/runs").exists(), "{} started", h.name);
    }
    std::fs::write(&release, "").unwrap();
    let resumed = f.mend(&["fleet", "resume", &fleet_run]);
    assert_eq!(resumed.code, 0, "{}", resumed.text());
    assert!(
        resumed
            .stdout
            .contains("batch 1/2: in flight, finishing it"),
        "{}",
        resumed.text()
    );
    assert!(
        resumed.stdout.contains("every host committed"),
        "{}",
        resumed.text()
    );
    for h in &f.hosts {
        // One run of this fleet run per host, one copy, one committed run.
        let dirs: Vec<_> = std::fs::read_dir(h.state().join("fleet/runs"))
            .unwrap()
            .collect();
        assert_eq!(dirs.len(), 1, "{}", h.name);
        assert_eq!(copies(h).len(), 1, "{}", h.name);
        let hist = Command::new(mend_bin())
            .arg("--state-dir")
            .arg(h.state())
            .args(["--json", "history"])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&hist.stdout).unwrap();
        let runs = v.as_array().or_else(|| v["runs"].as_array()).unwrap();
        assert_eq!(runs.len(), 1, "{}: {v}", h.name);
    }
    let again = f.mend(&["fleet", "resume", &fleet_run]);
    assert_eq!(again.code, 2, "{}", again.text());
    assert!(
        again.stderr.contains("nothing to resume"),
        "{}",
        again.text()
    );
}

/// One rollout of a runbook at a time from a controller: a second one is
/// refused (exit 4) naming the holder, while the first is in flight.
#[test]
fn fleet_a_second_rollout_of_the_same_runbook_is_refused_naming_the_holder() {
    let f = Fleet::start(1);
    let (waiter, release) = f.waiter();
    f.inventory("batches = [1]", &|i| {
        format!(
            "params = {{ data = \"{}\", nginx = \"{}\" }}",
            f.hosts[i].data().display(),
            waiter.display()
        )
    });
    let rb = f.runbook();
    let plan = f.mend(&["fleet", "plan", rb.to_str().unwrap(), "--out", "p"]);
    assert_eq!(plan.code, 0, "{}", plan.text());
    let first = f
        .controller(&["fleet", "run", "p"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let runs = f.hosts[0].state().join("fleet/runs");
    let t = Instant::now();
    while !std::fs::read_dir(&runs).is_ok_and(|mut r| r.next().is_some()) {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "the first never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = f.mend(&["fleet", "run", "p"]);
    std::fs::write(&release, "").unwrap();
    let first_out = first.wait_with_output().unwrap();
    assert_eq!(first_out.status.code(), Some(0));
    assert_eq!(second.code, 4, "{}", second.text());
    assert!(
        second
            .stderr
            .contains("runbook `fleet-distribute-cert` is locked by pid")
            && second.stderr.contains("fleet run p"),
        "{}",
        second.text()
    );
    // The refused one started nothing on the host.
    assert_eq!(std::fs::read_dir(&runs).unwrap().count(), 1);
}
