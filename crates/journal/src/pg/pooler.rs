//! The connect-time check that refuses a transaction-pooling proxy
//! (PgBouncer `pool_mode = transaction` or `statement`). Through one, a
//! "session" is lent a server backend per transaction: a session advisory
//! lock is taken on one backend and the next statement runs on another, so
//! the fleet lock would hold nothing. `SHOW pool_mode` cannot tell (it
//! exists only on PgBouncer's admin console), so mend tests the behaviour:
//!
//! 1. sessions A (the one mend keeps) and B (opened for the test);
//! 2. `pg_backend_pid()` on A, then B, then A again;
//! 3. a probe advisory lock taken on A, tried from B, then looked up in
//!    `pg_locks` from A.
//!
//! A direct connection or a session-pooling PgBouncer passes. It fails if A
//! and B share a backend, A's backend changed, B got the lock too, or
//! `pg_locks` does not show A's backend holding it. Simple queries only: no
//! prepared statement for a pooler to lose.

use tokio_postgres::{Client, Config, SimpleQueryMessage};

use super::{LOCK_CLASS, PgError, Shared, db, open};

async fn one(c: &Client, sql: &str) -> Result<String, PgError> {
    let doing = "checking for a connection pooler";
    for m in c.simple_query(sql).await.map_err(|e| db(doing, e))? {
        if let SimpleQueryMessage::Row(r) = m {
            return Ok(r.get(0).unwrap_or_default().to_string());
        }
    }
    Err(PgError::Db(format!(
        "shared journal: {doing}: `{sql}` returned no row"
    )))
}

pub(super) async fn check(a: &Shared, config: &Config, target: &str) -> Result<(), PgError> {
    let b = open(config, target).await?;
    let (ca, cb) = (a.client(), b.client());
    // A key of this process alone, so two controllers checking at once do
    // not see each other's probe.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let key = format!(
        "hashtext('mend pooler probe {} {nanos}')",
        std::process::id()
    );
    let a1 = one(ca, "SELECT pg_backend_pid()").await?;
    let b1 = one(cb, "SELECT pg_backend_pid()").await?;
    let a2 = one(ca, "SELECT pg_backend_pid()").await?;
    let got_a = one(
        ca,
        &format!("SELECT pg_try_advisory_lock({LOCK_CLASS}, {key})"),
    )
    .await?;
    let got_b = one(
        cb,
        &format!("SELECT pg_try_advisory_lock({LOCK_CLASS}, {key})"),
    )
    .await?;
    let held_by_a = one(
        ca,
        &format!(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory'
               AND classid = {LOCK_CLASS}::oid AND objid = {key}::oid AND objsubid = 2
               AND pid = pg_backend_pid() AND granted)"
        ),
    )
    .await?;
    // Let go as often as taken: through a pooler both takes may have landed
    // on one server backend, which outlives this check in the pool.
    let unlock = format!("SELECT pg_advisory_unlock({LOCK_CLASS}, {key})");
    if got_a == "t" {
        let _ = ca.simple_query(&unlock).await;
    }
    if got_b == "t" {
        let _ = cb.simple_query(&unlock).await;
    }
    drop(b);
    let mut seen = Vec::new();
    if a1 == b1 {
        seen.push(format!("two sessions shared server backend {a1}"));
    }
    if a1 != a2 {
        seen.push(format!(
            "one session moved from backend {a1} to {a2} between statements"
        ));
    }
    if got_a != "t" {
        seen.push("a probe lock could not be taken".to_string());
    }
    if got_b == "t" {
        seen.push("a second session took a lock the first held".to_string());
    }
    if held_by_a != "t" {
        seen.push("pg_locks did not show the lock held by the session that took it".to_string());
    }
    if seen.is_empty() {
        return Ok(());
    }
    Err(PgError::Pooler(format!(
        "shared journal {target}: reached through a transaction-pooling proxy ({}); a \
         session advisory lock would not hold, so the fleet lock cannot work. Connect to \
         PostgreSQL directly, or through a PgBouncer with pool_mode = session",
        seen.join("; ")
    )))
}
