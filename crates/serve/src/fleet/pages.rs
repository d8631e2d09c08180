//! The fleet view's pages and JSON: the single-host pages' look (same
//! style sheet, same escaping), with a host column. A host run's page
//! follows the run live with the single-host script and event stream
//! (without JavaScript it reloads every 5 s); the history and a fleet
//! run's page reload every 5 s while something is live.

use std::fmt::Write as _;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::Fleet;
use super::read::{self, Action, Filter, FleetView, HostRunView, Step};
use crate::AppError;
use crate::pages::{action_text, duration, esc, head, when};

#[derive(Deserialize, Default)]
pub(crate) struct HistoryQ {
    runbook: Option<String>,
    host: Option<String>,
    status: Option<String>,
}

impl HistoryQ {
    fn filter(&self) -> Filter {
        let some = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
        Filter {
            runbook: some(&self.runbook),
            host: some(&self.host),
            status: some(&self.status),
        }
    }
}

fn internal(e: anyhow::Error) -> AppError {
    AppError(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))
}

fn not_found(what: &str, id: &str) -> AppError {
    AppError(
        StatusCode::NOT_FOUND,
        format!("no {what} {id} in the shared journal"),
    )
}

/// `head`, reloading every 5 s while something is live.
fn page_head(title: &str, live: bool) -> String {
    let mut h = head(title, false);
    if live {
        h = h.replace("</head>", "<meta http-equiv=refresh content=5></head>");
    }
    h
}

fn span(start: i64, end: Option<i64>) -> String {
    match end {
        Some(e) => duration(e - start),
        None => format!("{} so far", duration(mend_journal::now_ms() - start)),
    }
}

/// `/`: every host's runs, newest first, and the fleet runs; `?runbook=`,
/// `?host=` and `?status=` narrow them.
pub(crate) async fn history(
    State(app): State<Fleet>,
    Query(q): Query<HistoryQ>,
) -> Result<Response, AppError> {
    let f = q.filter();
    let (runs, fleet) = {
        let g = app.session().await?;
        let s = g.as_ref().expect("connected");
        read::history(s.client(), &f).await.map_err(internal)?
    };
    let live = runs.iter().any(|r| r.finished_at_ms.is_none())
        || fleet.iter().any(|r| r.finished_at_ms.is_none());
    let mut h = page_head("mend fleet history", live);
    let _ = write!(
        h,
        "<body><header><h1>Fleet history <small>from the shared journal</small></h1>\
         <form method=get action=/ class=filter>\
         <label>runbook <input name=runbook value=\"{}\"></label> \
         <label>host <input name=host value=\"{}\"></label> \
         <label>status <input name=status value=\"{}\"></label> \
         <button>show</button></form></header>",
        esc(q.runbook.as_deref().unwrap_or("")),
        esc(q.host.as_deref().unwrap_or("")),
        esc(q.status.as_deref().unwrap_or("")),
    );
    h.push_str(
        "<h2>Fleet runs</h2><table id=fleet-runs><thead><tr><th>fleet run</th><th>runbook</th>\
         <th>hosts</th><th>status</th><th>by</th><th>started (UTC)</th><th>duration</th></tr>\
         </thead><tbody>",
    );
    for r in &fleet {
        let committed = r.hosts.iter().filter(|x| x.status == "committed").count();
        let _ = write!(
            h,
            "<tr class='s-{st}'><td><a href='/fleet/{id}'><code>{id}</code></a></td>\
             <td>{name} {ver}</td><td>{committed}/{n} committed</td><td class=status>{st}</td>\
             <td>{op} on {ctl}</td><td>{start}</td><td>{dur}</td></tr>",
            st = esc(&r.status),
            id = esc(&r.id),
            name = esc(&r.runbook),
            ver = esc(&r.runbook_version),
            n = r.hosts.len(),
            op = esc(&r.operator),
            ctl = esc(&r.controller),
            start = when(r.started_at_ms),
            dur = span(r.started_at_ms, r.finished_at_ms),
        );
    }
    if fleet.is_empty() {
        h.push_str("<tr><td colspan=7>no fleet runs</td></tr>");
    }
    h.push_str(
        "</tbody></table><h2>Runs on each host</h2><table id=runs><thead><tr><th>run</th>\
         <th>runbook</th><th>host</th><th>status</th><th>started (UTC)</th><th>duration</th>\
         <th>fleet run</th></tr></thead><tbody>",
    );
    for r in &runs {
        let fr = r.fleet_run.as_deref().map_or(String::new(), |f| {
            format!("<a href='/fleet/{0}'><code>{0}</code></a>", esc(f))
        });
        let _ = write!(
            h,
            "<tr class='s-{st}'><td><a href='/runs/{id}'><code>{id}</code></a></td>\
             <td>{name} {ver}</td><td class=host>{host}</td><td class=status>{st}</td>\
             <td>{start}</td><td>{dur}</td><td>{fr}</td></tr>",
            st = esc(&r.status),
            id = esc(&r.run_id),
            name = esc(&r.runbook),
            ver = esc(&r.runbook_version),
            host = esc(&r.host),
            start = when(r.started_at_ms),
            dur = span(r.started_at_ms, r.finished_at_ms),
        );
    }
    if runs.is_empty() {
        h.push_str("<tr><td colspan=7>no runs</td></tr>");
    }
    h.push_str("</tbody></table></body></html>\n");
    Ok(Html(h).into_response())
}

