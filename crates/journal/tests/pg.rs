//! The fleet's shared journal and lock against a real PostgreSQL 15 (a
//! private cluster per test, see tests/support/pg_cluster.rs) and a real
//! PgBouncer. `.ci/run` installs both.

#[path = "../../../tests/support/pg_cluster.rs"]
mod pg_cluster;

use std::io::BufRead;
use std::time::Duration;

use mend_journal::pg::{
    Controller, FleetRunStatus, HistoryQuery, HostOutcome, HostRun, NewFleetRun, PgError, Shared,
    ShipReport, ShippedRecord,
};
use pg_cluster::Pg;

const RUNBOOK: &str = "nginx-distribute-certificate";

fn ctl(host: &str, pid: u32, fleet_run: &str) -> Controller {
    Controller {
        host: host.into(),
        pid,
        fleet_run: fleet_run.into(),
    }
}

fn new_run(id: &str) -> NewFleetRun {
    NewFleetRun {
        id: id.into(),
        runbook_version: "1.0.0".into(),
        runbook_sha256: "ab".repeat(32),
        operator: "alice".into(),
    }
}

#[tokio::test]
async fn second_controller_refused_names_holder() {
    let pg = Pg::start();
    let a = Shared::connect(&pg.dsn()).await.unwrap();
    let b = Shared::connect(&pg.dsn()).await.unwrap();
    let lease = a
        .acquire(RUNBOOK, &ctl("ctl-a", 4242, "F-A"))
        .await
        .unwrap();
    assert_eq!(lease.token, 1);
    let err = b
        .acquire(RUNBOOK, &ctl("ctl-b", 77, "F-B"))
        .await
        .unwrap_err();
    let msg = err.to_string();
    println!("{msg}");
    let PgError::Held(holder) = &err else {
        panic!("expected Held, got {err:?}")
    };
    assert_eq!(holder.backend_pid, Some(a.backend_pid().await.unwrap()));
    for part in [
        "fleet lock on nginx-distribute-certificate held by ctl-a pid 4242",
        "fleet run F-A",
        "since 20",
        "token 1",
        "--break-lock",
    ] {
        assert!(msg.contains(part), "{part:?} not in {msg:?}");
    }
    assert!(!err.is_bad_input());
    // A's lease is still good; B's refusal took nothing.
    a.check(&lease).await.unwrap();
    // Once A lets go, B takes it with the next token.
    a.release(&lease).await.unwrap();
    let lease_b = b.acquire(RUNBOOK, &ctl("ctl-b", 77, "F-B")).await.unwrap();
    assert_eq!(lease_b.token, 2);
    assert!(matches!(a.check(&lease).await, Err(PgError::Fenced(_))));
    // Another runbook's lock is another lock.
    a.acquire("other-runbook", &ctl("ctl-a", 4242, "F-A2"))
        .await
        .unwrap();
}

/// Not a test on its own: the controller `sigkill_frees_lock` starts and
/// kills. Takes the lock, says so on stdout, and waits to be killed.
#[tokio::test]
#[ignore = "a helper process for sigkill_frees_lock"]
async fn hold_lock_child() {
    let dsn = std::env::var("MEND_TEST_PG_DSN").expect("started by sigkill_frees_lock");
    let shared = Shared::connect(&dsn).await.unwrap();
    let lease = shared
        .acquire(RUNBOOK, &Controller::this("F-CHILD"))
        .await
        .unwrap();
    println!("HELD token {}", lease.token);
    tokio::time::sleep(Duration::from_secs(600)).await;
}

#[tokio::test]
async fn sigkill_frees_lock() {
    let pg = Pg::start();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "hold_lock_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("MEND_TEST_PG_DSN", pg.dsn())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    // If this test fails, the holder must not outlive it.
    struct Reap(Option<u32>);
    impl Drop for Reap {
        fn drop(&mut self) {
            if let Some(pid) = self
                .0
                .and_then(|p| rustix::process::Pid::from_raw(p as i32))
            {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    }
    let mut reap = Reap(Some(child.id()));
    // libtest writes "test hold_lock_child ... " with no newline first.
    let mut line = String::new();
    while !line.contains("HELD") {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the holder ended before taking the lock"
        );
    }
    assert!(line.trim_end().ends_with("HELD token 1"), "{line}");
    let b = Shared::connect(&pg.dsn()).await.unwrap();
    let who = ctl("ctl-b", 77, "F-B");
    let err = b.acquire(RUNBOOK, &who).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("pid {} (fleet run F-CHILD", child.id())),
        "{msg}"
    );

    rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    child.wait().unwrap();
    reap.0 = None; // reaped: its pid may be reused
    // The server ends the dead client's session when it sees the socket
    // close; until then the lock is still held. Wait for that, not a time.
    let mut tries = 0;
    let lease = loop {
        match b.acquire(RUNBOOK, &who).await {
            Ok(l) => break l,
            Err(PgError::Held(_)) if tries < 3000 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => panic!("the killed holder's lock was not freed: {e}"),
        }
    };
    assert_eq!(lease.token, 2);
    b.check(&lease).await.unwrap();
}

