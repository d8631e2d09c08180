//! Damage to the journal: found, never silently dropped.
//!
//! SQLite already survives a crash in the middle of a commit: the WAL's
//! frames carry cumulative checksums, and a reader stops at the first frame
//! that does not match. That is right for a torn *last* transaction (it was
//! never acknowledged; the run resumes from the one before). But SQLite
//! stops there whatever follows, so a flipped bit in an *earlier* frame
//! would make it drop every later commit without a word: actions performed
//! and journaled as done would vanish from the journal. So before SQLite
//! opens the file, mend reads the WAL itself (`scan_wal`) and refuses when
//! whole committed transactions follow the damage.
//!
//! Rows that reach the main database file carry a checksum of their own
//! (`sum`, kept by triggers through `mend_row_sum`), so a flipped bit in a
//! record is found before a resume or rollback acts on it (`verify_run`).
//! Events are a log for people and carry none.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Result;
use rusqlite::functions::FunctionFlags;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, params};

use super::Journal;

/// The journal cannot be trusted as it is; nothing was done with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damaged {
    pub path: PathBuf,
    /// What is wrong, where.
    pub what: String,
}

impl fmt::Display for Damaged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "journal {} is damaged: {}",
            self.path.display(),
            self.what
        )
    }
}

impl std::error::Error for Damaged {}

impl Damaged {
    /// Why nothing was done: printed under the error.
    pub const REFUSAL: &str = "nothing was done: mend does not resume, roll back or start a run \
         on a damaged journal, since it could repeat or skip changes";

    /// What the operator should do: printed under the error.
    pub fn help(&self) -> String {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        format!(
            "copy {dir}/journal.db* somewhere safe before anything else, check the disk \
             (dmesg, smartctl), and undo by hand what `mend show RUN` lists as done; \
             then move the damaged journal aside to start a fresh one",
            dir = dir.display()
        )
    }
}

/// What `scan_wal` found at the end of the WAL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalState {
    /// No WAL, or every frame in it is whole.
    Clean,
    /// The last transaction was cut or corrupted (a crash or a bad sector
    /// during the last commit): SQLite drops it and the journal is as it was
    /// before that commit. `offset` is where the bad frame starts.
    TornTail { offset: u64, frames: u32 },
}