/// `/api/runs`: every host's runs as JSON (same filters).
pub(crate) async fn history_json(
    State(app): State<Fleet>,
    Query(q): Query<HistoryQ>,
) -> Result<Response, AppError> {
    let g = app.session().await?;
    let s = g.as_ref().expect("connected");
    let (runs, _) = read::history(s.client(), &q.filter())
        .await
        .map_err(internal)?;
    Ok(Json(runs).into_response())
}

/// `/api/fleet`: the fleet runs with their hosts.
pub(crate) async fn fleet_runs_json(
    State(app): State<Fleet>,
    Query(q): Query<HistoryQ>,
) -> Result<Response, AppError> {
    let g = app.session().await?;
    let s = g.as_ref().expect("connected");
    let runs = read::fleet_history(s.client(), &q.filter())
        .await
        .map_err(internal)?;
    Ok(Json(runs).into_response())
}

async fn load_fleet(app: &Fleet, id: &str) -> Result<FleetView, AppError> {
    let g = app.session().await?;
    let s = g.as_ref().expect("connected");
    read::fleet(s.client(), id)
        .await
        .map_err(internal)?
        .ok_or_else(|| not_found("fleet run", id))
}

async fn load_host_run(app: &Fleet, id: &str) -> Result<HostRunView, AppError> {
    let g = app.session().await?;
    let s = g.as_ref().expect("connected");
    read::host_run_view(s.client(), id)
        .await
        .map_err(internal)?
        .ok_or_else(|| not_found("run", id))
}

/// `/api/fleet/ID`.
pub(crate) async fn fleet_run_json(
    State(app): State<Fleet>,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    Ok(Json(load_fleet(&app, &id).await?).into_response())
}

/// `/api/runs/ID`.
pub(crate) async fn host_run_json(
    State(app): State<Fleet>,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    Ok(Json(load_host_run(&app, &id).await?).into_response())
}

fn steps_table(h: &mut String, host: &str, steps: &[Step]) {
    if steps.is_empty() {
        h.push_str("<p class=meta>no steps shipped yet</p>");
        return;
    }
    let _ = write!(
        h,
        "<table class=steps data-host=\"{}\"><thead><tr><th>#</th><th>step</th><th>status</th>\
         <th>time</th><th>actions</th></tr></thead><tbody>",
        esc(host)
    );
    for s in steps {
        let time = match (s.started_at, s.finished_at) {
            (Some(a), Some(b)) => duration(b - a),
            _ => String::new(),
        };
        let actions = if s.undone > 0 {
            format!("{} done, {} undone", s.done, s.undone)
        } else {
            format!("{} done", s.done)
        };
        let _ = write!(
            h,
            "<tr class='s-{st}'><td>{n}</td><td class=name>{id} <small>{uses}</small></td>\
             <td class=status>{st}</td><td class=dur>{time}</td><td class=actions>{actions}</td></tr>",
            st = esc(&s.status),
            n = s.idx + 1,
            id = esc(&s.id),
            uses = esc(&s.uses),
        );
        if let Some(e) = &s.error {
            let _ = write!(
                h,
                "<tr class=plan><td></td><td colspan=4><ul><li class=err>{}</li></ul></td></tr>",
                esc(e)
            );
        }
    }
    h.push_str("</tbody></table>");
}

