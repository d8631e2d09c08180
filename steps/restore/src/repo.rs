//! Restoring from the backup tools operators already use: a restic
//! repository or a borg repository. Listing is a read (`restic --no-lock
//! --no-cache snapshots --json`, `borg list --bypass-lock --format`, through
//! `probe`, confined read-only); the snapshot is chosen
//! by its own time and tag (never list order: both tools list oldest
//! first), shown with its age and host; restoring is a change, an `exec`
//! the plan shows, into a staging path that is then swapped in whole.
//!
//! restic restores the snapshot's absolute paths below `--target`; the
//! directory wanted is then renamed out of it. borg writes its data to the
//! current directory, so mend asks `borg export-tar` for a tar file and
//! unpacks it itself (owners, modes, times and links kept).

use mend_sdk::prelude::*;
use mend_sdk::time::{human_age, time_in_name, utc};

use crate::choose::{Candidate, FUTURE_SLACK};

/// `restic = { ... }` or `borg = { ... }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Repo {
    /// The runbook command that runs the tool (default `restic` or `borg`).
    command: Option<String>,
    /// The repository, as the tool takes it (`@backups/restic`, a path, a URL).
    repo: String,
    /// The snapshots to choose among: restic's tag, borg's archive label
    /// (`prosody` for `prosody-2026-11-22`). Default: the target's name.
    tag: Option<String>,
    /// The directory inside the snapshot: absolute as restic shows it
    /// (`/var/lib/prosody`), relative as borg stores it (`var/lib/prosody`).
    path: String,
    /// Arguments put first, e.g. `["--password-file", "@secrets/restic.pw"]`.
    #[serde(default)]
    args: Vec<String>,
}

/// Which tool.
#[derive(Clone, Copy, PartialEq)]
pub enum Tool {
    Restic,
    Borg,
}

impl Tool {
    fn word(self) -> &'static str {
        match self {
            Tool::Restic => "restic",
            Tool::Borg => "borg",
        }
    }
}

/// One snapshot of a repository.
struct Snap {
    id: String,
    time: i64,
    host: String,
}

/// RFC 3339, as restic prints times: `2026-11-20T03:00:00.123+01:00`.
fn rfc3339(t: &str) -> Option<i64> {
    let base = time_in_name(t.get(..19)?)?;
    let rest = &t[19..];
    let rest = rest.trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
    let offset = match rest.as_bytes().first() {
        None | Some(b'Z') | Some(b'z') => 0,
        Some(sign @ (b'+' | b'-')) => {
            let h: i64 = rest.get(1..3)?.parse().ok()?;
            let m: i64 = rest.get(4..6)?.parse().ok()?;
            let o = h * 3600 + m * 60;
            if *sign == b'+' { o } else { -o }
        }
        _ => return None,
    };
    Some(base - offset)
}

fn probe(host: &dyn Host, command: &str, args: &[&str]) -> Result<String, StepError> {
    let out = host
        .probe(command, args)
        .map_err(|e| StepError::new(format!("cannot list the repository: {}", e.text())))?;
    if out.status != 0 {
        return Err(StepError::new(format!(
            "`{command} {}` exited with status {}: {}",
            args.join(" "),
            out.status,
            out.stderr.trim()
        )));
    }
    Ok(out.stdout)
}

