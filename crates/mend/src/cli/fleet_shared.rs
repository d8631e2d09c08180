//! `mend fleet show FLEETRUN --journal DSN` and `mend fleet prune --journal
//! DSN --keep-days N`: one fleet run as the shared PostgreSQL journal holds
//! it (any controller can ask), and the retention of that shared history.

use mend_human::time::format_utc;
use mend_journal::pg::Shared;

use crate::cli::Ctx;
use crate::cli::fleet_history::failure;
use crate::exit;
use crate::outcome::Failure;

pub(crate) async fn show(cx: &Ctx, dsn: &str, fleet_run: &str) -> Result<i32, Failure> {
    let shared = Shared::connect(dsn).await.map_err(failure)?;
    let Some(run) = shared.show(fleet_run).await.map_err(failure)? else {
        return Err(Failure::input(
            fleet_run,
            format!(
                "no fleet run {fleet_run} in the shared journal ({})",
                shared.target()
            ),
            Some("`mend fleet history --journal DSN` lists them".into()),
        ));
    };
    if cx.out.json {
        cx.out.print_json(&serde_json::json!(run));
        return Ok(exit::SUCCESS);
    }
    println!(
        "fleet run {}: {} ({}) by {} on {} pid {}, started {}",
        run.id,
        run.runbook,
        run.status,
        run.operator,
        run.controller,
        run.pid,
        format_utc(run.started_at_ms.div_euclid(1000))
    );
    for h in &run.hosts {
        println!(
            "  {}  batch {}  {}  {}{}{}",
            h.host,
            h.batch,
            h.status,
            h.run_id.as_deref().unwrap_or("-"),
            h.run_status
                .as_deref()
                .map(|s| format!(" ({s})"))
                .unwrap_or_default(),
            h.error
                .as_deref()
                .map(|e| format!("  {e}"))
                .unwrap_or_default()
        );
    }
    Ok(exit::SUCCESS)
}

pub(crate) async fn prune(cx: &Ctx, dsn: &str, keep_days: u16) -> Result<i32, Failure> {
    let shared = Shared::connect(dsn).await.map_err(failure)?;
    let n = shared.prune(i32::from(keep_days)).await.map_err(failure)?;
    if cx.out.json {
        cx.out
            .print_json(&serde_json::json!({"fleet_runs_deleted": n, "keep_days": keep_days}));
    } else {
        println!(
            "pruned {n} fleet runs finished more than {keep_days} days ago, with their hosts \
             and the records shipped as long ago, from {}",
            shared.target()
        );
    }
    Ok(exit::SUCCESS)
}
