//! The far side of `mend fleet`: hidden `mend fleet host ...` commands the
//! controller runs over ssh. Everything lives under STATE/fleet/:
//!
//! - `blobs/sha256/SUM`: what the controller shipped, checked before it is
//!   renamed into place;
//! - `bundles/SUM/`: a runbook with its `.wasm` files, hard links of blobs
//!   under the paths the runbook names, SUM being its manifest's sha256;
//! - `runs/FLEETRUN/`: one host run of a fleet run. Its creation is the
//!   tag: a second start of the same fleet run finds it and reports the
//!   run already there, so a host runs once even across controller crashes.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a bundle holds: runbook-relative paths and their blobs.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// The runbook's path in the bundle.
    pub runbook: String,
    pub files: Vec<(String, String)>,
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn is_sum(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn fleet_dir(state: &Path) -> PathBuf {
    state.join("fleet")
}

pub fn blob_path(state: &Path, sum: &str) -> PathBuf {
    fleet_dir(state).join("blobs/sha256").join(sum)
}

fn run_dir(state: &Path, fleet_run: &str) -> anyhow::Result<PathBuf> {
    let ok = !fleet_run.is_empty()
        && fleet_run
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !ok {
        bail!("bad fleet run id {fleet_run:?}");
    }
    Ok(fleet_dir(state).join("runs").join(fleet_run))
}

/// Whether a blob is there and holds what its name says.
fn blob_ok(path: &Path, sum: &str) -> bool {
    std::fs::read(path).is_ok_and(|d| sha256_hex(&d) == sum)
}

/// `host receive SUM`: stdin into the blob store, checked.
pub fn receive(state: &Path, sum: &str) -> anyhow::Result<serde_json::Value> {
    if !is_sum(sum) {
        bail!("bad sha256 {sum:?}");
    }
    let mut data = Vec::new();
    std::io::stdin().read_to_end(&mut data)?;
    let got = sha256_hex(&data);
    if got != sum {
        bail!(
            "the blob arrived with sha256 {got}, not {sum} ({} bytes): damaged in transit",
            data.len()
        );
    }
    let path = blob_path(state, sum);
    if !blob_ok(&path, sum) {
        let dir = path.parent().expect("a blob has a directory");
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let tmp = dir.join(format!(".{sum}.{}", std::process::id()));
        // Owner-only: a shipped file may be a private key.
        let _ = std::fs::remove_file(&tmp);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| f.write_all(&data))
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &path)?;
    }
    Ok(serde_json::json!({"blob": path, "bytes": data.len()}))
}

/// `host bundle SUM`: stdin is the manifest (sha256 SUM); its files are
/// linked from the blob store under their runbook-relative paths.
pub fn bundle(state: &Path, sum: &str) -> anyhow::Result<serde_json::Value> {
    if !is_sum(sum) {
        bail!("bad sha256 {sum:?}");
    }
    let mut data = Vec::new();
    std::io::stdin().read_to_end(&mut data)?;
    if sha256_hex(&data) != sum {
        bail!("the bundle manifest does not match its sha256 {sum}");
    }
    let m: Manifest = serde_json::from_slice(&data).context("bad bundle manifest")?;
    let dir = fleet_dir(state).join("bundles").join(sum);
    let tmp = fleet_dir(state)
        .join("bundles")
        .join(format!(".{sum}.{}", std::process::id()));
    if !dir.is_dir() {
        std::fs::create_dir_all(&tmp)?;
        for (rel, file_sum) in &m.files {
            let rel_path = Path::new(rel);
            if !rel_path
                .components()
                .all(|c| matches!(c, Component::Normal(_)))
            {
                bail!("bundle path {rel:?} leaves the bundle");
            }
            let blob = blob_path(state, file_sum);
            if !blob_ok(&blob, file_sum) {
                bail!("blob {file_sum} for {rel} is missing or damaged");
            }
            let to = tmp.join(rel_path);
            std::fs::create_dir_all(to.parent().expect("joined path has a parent"))?;
            std::fs::hard_link(&blob, &to).or_else(|_| std::fs::copy(&blob, &to).map(|_| ()))?;
        }
        if let Err(e) = std::fs::rename(&tmp, &dir) {
            // Another receiver got there first: theirs is the same content.
            let _ = std::fs::remove_dir_all(&tmp);
            if !dir.is_dir() {
                return Err(e.into());
            }
        }
    }
    Ok(serde_json::json!({"dir": dir, "runbook": dir.join(&m.runbook)}))
}