/// `/fleet/ID` (and `/fleet/ID.json`): a fleet run, its hosts in batch
/// order, each with its steps.
pub(crate) async fn fleet_run(
    State(app): State<Fleet>,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    if let Some(id) = id.strip_suffix(".json") {
        return Ok(Json(load_fleet(&app, id).await?).into_response());
    }
    let v = load_fleet(&app, &id).await?;
    let r = &v.fleet;
    let live = r.finished_at_ms.is_none();
    let mut h = page_head(
        &format!("{} {} · fleet run {}", r.runbook, r.status, r.id),
        live,
    );
    let _ = write!(
        h,
        "<body data-fleet-run=\"{id}\"><header><h1>{name} <small>{ver}</small> \
         <span id=run-status class='badge s-{st}'>{st}</span></h1><table class=meta>\
         <tr><th>fleet run</th><td><code>{id}</code></td></tr>\
         <tr><th>started by</th><td id=run-by>{op} on {ctl} pid {pid} (lease token {tok})</td></tr>\
         <tr><th>sha256</th><td><code>{sha}</code></td></tr>\
         <tr><th>started</th><td>{start}</td></tr>\
         <tr><th>duration</th><td id=run-dur>{dur}</td></tr>",
        id = esc(&r.id),
        name = esc(&r.runbook),
        ver = esc(&r.runbook_version),
        st = esc(&r.status),
        op = esc(&r.operator),
        ctl = esc(&r.controller),
        pid = r.pid,
        tok = r.token,
        sha = esc(&r.runbook_sha256),
        start = when(r.started_at_ms),
        dur = span(r.started_at_ms, r.finished_at_ms),
    );
    if let Some(e) = &r.error {
        let _ = write!(
            h,
            "<tr><th>why</th><td id=run-error class=err>{}</td></tr>",
            esc(e)
        );
    }
    h.push_str(
        "</table></header><h2>Hosts</h2><table id=hosts><thead><tr><th>batch</th><th>host</th>\
         <th>status</th><th>run</th><th>time</th><th>error</th></tr></thead><tbody>",
    );
    for x in &r.hosts {
        let run = x.run_id.as_deref().map_or(String::new(), |id| {
            format!(
                "<a href='/runs/{0}'><code>{0}</code></a> ({1})",
                esc(id),
                esc(x.run_status.as_deref().unwrap_or("not shipped"))
            )
        });
        let _ = write!(
            h,
            "<tr id=\"host-{host}\" class='s-{st}'><td>{b}</td><td class=host>{host}</td>\
             <td class=status>{st}</td><td>{run}</td><td>{dur}</td><td class=err>{err}</td></tr>",
            b = x.batch,
            host = esc(&x.host),
            st = esc(&x.status),
            dur = span(x.started_at_ms, x.finished_at_ms),
            err = esc(x.error.as_deref().unwrap_or("")),
        );
    }
    h.push_str("</tbody></table>");
    for x in &r.hosts {
        let _ = write!(h, "<h2>{} <small>steps</small></h2>", esc(&x.host));
        steps_table(
            &mut h,
            &x.host,
            v.steps.get(&x.host).map_or(&[][..], Vec::as_slice),
        );
    }
    if !v.events.is_empty() {
        h.push_str("<h2>Decisions</h2><ol id=events>");
        for (at, ctl, kind, msg) in &v.events {
            let _ = write!(
                h,
                "<li><time>{}</time> <span class=who>{} {}</span> <span class=msg>{}</span></li>",
                when(*at),
                esc(ctl),
                esc(kind),
                esc(msg)
            );
        }
        h.push_str("</ol>");
    }
    let _ = writeln!(
        h,
        "<footer><p>read from the shared journal · <a href='/fleet/{}.json'>JSON</a>{}</p>\
         </footer></body></html>",
        esc(&r.id),
        if live {
            " · live: reloads every 5 s"
        } else {
            ""
        }
    );
    Ok(Html(h).into_response())
}

