//! The free space of each write grant before and after a run, as data (the
//! timeline picture draws it; the event log keeps the readable line).

use anyhow::{Context, Result};
use rusqlite::params;

use super::{Change, Journal, now_ms};

/// A write grant's free space at one moment of a run.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct GrantSpace {
    pub grant: String,
    /// `before` or `after`.
    pub moment: String,
    /// Bytes available to the run's user.
    pub free: u64,
    /// Unix milliseconds.
    pub at: i64,
}

impl Journal {
    /// Records the free space of each grant (`moment`: `before`/`after`).
    pub fn grant_space(&self, run_id: &str, moment: &str, free: &[(String, u64)]) -> Result<()> {
        if free.is_empty() {
            return Ok(());
        }
        let tx = self.write_tx()?;
        let now = now_ms();
        for (grant, bytes) in free {
            tx.execute(
                "INSERT INTO grant_space (run_id, grant_name, moment, free, at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (run_id, grant_name, moment) DO UPDATE SET free = ?4, at = ?5",
                params![run_id, grant, moment, *bytes as i64, now],
            )
            .with_context(|| format!("cannot record the free space of run {run_id}"))?;
        }
        tx.commit(run_id, Change::Run)
            .context("cannot commit the free space")?;
        Ok(())
    }

    /// A run's grant free space, by grant then moment (`after` last).
    pub fn grant_spaces(&self, run_id: &str) -> Result<Vec<GrantSpace>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT grant_name, moment, free, at FROM grant_space WHERE run_id = ?1
             ORDER BY grant_name, moment DESC",
        )?;
        let rows = stmt
            .query_map([run_id], |r| {
                Ok(GrantSpace {
                    grant: r.get(0)?,
                    moment: r.get(1)?,
                    free: r.get::<_, i64>(2)?.max(0) as u64,
                    at: r.get(3)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()
            .with_context(|| format!("cannot read the free space of run {run_id}"))?;
        Ok(rows)
    }
}

impl Journal {
    /// When a step's actions were undone: (first, last), or `None`.
    pub fn undo_span(&self, run_id: &str, step_idx: u32) -> Result<Option<(i64, i64)>> {
        let (lo, hi): (Option<i64>, Option<i64>) = self
            .conn
            .prepare_cached(
                "SELECT min(t), max(t) FROM (
                     SELECT undone_at AS t FROM actions WHERE run_id = ?1 AND step_idx = ?2
                     UNION ALL
                     SELECT undone_at FROM bulk WHERE run_id = ?1 AND step_idx = ?2
                 ) WHERE t IS NOT NULL",
            )?
            .query_row(params![run_id, step_idx], |r| Ok((r.get(0)?, r.get(1)?)))
            .with_context(|| format!("cannot read the undo times of run {run_id}"))?;
        Ok(lo.zip(hi))
    }
}
