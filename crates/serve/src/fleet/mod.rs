//! `mend serve --journal DSN`: the same pages across hosts, from the
//! fleet's shared PostgreSQL journal (issue 17): `/` every host's runs
//! with a host column and filters, and the fleet runs; `/fleet/ID` one
//! fleet run, its hosts and each host's steps; `/runs/ID` one host's run;
//! the same as JSON under `/api/`. The guard (GET only, token rules) is the
//! single-host one.
//!
//! Read-only by construction: the session is READ ONLY from its startup
//! options (`mend_journal::pg::ReadOnly`) and each page is one REPEATABLE
//! READ READ ONLY transaction. Secret values never reach the shared journal
//! (a host masks its records before they are shipped), and every text is
//! escaped as on the single-host pages.
//!
//! A host's run is shipped as it goes (its steps with their actions
//! counted, its events), and its page follows it live: the single-host
//! event stream and script, fed by the shared journal's change sequence.
//!
//! Modules: `read` (the queries, one snapshot a page), `pages` (HTML and
//! JSON handlers), `live` (the change feed behind the event stream).

mod live;
mod pages;
mod read;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use mend_journal::pg::ReadOnly;
use tokio::sync::{Mutex, MutexGuard};

use crate::{AppError, Options, guard};

/// The fleet view's shared state: one read-only session, opened again when
/// the server dropped it. Pages take turns on it: a fleet view has a few
/// readers, and one session keeps the database's connection count at one.
#[derive(Clone)]
pub(crate) struct Fleet {
    dsn: Arc<String>,
    session: Arc<Mutex<Option<ReadOnly>>>,
    live: Arc<live::Live>,
}

impl Fleet {
    /// The session, reconnected if the server closed it.
    async fn session(&self) -> Result<MutexGuard<'_, Option<ReadOnly>>, AppError> {
        let mut g = self.session.lock().await;
        if g.as_ref().is_none_or(ReadOnly::is_closed) {
            *g = None;
            let s = ReadOnly::connect(&self.dsn)
                .await
                .map_err(|e| AppError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
            *g = Some(s);
        }
        Ok(g)
    }
}

pub(crate) async fn serve(
    dsn: String,
    opts: Options,
    ready: impl FnOnce(SocketAddr),
) -> Result<()> {
    // Refused now, not at the first page: a bad DSN, no mend journal there,
    // or a newer one.
    let first = ReadOnly::connect(&dsn).await?;
    let journal_id = live::journal_id(first.client()).await?;
    let start = live::newest(first.client()).await?;
    let dsn = Arc::new(dsn);
    let (tx, _) = tokio::sync::broadcast::channel(crate::sse::CHANNEL);
    live::start_poller(
        dsn.clone(),
        ReadOnly::connect(&dsn).await?,
        start,
        tx.clone(),
    );
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("cannot listen on {}", opts.listen))?;
    let bound = listener.local_addr()?;
    let app = Fleet {
        dsn,
        session: Arc::new(Mutex::new(Some(first))),
        live: Arc::new(live::Live { journal_id, tx }),
    };
    let router = Router::new()
        .route("/", get(pages::history))
        .route("/fleet/{id}", get(pages::fleet_run))
        .route("/runs/{id}", get(pages::host_run))
        .route("/runs/{id}/stream", get(pages::stream))
        .route("/runs/{id}/timeline.svg", get(pages::timeline))
        .route("/runs/{id}/actions", get(pages::actions))
        .route("/api/runs/{id}/actions", get(pages::actions_json))
        .route("/api/runs", get(pages::history_json))
        .route("/api/runs/{id}", get(pages::host_run_json))
        .route("/api/fleet", get(pages::fleet_runs_json))
        .route("/api/fleet/{id}", get(pages::fleet_run_json))
        .route("/static/style.css", get(crate::pages::style_css))
        .route("/static/live.js", get(crate::pages::live_js))
        .layer(axum::middleware::from_fn_with_state(
            guard::Gate::new(opts.token, bound.port()),
            guard::guard,
        ))
        .with_state(app);
    ready(bound);
    axum::serve(listener, router)
        .await
        .context("the web server stopped")
}
