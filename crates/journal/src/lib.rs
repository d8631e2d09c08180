//! The run journal: a SQLite database (`STATE/journal.db`) recording every
//! run, its steps, the actions each step performs (with their undo data) and
//! the run's events, so a run killed with `kill -9` can be resumed and a
//! failed run rolled back; and the payloads it stores (`records`). It knows
//! no wasmtime and performs nothing: the host does, the journal remembers.
//!
//! Durability: WAL with `synchronous=FULL`, and every write method commits
//! before it returns. Batch methods (`intend`, `mark_done`) write all their
//! rows in one transaction, so a batch costs one commit.
//!
//! Timestamps (`*_at`) are Unix milliseconds from the real clock; a run's
//! `now` is its logical clock (Unix seconds) and is only stored.
//!
//! Modules: `types` (rows, enums), `records` (the JSON payloads of rows:
//! a step's saved plan, an action's undo data, a run's inputs), `schema`
//! (tables, versions), `runs`, `steps`, `actions`, `events` (the `Journal`
//! methods for each table), `integrity` (damage found before use),
//! `reserve` (room kept for a full disk), `prune` (history that does not
//! grow for ever), and with the `pg` feature `pg` (the fleet's shared
//! journal and locks in PostgreSQL).

mod actions;
mod bulk;
mod changes;
mod events;
pub mod fleet;
pub mod integrity;
#[cfg(feature = "pg")]
pub mod pg;
mod prune;
mod records;
pub mod reserve;
mod runs;
pub mod schema;
mod secrets;
mod space;
pub mod starter;
mod steps;
mod types;

use std::fs::DirBuilder;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

pub use bulk::{BulkRange, PlannedBulk, pack, unpack};
use changes::JournalTx;
pub use changes::{Change, ChangeRecord, coalesce};
pub use integrity::{Damaged, WalState};
pub use mend_human::time::{format_utc, now_ms, now_secs};
pub use prune::{Pruned, PrunedRun, Retention};
pub use records::{Journaled, RunInputs, SavedStep};
pub use secrets::{MASK, Redact};
pub use space::GrantSpace;
pub use types::{
    ActionRecord, ActionState, EventRecord, HistoryFilter, NewAction, NewRun, PlannedAction,
    RunMode, RunRecord, RunStatus, StepRecord, StepStatus, UnknownVariant,
};

/// The journal's file name inside the state directory.
pub const JOURNAL_FILE: &str = "journal.db";

/// How long a write waits for another process's write to finish.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// An open journal (one SQLite connection).
pub struct Journal {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("path", &self.path).finish()
    }
}

impl Journal {
    /// Opens `STATE/journal.db`, creating the state directory (0700, with
    /// parents), the database and its schema if missing.
    pub fn open(state_dir: &Path) -> Result<Journal> {
        create_private_dir(state_dir)?;
        let path = state_dir.join(JOURNAL_FILE);
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        Self::open_with(path, flags)
    }

    /// Opens `STATE/journal.db` if it exists; `None` when it does not. Creates
    /// nothing: neither the state directory nor the database (read-only
    /// commands use this).
    pub fn open_existing(state_dir: &Path) -> Result<Option<Journal>> {
        let path = state_dir.join(JOURNAL_FILE);
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => bail!("{} exists but is not a file", path.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot stat {}", path.display())),
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        Self::open_with(path, flags).map(Some)
    }

    /// Opens `STATE/journal.db` read-only, for readers that follow a run
    /// another process writes (`mend watch`, `mend serve`): no migration,
    /// no checkpoint, no lock a run needs; every write is refused
    /// (`query_only`). `None` when there is no journal.
    pub fn open_read_only(state_dir: &Path) -> Result<Option<Journal>> {
        let path = state_dir.join(JOURNAL_FILE);
        if !path.is_file() {
            return Ok(None);
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&path, flags)
            .with_context(|| format!("cannot open journal {}", path.display()))?;
        let setup = || -> Result<()> {
            integrity::register_functions(&conn)?;
            conn.busy_timeout(BUSY_TIMEOUT)?;
            conn.pragma_update(None, "query_only", true)?;
            let version = schema::check_version(&conn, &path)?;
            // A reader cannot migrate: it needs the columns this build reads.
            if version < schema::SCHEMA_VERSION {
                bail!(
                    "journal {} has schema version {version}, older than this build's \
                     (version {}): run any mend command that writes (`mend run`, `mend \
                     resume`) with this build first",
                    path.display(),
                    schema::SCHEMA_VERSION
                );
            }
            Ok(())
        };
        setup().with_context(|| format!("cannot open journal {}", path.display()))?;
        Ok(Some(Journal { conn, path }))
    }

    fn open_with(path: PathBuf, flags: OpenFlags) -> Result<Journal> {
        // Before SQLite's recovery reads the WAL and silently stops at the
        // first bad frame (integrity.rs).
        if let WalState::TornTail { offset, frames } = integrity::scan_wal(&path)? {
            tracing::warn!(
                "journal {}: the last commit was cut or damaged ({} from byte {offset} of \
                 the WAL); it is dropped and the journal is as it was before it",
                path.display(),
                if frames == 1 {
                    "1 frame".to_string()
                } else {
                    format!("{frames} frames")
                }
            );
        }
        let conn = Connection::open_with_flags(&path, flags)
            .with_context(|| format!("cannot open journal {}", path.display()))?;
        let setup = || -> Result<()> {
            integrity::register_functions(&conn)?;
            conn.busy_timeout(BUSY_TIMEOUT)?;
            conn.pragma_update(None, "foreign_keys", true)?;
            // Refuse a newer journal before changing anything in it.
            schema::check_version(&conn, &path)?;
            let mode: String =
                conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                bail!("cannot switch to WAL mode (journal_mode is `{mode}`)");
            }
            conn.pragma_update(None, "synchronous", "FULL")?;
            persist_wal(&conn)?;
            // Non-negative, so the last close empties the kept WAL (to 0
            // bytes) after its checkpoint instead of leaving old frames
            // that the next open would replay; also caps an idle WAL.
            conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
            if reserve::lean() {
                // Running on the released reserve of a full disk: keep the
                // WAL within it.
                conn.pragma_update(None, "wal_autocheckpoint", 16)?;
                conn.pragma_update(None, "journal_size_limit", 256 * 1024)?;
            }
            schema::migrate(&conn, &path)
        };
        setup().with_context(|| format!("cannot open journal {}", path.display()))?;
        Ok(Journal { conn, path })
    }

