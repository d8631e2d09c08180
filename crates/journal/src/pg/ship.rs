//! Copying a host's run into the shared journal, from the controller, so
//! hosts need no database access. At least once and idempotent: records are
//! keyed by (run id, seq) and inserted `ON CONFLICT DO NOTHING`, so shipping
//! the same records again (a controller resumed, two controllers
//! reconciling one host) adds nothing. Not fenced: these are facts a host's
//! journal already holds, true whoever carries them.

use super::{LOCK_CLASS, PgError, Shared, db};

/// The advisory key (second half) that orders shipments' changes.
pub(crate) const CHANGE_KEY: i32 = 1;

/// One immutable fact of a host's run (an event, an action as done),
/// numbered by the host's journal.
#[derive(Debug, Clone, PartialEq)]
pub struct ShippedRecord {
    pub run_id: String,
    /// Unique within the run, stable across shipments (the host journal's
    /// numbering, never a count made at shipping time).
    pub seq: i64,
    /// `event`, `action`, ...: what `body` is.
    pub kind: String,
    pub body: serde_json::Value,
}

/// A host's run as its journal last said (status moves on: running,
/// committed, rolled back), replaced when shipped again with anything new.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRun {
    pub run_id: String,
    pub runbook: String,
    pub runbook_version: String,
    /// The host journal's word for it (`committed`, `rolled-back`, ...).
    pub status: String,
    /// Unix milliseconds, the host's clock.
    pub started_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    pub error: Option<String>,
}

/// What one shipment changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ShipReport {
    /// Records new to the shared journal.
    pub new_records: u64,
    /// Run rows inserted or changed.
    pub runs_changed: u64,
}

impl Shared {
    /// Ships `host`'s runs and their records, for `fleet_run` (or none, a
    /// host's own run), in one transaction.
    pub async fn ship(
        &self,
        host: &str,
        fleet_run: Option<&str>,
        runs: &[HostRun],
        records: &[ShippedRecord],
    ) -> Result<ShipReport, PgError> {
        let doing = format!("shipping {host}'s run records");
        let c = self.client();
        // The change lock first, held to COMMIT: changes are allocated in
        // the order they become visible, so a viewer that read up to change
        // N never sees a smaller one appear later.
        c.batch_execute(&format!(
            "BEGIN; SELECT pg_advisory_xact_lock({LOCK_CLASS}, {CHANGE_KEY});"
        ))
        .await
        .map_err(|e| db(&doing, e))?;
        let result = async {
            let mut report = ShipReport::default();
            for r in runs {
                report.runs_changed += c
                    .execute(
                        "INSERT INTO mend_host_runs AS h (run_id, host, fleet_run, runbook,
                             runbook_version, status, started_at_ms, finished_at_ms, error,
                             change)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, nextval('mend_change_seq'))
                         ON CONFLICT (run_id) DO UPDATE SET status = EXCLUDED.status,
                             finished_at_ms = EXCLUDED.finished_at_ms,
                             error = EXCLUDED.error, shipped_at = now(),
                             change = EXCLUDED.change
                         WHERE (h.status, h.finished_at_ms, h.error) IS DISTINCT FROM
                               (EXCLUDED.status, EXCLUDED.finished_at_ms, EXCLUDED.error)",
                        &[
                            &r.run_id,
                            &host,
                            &fleet_run,
                            &r.runbook,
                            &r.runbook_version,
                            &r.status,
                            &r.started_at_ms,
                            &r.finished_at_ms,
                            &r.error,
                        ],
                    )
                    .await
                    .map_err(|e| db(&doing, e))?;
            }
            if !records.is_empty() {
                let run_ids: Vec<&str> = records.iter().map(|r| r.run_id.as_str()).collect();
                let seqs: Vec<i64> = records.iter().map(|r| r.seq).collect();
                let kinds: Vec<&str> = records.iter().map(|r| r.kind.as_str()).collect();
                let bodies: Vec<String> = records.iter().map(|r| r.body.to_string()).collect();
                // One statement for the lot: unnest the columns. Only the
                // new rows keep their change (a conflicting one's is a gap),
                // numbered in the order given (events by their id).
                report.new_records = c
                    .execute(
                        "INSERT INTO mend_run_records
                             (run_id, seq, host, fleet_run, kind, body, change)
                         SELECT r, s, $3, $4, k, b::jsonb, nextval('mend_change_seq')
                         FROM (SELECT * FROM unnest($1::text[], $2::bigint[], $5::text[],
                                   $6::text[]) WITH ORDINALITY AS t(r, s, k, b, n)
                               WHERE NOT EXISTS (SELECT 1 FROM mend_run_records x
                                   WHERE x.run_id = t.r AND x.seq = t.s)
                               ORDER BY n) t
                         ON CONFLICT (run_id, seq) DO NOTHING",
                        &[&run_ids, &seqs, &host, &fleet_run, &kinds, &bodies],
                    )
                    .await
                    .map_err(|e| db(&doing, e))?;
            }
            Ok(report)
        }
        .await;
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        c.batch_execute(end).await.map_err(|e| db(&doing, e))?;
        result
    }

    /// The records shipped for one run, in order.
    pub async fn records(&self, run_id: &str) -> Result<Vec<ShippedRecord>, PgError> {
        let rows = self
            .client()
            .query(
                "SELECT run_id, seq, kind, body::text FROM mend_run_records
                 WHERE run_id = $1 ORDER BY seq",
                &[&run_id],
            )
            .await
            .map_err(|e| db("reading run records", e))?;
        rows.iter()
            .map(|r| {
                let body: String = r.get(3);
                Ok(ShippedRecord {
                    run_id: r.get(0),
                    seq: r.get(1),
                    kind: r.get(2),
                    body: serde_json::from_str(&body)
                        .map_err(|e| PgError::Db(format!("run record body: {e}")))?,
                })
            })
            .collect()
    }
}
