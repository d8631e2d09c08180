//! `std:release`: install a release tarball over the running one, whole or
//! not at all.
//!
//! The archive is unpacked beside the current release (`CURRENT.release-NAME`),
//! never over it. The paths named in `carry` (the config, the uploads that
//! live inside the tree) are moved from the current release into the new
//! one, then the two directories are swapped in one atomic exchange, and the
//! old release goes to the trash, where it stays until the run commits. A
//! `migrate` command runs last, in the new release. On any failure (here or
//! in a later step, such as a health check) the run rolls back in reverse:
//! migrations undone by their `undo` command, the old release swapped back,
//! the carried paths moved home.
//!
//! Put `std:checksum-verify` before it (a release that does not match its
//! sum changes nothing) and `std:service` around it.

use mend_sdk::prelude::*;

/// The runbook's `with` table.
#[derive(Params, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// GRANT/path of the release tarball
    archive: String,
    /// GRANT/path of the live release directory
    current: String,
    /// the directory inside the archive that holds the release ("" for its top)
    #[serde(default)]
    #[param(default = "")]
    root: String,
    /// tar, tar.gz or tar.zst (default: from the archive's name)
    format: Option<String>,
    /// paths inside the current release to move into the new one (config, uploads)
    #[serde(default)]
    carry: Vec<String>,
    /// { command, args = [...], undo = [...] }: run in the new release after the swap
    #[param(kind = "table")]
    migrate: Option<Migrate>,
}

/// `migrate = { command = "NAME", args = [...], undo = [...] }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Migrate {
    /// The runbook's name for the command.
    command: String,
    /// Its arguments.
    #[serde(default)]
    args: Vec<String>,
    /// The same command's arguments that undo the migration, if any.
    undo: Option<Vec<String>>,
}

/// The step.
pub struct Release;

impl Step for Release {
    type Params = Params;
    const SUMMARY: &'static str = "Install a release tarball beside the current release, carry its data over, swap it in whole, migrate";

    fn plan(_cx: &Context, p: Params, host: &dyn Host) -> Result<Plan, StepError> {
        let archive = p.archive.trim_end_matches('/');
        let current = p.current.trim_end_matches('/');
        let (name, guessed) = split_name(archive);
        let format = match p.format.as_deref() {
            Some(f) => parse_format(f).ok_or_else(|| {
                StepError::new(format!("`format` is {f:?}"))
                    .hint("use \"tar\", \"tar.gz\" or \"tar.zst\"")
                    .param("format")
            })?,
            None => guessed.ok_or_else(|| {
                StepError::new(format!(
                    "cannot tell how {archive} is compressed from its name"
                ))
                .hint("set `format` to \"tar\", \"tar.gz\" or \"tar.zst\"")
                .param("format")
            })?,
        };
        let tarball = match host.stat(archive) {
            Ok(e) if e.kind == EntryKind::File => e,
            Ok(_) => {
                return Err(StepError::new(format!("{archive} is not a file")).param("archive"));
            }
            Err(e) => {
                return Err(
                    StepError::new(format!("cannot read the release: {}", e.text()))
                        .param("archive"),
                );
            }
        };
        let Some((parent, _)) = current.rsplit_once('/') else {
            return Err(StepError::new(format!(
                "current `{current}` is a whole grant; grant its parent directory and name the release directory inside it"
            ))
            .param("current"));
        };
        let live = match host.stat(current) {
            Ok(e) if e.kind == EntryKind::Dir => true,
            Ok(_) => {
                return Err(StepError::new(format!(
                    "{current} is not a directory (a symlink-style layout is not supported yet)"
                ))
                .param("current"));
            }
            Err(HostError::NotFound(_)) => false,
            Err(e) => return Err(StepError::new(e.text()).param("current")),
        };
        let staging = format!("{current}.release-{name}");
        if host.stat(&staging).is_ok() {
            return Err(StepError::new(format!(
                "{staging} already exists, left by an earlier attempt"
            ))
            .hint(format!(
                "look inside; remove it, then run again: rm -r {staging}"
            ))
            .param("current"));
        }
        let new = match p.root.trim_matches('/') {
            "" => staging.clone(),
            root => format!("{staging}/{root}"),
        };
        let space = host.free_space(parent).map_err(|e| {
            StepError::new(format!(
                "cannot see the free space at {parent}: {}",
                e.text()
            ))
        })?;
        let need = tarball.size + copy_headroom(tarball.size);
        if space.available < need {
            return Err(StepError::new(format!(
                "not enough space to unpack {archive} beside {current}: it needs at least {} ({} and {} headroom), {} is free",
                human_bytes(need),
                human_bytes(tarball.size),
                human_bytes(copy_headroom(tarball.size)),
                human_bytes(space.available)
            ))
            .hint("free that much there first; nothing was unpacked"));
        }

        let mut plan = Plan::builder()
            .summary(format!(
                "release {name}: unpack {archive} ({}, {}) beside {current}: needs at least {} with headroom, {} free there",
                human_bytes(tarball.size),
                format_name(format),
                human_bytes(need),
                human_bytes(space.available)
            ))
            .fact("release.archive.bytes", tarball.size.to_string())
            .fact("release.archive.mtime", tarball.mtime.to_string())
            .extract(
                archive,
                &staging,
                format,
                "unpack the release beside the live one",
            );

        if live {
            let mut carried = Vec::new();
            for rel in &p.carry {
                let rel = clean_relative(rel)?;
                let from = format!("{current}/{rel}");
                if let Err(e) = host.stat(&from) {
                    return Err(StepError::new(format!(
                        "{from} does not exist, so the new release would start without it: {}",
                        e.text()
                    ))
                    .hint("fix `carry`, or find where that data went before upgrading")
                    .param("carry"));
                }
                plan = plan.rename(
                    &from,
                    &format!("{new}/{rel}"),
                    "carry into the new release (moved, not copied)",
                );
                carried.push(rel);
            }
            if !carried.is_empty() {
                plan = plan.summary(format!(
                    "carry {} from the current release (moved, not copied)",
                    carried.join(", ")
                ));
            }
            plan = plan
                .swap(current, &new, "swap the new release into place in one step")
                .remove(&staging, "the release from before, kept until the run commits")
                .summary(format!(
                    "the release now in {current} is kept in the trash until the run commits; a rollback swaps it back"
                ));
        } else {
            if !p.carry.is_empty() {
                return Err(StepError::new(format!(
                    "{current} does not exist, so there is nothing to carry"
                ))
                .hint("for a first install, leave `carry` empty")
                .param("carry"));
            }
            plan = plan.summary(format!("{current} does not exist: a first install"));
            plan = if new == staging {
                plan.rename(&staging, current, "put the release in place")
            } else {
                plan.rename(&new, current, "put the release in place")
                    .remove(&staging, "what else the archive held")
            };
        }

        if let Some(m) = &p.migrate {
            let args: Vec<&str> = m.args.iter().map(String::as_str).collect();
            let shown = std::iter::once(m.command.as_str())
                .chain(args.iter().copied())
                .collect::<Vec<_>>()
                .join(" ");
            plan = match &m.undo {
                Some(undo) => {
                    let undo: Vec<&str> = undo.iter().map(String::as_str).collect();
                    plan.summary(format!("migrate: {shown} (undone by {} {})", m.command, undo.join(" ")))
                        .exec(&m.command, &args, Some((&m.command, &undo)), "migrate to the new release")
                }
                None => plan
                    .summary(format!(
                        "migrate: {shown}; IRREVERSIBLE: a rollback puts the old release back but not the old schema (restore the snapshot for that)"
                    ))
                    .exec(&m.command, &args, None, "migrate to the new release"),
            };
        }
        Ok(plan.check(format!("{current} is a directory")).build())
    }

