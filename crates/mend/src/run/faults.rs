//! `mend rehearse --faults`: rehearse a runbook again and again, each time
//! with one fault, on overlays with a fresh upper layer per variant (or,
//! where overlays cannot be had, fresh copies of its grants), and prove
//! that every variant ends where a rehearsal must: all steps through and
//! rolled back to byte-identical grants. On overlays each variant's child
//! (and the resume after a kill, on the same upper layers) runs in a mount
//! namespace of its own and reports its own check.
//!
//! Variants, each a child `mend` process (a kill must kill a process):
//! - a SIGKILL after each action (`MEND_CRASH_AT`), then `mend resume`,
//!   which must finish the run and its rollback;
//! - no space left on the device at the first action of each step
//!   (`MEND_FAULT`), which must fail the step and roll everything back.
//!
//! Each variant has its own state directory under the scratch area, so the
//! operator's journal holds none of them. A variant that fails keeps its
//! copies and journal for inspection.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};
use serde::Serialize;

use super::rehearse::{compare, copy_dir, snapshot};
use crate::exit;
use crate::load::bundled_names;
use crate::outcome::{Failure, Outcome};
use crate::settings::Settings;
use mend_journal::Journal;
use mend_plan::Planned;
use mend_runbook::Runbook;

/// One faulted rehearsal.
#[derive(Debug, Serialize)]
pub struct Variant {
    /// `kill after 1.3 remove data/a.txt`, `no space at step 2 (unpack)`.
    pub name: String,
    /// The fault, as the environment variable that injected it.
    pub fault: String,
    pub ok: bool,
    /// What happened, in a line.
    pub detail: String,
    /// Differences from the start, when it did not end there.
    pub differences: Vec<String>,
    /// Kept when the variant failed.
    pub dir: Option<PathBuf>,
}

/// What `mend rehearse --faults` found.
#[derive(Debug, Serialize)]
pub struct FaultReport {
    pub runbook: String,
    pub ok: bool,
    /// Actions in the unfaulted rehearsal: the boundaries a kill can hit.
    pub actions: usize,
    /// How many of them were killed at (all, or an even sample).
    pub kills: usize,
    pub variants: Vec<Variant>,
    pub scratch: PathBuf,
}

/// How to start a child mend like this one.
struct Child<'a> {
    exe: PathBuf,
    cache_dir: &'a Path,
    now: i64,
    file: PathBuf,
    sets: &'a [(String, String)],
    /// Variants run on overlays (one fresh upper layer each), not copies.
    overlay: bool,
}

/// What a child printed with `--json`.
struct Ran {
    status: std::process::ExitStatus,
    json: serde_json::Value,
    stderr: String,
}

