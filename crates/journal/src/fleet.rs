//! The controller's fleet journal: which fleet runs this controller made,
//! and where each host of each one stands. A separate SQLite file
//! (`STATE/fleet.db`) beside the run journal; each intent is written before
//! it is acted on, so `mend fleet rollback` finds the hosts a killed
//! controller had reached.
//!
//! [`FleetHistory`] is the boundary a shared PostgreSQL journal slots in
//! behind; [`LocalFleetJournal`] is this controller's own.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::now_ms;

/// The file name inside the state directory.
pub const FLEET_FILE: &str = "fleet.db";

/// One fleet run.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct FleetRunRecord {
    pub id: String,
    pub runbook: String,
    /// The saved fleet plan it ran.
    pub plan_dir: String,
    /// running, committed, stopped, failed, rolled-back
    pub status: String,
    pub started_at: i64,
    pub ended_at: Option<i64>,
}

/// One host of a fleet run.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct FleetHostRecord {
    pub host: String,
    /// 1-based.
    pub batch: u32,
    /// starting, running, held (verified, not committed), committing,
    /// committed, undoing, undone, rolled-back, rollback-failed,
    /// plan-moved, refused, unreachable
    pub state: String,
    pub run_id: Option<String>,
    pub detail: Option<String>,
    pub at: i64,
}

/// Where a fleet's history is kept.
pub trait FleetHistory {
    fn begin(&mut self, run: &FleetRunRecord) -> Result<()>;
    fn host(&mut self, fleet_run: &str, h: &FleetHostRecord) -> Result<()>;
    fn end(&mut self, fleet_run: &str, status: &str) -> Result<()>;
    fn run(&self, fleet_run: &str) -> Result<Option<FleetRunRecord>>;
    fn hosts(&self, fleet_run: &str) -> Result<Vec<FleetHostRecord>>;
    fn runs(&self, limit: usize) -> Result<Vec<FleetRunRecord>>;
}

/// The controller-local fleet journal.
pub struct LocalFleetJournal {
    conn: Connection,
}

