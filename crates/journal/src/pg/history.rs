//! Fleet runs and the hosts they reached: written by the lock holder, each
//! write fenced by its lease; read by any controller ("what ran where,
//! when, and how did it end").

use tokio_postgres::{Client, Row};

use super::{Lease, PgError, Shared, db};

/// A fleet run as it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFleetRun {
    pub id: String,
    pub runbook_version: String,
    pub runbook_sha256: String,
    /// Who ran it (the operator's login).
    pub operator: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetRunStatus {
    Running,
    /// Every host committed.
    Committed,
    /// A host failed and the stop rule ended the rollout.
    Failed,
    /// Stopped otherwise (fenced out, interrupted).
    Stopped,
    /// `--rollback-fleet` undid the hosts done.
    RolledBack,
}

impl FleetRunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FleetRunStatus::Running => "running",
            FleetRunStatus::Committed => "committed",
            FleetRunStatus::Failed => "failed",
            FleetRunStatus::Stopped => "stopped",
            FleetRunStatus::RolledBack => "rolled-back",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostOutcome {
    Running,
    Committed,
    Failed,
    RolledBack,
    Unreachable,
    Skipped,
}

impl HostOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            HostOutcome::Running => "running",
            HostOutcome::Committed => "committed",
            HostOutcome::Failed => "failed",
            HostOutcome::RolledBack => "rolled-back",
            HostOutcome::Unreachable => "unreachable",
            HostOutcome::Skipped => "skipped",
        }
    }
}

/// A fleet run as read back. Times are Unix milliseconds, server clock.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FleetRun {
    pub id: String,
    pub runbook: String,
    pub runbook_version: String,
    pub runbook_sha256: String,
    /// The controller's host name and pid.
    pub controller: String,
    pub pid: i32,
    pub operator: String,
    /// The lease token it ran under.
    pub token: i64,
    pub status: String,
    pub started_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    pub error: Option<String>,
    pub hosts: Vec<HostRow>,
}

/// One host of a fleet run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HostRow {
    pub host: String,
    pub batch: i32,
    /// The host's own run id, once it started one.
    pub run_id: Option<String>,
    pub status: String,
    pub started_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    pub error: Option<String>,
    /// The status the host's journal last shipped for `run_id`.
    pub run_status: Option<String>,
}

/// Which fleet runs `history` lists, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryQuery {
    pub limit: i64,
    pub runbook: Option<String>,
    /// Only fleet runs that reached this host.
    pub host: Option<String>,
}

impl Default for HistoryQuery {
    fn default() -> Self {
        HistoryQuery {
            limit: 20,
            runbook: None,
            host: None,
        }
    }
}

const FLEET_RUN_COLUMNS: &str = "id, runbook, runbook_version, runbook_sha256, controller,
    pid, operator, token, status, error,
    (extract(epoch FROM started_at) * 1000)::bigint AS started_at_ms,
    (extract(epoch FROM finished_at) * 1000)::bigint AS finished_at_ms";

fn fleet_run(r: &Row) -> FleetRun {
    FleetRun {
        id: r.get("id"),
        runbook: r.get("runbook"),
        runbook_version: r.get("runbook_version"),
        runbook_sha256: r.get("runbook_sha256"),
        controller: r.get("controller"),
        pid: r.get("pid"),
        operator: r.get("operator"),
        token: r.get("token"),
        status: r.get("status"),
        started_at_ms: r.get("started_at_ms"),
        finished_at_ms: r.get("finished_at_ms"),
        error: r.get("error"),
        hosts: Vec::new(),
    }
}

