//! Starting one program: a clean environment, its own process group, the
//! user it runs as, read-only confinement for reads, bounded output, and a
//! deadline that ends the whole group.

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command as Process, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use super::Output;
use mend_runbook::accounts::Account;

const STDOUT_CAP: usize = 1 << 20;
const STDERR_CAP: usize = 64 << 10;
/// How long output is awaited after a command exits: a daemon it started
/// may hold the pipes open for ever.
const PIPE_GRACE: Duration = Duration::from_millis(500);
/// At its deadline a command's group gets SIGTERM, and this long to end
/// before SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(5);
/// After SIGKILL, how long mend waits for the kernel to end the group.
const REAP_WAIT: Duration = Duration::from_secs(5);

/// How to run one program.
pub struct Spawn<'a> {
    pub program: &'a str,
    pub args: &'a [String],
    /// The whole environment: nothing of mend's own is inherited.
    pub env: &'a [(String, String)],
    /// Drop to this user (uid, gid, supplementary groups) before exec.
    pub account: Option<&'a Account>,
    /// A Landlock ruleset to confine the program with (read-only).
    pub confine: Option<&'a OwnedFd>,
    pub dir: &'a Path,
    pub timeout: Duration,
}

/// Run a program with a deadline, capturing bounded output.
pub fn run(spawn: &Spawn) -> Result<Output, String> {
    let program = spawn.program;
    tracing::info!(
        program,
        args = ?spawn.args,
        user = spawn.account.map(|a| a.name.as_str()),
        confined = spawn.confine.is_some(),
        timeout_s = spawn.timeout.as_secs(),
        "running a command"
    );
    let mut cmd = Process::new(program);
    cmd.args(spawn.args)
        .env_clear()
        .envs(spawn.env.iter().map(|(k, v)| (k, v)))
        .current_dir(spawn.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group: the deadline ends whatever it started.
        .process_group(0);
    let drop_to = spawn.account.and_then(|a| {
        let me = rustix::process::geteuid();
        // Only root can change who it is; a command that names the user
        // mend already runs as needs no change.
        (me.is_root() || me.as_raw() != a.uid).then(|| (a.uid, a.gid, a.groups.clone()))
    });
    let confine = spawn.confine.map(AsRawFd::as_raw_fd);
    let huge_pages = crate::huge_pages::turned_off();
    if drop_to.is_some() || confine.is_some() || huge_pages {
        // SAFETY: between fork and exec only async-signal-safe calls are
        // made (setgroups, setgid, setuid, prctl, a raw syscall); the group
        // list was built before the fork.
        unsafe {
            cmd.pre_exec(move || {
                // What the command starts (a service) has huge pages as
                // the machine gives them, not as mend keeps them for itself.
                crate::huge_pages::restore_in_child()?;
                if let Some((uid, gid, groups)) = &drop_to {
                    if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                        || libc::setgid(*gid) != 0
                        || libc::setuid(*uid) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    // setuid(2) from root drops every id; make sure.
                    if *uid != 0 && libc::setuid(0) == 0 {
                        return Err(std::io::Error::from_raw_os_error(libc::EPERM));
                    }
                }
                if let Some(fd) = confine {
                    if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    if libc::syscall(libc::SYS_landlock_restrict_self, fd, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    let group = child.id() as i32;
    // Readers fill shared buffers, so that output can be taken even when a
    // process the command left behind (a daemon it started) keeps the pipe
    // open after the command itself exited.
    let reader = |mut r: Box<dyn Read + Send>, cap: usize| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let filled = Arc::clone(&buf);
        let (done, finished) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            while let Ok(n) = r.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                let mut b = filled.lock().unwrap_or_else(|e| e.into_inner());
                let room = cap.saturating_sub(b.len()).min(n);
                b.extend_from_slice(&chunk[..room]);
                // The rest is drained, so the child never blocks on a full pipe.
            }
            let _ = done.send(());
        });
        (buf, finished)
    };
    let take = |(buf, finished): (Arc<Mutex<Vec<u8>>>, mpsc::Receiver<()>)| {
        let _ = finished.recv_timeout(PIPE_GRACE);
        let b = buf.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&b).into_owned()
    };
    let out = reader(Box::new(child.stdout.take().expect("piped")), STDOUT_CAP);
    let err = reader(Box::new(child.stderr.take().expect("piped")), STDERR_CAP);
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if start.elapsed() > spawn.timeout {
            let how = end_group(&mut child, group);
            return Err(format!(
                "killed after {} s (the step's timeout): {how}",
                spawn.timeout.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Ok(Output {
        status: status.code().unwrap_or(-1),
        stdout: take(out),
        stderr: take(err),
    })
}

/// SIGTERM to the group, SIGKILL after [`KILL_GRACE`], then wait until no
/// process of the group runs. Says what it took.
fn end_group(child: &mut std::process::Child, group: i32) -> String {
    signal_group(group, rustix::process::Signal::TERM);
    let term = Instant::now();
    while term.elapsed() < KILL_GRACE {
        if child.try_wait().ok().flatten().is_some() && live_members(group) == 0 {
            return "its process group ended on SIGTERM".to_string();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    signal_group(group, rustix::process::Signal::KILL);
    let _ = child.wait();
    let kill = Instant::now();
    while live_members(group) > 0 && kill.elapsed() < REAP_WAIT {
        std::thread::sleep(Duration::from_millis(10));
    }
    match live_members(group) {
        0 => format!(
            "its process group got SIGTERM, and SIGKILL {} s later",
            KILL_GRACE.as_secs()
        ),
        n => format!("{n} processes of its group outlived SIGKILL (stuck in the kernel?)"),
    }
}

fn signal_group(group: i32, sig: rustix::process::Signal) {
    if let Some(pgid) = rustix::process::Pid::from_raw(group) {
        let _ = rustix::process::kill_process_group(pgid, sig);
    }
}

/// Processes of group `group` that still run (zombies, which have ended
/// and wait only to be reaped by their parent, are not counted).
pub fn live_members(group: i32) -> usize {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return 0;
    };
    procs
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            // pid (comm) state ppid pgrp ...; comm may hold spaces and `)`.
            let Some((_, rest)) = stat.rsplit_once(')') else {
                return false;
            };
            let mut fields = rest.split_whitespace();
            let state = fields.next().unwrap_or("");
            let pgrp = fields.nth(1).and_then(|p| p.parse::<i32>().ok());
            pgrp == Some(group) && !matches!(state, "Z" | "X")
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, timeout: Duration) -> Result<Output, String> {
        let args = ["-c".to_string(), script.to_string()];
        run(&Spawn {
            program: "/bin/sh",
            args: &args,
            env: &[("PATH".into(), "/usr/bin:/bin".into())],
            account: None,
            confine: None,
            dir: Path::new("/"),
            timeout,
        })
    }

    #[test]
    fn a_daemon_holding_the_pipes_does_not_hang_the_command() {
        // `sleep` inherits stdout and keeps it open long after `sh` exits.
        let began = Instant::now();
        let out = sh("echo started; sleep 30 &", Duration::from_secs(20)).unwrap();
        assert_eq!(out.status, 0);
        assert_eq!(out.stdout, "started\n");
        assert!(
            began.elapsed() < Duration::from_secs(20),
            "waited for the daemon: {:?}",
            began.elapsed()
        );
    }

    #[test]
    fn output_past_the_cap_is_cut_and_drained() {
        let out = sh("head -c 3000000 /dev/zero", Duration::from_secs(20)).unwrap();
        assert_eq!(out.status, 0);
        assert_eq!(out.stdout.len(), STDOUT_CAP);
    }

    #[test]
    fn the_environment_is_only_what_is_given() {
        let out = sh("env", Duration::from_secs(20)).unwrap();
        let mut vars: Vec<&str> = out
            .stdout
            .lines()
            .map(|l| l.split('=').next().unwrap())
            .collect();
        vars.sort();
        // dash sets PWD for its own children only; `env` sees what it got.
        vars.retain(|v| *v != "PWD");
        assert_eq!(vars, ["PATH"], "{}", out.stdout);
    }
}
