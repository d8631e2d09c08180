//! Running the commands a runbook allows: argument patterns checked, output
//! captured within bounds, a deadline, and stand-ins during a rehearsal.

use std::collections::BTreeMap;
use std::io::Read;
use std::process::{Command as Process, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::grants::Grants;
use crate::runbook::{Command, StandIn};

/// A command by its runbook name, with arguments.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    pub command: String,
    pub args: Vec<String>,
}

impl std::fmt::Display for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.command)?;
        for a in &self.args {
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '\'' || c == '"') {
                write!(f, " '{}'", a.replace('\'', "'\\''"))?;
            } else {
                write!(f, " {a}")?;
            }
        }
        Ok(())
    }
}

/// What a command printed, cut to bounds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Output {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

const STDOUT_CAP: usize = 1 << 20;
const STDERR_CAP: usize = 64 << 10;
/// How long output is awaited after a command exits: a daemon it started
/// may hold the pipes open for ever.
const PIPE_GRACE: Duration = Duration::from_millis(500);

/// The commands one step may run, and how.
#[derive(Clone, Debug, Default)]
pub struct CommandPolicy {
    /// The runbook's commands that the step holds.
    pub allowed: BTreeMap<String, Command>,
    /// In a rehearsal: the stand-ins; a command without one is refused.
    pub stand_ins: Option<BTreeMap<String, StandIn>>,
    /// `MEND_GRANT_<NAME>` for each of the step's grants: where it is now
    /// (a rehearsal's copy, during a rehearsal).
    pub env: Vec<(String, String)>,
    /// The step's grants: an argument `@GRANT/rel/path` is matched against
    /// the patterns as written, then handed to the program as the real path
    /// (the rehearsal's copy during a rehearsal).
    pub grants: Option<std::sync::Arc<Grants>>,
}

impl CommandPolicy {
    /// Check a call against the step's commands and their argument patterns.
    pub fn check(&self, step: &str, call: &Call) -> Result<(), String> {
        let Some(cmd) = self.allowed.get(&call.command) else {
            return Err(format!(
                "step `{step}` may not run command `{}`; add \"{}\" to the step's `commands` (and declare [commands.{}])",
                call.command, call.command, call.command
            ));
        };
        if !cmd.allows(&call.args) {
            let allowed: Vec<String> = cmd.allowed.iter().map(|a| a.join(" ")).collect();
            return Err(format!(
                "step `{step}`: `{call}` does not match the arguments [commands.{}] allows ({}); add a pattern to its `args` if it should",
                call.command,
                allowed.join(" | ")
            ));
        }
        if let Some(stand_ins) = &self.stand_ins
            && !stand_ins.contains_key(&call.command)
        {
            return Err(format!(
                "rehearsal: command `{}` has no stand-in, so it is not run; add [rehearsal.commands.{}] with a `program` to run instead",
                call.command, call.command
            ));
        }
        Ok(())
    }

    /// Run a checked call, waiting at most `timeout`.
    pub fn run(&self, step: &str, call: &Call, timeout: Duration) -> Result<Output, String> {
        self.check(step, call)?;
        let (program, args) = match self.stand_ins.as_ref().and_then(|s| s.get(&call.command)) {
            Some(stand_in) => (
                stand_in.program.clone(),
                stand_in.args.clone().unwrap_or_else(|| call.args.clone()),
            ),
            None => (
                self.allowed[&call.command].program.clone(),
                call.args.clone(),
            ),
        };
        let args = self.expand(step, &args)?;
        run_program(&program, &args, &self.env, timeout)
            .map_err(|e| format!("step `{step}`: `{call}`: {e}"))
    }
}

impl CommandPolicy {
    /// Turn `@GRANT/rel` arguments into real paths, refusing any that leave
    /// their grant. An `@word` that names no grant of the step stays as is.
    fn expand(&self, step: &str, args: &[String]) -> Result<Vec<String>, String> {
        let Some(grants) = &self.grants else {
            return Ok(args.to_vec());
        };
        args.iter()
            .map(|a| {
                let Some(path) = a.strip_prefix('@') else {
                    return Ok(a.clone());
                };
                let name = path.split('/').next().unwrap_or_default();
                if grants.get(name).is_none() {
                    return Ok(a.clone());
                }
                let r = grants
                    .read(path)
                    .map_err(|e| format!("step `{step}`: argument `{a}`: {e}"))?;
                Ok(r.grant.root.join(r.rel_path()).display().to_string())
            })
            .collect()
    }
}

/// Run a program with a deadline, capturing bounded output.
pub fn run_program(
    program: &str,
    args: &[String],
    env: &[(String, String)],
    timeout: Duration,
) -> Result<Output, String> {
    tracing::info!(
        program,
        ?args,
        timeout_s = timeout.as_secs(),
        "running a command"
    );
    let mut child = Process::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
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
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "killed after {} s (the step's timeout)",
                timeout.as_secs()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_daemon_holding_the_pipes_does_not_hang_the_command() {
        // `sleep` inherits stdout and keeps it open long after `sh` exits.
        let args = ["-c".to_string(), "echo started; sleep 30 &".to_string()];
        let began = Instant::now();
        let out = run_program("/bin/sh", &args, &[], Duration::from_secs(20)).unwrap();
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
        let args = ["-c".to_string(), "head -c 3000000 /dev/zero".to_string()];
        let out = run_program("/bin/sh", &args, &[], Duration::from_secs(20)).unwrap();
        assert_eq!(out.status, 0);
        assert_eq!(out.stdout.len(), STDOUT_CAP);
    }
}