/// `/runs/ID`: one host's run as shipped: steps, events and the first
/// actions.
pub(crate) async fn host_run(
    State(app): State<Fleet>,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    if let Some(id) = id.strip_suffix(".json") {
        return Ok(Json(load_host_run(&app, id).await?).into_response());
    }
    let v = load_host_run(&app, &id).await?;
    let r = &v.run;
    let live = !super::live::ends(&r.status, r.finished_at_ms);
    // The single-host head: its script follows the stream while live, and
    // without JavaScript the page reloads.
    let mut h = head(
        &format!(
            "{} {} · run {} on {}",
            r.runbook, r.status, r.run_id, r.host
        ),
        live,
    );
    let fr = r.fleet_run.as_deref().map_or(String::new(), |f| {
        format!(
            "<tr><th>fleet run</th><td><a href='/fleet/{0}'><code>{0}</code></a></td></tr>",
            esc(f)
        )
    });
    let _ = write!(
        h,
        "<body data-run=\"{id}\" data-seq='{seq}' data-live='{live}'><header><h1>{name} \
         <small>{ver}</small> \
         <span id=run-status class='badge s-{st}'>{st}</span></h1><table class=meta>\
         <tr><th>run</th><td><code>{id}</code> on <span class=host>{host}</span></td></tr>{fr}\
         <tr><th>started</th><td>{start}</td></tr>\
         <tr><th>duration</th><td id=run-dur>{dur}</td></tr>\
         <tr><th>journal</th><td>shared, change <span id=seq>{seq}</span></td></tr>",
        seq = v.seq,
        live = u8::from(live),
        id = esc(&r.run_id),
        name = esc(&r.runbook),
        ver = esc(&r.runbook_version),
        st = esc(&r.status),
        host = esc(&r.host),
        start = when(r.started_at_ms),
        dur = span(r.started_at_ms, r.finished_at_ms),
    );
    if let Some(e) = &r.error {
        let _ = write!(
            h,
            "<tr><th>why</th><td id=run-error class=err>{}</td></tr>",
            esc(e)
        );
    }
    let _ = write!(
        h,
        "</table></header><h2>Timeline</h2><p class=timeline><img src='/runs/{0}/timeline.svg' \
         alt='timeline of run {0}: steps as bars on a time axis' width=960></p><h2>Steps</h2>",
        esc(&r.run_id)
    );
    live_steps_table(&mut h, &r.run_id, &v.steps);
    h.push_str("<h2>Events</h2><ol id=events>");
    for e in &v.events {
        let step = e.step.map_or(String::new(), |s| format!("step {s} "));
        let _ = write!(
            h,
            "<li class='l-{lvl}'><time>{at}</time> <span class=who>{step}{lvl}</span> \
             <span class=msg>{msg}</span></li>",
            lvl = esc(&e.level),
            at = when(e.at).get(11..19).unwrap_or(""),
            msg = esc(&e.message),
        );
    }
    let _ = write!(
        h,
        "</ol><h2>Actions <small>{} of {} done</small></h2>",
        v.actions.len(),
        v.actions_total
    );
    actions_table(&mut h, &r.run_id, None, &v.actions);
    h.push_str("<footer>");
    if live {
        h.push_str(
            "<p class=live id=live>live: this page follows the shared journal \
             (it reloads every 5 s without JavaScript)</p>",
        );
    }
    let _ = writeln!(
        h,
        "<p>read from the shared journal · <a href='/runs/{}.json'>JSON</a></p></footer>\
         </body></html>",
        esc(&r.run_id)
    );
    Ok(Html(h).into_response())
}

/// The steps as the single-host page has them (`#steps`, a row `step-N`
/// each, the same cells), so its script updates them in place.
fn live_steps_table(h: &mut String, run: &str, steps: &[Step]) {
    h.push_str(
        "<table id=steps><thead><tr><th>#</th><th>step</th><th>status</th><th>time</th>\
         <th>actions</th></tr></thead><tbody>",
    );
    for s in steps {
        let time = s.started_at.map_or(String::new(), |a| {
            duration(s.finished_at.unwrap_or_else(mend_journal::now_ms) - a)
        });
        let actions = if s.undone > 0 {
            format!("{} done, {} undone", s.done, s.undone)
        } else if s.planned > s.done {
            format!("{}/{} done", s.done, s.planned)
        } else {
            format!("{} done", s.done)
        };
        let _ = write!(
            h,
            "<tr id=step-{i} class='s-{st}'><td>{n}</td><td class=name>{id} <small>{uses}</small>\
             </td><td class=status>{st}</td><td class=dur>{time}</td><td class=actions>\
             <a href='/runs/{run}/actions?step={i}'>{actions}</a></td></tr>",
            i = s.idx,
            n = s.idx + 1,
            st = esc(&s.status),
            id = esc(&s.id),
            uses = esc(&s.uses),
            run = esc(run),
        );
        if let Some(e) = &s.error {
            let _ = write!(
                h,
                "<tr class=plan><td></td><td colspan=4><ul><li class=err>{}</li></ul></td></tr>",
                esc(e)
            );
        }
    }
    h.push_str("</tbody></table>");
}

