//! Finding the snapshots and choosing one by its own time.

use mend_sdk::prelude::*;
use mend_sdk::time::{human_age, label_of, parse_duration, time_in_name, utc};

use crate::Params;

/// What a snapshot is.
#[derive(Clone, Copy, PartialEq)]
pub enum Kind {
    /// A directory (a copy, an rsnapshot `daily.N`).
    Dir,
    /// A database dump file, `*.dump`.
    Dump,
}

/// A snapshot and where its time came from.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub name: String,
    pub time: i64,
    /// `name` or `mtime`.
    pub by: &'static str,
    /// An archive file (`.tar.zst`, `.tar`, `.tar.gz`) rather than a directory.
    pub archive: Option<ArchiveFormat>,
    /// Its size, for an archive.
    pub size: u64,
}

/// The format of an archive file, by its name.
pub fn archive_format(name: &str) -> Option<ArchiveFormat> {
    if name.ends_with(".tar.zst") {
        Some(ArchiveFormat::TarZst)
    } else if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
        Some(ArchiveFormat::TarGz)
    } else if name.ends_with(".tar") {
        Some(ArchiveFormat::Tar)
    } else {
        None
    }
}

/// A snapshot dated more than this ahead of the host's clock is in the
/// future: a clock was wrong when it was named.
pub const FUTURE_SLACK: i64 = 300;

/// The snapshots of one label, and those of other labels that were left out.
pub struct Listing {
    /// Newest first.
    pub chosen_from: Vec<Candidate>,
    /// Other labels' snapshots, newest first.
    pub skipped: Vec<Candidate>,
}

/// Keep the snapshots of `label` (and those whose name has no label: an
/// rsnapshot `daily.0`, a bare date); set the others aside.
pub fn by_label(all: Vec<Candidate>, label: &str) -> Listing {
    let (chosen_from, skipped) = all
        .into_iter()
        .partition(|c| label_of(strip_ext(&c.name)).is_none_or(|l| l.is_empty() || l == label));
    Listing {
        chosen_from,
        skipped,
    }
}

/// A name without the extension a dump or an archive has.
fn strip_ext(name: &str) -> &str {
    [".tar.zst", ".tar.gz", ".tar", ".dump"]
        .iter()
        .find_map(|e| name.strip_suffix(e))
        .unwrap_or(name)
}

/// The snapshots directly in `from`, newest first (by time, then name).
pub fn list(host: &dyn Host, from: &str, kind: Kind) -> Result<Vec<Candidate>, StepError> {
    let prefix = format!("{}/", from.trim_end_matches('/'));
    let mut out = Vec::new();
    host.walk(from, &mut |e| {
        let Some(name) = e.path.strip_prefix(&prefix) else {
            return;
        };
        if name.contains('/') || name.starts_with('.') {
            return;
        }
        let archive = (kind == Kind::Dir && e.kind == EntryKind::File)
            .then(|| archive_format(name))
            .flatten();
        let wanted = match kind {
            Kind::Dir => e.kind == EntryKind::Dir || archive.is_some(),
            Kind::Dump => {
                e.kind == EntryKind::File
                    && name.ends_with(".dump")
                    && !name.starts_with("pre-restore-")
            }
        };
        if !wanted {
            return;
        }
        let (time, by) = match time_in_name(name) {
            Some(t) => (t, "name"),
            None => (e.mtime, "mtime"),
        };
        out.push(Candidate {
            name: name.to_string(),
            time,
            by,
            archive,
            size: e.size,
        });
    })
    .map_err(|e| StepError::new(format!("cannot list {from}: {}", e.text())).param("from"))?;
    out.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| b.name.cmp(&a.name)));
    Ok(out)
}

/// The snapshot to restore: the one asked for, or the newest when it is not
/// too old.
pub fn pick(now: i64, listing: &[Candidate], p: &Params) -> Result<Candidate, StepError> {
    let what = match p.database {
        Some(_) => "database dumps (*.dump)",
        None => "snapshot directories",
    };
    let Some(newest) = listing.first() else {
        return Err(
            StepError::new(format!("no {what} in {}; nothing to restore", p.from)).param("from"),
        );
    };
    if let Some(name) = p.snapshot.as_deref().filter(|n| !n.is_empty()) {
        return listing
            .iter()
            .find(|c| c.name == name)
            .cloned()
            .ok_or_else(|| {
                let names: Vec<&str> = listing.iter().take(8).map(|c| c.name.as_str()).collect();
                StepError::new(format!(
                    "there is no snapshot `{name}` in {}; newest first: {}",
                    p.from,
                    names.join(", ")
                ))
                .param("snapshot")
            });
    }
    let ahead = newest.time - now;
    if ahead > FUTURE_SLACK && !p.allow_future {
        return Err(StepError::new(format!(
            "the newest snapshot, {}, is dated {} in the future (taken {} by its {}, the host's clock says {}): a clock was wrong when it was named (local time written as UTC?), or this host's clock is behind; refusing to choose it",
            newest.name,
            human_age(ahead),
            utc(newest.time),
            newest.by,
            utc(now)
        ))
        .hint("compare `date -u` here and where the backup was made; to restore it all the same set allow_future = true, or pick one with snapshot = \"NAME\""));
    }
    if let Some(max) = &p.max_age {
        let limit = parse_duration(max).ok_or_else(|| {
            StepError::new(format!(
                "max_age `{max}` is not a duration like \"36h\" or \"2d\""
            ))
            .param("max_age")
        })?;
        let age = now - newest.time;
        if age > limit && !p.allow_old {
            return Err(StepError::new(format!(
                "the newest snapshot, {}, is {} old (taken {}, by its {}); this runbook refuses snapshots older than {max}",
                newest.name,
                human_age(age),
                utc(newest.time),
                newest.by
            ))
            .hint("if an old one is what you want, set allow_old = true (or pick one with snapshot = \"NAME\")"));
        }
    }
    Ok(newest.clone())
}

/// The candidates as plan lines, the chosen one marked.
pub fn table(now: i64, listing: &[Candidate], chosen: &str) -> Vec<String> {
    let width = listing.iter().map(|c| c.name.len()).max().unwrap_or(0);
    listing
        .iter()
        .take(10)
        .map(|c| {
            format!(
                "  {} {:width$}  taken {}, {} (by its {})",
                if c.name == chosen { "->" } else { "  " },
                c.name,
                utc(c.time),
                age_text(now, c.time),
                c.by
            )
        })
        .chain((listing.len() > 10).then(|| format!("     ... and {} older", listing.len() - 10)))
        .collect()
}

/// `2 h 0 min old`, or `1 h 0 min IN THE FUTURE` for a snapshot dated ahead.
pub fn age_text(now: i64, time: i64) -> String {
    if time - now > FUTURE_SLACK {
        format!("{} IN THE FUTURE", human_age(time - now))
    } else {
        format!("{} old", human_age(now - time))
    }
}
