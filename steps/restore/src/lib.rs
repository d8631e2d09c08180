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
mod repo;

use mend_sdk::prelude::*;
use mend_sdk::time::utc;

use choose::{Candidate, Kind};
pub use database::Database;

/// The runbook's `with` table.
#[derive(Params, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// GRANT/path of the directory holding the snapshots (or give restic or borg)
    #[serde(default)]
    from: String,
    /// a restic repository: { repo, path = "/var/lib/x", tag, command = "restic", args = ["--password-file", ...] }
    #[param(kind = "table")]
    restic: Option<repo::Repo>,
    /// a borg repository: { repo, path = "var/lib/x", tag (the archives' label), command = "borg", args }
    #[param(kind = "table")]
    borg: Option<repo::Repo>,
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
    /// restore a snapshot dated in the future (a wrong clock) all the same
    #[serde(default)]
    #[param(default = false)]
    allow_future: bool,
    /// choose among this label's snapshots (LABEL-YYYYMMDDTHHMMSSZ); default: the target's or database's name
    label: Option<String>,
}

/// The step.
pub struct Restore;

impl Step for Restore {
    type Params = Params;
    const SUMMARY: &'static str =
        "Restore the newest snapshot (by its own time) of a directory or a database";

    fn plan(cx: &Context, p: Params, host: &dyn Host) -> Result<Plan, StepError> {
        let tool = match (&p.restic, &p.borg) {
            (Some(r), None) => Some((repo::Tool::Restic, r)),
            (None, Some(r)) => Some((repo::Tool::Borg, r)),
            (Some(_), Some(_)) => {
                return Err(StepError::new("give restic or borg, one per step").param("borg"));
            }
            (None, None) => None,
        };
        if let Some((tool, r)) = tool {
            let target = p.target.as_deref().ok_or_else(|| {
                StepError::new(
                    "a restore from a repository needs `target`, the directory to restore",
                )
            })?;
            let target = target.trim_end_matches('/');
            return Ok(repo::plan(cx, host, Plan::builder(), tool, r, target, &p)?.build());
        }
        if p.from.is_empty() {
            return Err(StepError::new(
                "give `from` (a directory of snapshots), `restic` or `borg`",
            )
            .param("from"));
        }
        let kind = match (&p.target, &p.database) {
            (Some(_), None) => Kind::Dir,
            (None, Some(_)) => Kind::Dump,
            _ => {
                return Err(StepError::new(
                    "give either `target` (a directory) or `database`, one per step",
                ));
            }
        };
        let label = p
            .label
            .clone()
            .unwrap_or_else(|| match (&p.target, &p.database) {
                (Some(t), _) => last_component(t).to_string(),
                (None, Some(db)) => db.name().to_string(),
                (None, None) => String::new(),
            });
        let all = choose::list(host, &p.from, kind)?;
        let choose::Listing {
            chosen_from: listing,
            skipped,
        } = choose::by_label(all, &label);
        let chosen = choose::pick(cx.now, &listing, &p).map_err(|e| {
            if listing.is_empty() && !skipped.is_empty() {
                let names: Vec<&str> = skipped.iter().take(5).map(|c| c.name.as_str()).collect();
                StepError::new(format!(
                    "no snapshot labelled `{label}` in {}; {} of other labels: {}",
                    p.from,
                    skipped.len(),
                    names.join(", ")
                ))
                .param("label")
                .hint("set label = \"...\" to the label std:snapshot wrote (the part of the name before its time)")
            } else {
                e
            }
        })?;
        let mut plan = Plan::builder()
            .summary(format!(
                "{} snapshot{} labelled `{label}` in {}, newest first:",
                listing.len(),
                if listing.len() == 1 { "" } else { "s" },
                p.from
            ))
            .fact("restore.snapshot", &chosen.name)
            .fact("restore.snapshot.time", utc(chosen.time));
        for line in choose::table(cx.now, &listing, &chosen.name) {
            plan = plan.summary(line);
        }
        if !skipped.is_empty() {
            let names: Vec<&str> = skipped.iter().take(5).map(|c| c.name.as_str()).collect();
            plan = plan.summary(format!(
                "skipped {} snapshot{} of other labels: {}{}",
                skipped.len(),
                if skipped.len() == 1 { "" } else { "s" },
                names.join(", "),
                if skipped.len() > 5 { ", ..." } else { "" }
            ));
        }
        if chosen.time - cx.now > choose::FUTURE_SLACK {
            plan = plan.summary(format!(
                "WARNING: {} is dated {} (allowed by allow_future or chosen by name)",
                chosen.name,
                choose::age_text(cx.now, chosen.time)
            ));
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

    fn verify(cx: &Context, p: Params, host: &dyn Host) -> Result<Vec<Check>, StepError> {
        if p.restic.is_some() || p.borg.is_some() {
            return Ok(Vec::new());
        }
        match &p.database {
            Some(db) => db.verify(host),
            None => verify_dir(cx, &p, host),
        }
    }
}

fn last_component(path: &str) -> &str {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(path)
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
    if let Some(format) = chosen.archive {
        return restore_archive(host, plan, p, chosen, &src, format);
    }
    if let Some(sub) = p
        .subdir
        .as_deref()
        .filter(|s| !s.trim_matches('/').is_empty())
    {
        src = format!("{src}/{}", sub.trim_matches('/'));
    }
    let (files, bytes, src_top) =
        scan(host, &src).map_err(|e| StepError::new(format!("cannot read {src}: {}", e.text())))?;
    let current = match scan(host, target) {
        Ok(size) => Some(size),
        Err(HostError::NotFound(_)) => None,
        Err(e) => {
            return Err(StepError::new(format!(
                "cannot read {target}: {}",
                e.text()
            )));
        }
    };
    // A volume mounted at the target cannot be swapped away (EBUSY): its
    // contents are replaced instead, on its own filesystem.
    let volume = current.is_some()
        && host
            .mount_point(target)
            .map_err(|e| StepError::new(format!("cannot stat {target}: {}", e.text())))?;
    let space = host
        .free_space(if volume {
            target
        } else {
            target.rsplit_once('/').map_or(target, |(parent, _)| parent)
        })
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
        Some((cur_files, cur_bytes, cur_top)) if volume => {
            let beside = format!("{target}/.mend-restore-{}", chosen.name);
            plan = plan
                .summary(format!(
                    "{target} is a mount point (a volume of its own): its {} entries ({}, {}) are replaced in place, each kept in the volume's trash until the run commits",
                    human_count(cur_top.len() as u64),
                    files_text(cur_files),
                    human_bytes(cur_bytes)
                ))
                .copy(&src, &beside, "copy the snapshot into the volume, beside its data");
            for name in &cur_top {
                plan = plan.remove(
                    &format!("{target}/{name}"),
                    "the data from before the restore, kept until the run commits",
                );
            }
            for name in &src_top {
                plan = plan.rename(
                    &format!("{beside}/{name}"),
                    &format!("{target}/{name}"),
                    "the restored entry into place",
                );
            }
            plan = plan.remove(&beside, "the emptied copy");
        }
        Some((cur_files, cur_bytes, _)) => {
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
    Ok(plan.check(format!(
        "{target} matches {src}: every entry's type, mode, owner, group, size, time and link target"
    )))
}

/// From an archive (std:snapshot's `format = "tar.zst"`): unpacked beside
/// the target by the host (owners, modes, times, links and xattrs kept),
/// swapped in whole, the old data kept until the run commits.
fn restore_archive(
    host: &dyn Host,
    plan: PlanBuilder,
    p: &Params,
    chosen: &Candidate,
    src: &str,
    format: ArchiveFormat,
) -> Result<PlanBuilder, StepError> {
    let target = p
        .target
        .as_deref()
        .expect("kind is Dir")
        .trim_end_matches('/');
    if p.subdir
        .as_deref()
        .is_some_and(|s| !s.trim_matches('/').is_empty())
    {
        return Err(StepError::new(format!(
            "{} is an archive; `subdir` picks a path inside a directory snapshot only",
            chosen.name
        ))
        .param("subdir"));
    }
    let current = match scan(host, target) {
        Ok(size) => Some(size),
        Err(HostError::NotFound(_)) => None,
        Err(e) => {
            return Err(StepError::new(format!(
                "cannot read {target}: {}",
                e.text()
            )));
        }
    };
    if current.is_some()
        && host
            .mount_point(target)
            .map_err(|e| StepError::new(format!("cannot stat {target}: {}", e.text())))?
    {
        return Err(StepError::new(format!(
            "{target} is a mount point and {} an archive: restoring an archive into a volume is not supported yet",
            chosen.name
        ))
        .hint("restore into a directory on the volume, or from a directory snapshot"));
    }
    let mut plan = plan.summary(format!(
        "unpack {src} ({}, {}) into {target}",
        human_bytes(chosen.size),
        match format {
            ArchiveFormat::TarZst => "tar.zst",
            ArchiveFormat::TarGz => "tar.gz",
            ArchiveFormat::Tar => "tar",
        }
    ));
    match current {
        Some((cur_files, cur_bytes, _)) => {
            let beside = format!("{target}.restore-{}", chosen.name);
            plan = plan
                .summary(format!(
                    "the current {target} ({}, {}) is kept in the trash until the run commits",
                    files_text(cur_files),
                    human_bytes(cur_bytes)
                ))
                .extract(src, &beside, format, "unpack the archive beside the target")
                .swap(target, &beside, "swap the whole copy into place")
                .remove(
                    &beside,
                    "the data from before the restore, kept until the run commits",
                );
        }
        None => {
            plan = plan.extract(
                src,
                target,
                format,
                "the target does not exist: unpack there",
            );
        }
    }
    Ok(plan)
}

/// Files and bytes under `root` and the names directly in it (mend's own
/// `.mend-*` folders left out), by one walk.
fn scan(host: &dyn Host, root: &str) -> Result<(u64, u64, Vec<String>), HostError> {
    let prefix = format!("{}/", root.trim_end_matches('/'));
    let (mut files, mut bytes, mut top) = (0u64, 0u64, Vec::new());
    host.walk(root, &mut |e| {
        let Some(rel) = e.path.strip_prefix(&prefix) else {
            return;
        };
        if rel.starts_with(".mend-") {
            return;
        }
        if !rel.contains('/') {
            top.push(rel.to_string());
        }
        if e.kind == EntryKind::File {
            files += 1;
            bytes += e.size;
        }
    })?;
    Ok((files, bytes, top))
}

/// The restored directory against the snapshot it came from: owners too.
fn verify_dir(cx: &Context, p: &Params, host: &dyn Host) -> Result<Vec<Check>, StepError> {
    let target = p
        .target
        .as_deref()
        .unwrap_or_default()
        .trim_end_matches('/');
    let label = p
        .label
        .clone()
        .unwrap_or_else(|| last_component(target).to_string());
    let all = choose::list(host, &p.from, Kind::Dir)?;
    let listing = choose::by_label(all, &label).chosen_from;
    let chosen = choose::pick(cx.now, &listing, p)?;
    if chosen.archive.is_some() {
        // Unpacked by the host, entry by entry, as the archive says.
        return Ok(Vec::new());
    }
    let mut src = format!("{}/{}", p.from.trim_end_matches('/'), chosen.name);
    if let Some(sub) = p
        .subdir
        .as_deref()
        .filter(|s| !s.trim_matches('/').is_empty())
    {
        src = format!("{src}/{}", sub.trim_matches('/'));
    }
    let diff = host
        .compare(&src, target, 10)
        .map_err(|e| StepError::new(format!("cannot compare {target} with {src}: {}", e.text())))?;
    Ok(vec![Check {
        name: format!(
            "{target} matches {src}: every entry's type, mode, owner, group, size, time and link target"
        ),
        ok: diff.is_empty(),
        detail: diff.join("; "),
    }])
}

mend_sdk::export_step!(Restore);

#[cfg(test)]
mod tests;
