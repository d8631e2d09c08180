//! `std:archive-cleanup`: clean a PostgreSQL WAL archive as PostgreSQL 15's
//! `pg_archivecleanup ARCHIVE OLDESTKEPTWALFILE` does. Every WAL segment
//! (plain or `.partial`) whose log and segment numbers precede the oldest
//! segment kept is removed; the timeline is ignored, so a parent timeline's
//! segments stay. Timeline `.history` files, backup history `.backup` files and
//! anything else that is not a segment name are kept.
//!
//! The oldest segment kept is `oldest_kept` (a segment, `.partial` or `.backup`
//! file name, as pg_archivecleanup's argument) or else the one that the newest
//! `.backup` file in the archive names. Supersets of pg_archivecleanup: several
//! `extension`s at once, and `keep_days`. Only the archive's own entries count:
//! subdirectories are skipped, symlinks are names like any other. The archive
//! is listed, not walked: only the segments that go are stat'ed.

use mend_sdk::prelude::*;
use serde::de::{Deserializer, Error as _};

/// The runbook's `with` table.
#[derive(Params, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// GRANT/dir: the WAL archive
    path: String,
    /// oldest WAL file to keep, or a .backup file; default: the newest .backup
    oldest_kept: Option<String>,
    /// extension(s) of compressed files, e.g. ".gz"
    ///
    /// Stripped from names before reading them, as `-x`.
    #[serde(default, deserialize_with = "one_or_many")]
    #[param(kind = "any")]
    extension: Vec<String>,
    /// also keep files modified within this many days
    keep_days: Option<i64>,
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    match OneOrMany::deserialize(d) {
        Ok(OneOrMany::One(e)) => Ok(vec![e]),
        Ok(OneOrMany::Many(es)) => Ok(es),
        Err(_) => Err(D::Error::custom(
            "`extension` must be a string like \".gz\" or a list of them",
        )),
    }
}

/// The step.
pub struct ArchiveCleanup;

struct Archived {
    path: String,
    name: String,
}

/// `XLOG_FNAME_LEN`: timeline, log and segment, 8 hex digits each.
const SEGMENT_LEN: usize = 24;

impl Step for ArchiveCleanup {
    type Params = Params;
    const SUMMARY: &'static str =
        "Remove WAL segments older than the oldest one needed, as pg_archivecleanup";

