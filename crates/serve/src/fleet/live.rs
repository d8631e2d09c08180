//! The fleet view's live stream: the single-host stream (`crate::sse`,
//! same resume, same no-gap and no-double rules) fed by the shared
//! journal's change sequence instead of SQLite's change log.
//!
//! Every row a shipment inserts or changes takes the next `change`,
//! allocated under a lock held to commit (`mend_journal::pg::ship`), so a
//! reader that saw change N never sees a smaller one appear later. One
//! poller per server asks for the newest change (an index lookup, on a
//! session of its own) and, when it moved, renders what changed once and
//! broadcasts it; a client catches up from the journal first.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::http::StatusCode;
use mend_journal::pg::ReadOnly;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio_postgres::Client;

use super::Fleet;
use super::read::{self, snapshot};
use crate::AppError;
use crate::sse::{Msg, Opened, PAGE, Source};

/// Between two looks at the newest change.
const POLL: Duration = Duration::from_millis(250);

/// The newest change the journal holds (0 before any).
pub(crate) async fn newest(c: &Client) -> Result<i64> {
    Ok(c.query_one(
        "SELECT greatest(coalesce((SELECT max(change) FROM mend_run_records), 0),
                         coalesce((SELECT max(change) FROM mend_host_runs), 0))",
        &[],
    )
    .await
    .context("shared journal: reading its newest change")?
    .get(0))
}

/// The journal's id, for event ids.
pub(crate) async fn journal_id(c: &Client) -> Result<String> {
    Ok(c.query_one("SELECT id FROM mend_journal_id", &[])
        .await
        .context("shared journal: reading its id")?
        .get(0))
}

/// One changed row: (change, run, kind, record seq, body).
struct Row {
    change: i64,
    run_id: String,
    kind: String,
    seq: Option<i64>,
    body: Value,
}

impl Row {
    /// What a later change of the same key replaces (events never are).
    fn key(&self) -> Option<(String, String)> {
        let step = |b: &Value, k: &str| b[k].as_i64().unwrap_or(-1).to_string();
        match self.kind.as_str() {
            "run" => Some((self.run_id.clone(), "run".into())),
            "step" => Some((
                self.run_id.clone(),
                format!("step {}", step(&self.body, "idx")),
            )),
            "action" | "undo" => Some((
                self.run_id.clone(),
                format!("actions {}", step(&self.body, "step_idx")),
            )),
            _ => None,
        }
    }
}

/// Changes after `after` (of one run, or all), oldest first, at most
/// [`PAGE`]; and whether the page was full.
async fn changes_after(c: &Client, after: i64, run: Option<&str>) -> Result<(Vec<Row>, bool)> {
    let rows = c
        .query(
            "SELECT change, run_id, 'run' AS kind, NULL::bigint AS seq, NULL::text AS body
             FROM mend_host_runs WHERE change > $1 AND ($2::text IS NULL OR run_id = $2)
             UNION ALL
             SELECT change, run_id, kind, seq, body::text FROM mend_run_records
             WHERE change > $1 AND ($2::text IS NULL OR run_id = $2)
             ORDER BY 1 LIMIT $3",
            &[&after, &run, &(PAGE as i64)],
        )
        .await
        .context("shared journal: reading its changes")?;
    let full = rows.len() == PAGE;
    let rows = rows
        .iter()
        .map(|r| Row {
            change: r.get(0),
            run_id: r.get(1),
            kind: r.get(2),
            seq: r.get(3),
            body: r
                .get::<_, Option<&str>>(4)
                .and_then(|b| serde_json::from_str(b).ok())
                .unwrap_or(Value::Null),
        })
        .collect();
    Ok((rows, full))
}

/// A step as the stream sends it: the single-host shape, so the page's
/// one script reads both (`actions` as (state, count) pairs).
fn step_json(s: &read::Step) -> Value {
    let mut counts = Vec::new();
    let planned = (s.planned - s.done).max(0);
    if planned > 0 {
        counts.push(json!(["planned", planned]));
    }
    if s.done - s.undone > 0 {
        counts.push(json!(["done", s.done - s.undone]));
    }
    if s.undone > 0 {
        counts.push(json!(["undone", s.undone]));
    }
    json!({"idx": s.idx, "id": s.id, "uses": s.uses, "status": s.status,
           "started_at": s.started_at, "finished_at": s.finished_at, "error": s.error,
           "actions": counts})
}

/// Whether a host run in this status is over for its viewers. A held run
/// is not: the controller settles it, and the stream shows that too.
pub(crate) fn ends(status: &str, finished: Option<i64>) -> bool {
    finished.is_some() && !matches!(status, "running" | "rolling-back" | "held")
}