const WAL_HEADER: usize = 32;
const FRAME_HEADER: usize = 24;
const WAL_MAGIC_LE: u32 = 0x377f_0682;
const WAL_MAGIC_BE: u32 = 0x377f_0683;
const WAL_VERSION: u32 = 3_007_000;

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// SQLite's WAL checksum: two running sums over 32-bit words (in the byte
/// order the magic number names), continued from the previous frame's.
fn wal_checksum(big_endian: bool, data: &[u8], mut s: (u32, u32)) -> (u32, u32) {
    for pair in data.chunks_exact(8) {
        let word = |b: &[u8]| {
            let b: [u8; 4] = b.try_into().expect("4 bytes");
            if big_endian {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        };
        s.0 = s.0.wrapping_add(word(&pair[..4]).wrapping_add(s.1));
        s.1 = s.1.wrapping_add(word(&pair[4..]).wrapping_add(s.0));
    }
    s
}

/// Reads `DB-wal` (if any) the way SQLite's recovery will, and tells a torn
/// last transaction (fine: SQLite drops it) from damage with committed
/// transactions after it (refused: SQLite would drop those too).
pub fn scan_wal(db: &Path) -> Result<WalState, Damaged> {
    let mut wal_path = db.as_os_str().to_owned();
    wal_path.push("-wal");
    let wal_path = PathBuf::from(wal_path);
    let bytes = match std::fs::read(&wal_path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(WalState::Clean),
        Err(e) => {
            return Err(Damaged {
                path: db.to_path_buf(),
                what: format!("cannot read {}: {e}", wal_path.display()),
            });
        }
    };
    classify(&bytes).map_err(|what| Damaged {
        path: db.to_path_buf(),
        what: format!("{}: {what}", wal_path.display()),
    })
}

/// The classification behind `scan_wal`, on the WAL's bytes.
pub fn classify(wal: &[u8]) -> Result<WalState, String> {
    if wal.len() < WAL_HEADER {
        // Nothing was ever committed through a WAL this short.
        return Ok(WalState::Clean);
    }
    let magic = u32_at(wal, 0);
    let page_size = u32_at(wal, 8) as usize;
    let header_ok = (magic == WAL_MAGIC_LE || magic == WAL_MAGIC_BE)
        && u32_at(wal, 4) == WAL_VERSION
        && page_size.is_power_of_two()
        && (512..=65536).contains(&page_size)
        && {
            let big = magic == WAL_MAGIC_BE;
            let s = wal_checksum(big, &wal[..24], (0, 0));
            s == (u32_at(wal, 24), u32_at(wal, 28))
        };
    if !header_ok {
        // SQLite ignores a WAL whose header is bad, and every frame in it.
        // A header is written with the first commit after a checkpoint, so a
        // torn header loses that one commit; more commits behind it would
        // be lost silently.
        let page = if (512..=65536).contains(&page_size) && page_size.is_power_of_two() {
            page_size
        } else {
            4096
        };
        let commits = commit_frames(wal, page, None);
        return if commits <= 1 {
            Ok(if commits == 0 && wal.len() == WAL_HEADER {
                WalState::Clean
            } else {
                WalState::TornTail {
                    offset: 0,
                    frames: frame_count(wal.len(), page),
                }
            })
        } else {
            Err(format!(
                "its header is damaged, and {commits} committed transactions behind it would be \
                 dropped"
            ))
        };
    }
    let big = magic == WAL_MAGIC_BE;
    let salts = (u32_at(wal, 16), u32_at(wal, 20));
    let frame_len = FRAME_HEADER + page_size;
    let mut sum = (u32_at(wal, 24), u32_at(wal, 28));
    let mut at = WAL_HEADER;
    let mut index = 0u32;
    // The end of the last commit frame: what SQLite's reader keeps.
    let mut committed = WAL_HEADER;
    while at + frame_len <= wal.len() {
        let frame = &wal[at..at + frame_len];
        let ours = (u32_at(frame, 8), u32_at(frame, 12)) == salts;
        let s = wal_checksum(big, &frame[..8], sum);
        let s = wal_checksum(big, &frame[FRAME_HEADER..], s);
        if !ours || s != (u32_at(frame, 16), u32_at(frame, 20)) {
            // SQLite's reader stops at this frame. What follows decides:
            // nothing of this WAL's generation (the WAL ends here), the rest
            // of one transaction (a torn last commit), or acknowledged
            // commits that would be dropped with it.
            let later = commit_frames(&wal[at + frame_len..], page_size, Some(salts));
            return if !ours && later == 0 {
                Ok(WalState::Clean)
            } else if later <= 1 {
                Ok(WalState::TornTail {
                    offset: at as u64,
                    frames: frame_count(wal.len() - at, page_size),
                })
            } else {
                Err(format!(
                    "frame {index} at byte {at} does not match its checksum, and {later} \
                     later commits would be dropped with it"
                ))
            };
        }
        sum = s;
        at += frame_len;
        index += 1;
        if u32_at(frame, 4) != 0 {
            committed = at;
        }
    }
    if at < wal.len() {
        // SQLite writes whole frames: a frame cut short is a torn write of
        // the last transaction.
        return Ok(WalState::TornTail {
            offset: committed as u64,
            frames: frame_count(wal.len() - committed, page_size),
        });
    }
    if committed < at {
        // Whole frames of a transaction whose commit frame never came: a
        // multi-page commit cut between its frames.
        return Ok(WalState::TornTail {
            offset: committed as u64,
            frames: frame_count(at - committed, page_size),
        });
    }
    Ok(WalState::Clean)
}

fn frame_count(len: usize, page: usize) -> u32 {
    len.div_ceil(FRAME_HEADER + page) as u32
}

/// Commit frames (a non-zero database size) in `frames`, counting only those
/// with `salts` when given, or with the salts of the first frame otherwise.
fn commit_frames(frames: &[u8], page: usize, salts: Option<(u32, u32)>) -> u32 {
    let frame_len = FRAME_HEADER + page;
    let start = if salts.is_some() { 0 } else { WAL_HEADER };
    let mut want = salts;
    let mut n = 0;
    let mut at = start;
    while at + FRAME_HEADER <= frames.len() {
        let f = &frames[at..];
        let s = (u32_at(f, 8), u32_at(f, 12));
        let want = *want.get_or_insert(s);
        if s == want && u32_at(f, 4) != 0 {
            n += 1;
        }
        at += frame_len;
    }
    n
}

/// Registers `mend_row_sum(...)`: a 63-bit BLAKE3 checksum of its
/// arguments, with their types, that the journal's triggers store in each
/// row's `sum`.
pub fn register_functions(conn: &Connection) -> rusqlite::Result<()> {
    conn.create_scalar_function(
        "mend_row_sum",
        -1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let mut h = blake3::Hasher::new();
            for i in 0..ctx.len() {
                match ctx.get_raw(i) {
                    ValueRef::Null => h.update(b"n"),
                    ValueRef::Integer(v) => h.update(b"i").update(&v.to_le_bytes()),
                    ValueRef::Real(v) => h.update(b"r").update(&v.to_le_bytes()),
                    ValueRef::Text(t) => h
                        .update(b"t")
                        .update(&(t.len() as u64).to_le_bytes())
                        .update(t),
                    ValueRef::Blob(b) => h
                        .update(b"b")
                        .update(&(b.len() as u64).to_le_bytes())
                        .update(b),
                };
            }
            let d = h.finalize();
            let first: [u8; 8] = d.as_bytes()[..8].try_into().expect("8 bytes");
            Ok((u64::from_le_bytes(first) >> 1) as i64)
        },
    )
}