fn list(
    host: &dyn Host,
    tool: Tool,
    r: &Repo,
    command: &str,
    tag: &str,
) -> Result<(Vec<Snap>, usize), StepError> {
    let mut args: Vec<&str> = r.args.iter().map(String::as_str).collect();
    let mut all = Vec::new();
    match tool {
        Tool::Restic => {
            // A read: no lock file in the repository, no local cache (mend
            // runs reads confined read-only, and a listing must not write).
            args.extend([
                "-r",
                r.repo.as_str(),
                "--no-lock",
                "--no-cache",
                "snapshots",
                "--json",
            ]);
            let text = probe(host, command, &args)?;
            #[derive(Deserialize)]
            struct S {
                time: String,
                id: String,
                #[serde(default)]
                hostname: String,
                #[serde(default)]
                tags: Option<Vec<String>>,
            }
            let list: Vec<S> = serde_json::from_str(&text).map_err(|e| {
                StepError::new(format!(
                    "restic snapshots --json printed something else ({e})"
                ))
            })?;
            for s in list {
                let time = rfc3339(&s.time).ok_or_else(|| {
                    StepError::new(format!(
                        "restic snapshot {}: a time mend cannot read: {}",
                        s.id, s.time
                    ))
                })?;
                let tagged = s.tags.unwrap_or_default().iter().any(|t| t == tag);
                all.push((
                    tagged,
                    Snap {
                        id: s.id,
                        time,
                        host: s.hostname,
                    },
                ));
            }
        }
        Tool::Borg => {
            // Epoch seconds, whatever the time zone borg's listing uses.
            // A read: no lock in the repository (mend runs reads confined
            // read-only). borg's start-up self test writes a temporary file:
            // the runbook sets BORG_SELFTEST=disabled in the command's env.
            args.extend([
                "list",
                "--bypass-lock",
                "--format",
                "{name}{TAB}{time:%s}{TAB}{hostname}{NL}",
                r.repo.as_str(),
            ]);
            let text = probe(host, command, &args)?;
            for line in text.lines().filter(|l| !l.is_empty()) {
                let mut f = line.split('\t');
                let (Some(name), Some(secs)) = (f.next(), f.next()) else {
                    continue;
                };
                let time = secs.trim().parse().map_err(|_| {
                    StepError::new(format!("borg list printed `{line}`, not NAME TAB TIME"))
                })?;
                let label = mend_sdk::time::label_of(name)
                    .map(str::to_string)
                    .unwrap_or_else(|| name.rsplit_once('-').map_or(name, |(l, _)| l).to_string());
                all.push((
                    label == tag,
                    Snap {
                        id: name.to_string(),
                        time,
                        host: f.next().unwrap_or("").to_string(),
                    },
                ));
            }
        }
    }
    let skipped = all.iter().filter(|(t, _)| !t).count();
    let mut mine: Vec<Snap> = all
        .into_iter()
        .filter(|(t, _)| *t)
        .map(|(_, s)| s)
        .collect();
    mine.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| b.id.cmp(&a.id)));
    Ok((mine, skipped))
}

