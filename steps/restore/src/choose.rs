//! Finding the snapshots and choosing one by its own time.

use mend_sdk::prelude::*;
use mend_sdk::time::{human_age, parse_duration, time_in_name, utc};

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
        let wanted = match kind {
            Kind::Dir => e.kind == EntryKind::Dir,
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
                "  {} {:width$}  taken {}, {} old (by its {})",
                if c.name == chosen { "->" } else { "  " },
                c.name,
                utc(c.time),
                human_age(now - c.time),
                c.by
            )
        })
        .chain((listing.len() > 10).then(|| format!("     ... and {} older", listing.len() - 10)))
        .collect()
}