impl Shared {
    /// Records the start of a fleet run of `lease.runbook`, under `lease`.
    pub async fn begin_fleet_run(&self, lease: &Lease, run: &NewFleetRun) -> Result<(), PgError> {
        let pid = lease.controller.pid as i32;
        self.fenced(
            lease,
            &format!("starting fleet run {}", run.id),
            "INSERT INTO mend_fleet_runs (id, runbook, runbook_version, runbook_sha256,
                 controller, pid, operator, token, status)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'running')",
            &[
                &run.id,
                &lease.runbook,
                &run.runbook_version,
                &run.runbook_sha256,
                &lease.controller.host,
                &pid,
                &run.operator,
                &lease.token,
            ],
        )
        .await?;
        Ok(())
    }

    /// A host of `fleet_run` starts (or starts again, on resume), in `batch`.
    pub async fn host_started(
        &self,
        lease: &Lease,
        fleet_run: &str,
        host: &str,
        batch: i32,
        run_id: Option<&str>,
    ) -> Result<(), PgError> {
        self.fenced(
            lease,
            &format!("starting {host} in fleet run {fleet_run}"),
            "INSERT INTO mend_fleet_hosts (fleet_run, host, batch, run_id, status)
             VALUES ($1, $2, $3, $4, 'running')
             ON CONFLICT (fleet_run, host) DO UPDATE SET batch = EXCLUDED.batch,
                 run_id = coalesce(EXCLUDED.run_id, mend_fleet_hosts.run_id),
                 status = 'running', finished_at = NULL, error = NULL",
            &[&fleet_run, &host, &batch, &run_id],
        )
        .await?;
        Ok(())
    }

    /// A host of `fleet_run` ended (or its outcome changed: rolled back).
    pub async fn host_finished(
        &self,
        lease: &Lease,
        fleet_run: &str,
        host: &str,
        run_id: Option<&str>,
        outcome: HostOutcome,
        error: Option<&str>,
    ) -> Result<(), PgError> {
        let n = self
            .fenced(
                lease,
                &format!("recording {host}'s end in fleet run {fleet_run}"),
                "UPDATE mend_fleet_hosts SET status = $3, error = $4, finished_at = now(),
                     run_id = coalesce($5, run_id)
                 WHERE fleet_run = $1 AND host = $2",
                &[&fleet_run, &host, &outcome.as_str(), &error, &run_id],
            )
            .await?;
        if n == 0 {
            return Err(PgError::Db(format!(
                "shared journal: fleet run {fleet_run} has no host {host}: record its start first"
            )));
        }
        Ok(())
    }

    /// The fleet run ended.
    pub async fn finish_fleet_run(
        &self,
        lease: &Lease,
        fleet_run: &str,
        status: FleetRunStatus,
        error: Option<&str>,
    ) -> Result<(), PgError> {
        self.fenced(
            lease,
            &format!("finishing fleet run {fleet_run}"),
            "UPDATE mend_fleet_runs SET status = $2, error = $3, finished_at = now()
             WHERE id = $1",
            &[&fleet_run, &status.as_str(), &error],
        )
        .await?;
        Ok(())
    }

    /// Fleet runs, newest first, each with its hosts.
    pub async fn history(&self, q: &HistoryQuery) -> Result<Vec<FleetRun>, PgError> {
        history_on(self.client(), q).await
    }

    /// One fleet run with its hosts; `None` if the shared journal has none
    /// by that id.
    pub async fn show(&self, fleet_run_id: &str) -> Result<Option<FleetRun>, PgError> {
        show_on(self.client(), fleet_run_id).await
    }

    /// A decision of the controller about `fleet_run` (`rollback-fleet`,
    /// `settle: commit`, `settle: rollback`), journaled in
    /// `mend_fleet_events` before it is acted on. Not fenced: a fact about
    /// what this controller decided, whoever holds the lease now.
    pub async fn fleet_event(
        &self,
        runbook: &str,
        who: &super::Controller,
        kind: &str,
        message: &str,
    ) -> Result<(), PgError> {
        self.client()
            .execute(
                "INSERT INTO mend_fleet_events (runbook, fleet_run, controller, kind, message)
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &runbook,
                    &who.fleet_run,
                    &format!("{} pid {}", who.host, who.pid),
                    &kind,
                    &message,
                ],
            )
            .await
            .map_err(|e| db("journaling a fleet decision", e))?;
        Ok(())
    }

    /// A fleet run's events, oldest first: (unix ms, controller, kind, message).
    pub async fn fleet_events(
        &self,
        fleet_run_id: &str,
    ) -> Result<Vec<(i64, String, String, String)>, PgError> {
        fleet_events_on(self.client(), fleet_run_id).await
    }

    /// Retention: deletes fleet runs that finished more than `days` days ago
    /// (their hosts with them), and host runs and records shipped that long
    /// ago. Returns the fleet runs deleted.
    pub async fn prune(&self, days: i32) -> Result<u64, PgError> {
        let doing = "pruning the shared journal";
        let c = self.client();
        c.batch_execute("BEGIN").await.map_err(|e| db(doing, e))?;
        let result = async {
            let n = c
                .execute(
                    "DELETE FROM mend_fleet_runs WHERE finished_at < now() - make_interval(days => $1)",
                    &[&days],
                )
                .await
                .map_err(|e| db(doing, e))?;
            for sql in [
                "DELETE FROM mend_run_records WHERE shipped_at < now() - make_interval(days => $1)",
                "DELETE FROM mend_host_runs WHERE shipped_at < now() - make_interval(days => $1)
                     AND finished_at_ms IS NOT NULL",
                "DELETE FROM mend_fleet_events WHERE at < now() - make_interval(days => $1)",
            ] {
                c.execute(sql, &[&days]).await.map_err(|e| db(doing, e))?;
            }
            Ok(n)
        }
        .await;
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        c.batch_execute(end).await.map_err(|e| db(doing, e))?;
        result
    }
}

