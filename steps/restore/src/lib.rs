//! `std:restore`: put back a snapshot of a directory or a database.
//!
//! The snapshot is chosen by its own time, never by list order: the UTC time
//! written in its name (`media-20261122T030000Z`, `2026-11-22`, what
//! `std:snapshot` and most backup tools write), else its modification time
//! (rsnapshot's `daily.0`). The plan lists the candidates newest first with
//! their ages and marks the chosen one; `snapshot = "NAME"` picks another;
//! `max_age` refuses a newest snapshot that is too old unless `allow_old`.
//!
//! A directory is copied beside its target (space checked first), swapped
//! into place only when whole, and the old one is removed into the trash:
//! it stays until the run commits, so a rollback puts it back. A database
//! is dumped as it is, dropped, and created again from the chosen dump
//! (`pg_restore --create`); a rollback drops it and loads the first dump.

mod choose;
mod database;

use mend_sdk::prelude::*;
use mend_sdk::time::utc;

use choose::{Candidate, Kind};
pub use database::Database;

/// The runbook's `with` table.
#[derive(Params, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// GRANT/path of the directory holding the snapshots
    from: String,
    /// GRANT/path of the directory to restore
    target: Option<String>,
    /// the path inside each snapshot to restore from
    ///
    /// As rsnapshot's `localhost/...`.
    subdir: Option<String>,
    /// a database to restore: { name, connect = [...], counts = { table = rows }, query, expect }
    #[param(kind = "table")]
    database: Option<Database>,
    /// restore this snapshot instead of the newest ("" for the newest)
    snapshot: Option<String>,
    /// refuse a newest snapshot older than this, e.g. "36h"
    max_age: Option<String>,
    /// restore an old snapshot all the same
    #[serde(default)]
    #[param(default = false)]
    allow_old: bool,
}

/// The step.
pub struct Restore;

impl Step for Restore {
    type Params = Params;
    const SUMMARY: &'static str =
        "Restore the newest snapshot (by its own time) of a directory or a database";

    fn plan(cx: &Context, p: Params, host: &dyn Host) -> Result<Plan, StepError> {
        let kind = match (&p.target, &p.database) {
            (Some(_), None) => Kind::Dir,
            (None, Some(_)) => Kind::Dump,
            _ => {
                return Err(StepError::new(
                    "give either `target` (a directory) or `database`, one per step",
                ));
            }
        };
        let listing = choose::list(host, &p.from, kind)?;
        let chosen = choose::pick(cx.now, &listing, &p)?;
        let mut plan = Plan::builder()
            .summary(format!(
                "{} snapshot{} in {}, newest first:",
                listing.len(),
                if listing.len() == 1 { "" } else { "s" },
                p.from
            ))
            .fact("restore.snapshot", &chosen.name)
            .fact("restore.snapshot.time", utc(chosen.time));
        for line in choose::table(cx.now, &listing, &chosen.name) {
            plan = plan.summary(line);
        }
        let plan = match kind {
            Kind::Dir => restore_dir(host, plan, &p, &chosen)?,
            Kind::Dump => {
                let db = p.database.as_ref().expect("kind is Dump");
                db.plan(cx, plan, &p.from, &chosen)?
            }
        };
        Ok(plan.build())
    }

    fn verify(_cx: &Context, p: Params, host: &dyn Host) -> Result<Vec<Check>, StepError> {
        match &p.database {
            Some(db) => db.verify(host),
            None => Ok(Vec::new()),
        }
    }
}

/// Copy beside, swap in when whole, keep the old one in the trash.
fn restore_dir(
    host: &dyn Host,
    plan: PlanBuilder,
    p: &Params,
    chosen: &Candidate,
) -> Result<PlanBuilder, StepError> {
    let target = p
        .target
        .as_deref()
        .expect("kind is Dir")
        .trim_end_matches('/');
    if !target.contains('/') {
        return Err(StepError::new(format!(
            "target `{target}` is a whole grant; grant its parent directory and name the directory inside it"
        ))
        .param("target"));
    }
    let mut src = format!("{}/{}", p.from.trim_end_matches('/'), chosen.name);
    if let Some(sub) = p
        .subdir
        .as_deref()
        .filter(|s| !s.trim_matches('/').is_empty())
    {
        src = format!("{src}/{}", sub.trim_matches('/'));
    }
    let (files, bytes) = tree_size(host, &src)
        .map_err(|e| StepError::new(format!("cannot read {src}: {}", e.text())))?;
    let current = match tree_size(host, target) {
        Ok(size) => Some(size),
        Err(HostError::NotFound(_)) => None,
        Err(e) => {
            return Err(StepError::new(format!(
                "cannot read {target}: {}",
                e.text()
            )));
        }
    };
    let space = host
        .free_space(target.rsplit_once('/').map_or(target, |(parent, _)| parent))
        .map_err(|e| {
            StepError::new(format!(
                "cannot see the free space at {target}: {}",
                e.text()
            ))
        })?;
    let need = bytes + copy_headroom(bytes);
    if space.available < need {
        return Err(StepError::new(format!(
            "not enough space to restore {src} into {target}: it needs {} ({} and {} headroom), {} is free",
            human_bytes(need),
            human_bytes(bytes),
            human_bytes(copy_headroom(bytes)),
            human_bytes(space.available)
        ))
        .hint("free that much there first; nothing was copied"));
    }
    let mut plan = plan.summary(format!(
        "restore {src} ({}, {}) into {target}: needs {} with headroom, {} free there",
        files_text(files),
        human_bytes(bytes),
        human_bytes(need),
        human_bytes(space.available)
    ));
    match current {
        Some((cur_files, cur_bytes)) => {
            let beside = format!("{target}.restore-{}", chosen.name);
            plan = plan
                .summary(format!(
                    "the current {target} ({}, {}) is kept in the trash until the run commits",
                    files_text(cur_files),
                    human_bytes(cur_bytes)
                ))
                .copy(&src, &beside, "copy the snapshot beside the target")
                .swap(target, &beside, "swap the whole copy into place")
                .remove(
                    &beside,
                    "the data from before the restore, kept until the run commits",
                );
        }
        None => {
            plan = plan.copy(
                &src,
                target,
                "the target does not exist: copy the snapshot there",
            );
        }
    }
    Ok(plan)
}

mend_sdk::export_step!(Restore);

#[cfg(test)]
mod tests;
