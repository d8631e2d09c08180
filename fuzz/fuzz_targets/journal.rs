//! A damaged journal: whatever bytes `STATE/journal.db` (and its WAL) hold,
//! opening it and reading what `mend history`, `show`, `report` and `resume`
//! read returns errors, never panics, hangs or aborts.
//!
//! Input: a mode byte. Even: the rest is journal.db. Odd: a u32 (little
//! endian) length, that many bytes of journal.db, the rest journal.db-wal.
//! fuzz/make_journal_seeds.py makes seeds of both kinds from a real journal.

#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mend::cli::Out;
use mend_journal::{HistoryFilter, JOURNAL_FILE, Journal, RunRecord, RunStatus};

/// The state directory, one per process, emptied before each input.
fn state_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("mend-fuzz-journal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the state directory");
        dir
    })
}

fn lay_out(dir: &Path, db: &[u8], wal: Option<&[u8]>) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let _ = std::fs::remove_file(dir.join(format!("{JOURNAL_FILE}{suffix}")));
    }
    std::fs::write(dir.join(JOURNAL_FILE), db).expect("write journal.db");
    if let Some(wal) = wal {
        std::fs::write(dir.join(format!("{JOURNAL_FILE}-wal")), wal).expect("write the WAL");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (db, wal) = if mode % 2 == 0 {
        (rest, None)
    } else {
        let Some((len, rest)) = rest.split_first_chunk::<4>() else {
            return;
        };
        let n = (u32::from_le_bytes(*len) as usize).min(rest.len());
        (&rest[..n], Some(&rest[n..]))
    };
    let dir = state_dir();
    lay_out(dir, db, wal);

    let journal = match Journal::open_existing(dir) {
        Ok(Some(j)) => j,
        Ok(None) => panic!("journal.db was written but open_existing found none"),
        Err(e) => {
            let _ = format!("{e:#}");
            return;
        }
    };
    // `mend history`, with and without filters (--json and text).
    let filters = [
        HistoryFilter::default(),
        HistoryFilter {
            runbook: Some("mastodon-maintenance".into()),
            status: Some(RunStatus::Committed),
            limit: Some(2),
        },
    ];
    let mut runs: Vec<RunRecord> = Vec::new();
    for filter in &filters {
        match journal.history(filter) {
            Ok(found) => {
                Out::new(true).history(&found);
                Out::new(false).history(&found);
                if runs.is_empty() {
                    runs = found;
                }
            }
            Err(e) => {
                let _ = format!("{e:#}");
            }
        }
    }
    // `mend show RUN` and `mend report RUN`, by full id and by prefix, and
    // what `mend resume` decodes before it prepares the runbook again.
    for r in runs.iter().take(4) {
        for id in [r.id.as_str(), r.id.get(..4).unwrap_or(&r.id), "0000"] {
            let record = match journal.run(id) {
                Ok(record) => record,
                Err(e) => {
                    let _ = format!("{e:#}");
                    continue;
                }
            };
            let (Ok(steps), Ok(actions), Ok(events)) = (
                journal.steps(&record.id),
                journal.actions(&record.id),
                journal.events(&record.id),
            ) else {
                continue;
            };
            Out::new(true).show(&record, &steps, &actions, &events);
            Out::new(false).show(&record, &steps, &actions, &events);
            let _ = mend::cli::report::markdown(&record, &steps, &actions, &events);
            let _ = serde_json::from_str::<mend_journal::RunInputs>(&record.params_json);
            for s in &steps {
                if let Some(plan) = &s.plan_json {
                    let _ = serde_json::from_str::<mend_journal::SavedStep>(plan);
                }
            }
            for a in &actions {
                let _ = serde_json::from_str::<mend_plan::Planned>(&a.action_json);
                if let Some(undo) = &a.undo_json {
                    let _ = serde_json::from_str::<mend_journal::Journaled>(undo);
                }
            }
        }
    }
});