/// What `host start` found or did.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Started {
    /// False when this fleet run had already started here.
    pub started: bool,
}

/// `host start --fleet-run F --plan SUM`: start `mend run --plan` detached
/// (its own session, stdio off the connection: an ssh drop cannot kill it).
pub fn start(state: &Path, fleet_run: &str, plan_sum: &str) -> anyhow::Result<Started> {
    let dir = run_dir(state, fleet_run)?;
    let plan = blob_path(state, plan_sum);
    if !blob_ok(&plan, plan_sum) {
        bail!("the plan blob {plan_sum} is missing or damaged");
    }
    std::fs::create_dir_all(dir.parent().expect("runs/F has a parent"))?;
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Ok(Started { started: false });
        }
        Err(e) => return Err(e).with_context(|| format!("cannot create {}", dir.display())),
    }
    std::fs::write(dir.join("plan"), plan_sum)?;
    let me = std::env::current_exe().context("cannot find mend's own path")?;
    let mut c = Command::new(me);
    c.args(["fleet", "host", "supervise", "--fleet-run", fleet_run]);
    c.arg("--state-dir").arg(state);
    c.stdin(Stdio::null()).stdout(Stdio::null());
    c.stderr(std::fs::File::create(dir.join("supervise.log"))?);
    // SAFETY: setsid is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut c, || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = c.spawn().context("cannot start the run")?;
    std::fs::write(dir.join("pid"), child.id().to_string())?;
    Ok(Started { started: true })
}

/// `host supervise` (detached): run the plan, keep its JSON and exit code.
pub fn supervise(state: &Path, fleet_run: &str) -> anyhow::Result<i32> {
    let dir = run_dir(state, fleet_run)?;
    let plan_sum = std::fs::read_to_string(dir.join("plan"))?;
    // Before the run starts: its run is the first one the journal started
    // at or after this (runs of one state dir take turns on its lock), so
    // `host records` finds it while it runs, before out.json names it.
    std::fs::write(dir.join("started_ms"), mend_journal::now_ms().to_string())?;
    let me = std::env::current_exe()?;
    let status = Command::new(me)
        .arg("--json")
        .arg("--state-dir")
        .arg(state)
        // Held, not committed: the controller settles it (commit, or a
        // rollback of the fleet) once the rollout's outcome is known.
        .args(["run", "--hold", "--plan"])
        .arg(blob_path(state, plan_sum.trim()))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join("out.json"))?)
        .stderr(std::fs::File::create(dir.join("err.log"))?)
        .status()?;
    let code = status.code().unwrap_or(70);
    let tmp = dir.join("exit.tmp");
    std::fs::write(&tmp, code.to_string())?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, dir.join("exit"))?;
    Ok(code)
}

/// Where a host's run of a fleet run stands.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum Status {
    /// No run of this fleet run was started here.
    Missing,
    Running,
    Ended {
        exit_code: i32,
        run_id: Option<String>,
        error: Option<String>,
        failed_step: Option<String>,
        /// The run's `--json` document.
        out: Option<serde_json::Value>,
    },
    /// The supervisor is gone without an exit code (the host rebooted).
    Lost {
        run_id: Option<String>,
    },
}

fn pid_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

pub fn status(state: &Path, fleet_run: &str) -> anyhow::Result<Status> {
    let dir = run_dir(state, fleet_run)?;
    if !dir.is_dir() {
        return Ok(Status::Missing);
    }
    let out: Option<serde_json::Value> = std::fs::read(dir.join("out.json"))
        .ok()
        .and_then(|d| serde_json::from_slice(&d).ok());
    let field = |k: &str| {
        out.as_ref()
            .and_then(|o| o["run"][k].as_str())
            .map(str::to_string)
    };
    if let Ok(code) = std::fs::read_to_string(dir.join("exit")) {
        return Ok(Status::Ended {
            exit_code: code.trim().parse().unwrap_or(70),
            run_id: field("run_id"),
            error: field("error").or_else(|| {
                out.as_ref()
                    .and_then(|o| o["failure"]["message"].as_str())
                    .map(str::to_string)
            }),
            failed_step: field("failed_step"),
            out,
        });
    }
    let pid: Option<i32> = std::fs::read_to_string(dir.join("pid"))
        .ok()
        .and_then(|p| p.trim().parse().ok());
    match pid {
        Some(p) if pid_alive(p) => Ok(Status::Running),
        // Between mkdir and the pid file: just started.
        None => Ok(Status::Running),
        Some(_) => Ok(Status::Lost {
            run_id: field("run_id"),
        }),
    }
}