    fn plan(_cx: &Context, p: Params, host: &dyn Host) -> Result<Plan, StepError> {
        if let Some(e) = p
            .extension
            .iter()
            .find(|e| e.len() < 2 || !e.starts_with('.'))
        {
            return Err(
                StepError::new(format!("extension {e:?} does not start with a dot"))
                    .hint("write it as the file names end: \".gz\", or [\".gz\", \".zst\"]")
                    .param("extension"),
            );
        }
        if p.keep_days.is_some_and(|d| d < 0) {
            return Err(StepError::new("`keep_days` is negative").param("keep_days"));
        }
        let exts = &p.extension;
        let root = p.path.trim_end_matches('/');
        // Given the oldest segment kept, each entry is decided as the walk
        // reads it, and its removal is handed over at once: the host
        // removes while the walk goes on, as pg_archivecleanup removes as
        // it reads. Otherwise the newest .backup must be found first.
        let given = p
            .oldest_kept
            .as_deref()
            .map(|g| cut_given(g, exts))
            .transpose()?;
        let young_since = p
            .keep_days
            .map(|d| host.now().saturating_sub(d.saturating_mul(86_400)));
        let mut tally = Tally::default();
        let mut plan = Plan::builder();
        let mut files = Vec::new();
        let mut failed = None;
        let reason = given.as_ref().map(|(cut, _)| format!("precedes {cut}"));
        // The archive's own entries, by name, as pg_archivecleanup reads
        // them: a listing stats nothing, and only the segments before the
        // cut are stat'ed (their size for the summary, their time for
        // keep_days), not the thousands that stay.
        host.list(root, &mut |e| {
            if failed.is_some() || matches!(e.kind, EntryKind::Dir) {
                return;
            }
            let Some(name) = e.path.strip_prefix(root).and_then(|r| r.strip_prefix('/')) else {
                return;
            };
            match (&given, &reason) {
                (Some((cut, _)), Some(reason)) => {
                    match tally.old(trim(name, exts), &e.path, cut, young_since, host) {
                        Ok(true) => plan = std::mem::take(&mut plan).remove(&e.path, reason),
                        Ok(false) => {}
                        Err(err) => failed = Some(err),
                    }
                }
                _ => files.push(Archived {
                    name: name.to_string(),
                    path: e.path,
                }),
            }
        })
        .map_err(|e| StepError::from(e).param("path"))?;
        if let Some(e) = failed {
            return Err(StepError::from(e).param("path"));
        }

        let (cut, why) = match given {
            Some(given) => given,
            None => {
                let newest = files
                    .iter()
                    .map(|f| (trim(&f.name, exts), &f.name))
                    .filter(|(t, _)| is_backup(t))
                    .max_by_key(|&(t, name)| (position(t), t, name));
                let Some((backup, name)) = newest else {
                    return Err(StepError::new(format!(
                        "no backup history file (*.backup) in {root}: \
                         cannot tell which WAL the newest base backup needs"
                    ))
                    .hint(
                        "set `oldest_kept` to the oldest WAL file to keep (the .backup file \
                         of the base backup you would restore), or check that `path` is the \
                         WAL archive",
                    )
                    .param("oldest_kept"));
                };
                let cut = backup[..SEGMENT_LEN].to_string();
                let why = format!("from {name}, the newest base backup");
                let mut old: Vec<&Archived> = Vec::new();
                for f in &files {
                    let name = trim(&f.name, exts);
                    if tally
                        .old(name, &f.path, &cut, young_since, host)
                        .map_err(|e| StepError::from(e).param("path"))?
                    {
                        old.push(f);
                    }
                }
                old.sort_by_key(|f| (position(trim(&f.name, exts)), &f.name));
                let reason = format!("precedes {cut}");
                for f in old {
                    plan = plan.remove(&f.path, &reason);
                }
                (cut, why)
            }
        };

        let Tally {
            later,
            young,
            young_bytes,
            other,
            old,
            bytes,
        } = tally;
        let mut kept = format!("kept: {later} segments from {cut} on");
        if let Some(d) = p.keep_days {
            kept += &format!(", {young} older ones modified within {d} days");
        }
        kept += &format!(", {other} files that are not segments (.history, .backup, others)");
        plan = plan
            .summary(format!("oldest segment kept: {cut}, {why}"))
            .summary(format!("to remove: {old} segments, {}", human_bytes(bytes)))
            .summary(kept);
        // What the margin costs: on a full disk the operator must see that
        // the segments keep_days holds are what would free it.
        if let Some(d) = p.keep_days.filter(|_| young > 0) {
            plan = plan.summary(format!(
                "keep_days = {d} keeps {young} segments ({}) that the newest base backup does not need; keep_days = 0 would free them too",
                human_bytes(young_bytes)
            ));
        }
        Ok(plan.build())
    }
}

/// The oldest segment kept as `oldest_kept` gives it (a segment, its
/// `.partial`, or a `.backup` file), and why.
fn cut_given(given: &str, exts: &[String]) -> Result<(String, String), StepError> {
    let trimmed = trim(given, exts);
    if !is_segment(trimmed) && !is_backup(trimmed) {
        return Err(
            StepError::new(format!("`oldest_kept` is not a WAL file name: {given:?}"))
                .hint(
                    "give a segment like 000000010000000000000010 (24 upper-case hex \
             digits), its .partial, or a .backup file like \
             000000010000000000000010.00000020.backup",
                )
                .param("oldest_kept"),
        );
    }
    let cut = &trimmed[..SEGMENT_LEN];
    let why = if cut == given {
        "as `oldest_kept` says".to_string()
    } else {
        format!("from {given}, as `oldest_kept` says")
    };
    Ok((cut.to_string(), why))
}

