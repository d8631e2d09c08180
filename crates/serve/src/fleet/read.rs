//! The fleet view's read model: every host's runs, fleet runs with their
//! hosts, and a host run's steps, events and actions, rebuilt from the
//! records hosts shipped. Each function reads in one REPEATABLE READ READ
//! ONLY transaction, so a page is one consistent snapshot.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use mend_journal::pg::{FleetRun, HistoryQuery, HostRow};
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::Client;

/// How many runs the history shows.
pub(crate) const HISTORY_LIMIT: i64 = 200;
/// Actions a host run's page lists.
pub(crate) const ACTIONS_PAGE: i64 = 200;

/// One host's run, as its journal last said.
#[derive(Serialize, Clone, Debug)]
pub(crate) struct HostRun {
    pub run_id: String,
    pub host: String,
    pub fleet_run: Option<String>,
    pub runbook: String,
    pub runbook_version: String,
    pub status: String,
    pub started_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    pub error: Option<String>,
}

/// A step of a host's run, from its latest shipped record, with its
/// actions counted.
#[derive(Serialize, Clone, Debug, Default)]
pub(crate) struct Step {
    pub idx: i64,
    pub id: String,
    pub uses: String,
    pub status: String,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub error: Option<String>,
    /// Actions done (undone ones included).
    pub done: i64,
    pub undone: i64,
    /// Actions the step planned, as shipped while it ran (0 when unknown).
    pub planned: i64,
}

#[derive(Serialize, Clone, Debug)]
pub(crate) struct Event {
    pub step: Option<i64>,
    pub at: i64,
    pub level: String,
    pub message: String,
}

#[derive(Serialize, Clone, Debug)]
pub(crate) struct Action {
    /// Its place in the run's plan (0, 1, ...): pages go on after it.
    pub n: i64,
    pub step: Option<i64>,
    pub seq: Option<i64>,
    pub action: Value,
    pub done_at: Option<i64>,
    pub undone: bool,
}

/// `/runs/ID`: one host's run.
#[derive(Serialize)]
pub(crate) struct HostRunView {
    pub run: HostRun,
    pub steps: Vec<Step>,
    pub events: Vec<Event>,
    /// The first [`ACTIONS_PAGE`] actions done, in order.
    pub actions: Vec<Action>,
    pub actions_total: i64,
    /// The journal's newest change when read: the page's stream resumes
    /// after it.
    pub seq: i64,
    /// Each step's undo span (first, last undone_at), for the timeline.
    #[serde(skip)]
    pub undo: BTreeMap<i64, (i64, i64)>,
    /// Free space of each write grant before and after the run, as the
    /// host journaled it (by grant, then moment: `after` last).
    pub space: Vec<mend_journal::GrantSpace>,
}

/// `/fleet/ID`: a fleet run, each host with its steps.
#[derive(Serialize)]
pub(crate) struct FleetView {
    #[serde(flatten)]
    pub fleet: FleetRun,
    pub steps: BTreeMap<String, Vec<Step>>,
    /// The controllers' decisions: (unix ms, controller, kind, message).
    pub events: Vec<(i64, String, String, String)>,
}

/// Filters of the history.
#[derive(Default, Clone, Debug)]
pub(crate) struct Filter {
    pub runbook: Option<String>,
    pub host: Option<String>,
    pub status: Option<String>,
}

/// `f` in one read-only snapshot.
pub(crate) async fn snapshot<T>(
    c: &Client,
    f: impl AsyncFnOnce(&Client) -> Result<T>,
) -> Result<T> {
    c.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .context("shared journal: starting a read")?;
    let r = f(c).await;
    let end = if r.is_ok() { "COMMIT" } else { "ROLLBACK" };
    c.batch_execute(end)
        .await
        .context("shared journal: ending a read")?;
    r
}

const HOST_RUN_COLUMNS: &str = "run_id, host, fleet_run, runbook, runbook_version, status,
    started_at_ms, finished_at_ms, error";

