//! `std:snapshot`: before a risky change, copy a directory into a snapshots
//! grant and dump a database through an allowed command (`pg_dump -Fc`).
//! Space is checked first, by the host, in the plan: the copy's blocks and
//! inodes plus headroom must be free, or the plan refuses and says how much
//! is needed and how much is free. Snapshots
//! are named `LABEL-YYYYMMDDTHHMMSSZ` (UTC, the host's clock), which is how
//! `std:restore` tells their age without trusting list order or mtimes.

use mend_sdk::prelude::*;
use mend_sdk::time::{utc, utc_stamp};

/// The runbook's `with` table.
#[derive(Params, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// GRANT/path of the directory where snapshots go
    into: String,
    /// GRANT/path of a directory to copy
    source: Option<String>,
    /// a database to dump: { name, command = "pg_dump", connect = [...] }
    #[param(kind = "table")]
    database: Option<Database>,
    /// the snapshot name's prefix (default: the source's or database's name)
    label: Option<String>,
    /// dir (a copy of the directory), tar or tar.zst (one archive: owners, modes, times, links and xattrs kept; zstd on every core)
    #[serde(default = "dir")]
    #[param(default = "dir")]
    format: String,
}

fn dir() -> String {
    "dir".into()
}

/// A database to dump with `pg_dump -Fc`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    /// The database's name.
    name: String,
    /// The runbook command that runs pg_dump.
    #[serde(default = "pg_dump")]
    command: String,
    /// Connection arguments put before the others, e.g. `["-h", "/run/postgresql"]`.
    #[serde(default)]
    connect: Vec<String>,
}

fn pg_dump() -> String {
    "pg_dump".into()
}

/// The step.
pub struct Snapshot;

/// `dir` (none), or the archive format and its file extension.
fn format_of(format: &str) -> Result<Option<(ArchiveFormat, &'static str)>, StepError> {
    match format {
        "dir" => Ok(None),
        "tar" => Ok(Some((ArchiveFormat::Tar, ".tar"))),
        "tar.zst" => Ok(Some((ArchiveFormat::TarZst, ".tar.zst"))),
        other => Err(
            StepError::new(format!("format `{other}` is not one of dir, tar, tar.zst"))
                .param("format"),
        ),
    }
}

fn last_component(path: &str) -> &str {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(path)
}

impl Step for Snapshot {
    type Params = Params;
    const SUMMARY: &'static str =
        "Copy a directory and dump a database into a snapshots grant, space checked first";

    /// What the parameters alone say is wrong, for `mend lint`: nothing to
    /// snapshot, an unknown format, a dump command the step may not run.
    fn validate(cx: &Context, p: &Params) -> Vec<StepError> {
        let mut wrong = Vec::new();
        if p.source.is_none() && p.database.is_none() {
            wrong.push(StepError::new(
                "nothing to snapshot: give `source`, `database` or both",
            ));
        }
        if let Err(e) = format_of(&p.format) {
            wrong.push(e);
        }
        if let Some(db) = &p.database
            && !cx.commands.contains(&db.command)
        {
            wrong.push(
                StepError::new(format!(
                    "the step may not run command `{}` to dump database {}",
                    db.command, db.name
                ))
                .hint(format!(
                    "add \"{}\" to the step's `commands` and declare [commands.{}] with its `program` and the `changes` it may make",
                    db.command, db.command
                ))
                .param(if db.command == "pg_dump" { "database" } else { "database.command" }),
            );
        }
        wrong
    }

    fn plan(cx: &Context, p: Params, host: &dyn Host) -> Result<Plan, StepError> {
        let archive = format_of(&p.format)?;
        let stamp = utc_stamp(cx.now);
        let label = p
            .label
            .clone()
            .unwrap_or_else(|| match (&p.source, &p.database) {
                (Some(s), _) => last_component(s).to_string(),
                (None, Some(db)) => db.name.clone(),
                (None, None) => unreachable!(),
            });
        let base = format!("{}/{label}-{stamp}", p.into.trim_end_matches('/'));
        let mut plan = Plan::builder().fact("snapshot.time", utc(cx.now));
        if let Some(source) = &p.source {
            // No walk here: the host counts the tree once, in blocks and
            // inodes, as it checks the space in the plan, and carries that
            // count to the copy (120,000 files walked once, not three times).
            let kind = match host.stat(source) {
                Ok(e) => e.kind,
                Err(e) => {
                    return Err(
                        StepError::new(format!("cannot read {source}: {}", e.text()))
                            .param("source"),
                    );
                }
            };
            if let Some((format, ext)) = archive {
                if kind != EntryKind::Dir {
                    return Err(
                        StepError::new(format!("{source} is not a directory")).param("source")
                    );
                }
                let file = format!("{base}{ext}");
                plan = plan
                    .archive(source, &file, format, "snapshot before the change")
                    .summary(format!(
                        "archive {source} as {file}; the host counts its files and space (in blocks) before anything is written, and journals its sha256"
                    ))
                    .fact("snapshot.archive", &file);
            } else {
                plan = plan
                    .copy(source, &base, "snapshot before the change")
                    .summary(format!(
                        "copy {source} to {base}; the host counts its files and space (in blocks and inodes, with headroom) before anything is written"
                    ))
                    .fact("snapshot.dir", &base);
            }
        }
        if let Some(db) = &p.database {
            let dump = format!("{base}.dump");
            let mut args: Vec<&str> = db.connect.iter().map(String::as_str).collect();
            let out = format!("@{dump}");
            args.extend(["-Fc", "-f", out.as_str(), db.name.as_str()]);
            plan = plan
                .exec_creating(
                    &db.command,
                    &args,
                    &dump,
                    "dump the database before the change",
                )
                .summary(format!(
                    "dump database {} to {dump} ({} -Fc)",
                    db.name, db.command
                ))
                .fact("snapshot.dump", &dump);
        }
        Ok(plan.build())
    }
}

mend_sdk::export_step!(Snapshot);

#[cfg(test)]
mod tests;
