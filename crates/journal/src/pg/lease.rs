//! The fleet lock: one rollout of a runbook at a time, across controllers.
//!
//! Two parts, because each alone is not enough:
//! - a session advisory lock `(LOCK_CLASS, hashtext(runbook))`: the server
//!   frees it when the holder's session ends (a SIGKILLed controller, a cut
//!   network), so no lock outlives its controller;
//! - a lease row with a fencing token, raised by every new holder: a
//!   controller that lost its session (and so its lock) may not know it yet;
//!   every write it makes is checked against the token, so once another
//!   controller took the lock, the stale one's writes are refused.

use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::{Controller, LOCK_CLASS, PgError, Shared, db};
use crate::format_utc;

/// The lock of one runbook, as the acquirer holds it. Plain data: a fenced
/// write checks its token on whatever session carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub runbook: String,
    /// The fencing token: raised by one each time anyone takes the lock.
    pub token: i64,
    pub controller: Controller,
    /// The server process of the session holding the advisory lock.
    pub backend_pid: i32,
}

/// Who holds a lock, as a refusal names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub runbook: String,
    /// The holding session's server process, from `pg_locks`.
    pub backend_pid: Option<i32>,
    /// The lease row, when it is the holder's (`None`: the holder has taken
    /// the advisory lock but not yet written its lease, or the lease row
    /// names another backend).
    pub lease: Option<LeaseRow>,
}

/// A lease row as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    /// The controller's host name.
    pub controller: String,
    pub pid: i32,
    pub fleet_run: String,
    /// Unix milliseconds, the server's clock.
    pub since_ms: i64,
    pub token: i64,
    pub backend_pid: i32,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.lease {
            Some(l) => write!(
                f,
                "fleet lock on {} held by {} pid {} (fleet run {}, since {}, token {}); \
                 wait for that rollout to end, or if that controller is gone, break the \
                 lock with --break-lock",
                self.runbook,
                l.controller,
                l.pid,
                l.fleet_run,
                format_utc(l.since_ms.div_euclid(1000)),
                l.token
            ),
            None => write!(
                f,
                "fleet lock on {} held by PostgreSQL backend {} that has not written its \
                 lease yet; try again in a moment",
                self.runbook,
                self.backend_pid
                    .map_or_else(|| "(gone)".to_string(), |p| p.to_string())
            ),
        }
    }
}

/// What `break_lock` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenLock {
    /// The holder whose backend was terminated; `None` when nobody held it.
    pub was: Option<Holder>,
    /// The lock, now this controller's.
    pub lease: Lease,
}

/// The granted advisory lock's holder, in this database.
const HOLDER_PID: &str = "SELECT pid FROM pg_locks WHERE locktype = 'advisory'
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND classid = $1::int::oid AND objid = hashtext($2)::oid AND objsubid = 2 AND granted";

fn lease_row(r: &Row) -> LeaseRow {
    LeaseRow {
        controller: r.get("controller"),
        pid: r.get("pid"),
        fleet_run: r.get("fleet_run"),
        since_ms: r.get("since_ms"),
        token: r.get("token"),
        backend_pid: r.get("backend_pid"),
    }
}

impl Shared {
    /// Takes the fleet lock on `runbook` for `who`, or says who holds it
    /// ([`PgError::Held`]). Never waits.
    pub async fn acquire(&self, runbook: &str, who: &Controller) -> Result<Lease, PgError> {
        let c = self.client();
        let got: bool = c
            .query_one(
                "SELECT pg_try_advisory_lock($1, hashtext($2))",
                &[&LOCK_CLASS, &runbook],
            )
            .await
            .map_err(|e| db("taking the fleet lock", e))?
            .get(0);
        if !got {
            return Err(PgError::Held(self.holder(runbook).await?));
        }
        let pid = who.pid as i32;
        let row = c
            .query_one(
                "INSERT INTO mend_fleet_lease AS l
                     (runbook, token, controller, pid, fleet_run, since, backend_pid)
                 VALUES ($1, 1, $2, $3, $4, now(), pg_backend_pid())
                 ON CONFLICT (runbook) DO UPDATE SET token = l.token + 1,
                     controller = EXCLUDED.controller, pid = EXCLUDED.pid,
                     fleet_run = EXCLUDED.fleet_run, since = now(),
                     backend_pid = EXCLUDED.backend_pid
                 RETURNING token, backend_pid",
                &[&runbook, &who.host, &pid, &who.fleet_run],
            )
            .await;
        let row = match row {
            Ok(r) => r,
            Err(e) => {
                // No lease, no lock: leave nothing half-taken.
                let _ = c
                    .execute(
                        "SELECT pg_advisory_unlock($1, hashtext($2))",
                        &[&LOCK_CLASS, &runbook],
                    )
                    .await;
                return Err(db("writing the fleet lease", e));
            }
        };
        Ok(Lease {
            runbook: runbook.to_string(),
            token: row.get(0),
            controller: who.clone(),
            backend_pid: row.get(1),
        })
    }

    /// Who holds the lock on `runbook` now, if anyone.
    pub async fn holder(&self, runbook: &str) -> Result<Holder, PgError> {
        let c = self.client();
        let doing = "reading the fleet lock's holder";
        let backend_pid: Option<i32> = c
            .query_opt(HOLDER_PID, &[&LOCK_CLASS, &runbook])
            .await
            .map_err(|e| db(doing, e))?
            .map(|r| r.get(0));
        let lease = c
            .query_opt(
                "SELECT controller, pid, fleet_run, token, backend_pid,
                        (extract(epoch FROM since) * 1000)::bigint AS since_ms
                 FROM mend_fleet_lease WHERE runbook = $1",
                &[&runbook],
            )
            .await
            .map_err(|e| db(doing, e))?
            .map(|r| lease_row(&r))
            // A lease row of an earlier holder names nobody who holds it now.
            .filter(|l| Some(l.backend_pid) == backend_pid);
        Ok(Holder {
            runbook: runbook.to_string(),
            backend_pid,
            lease,
        })
    }

