//! The run's event log (what the user sees in `mend show`).

use anyhow::{Context, Result};
use rusqlite::params;

use super::{Change, EventRecord, Journal, now_ms};

impl Journal {
    /// Appends an event to the run's log (`step_idx` None: about the run).
    pub fn event(
        &self,
        run_id: &str,
        step_idx: Option<u32>,
        level: &str,
        message: &str,
    ) -> Result<()> {
        let tx = self.write_tx()?;
        tx.prepare_cached(
            "INSERT INTO events (run_id, step_idx, at, level, message) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![run_id, step_idx, now_ms(), level, message])
        .with_context(|| format!("cannot record an event of run {run_id}"))?;
        let id = tx.last_insert_rowid();
        tx.commit(run_id, Change::Event { id })
            .context("cannot commit the event")?;
        Ok(())
    }

    /// One event by its id (`Change::Event`).
    pub fn event_by_id(&self, id: i64) -> Result<EventRecord> {
        self.conn
            .prepare_cached(
                "SELECT run_id, step_idx, at, level, message FROM events WHERE id = ?1",
            )?
            .query_row([id], |row| {
                Ok(EventRecord {
                    run_id: row.get(0)?,
                    step_idx: row.get(1)?,
                    at: row.get(2)?,
                    level: row.get(3)?,
                    message: row.get(4)?,
                })
            })
            .with_context(|| format!("cannot read event {id} of the journal"))
    }

    /// The run's events, by time then insertion.
    pub fn events(&self, run_id: &str) -> Result<Vec<EventRecord>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT run_id, step_idx, at, level, message FROM events
             WHERE run_id = ?1 ORDER BY at, id",
        )?;
        let events = stmt
            .query_map([run_id], |row| {
                Ok(EventRecord {
                    run_id: row.get(0)?,
                    step_idx: row.get(1)?,
                    at: row.get(2)?,
                    level: row.get(3)?,
                    message: row.get(4)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(events)
    }

    /// The run's events with their ids (AUTOINCREMENT: never reused, so an
    /// event's id is a stable sequence number for shipping it elsewhere).
    pub fn events_with_ids(&self, run_id: &str) -> Result<Vec<(i64, EventRecord)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, run_id, step_idx, at, level, message FROM events
             WHERE run_id = ?1 ORDER BY id",
        )?;
        let events = stmt
            .query_map([run_id], |row| {
                Ok((
                    row.get(0)?,
                    EventRecord {
                        run_id: row.get(1)?,
                        step_idx: row.get(2)?,
                        at: row.get(3)?,
                        level: row.get(4)?,
                        message: row.get(5)?,
                    },
                ))
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::new_run;
    use super::*;

    #[test]
    fn events_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let j = Journal::open(tmp.path()).unwrap();
        let run = j.new_run(&new_run("x")).unwrap();
        let other = j.new_run(&new_run("y")).unwrap();
        for i in 0..5 {
            j.event(&run.id, (i % 2 == 1).then_some(i), "info", &format!("m{i}"))
                .unwrap();
        }
        j.event(&other.id, None, "warn", "elsewhere").unwrap();
        let evs = j.events(&run.id).unwrap();
        let msgs: Vec<&str> = evs.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(msgs, ["m0", "m1", "m2", "m3", "m4"]);
        assert_eq!(evs[1].step_idx, Some(1));
        assert_eq!(evs[0].step_idx, None);
        assert!(evs.windows(2).all(|w| w[0].at <= w[1].at));
        assert_eq!(j.events(&other.id).unwrap()[0].level, "warn");
        assert!(j.event("0000000000000000", None, "info", "x").is_err());
    }
}
