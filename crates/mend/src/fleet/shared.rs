//! The fleet controller's side of the shared PostgreSQL journal
//! ([`mend_journal::pg`]), when the inventory names `[fleet] journal =
//! "postgres://..."` (or `MEND_FLEET_JOURNAL` does): the fleet-wide lease
//! taken before any host is touched and checked before each batch, the
//! fleet run and its hosts recorded, each host's run records shipped after
//! it ends. And the host's side: `mend fleet host records`, the host run's
//! records as JSON lines, numbered by the host journal.
//!
//! The lock is a PostgreSQL *session* lock, so one session must live as long
//! as the rollout. The controller is synchronous (ssh processes, threads),
//! so the session lives on a thread of its own with its own tokio runtime,
//! driven by requests over a channel; dropping the [`Session`] ends it and
//! lets the lock go.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::sync::mpsc as std_mpsc;

use mend_journal::Journal;
use mend_journal::pg::{
    BrokenLock, Controller, FleetRunStatus, Holder, HostOutcome, HostRun, Lease, NewFleetRun,
    PgError, Shared, ShipReport, ShippedRecord,
};
use mend_runbook::fleet::{HostEnd, Inventory, JournalTarget};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::fleet::host::{self, Status};
use crate::fleet::plan::SavedFleet;
use crate::outcome::Failure;

/// The shared journal's DSN for a saved fleet plan: `MEND_FLEET_JOURNAL`
/// when set, else the inventory's `[fleet] journal`.
pub fn dsn(saved: &SavedFleet) -> Option<String> {
    if let Ok(d) = std::env::var("MEND_FLEET_JOURNAL")
        && !d.is_empty()
    {
        return Some(d);
    }
    match Inventory::load(&saved.inventory).ok()?.journal {
        JournalTarget::Postgres(d) => Some(d),
        JournalTarget::Local => None,
    }
}

/// What the operator said about `--break-lock`.
#[derive(Clone, Copy, Debug, Default)]
pub struct BreakLock {
    pub requested: bool,
    /// `--yes`: break without asking (needed without a terminal).
    pub yes: bool,
}

/// A shared-journal error in mend's exit codes: a held or lost lock is 4,
/// a bad DSN, a pooler or a too-new journal 2, the rest internal (70).
pub fn failure(e: PgError) -> Failure {
    match e {
        PgError::Held(_) | PgError::Fenced(_) => Failure::Locked(e.to_string()),
        e if e.is_bad_input() => Failure::input("[fleet] journal", e.to_string(), None),
        e => Failure::Internal(anyhow::Error::new(e)),
    }
}

type Reply<T> = std_mpsc::Sender<Result<T, PgError>>;

enum Op {
    Check(Reply<()>),
    /// On resume the fleet run may be there already.
    Begin(NewFleetRun, Reply<()>),
    HostStarted(String, i32, Reply<()>),
    HostFinished {
        host: String,
        run_id: Option<String>,
        outcome: HostOutcome,
        error: Option<String>,
        reply: Reply<()>,
    },
    Ship {
        host: String,
        runs: Vec<HostRun>,
        records: Vec<ShippedRecord>,
        reply: Reply<ShipReport>,
    },
    Finish(FleetRunStatus, Option<String>, Reply<()>),
    /// A hold/settle decision: (kind, message).
    Decision(String, String, Reply<()>),
}

/// A live session with the shared journal holding the fleet lease.
pub struct Session {
    tx: mpsc::UnboundedSender<Op>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub lease: Lease,
    pub target: String,
    pub fleet_run: String,
}

