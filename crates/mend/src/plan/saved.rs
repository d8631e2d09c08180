//! Fact-pinned plans: `mend plan --out FILE` saves a plan with what it was
//! based on; `mend run --plan FILE` plans again and runs only when nothing
//! of it has moved. An operator reviews a plan at noon and applies exactly
//! that plan at night, or nothing.
//!
//! What is pinned: the runbook's sha256 and parameters, each step's
//! component sha256, its actions and the facts it reported (the chosen
//! snapshot and its time, sizes), and for each grant the mount it lives on
//! and its free space. The clock is the one thing expected to move: the
//! plan's own UTC time in names (`pre-upgrade-20261122T120000Z`) is read as
//! the new plan's. Free space may grow; it may not fall below 90% of what
//! the plan saw.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::exit;
use crate::outcome::Outcome;
use crate::plan::PlannedStep;
use mend_runbook::Runbook;

/// The file format's name and version.
pub const FORMAT: &str = "mend-plan/1";

/// A saved plan.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SavedPlan {
    pub format: String,
    pub runbook: RunbookPin,
    /// The `--set` parameters the plan was made with.
    pub sets: Vec<(String, String)>,
    /// The clock the plan was made at (seconds since the Unix epoch).
    pub now: i64,
    pub steps: Vec<StepPin>,
    pub grants: BTreeMap<String, GrantPin>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunbookPin {
    pub path: PathBuf,
    pub name: String,
    pub version: String,
    pub sha256: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StepPin {
    pub id: String,
    pub uses: String,
    pub component_sha256: String,
    /// Each action on one line, as `mend plan` shows it.
    pub actions: Vec<String>,
    pub facts: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct GrantPin {
    pub path: PathBuf,
    /// `MOUNTPOINT (FSTYPE, dev MAJ:MIN)`, or why it is not known.
    pub mount: String,
    /// Bytes free for an unprivileged writer.
    pub free: u64,
}

/// Capture a plan, or say which steps cannot plan (such a plan is not saved).
pub fn capture(
    runbook: &Runbook,
    sets: &[(String, String)],
    now: i64,
    steps: &[PlannedStep],
) -> Result<SavedPlan, Vec<String>> {
    let failed: Vec<String> = steps
        .iter()
        .filter_map(|(s, r)| {
            r.as_ref()
                .err()
                .map(|e| format!("{}: {}", s.def.id, e.message))
        })
        .collect();
    if !failed.is_empty() {
        return Err(failed);
    }
    let steps = steps
        .iter()
        .filter_map(|(s, r)| {
            let (plan, _) = r.as_ref().ok()?;
            Some(StepPin {
                id: s.def.id.clone(),
                uses: s.def.uses.to_string(),
                component_sha256: s.loaded.sha256.clone(),
                actions: {
                    // A saved plan pins every action: it holds them all.
                    let mut all = Vec::with_capacity(plan.len());
                    crate::plan::spool::each_planned(plan, |a| all.push(a.action.to_string()))
                        .ok()?;
                    all
                },
                facts: plan.facts.iter().cloned().collect(),
            })
        })
        .collect();
    let grants = runbook
        .grants
        .iter()
        .map(|(name, g)| (name.clone(), grant_pin(&g.path)))
        .collect();
    Ok(SavedPlan {
        format: FORMAT.to_string(),
        runbook: RunbookPin {
            path: std::path::absolute(&runbook.file).unwrap_or_else(|_| runbook.file.clone()),
            name: runbook.name.clone(),
            version: runbook.version.clone(),
            sha256: runbook.sha256.clone(),
        },
        sets: sets.to_vec(),
        now,
        steps,
        grants,
    })
}

fn grant_pin(path: &Path) -> GrantPin {
    GrantPin {
        path: path.to_path_buf(),
        mount: mount_of(path),
        free: mend_host::space::free_space_at(path).unwrap_or(0),
    }
}

/// The mount `path` lives on, from /proc/self/mountinfo: the entry with the
/// same device whose mount point is the longest prefix of the path.
pub fn mount_of(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let md = match std::fs::metadata(path) {
        Ok(md) => md,
        Err(e) => return format!("not there ({e})"),
    };
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let dev = format!(
        "{}:{}",
        rustix::fs::major(md.dev()),
        rustix::fs::minor(md.dev())
    );
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut best: Option<(String, String)> = None;
    for line in info.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let (Some(majmin), Some(point)) = (fields.get(2), fields.get(4)) else {
            continue;
        };
        let point = point.replace("\\040", " ");
        if *majmin != dev || !real.starts_with(&point) {
            continue;
        }
        let fstype = line
            .split_once(" - ")
            .and_then(|(_, rest)| rest.split(' ').next())
            .unwrap_or("?")
            .to_string();
        if best.as_ref().is_none_or(|(p, _)| point.len() > p.len()) {
            best = Some((point, fstype));
        }
    }
    match best {
        Some((point, fstype)) => format!("{point} ({fstype}, dev {dev})"),
        None => format!("dev {dev}"),
    }
}

/// What no longer holds between the saved plan and `now`, one line each.
pub fn drift(saved: &SavedPlan, now: &SavedPlan) -> Vec<String> {
    let mut out = Vec::new();
    let moved = |text: &str| clock_moved(text, saved.now, now.now);
    if saved.runbook.sha256 != now.runbook.sha256 {
        out.push(format!(
            "runbook {}: sha256 {} at plan time, now {}",
            now.runbook.path.display(),
            short(&saved.runbook.sha256),
            short(&now.runbook.sha256)
        ));
    }
    if saved.sets != now.sets {
        out.push("parameters: not the ones the plan was made with".to_string());
    }
    let ids = |p: &SavedPlan| p.steps.iter().map(|s| s.id.clone()).collect::<Vec<_>>();
    if ids(saved) != ids(now) {
        out.push(format!(
            "steps: {} at plan time, now {}",
            ids(saved).join(", "),
            ids(now).join(", ")
        ));
    }
    for (was, is) in saved.steps.iter().zip(&now.steps) {
        let id = &is.id;
        if was.component_sha256 != is.component_sha256 {
            out.push(format!(
                "step {id}: {} component sha256 {} at plan time, now {}",
                is.uses,
                short(&was.component_sha256),
                short(&is.component_sha256)
            ));
        }
        let was_actions: Vec<String> = was.actions.iter().map(|a| moved(a)).collect();
        if was_actions.len() != is.actions.len() {
            out.push(format!(
                "step {id}: {} actions at plan time, now {}",
                was_actions.len(),
                is.actions.len()
            ));
        }
        let differing: Vec<usize> = (0..was_actions.len().min(is.actions.len()))
            .filter(|&i| was_actions[i] != is.actions[i])
            .collect();
        for &i in differing.iter().take(3) {
            out.push(format!(
                "step {id}: action {}: `{}` at plan time, now `{}`",
                i + 1,
                was.actions[i],
                is.actions[i]
            ));
        }
        if differing.len() > 3 {
            out.push(format!(
                "step {id}: and {} more actions differ",
                differing.len() - 3
            ));
        }
        let keys: std::collections::BTreeSet<&String> =
            was.facts.keys().chain(is.facts.keys()).collect();
        for key in keys {
            let a = was.facts.get(key).map(|v| moved(v));
            let b = is.facts.get(key);
            if a.as_ref() != b {
                let show = |v: Option<&String>| v.map_or("absent".to_string(), |v| v.clone());
                out.push(format!(
                    "step {id}: {key}: {} at plan time, now {}",
                    show(was.facts.get(key)),
                    show(b)
                ));
            }
        }
    }
    for (name, was) in &saved.grants {
        let Some(is) = now.grants.get(name) else {
            out.push(format!("grant {name}: gone from the runbook"));
            continue;
        };
        if was.path != is.path {
            out.push(format!(
                "grant {name}: {} at plan time, now {}",
                was.path.display(),
                is.path.display()
            ));
        }
        if was.mount != is.mount {
            out.push(format!(
                "grant {name}: on {} at plan time, now on {}",
                was.mount, is.mount
            ));
        }
        if is.free < was.free / 10 * 9 {
            out.push(format!(
                "grant {name}: {} free at plan time, now {} (less than 90% of it)",
                mend_human::human_bytes(was.free),
                mend_human::human_bytes(is.free)
            ));
        }
    }
    out
}

/// `text` as the clock of `then` would have written it at `now`.
fn clock_moved(text: &str, then: i64, now: i64) -> String {
    use mend_sdk::time::{utc, utc_stamp};
    text.replace(&utc_stamp(then), &utc_stamp(now))
        .replace(&utc(then), &utc(now))
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

/// Read a saved plan, with an error that names the file.
pub fn load(file: &Path) -> Result<SavedPlan, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read the plan {}: {e}", file.display()))?;
    let plan: SavedPlan = serde_json::from_str(&text).map_err(|e| {
        format!(
            "{}:{}:{}: not a plan mend saved: {e}",
            file.display(),
            e.line(),
            e.column()
        )
    })?;
    if plan.format != FORMAT {
        return Err(format!(
            "{}: a plan in format {:?}; this mend reads {FORMAT:?}",
            file.display(),
            plan.format
        ));
    }
    Ok(plan)
}

/// Write a plan whole (a temporary file renamed into place).
pub fn save(plan: &SavedPlan, file: &Path) -> std::io::Result<()> {
    let tmp = file.with_extension("tmp-mend");
    std::fs::write(&tmp, serde_json::to_vec_pretty(plan)?)?;
    std::fs::rename(&tmp, file)
}

/// A saved plan that no longer holds: which plan, and what moved.
#[derive(Debug, serde::Serialize)]
pub struct Drifted {
    pub plan: std::path::PathBuf,
    pub drift: Vec<String>,
}

impl Outcome for Drifted {
    fn exit_code(&self) -> i32 {
        exit::PLAN_DRIFTED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(now: i64) -> SavedPlan {
        SavedPlan {
            format: FORMAT.into(),
            runbook: RunbookPin {
                path: "/r.toml".into(),
                name: "r".into(),
                version: "1".into(),
                sha256: "aa".repeat(32),
            },
            sets: vec![],
            now,
            steps: vec![StepPin {
                id: "snap".into(),
                uses: "std:snapshot".into(),
                component_sha256: "bb".repeat(32),
                actions: vec![format!(
                    "copy data/db -> snaps/db-{}",
                    mend_sdk::time::utc_stamp(now)
                )],
                facts: [("snapshot.time".to_string(), mend_sdk::time::utc(now))].into(),
            }],
            grants: [(
                "data".to_string(),
                GrantPin {
                    path: "/srv/data".into(),
                    mount: "/srv (ext4, dev 8:1)".into(),
                    free: 100 << 30,
                },
            )]
            .into(),
        }
    }

    #[test]
    fn the_clock_moving_is_no_drift() {
        assert_eq!(
            drift(&plan(1_795_316_400), &plan(1_795_316_400 + 9 * 3600)),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_changed_action_fact_mount_or_shrunk_disk_is_drift() {
        let saved = plan(1_795_316_400);
        let mut now = plan(1_795_316_400 + 60);
        now.steps[0].actions[0] = "copy data/other -> snaps/x".into();
        now.steps[0]
            .facts
            .insert("restore.snapshot".into(), "daily.0".into());
        let g = now.grants.get_mut("data").unwrap();
        g.mount = "/ (ext4, dev 8:2)".into();
        g.free = 80 << 30;
        let d = drift(&saved, &now);
        assert_eq!(d.len(), 4, "{d:#?}");
        assert!(d[0].starts_with("step snap: action 1: `copy data/db -> snaps/db-20261122T030000Z` at plan time, now `copy data/other -> snaps/x`"), "{d:#?}");
        assert_eq!(
            d[1],
            "step snap: restore.snapshot: absent at plan time, now daily.0"
        );
        assert_eq!(
            d[2],
            "grant data: on /srv (ext4, dev 8:1) at plan time, now on / (ext4, dev 8:2)"
        );
        assert_eq!(
            d[3],
            "grant data: 107.4 GB free at plan time, now 85.9 GB (less than 90% of it)"
        );
    }

    #[test]
    fn more_free_space_is_no_drift() {
        let saved = plan(0);
        let mut now = plan(0);
        now.grants.get_mut("data").unwrap().free = 500 << 30;
        assert!(drift(&saved, &now).is_empty());
    }

    #[test]
    fn the_mount_of_a_directory_is_found() {
        let m = mount_of(Path::new("/proc"));
        assert!(m.starts_with("/proc (proc, dev "), "{m}");
    }
}
