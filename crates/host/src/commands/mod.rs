//! Running the commands a runbook allows: each call matched against the
//! command's `reads` (for `probe`) or `changes` (for `exec` actions and
//! their undo), every `@GRANT/path` argument checked as an action path is,
//! then run as the runbook's user, in a clean environment, in a process
//! group of its own, reads confined read-only; stand-ins in a rehearsal.
//!
//! - [`process`]: starting one program, its deadline, its output
//! - [`confine`]: Landlock, read-only

pub mod confine;
pub mod process;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::grants::{Grants, PathError};
pub use mend_plan::Call;
use mend_runbook::{ARGS, Class, Command, StandIn};

/// The `PATH` every command gets (unless its `env` sets another).
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What a command printed, cut to bounds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Output {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

/// The commands one step may run, and how.
#[derive(Clone, Debug, Default)]
pub struct CommandPolicy {
    /// The runbook's commands that the step holds.
    pub allowed: BTreeMap<String, Command>,
    /// In a rehearsal: the stand-ins. A command without one still runs its
    /// reads (confined, as always); its changes are refused.
    pub stand_ins: Option<BTreeMap<String, StandIn>>,
    /// `MEND_GRANT_<NAME>` for each of the step's grants: where it is now
    /// (a rehearsal's copy, during a rehearsal).
    pub env: Vec<(String, String)>,
    /// The step's grants: an argument `@GRANT/rel/path` is matched against
    /// the patterns as written, checked as an action path is, then handed
    /// to the program as the real path (the rehearsal's copy during a
    /// rehearsal).
    pub grants: Option<std::sync::Arc<Grants>>,
}

impl CommandPolicy {
    /// Check a call an `exec` action (or its undo) makes: one of the
    /// command's `changes`, its `@` arguments inside their grants.
    pub fn check(&self, step: &str, call: &Call) -> Result<(), String> {
        self.check_as(step, call, Class::Change)
    }

    /// Check a call `probe` makes: one of the command's `reads`.
    pub fn check_probe(&self, step: &str, call: &Call) -> Result<(), String> {
        self.check_as(step, call, Class::Read)
    }

    fn check_as(&self, step: &str, call: &Call, class: Class) -> Result<(), String> {
        let name = &call.command;
        let Some(cmd) = self.allowed.get(name) else {
            return Err(format!(
                "step `{step}` may not run command `{name}`; add \"{name}\" to the step's `commands` (and declare [commands.{name}])"
            ));
        };
        if !cmd.allows(class, &call.args) {
            return Err(refusal(step, call, cmd, class));
        }
        self.check_paths(step, call)?;
        if let Some(stand_ins) = &self.stand_ins
            && class == Class::Change
            && !stand_ins.contains_key(name)
        {
            return Err(format!(
                "rehearsal: command `{name}` has no stand-in, so its change `{call}` is not run; add [rehearsal.commands.{name}] with a `program` to run instead"
            ));
        }
        Ok(())
    }

    /// Every `@GRANT/path` argument, as an action path is checked (no
    /// `..`, no link out of its grant anywhere in it), and more: a link at
    /// its end that leads out is refused too, as the program would follow
    /// it. An `@word` that names no grant of the step is not a path.
    pub fn check_paths(&self, step: &str, call: &Call) -> Result<(), String> {
        let Some(grants) = &self.grants else {
            return Ok(());
        };
        for a in &call.args {
            if let Some(path) = grant_path(grants, a) {
                check_at(grants, path).map_err(|e| {
                    format!(
                        "step `{step}`: `{}`: argument `{}`: {e}",
                        mend_human::shown(&call.to_string(), 512),
                        mend_human::shown(a, 512)
                    )
                })?;
            }
        }
        Ok(())
    }

    /// Run a checked change (an `exec` action or its undo), waiting at
    /// most `timeout`.
    pub fn run(&self, step: &str, call: &Call, timeout: Duration) -> Result<Output, String> {
        self.run_as(step, call, Class::Change, timeout)
    }

    /// Run a checked read (`probe`), confined read-only where the kernel
    /// allows.
    pub fn probe(&self, step: &str, call: &Call, timeout: Duration) -> Result<Output, String> {
        self.run_as(step, call, Class::Read, timeout)
    }

    fn run_as(
        &self,
        step: &str,
        call: &Call,
        class: Class,
        timeout: Duration,
    ) -> Result<Output, String> {
        self.check_as(step, call, class)?;
        let cmd = &self.allowed[&call.command];
        let (program, args) = match self.stand_ins.as_ref().and_then(|s| s.get(&call.command)) {
            Some(stand_in) => (
                stand_in.program.clone(),
                stand_in_args(stand_in, &call.args),
            ),
            None => (cmd.program.clone(), call.args.clone()),
        };
        let args = self.expand(step, &args)?;
        let account = cmd.run_as.as_ref().and_then(|r| r.account.as_ref());
        if cmd.run_as.is_some() && account.is_none() {
            return Err(format!(
                "step `{step}`: `{call}`: its user is not on this machine"
            ));
        }
        // Every command gets a private, empty scratch directory, removed when
        // it ends: TMPDIR and XDG_CACHE_HOME point there, and for a read it
        // is the one place it may write (borg's self test, restic's cache).
        let scratch = Scratch::new(account).map_err(|e| format!("step `{step}`: `{call}`: {e}"))?;
        let confine = match class {
            Class::Read => confine::for_read(&scratch.0, &cmd.opens)
                .map_err(|e| format!("step `{step}`: `{call}`: {e}"))?,
            Class::Change => None,
        };
        let mut env = self.environment(cmd);
        scratch.add_to(&mut env);
        process::run(&process::Spawn {
            program: &program,
            args: &args,
            env: &env,
            account,
            confine: confine.as_ref(),
            dir: Path::new("/"),
            timeout,
        })
        .map_err(|e| format!("step `{step}`: `{call}`: {e}"))
    }

    /// The whole environment of a command: `PATH`, `LANG`, the `HOME` of
    /// the user it runs as, `MEND_GRANT_*`, then the runbook's `env`.
    pub fn environment(&self, cmd: &Command) -> Vec<(String, String)> {
        let home = cmd
            .run_as
            .as_ref()
            .and_then(|r| r.account.as_ref())
            .map_or_else(mend_runbook::accounts::own_home, |a| a.home.clone());
        let mut env: Vec<(String, String)> = vec![
            ("PATH".into(), PATH.into()),
            ("LANG".into(), "C.UTF-8".into()),
            ("HOME".into(), home.display().to_string()),
        ];
        for (k, v) in self.env.iter().chain(&cmd.env) {
            match env.iter_mut().find(|(name, _)| name == k) {
                Some(slot) => slot.1 = v.clone(),
                None => env.push((k.clone(), v.clone())),
            }
        }
        env
    }

    /// Turn `@GRANT/rel` arguments into real paths, refusing any that leave
    /// their grant. An `@word` that names no grant of the step stays as is.
    fn expand(&self, step: &str, args: &[String]) -> Result<Vec<String>, String> {
        let Some(grants) = &self.grants else {
            return Ok(args.to_vec());
        };
        args.iter()
            .map(|a| {
                let Some(path) = grant_path(grants, a) else {
                    return Ok(a.clone());
                };
                let real = check_at(grants, path)
                    .map_err(|e| format!("step `{step}`: argument `{a}`: {e}"))?;
                Ok(real.display().to_string())
            })
            .collect()
    }
}

/// Why a call does not match the vectors `probe` or `exec` may run: the
/// step, the command, the vector and the rule.
fn refusal(step: &str, call: &Call, cmd: &Command, class: Class) -> String {
    let name = &cmd.name;
    let shown = mend_human::shown(&call.to_string(), 512);
    let verb = call.args.first().map_or(name.as_str(), String::as_str);
    let verb = mend_human::shown(verb, 64);
    match class {
        Class::Read if cmd.allows(Class::Change, &call.args) => format!(
            "step `{step}` asked probe to run `{shown}`, and `{verb}` is a change (in `changes` of [commands.{name}]): only an exec action of the plan may run it"
        ),
        Class::Change if cmd.allows(Class::Read, &call.args) => format!(
            "step `{step}` plans `exec {shown}`, but `{verb}` is a read (in `reads` of [commands.{name}]): an exec action runs only `changes`; move the vector to `changes` if it changes something"
        ),
        _ => {
            let listed: Vec<String> = cmd.vectors(class).iter().map(|a| a.join(" ")).collect();
            let key = match class {
                Class::Read => "reads",
                Class::Change => "changes",
            };
            let how = match class {
                Class::Read => "probe runs",
                Class::Change => "an exec action runs",
            };
            format!(
                "step `{step}`: `{shown}` does not match the `{key}` of [commands.{name}] ({}), which is what {how}; add a pattern to its `{key}` if it should",
                if listed.is_empty() {
                    "none".to_string()
                } else {
                    listed.join(" | ")
                }
            )
        }
    }
}

/// `@GRANT/rel` of a grant the step holds: its `GRANT/rel`.
fn grant_path<'a>(grants: &Grants, arg: &'a str) -> Option<&'a str> {
    let path = arg.strip_prefix('@')?;
    let name = path.split('/').next().unwrap_or_default();
    grants.get(name).map(|_| path)
}