    /// The path of `journal.db`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts a write transaction. `BEGIN IMMEDIATE` takes the write lock up
    /// front, so the busy timeout applies instead of a deadlock-prone
    /// read-to-write upgrade.
    /// Its only way to commit names the change made ([`JournalTx`]).
    fn write_tx(&self) -> Result<JournalTx<'_>> {
        if let Some(e) = mend_faults::journal_write() {
            // As SQLite reports a full or failing disk.
            let code = match e.kind() {
                std::io::ErrorKind::StorageFull => rusqlite::ffi::SQLITE_FULL,
                _ => rusqlite::ffi::SQLITE_IOERR,
            };
            let e = rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(code),
                Some(e.to_string()),
            );
            return Err(anyhow::Error::from(e))
                .with_context(|| format!("cannot write to journal {}", self.path.display()));
        }
        Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)
            .map(JournalTx::new)
            .with_context(|| format!("cannot write to journal {}", self.path.display()))
    }
}

/// Keeps `-wal` and `-shm` when the last writer closes (the WAL is
/// checkpointed and emptied to 0 bytes, not deleted): a reader that may not write the
/// state directory (`mend serve` or `mend watch` as another user) cannot
/// create them, and SQLite opens a WAL journal read-only only when they
/// exist.
fn persist_wal(conn: &Connection) -> Result<()> {
    let mut on: std::ffi::c_int = 1;
    // SAFETY: a valid open connection, the "main" schema name as a C
    // string, and a pointer to an int, as SQLITE_FCNTL_PERSIST_WAL takes.
    let rc = unsafe {
        rusqlite::ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            rusqlite::ffi::SQLITE_FCNTL_PERSIST_WAL,
            (&raw mut on).cast(),
        )
    };
    if rc != rusqlite::ffi::SQLITE_OK {
        bail!("cannot keep the journal's WAL file (sqlite3_file_control: {rc})");
    }
    Ok(())
}

/// `mkdir -p` with mode 0700 for every directory it creates.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create directory {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    pub(crate) fn new_run<'a>(name: &'a str) -> NewRun<'a> {
        NewRun {
            runbook_name: name,
            runbook_version: "1.2.0",
            runbook_path: "/etc/mend/runbooks/x.toml",
            runbook_sha256: "ab".repeat(32).leak(),
            mode: RunMode::Run,
            params_json: r#"{"host":"db1"}"#,
            now: 1_795_367_045,
        }
    }

    #[test]
    fn open_creates_private_dir_and_schema_and_reopens() {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("a/b/state");
        let j = Journal::open(&state).unwrap();
        assert_eq!(j.path(), state.join("journal.db"));
        let mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let mode = std::fs::metadata(tmp.path().join("a"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o700);
        assert_eq!(
            schema::user_version(&j.conn).unwrap(),
            schema::SCHEMA_VERSION
        );
        let jm: String = j
            .conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(jm, "wal");
        let sync: i64 = j
            .conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2, "synchronous=FULL");
        let fk: i64 = j
            .conn
            .pragma_query_value(None, "foreign_keys", |r| r.get(0))
            .unwrap();
        assert_eq!(fk, 1);
        let run = j.new_run(&new_run("x")).unwrap();
        drop(j);

        // Reopen (both ways): the schema is not re-applied, data is there.
        let j = Journal::open(&state).unwrap();
        assert_eq!(j.run(&run.id).unwrap().id, run.id);
        drop(j);
        let j = Journal::open_existing(&state).unwrap().unwrap();
        assert_eq!(j.run(&run.id).unwrap().runbook_name, "x");
        let tables: Vec<String> = j
            .conn
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            tables,
            [
                "actions",
                "bulk",
                "changes",
                "events",
                "grant_space",
                "journal_meta",
                "runs",
                "steps"
            ]
        );
    }

    #[test]
    fn open_existing_creates_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(Journal::open_existing(tmp.path()).unwrap().is_none());
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
        let missing = tmp.path().join("nope/state");
        assert!(Journal::open_existing(&missing).unwrap().is_none());
        assert!(!tmp.path().join("nope").exists());
    }

    #[test]
    fn newer_schema_version_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let j = Journal::open(tmp.path()).unwrap();
        j.conn
            .pragma_update(None, "user_version", schema::SCHEMA_VERSION + 1)
            .unwrap();
        drop(j);
        for err in [
            Journal::open(tmp.path()).unwrap_err(),
            Journal::open_existing(tmp.path()).unwrap_err(),
        ] {
            let msg = format!("{err:#}");
            let newer = format!("schema version {}", schema::SCHEMA_VERSION + 1);
            assert!(msg.contains(&newer), "{msg}");
            assert!(msg.contains("newer mend"), "{msg}");
        }
        // And it was left untouched.
        let conn = Connection::open(tmp.path().join(JOURNAL_FILE)).unwrap();
        assert_eq!(
            schema::user_version(&conn).unwrap(),
            schema::SCHEMA_VERSION + 1
        );
    }
}