/// Plan a restore of `target` from a repository.
pub fn plan(
    cx: &Context,
    host: &dyn Host,
    mut plan: PlanBuilder,
    tool: Tool,
    r: &Repo,
    target: &str,
    p: &crate::Params,
) -> Result<PlanBuilder, StepError> {
    let command = r.command.clone().unwrap_or_else(|| tool.word().to_string());
    let name = target.rsplit('/').next().unwrap_or(target);
    let tag = r.tag.clone().unwrap_or_else(|| name.to_string());
    let (snaps, skipped) = list(host, tool, r, &command, &tag)?;
    let listing: Vec<Candidate> = snaps
        .iter()
        .map(|s| Candidate {
            name: s.id.clone(),
            time: s.time,
            by: "repository",
            archive: None,
            size: 0,
        })
        .collect();
    let chosen = crate::choose::pick(cx.now, &listing, p).map_err(|e| {
        if listing.is_empty() {
            StepError::new(format!(
                "no {} snapshot tagged `{tag}` in {} ({skipped} of other tags)",
                tool.word(),
                r.repo
            ))
            .hint("set `tag` to the tag (restic) or archive label (borg) the backups carry")
        } else {
            e
        }
    })?;
    let snap = snaps
        .iter()
        .find(|s| s.id == chosen.name)
        .expect("chosen from these");
    plan = plan
        .summary(format!(
            "{} snapshot{} tagged `{tag}` in {} {}, newest first ({skipped} of other tags skipped):",
            snaps.len(),
            if snaps.len() == 1 { "" } else { "s" },
            tool.word(),
            r.repo
        ))
        .fact("restore.snapshot", &snap.id)
        .fact("restore.snapshot.time", utc(snap.time));
    for s in snaps.iter().take(10) {
        plan = plan.summary(format!(
            "  {} {}  taken {}, {}, on {}",
            if s.id == snap.id { "->" } else { "  " },
            if tool == Tool::Restic {
                &s.id[..s.id.len().min(8)]
            } else {
                &s.id
            },
            utc(s.time),
            if s.time - cx.now > FUTURE_SLACK {
                format!("{} IN THE FUTURE", human_age(s.time - cx.now))
            } else {
                format!("{} old", human_age(cx.now - s.time))
            },
            if s.host.is_empty() { "?" } else { &s.host }
        ));
    }
    let short = if tool == Tool::Restic {
        &snap.id[..snap.id.len().min(8)]
    } else {
        snap.id.as_str()
    };
    let parent = target.rsplit_once('/').map_or("", |(p, _)| p);
    let exists = match host.stat(target) {
        Ok(_) => true,
        Err(HostError::NotFound(_)) => false,
        Err(e) => {
            return Err(StepError::new(format!(
                "cannot stat {target}: {}",
                e.text()
            )));
        }
    };
    let beside = format!("{target}.restore-{short}");
    let into = if exists { beside.as_str() } else { target };
    let mut args: Vec<String> = r.args.clone();
    match tool {
        Tool::Restic => {
            let staging = format!("{parent}/.{name}.restic-{short}");
            args.extend([
                "-r".into(),
                r.repo.clone(),
                "restore".into(),
                snap.id.clone(),
                "--target".into(),
                format!("@{staging}"),
                "--include".into(),
                r.path.clone(),
            ]);
            let argv: Vec<&str> = args.iter().map(String::as_str).collect();
            let inner = format!("{staging}/{}", r.path.trim_matches('/'));
            plan = plan
                .exec_creating(
                    &command,
                    &argv,
                    &staging,
                    "restore the snapshot into a staging directory",
                )
                .rename(
                    &inner,
                    into,
                    "the restored directory, whole, beside the target",
                );
            if exists {
                plan = plan
                    .swap(target, &beside, "swap the whole copy into place")
                    .remove(
                        &beside,
                        "the data from before the restore, kept until the run commits",
                    );
            }
            plan = plan.remove(&staging, "what is left of the staging directory");
        }
        Tool::Borg => {
            let tar = format!("{parent}/.{name}.borg-{short}.tar");
            let depth = r
                .path
                .trim_matches('/')
                .split('/')
                .filter(|c| !c.is_empty())
                .count();
            args.extend([
                "export-tar".into(),
                format!("{}::{}", r.repo, snap.id),
                format!("@{tar}"),
                r.path.trim_matches('/').to_string(),
                "--strip-components".into(),
                depth.to_string(),
            ]);
            let argv: Vec<&str> = args.iter().map(String::as_str).collect();
            plan = plan
                .exec_creating(
                    &command,
                    &argv,
                    &tar,
                    "export the archive's directory as a tar file",
                )
                .extract(
                    &tar,
                    into,
                    ArchiveFormat::Tar,
                    "unpack it beside the target (owners, modes, times kept)",
                );
            if exists {
                plan = plan
                    .swap(target, &beside, "swap the whole copy into place")
                    .remove(
                        &beside,
                        "the data from before the restore, kept until the run commits",
                    );
            }
            plan = plan.remove(&tar, "the exported tar file");
        }
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restic_times_with_offsets() {
        assert_eq!(rfc3339("2026-11-22T03:00:00Z"), Some(1_795_316_400));
        assert_eq!(
            rfc3339("2026-11-22T04:00:00.123456789+01:00"),
            Some(1_795_316_400)
        );
        assert_eq!(rfc3339("2026-11-21T22:00:00-05:00"), Some(1_795_316_400));
    }
}