impl Session {
    /// Connects (checking for a transaction pooler) and takes the lease on
    /// `runbook` for `fleet_run`, or breaks it if asked and confirmed.
    pub fn open(
        dsn: &str,
        runbook: &str,
        fleet_run: &str,
        brk: BreakLock,
    ) -> Result<(Session, Option<BrokenLock>), PgError> {
        let (tx, mut rx) = mpsc::unbounded_channel::<Op>();
        let (init_tx, init_rx) = std_mpsc::channel();
        let dsn = dsn.to_string();
        let runbook = runbook.to_string();
        let who = Controller::this(fleet_run);
        let thread = std::thread::spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = init_tx.send(Err(PgError::Db(format!(
                        "shared journal: cannot start its runtime: {e}"
                    ))));
                    return;
                }
            };
            rt.block_on(async move {
                let shared = match Shared::connect(&dsn).await {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = init_tx.send(Err(e));
                        return;
                    }
                };
                let got = match shared.acquire(&runbook, &who).await {
                    Ok(lease) => Ok((lease, None)),
                    Err(PgError::Held(h)) if brk.requested => {
                        if confirm(&h, brk.yes) {
                            shared
                                .break_lock(&runbook, &who)
                                .await
                                .map(|b| (b.lease.clone(), Some(b)))
                        } else {
                            Err(PgError::Held(h))
                        }
                    }
                    Err(e) => Err(e),
                };
                let lease = match got {
                    Ok((lease, broke)) => {
                        let _ =
                            init_tx.send(Ok((lease.clone(), broke, shared.target().to_string())));
                        lease
                    }
                    Err(e) => {
                        let _ = init_tx.send(Err(e));
                        return;
                    }
                };
                let fr = who.fleet_run.clone();
                while let Some(op) = rx.recv().await {
                    match op {
                        Op::Check(r) => {
                            let _ = r.send(shared.check(&lease).await);
                        }
                        Op::Begin(run, r) => {
                            let res = match shared.show(&run.id).await {
                                Ok(Some(_)) => Ok(()),
                                Ok(None) => shared.begin_fleet_run(&lease, &run).await,
                                Err(e) => Err(e),
                            };
                            let _ = r.send(res);
                        }
                        Op::HostStarted(h, b, r) => {
                            let _ = r.send(shared.host_started(&lease, &fr, &h, b, None).await);
                        }
                        Op::HostFinished {
                            host,
                            run_id,
                            outcome,
                            error,
                            reply,
                        } => {
                            let _ = reply.send(
                                shared
                                    .host_finished(
                                        &lease,
                                        &fr,
                                        &host,
                                        run_id.as_deref(),
                                        outcome,
                                        error.as_deref(),
                                    )
                                    .await,
                            );
                        }
                        Op::Decision(kind, message, r) => {
                            let _ =
                                r.send(shared.fleet_event(&runbook, &who, &kind, &message).await);
                        }
                        Op::Ship {
                            host,
                            runs,
                            records,
                            reply,
                        } => {
                            let _ =
                                reply.send(shared.ship(&host, Some(&fr), &runs, &records).await);
                        }
                        Op::Finish(s, e, r) => {
                            let _ =
                                r.send(shared.finish_fleet_run(&lease, &fr, s, e.as_deref()).await);
                        }
                    }
                }
                let _ = shared.release(&lease).await;
            });
        });
        match init_rx.recv() {
            Ok(Ok((lease, broke, target))) => Ok((
                Session {
                    tx,
                    thread: Some(thread),
                    lease,
                    target,
                    fleet_run: fleet_run.to_string(),
                },
                broke,
            )),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(PgError::Db(
                    "shared journal: its session thread ended without an answer".into(),
                ))
            }
        }
    }

    fn ask<T>(&self, op: impl FnOnce(Reply<T>) -> Op) -> Result<T, PgError> {
        let (r, rx) = std_mpsc::channel();
        self.tx
            .send(op(r))
            .map_err(|_| PgError::Db("shared journal: its session has ended".into()))?;
        rx.recv()
            .map_err(|_| PgError::Db("shared journal: its session has ended".into()))?
    }

    /// Before each batch: the lease is still this controller's.
    pub fn check(&self) -> Result<(), PgError> {
        self.ask(Op::Check)
    }

    pub fn begin(&self, run: NewFleetRun) -> Result<(), PgError> {
        self.ask(|r| Op::Begin(run, r))
    }

    pub fn host_started(&self, host: &str, batch: usize) -> Result<(), PgError> {
        self.ask(|r| Op::HostStarted(host.to_string(), batch as i32, r))
    }

    pub fn host_finished(
        &self,
        host: &str,
        end: HostEnd,
        run_id: Option<&str>,
        error: Option<&str>,
    ) -> Result<(), PgError> {
        self.ask(|reply| Op::HostFinished {
            host: host.to_string(),
            run_id: run_id.map(str::to_string),
            outcome: outcome(end),
            error: error.map(str::to_string),
            reply,
        })
    }

    pub fn ship(
        &self,
        host: &str,
        runs: Vec<HostRun>,
        records: Vec<ShippedRecord>,
    ) -> Result<ShipReport, PgError> {
        self.ask(|reply| Op::Ship {
            host: host.to_string(),
            runs,
            records,
            reply,
        })
    }

    /// The controller's decision (`rollback-fleet`, `settle: commit`,
    /// `settle: rollback`) into the shared journal's fleet events.
    pub fn decide(&self, decision: &str) -> Result<(), PgError> {
        self.ask(|reply| Op::Decision("decision".into(), decision.to_string(), reply))
    }

    pub fn finish(&self, status: FleetRunStatus, error: Option<&str>) -> Result<(), PgError> {
        let error = error.map(str::to_string);
        self.ask(|r| Op::Finish(status, error, r))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Closing the channel ends the loop; the thread releases the lock
        // and drops the session.
        let (tx, _) = mpsc::unbounded_channel();
        drop(std::mem::replace(&mut self.tx, tx));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `--break-lock`: at a terminal, ask (y/N); without one, only with `--yes`.
fn confirm(h: &Holder, yes: bool) -> bool {
    if yes {
        eprintln!("--break-lock --yes: breaking the {h}");
        return true;
    }
    if !std::io::stdin().is_terminal() {
        eprintln!("--break-lock: no terminal to ask at; add --yes to break it unasked");
        return false;
    }
    eprint!("{h}\nbreak it, terminating that controller's session? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    matches!(line.trim(), "y" | "Y" | "yes")
}

pub fn outcome(end: HostEnd) -> HostOutcome {
    match end {
        HostEnd::Committed => HostOutcome::Committed,
        HostEnd::RolledBack | HostEnd::Undone => HostOutcome::RolledBack,
        HostEnd::Unreachable => HostOutcome::Unreachable,
        HostEnd::RollbackFailed | HostEnd::PlanMoved | HostEnd::Refused => HostOutcome::Failed,
    }
}

/// Where step records are numbered: below every action's (`-(2k+1)`,
/// `-(2k+2)`), apart from events (positive).
pub const STEP_SEQ_BASE: i64 = -(1 << 52);

/// Where the grants' free space records are numbered: between the step
/// records and the live ones, one per (grant, moment), keyed by the grant's
/// name so the same fact keeps its number whichever shipment carries it.
pub const SPACE_SEQ_BASE: i64 = -(1 << 54);

/// The seq of grant `grant`'s free space at `moment`: FNV-1a of the name
/// (32 bits, so the range stays clear of the others), two per grant.
fn space_seq(grant: &str, moment: &str) -> i64 {
    let h = grant.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    SPACE_SEQ_BASE - 2 * i64::from(h) - i64::from(moment == "after")
}

/// Where the step records shipped while a run runs are numbered: below
/// every step record's, one per change of the host journal (`- seq`).
pub const LIVE_SEQ_BASE: i64 = -(1 << 56);

/// `mend fleet host records --fleet-run F` on a host: the host run's record
/// (`{"run": ...}`) then its events (`{"seq": ID, "kind": "event", "body":
/// ...}`), its grants' free space, its actions as done and undone, and each step as it stood, one
/// JSON document a line; `seq` is the fact's number in the host's journal,
/// so shipping the same lines again adds nothing. Secret params' values
/// are masked here, on the host: the shared journal never holds them.
pub fn host_records(state: &Path, fleet_run: &str) -> anyhow::Result<Vec<Value>> {
    let (run_id, running) = match host::status(state, fleet_run)? {
        Status::Ended { run_id, .. } | Status::Lost { run_id } => (run_id, false),
        Status::Running => (host::running_run_id(state, fleet_run)?, true),
        Status::Missing => (None, false),
    };
    let Some(run_id) = run_id else {
        return Ok(vec![]);
    };
    let Some(j) = Journal::open_read_only(state)? else {
        return Ok(vec![]);
    };
    let r = j.run(&run_id)?;
    let mask = mend_journal::Redact::of_run(&r);
    let mut out = vec![json!({"run": {
        "run_id": r.id,
        "runbook": r.runbook_name,
        "runbook_version": r.runbook_version,
        "status": r.status.as_str(),
        "started_at_ms": r.started_at,
        "finished_at_ms": r.finished_at,
        "error": r.error.as_deref().map(|e| mask.text(e)),
    }})];
    for (id, e) in j.events_with_ids(&run_id)? {
        let e = mask.event(e);
        out.push(json!({"seq": id, "kind": "event", "body": {
            "step_idx": e.step_idx, "at": e.at, "level": e.level, "message": e.message,
        }}));
    }
    // The write grants' free space before (and after) it: the timeline's
    // bottom rows, as on one host.
    for g in j.grant_spaces(&run_id)? {
        out.push(json!({"seq": space_seq(&g.grant, &g.moment), "kind": "space", "body": g}));
    }
    if running {
        // While it runs: each step as it stands with its actions counted,
        // not listed (a step of 50,000 removals ships a few numbers). One
        // fact per step change, keyed by that change's seq: asked again
        // with nothing new, it ships nothing new. Actions follow at the end.
        let changed: std::collections::HashMap<u32, i64> =
            j.step_last_changes(&run_id)?.into_iter().collect();
        for s in j.steps(&run_id)? {
            let Some(&change) = changed.get(&s.idx) else {
                continue;
            };
            let counts = j.action_counts(&run_id, s.idx)?;
            let n = |f: &dyn Fn(mend_journal::ActionState) -> bool| -> u64 {
                counts.iter().filter(|(st, _)| f(*st)).map(|(_, n)| n).sum()
            };
            use mend_journal::ActionState as S;
            let done = n(&|st| matches!(st, S::Done | S::Undoing | S::Undone));
            let undone = n(&|st| st == S::Undone);
            let total = n(&|_| true);
            let s = mask.step(s);
            out.push(
                json!({"seq": LIVE_SEQ_BASE - change, "kind": "step", "body": {
                    "idx": s.idx, "id": s.step_id, "uses": s.uses, "status": s.status.as_str(),
                    "started_at": s.started_at, "finished_at": s.finished_at, "error": s.error,
                    "observed": change, "done": done, "undone": undone, "planned": total,
                }}),
            );
        }
        return Ok(out);
    }
    // Actions, numbered apart from events (negative): action k as done is
    // -(2k+1), its undo -(2k+2). Both are facts that never change, so the
    // shipment after the fleet rolled the host back adds the undos, and
    // nothing twice. An action of a run's plan keeps its place (k).
    for (k, a) in j.actions(&run_id)?.iter().enumerate() {
        let k = k as i64;
        use mend_journal::ActionState as S;
        let done = a.done_at.is_some() || matches!(a.state, S::Done | S::Undoing | S::Undone);
        if !done {
            continue;
        }
        let mut action: Value = serde_json::from_str(&a.action_json).unwrap_or(Value::Null);
        mask.json(&mut action);
        out.push(json!({"seq": -(2 * k + 1), "kind": "action", "body": {
            "step_idx": a.step_idx, "seq": a.seq, "action": action, "at": a.done_at,
        }}));
        if a.state == S::Undone {
            out.push(json!({"seq": -(2 * k + 2), "kind": "undo", "body": {
                "step_idx": a.step_idx, "seq": a.seq, "at": a.undone_at,
            }}));
        }
    }
    // Each step as it stands: one fact per (step, status), so a step
    // shipped verified and again undone keeps both; `observed` (the host
    // journal's change seq when read) says which is the latest.
    let observed = j.last_seq()?;
    for s in j.steps(&run_id)? {
        let s = mask.step(s);
        let rank = mend_journal::StepStatus::ALL
            .iter()
            .position(|x| *x == s.status)
            .unwrap_or(0) as i64;
        out.push(
            json!({"seq": STEP_SEQ_BASE - (i64::from(s.idx) * 16 + rank), "kind": "step",
                "body": {
                "idx": s.idx, "id": s.step_id, "uses": s.uses, "status": s.status.as_str(),
                "started_at": s.started_at, "finished_at": s.finished_at, "error": s.error,
                "observed": observed,
            }}),
        );
    }
    Ok(out)
}

/// The controller's reading of `host records`' lines.
pub fn parse_records(text: &str) -> Result<(Vec<HostRun>, Vec<ShippedRecord>), String> {
    let mut runs = Vec::new();
    let mut records = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: Value =
            serde_json::from_str(line).map_err(|e| format!("records line {}: {e}", n + 1))?;
        if let Some(r) = v.get("run") {
            let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
            runs.push(HostRun {
                run_id: s("run_id"),
                runbook: s("runbook"),
                runbook_version: s("runbook_version"),
                status: s("status"),
                started_at_ms: r["started_at_ms"].as_i64().unwrap_or(0),
                finished_at_ms: r["finished_at_ms"].as_i64(),
                error: r["error"].as_str().map(str::to_string),
            });
        } else {
            let Some(run) = runs.last() else {
                return Err(format!("records line {}: a record before its run", n + 1));
            };
            let seq = v["seq"]
                .as_i64()
                .ok_or_else(|| format!("records line {}: no seq", n + 1))?;
            records.push(ShippedRecord {
                run_id: run.run_id.clone(),
                seq,
                kind: v["kind"].as_str().unwrap_or("event").to_string(),
                body: v["body"].clone(),
            });
        }
    }
    Ok((runs, records))
}

/// Who runs the rollout, as the shared history names them.
pub fn operator() -> String {
    ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "unknown".into())
}