/// The checksummed columns of each table, in the order `mend_row_sum` takes
/// them, and the key that names a row in an error. Schema migration 3
/// writes its triggers from the same lists; a test holds them to the
/// tables' real columns.
pub(crate) const SUMMED: &[(&str, &str, &[&str])] = &[
    (
        "runs",
        "'run ' || id",
        &[
            "id",
            "runbook_name",
            "runbook_version",
            "runbook_path",
            "runbook_sha256",
            "mode",
            "status",
            "params_json",
            "now",
            "started_at",
            "finished_at",
            "error",
            "started_by",
            "host",
        ],
    ),
    (
        "steps",
        "'step ' || (idx + 1) || ' of run ' || run_id",
        &[
            "run_id",
            "idx",
            "step_id",
            "uses",
            "component_sha256",
            "status",
            "plan_json",
            "started_at",
            "finished_at",
            "error",
        ],
    ),
    (
        "actions",
        "'action ' || (step_idx + 1) || '.' || (seq + 1) || ' of run ' || run_id",
        &[
            "run_id",
            "step_idx",
            "seq",
            "action_json",
            "reversible",
            "state",
            "undo_json",
            "intended_at",
            "done_at",
            "undone_at",
            "error",
        ],
    ),
    (
        "bulk",
        "'actions ' || (step_idx + 1) || '.' || (lo + 1) || '-' || (lo + n) || ' of run ' || run_id",
        &[
            "run_id",
            "step_idx",
            "lo",
            "n",
            "reversible",
            "state",
            "actions",
            "undo",
            "intended_at",
            "done_at",
            "undone_at",
        ],
    ),
];

