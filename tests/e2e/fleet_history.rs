//! `mend fleet history --journal DSN` against a real PostgreSQL: a
//! controller with an empty state directory lists what other controllers
//! recorded in the shared journal; a transaction pooler and a bad DSN are
//! bad input (exit 2).

use mend_journal::pg::{
    Controller, FleetRunStatus, HostOutcome, HostRun, NewFleetRun, Shared, ShippedRecord,
};

use crate::common::*;
use crate::pg_cluster::Pg;

/// Controller `ctl-a` rolls `nginx-distribute-certificate` out to h1
/// (committed) and h2 (rolled back), through the library the fleet
/// controller uses.
fn record_a_rollout(pg: &Pg) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let s = Shared::connect(&pg.dsn()).await.unwrap();
        let who = Controller {
            host: "ctl-a".into(),
            pid: 4242,
            fleet_run: "F-A".into(),
        };
        let lease = s
            .acquire("nginx-distribute-certificate", &who)
            .await
            .unwrap();
        s.begin_fleet_run(
            &lease,
            &NewFleetRun {
                id: "F-A".into(),
                runbook_version: "1.0.0".into(),
                runbook_sha256: "ab".repeat(32),
                operator: "alice".into(),
            },
        )
        .await
        .unwrap();
        for (batch, host, outcome, status, error) in [
            (0, "h1", HostOutcome::Committed, "committed", None),
            (
                1,
                "h2",
                HostOutcome::RolledBack,
                "rolled-back",
                Some("nginx -t failed"),
            ),
        ] {
            let run_id = format!("R-{host}");
            s.host_started(&lease, "F-A", host, batch, Some(&run_id))
                .await
                .unwrap();
            let run = HostRun {
                run_id: run_id.clone(),
                runbook: "nginx-distribute-certificate".into(),
                runbook_version: "1.0.0".into(),
                status: status.into(),
                started_at_ms: 1_795_316_400_000,
                finished_at_ms: Some(1_795_316_460_000),
                error: error.map(String::from),
            };
            let rec = ShippedRecord {
                run_id: run_id.clone(),
                seq: 1,
                kind: "event".into(),
                body: serde_json::json!({"message": "done"}),
            };
            s.ship(host, Some("F-A"), &[run], &[rec]).await.unwrap();
            s.host_finished(&lease, "F-A", host, None, outcome, error)
                .await
                .unwrap();
        }
        s.finish_fleet_run(&lease, "F-A", FleetRunStatus::Failed, Some("h2 failed"))
            .await
            .unwrap();
    });
}

#[test]
fn fleet_history_from_a_controller_with_no_state() {
    let pg = Pg::start();
    record_a_rollout(&pg);
    let f = Fixture::new();
    let ran = f.mend(&["fleet", "history", "--journal", &pg.dsn()]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    let lines: Vec<&str> = ran.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", ran.stdout);
    assert!(
        lines[0].starts_with("F-A  failed      nginx-distribute-certificate 1.0.0  20"),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].ends_with("by alice on ctl-a pid 4242 (token 1)"),
        "{}",
        lines[0]
    );
    assert_eq!(lines[1], "    error: h2 failed");
    assert_eq!(
        lines[2].trim_end(),
        "    batch 0  h1               committed   run R-h1 (committed)"
    );
    assert_eq!(
        lines[3],
        "    batch 1  h2               rolled-back run R-h2 (rolled-back)  nginx -t failed"
    );
    // Filters, and JSON for scripts.
    let none = f.mend(&["fleet", "history", "--journal", &pg.dsn(), "--host", "h9"]);
    assert_eq!(none.code, 0, "{}", none.text());
    assert_eq!(none.stdout, "no fleet runs in the shared journal\n");
    let json = f.mend(&["--json", "fleet", "history", "--journal", &pg.dsn()]);
    assert_eq!(json.code, 0, "{}", json.text());
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v[0]["hosts"][1]["host"], "h2");
    assert_eq!(v[0]["hosts"][1]["run_status"], "rolled-back");
    // Nothing was written by reading: no state directory appeared.
    assert!(!f.state().join("journal.db").exists());
}

#[test]
fn fleet_history_refuses_a_transaction_pooler_and_a_bad_dsn() {
    let mut pg = Pg::start();
    let f = Fixture::new();
    let bad = f.mend(&["fleet", "history", "--journal", "host=/x port=many"]);
    assert_eq!(bad.code, 2, "{}", bad.text());
    assert!(
        bad.stderr.contains("the DSN does not parse"),
        "{}",
        bad.stderr
    );
    let Some(transaction) = pg.bouncer("transaction") else {
        println!(
            "SKIPPED the pooler half: {} is not installed (.ci/run installs Debian's pgbouncer)",
            crate::pg_cluster::PGBOUNCER
        );
        return;
    };
    let ran = f.mend(&["fleet", "history", "--journal", &transaction]);
    assert_eq!(ran.code, 2, "{}", ran.text());
    assert!(
        ran.stderr.contains("transaction-pooling proxy")
            && ran.stderr.contains("pool_mode = session"),
        "{}",
        ran.stderr
    );
}