    /// Before each batch: this session still holds the lock and the lease
    /// is still the current one; otherwise [`PgError::Fenced`], and the
    /// controller must stop starting hosts.
    pub async fn check(&self, lease: &Lease) -> Result<(), PgError> {
        let row = self
            .client()
            .query_one(
                "SELECT (SELECT token FROM mend_fleet_lease WHERE runbook = $2),
                        EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory'
                            AND classid = $1::int::oid AND objid = hashtext($2)::oid
                            AND objsubid = 2 AND pid = pg_backend_pid() AND granted)",
                &[&LOCK_CLASS, &lease.runbook],
            )
            .await
            .map_err(|e| lost(lease, e))?;
        let token: Option<i64> = row.get(0);
        let mine: bool = row.get(1);
        if token != Some(lease.token) {
            return Err(superseded(lease, token));
        }
        if !mine {
            return Err(PgError::Fenced(format!(
                "fleet lock on {}: this controller's session no longer holds it (token {}); \
                 stopping",
                lease.runbook, lease.token
            )));
        }
        Ok(())
    }

    /// One statement, run only if `lease` is still current: the lease row is
    /// read `FOR SHARE` in the same transaction, so a new holder's token
    /// bump waits for this write or this write sees the bump.
    pub(crate) async fn fenced(
        &self,
        lease: &Lease,
        doing: &str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, PgError> {
        let c = self.client();
        c.batch_execute("BEGIN").await.map_err(|e| lost(lease, e))?;
        let result = async {
            let token: Option<i64> = c
                .query_opt(
                    "SELECT token FROM mend_fleet_lease WHERE runbook = $1 FOR SHARE",
                    &[&lease.runbook],
                )
                .await
                .map_err(|e| lost(lease, e))?
                .map(|r| r.get(0));
            if token != Some(lease.token) {
                return Err(PgError::Fenced(format!(
                    "{doing}: refused: {}",
                    superseded(lease, token)
                )));
            }
            c.execute(sql, params).await.map_err(|e| db(doing, e))
        }
        .await;
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        c.batch_execute(end).await.map_err(|e| db(doing, e))?;
        result
    }

    /// Lets the lock go, if this session holds it. The lease row stays, so
    /// the token only ever rises.
    pub async fn release(&self, lease: &Lease) -> Result<(), PgError> {
        self.client()
            .execute(
                "SELECT pg_advisory_unlock($1, hashtext($2))",
                &[&LOCK_CLASS, &lease.runbook],
            )
            .await
            .map_err(|e| db("releasing the fleet lock", e))?;
        Ok(())
    }

    /// `--break-lock` (the controller asks the operator first): terminates
    /// the session holding the lock, but only the one `pg_locks` shows
    /// holding it and the lease names; then takes the lock for `who` and
    /// journals the break in `mend_fleet_events`.
    pub async fn break_lock(&self, runbook: &str, who: &Controller) -> Result<BrokenLock, PgError> {
        let holder = self.holder(runbook).await?;
        let was = match holder.backend_pid {
            None => None,
            Some(pid) => {
                if holder.lease.is_none() {
                    // pg_locks names a backend the lease does not: it may
                    // not be mend's. Terminate nothing.
                    return Err(PgError::Held(holder));
                }
                let done: bool = self
                    .client()
                    .query_one("SELECT pg_terminate_backend($1, 10000)", &[&pid])
                    .await
                    .map_err(|e| db(&format!("terminating backend {pid}"), e))?
                    .get(0);
                if !done {
                    return Err(PgError::Db(format!(
                        "fleet lock on {runbook}: backend {pid} did not end within 10 s of \
                         pg_terminate_backend; nothing else was done"
                    )));
                }
                Some(holder)
            }
        };
        let lease = self.acquire(runbook, who).await?;
        let message = match &was {
            Some(h) => format!("broke the lock: {h}; backend terminated"),
            None => "break-lock: nobody held the lock".to_string(),
        };
        self.client()
            .execute(
                "INSERT INTO mend_fleet_events (runbook, fleet_run, controller, kind, message)
                 VALUES ($1, $2, $3, 'break-lock', $4)",
                &[
                    &runbook,
                    &who.fleet_run,
                    &format!("{} pid {}", who.host, who.pid),
                    &message,
                ],
            )
            .await
            .map_err(|e| db("journaling the broken lock", e))?;
        Ok(BrokenLock { was, lease })
    }
}

fn superseded(lease: &Lease, now: Option<i64>) -> PgError {
    PgError::Fenced(format!(
        "fleet lock on {}: this controller's lease (token {}) was superseded (token now {}); \
         another controller holds the lock: stopping",
        lease.runbook,
        lease.token,
        now.map_or_else(|| "none".to_string(), |t| t.to_string())
    ))
}

/// The session itself failed: its lock is gone with it.
fn lost(lease: &Lease, e: tokio_postgres::Error) -> PgError {
    PgError::Fenced(format!(
        "fleet lock on {}: lost the session that held it (token {}): {e}; stopping",
        lease.runbook, lease.token
    ))
}