impl Journal {
    /// Checks everything a resume or rollback of `run_id` will act on: the
    /// database's structure (`PRAGMA quick_check`) and the checksum of the
    /// run's own row, steps and actions.
    pub fn verify_run(&self, run_id: &str) -> Result<(), Damaged> {
        let damaged = |what: String| Damaged {
            path: self.path.clone(),
            what,
        };
        let check: Vec<String> = self
            .conn
            .prepare("PRAGMA quick_check")
            .and_then(|mut s| {
                s.query_map([], |r| r.get::<_, String>(0))?
                    .collect::<rusqlite::Result<_>>()
            })
            .map_err(|e| damaged(format!("SQLite cannot check it: {e}")))?;
        if check != ["ok"] {
            let first: Vec<&str> = check.iter().take(3).map(String::as_str).collect();
            return Err(damaged(format!(
                "SQLite's quick_check reports {}",
                first.join("; ")
            )));
        }
        for (table, name, columns) in SUMMED {
            let key = if *table == "runs" { "id" } else { "run_id" };
            let sql = format!(
                "SELECT {name} FROM {table} WHERE {key} = ?1 \
                 AND sum IS NOT mend_row_sum({cols}) LIMIT 4",
                cols = columns.join(", ")
            );
            let bad: Vec<String> = self
                .conn
                .prepare(&sql)
                .and_then(|mut s| {
                    s.query_map(params![run_id], |r| r.get::<_, String>(0))?
                        .collect::<rusqlite::Result<_>>()
                })
                .map_err(|e| damaged(format!("cannot read its {table}: {e}")))?;
            if !bad.is_empty() {
                return Err(damaged(format!(
                    "{} does not match the checksum written with it",
                    bad.join(", ")
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::new_run;
    use super::super::{ActionState, JOURNAL_FILE, NewAction};
    use super::*;

    /// A journal with one run of `n` actions, each intended and marked done
    /// in its own commit. Returns the WAL's length after each commit (the
    /// last commit is the one that marked the last action done), the run id
    /// and the open journal (open, so that the WAL is not checkpointed away).
    fn journal_with_commits(dir: &Path, n: u32) -> (Journal, String, Vec<u64>) {
        let j = Journal::open(dir).unwrap();
        let run = j.new_run(&new_run("x")).unwrap().id;
        j.save_step(&run, 0, "s", "u", "c", "{}").unwrap();
        let wal = dir.join("journal.db-wal");
        let mut ends = vec![];
        for seq in 0..n {
            let json = format!(r#"{{"op":"remove","path":"data/file-{seq}"}}"#);
            let a = NewAction {
                seq,
                action_json: &json,
                reversible: true,
                undo_json: None,
            };
            j.intend(&run, 0, &[a]).unwrap();
            ends.push(std::fs::metadata(&wal).unwrap().len());
            j.mark_done(&run, 0, &[(seq, Some(r#"{"trash":"t"}"#))])
                .unwrap();
            ends.push(std::fs::metadata(&wal).unwrap().len());
        }
        (j, run, ends)
    }

    /// Copies the journal's database and the first `wal_len` bytes of its
    /// WAL (with `edit` applied) to a fresh directory, as a crash would
    /// leave them.
    fn crashed_copy(
        from: &Path,
        wal_len: u64,
        edit: impl FnOnce(&mut Vec<u8>),
    ) -> tempfile::TempDir {
        let to = tempfile::tempdir().unwrap();
        std::fs::copy(from.join(JOURNAL_FILE), to.path().join(JOURNAL_FILE)).unwrap();
        let mut wal = std::fs::read(from.join("journal.db-wal")).unwrap();
        wal.truncate(wal_len as usize);
        edit(&mut wal);
        std::fs::write(to.path().join("journal.db-wal"), wal).unwrap();
        to
    }

    fn states(dir: &Path, run: &str) -> Vec<ActionState> {
        let j = Journal::open_existing(dir).unwrap().unwrap();
        j.verify_run(run).unwrap();
        j.actions(run).unwrap().iter().map(|a| a.state).collect()
    }

    #[test]
    fn the_last_commit_cut_at_any_byte_is_dropped_and_nothing_before_it() {
        let tmp = tempfile::tempdir().unwrap();
        let (_j, run, ends) = journal_with_commits(tmp.path(), 3);
        let wal = std::fs::read(tmp.path().join("journal.db-wal")).unwrap();
        let (before, after) = (ends[ends.len() - 2], ends[ends.len() - 1]);
        assert!(after > before, "the last commit wrote to the WAL");
        // Cuts at every byte of each frame's header and the page's edges,
        // and every 37th byte between for 4 KiB pages, as sparse for bigger
        // ones (all of them take 13 s in a debug build); a sample of them
        // is opened too.
        let page = u64::from(u32_at(&wal, 8));
        let frame_len = 24 + page;
        let stride = 37 * page / 4096;
        for cut in (before..after).filter(|c| {
            let into = (c - before) % frame_len;
            into < 40 || into > frame_len - 16 || c % stride == 0
        }) {
            let state = classify(&wal[..cut as usize]).unwrap();
            if cut == before {
                assert_eq!(state, WalState::Clean);
            } else {
                assert!(matches!(state, WalState::TornTail { .. }), "cut at {cut}");
            }
            if cut == before || cut % 97 == 0 || cut + 1 == after {
                let copy = crashed_copy(tmp.path(), cut, |_| {});
                assert_eq!(
                    states(copy.path(), &run),
                    [ActionState::Done, ActionState::Done, ActionState::Intended],
                    "cut at {cut}"
                );
            }
        }
        // Whole, it is all there.
        let copy = crashed_copy(tmp.path(), after, |_| {});
        assert_eq!(states(copy.path(), &run), [ActionState::Done; 3]);
        // And a torn journal takes new writes after the tail is dropped.
        let copy = crashed_copy(tmp.path(), after - 100, |_| {});
        let j = Journal::open(copy.path()).unwrap();
        j.set_action_state(&run, 0, 2, ActionState::Done, None)
            .unwrap();
        drop(j);
        assert_eq!(states(copy.path(), &run), [ActionState::Done; 3]);
    }

    #[test]
    fn a_flipped_bit_in_the_last_commit_drops_only_that_commit() {
        let tmp = tempfile::tempdir().unwrap();
        let (_j, run, ends) = journal_with_commits(tmp.path(), 3);
        let (before, after) = (ends[ends.len() - 2], ends[ends.len() - 1]);
        for at in (before..after).step_by(331).chain([before + 9, after - 1]) {
            for bit in [0u8, 5] {
                let copy = crashed_copy(tmp.path(), after, |w| w[at as usize] ^= 1 << bit);
                assert_eq!(
                    states(copy.path(), &run),
                    [ActionState::Done, ActionState::Done, ActionState::Intended],
                    "bit {bit} of byte {at}"
                );
            }
        }
    }

    #[test]
    fn damage_before_the_last_commit_is_refused_and_left_as_it_is() {
        let tmp = tempfile::tempdir().unwrap();
        let (_j, _run, ends) = journal_with_commits(tmp.path(), 3);
        let after = *ends.last().unwrap();
        // In the first action's commit, in the WAL's header, and in a
        // frame's salt: each would make SQLite drop the later commits.
        for at in [ends[0] - 200, 3, 24, ends[1] + 9] {
            let copy = crashed_copy(tmp.path(), after, |w| w[at as usize] ^= 0x10);
            let wal = copy.path().join("journal.db-wal");
            let bytes = std::fs::read(&wal).unwrap();
            let err = Journal::open_existing(copy.path()).unwrap_err();
            let damaged = err
                .chain()
                .find_map(|c| c.downcast_ref::<Damaged>())
                .unwrap_or_else(|| panic!("byte {at}: not a Damaged error: {err:#}"));
            assert!(
                damaged.what.contains("would be dropped"),
                "byte {at}: {damaged}"
            );
            assert!(damaged.to_string().contains("journal.db-wal"), "{damaged}");
            // Refused before SQLite touched it.
            assert_eq!(std::fs::read(&wal).unwrap(), bytes, "byte {at}");
            assert!(Journal::open(copy.path()).is_err(), "byte {at}");
        }
    }

    #[test]
    fn a_flipped_bit_in_a_record_is_found_before_a_resume_uses_it() {
        let tmp = tempfile::tempdir().unwrap();
        let (j, run, _) = journal_with_commits(tmp.path(), 3);
        j.verify_run(&run).unwrap();
        drop(j); // checkpoints: the records are in journal.db now
        let db = tmp.path().join(JOURNAL_FILE);
        let mut bytes = std::fs::read(&db).unwrap();
        let needle = b"data/file-1";
        let at = bytes
            .windows(needle.len())
            .position(|w| w == needle)
            .expect("the record is in the file");
        bytes[at + 5] ^= 0x02; // `file-1` becomes `dile-1`
        std::fs::write(&db, bytes).unwrap();
        let j = Journal::open_existing(tmp.path()).unwrap().unwrap();
        let err = j.verify_run(&run).unwrap_err();
        assert_eq!(
            err.what,
            format!("action 1.2 of run {run} does not match the checksum written with it"),
        );
    }

    #[test]
    fn every_column_is_summed_and_kept_by_triggers() {
        let tmp = tempfile::tempdir().unwrap();
        let j = Journal::open(tmp.path()).unwrap();
        for (table, _, columns) in SUMMED {
            let real: Vec<String> = j
                .conn
                .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap();
            let mut want: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
            want.push("sum".into());
            assert_eq!(real, want, "{table}: a new column must be summed too");
            for event in ["insert", "update"] {
                let sql: String = j
                    .conn
                    .query_row(
                        "SELECT sql FROM sqlite_schema WHERE type = 'trigger' AND name = ?1",
                        [format!("{table}_sum_{event}")],
                        |r| r.get(0),
                    )
                    .unwrap();
                let args: Vec<String> = columns.iter().map(|c| format!("NEW.{c}")).collect();
                assert!(sql.contains(&args.join(", ")), "{table} {event}: {sql}");
            }
        }
    }
}