fn host_run(r: &tokio_postgres::Row) -> HostRun {
    HostRun {
        run_id: r.get("run_id"),
        host: r.get("host"),
        fleet_run: r.get("fleet_run"),
        runbook: r.get("runbook"),
        runbook_version: r.get("runbook_version"),
        status: r.get("status"),
        started_at_ms: r.get("started_at_ms"),
        finished_at_ms: r.get("finished_at_ms"),
        error: r.get("error"),
    }
}

/// The history: every host's runs (newest first) and the fleet runs.
pub(crate) async fn history(c: &Client, f: &Filter) -> Result<(Vec<HostRun>, Vec<FleetRun>)> {
    snapshot(c, async |c| {
        let rows = c
            .query(
                &format!(
                    "SELECT {HOST_RUN_COLUMNS} FROM mend_host_runs
                     WHERE ($1::text IS NULL OR runbook = $1)
                       AND ($2::text IS NULL OR host = $2)
                       AND ($3::text IS NULL OR status = $3)
                     ORDER BY started_at_ms DESC, host, run_id LIMIT $4"
                ),
                &[&f.runbook, &f.host, &f.status, &HISTORY_LIMIT],
            )
            .await
            .context("shared journal: reading the hosts' runs")?;
        let runs = rows.iter().map(host_run).collect();
        let fleet = fleet_runs(c, f).await?;
        Ok((runs, fleet))
    })
    .await
}

async fn fleet_runs(c: &Client, f: &Filter) -> Result<Vec<FleetRun>> {
    let q = HistoryQuery {
        limit: HISTORY_LIMIT,
        runbook: f.runbook.clone(),
        host: f.host.clone(),
    };
    Ok(mend_journal::pg::history_on(c, &q).await?)
}

/// The fleet runs alone (`/api/fleet`).
pub(crate) async fn fleet_history(c: &Client, f: &Filter) -> Result<Vec<FleetRun>> {
    snapshot(c, async |c| fleet_runs(c, f).await).await
}

/// One fleet run with its hosts and their steps; `None` if there is none.
pub(crate) async fn fleet(c: &Client, id: &str) -> Result<Option<FleetView>> {
    snapshot(c, async |c| {
        let Some(mut fleet) = mend_journal::pg::show_on(c, id).await? else {
            return Ok(None);
        };
        // A host still running has no run id in the fleet's rows yet; its
        // run, shipped as it goes, names it.
        for h in fleet.hosts.iter_mut().filter(|h| h.run_id.is_none()) {
            if let Some(r) = c
                .query_opt(
                    "SELECT run_id, status FROM mend_host_runs
                     WHERE fleet_run = $1 AND host = $2 ORDER BY started_at_ms DESC LIMIT 1",
                    &[&id, &h.host],
                )
                .await
                .context("shared journal: reading a host's run")?
            {
                h.run_id = Some(r.get(0));
                h.run_status = Some(r.get(1));
            }
        }
        let run_ids: Vec<String> = fleet
            .hosts
            .iter()
            .filter_map(|h| h.run_id.clone())
            .collect();
        let mut by_run = steps_of(c, &run_ids).await?;
        let steps = fleet
            .hosts
            .iter()
            .map(|h: &HostRow| {
                let s = h
                    .run_id
                    .as_ref()
                    .and_then(|r| by_run.remove(r))
                    .unwrap_or_default();
                (h.host.clone(), s)
            })
            .collect();
        let events = mend_journal::pg::fleet_events_on(c, id).await?;
        Ok(Some(FleetView {
            fleet,
            steps,
            events,
        }))
    })
    .await
}

