//! The fleet view's pages and JSON: the single-host pages' look (same
//! style sheet, same escaping), with a host column. A live page reloads
//! itself every 5 s (the shared journal is written when a host's run ends,
//! so there is no change stream to follow).

use std::fmt::Write as _;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::Fleet;
use super::read::{self, Filter, FleetView, HostRunView, Step};
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
    let live = r.finished_at_ms.is_none();
    let mut h = page_head(
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
        "<body data-run=\"{id}\"><header><h1>{name} <small>{ver}</small> \
         <span id=run-status class='badge s-{st}'>{st}</span></h1><table class=meta>\
         <tr><th>run</th><td><code>{id}</code> on <span class=host>{host}</span></td></tr>{fr}\
         <tr><th>started</th><td>{start}</td></tr>\
         <tr><th>duration</th><td id=run-dur>{dur}</td></tr>",
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
    h.push_str("</table></header><h2>Steps</h2>");
    steps_table(&mut h, &r.host, &v.steps);
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
        "</ol><h2>Actions <small>{} of {} done</small></h2><table id=actions><thead><tr>\
         <th>step</th><th>#</th><th>action</th><th>undone</th></tr></thead><tbody>",
        v.actions.len(),
        v.actions_total
    );
    for a in &v.actions {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
            a.step.map_or(String::new(), |s| (s + 1).to_string()),
            a.seq.map_or(String::new(), |s| s.to_string()),
            esc(&action_text(&a.action.to_string())),
            if a.undone { "undone" } else { "" },
        );
    }
    let _ = writeln!(
        h,
        "</tbody></table><footer><p>read from the shared journal · \
         <a href='/runs/{}.json'>JSON</a></p></footer></body></html>",
        esc(&r.run_id)
    );
    Ok(Html(h).into_response())
}