impl Child<'_> {
    fn mend(
        &self,
        state: &Path,
        args: &[&std::ffi::OsStr],
        env: Option<(&str, &str)>,
        overlay_dir: Option<&Path>,
    ) -> anyhow::Result<Ran> {
        let mut cmd = Command::new(&self.exe);
        cmd.arg("--json")
            .arg("--state-dir")
            .arg(state)
            .arg("--cache-dir")
            .arg(self.cache_dir)
            .arg("--now")
            .arg(self.now.to_string())
            .args(args)
            .env_remove(mend_faults::VAR)
            .env_remove("MEND_CRASH_AT");
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        let out = match overlay_dir {
            Some(dir) => {
                cmd.arg("--in-overlay")
                    .arg(dir.join("spec.json"))
                    .env(super::overlay::STAND_IN_DIR, dir.join(".stand-ins"));
                super::overlay::output_in_namespace(cmd)
            }
            None => cmd.output(),
        }
        .with_context(|| format!("cannot start {}", self.exe.display()))?;
        let json: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        Ok(Ran {
            status: out.status,
            // On overlays the child prints a rehearsal's report: its run,
            // and the differences its check found.
            json: if overlay_dir.is_some() && !json.is_null() {
                json["report"].clone()
            } else {
                json
            },
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Rehearse on the copies in `dir/grants` (or on overlays whose upper
    /// layers are in `dir`), journaling in `dir/state`.
    fn rehearse(&self, dir: &Path, env: Option<(&str, &str)>) -> anyhow::Result<Ran> {
        let mut args: Vec<std::ffi::OsString> = vec!["rehearse".into(), self.file.clone().into()];
        for (k, v) in self.sets {
            args.push("--set".into());
            args.push(format!("{k}={v}").into());
        }
        if !self.overlay {
            args.push("--copies".into());
            args.push(dir.join("grants").into());
        }
        let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        self.mend(&dir.join("state"), &args, env, self.overlay.then_some(dir))
    }
}

/// A variant's fresh start: copies and their snapshots, or (on overlays)
/// nothing but an empty upper layer and the spec that mounts it.
enum Fresh {
    Copies(Copies),
    Overlay,
}

fn fresh(runbook: &Runbook, dir: &Path, overlay: bool) -> anyhow::Result<Fresh> {
    if !overlay {
        return Ok(Fresh::Copies(fresh_copies(runbook, dir)?));
    }
    let spec = super::overlay::spec(runbook, dir);
    std::fs::write(dir.join("spec.json"), serde_json::to_vec(&spec)?)
        .with_context(|| format!("write {}", dir.join("spec.json").display()))?;
    Ok(Fresh::Overlay)
}

/// What differs from the start after a variant, and how many entries
/// were compared: the copies against their snapshots, or what the
/// child's check of its upper layers said.
fn differences(
    fresh: &Fresh,
    json: Option<&serde_json::Value>,
    skip: &[String],
) -> anyhow::Result<(Vec<String>, u64)> {
    match fresh {
        Fresh::Copies((copies, before)) => compare(copies, before, skip),
        Fresh::Overlay => {
            let Some(json) = json else {
                return Ok((Vec::new(), 0));
            };
            let list = json["differences"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|d| d.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            Ok((list, json["files"].as_u64().unwrap_or(0)))
        }
    }
}

/// Fresh copies of every grant in `dir/grants`, and their snapshots.
type Copies = (
    BTreeMap<String, PathBuf>,
    BTreeMap<String, BTreeMap<String, super::rehearse::Meta>>,
);

fn fresh_copies(runbook: &Runbook, dir: &Path) -> anyhow::Result<Copies> {
    let mut copies = BTreeMap::new();
    let mut before = BTreeMap::new();
    std::fs::create_dir_all(dir.join("grants"))
        .with_context(|| format!("create {}", dir.join("grants").display()))?;
    for (name, g) in &runbook.grants {
        let copy = dir.join("grants").join(name);
        copy_dir(&g.path, &copy)
            .with_context(|| format!("copy grant `{name}` ({})", g.path.display()))?;
        before.insert(name.clone(), snapshot(&copy)?);
        copies.insert(name.clone(), copy);
    }
    Ok((copies, before))
}

/// Whether a rehearsal's outcome (`{"run": RunOutcome}`) went all the way
/// through and rolled back cleanly; else why not.
fn through_and_back(json: &serde_json::Value) -> Result<(), String> {
    let run = &json["run"];
    if run.is_null() {
        return Err("it printed no outcome".into());
    }
    if let Some(e) = run["error"].as_str() {
        return Err(format!(
            "step `{}` failed: {e}",
            run["failed_step"].as_str().unwrap_or("?")
        ));
    }
    if let Some(e) = run["rollback"]["failed"].as_str() {
        return Err(format!("its rollback failed: {e}"));
    }
    match run["status"].as_str() {
        Some("rolled-back") => Ok(()),
        other => Err(format!("it ended {}", other.unwrap_or("without a status"))),
    }
}

fn skip_paths(json: &serde_json::Value) -> Vec<String> {
    json["run"]["rollback"]["irreversible_paths"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn last_line(s: &str) -> &str {
    s.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("")
}

/// At most `max` of `n` boundaries, evenly spread, the first and last kept.
fn sample(n: usize, max: usize) -> Vec<usize> {
    if n <= max || max < 2 {
        return (0..n.min(max)).collect();
    }
    let mut picked: Vec<usize> = (0..max).map(|i| i * (n - 1) / (max - 1)).collect();
    picked.dedup();
    picked
}

/// Runs every variant; see the module's comment.
pub async fn rehearse_faults(
    settings: &Settings,
    cache_dir: &Path,
    file: &Path,
    sets: &[(String, String)],
    max_kills: usize,
    on: super::rehearse::On,
) -> Result<FaultReport, Failure> {
    use super::rehearse::On;
    let runbook = Runbook::load(file, sets, &bundled_names()).map_err(Failure::BadInput)?;
    // Overlays when they can be had: one fresh upper layer per variant
    // costs what the variant changes, where a copy costs the grants.
    let base = super::overlay::default_base();
    let why_not = if !rustix::process::geteuid().is_root() {
        Some("mend is not running as root".to_string())
    } else {
        super::overlay::precheck(&runbook, &base)
    };
    if on == On::Reflink {
        // Each variant would need its own clones; it is not built, and a
        // silent fallback to full copies would be a lie about the cost.
        return Err(Failure::input(
            &file.display().to_string(),
            "`mend rehearse --faults` does not run on reflinked copies yet; nothing ran",
            Some("choose --on overlay (as root) or --on copy".into()),
        ));
    }
    let overlay = matches!(on, On::Auto | On::Overlay) && why_not.is_none();
    if on == On::Overlay && !overlay {
        return Err(Failure::input(
            &file.display().to_string(),
            format!(
                "cannot rehearse on overlays: {}; nothing ran",
                why_not.unwrap_or_default()
            ),
            Some("rehearse as root on Linux with overlayfs, or choose --on copy".into()),
        ));
    }
    let scratch = if overlay { base } else { std::env::temp_dir() }.join(format!(
        "mend-faults-{}-{}",
        runbook.name,
        std::process::id()
    ));
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch).context("clear an old scratch area")?;
    }
    std::fs::create_dir_all(&scratch).context("create the scratch area")?;
    let child = Child {
        exe: std::env::current_exe().context("cannot find the mend executable")?,
        cache_dir,
        now: crate::settings::now(settings),
        file: std::path::absolute(file).context("cannot resolve the runbook's path")?,
        sets,
        overlay,
    };
    let say = |line: String| settings.reporter.line(&line);
    say(if overlay {
        format!(
            "rehearsing {} under faults, on overlays with a fresh upper layer per variant in {}",
            runbook.name,
            scratch.display()
        )
    } else {
        format!(
            "rehearsing {} under faults, on fresh copies in {}{}",
            runbook.name,
            scratch.display(),
            why_not
                .map(|w| format!(" (no overlay: {w})"))
                .unwrap_or_default()
        )
    });

    // The unfaulted rehearsal: it must pass, and it tells where the
    // action boundaries are.
    let base = scratch.join("baseline");
    let start = fresh(&runbook, &base, overlay)?;
    let ran = child.rehearse(&base, None)?;
    let mut report = FaultReport {
        runbook: runbook.name.clone(),
        ok: false,
        actions: 0,
        kills: 0,
        variants: vec![],
        scratch: scratch.clone(),
    };
    let (diffs, _) = differences(
        &start,
        (!ran.json.is_null()).then_some(&ran.json),
        &skip_paths(&ran.json),
    )?;
    if let Err(why) = through_and_back(&ran.json).and_then(|()| {
        if diffs.is_empty() {
            Ok(())
        } else {
            Err(format!("{} differences after its rollback", diffs.len()))
        }
    }) {
        let why = if ran.json.is_null() {
            format!("{why}: {}", last_line(&ran.stderr))
        } else {
            why
        };
        report.variants.push(Variant {
            name: "no fault".into(),
            fault: String::new(),
            ok: false,
            detail: format!("the plain rehearsal does not pass ({why}); fix that first"),
            differences: diffs,
            dir: Some(base),
        });
        return Ok(report);
    }
    let journal = Journal::open_existing(&base.join("state"))?
        .context("the baseline rehearsal left no journal")?;
    let run = journal
        .history(&Default::default())?
        .into_iter()
        .next()
        .context("the baseline rehearsal left no run")?;
    let actions: Vec<(u32, u32, String)> = journal
        .actions(&run.id)?
        .iter()
        .map(|a| {
            let what = serde_json::from_str::<Planned>(&a.action_json)
                .map(|p| format!("{:#}", p.action))
                .unwrap_or_else(|_| "?".into());
            (a.step_idx, a.seq, what)
        })
        .collect();
    drop(journal);
    std::fs::remove_dir_all(&base).ok();
    report.actions = actions.len();
    let picked = sample(actions.len(), max_kills);
    report.kills = picked.len();
    say(format!(
        "the plain rehearsal passed: {} actions in {} steps; killing after {} of them, then filling the disk at each step",
        actions.len(),
        runbook.steps.len(),
        picked.len()
    ));

    let mut n = 0;
    let mut next_dir = || {
        n += 1;
        scratch.join(format!("variant-{n}"))
    };
    for &i in &picked {
        let (step, seq, what) = &actions[i];
        let dir = next_dir();
        let fault = format!("perform:{step}:{seq}");
        let name = format!("kill after {}.{} {what}", step + 1, seq + 1);
        let start = fresh(&runbook, &dir, overlay)?;
        let killed = child.rehearse(&dir, Some(("MEND_CRASH_AT", &fault)))?;
        let result = if killed.status.signal() != Some(9) {
            Err(format!(
                "it was not killed there (exit {:?}): {}",
                killed.status.code(),
                last_line(&killed.stderr)
            ))
        } else {
            resume(&child, &dir).and_then(|json| through_and_back(&json).map(|()| json))
        };
        report.variants.push(settle(
            name,
            format!("MEND_CRASH_AT={fault}"),
            dir,
            result,
            &start,
            "killed, resumed, rolled back",
        )?);
        say(variant_line(report.variants.last().expect("pushed")));
    }
    let steps: std::collections::BTreeSet<u32> = actions.iter().map(|a| a.0).collect();
    for step in steps {
        let dir = next_dir();
        let fault = format!("enospc:write:{step}");
        let id = &runbook.steps[step as usize].id;
        let name = format!("no space at step {} ({id})", step + 1);
        let start = fresh(&runbook, &dir, overlay)?;
        let ran = child.rehearse(&dir, Some((mend_faults::VAR, &fault)))?;
        let run = &ran.json["run"];
        let result = match (run["error"].as_str(), run["rollback"]["failed"].as_str()) {
            (_, Some(f)) => Err(format!("its rollback failed: {f}")),
            (Some(e), None) if e.contains("injected by") && run["status"] == "rolled-back" => {
                Ok(ran.json.clone())
            }
            (Some(e), None) => Err(format!("it failed otherwise: {e}")),
            (None, None) => Err(format!(
                "the fault did not stop it ({})",
                last_line(&ran.stderr)
            )),
        };
        report.variants.push(settle(
            name,
            format!("{}={fault}", mend_faults::VAR),
            dir,
            result,
            &start,
            "failed, rolled back",
        )?);
        say(variant_line(report.variants.last().expect("pushed")));
    }
    report.ok = report.variants.iter().all(|v| v.ok);
    if report.ok {
        std::fs::remove_dir_all(&scratch).ok();
    }
    Ok(report)
}

/// `mend resume` of the one run in a variant's journal.
fn resume(child: &Child, dir: &Path) -> Result<serde_json::Value, String> {
    let state = dir.join("state");
    let id = (|| -> anyhow::Result<String> {
        let j = Journal::open_existing(&state)?.context("no journal")?;
        let run = j.history(&Default::default())?.into_iter().next();
        Ok(run.context("no run in the journal")?.id)
    })()
    .map_err(|e| format!("cannot find the killed run: {e:#}"))?;
    let ran = child
        .mend(
            &state,
            &["resume".as_ref(), id.as_ref()],
            None,
            child.overlay.then_some(dir),
        )
        .map_err(|e| format!("{e:#}"))?;
    if ran.json.is_null() {
        return Err(format!("resume failed: {}", last_line(&ran.stderr)));
    }
    Ok(ran.json)
}

/// Compares a variant's copies with their start and records the verdict.
fn settle(
    name: String,
    fault: String,
    dir: PathBuf,
    result: Result<serde_json::Value, String>,
    start: &Fresh,
    how: &str,
) -> anyhow::Result<Variant> {
    let skip = result.as_ref().map(skip_paths).unwrap_or_default();
    let (differences, files) = differences(start, result.as_ref().ok(), &skip)?;
    let (ok, detail) = match result {
        Err(why) => (false, why),
        Ok(_) if !differences.is_empty() => (
            false,
            format!("{how}, but {} differ from the start", differences.len()),
        ),
        Ok(_) if matches!(start, Fresh::Overlay) => (
            true,
            format!("{how}; the {files} entries its upper layer held are as they started"),
        ),
        Ok(_) => (true, format!("{how}; {files} entries as they started")),
    };
    if ok {
        std::fs::remove_dir_all(&dir).ok();
    }
    if !ok && !dir.exists() {
        bail!("variant {name}: its directory {} is gone", dir.display());
    }
    Ok(Variant {
        name,
        fault,
        ok,
        detail,
        differences,
        dir: (!ok).then_some(dir),
    })
}

fn variant_line(v: &Variant) -> String {
    format!(
        "  {} {}: {}",
        if v.ok { "ok  " } else { "FAIL" },
        v.name,
        v.detail
    )
}

impl Outcome for FaultReport {
    fn exit_code(&self) -> i32 {
        if self.ok {
            exit::SUCCESS
        } else {
            exit::STEP_FAILED
        }
    }
}

#[cfg(test)]
mod tests {
    use super::sample;

    #[test]
    fn kills_are_spread_over_every_boundary_or_all_of_them() {
        assert_eq!(sample(5, 40), vec![0, 1, 2, 3, 4]);
        assert_eq!(sample(0, 40), Vec::<usize>::new());
        let s = sample(482, 40);
        assert_eq!(s.len(), 40);
        assert_eq!((s[0], s[39]), (0, 481));
        assert!(s.windows(2).all(|w| w[0] < w[1]));
    }
}
