//! The pages: plain HTML written by hand, every text from the journal
//! escaped (a step's words are data, never markup), one small script for
//! the live stream and one style sheet. Without JavaScript a live page
//! reloads itself; printed or saved, it reads as the record of the run.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use mend_human::time::format_utc;
use mend_journal::{HistoryFilter, RunRecord, RunStatus};
use serde::Deserialize;
use std::fmt::Write as _;

use crate::view::{RunView, counts_text};
use crate::{App, AppError};

const LIVE_JS: &str = include_str!("../static/live.js");
const STYLE_CSS: &str = include_str!("../static/style.css");
/// Actions per page.
const ACTIONS_PAGE: usize = 200;
/// Runs the history shows.
const HISTORY_LIMIT: usize = 200;

pub(crate) async fn live_js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        LIVE_JS,
    )
        .into_response()
}

pub(crate) async fn style_css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        STYLE_CSS,
    )
        .into_response()
}

/// Text from the journal for HTML: terminal escapes made visible (as the
/// terminal shows them), then `<>&"'` escaped.
pub(crate) fn esc(text: &str) -> String {
    let clean = mend_human::sanitize(text);
    let mut out = String::with_capacity(clean.len());
    for c in clean.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `12.3 s`, `4 min 05 s`, `2 h 03 min`.
pub(crate) fn duration(ms: i64) -> String {
    let ms = ms.max(0);
    match ms {
        0..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{} min {:02} s", ms / 60_000, ms / 1000 % 60),
        _ => format!("{} h {:02} min", ms / 3_600_000, ms / 60_000 % 60),
    }
}

pub(crate) fn when(ms: i64) -> String {
    format_utc(ms.div_euclid(1000))
}

pub(crate) fn head(title: &str, live: bool) -> String {
    let mut h = String::from(
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>\
         <meta name=viewport content='width=device-width, initial-scale=1'>\
         <link rel=stylesheet href=/static/style.css>",
    );
    let _ = write!(h, "<title>{}</title>", esc(title));
    if live {
        // JavaScript off: the page reloads itself while the run is live.
        h.push_str(
            "<noscript><meta http-equiv=refresh content=5></noscript>\
             <script src=/static/live.js defer></script>",
        );
    }
    h.push_str("</head>");
    h
}

#[derive(Deserialize, Default)]
pub(crate) struct HistoryQ {
    runbook: Option<String>,
    status: Option<String>,
}

fn filter(q: &HistoryQ) -> Result<HistoryFilter, AppError> {
    let status = match q.status.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(
            s.parse::<RunStatus>()
                .map_err(|e| AppError(StatusCode::BAD_REQUEST, e.to_string()))?,
        ),
        None => None,
    };
    Ok(HistoryFilter {
        runbook: q.runbook.clone().filter(|r| !r.is_empty()),
        status,
        limit: Some(HISTORY_LIMIT),
    })
}

fn run_duration(r: &RunRecord) -> String {
    match r.finished_at {
        Some(f) => duration(f - r.started_at),
        None => format!("{} so far", duration(mend_journal::now_ms() - r.started_at)),
    }
}

/// `/`: the history, newest first, `?runbook=` and `?status=` to narrow it.
pub(crate) async fn history(
    State(app): State<App>,
    Query(q): Query<HistoryQ>,
) -> Result<Response, AppError> {
    let f = filter(&q)?;
    let runs = app.read(move |j| j.history(&f)).await?;
    let host = hostname();
    let mut h = head(&format!("mend history · {host}"), false);
    let _ = write!(
        h,
        "<body><header><h1>History <small>on {}</small></h1>\
         <form method=get action=/ class=filter>\
         <label>runbook <input name=runbook value=\"{}\"></label> \
         <label>status <select name=status><option value=''>any</option>",
        esc(&host),
        esc(q.runbook.as_deref().unwrap_or(""))
    );
    for s in RunStatus::ALL {
        let sel = if q.status.as_deref() == Some(s.as_str()) {
            " selected"
        } else {
            ""
        };
        let _ = write!(h, "<option{sel}>{s}</option>");
    }
    h.push_str(
        "</select></label> <button>show</button></form></header>\
         <table id=runs><thead><tr><th>run</th><th>runbook</th><th>host</th><th>status</th>\
         <th>started (UTC)</th><th>duration</th></tr></thead><tbody>",
    );
    for r in &runs {
        let _ = write!(
            h,
            "<tr class='s-{st}'><td><a href='/runs/{id}'><code>{id}</code></a></td>\
             <td>{name} {ver}</td><td>{host}</td><td class=status>{st}</td><td>{start}</td>\
             <td>{dur}</td></tr>",
            st = r.status,
            id = esc(&r.id),
            name = esc(&r.runbook_name),
            ver = esc(&r.runbook_version),
            host = esc(r.host.as_deref().unwrap_or(&host)),
            start = when(r.started_at),
            dur = run_duration(r),
        );
    }
    if runs.is_empty() {
        h.push_str("<tr><td colspan=6>no runs</td></tr>");
    }
    h.push_str("</tbody></table></body></html>\n");
    Ok(Html(h).into_response())
}