#[tokio::test]
async fn stale_token_refused() {
    let pg = Pg::start();
    let b = Shared::connect(&pg.dsn()).await.unwrap();
    let lease_b = b.acquire(RUNBOOK, &ctl("ctl-b", 2, "F-B")).await.unwrap();
    b.begin_fleet_run(&lease_b, &new_run("F-B")).await.unwrap();
    b.host_started(&lease_b, "F-B", "h1", 0, None)
        .await
        .unwrap();

    // B's session is cut (a network partition; here pg_terminate_backend):
    // its lock goes with it, and C takes the lock.
    let b_pid = b.backend_pid().await.unwrap();
    pg.sql(
        "postgres",
        &format!("SELECT pg_terminate_backend({b_pid}, 10000)"),
    );
    assert!(matches!(b.check(&lease_b).await, Err(PgError::Fenced(_))));
    let c = Shared::connect(&pg.dsn()).await.unwrap();
    let lease_c = c.acquire(RUNBOOK, &ctl("ctl-c", 3, "F-C")).await.unwrap();
    assert_eq!(lease_c.token, 2);

    // B reconnects and carries on with its old lease: every write refused.
    let b2 = Shared::connect(&pg.dsn()).await.unwrap();
    let err = b2
        .host_started(&lease_b, "F-B", "h2", 1, None)
        .await
        .unwrap_err();
    println!("{err}");
    assert!(matches!(err, PgError::Fenced(_)), "{err:?}");
    assert!(err.to_string().contains("token 1"), "{err}");
    assert!(err.to_string().contains("token now 2"), "{err}");
    let err = b2
        .finish_fleet_run(&lease_b, "F-B", FleetRunStatus::Committed, None)
        .await
        .unwrap_err();
    assert!(matches!(err, PgError::Fenced(_)), "{err:?}");
    assert!(matches!(b2.check(&lease_b).await, Err(PgError::Fenced(_))));
    // Nothing of B's reached the tables after the token moved.
    assert_eq!(
        pg.sql(
            "postgres",
            "SELECT string_agg(host, ','), (SELECT status FROM mend_fleet_runs WHERE id = 'F-B')
             FROM mend_fleet_hosts WHERE fleet_run = 'F-B'"
        ),
        "h1|running"
    );
    // The current holder writes.
    c.begin_fleet_run(&lease_c, &new_run("F-C")).await.unwrap();
    c.check(&lease_c).await.unwrap();
}

#[tokio::test]
async fn break_lock_terminates_only_the_holder() {
    let pg = Pg::start();
    let a = Shared::connect(&pg.dsn()).await.unwrap();
    let bystander = Shared::connect(&pg.dsn()).await.unwrap();
    let lease_a = a.acquire(RUNBOOK, &ctl("ctl-a", 1, "F-A")).await.unwrap();
    let b = Shared::connect(&pg.dsn()).await.unwrap();
    let broken = b
        .break_lock(RUNBOOK, &ctl("ctl-b", 2, "F-B"))
        .await
        .unwrap();
    let was = broken.was.expect("A held it");
    assert_eq!(was.lease.as_ref().unwrap().controller, "ctl-a");
    assert_eq!(broken.lease.token, 2);
    assert!(matches!(a.check(&lease_a).await, Err(PgError::Fenced(_))));
    // Only the holder's session was ended.
    bystander.backend_pid().await.unwrap();
    let journaled = pg.sql(
        "postgres",
        "SELECT kind, controller, message FROM mend_fleet_events",
    );
    assert!(
        journaled.starts_with("break-lock|ctl-b pid 2|broke the lock: fleet lock on"),
        "{journaled}"
    );
    assert!(journaled.contains("held by ctl-a pid 1"), "{journaled}");
    // Breaking a lock nobody holds terminates nothing and takes it.
    b.release(&broken.lease).await.unwrap();
    let again = b
        .break_lock(RUNBOOK, &ctl("ctl-b", 2, "F-B2"))
        .await
        .unwrap();
    assert!(again.was.is_none());
    assert_eq!(again.lease.token, 3);
}

