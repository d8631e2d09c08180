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
    // Each host's actions as its journal shipped them, and whether undone.
    let mut actions = std::collections::BTreeMap::new();
    for h in &run.hosts {
        if let Some(id) = &h.run_id {
            let recs = shared.records(id).await.map_err(failure)?;
            actions.insert(h.host.clone(), host_actions(&recs));
        }
    }
    let events = shared.fleet_events(&run.id).await.map_err(failure)?;
    if cx.out.json {
        let mut v = serde_json::json!(run);
        v["actions"] = serde_json::json!(actions);
        v["events"] = events
            .iter()
            .map(|(at, by, kind, message)| {
                serde_json::json!({"at_ms": at, "controller": by, "kind": kind, "message": message})
            })
            .collect();
        cx.out.print_json(&v);
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
        for (text, undone) in actions.get(&h.host).into_iter().flatten() {
            println!("      {text}{}", if *undone { "  (undone)" } else { "" });
        }
    }
    for (at, by, kind, message) in &events {
        println!(
            "  {kind}: {message}  by {by} at {}",
            format_utc(at.div_euclid(1000))
        );
    }
    Ok(exit::SUCCESS)
}

/// A host run's shipped actions in the order done: (what, undone).
fn host_actions(recs: &[mend_journal::pg::ShippedRecord]) -> Vec<(String, bool)> {
    let key = |b: &serde_json::Value| (b["step_idx"].as_u64(), b["seq"].as_u64());
    let undone: std::collections::BTreeSet<_> = recs
        .iter()
        .filter(|r| r.kind == "undo")
        .map(|r| key(&r.body))
        .collect();
    let mut done: Vec<_> = recs.iter().filter(|r| r.kind == "action").collect();
    done.sort_by_key(|r| key(&r.body));
    done.iter()
        .map(|r| {
            let text = serde_json::from_value::<mend_plan::Action>(r.body["action"].clone())
                .map(|a| a.to_string())
                .unwrap_or_else(|_| r.body["action"].to_string());
            (text, undone.contains(&key(&r.body)))
        })
        .collect()
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