/// One host's run row by its id (or a prefix naming one run).
pub(crate) async fn host_run_row(c: &Client, id: &str) -> Result<Option<HostRun>> {
    let rows = c
        .query(
            &format!(
                "SELECT {HOST_RUN_COLUMNS} FROM mend_host_runs
                 WHERE run_id = $1 OR (length($1) >= 4 AND starts_with(run_id, $1))
                 ORDER BY run_id = $1 DESC LIMIT 2"
            ),
            &[&id],
        )
        .await
        .context("shared journal: reading a host's run")?;
    Ok(match rows.as_slice() {
        [one] => Some(host_run(one)),
        [a, _] if a.get::<_, &str>("run_id") == id => Some(host_run(a)),
        _ => None,
    })
}

/// A page of a host run's actions: those after plan place `after` (all
/// with None), of one step or all, in plan order, at most [`ACTIONS_PAGE`].
/// Keyset on the records' key, so page 250 costs what page 1 does.
pub(crate) async fn actions_page(
    c: &Client,
    run_id: &str,
    step: Option<i64>,
    after: Option<i64>,
) -> Result<Vec<Action>> {
    // Action k as done is seq -(2k+1): after k means below -(2k+1).
    let below = after.map_or(0, |k| -(2 * k + 1));
    let rows = c
        .query(
            "SELECT a.seq, a.body::text,
                 EXISTS (SELECT 1 FROM mend_run_records u
                         WHERE u.run_id = a.run_id AND u.seq = a.seq - 1 AND u.kind = 'undo')
             FROM mend_run_records a
             WHERE a.run_id = $1 AND a.kind = 'action' AND a.seq < $2
               AND ($3::bigint IS NULL OR (a.body->>'step_idx')::bigint = $3)
             ORDER BY a.seq DESC LIMIT $4",
            &[&run_id, &below, &step, &ACTIONS_PAGE],
        )
        .await
        .context("shared journal: reading a run's actions")?;
    Ok(rows
        .iter()
        .map(|r| {
            let seq: i64 = r.get(0);
            let b: Value = serde_json::from_str(r.get::<_, &str>(1)).unwrap_or(Value::Null);
            Action {
                n: (-seq - 1) / 2,
                step: b["step_idx"].as_i64(),
                seq: b["seq"].as_i64(),
                action: b["action"].clone(),
                done_at: b["at"].as_i64(),
                undone: r.get(2),
            }
        })
        .collect())
}

/// One host's run; `None` if none was shipped by that id.
pub(crate) async fn host_run_view(c: &Client, id: &str) -> Result<Option<HostRunView>> {
    snapshot(c, async |c| {
        let Some(run) = host_run_row(c, id).await? else {
            return Ok(None);
        };
        let steps = steps_of(c, std::slice::from_ref(&run.run_id))
            .await?
            .remove(&run.run_id)
            .unwrap_or_default();
        let rows = c
            .query(
                "SELECT body::text FROM mend_run_records
                 WHERE run_id = $1 AND kind = 'event' ORDER BY seq",
                &[&run.run_id],
            )
            .await
            .context("shared journal: reading a run's events")?;
        let events = rows
            .iter()
            .map(|r| {
                let b: Value = serde_json::from_str(r.get::<_, &str>(0)).unwrap_or(Value::Null);
                Event {
                    step: b["step_idx"].as_i64(),
                    at: b["at"].as_i64().unwrap_or(0),
                    level: b["level"].as_str().unwrap_or("info").to_string(),
                    message: b["message"].as_str().unwrap_or("").to_string(),
                }
            })
            .collect();
        let actions = actions_page(c, &run.run_id, None, None).await?;
        let actions_total: i64 = c
            .query_one(
                "SELECT count(*) FROM mend_run_records WHERE run_id = $1 AND kind = 'action'",
                &[&run.run_id],
            )
            .await
            .context("shared journal: counting a run's actions")?
            .get(0);
        let rows = c
            .query(
                "SELECT (body->>'step_idx')::bigint, min((body->>'at')::bigint),
                     max((body->>'at')::bigint)
                 FROM mend_run_records WHERE run_id = $1 AND kind = 'undo'
                 GROUP BY 1",
                &[&run.run_id],
            )
            .await
            .context("shared journal: reading a run's undos")?;
        let undo = rows
            .iter()
            .filter_map(|r| {
                Some((
                    r.get::<_, Option<i64>>(0)?,
                    (r.get::<_, Option<i64>>(1)?, r.get::<_, Option<i64>>(2)?),
                ))
            })
            .collect();
        let rows = c
            .query(
                "SELECT body::text FROM mend_run_records
                 WHERE run_id = $1 AND kind = 'space'
                 ORDER BY body->>'grant', body->>'moment' DESC",
                &[&run.run_id],
            )
            .await
            .context("shared journal: reading a run's free space")?;
        let space = rows
            .iter()
            .filter_map(|r| serde_json::from_str(r.get::<_, &str>(0)).ok())
            .collect();
        Ok(Some(HostRunView {
            space,
            run,
            steps,
            events,
            actions,
            actions_total,
            seq: super::live::newest(c).await?,
            undo,
        }))
    })
    .await
}

