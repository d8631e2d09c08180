//! `mend serve`: a small read-only web server over the journal, for the
//! people not at the keyboard during an incident. Read-only by
//! construction: the journal is opened read-only, every route is GET or
//! HEAD, and it listens on loopback unless given a token.
//!
//! Modules: `view` (the read model: what the journal says of a run, in one
//! snapshot), `pages` (HTML, every text escaped), `sse` (the live stream,
//! keyed by the journal's change seq), `guard` (methods, token, headers),
//! `fleet` (the same pages across hosts, from the fleet's shared
//! PostgreSQL journal, read-only).

mod actions_cache;
mod fleet;
mod guard;
mod pages;
mod sse;
pub mod svg;
mod view;

#[cfg(test)]
mod testing;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use mend_journal::Journal;
use tokio::sync::broadcast;

/// The timeline picture of run `id` (a full id or a prefix), as SVG text:
/// what `/runs/ID/timeline.svg` serves and `mend report --svg` writes.
pub fn timeline_svg(j: &Journal, id: &str) -> Result<String> {
    j.snapshot(|j| Ok(svg::Timeline::load(j, id)?.svg()))
}

/// What `mend serve` was asked for.
pub struct Options {
    pub state_dir: PathBuf,
    /// The fleet's shared journal (a DSN): the pages show every host's
    /// runs from it, not this state directory's.
    pub fleet_journal: Option<String>,
    pub listen: SocketAddr,
    /// Required when `listen` is not a loopback address.
    pub token: Option<Vec<u8>>,
}

/// The server's shared state: cheap to clone into every handler.
#[derive(Clone)]
struct App {
    state_dir: Arc<PathBuf>,
    journal_id: Arc<String>,
    tx: broadcast::Sender<Arc<sse::Msg>>,
    /// Run views read in the last [`view::FRESH`]: 50 viewers of one run
    /// cost the journal one read, not 50 (a view is a consistent snapshot
    /// with its seq; the stream resumes after it).
    views: Arc<std::sync::Mutex<std::collections::HashMap<String, view::Cached>>>,
    /// Pages of actions kept while the journal says they still hold.
    actions: Arc<actions_cache::Cache>,
    /// Journal reads at once: more requests wait their turn, so the
    /// blocking pool (a thread and a connection each) stays this small
    /// however many viewers come.
    readers: Arc<tokio::sync::Semaphore>,
}

/// At most this many journal reads at once.
const READERS: usize = 4;

/// An error a handler answers with.
struct AppError(StatusCode, String);

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        (
            self.0,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{}\n", self.1),
        )
            .into_response()
    }
}

impl From<anyhow::Error> for AppError {
    fn from(e: anyhow::Error) -> AppError {
        AppError(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))
    }
}

impl App {
    /// Runs `f` on the blocking pool with its own read-only connection, in
    /// one read transaction (a consistent snapshot, kept short).
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Journal) -> Result<T> + Send + 'static,
    ) -> Result<T, AppError> {
        let dir = self.state_dir.clone();
        let permit = self
            .readers
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| AppError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            // One read-only connection per blocking thread, kept: opening
            // one (schema check, functions, the WAL index) per request
            // cost more than the request under 50 viewers. An idle
            // connection holds no read transaction, so it never stops a
            // checkpoint.
            thread_local! {
                static JOURNAL: std::cell::RefCell<Option<(PathBuf, Journal)>> =
                    const { std::cell::RefCell::new(None) };
            }
            JOURNAL.with(|cell| {
                let mut slot = cell.borrow_mut();
                if slot.as_ref().is_none_or(|(d, _)| d != &*dir) {
                    let j = Journal::open_read_only(&dir)?
                        .with_context(|| format!("no journal in {}", dir.display()))?;
                    *slot = Some(((*dir).clone(), j));
                }
                let (_, j) = slot.as_ref().expect("just set");
                let r = j.snapshot(f);
                if r.is_err() {
                    // Maybe the journal was replaced: open it again next time.
                    *slot = None;
                }
                r
            })
        })
        .await
        .map_err(|e| AppError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(AppError::from)
    }
}

/// Binds, calls `ready` with the bound address (port 0 picks one), and
/// serves until the process ends. Read-only: there is nothing to flush, so
/// it needs no graceful shutdown.
pub async fn serve(opts: Options, ready: impl FnOnce(SocketAddr)) -> Result<()> {
    if let Some(dsn) = opts.fleet_journal.clone() {
        return fleet::serve(dsn, opts, ready).await;
    }
    let journal = Journal::open_read_only(&opts.state_dir)?
        .with_context(|| format!("no journal in {}", opts.state_dir.display()))?;
    let journal_id = journal.journal_id()?;
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("cannot listen on {}", opts.listen))?;
    let bound = listener.local_addr()?;
    let port = bound.port();
    let (tx, _) = broadcast::channel(sse::CHANNEL);
    sse::start_poller(journal, tx.clone())?;
    let app = App {
        state_dir: Arc::new(opts.state_dir),
        journal_id: Arc::new(journal_id),
        tx,
        views: Arc::default(),
        actions: Arc::default(),
        readers: Arc::new(tokio::sync::Semaphore::new(READERS)),
    };
    let router = Router::new()
        .route("/", get(pages::history))
        .route("/runs/{id}", get(pages::run))
        .route("/runs/{id}/stream", get(sse::stream))
        .route("/runs/{id}/actions", get(pages::actions))
        .route("/runs/{id}/timeline.svg", get(pages::timeline))
        .route("/api/runs", get(pages::history_json))
        .route("/api/runs/{id}", get(pages::run_json))
        .route("/api/runs/{id}/actions", get(pages::actions_json))
        .route("/static/live.js", get(pages::live_js))
        .route("/static/style.css", get(pages::style_css))
        .layer(axum::middleware::from_fn_with_state(
            guard::Gate::new(opts.token, port),
            guard::guard,
        ))
        .with_state(app);
    ready(bound);
    axum::serve(listener, router)
        .await
        .context("the web server stopped")
}