/// `/api/runs`: the history as JSON.
pub(crate) async fn history_json(
    State(app): State<App>,
    Query(q): Query<HistoryQ>,
) -> Result<Response, AppError> {
    let f = filter(&q)?;
    let runs = app.read(move |j| j.history(&f)).await?;
    let runs: Vec<RunRecord> = runs
        .into_iter()
        .map(|r| mend_journal::Redact::of_run(&r).run(r))
        .collect();
    Ok(Json(runs).into_response())
}

async fn load(app: &App, id: String) -> Result<std::sync::Arc<RunView>, AppError> {
    // One journal read per request, and a view built at most once per
    // [`crate::view::FRESH`] per run: a live run commits every few
    // milliseconds, so "no older than the journal's last change" rebuilt
    // the view (and its HTML) for every one of 50 viewers' requests, and
    // that work took the cores from the run it was watching. A kept view
    // is served only while no change since it touched the run's or a
    // step's row, so a page never says a run (or step) still runs after
    // the journal said it ended; its counts and events may be up to FRESH
    // behind, and the page's stream resumes from the view's seq, so a
    // live page misses nothing.
    let views = app.views.clone();
    let key = id.clone();
    let (v, new) = app
        .read(move |j| crate::view::current(&views, j, &id))
        .await
        .map_err(|e| AppError(StatusCode::NOT_FOUND, e.1))?;
    if new {
        crate::view::keep(&app.views, &key, v.clone());
    }
    Ok(v)
}

/// `/runs/ID` (and `/runs/ID.json`): one run.
pub(crate) async fn run(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    if let Some(id) = id.strip_suffix(".json") {
        return Ok(Json(&*load(&app, id.to_string()).await?).into_response());
    }
    let v = load(&app, id).await?;
    Ok(Html(v.html.get_or_init(|| run_page(&v)).clone()).into_response())
}

/// `/runs/ID/timeline.svg`: the timeline picture.
pub(crate) async fn timeline(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let svg = app
        .read(move |j| Ok(crate::svg::Timeline::load(j, &id)?.svg()))
        .await
        .map_err(|e| AppError(StatusCode::NOT_FOUND, e.1))?;
    Ok((
        [(header::CONTENT_TYPE, "image/svg+xml; charset=utf-8")],
        svg,
    )
        .into_response())
}

/// `/api/runs/ID`.
pub(crate) async fn run_json(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    Ok(Json(&*load(&app, id).await?).into_response())
}