/// The steps of these runs: each step's latest shipped record (the one
/// with the highest `observed`), with its actions counted. A run shipped
/// by an older mend has no step records: its steps are those its actions
/// name.
pub(crate) async fn steps_of(
    c: &Client,
    run_ids: &[String],
) -> Result<BTreeMap<String, Vec<Step>>> {
    let mut out: BTreeMap<String, BTreeMap<i64, (i64, Step)>> = BTreeMap::new();
    let rows = c
        .query(
            "SELECT run_id, body::text FROM mend_run_records
             WHERE run_id = ANY($1) AND kind = 'step'",
            &[&run_ids],
        )
        .await
        .context("shared journal: reading steps")?;
    for r in &rows {
        let b: Value = serde_json::from_str(r.get::<_, &str>(1)).unwrap_or(Value::Null);
        let Some(idx) = b["idx"].as_i64() else {
            continue;
        };
        let observed = b["observed"].as_i64().unwrap_or(0);
        let s = |k: &str| b[k].as_str().unwrap_or("").to_string();
        let step = Step {
            idx,
            id: s("id"),
            uses: s("uses"),
            status: s("status"),
            started_at: b["started_at"].as_i64(),
            finished_at: b["finished_at"].as_i64(),
            error: b["error"].as_str().map(str::to_string),
            // Shipped while it ran; the actions shipped at its end count
            // them again below (the larger count holds).
            done: b["done"].as_i64().unwrap_or(0),
            undone: b["undone"].as_i64().unwrap_or(0),
            planned: b["planned"].as_i64().unwrap_or(0),
        };
        let steps = out.entry(r.get(0)).or_default();
        if steps.get(&idx).is_none_or(|(o, _)| observed >= *o) {
            steps.insert(idx, (observed, step));
        }
    }
    let rows = c
        .query(
            "SELECT run_id, (body->>'step_idx')::bigint, kind, count(*) FROM mend_run_records
             WHERE run_id = ANY($1) AND kind IN ('action', 'undo') GROUP BY 1, 2, 3",
            &[&run_ids],
        )
        .await
        .context("shared journal: counting actions")?;
    for r in &rows {
        let Some(idx) = r.get::<_, Option<i64>>(1) else {
            continue;
        };
        let (_, step) = out
            .entry(r.get(0))
            .or_default()
            .entry(idx)
            .or_insert_with(|| {
                (
                    i64::MIN,
                    Step {
                        idx,
                        id: format!("step {}", idx + 1),
                        ..Step::default()
                    },
                )
            });
        let n: i64 = r.get(3);
        match r.get::<_, &str>(2) {
            "action" => step.done = step.done.max(n),
            _ => step.undone = step.undone.max(n),
        }
    }
    Ok(out
        .into_iter()
        .map(|(run, steps)| (run, steps.into_values().map(|(_, s)| s).collect()))
        .collect())
}