    fn verify(_cx: &Context, p: Params, host: &dyn Host) -> Result<Vec<Check>, StepError> {
        let current = p.current.trim_end_matches('/');
        let (ok, detail) = match host.stat(current) {
            Ok(e) if e.kind == EntryKind::Dir => (true, String::new()),
            Ok(_) => (false, "not a directory".to_string()),
            Err(e) => (false, e.text()),
        };
        Ok(vec![Check {
            name: format!("{current} is a directory"),
            ok,
            detail,
        }])
    }
}

/// The release's name (the file name without its archive extension) and
/// the format its extension says.
fn split_name(archive: &str) -> (&str, Option<ArchiveFormat>) {
    let file = archive.rsplit('/').next().unwrap_or(archive);
    for (ext, format) in [
        (".tar.gz", ArchiveFormat::TarGz),
        (".tgz", ArchiveFormat::TarGz),
        (".tar.zst", ArchiveFormat::TarZst),
        (".tzst", ArchiveFormat::TarZst),
        (".tar", ArchiveFormat::Tar),
    ] {
        if let Some(stem) = file.strip_suffix(ext) {
            return (stem, Some(format));
        }
    }
    (file, None)
}

fn parse_format(text: &str) -> Option<ArchiveFormat> {
    match text {
        "tar" => Some(ArchiveFormat::Tar),
        "tar.gz" | "tgz" => Some(ArchiveFormat::TarGz),
        "tar.zst" | "tzst" => Some(ArchiveFormat::TarZst),
        _ => None,
    }
}

fn format_name(format: ArchiveFormat) -> &'static str {
    match format {
        ArchiveFormat::Tar => "tar",
        ArchiveFormat::TarGz => "tar.gz",
        ArchiveFormat::TarZst => "tar.zst",
    }
}

/// A `carry` entry as a plain relative path.
fn clean_relative(rel: &str) -> Result<String, StepError> {
    let trimmed = rel.trim_matches('/');
    if trimmed.is_empty()
        || rel.starts_with('/')
        || trimmed
            .split('/')
            .any(|c| c == ".." || c == "." || c.is_empty())
    {
        return Err(StepError::new(format!(
            "carry entry {rel:?} is not a path inside the release"
        ))
        .hint("write it relative to the release, e.g. \".env.production\" or \"public/system\"")
        .param("carry"));
    }
    Ok(trimmed.to_string())
}

mend_sdk::export_step!(Release);

#[cfg(test)]
mod tests;