/// The run of this fleet run while it is still running: the first run the
/// journal started at or after the supervisor's `started_ms`. None before
/// it has started (or with a supervisor from before `started_ms`).
pub fn running_run_id(state: &Path, fleet_run: &str) -> anyhow::Result<Option<String>> {
    let dir = run_dir(state, fleet_run)?;
    let Some(since) = std::fs::read_to_string(dir.join("started_ms"))
        .ok()
        .and_then(|t| t.trim().parse::<i64>().ok())
    else {
        return Ok(None);
    };
    let Some(j) = mend_journal::Journal::open_read_only(state)? else {
        return Ok(None);
    };
    let runs = j.history(&mend_journal::HistoryFilter {
        limit: Some(16),
        ..Default::default()
    })?;
    Ok(runs
        .into_iter()
        .filter(|r| r.started_at >= since)
        .min_by_key(|r| r.started_at)
        .map(|r| r.id))
}

/// `host wait`: until the run ends (polling the files the detached run
/// writes; the connection may drop meanwhile and the wait be run again).
pub fn wait(state: &Path, fleet_run: &str) -> anyhow::Result<Status> {
    loop {
        match status(state, fleet_run)? {
            Status::Running => std::thread::sleep(std::time::Duration::from_millis(100)),
            s => return Ok(s),
        }
    }
}

/// `host settle --fleet-run F --commit|--rollback`: settle this host's held
/// run of a fleet run with `mend commit` or `mend rollback`. Idempotent: a
/// run already settled the same way answers as settled, so a controller
/// that died mid-settle can settle again.
pub fn settle(state: &Path, fleet_run: &str, commit: bool) -> anyhow::Result<serde_json::Value> {
    let run_id = match status(state, fleet_run)? {
        Status::Ended {
            run_id: Some(id), ..
        }
        | Status::Lost { run_id: Some(id) } => id,
        other => bail!("no run of fleet run {fleet_run} to settle here ({other:?})"),
    };
    let journal = mend_journal::Journal::open_existing(state)?
        .with_context(|| format!("no journal in {}", state.display()))?;
    let before = journal.run(&run_id)?.status;
    drop(journal);
    let (want, verb) = if commit {
        (mend_journal::RunStatus::Committed, "commit")
    } else {
        (mend_journal::RunStatus::RolledBack, "rollback")
    };
    let mut exit_code = 0;
    let mut message = String::new();
    if before != want {
        let me = std::env::current_exe()?;
        let out = Command::new(me)
            .arg("--state-dir")
            .arg(state)
            .args([verb, &run_id])
            .stdin(Stdio::null())
            .output()?;
        exit_code = out.status.code().unwrap_or(70);
        message = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .trim()
        .to_string();
    }
    let after = mend_journal::Journal::open_existing(state)?
        .with_context(|| format!("no journal in {}", state.display()))?
        .run(&run_id)?
        .status;
    Ok(serde_json::json!({
        "run_id": run_id,
        "before": before.as_str(),
        "status": after.as_str(),
        "settled": after == want,
        "exit_code": exit_code,
        "message": message,
    }))
}

/// `host plan BUNDLE_RUNBOOK --set ...`: `mend plan` here, saved to a
/// scratch file; answers its JSON, its exit code and the saved plan.
pub fn plan(
    state: &Path,
    runbook: &Path,
    sets: &[(String, String)],
) -> anyhow::Result<serde_json::Value> {
    let dir = fleet_dir(state).join("plans");
    std::fs::create_dir_all(&dir)?;
    let scratch = dir.join(format!("{}.json", std::process::id()));
    let _ = std::fs::remove_file(&scratch);
    let me = std::env::current_exe()?;
    let mut c = Command::new(me);
    c.arg("--json")
        .arg("--state-dir")
        .arg(state)
        .arg("plan")
        .arg(runbook);
    for (k, v) in sets {
        c.arg("--set").arg(format!("{k}={v}"));
    }
    let out = c.arg("--out").arg(&scratch).stdin(Stdio::null()).output()?;
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        serde_json::json!({"failure": {"message": String::from_utf8_lossy(&out.stderr).trim()}})
    });
    let saved: serde_json::Value = std::fs::read(&scratch)
        .ok()
        .and_then(|d| serde_json::from_slice(&d).ok())
        .unwrap_or(serde_json::Value::Null);
    let _ = std::fs::remove_file(&scratch);
    Ok(serde_json::json!({
        "exit_code": out.status.code().unwrap_or(70),
        "plan": doc,
        "saved": saved,
    }))
}