/// Check an `@` path and give its real path: the action-path checks, and a
/// link at its end must stay inside its grant.
fn check_at(grants: &Grants, path: &str) -> Result<PathBuf, PathError> {
    // Never into mend's own trash or staging: a command handed
    // `@data/.mend-trash` could destroy what undo needs.
    let r = grants.action(path, false)?;
    if !r.rel.is_empty() {
        let rel = r.rel_path();
        let is_link = r
            .grant
            .dir
            .symlink_metadata(&rel)
            .is_ok_and(|m| m.file_type().is_symlink());
        if is_link {
            // cap-std resolves inside the grant's directory and refuses
            // a step out of it, through any chain of links.
            match r.grant.dir.canonicalize(&rel) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
                    return Err(PathError::Loop {
                        path: path.to_string(),
                        grant: r.grant.name.clone(),
                    });
                }
                Err(_) => {
                    return Err(PathError::Escapes {
                        path: path.to_string(),
                        grant: r.grant.name.clone(),
                    });
                }
            }
        }
    }
    Ok(r.grant.root.join(r.rel_path()))
}

/// A stand-in's arguments: its own, with `${args}` standing for the call's,
/// or the call's when it gives none.
fn stand_in_args(stand_in: &StandIn, call: &[String]) -> Vec<String> {
    match &stand_in.args {
        None => call.to_vec(),
        Some(own) => own
            .iter()
            .flat_map(|a| {
                if a == ARGS {
                    call.to_vec()
                } else {
                    vec![a.clone()]
                }
            })
            .collect(),
    }
}