/// Fleet runs, newest first, each with its hosts, on any session (a
/// viewer's read-only one too).
pub async fn history_on(c: &Client, q: &HistoryQuery) -> Result<Vec<FleetRun>, PgError> {
    let doing = "reading the fleet history";
    let rows = c
        .query(
            &format!(
                "SELECT {FLEET_RUN_COLUMNS} FROM mend_fleet_runs f
                 WHERE ($1::text IS NULL OR runbook = $1)
                   AND ($2::text IS NULL OR EXISTS (SELECT 1 FROM mend_fleet_hosts h
                       WHERE h.fleet_run = f.id AND h.host = $2))
                 ORDER BY started_at DESC, id DESC LIMIT $3"
            ),
            &[&q.runbook, &q.host, &q.limit],
        )
        .await
        .map_err(|e| db(doing, e))?;
    let mut runs: Vec<FleetRun> = rows.iter().map(fleet_run).collect();
    for run in &mut runs {
        run.hosts = hosts_of(c, &run.id).await?;
    }
    Ok(runs)
}

/// One fleet run with its hosts; `None` if the shared journal has none
/// by that id.
pub async fn show_on(c: &Client, fleet_run_id: &str) -> Result<Option<FleetRun>, PgError> {
    let row = c
        .query_opt(
            &format!("SELECT {FLEET_RUN_COLUMNS} FROM mend_fleet_runs WHERE id = $1"),
            &[&fleet_run_id],
        )
        .await
        .map_err(|e| db("reading a fleet run", e))?;
    let Some(row) = row else { return Ok(None) };
    let mut run = fleet_run(&row);
    run.hosts = hosts_of(c, &run.id).await?;
    Ok(Some(run))
}

async fn hosts_of(c: &Client, fleet_run_id: &str) -> Result<Vec<HostRow>, PgError> {
    let rows = c
        .query(
            "SELECT h.host, h.batch, h.run_id, h.status, h.error, r.status AS run_status,
                 (extract(epoch FROM h.started_at) * 1000)::bigint AS started_at_ms,
                 (extract(epoch FROM h.finished_at) * 1000)::bigint AS finished_at_ms
             FROM mend_fleet_hosts h LEFT JOIN mend_host_runs r ON r.run_id = h.run_id
             WHERE h.fleet_run = $1 ORDER BY h.batch, h.host",
            &[&fleet_run_id],
        )
        .await
        .map_err(|e| db("reading a fleet run's hosts", e))?;
    Ok(rows
        .iter()
        .map(|r| HostRow {
            host: r.get("host"),
            batch: r.get("batch"),
            run_id: r.get("run_id"),
            status: r.get("status"),
            started_at_ms: r.get("started_at_ms"),
            finished_at_ms: r.get("finished_at_ms"),
            error: r.get("error"),
            run_status: r.get("run_status"),
        })
        .collect())
}

/// A fleet run's events, oldest first: (unix ms, controller, kind, message).
pub async fn fleet_events_on(
    c: &Client,
    fleet_run_id: &str,
) -> Result<Vec<(i64, String, String, String)>, PgError> {
    let rows = c
        .query(
            "SELECT (extract(epoch FROM at) * 1000)::bigint, controller, kind, message
             FROM mend_fleet_events WHERE fleet_run = $1 ORDER BY id",
            &[&fleet_run_id],
        )
        .await
        .map_err(|e| db("reading a fleet run's events", e))?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect())
}