impl LocalFleetJournal {
    pub fn open(state_dir: &Path) -> Result<LocalFleetJournal> {
        crate::create_private_dir(state_dir)?;
        let path = state_dir.join(FLEET_FILE);
        let conn = Connection::open(&path)
            .with_context(|| format!("cannot open the fleet journal {}", path.display()))?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS fleet_runs (
                 id TEXT PRIMARY KEY, runbook TEXT NOT NULL, plan_dir TEXT NOT NULL,
                 status TEXT NOT NULL, started_at INTEGER NOT NULL, ended_at INTEGER);
             CREATE TABLE IF NOT EXISTS fleet_hosts (
                 fleet_run TEXT NOT NULL REFERENCES fleet_runs(id), host TEXT NOT NULL,
                 batch INTEGER NOT NULL, state TEXT NOT NULL, run_id TEXT, detail TEXT,
                 at INTEGER NOT NULL, PRIMARY KEY (fleet_run, host));
             CREATE TABLE IF NOT EXISTS fleet_decisions (
                 fleet_run TEXT NOT NULL REFERENCES fleet_runs(id), at INTEGER NOT NULL,
                 decision TEXT NOT NULL);",
        )?;
        Ok(LocalFleetJournal { conn })
    }

    /// Journal a decision of the fleet run before it is acted on
    /// (`rollback-fleet`, `settle: commit`, `settle: rollback`), so a
    /// resumed controller settles held hosts the same way.
    pub fn decide(&mut self, fleet_run: &str, decision: &str) -> Result<()> {
        self.conn.execute(
            "INSERT INTO fleet_decisions (fleet_run, at, decision) VALUES (?1, ?2, ?3)",
            params![fleet_run, now_ms(), decision],
        )?;
        Ok(())
    }

    /// A fleet run's decisions, oldest first.
    pub fn decisions(&self, fleet_run: &str) -> Result<Vec<String>> {
        let mut st = self.conn.prepare(
            "SELECT decision FROM fleet_decisions WHERE fleet_run = ?1 ORDER BY at, rowid",
        )?;
        let rows = st
            .query_map(params![fleet_run], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// Opens it only if it exists (read-only commands create nothing).
    pub fn open_existing(state_dir: &Path) -> Result<Option<LocalFleetJournal>> {
        if state_dir.join(FLEET_FILE).is_file() {
            Self::open(state_dir).map(Some)
        } else {
            Ok(None)
        }
    }
}

fn run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<FleetRunRecord> {
    Ok(FleetRunRecord {
        id: r.get(0)?,
        runbook: r.get(1)?,
        plan_dir: r.get(2)?,
        status: r.get(3)?,
        started_at: r.get(4)?,
        ended_at: r.get(5)?,
    })
}

const RUN_COLS: &str = "id, runbook, plan_dir, status, started_at, ended_at";

impl FleetHistory for LocalFleetJournal {
    fn begin(&mut self, run: &FleetRunRecord) -> Result<()> {
        self.conn.execute(
            "INSERT INTO fleet_runs (id, runbook, plan_dir, status, started_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![run.id, run.runbook, run.plan_dir, run.status, run.started_at],
        )?;
        Ok(())
    }

    fn host(&mut self, fleet_run: &str, h: &FleetHostRecord) -> Result<()> {
        self.conn.execute(
            "INSERT INTO fleet_hosts (fleet_run, host, batch, state, run_id, detail, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (fleet_run, host) DO UPDATE SET batch = excluded.batch,
               state = excluded.state, run_id = coalesce(excluded.run_id, run_id),
               detail = excluded.detail, at = excluded.at",
            params![
                fleet_run, h.host, h.batch, h.state, h.run_id, h.detail, h.at
            ],
        )?;
        Ok(())
    }

    fn end(&mut self, fleet_run: &str, status: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE fleet_runs SET status = ?2, ended_at = ?3 WHERE id = ?1",
            params![fleet_run, status, now_ms()],
        )?;
        Ok(())
    }

    fn run(&self, fleet_run: &str) -> Result<Option<FleetRunRecord>> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {RUN_COLS} FROM fleet_runs WHERE id = ?1"),
                [fleet_run],
                run_row,
            )
            .optional()?)
    }

    fn hosts(&self, fleet_run: &str) -> Result<Vec<FleetHostRecord>> {
        let mut st = self.conn.prepare(
            "SELECT host, batch, state, run_id, detail, at FROM fleet_hosts
             WHERE fleet_run = ?1 ORDER BY batch, rowid",
        )?;
        let rows = st.query_map([fleet_run], |r| {
            Ok(FleetHostRecord {
                host: r.get(0)?,
                batch: r.get(1)?,
                state: r.get(2)?,
                run_id: r.get(3)?,
                detail: r.get(4)?,
                at: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn runs(&self, limit: usize) -> Result<Vec<FleetRunRecord>> {
        let mut st = self.conn.prepare(&format!(
            "SELECT {RUN_COLS} FROM fleet_runs ORDER BY started_at DESC, rowid DESC LIMIT ?1"
        ))?;
        let rows = st.query_map([limit as i64], run_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_row_is_updated_in_place_and_keeps_its_run_id() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = LocalFleetJournal::open(dir.path()).unwrap();
        j.begin(&FleetRunRecord {
            id: "F-1".into(),
            runbook: "rb".into(),
            plan_dir: "/p".into(),
            status: "running".into(),
            started_at: 1,
            ended_at: None,
        })
        .unwrap();
        let mut h = FleetHostRecord {
            host: "h1".into(),
            batch: 1,
            state: "running".into(),
            run_id: Some("abc".into()),
            detail: None,
            at: 2,
        };
        j.host("F-1", &h).unwrap();
        h.state = "committed".into();
        h.run_id = None;
        j.host("F-1", &h).unwrap();
        let hosts = j.hosts("F-1").unwrap();
        assert_eq!(hosts.len(), 1);
        assert_eq!(hosts[0].state, "committed");
        assert_eq!(hosts[0].run_id.as_deref(), Some("abc"));
        j.end("F-1", "committed").unwrap();
        assert_eq!(j.run("F-1").unwrap().unwrap().status, "committed");
        assert_eq!(j.runs(10).unwrap().len(), 1);
    }
}