/// The messages of these changes, each key once (at its last change),
/// events each, in change order. Call inside a snapshot.
async fn render(c: &Client, rows: Vec<Row>) -> Result<Vec<Arc<Msg>>> {
    let mut last: HashMap<(String, String), i64> = HashMap::new();
    for r in &rows {
        if let Some(k) = r.key() {
            last.insert(k, r.change);
        }
    }
    let mut steps: HashMap<String, Vec<read::Step>> = HashMap::new();
    let mut out = Vec::new();
    for r in rows {
        let key = r.key();
        if key.as_ref().is_some_and(|k| last.get(k) != Some(&r.change)) {
            continue;
        }
        let (kind, data, end): (&'static str, Value, bool) = match r.kind.as_str() {
            "run" => {
                let Some(run) = read::host_run_row(c, &r.run_id).await? else {
                    continue;
                };
                let end = ends(&run.status, run.finished_at_ms);
                // The page's script stops following at a `finished_at`: a
                // held run has one but is not over for its viewers.
                let finished = run.finished_at_ms.filter(|_| end);
                let v = json!({"status": run.status, "started_at": run.started_at_ms,
                               "finished_at": finished, "error": run.error});
                ("run", v, end)
            }
            "event" => {
                let b = &r.body;
                let v = json!({"id": r.seq, "at": b["at"], "level": b["level"],
                               "step": b["step_idx"], "message": b["message"]});
                ("event", v, false)
            }
            "step" | "action" | "undo" => {
                let idx = if r.kind == "step" {
                    r.body["idx"].as_i64()
                } else {
                    r.body["step_idx"].as_i64()
                };
                let Some(idx) = idx else { continue };
                if !steps.contains_key(&r.run_id) {
                    let s = read::steps_of(c, std::slice::from_ref(&r.run_id))
                        .await?
                        .remove(&r.run_id)
                        .unwrap_or_default();
                    steps.insert(r.run_id.clone(), s);
                }
                let Some(s) = steps[&r.run_id].iter().find(|s| s.idx == idx) else {
                    continue;
                };
                let kind = if r.kind == "step" { "step" } else { "actions" };
                (kind, step_json(s), false)
            }
            _ => continue,
        };
        out.push(Arc::new(Msg {
            seq: r.change,
            run_id: r.run_id,
            kind,
            data: data.to_string(),
            ends: end,
        }));
    }
    Ok(out)
}

/// A page of changes after `after` rendered, in one snapshot: (messages,
/// last change read, whether there may be more).
async fn read_after(
    c: &Client,
    after: i64,
    run: Option<&str>,
) -> Result<(Vec<Arc<Msg>>, i64, bool)> {
    snapshot(c, async |c| {
        let (rows, full) = changes_after(c, after, run).await?;
        let end = rows.last().map_or(after, |r| r.change);
        Ok((render(c, rows).await?, end, full))
    })
    .await
}

/// Starts the one poller that follows the shared journal for every client,
/// on a session of its own (pages and streams never wait behind it).
pub(crate) fn start_poller(
    dsn: Arc<String>,
    first: ReadOnly,
    start: i64,
    tx: broadcast::Sender<Arc<Msg>>,
) {
    tokio::spawn(async move {
        let mut session = Some(first);
        let mut last = start;
        loop {
            tokio::time::sleep(POLL).await;
            if session.as_ref().is_none_or(ReadOnly::is_closed) {
                session = ReadOnly::connect(&dsn).await.ok();
            }
            let Some(s) = &session else { continue };
            match newest(s.client()).await {
                Ok(n) if n <= last => continue,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!("cannot poll the shared journal: {e:#}");
                    continue;
                }
            }
            loop {
                match read_after(s.client(), last, None).await {
                    Ok((msgs, end, more)) => {
                        last = end;
                        for m in msgs {
                            // No receiver is fine: no one is watching.
                            let _ = tx.send(m);
                        }
                        if !more {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!("cannot read the shared journal's changes: {e:#}");
                        break;
                    }
                }
            }
        }
    });
}

impl Source for Fleet {
    fn journal_id(&self) -> String {
        self.live.journal_id.clone()
    }
    fn subscribe(&self) -> broadcast::Receiver<Arc<Msg>> {
        self.live.tx.subscribe()
    }
    async fn open(&self, id: String, after: i64) -> Result<Opened, AppError> {
        let g = self.session().await?;
        let c = g.as_ref().expect("connected").client();
        let found = snapshot(c, async |c| {
            let Some(run) = read::host_run_row(c, &id).await? else {
                return Ok(None);
            };
            let (rows, _) = changes_after(c, after, Some(&run.run_id)).await?;
            Ok(Some(Opened {
                finished: ends(&run.status, run.finished_at_ms),
                pending: !rows.is_empty(),
                run_id: run.run_id,
                newest: newest(c).await?,
            }))
        })
        .await
        .map_err(|e| AppError(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?;
        found.ok_or_else(|| {
            AppError(
                StatusCode::NOT_FOUND,
                format!("no run {id} in the shared journal"),
            )
        })
    }
    async fn after(&self, run_id: String, last: i64) -> Option<Vec<Arc<Msg>>> {
        let g = self.session().await.ok()?;
        let c = g.as_ref()?.client();
        read_after(c, last, Some(&run_id))
            .await
            .ok()
            .map(|(m, _, _)| m)
    }
}

/// What the stream needs of the server: the journal's id and the broadcast.
pub(crate) struct Live {
    pub journal_id: String,
    pub tx: broadcast::Sender<Arc<Msg>>,
}