fn records(run: &str, seqs: &[i64]) -> Vec<ShippedRecord> {
    seqs.iter()
        .map(|&s| ShippedRecord {
            run_id: run.into(),
            seq: s,
            kind: "event".into(),
            body: serde_json::json!({"message": format!("action {s} done"), "name": "a\nb"}),
        })
        .collect()
}

fn host_run(id: &str, status: &str, finished: Option<i64>) -> HostRun {
    HostRun {
        run_id: id.into(),
        runbook: RUNBOOK.into(),
        runbook_version: "1.0.0".into(),
        status: status.into(),
        started_at_ms: 1_795_316_400_000,
        finished_at_ms: finished,
        error: None,
    }
}

#[tokio::test]
async fn ship_twice_adds_nothing() {
    let pg = Pg::start();
    let s = Shared::connect(&pg.dsn()).await.unwrap();
    let run = [host_run("R-h1", "running", None)];
    let first = s
        .ship("h1", Some("F-1"), &run, &records("R-h1", &[1, 2, 3]))
        .await
        .unwrap();
    assert_eq!(
        first,
        ShipReport {
            new_records: 3,
            runs_changed: 1
        }
    );
    let again = s
        .ship("h1", Some("F-1"), &run, &records("R-h1", &[1, 2, 3]))
        .await
        .unwrap();
    assert_eq!(again, ShipReport::default());
    // A later shipment overlapping the first adds only what is new.
    let done = [host_run("R-h1", "committed", Some(1_795_316_460_000))];
    let later = s
        .ship("h1", Some("F-1"), &done, &records("R-h1", &[2, 3, 4]))
        .await
        .unwrap();
    assert_eq!(
        later,
        ShipReport {
            new_records: 1,
            runs_changed: 1
        }
    );
    assert_eq!(
        pg.sql(
            "postgres",
            "SELECT count(*), (SELECT status FROM mend_host_runs) FROM mend_run_records"
        ),
        "4|committed"
    );
    let back = s.records("R-h1").await.unwrap();
    assert_eq!(back, records("R-h1", &[1, 2, 3, 4]));
}

