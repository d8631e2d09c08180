//! One host as the controller sees it: its mend reached over ssh, and the
//! calls made to it (version, shipping, plan, start, wait).

use serde::{Deserialize, Serialize};

use crate::fleet::bundle::Bundle;
use crate::fleet::host::Status;
use crate::fleet::ssh::{Ssh, Unreachable};

/// A host to act on.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Target {
    pub name: String,
    pub ssh: String,
    pub mend: String,
}

/// Why a host could not do what was asked.
#[derive(Clone, Debug)]
pub enum HostError {
    Unreachable(String),
    /// Its mend refused (another version, missing, bad input there).
    Refused(String),
}

impl From<Unreachable> for HostError {
    fn from(u: Unreachable) -> HostError {
        HostError::Unreachable(u.text)
    }
}

impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostError::Unreachable(t) => write!(f, "unreachable: {t}"),
            HostError::Refused(t) => write!(f, "refused: {t}"),
        }
    }
}

/// Run each item through `f`, at most `parallel` at once; results in order.
pub fn each<T: Sync, R: Send>(items: &[T], parallel: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<R>>> =
        items.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..parallel.clamp(1, items.len().max(1)) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(item) = items.get(i) else { break };
                    let r = f(item);
                    *results[i].lock().expect("no panic holds it") = Some(r);
                }
            });
        }
    });
    results
        .into_iter()
        .map(|m| {
            m.into_inner()
                .expect("no panic holds it")
                .expect("every item ran")
        })
        .collect()
}

pub struct Remote<'a> {
    pub ssh: &'a Ssh,
    pub target: &'a Target,
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).trim().to_string()
}

impl Remote<'_> {
    fn call(&self, args: &[&str], stdin: Option<&[u8]>) -> Result<std::process::Output, HostError> {
        let mut argv = vec![self.target.mend.clone()];
        argv.extend(args.iter().map(|a| a.to_string()));
        Ok(self
            .ssh
            .run(&self.target.name, &self.target.ssh, &argv, stdin)?)
    }

    /// A call that must succeed and print one JSON document.
    fn json(&self, args: &[&str], stdin: Option<&[u8]>) -> Result<serde_json::Value, HostError> {
        let out = self.call(args, stdin)?;
        if !out.status.success() {
            let err = text(&out.stderr);
            return Err(HostError::Refused(format!(
                "`mend {}` exited {}: {}",
                args.iter().take(3).copied().collect::<Vec<_>>().join(" "),
                out.status.code().unwrap_or(-1),
                err.lines().next().unwrap_or("(no message)")
            )));
        }
        serde_json::from_slice(&out.stdout)
            .map_err(|e| HostError::Refused(format!("mend answered something else than JSON: {e}")))
    }

    /// The host run's records as JSON lines (`mend fleet host records`),
    /// for shipping to the shared journal.
    pub fn records(&self, fleet_run: &str) -> Result<String, HostError> {
        let args = ["fleet", "host", "records", "--fleet-run", fleet_run];
        let out = self.call(&args, None)?;
        if !out.status.success() {
            return Err(HostError::Refused(format!(
                "`mend fleet host records` exited {}: {}",
                out.status.code().unwrap_or(-1),
                text(&out.stderr).lines().next().unwrap_or("(no message)")
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The host's mend is this controller's version.
    pub fn check_version(&self) -> Result<(), HostError> {
        let out = self.call(&["--version"], None)?;
        let mine = format!("mend {}", env!("CARGO_PKG_VERSION"));
        if !out.status.success() {
            return Err(HostError::Refused(format!(
                "`{} --version` failed (exit {}): {}",
                self.target.mend,
                out.status.code().unwrap_or(-1),
                text(&out.stderr)
            )));
        }
        let theirs = text(&out.stdout);
        if theirs != mine {
            return Err(HostError::Refused(format!(
                "{} is {theirs:?}, this controller is {mine:?}: `mend fleet install` puts this one there",
                self.target.mend
            )));
        }
        Ok(())
    }

    /// Ship a blob, checked by its sha256 on the far side.
    pub fn send(&self, sum: &str, data: &[u8]) -> Result<(), HostError> {
        self.json(&["--json", "fleet", "host", "receive", sum], Some(data))
            .map(|_| ())
    }

    /// Ship a bundle; returns the runbook's path on the host.
    pub fn ship(&self, b: &Bundle) -> Result<String, HostError> {
        for (sum, data) in &b.blobs {
            self.send(sum, data)?;
        }
        let v = self.json(
            &["--json", "fleet", "host", "bundle", &b.sum],
            Some(&b.manifest_bytes),
        )?;
        v["runbook"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| HostError::Refused("no bundle path in the answer".into()))
    }

    /// `mend plan` there; the combined answer of `fleet host plan`.
    pub fn plan(
        &self,
        bundle: &str,
        sets: &[(String, String)],
    ) -> Result<serde_json::Value, HostError> {
        let mut args: Vec<String> = ["--json", "fleet", "host", "plan", bundle]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for (k, v) in sets {
            args.push("--set".into());
            args.push(format!("{k}={v}"));
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.json(&refs, None)
    }

    /// Start this host's run of a fleet run; false when it had started before.
    pub fn start(&self, fleet_run: &str, plan_sum: &str) -> Result<bool, HostError> {
        let v = self.json(
            &[
                "--json",
                "fleet",
                "host",
                "start",
                "--fleet-run",
                fleet_run,
                "--plan",
                plan_sum,
            ],
            None,
        )?;
        Ok(v["started"].as_bool().unwrap_or(false))
    }

    /// Until this host's run of the fleet run has ended.
    pub fn wait(&self, fleet_run: &str) -> Result<Status, HostError> {
        let v = self.json(
            &["--json", "fleet", "host", "wait", "--fleet-run", fleet_run],
            None,
        )?;
        serde_json::from_value(v).map_err(|e| HostError::Refused(format!("bad status: {e}")))
    }

    /// Settle this host's held run of the fleet run: commit it, or roll it
    /// back. Answers the run's id and status after.
    pub fn settle(&self, fleet_run: &str, commit: bool) -> Result<serde_json::Value, HostError> {
        self.json(
            &[
                "--json",
                "fleet",
                "host",
                "settle",
                "--fleet-run",
                fleet_run,
                if commit { "--commit" } else { "--rollback" },
            ],
            None,
        )
    }
}