/// A command's private scratch directory (mode 700, its user's), removed
/// with everything in it when the command ends.
struct Scratch(std::path::PathBuf);

/// The next scratch directory's number in this process.
static SCRATCH_N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Scratch {
    fn new(account: Option<&mend_runbook::accounts::Account>) -> std::io::Result<Scratch> {
        use std::os::unix::fs::DirBuilderExt as _;
        // A mend killed with SIGKILL leaves its scratch behind, and a later
        // mend may get its pid: a name taken is skipped, never reused or
        // removed (`create` makes a new directory or fails; it follows no
        // link). Before this, such a leftover failed the command with EEXIST.
        let mut tries = 0;
        let dir = loop {
            let n = SCRATCH_N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!("mend-scratch-{}-{n}", std::process::id()));
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => break dir,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && tries < 1000 => {
                    tries += 1
                }
                Err(e) => return Err(e),
            }
        };
        let scratch = Scratch(dir);
        if let Some(a) = account {
            std::os::unix::fs::chown(&scratch.0, Some(a.uid), Some(a.gid))?;
        }
        Ok(scratch)
    }

    /// `MEND_SCRATCH`, `TMPDIR` and `XDG_CACHE_HOME` (unless the runbook set
    /// them); `$MEND_SCRATCH` in the runbook's `env` values stands for it.
    fn add_to(&self, env: &mut Vec<(String, String)>) {
        let at = self.0.display().to_string();
        for (_, v) in env.iter_mut() {
            if v.contains("$MEND_SCRATCH") {
                *v = v.replace("$MEND_SCRATCH", &at);
            }
        }
        for k in ["MEND_SCRATCH", "TMPDIR", "XDG_CACHE_HOME"] {
            if !env.iter().any(|(name, _)| name == k) {
                env.push((k.to_string(), at.clone()));
            }
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod scratch_tests {
    use super::*;

    /// Leftovers of a killed mend that had this pid: the next scratch skips
    /// them and leaves them as they are.
    #[test]
    fn a_scratch_left_by_a_killed_process_with_this_pid_is_skipped() {
        let next = SCRATCH_N.load(std::sync::atomic::Ordering::Relaxed);
        let left: Vec<_> = (next..next + 3)
            .map(|n| std::env::temp_dir().join(format!("mend-scratch-{}-{n}", std::process::id())))
            .collect();
        for d in &left {
            std::fs::create_dir(d).unwrap();
            std::fs::write(d.join("left"), "by a killed mend").unwrap();
        }
        let s = Scratch::new(None).expect("a fresh scratch despite the leftovers");
        assert!(!left.contains(&s.0), "reused {}", s.0.display());
        assert!(s.0.is_dir());
        for d in &left {
            assert!(d.join("left").exists(), "{} was touched", d.display());
            std::fs::remove_dir_all(d).unwrap();
        }
    }
}