#[tokio::test]
async fn history_from_two_controllers() {
    let pg = Pg::start();
    // Controller A rolls out to h1 (canary) and h2, then lets go.
    {
        let a = Shared::connect(&pg.dsn()).await.unwrap();
        let lease = a.acquire(RUNBOOK, &ctl("ctl-a", 10, "F-A")).await.unwrap();
        a.begin_fleet_run(&lease, &new_run("F-A")).await.unwrap();
        for (batch, host) in ["h1", "h2"].into_iter().enumerate() {
            a.check(&lease).await.unwrap();
            let run_id = format!("R-{host}");
            a.host_started(&lease, "F-A", host, batch as i32, Some(&run_id))
                .await
                .unwrap();
            a.ship(
                host,
                Some("F-A"),
                &[host_run(&run_id, "committed", Some(1_795_316_460_000))],
                &records(&run_id, &[1, 2]),
            )
            .await
            .unwrap();
            a.host_finished(&lease, "F-A", host, None, HostOutcome::Committed, None)
                .await
                .unwrap();
        }
        a.finish_fleet_run(&lease, "F-A", FleetRunStatus::Committed, None)
            .await
            .unwrap();
        a.release(&lease).await.unwrap();
    }
    // Controller B, elsewhere, rolls out to h3, which fails.
    {
        let b = Shared::connect(&pg.dsn()).await.unwrap();
        let lease = b.acquire(RUNBOOK, &ctl("ctl-b", 20, "F-B")).await.unwrap();
        b.begin_fleet_run(&lease, &new_run("F-B")).await.unwrap();
        b.host_started(&lease, "F-B", "h3", 0, Some("R-h3"))
            .await
            .unwrap();
        b.host_finished(
            &lease,
            "F-B",
            "h3",
            None,
            HostOutcome::RolledBack,
            Some("nginx -t failed"),
        )
        .await
        .unwrap();
        b.finish_fleet_run(&lease, "F-B", FleetRunStatus::Failed, Some("h3 failed"))
            .await
            .unwrap();
    }
    // A third controller with nothing of its own reads both.
    let c = Shared::connect(&pg.dsn()).await.unwrap();
    let all = c.history(&HistoryQuery::default()).await.unwrap();
    let ids: Vec<&str> = all.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["F-B", "F-A"]);
    let (b, a) = (&all[0], &all[1]);
    assert_eq!((b.controller.as_str(), b.pid, b.token), ("ctl-b", 20, 2));
    assert_eq!((a.controller.as_str(), a.pid, a.token), ("ctl-a", 10, 1));
    assert_eq!(a.status, "committed");
    assert_eq!(b.status, "failed");
    assert_eq!(b.error.as_deref(), Some("h3 failed"));
    assert!(a.finished_at_ms.unwrap() >= a.started_at_ms);
    let hosts: Vec<(&str, i32, &str, Option<&str>)> = a
        .hosts
        .iter()
        .map(|h| {
            (
                h.host.as_str(),
                h.batch,
                h.status.as_str(),
                h.run_status.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        hosts,
        [
            ("h1", 0, "committed", Some("committed")),
            ("h2", 1, "committed", Some("committed"))
        ]
    );
    assert_eq!(b.hosts[0].status, "rolled-back");
    assert_eq!(b.hosts[0].error.as_deref(), Some("nginx -t failed"));
    // Filters: by host, by runbook, and one fleet run by id.
    let on_h3 = c
        .history(&HistoryQuery {
            host: Some("h3".into()),
            ..HistoryQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(on_h3.len(), 1);
    assert_eq!(on_h3[0].id, "F-B");
    let other = c
        .history(&HistoryQuery {
            runbook: Some("other".into()),
            ..HistoryQuery::default()
        })
        .await
        .unwrap();
    assert!(other.is_empty());
    assert_eq!(c.show("F-A").await.unwrap().unwrap(), all[1]);
    assert!(c.show("F-none").await.unwrap().is_none());
}

#[tokio::test]
async fn transaction_pooler_refused() {
    let mut pg = Pg::start();
    let Some(transaction) = pg.bouncer("transaction") else {
        println!(
            "SKIPPED transaction_pooler_refused: {} is not installed (.ci/run installs \
             Debian's pgbouncer)",
            pg_cluster::PGBOUNCER
        );
        return;
    };
    let session = pg.bouncer("session").unwrap();
    let err = Shared::connect(&transaction).await.unwrap_err();
    println!("{err}");
    assert!(matches!(err, PgError::Pooler(_)), "{err:?}");
    assert!(err.is_bad_input());
    assert!(err.to_string().contains("pool_mode = session"), "{err}");
    // The refused connect created nothing.
    assert_eq!(
        pg.sql("postgres", "SELECT to_regclass('mend_schema') IS NULL"),
        "t"
    );
    // Session pooling keeps a session on one backend: it passes, and the
    // lock works through it.
    let s = Shared::connect(&session).await.unwrap();
    let lease = s.acquire(RUNBOOK, &ctl("ctl-s", 1, "F-S")).await.unwrap();
    s.check(&lease).await.unwrap();
    // No probe lock was left behind: the fleet lock is the only one.
    assert_eq!(
        pg.sql(
            "postgres",
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
        ),
        "1"
    );
}

#[tokio::test]
async fn newer_schema_refused() {
    let pg = Pg::start();
    drop(Shared::connect(&pg.dsn()).await.unwrap());
    pg.sql("postgres", "INSERT INTO mend_schema (version) VALUES (99)");
    let err = Shared::connect(&pg.dsn()).await.unwrap_err();
    assert!(err.is_bad_input());
    assert!(
        err.to_string().contains(&format!(
            "schema version 99, this mend knows up to {}",
            mend_journal::pg::SCHEMA_VERSION
        )),
        "{err}"
    );
}

#[tokio::test]
async fn bad_dsn_refused() {
    for dsn in ["host=/x port=notanumber", "dbname=x", "nosuchkey=1"] {
        let err = Shared::connect(dsn).await.unwrap_err();
        assert!(matches!(err, PgError::BadDsn(_)), "{dsn}: {err:?}");
        assert!(err.is_bad_input());
    }
}