/// What the plan keeps and removes, counted as entries are decided.
#[derive(Default)]
struct Tally {
    later: u64,
    young: u64,
    young_bytes: u64,
    other: u64,
    old: u64,
    bytes: u64,
}

impl Tally {
    /// Whether the file at `path`, named `name` (extension trimmed), goes,
    /// counting it. Only a segment before the cut is stat'ed.
    fn old(
        &mut self,
        name: &str,
        path: &str,
        cut: &str,
        young_since: Option<i64>,
        host: &dyn Host,
    ) -> Result<bool, HostError> {
        if !is_segment(name) {
            self.other += 1;
            return Ok(false);
        }
        if position(name) >= position(cut) {
            self.later += 1;
            return Ok(false);
        }
        let e = match host.stat(path) {
            Ok(e) => e,
            // Gone since it was listed (another cleanup at the same time):
            // nothing left to remove.
            Err(HostError::NotFound(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        if young_since.is_some_and(|since| e.mtime >= since) {
            self.young += 1;
            self.young_bytes += e.size;
            return Ok(false);
        }
        self.old += 1;
        self.bytes += e.size;
        Ok(true)
    }
}

/// `strspn(name, "0123456789ABCDEF")`: PostgreSQL names WAL in upper-case hex.
fn hex_prefix(name: &str) -> usize {
    name.bytes()
        .take_while(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F'))
        .count()
}

/// `IsXLogFileName(name) || IsPartialXLogFileName(name)`.
fn is_segment(name: &str) -> bool {
    hex_prefix(name) == SEGMENT_LEN
        && (name.len() == SEGMENT_LEN || &name[SEGMENT_LEN..] == ".partial")
}

/// `IsBackupHistoryFileName(name)`, and what the `"%08X%08X%08X.%08X.backup"`
/// scan of pg_archivecleanup's argument then needs: a dot and a hex digit.
fn is_backup(name: &str) -> bool {
    hex_prefix(name) == SEGMENT_LEN
        && name.ends_with(".backup")
        && name[SEGMENT_LEN..].starts_with('.')
        && name
            .as_bytes()
            .get(SEGMENT_LEN + 1)
            .is_some_and(u8::is_ascii_hexdigit)
}

/// Log and segment numbers, without the timeline: `strcmp(walfile + 8, ...)`.
/// (A `.partial` name sorts after its plain segment there, so comparing these
/// 16 characters alone decides the same.)
fn position(name: &str) -> &str {
    &name[8..SEGMENT_LEN]
}

/// `TrimExtension`: strip one extension, the longest that matches, if the name
/// is longer than it.
fn trim<'a>(name: &'a str, extensions: &[String]) -> &'a str {
    extensions
        .iter()
        .filter(|e| name.len() > e.len() && name.ends_with(e.as_str()))
        .map(|e| &name[..name.len() - e.len()])
        .min_by_key(|t| t.len())
        .unwrap_or(name)
}

mend_sdk::export_step!(ArchiveCleanup);

#[cfg(test)]
mod tests {
    use super::*;
    use mend_sdk::testing::{self, FakeHost, plan};
    use serde_json::{Value, json};

    const NOW: i64 = 1_700_000_000;
    const DAY: i64 = 86_400;
    const MB16: u64 = 16 << 20;

    /// An archive grant `pg` holding these names, 16 MiB each, 30 days old.
    fn archive(names: &[&str]) -> FakeHost {
        names.iter().fold(
            FakeHost::new(NOW)
                .grant("pg", Access::Write)
                .dir("pg/wal", NOW),
            |h, n| h.file(&format!("pg/wal/{n}"), MB16, NOW - 30 * DAY),
        )
    }

    /// The names the plan removes (it only removes), sorted.
    fn removed(host: &FakeHost, params: Value) -> Vec<String> {
        let p = plan::<ArchiveCleanup>(host, params).unwrap();
        let mut names: Vec<String> = testing::removed(&p)
            .iter()
            .map(|path| path.strip_prefix("pg/wal/").unwrap().to_string())
            .collect();
        names.sort();
        names
    }

    fn error(host: &FakeHost, params: Value) -> StepError {
        plan::<ArchiveCleanup>(host, params).unwrap_err()
    }

    #[test]
    fn orders_across_log_boundaries() {
        let host = archive(&[
            "0000000100000000000000FE",
            "0000000100000000000000FF",
            "000000010000000100000000",
            "0000000100000001000000FF",
            "000000010000000200000000",
        ]);
        let keep = |k: &str| removed(&host, json!({"path": "pg/wal", "oldest_kept": k}));
        assert_eq!(
            keep("000000010000000100000000"),
            ["0000000100000000000000FE", "0000000100000000000000FF"]
        );
        assert_eq!(
            keep("000000010000000200000000"),
            [
                "0000000100000000000000FE",
                "0000000100000000000000FF",
                "000000010000000100000000",
                "0000000100000001000000FF"
            ]
        );
    }

    #[test]
    fn ignores_the_timeline() {
        let host = archive(&[
            "00000001000000000000000F",
            "000000010000000000000010",
            "00000003000000000000000F",
            "000000020000000000000011",
        ]);
        // Keeping TL2's segment 0x10 keeps TL1's too, and drops TL3's 0x0F.
        let gone = removed(
            &host,
            json!({"path": "pg/wal", "oldest_kept": "000000020000000000000010"}),
        );
        assert_eq!(
            gone,
            ["00000001000000000000000F", "00000003000000000000000F"]
        );
    }

    #[test]
    fn partial_segments_are_segments() {
        let host = archive(&[
            "00000001000000000000000F.partial",
            "000000010000000000000010.partial",
            "000000020000000000000010",
            "00000001000000000000000F.partial.old",
        ]);
        let gone = removed(
            &host,
            json!({"path": "pg/wal", "oldest_kept": "000000020000000000000010"}),
        );
        assert_eq!(gone, ["00000001000000000000000F.partial"]);
        // A .partial argument stands for its segment.
        let gone = removed(
            &host,
            json!({"path": "pg/wal", "oldest_kept": "000000010000000000000010.partial"}),
        );
        assert_eq!(gone, ["00000001000000000000000F.partial"]);
    }

    #[test]
    fn keeps_history_backup_and_other_names() {
        let host = archive(&[
            "00000002.history",
            "000000010000000000000001.00000028.backup",
            "000000010000000000000001",
            "00000001000000000000000f",
            "00000001000000000000000F.tmp",
            "RECOVERYHISTORY",
        ])
        .dir("pg/wal/000000010000000000000002", NOW - 30 * DAY)
        .file(
            "pg/wal/000000010000000000000002/000000010000000000000003",
            1,
            0,
        )
        .symlink("pg/wal/000000010000000000000004", "/elsewhere");
        let p = plan::<ArchiveCleanup>(
            &host,
            json!({"path": "pg/wal/", "oldest_kept": "000000010000000000000010"}),
        )
        .unwrap();
        let paths = testing::removed(&p);
        let gone: Vec<_> = paths
            .iter()
            .map(String::as_str)
            .zip(p.actions.iter().map(|a| a.reason.as_str()))
            .collect();
        // The symlink goes as a name; the subdirectory and what it holds stay.
        let why = "precedes 000000010000000000000010";
        assert_eq!(
            gone,
            [
                ("pg/wal/000000010000000000000001", why),
                ("pg/wal/000000010000000000000004", why)
            ]
        );
        assert_eq!(
            p.summary,
            [
                "oldest segment kept: 000000010000000000000010, as `oldest_kept` says",
                "to remove: 2 segments, 16.8 MB",
                "kept: 0 segments from 000000010000000000000010 on, \
                 5 files that are not segments (.history, .backup, others)",
            ]
        );
    }

    #[test]
    fn picks_the_newest_backup_by_position() {
        let host = archive(&[
            "00000001000000000000000E",
            "00000001000000000000000F",
            "000000010000000000000010",
            "000000010000000000000011",
            // Newest by position, though an older timeline and mtime.
            "000000010000000000000010.00000060.backup",
            "000000010000000000000010.00000020.backup",
            "000000030000000000000008.00000028.backup",
        ])
        .file(
            "pg/wal/00000003000000000000000F.00000028.backup",
            300,
            NOW - DAY,
        );
        let p = plan::<ArchiveCleanup>(&host, json!({"path": "pg/wal"})).unwrap();
        assert_eq!(
            p.summary[0],
            "oldest segment kept: 000000010000000000000010, \
             from 000000010000000000000010.00000060.backup, the newest base backup"
        );
        assert_eq!(
            removed(&host, json!({"path": "pg/wal"})),
            ["00000001000000000000000E", "00000001000000000000000F"]
        );
        // Only a .backup file given as `oldest_kept` says so.
        let p = plan::<ArchiveCleanup>(
            &host,
            json!({"path": "pg/wal", "oldest_kept": "00000003000000000000000F.00000028.backup"}),
        )
        .unwrap();
        assert_eq!(p.actions.len(), 1);
        assert!(
            p.summary[0]
                .ends_with("from 00000003000000000000000F.00000028.backup, as `oldest_kept` says")
        );
    }

    #[test]
    fn strips_extensions() {
        let host = archive(&[
            "000000010000000000000001",
            "000000010000000000000002.gz",
            "000000010000000000000003.zst",
            "000000010000000000000004.partial.gz",
            "000000010000000000000005.gz.gz",
            "000000010000000000000006.00000028.backup.gz",
            "000000010000000000000009.gz",
        ]);
        let gz = removed(
            &host,
            json!({"path": "pg/wal", "oldest_kept": "000000010000000000000009.gz", "extension": ".gz"}),
        );
        assert_eq!(
            gz,
            [
                "000000010000000000000001",
                "000000010000000000000002.gz",
                "000000010000000000000004.partial.gz"
            ]
        );
        // Several at once; the newest .backup found through its extension too.
        let both = removed(
            &host,
            json!({"path": "pg/wal", "extension": [".gz", ".zst"]}),
        );
        assert_eq!(
            both,
            [
                "000000010000000000000001",
                "000000010000000000000002.gz",
                "000000010000000000000003.zst",
                "000000010000000000000004.partial.gz"
            ]
        );
        let e = error(&host, json!({"path": "pg/wal", "extension": "gz"}));
        assert_eq!(e.param.as_deref(), Some("extension"));
        let e = error(&host, json!({"path": "pg/wal", "extension": 3}));
        assert_eq!(e.param.as_deref(), Some("extension"));
    }

    #[test]
    fn keep_days_keeps_young_segments() {
        let host = archive(&["000000010000000000000001"])
            .file("pg/wal/000000010000000000000002", 100, NOW - 7 * DAY)
            .file("pg/wal/000000010000000000000003", 100, NOW - DAY)
            .file("pg/wal/000000010000000000000004", 100, NOW - 40 * DAY);
        let params =
            json!({"path": "pg/wal", "oldest_kept": "000000010000000000000004", "keep_days": 7});
        assert_eq!(removed(&host, params.clone()), ["000000010000000000000001"]);
        let p = plan::<ArchiveCleanup>(&host, params).unwrap();
        assert_eq!(
            p.summary[2],
            "kept: 1 segments from 000000010000000000000004 on, \
             2 older ones modified within 7 days, \
             0 files that are not segments (.history, .backup, others)"
        );
        assert_eq!(
            p.summary[3],
            "keep_days = 7 keeps 2 segments (200 B) that the newest base backup does not need; \
             keep_days = 0 would free them too"
        );
    }

    #[test]
    fn refuses_without_a_backup_or_with_a_bad_name() {
        let host = archive(&["000000010000000000000001", "00000002.history"]);
        let e = error(&host, json!({"path": "pg/wal"}));
        assert!(
            e.message.contains("no backup history file"),
            "{}",
            e.message
        );
        assert!(e.hint.unwrap().contains("oldest_kept"));
        for bad in [
            "00000001000000000000000a",
            "00000002.history",
            "000000010000000000000010.zz.backup",
        ] {
            let e = error(&host, json!({"path": "pg/wal", "oldest_kept": bad}));
            assert_eq!(e.param.as_deref(), Some("oldest_kept"), "{bad}");
        }
        let e = error(
            &host,
            json!({"path": "pg/nowhere", "oldest_kept": "000000010000000000000001"}),
        );
        assert_eq!(e.param.as_deref(), Some("path"));
    }

    /// What `pg_archivecleanup -n` (PostgreSQL 15.18) printed for this archive.
    #[test]
    fn matches_pg_archivecleanup_15() {
        let host = archive(&[
            "0000000100000000000000FE",
            "0000000100000000000000FF",
            "000000010000000100000000",
            "000000010000000100000001",
            "000000020000000100000001",
            "000000020000000100000002",
            "000000020000000100000003",
            "000000010000000100000002.partial",
            "000000010000000100000003.partial",
            "000000010000000100000000.gz",
            "000000020000000100000001.zst",
            "0000000100000001000000FF.partial.gz",
            "00000002.history",
            "000000010000000100000000.00000028.backup",
            "000000020000000100000002.00000060.backup",
            "0000000100000000000000fe",
            "RECOVERYHISTORY",
            "000000010000000000000001.tmp",
            "000000010000000000000001.gz.gz",
        ])
        .symlink("pg/wal/000000010000000000000002", "/nonexistent");
        let plain = [
            "000000010000000000000002",
            "0000000100000000000000FE",
            "0000000100000000000000FF",
            "000000010000000100000000",
            "000000010000000100000001",
            "000000020000000100000001",
        ];
        // pg_archivecleanup -n ARCHIVE 000000020000000100000002.00000060.backup
        assert_eq!(
            removed(
                &host,
                json!({"path": "pg/wal", "oldest_kept": "000000020000000100000002.00000060.backup"})
            ),
            plain
        );
        // The same, found by the step itself.
        assert_eq!(removed(&host, json!({"path": "pg/wal"})), plain);
        // pg_archivecleanup -n -x .gz ARCHIVE 000000010000000100000002
        let mut gz = plain.to_vec();
        gz.push("000000010000000100000000.gz");
        gz.sort();
        assert_eq!(
            removed(
                &host,
                json!({"path": "pg/wal", "oldest_kept": "000000010000000100000002", "extension": ".gz"})
            ),
            gz
        );
        // pg_archivecleanup -n -x .zst ARCHIVE 000000010000000100000002.partial
        let mut zst = plain.to_vec();
        zst.push("000000020000000100000001.zst");
        assert_eq!(
            removed(
                &host,
                json!({"path": "pg/wal", "oldest_kept": "000000010000000100000002.partial", "extension": ".zst"})
            ),
            zst
        );
    }

    #[test]
    fn names() {
        assert!(is_segment("000000010000000000000001"));
        assert!(is_segment("000000010000000000000001.partial"));
        assert!(!is_segment("00000001000000000000000a"));
        assert!(!is_segment("0000000100000000000000010"));
        assert!(is_backup("000000010000000000000001.00000028.backup"));
        // pg_archivecleanup's scan reads "bac" as the offset.
        assert!(is_backup("000000010000000000000001.backup"));
        assert!(!is_backup("000000010000000000000001.zz.backup"));
        assert_eq!(
            trim("a.partial.gz", &[".gz".into(), ".partial.gz".into()]),
            "a"
        );
        assert_eq!(trim(".gz", &[".gz".into()]), ".gz");
    }
}
