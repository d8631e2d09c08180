//! The live stream: `/runs/ID/stream`, Server-Sent Events whose ids are
//! `<journal id>:<seq>`, so a browser that lost its connection resumes with
//! `Last-Event-ID` and misses nothing, and gets nothing twice.
//!
//! One poller thread per server follows the journal (`PRAGMA data_version`,
//! no I/O when nothing changed), renders each change once and broadcasts
//! it. A client subscribes before it catches up from the journal (so there
//! is no gap), skips what it already sent (so nothing is doubled), and
//! re-reads the journal when it falls behind the broadcast (so memory stays
//! bounded). A message carries the current state of what changed; changes
//! to one key in one read are sent once, events always each.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{StreamExt as _, stream};
use mend_journal::{ChangeRecord, Journal, coalesce};
use serde::Deserialize;
use tokio::sync::broadcast;

use crate::{App, AppError, view};

/// Messages the broadcast holds for slow clients before they re-read.
pub(crate) const CHANNEL: usize = 256;
/// Between two polls of the journal.
const POLL: Duration = Duration::from_millis(100);
/// Changes read per query.
pub(crate) const PAGE: usize = 500;

#[derive(Debug)]
pub(crate) struct Msg {
    pub seq: i64,
    pub run_id: String,
    pub kind: &'static str,
    pub data: String,
    /// The run's writer is done (its end mark, or a fleet host run's final
    /// status): nothing more will come.
    pub ends: bool,
}

fn render(j: &Journal, batch: Vec<ChangeRecord>) -> Result<Vec<Arc<Msg>>> {
    let mut out = Vec::new();
    for c in coalesce(batch) {
        if let Some((kind, data, ends)) = view::message(j, &c)? {
            out.push(Arc::new(Msg {
                seq: c.seq,
                run_id: c.run_id,
                kind,
                data: data.to_string(),
                ends,
            }));
        }
    }
    Ok(out)
}

/// Starts the one thread that follows the journal for every client.
pub(crate) fn start_poller(j: Journal, tx: broadcast::Sender<Arc<Msg>>) -> Result<()> {
    let mut last = j.last_seq()?;
    let mut version = j.data_version()?;
    std::thread::Builder::new()
        .name("journal-poller".into())
        .spawn(move || {
            loop {
                std::thread::sleep(POLL);
                match j.data_version() {
                    Ok(v) if v == version => continue,
                    Ok(v) => version = v,
                    Err(e) => {
                        tracing::warn!("cannot poll the journal: {e:#}");
                        continue;
                    }
                }
                loop {
                    let read = j.snapshot(|j| {
                        let batch = j.changes_after(last, None, PAGE)?;
                        let n = batch.len();
                        let end = batch.last().map(|c| c.seq);
                        Ok((n, end, render(j, batch)?))
                    });
                    match read {
                        Ok((n, end, msgs)) => {
                            last = end.unwrap_or(last);
                            for m in msgs {
                                // No receiver is fine: no one is watching.
                                let _ = tx.send(m);
                            }
                            if n < PAGE {
                                break;
                            }
                        }
                        Err(e) => {
                            tracing::warn!("cannot read the journal's changes: {e:#}");
                            break;
                        }
                    }
                }
            }
        })?;
    Ok(())
}

#[derive(Deserialize)]
pub(crate) struct After {
    after: Option<i64>,
}

/// Where a client resumes.
enum From {
    Seq(i64),
    /// It names another journal (restored, replaced): start over.
    Reset,
}

fn resume_point(journal_id: &str, headers: &HeaderMap, after: Option<i64>) -> From {
    let Some(last) = headers.get("last-event-id").and_then(|v| v.to_str().ok()) else {
        return From::Seq(after.unwrap_or(0).max(0));
    };
    match last.split_once(':') {
        Some((jid, seq)) if jid == journal_id => seq
            .parse()
            .map_or(From::Reset, |s: i64| From::Seq(s.max(0))),
        _ => From::Reset,
    }
}

fn reset() -> Response {
    let one = stream::once(async {
        Ok::<_, Infallible>(Event::default().event("reset").data("the journal changed"))
    });
    Sse::new(one).into_response()
}

/// Where a run's stream is read from: this host's journal, or the fleet's
/// shared one. Everything else (resume, no gap, no double, lag) is the
/// stream's own, one code for both.
pub(crate) trait Source: Clone + Send + Sync + 'static {
    /// Names the journal in event ids (`<journal id>:<seq>`).
    fn journal_id(&self) -> String;
    /// The broadcast of rendered changes, subscribed before any catch-up.
    fn subscribe(&self) -> broadcast::Receiver<Arc<Msg>>;
    /// Run `id` (or a prefix) as it stands: its full id, whether it is
    /// over, whether it changed after `after`, and the journal's newest
    /// seq. Err: no such run.
    fn open(&self, id: String, after: i64)
    -> impl Future<Output = Result<Opened, AppError>> + Send;
    /// A page of the run's messages after `last`, coalesced; None when the
    /// journal cannot be read (the stream ends, the browser resumes).
    fn after(
        &self,
        run_id: String,
        last: i64,
    ) -> impl Future<Output = Option<Vec<Arc<Msg>>>> + Send;
}