fn run_page(v: &RunView) -> String {
    let r = &v.run;
    let live = !v.ended;
    let mut h = head(
        &format!("{} {} · run {}", r.runbook_name, r.status, r.id),
        live,
    );
    let _ = write!(
        h,
        "<body data-run='{id}' data-seq='{seq}' data-live='{live}'>\
         <header><h1>{name} <small>{ver}</small> \
         <span id=run-status class='badge s-{st}'>{st}</span></h1>\
         <table class=meta>\
         <tr><th>run</th><td><code>{id}</code> on {host}</td></tr>\
         <tr><th>started by</th><td id=run-by>{by}</td></tr>\
         <tr><th>runbook</th><td><code>{path}</code></td></tr>\
         <tr><th>sha256</th><td><code>{sha}</code></td></tr>\
         <tr><th>started</th><td>{start}</td></tr>\
         <tr><th>duration</th><td id=run-dur>{dur}</td></tr>\
         <tr><th>journal</th><td><code>{jid}</code> change <span id=seq>{seq}</span></td></tr>",
        id = esc(&r.id),
        seq = v.seq,
        live = u8::from(live),
        name = esc(&r.runbook_name),
        ver = esc(&r.runbook_version),
        st = r.status,
        host = esc(r.host.as_deref().unwrap_or(&hostname())),
        by = esc(r.started_by.as_deref().unwrap_or("(not journaled)")),
        path = esc(&r.runbook_path),
        sha = esc(&r.runbook_sha256),
        start = when(r.started_at),
        dur = run_duration(r),
        jid = esc(&v.journal_id),
    );
    if let Some(e) = &r.error {
        let _ = write!(
            h,
            "<tr><th>why</th><td id=run-error class=err>{}</td></tr>",
            esc(e)
        );
    }
    h.push_str("</table>");
    if !v.params.is_empty() {
        h.push_str("<h2>Parameters</h2><table class=params>");
        for (k, val) in &v.params {
            let _ = write!(
                h,
                "<tr><th>{}</th><td><code>{}</code></td></tr>",
                esc(k),
                esc(val)
            );
        }
        h.push_str("</table>");
    }
    let _ = write!(
        h,
        "</header><h2>Timeline</h2><p class=timeline><img src='/runs/{0}/timeline.svg' \
         alt='timeline of run {0}: steps as bars on a time axis' width=960></p>",
        esc(&r.id)
    );
    h.push_str(
        "<h2>Steps</h2><table id=steps><thead><tr><th>#</th><th>step</th>\
         <th>status</th><th>time</th><th>actions</th></tr></thead><tbody>",
    );
    for s in &v.steps {
        let st = &s.step;
        let time = duration(st.finished_at.unwrap_or_else(mend_journal::now_ms) - st.started_at);
        let _ = write!(
            h,
            "<tr id=step-{i} class='s-{status}'><td>{n}</td>\
             <td class=name>{name} <small>{uses}</small></td><td class=status>{status}</td>\
             <td class=dur>{time}</td>\
             <td class=actions><a href='/runs/{run}/actions?step={i}'>{counts}</a></td></tr>",
            i = st.idx,
            n = st.idx + 1,
            status = esc(&st.status),
            name = esc(&st.id),
            uses = esc(&st.uses),
            run = esc(&r.id),
            counts = esc(&counts_text(&st.actions)),
        );
        if !s.summary.is_empty() || st.error.is_some() {
            h.push_str("<tr class=plan><td></td><td colspan=4><ul>");
            for line in &s.summary {
                let _ = write!(h, "<li>{}</li>", esc(line));
            }
            if let Some(e) = &st.error {
                let _ = write!(h, "<li class=err>{}</li>", esc(e));
            }
            h.push_str("</ul></td></tr>");
        }
    }
    h.push_str("</tbody></table><h2>Events</h2><ol id=events>");
    for (i, e) in v.events.iter().enumerate() {
        let step = e.step_idx.map_or(String::new(), |s| format!("step {s} "));
        let _ = write!(
            h,
            "<li class='l-{lvl}' data-n={i}><time>{at}</time> <span class=who>{step}{lvl}</span> \
             <span class=msg>{msg}</span></li>",
            lvl = esc(&e.level),
            at = when(e.at).get(11..19).unwrap_or(""),
            msg = esc(&e.message),
        );
    }
    h.push_str("</ol><footer>");
    if live {
        h.push_str(
            "<p class=live id=live>live: this page follows the journal \
             (it reloads every 5 s without JavaScript)</p>",
        );
    } else {
        let _ = write!(
            h,
            "<p>read from the journal at change {} · <a href='/runs/{}.json'>JSON</a></p>",
            v.seq,
            esc(&r.id)
        );
    }
    h.push_str("</footer></body></html>\n");
    h
}