/// A page of actions, and the link to the next when it is full.
fn actions_table(h: &mut String, run: &str, step: Option<i64>, rows: &[Action]) {
    h.push_str(
        "<table id=actions><thead><tr><th>step</th><th>#</th><th>action</th><th>undone</th>\
         </tr></thead><tbody>",
    );
    for a in rows {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
            a.step.map_or(String::new(), |s| (s + 1).to_string()),
            a.n + 1,
            esc(&action_text(&a.action.to_string())),
            if a.undone { "undone" } else { "" },
        );
    }
    h.push_str("</tbody></table>");
    if let Some(last) = rows
        .last()
        .filter(|_| rows.len() as i64 == read::ACTIONS_PAGE)
    {
        let step = step.map_or(String::new(), |s| format!("step={s}&"));
        let _ = write!(
            h,
            "<p><a id=next href='/runs/{}/actions?{step}after={}'>next {}</a></p>",
            esc(run),
            last.n,
            read::ACTIONS_PAGE
        );
    }
}

#[derive(Deserialize)]
pub(crate) struct ActionsQ {
    step: Option<i64>,
    /// The plan place of the last action seen.
    after: Option<i64>,
}

async fn actions_of(
    app: &Fleet,
    id: &str,
    q: &ActionsQ,
) -> Result<(String, Vec<Action>), AppError> {
    let g = app.session().await?;
    let c = g.as_ref().expect("connected").client();
    read::snapshot(c, async |c| {
        let Some(run) = read::host_run_row(c, id).await? else {
            return Ok(None);
        };
        let rows = read::actions_page(c, &run.run_id, q.step, q.after).await?;
        Ok(Some((run.run_id, rows)))
    })
    .await
    .map_err(internal)?
    .ok_or_else(|| not_found("run", id))
}

/// `/runs/ID/actions?step=N&after=K`: the next page of a host run's
/// actions (of one step, or all), in plan order.
pub(crate) async fn actions(
    State(app): State<Fleet>,
    Path(id): Path<String>,
    Query(q): Query<ActionsQ>,
) -> Result<Response, AppError> {
    let (run, rows) = actions_of(&app, &id, &q).await?;
    let mut h = head(&format!("actions · run {run}"), false);
    let _ = write!(
        h,
        "<body><h1>Actions{} <small>run <a href='/runs/{r}'><code>{r}</code></a></small></h1>",
        q.step
            .map_or(String::new(), |s| format!(" of step {}", s + 1)),
        r = esc(&run),
    );
    actions_table(&mut h, &run, q.step, &rows);
    h.push_str("</body></html>\n");
    Ok(Html(h).into_response())
}

/// `/api/runs/ID/actions?step=N&after=K`.
pub(crate) async fn actions_json(
    State(app): State<Fleet>,
    Path(id): Path<String>,
    Query(q): Query<ActionsQ>,
) -> Result<Response, AppError> {
    let (_, rows) = actions_of(&app, &id, &q).await?;
    Ok(Json(rows).into_response())
}

/// `/runs/ID/stream`: the single-host event stream, from the shared
/// journal's changes.
pub(crate) async fn stream(
    State(app): State<Fleet>,
    Path(id): Path<String>,
    Query(q): Query<crate::sse::After>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    crate::sse::follow(app, id, q, headers).await
}

/// `/runs/ID/timeline.svg`: the single-host drawing, of a shipped run.
pub(crate) async fn timeline(
    State(app): State<Fleet>,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let v = load_host_run(&app, &id).await?;
    let r = &v.run;
    let bars = v
        .steps
        .iter()
        .filter_map(|s| {
            Some(crate::svg::Bar {
                label: format!("{}. {}", s.idx + 1, s.id),
                status: s.status.clone(),
                start: s.started_at?,
                end: s.finished_at,
                undo: v.undo.get(&s.idx).copied(),
            })
        })
        .collect();
    let t = crate::svg::Timeline::from_parts(
        format!(
            "{} {} · run {} on {} · {}",
            r.runbook, r.runbook_version, r.run_id, r.host, r.status
        ),
        r.started_at_ms,
        r.finished_at_ms,
        &r.status,
        bars,
        v.space.clone(),
    );
    Ok((
        [(header::CONTENT_TYPE, "image/svg+xml; charset=utf-8")],
        t.svg(),
    )
        .into_response())
}