/// What [`Source::open`] found.
pub(crate) struct Opened {
    pub run_id: String,
    pub finished: bool,
    pub pending: bool,
    pub newest: i64,
}

impl Source for App {
    fn journal_id(&self) -> String {
        self.journal_id.to_string()
    }
    fn subscribe(&self) -> broadcast::Receiver<Arc<Msg>> {
        self.tx.subscribe()
    }
    async fn open(&self, id: String, after: i64) -> Result<Opened, AppError> {
        self.read(move |j| {
            let run = j.run(&id)?;
            let pending = !j.changes_after(after, Some(&run.id), 1)?.is_empty();
            Ok(Opened {
                finished: j.ended(&run.id)?,
                run_id: run.id,
                pending,
                newest: j.last_seq()?,
            })
        })
        .await
        .map_err(|e| AppError(StatusCode::NOT_FOUND, e.1))
    }
    async fn after(&self, run_id: String, last: i64) -> Option<Vec<Arc<Msg>>> {
        self.read(move |j| render(j, j.changes_after(last, Some(&run_id), PAGE)?))
            .await
            .ok()
    }
}

struct Follow<S> {
    src: S,
    id: String,
    last: i64,
    rx: broadcast::Receiver<Arc<Msg>>,
    buf: VecDeque<Arc<Msg>>,
    catch_up: bool,
    ending: bool,
    /// The `end` event went out: the stream closes after it.
    end_sent: bool,
}

pub(crate) async fn stream(
    State(app): State<App>,
    Path(id): Path<String>,
    Query(q): Query<After>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    follow(app, id, q, headers).await
}

/// The stream of run `id` from `src`, resumed where the client says.
pub(crate) async fn follow<S: Source>(
    src: S,
    id: String,
    q: After,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let jid = src.journal_id();
    let after = match resume_point(&jid, &headers, q.after) {
        From::Seq(s) => s,
        From::Reset => return Ok(reset()),
    };
    // Before the catch-up read: what commits meanwhile is in the channel.
    let rx = src.subscribe();
    let o = src.open(id, after).await?;
    if after > o.newest {
        // A seq this journal never reached: it was restored from a backup.
        return Ok(reset());
    }
    if o.finished && !o.pending {
        // 204 stops EventSource reconnecting: nothing more will come.
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    // A line per viewer: who follows what, from where it resumed.
    eprintln!("mend serve: stream of run {} from change {after}", o.run_id);
    let st = Follow {
        src,
        id: o.run_id,
        last: after,
        rx,
        buf: VecDeque::new(),
        catch_up: true,
        ending: false,
        end_sent: false,
    };
    let jid = Arc::new(jid);
    let events = stream::unfold(st, move |mut st| {
        let jid = jid.clone();
        async move {
            loop {
                if let Some(m) = st.buf.pop_front() {
                    if m.seq <= st.last {
                        continue;
                    }
                    st.last = m.seq;
                    st.ending |= m.ends;
                    st.end_sent |= m.kind == "end";
                    let ev = Event::default()
                        .id(format!("{jid}:{}", m.seq))
                        .event(m.kind)
                        .data(&m.data);
                    return Some((Ok::<_, Infallible>(ev), st));
                }
                if st.catch_up {
                    let batch = st.src.after(st.id.clone(), st.last).await?;
                    if batch.is_empty() {
                        st.catch_up = false;
                    } else {
                        st.buf.extend(batch);
                    }
                    continue;
                }
                if st.ending {
                    // The run ended and everything up to now was sent. The
                    // page stops at `end` (not at a final status, after
                    // which more may come); a source without its own end
                    // message gets one, with no id of its own.
                    if st.end_sent {
                        return None;
                    }
                    st.end_sent = true;
                    return Some((Ok(Event::default().event("end").data("{}")), st));
                }
                match st.rx.recv().await {
                    Ok(m) if m.run_id == st.id && m.seq > st.last => st.buf.push_back(m),
                    Ok(_) => {}
                    // Fell behind: the journal is the truth, read it again.
                    Err(broadcast::error::RecvError::Lagged(_)) => st.catch_up = true,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        }
    });
    let first = stream::once(async {
        Ok::<_, Infallible>(
            Event::default()
                .retry(Duration::from_secs(1))
                .comment("mend"),
        )
    });
    let mut r = Sse::new(first.chain(events))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    // nginx would hold the stream back in its buffer otherwise.
    r.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(r)
}