#[derive(Deserialize)]
pub(crate) struct ActionsQ {
    step: u32,
    after: Option<u32>,
}

async fn actions_of(
    app: &App,
    id: String,
    q: &ActionsQ,
) -> Result<std::sync::Arc<crate::actions_cache::Page>, AppError> {
    let (step, after) = (q.step, q.after);
    let cache = app.actions.clone();
    app.read(move |j| cache.load(j, &id, step, after, ACTIONS_PAGE))
        .await
        .map_err(|e| AppError(StatusCode::NOT_FOUND, e.1))
}

/// `/runs/ID/actions?step=N&after=SEQ`: a step's actions, a page at a time
/// (a run of 50,000 actions is never read whole).
pub(crate) async fn actions(
    State(app): State<App>,
    Path(id): Path<String>,
    Query(q): Query<ActionsQ>,
) -> Result<Response, AppError> {
    let page = actions_of(&app, id, &q).await?;
    // Rendered once for every viewer of this page.
    let html = page.html.get_or_init(|| actions_html(&page, &q));
    Ok(Html(html.clone()).into_response())
}

fn actions_html(page: &crate::actions_cache::Page, q: &ActionsQ) -> String {
    let (run, rows) = (&page.run_id, &page.rows);
    let mut h = head(
        &format!("actions of step {} · run {run}", q.step + 1),
        false,
    );
    let _ = write!(
        h,
        "<body><h1>Actions of step {} <small>run <a href='/runs/{r}'><code>{r}</code></a></small></h1>\
         <table id=actions><thead><tr><th>#</th><th>state</th><th>action</th><th>error</th></tr>\
         </thead><tbody>",
        q.step + 1,
        r = esc(run),
    );
    for a in rows {
        let _ = write!(
            h,
            "<tr class='a-{st}'><td>{seq}</td><td>{st}</td><td><code>{act}</code></td><td>{err}</td></tr>",
            seq = a.seq,
            st = a.state,
            act = esc(&action_text(&a.action_json)),
            err = esc(a.error.as_deref().unwrap_or("")),
        );
    }
    h.push_str("</tbody></table>");
    if let Some(last) = rows.last().filter(|_| rows.len() == ACTIONS_PAGE) {
        let _ = write!(
            h,
            "<p><a href='/runs/{}/actions?step={}&after={}'>next {ACTIONS_PAGE}</a></p>",
            esc(run),
            q.step,
            last.seq
        );
    }
    h.push_str("</body></html>\n");
    h
}

/// `/api/runs/ID/actions?step=N&after=SEQ`.
pub(crate) async fn actions_json(
    State(app): State<App>,
    Path(id): Path<String>,
    Query(q): Query<ActionsQ>,
) -> Result<Response, AppError> {
    let page = actions_of(&app, id, &q).await?;
    let rows: Vec<serde_json::Value> = page
        .rows
        .iter()
        .map(|a| {
            serde_json::json!({"step": a.step_idx, "seq": a.seq, "state": a.state,
                "action": serde_json::from_str::<serde_json::Value>(&a.action_json)
                    .unwrap_or(serde_json::Value::Null),
                "intended_at": a.intended_at, "done_at": a.done_at, "undone_at": a.undone_at,
                "error": a.error})
        })
        .collect();
    Ok(Json(rows).into_response())
}

/// An action as one line: its kind and paths (the journaled JSON, compact).
pub(crate) fn action_text(json: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(serde_json::Value::Object(m)) => {
            let op = m.get("op").and_then(|o| o.as_str()).unwrap_or("");
            let rest: Vec<String> = m
                .iter()
                .filter(|(k, _)| *k != "op")
                .map(|(k, v)| match v {
                    serde_json::Value::String(s) => format!("{k}={s}"),
                    v => format!("{k}={v}"),
                })
                .collect();
            format!("{op} {}", rest.join(" ")).trim().to_string()
        }
        _ => json.to_string(),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "this host".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_never_markup() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"y\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;y&quot;"
        );
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(duration(1234), "1.2 s");
        assert_eq!(duration(65_000), "1 min 05 s");
        assert_eq!(duration(7_380_000), "2 h 03 min");
    }
}
