//! `mend fleet run DIR`: the rollout of what `fleet plan --out DIR` saved,
//! batch by batch, canary first, each host running exactly its reviewed
//! plan (`mend run --plan`) detached on the host. Before each batch the one
//! stop rule ([`mend_runbook::fleet::rollout`]) decides; a started batch
//! finishes. `mend fleet resume FLEETRUN` goes on after a controller died.
//! A host whose run fails rolls itself back, as a single-host run
//! does; a host whose run verified is held (`mend run --hold`: not
//! committed, its undo data kept) until the rollout's end settles every
//! held host: committed, or with `--rollback-fleet` after the rule stopped
//! the rollout, rolled back newest batch first. `mend fleet rollback
//! FLEETRUN` rolls back the hosts a dead controller left held. Each
//! decision is journaled before it is acted on.

use std::io::Read;
use std::path::Path;

use mend_journal::fleet::{FleetHistory, FleetHostRecord, FleetRunRecord, LocalFleetJournal};
use mend_journal::now_ms;
use mend_runbook::fleet::{Decision, HostEnd, rollout};
use serde::Serialize;
use serde_json::json;

use crate::exit;
use crate::fleet::host::{Status, sha256_hex};
use crate::fleet::plan::{FORMAT, PLAN_FILE, SavedFleet, SavedHost};
use crate::fleet::remote::{HostError, Remote, each};
use crate::fleet::shared::{self, BreakLock, Session};
use crate::fleet::ssh::Ssh;
use crate::outcome::{Failure, Outcome};
use crate::run::lock::{Holder, LockError, RunLock};

/// How one host's part ended.
#[derive(Clone, Debug, Serialize)]
pub struct HostResult {
    pub host: String,
    pub batch: usize,
    pub end: HostEnd,
    pub run_id: Option<String>,
    pub detail: Option<String>,
}

/// What a fleet run ended in.
#[derive(Debug, Serialize)]
pub struct FleetRun {
    pub fleet_run: String,
    pub runbook: String,
    pub hosts: Vec<HostResult>,
    /// Hosts never started because the rule stopped the rollout.
    pub not_started: Vec<String>,
    pub stopped_before_batch: Option<usize>,
    pub batches: usize,
    /// How the held hosts were settled: "committed" or "rolled back".
    pub settled: Option<&'static str>,
    /// `mend fleet rollback`: hosts undone by the fleet are its success.
    #[serde(skip)]
    pub rollback_command: bool,
    /// Why the rollout stopped when the shared journal's lease was lost.
    pub fenced: Option<String>,
}

impl Outcome for FleetRun {
    fn exit_code(&self) -> i32 {
        let any = |e: HostEnd| self.hosts.iter().any(|h| h.end == e);
        if any(HostEnd::RollbackFailed) {
            exit::ROLLBACK_FAILED
        } else if self.fenced.is_some() {
            exit::LOCKED
        } else if any(HostEnd::Unreachable) {
            exit::UNREACHABLE
        } else if any(HostEnd::PlanMoved) {
            exit::PLAN_DRIFTED
        } else if self.rollback_command
            && self
                .hosts
                .iter()
                .all(|h| matches!(h.end, HostEnd::Undone | HostEnd::RolledBack))
        {
            exit::SUCCESS
        } else if self.hosts.iter().any(|h| h.end.failed()) || self.stopped_before_batch.is_some() {
            exit::STEP_FAILED
        } else {
            exit::SUCCESS
        }
    }
}

pub fn load(dir: &Path) -> Result<SavedFleet, Failure> {
    let file = dir.join(PLAN_FILE);
    let name = file.display().to_string();
    let bytes = std::fs::read(&file).map_err(|e| {
        Failure::input(
            &name,
            format!("cannot read {name}: {e}"),
            Some("give the directory `mend fleet plan --out DIR` saved".into()),
        )
    })?;
    let saved: SavedFleet = serde_json::from_slice(&bytes)
        .map_err(|e| Failure::input(&name, format!("{name} is not a fleet plan: {e}"), None))?;
    if saved.format != FORMAT {
        return Err(Failure::input(
            &name,
            format!("{name} is {:?}, this mend reads {FORMAT:?}", saved.format),
            Some("plan again with this mend".into()),
        ));
    }
    Ok(saved)
}

/// A host's reviewed plan, checked against the sha256 the fleet plan pinned.
fn host_plan(dir: &Path, h: &SavedHost) -> Result<Vec<u8>, Failure> {
    let file = dir.join(&h.plan);
    let mut data = Vec::new();
    std::fs::File::open(&file)
        .and_then(|mut f| f.read_to_end(&mut data))
        .map_err(|e| {
            Failure::input(
                &file.display().to_string(),
                format!("cannot read {}: {e}", file.display()),
                None,
            )
        })?;
    if sha256_hex(&data) != h.plan_sha256 {
        return Err(Failure::input(
            &file.display().to_string(),
            format!(
                "{} changed since it was planned (sha256 differs)",
                file.display()
            ),
            Some("plan again: a fleet runs only what was reviewed".into()),
        ));
    }
    Ok(data)
}

fn fleet_run_id() -> Result<String, Failure> {
    let mut b = [0u8; 6];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| anyhow::anyhow!("cannot read /dev/urandom: {e}"))?;
    Ok(format!("F-{}", hex::encode(b)))
}

fn end_of(status: &Status) -> (HostEnd, Option<String>, Option<String>) {
    match status {
        Status::Ended {
            exit_code,
            run_id,
            error,
            failed_step,
            ..
        } => {
            let end = match *exit_code {
                exit::SUCCESS => HostEnd::Committed,
                exit::STEP_FAILED => HostEnd::RolledBack,
                exit::ROLLBACK_FAILED => HostEnd::RollbackFailed,
                exit::PLAN_DRIFTED => HostEnd::PlanMoved,
                _ => HostEnd::Refused,
            };
            let detail = match (failed_step, error) {
                (Some(s), Some(e)) => Some(format!("{s}: {}", e.lines().next().unwrap_or(""))),
                (None, Some(e)) => Some(e.lines().next().unwrap_or("").to_string()),
                _ if end != HostEnd::Committed => Some(format!("mend run exited {exit_code}")),
                _ => None,
            };
            (end, run_id.clone(), detail)
        }
        Status::Lost { run_id } => (
            HostEnd::Refused,
            run_id.clone(),
            Some("the run's supervisor is gone without an outcome".into()),
        ),
        Status::Missing | Status::Running => (
            HostEnd::Refused,
            None,
            Some("no run of this fleet run on the host".into()),
        ),
    }
}

fn record(
    host: &str,
    batch: usize,
    state: &str,
    run_id: Option<String>,
    detail: Option<String>,
) -> FleetHostRecord {
    FleetHostRecord {
        host: host.to_string(),
        batch: batch as u32,
        state: state.to_string(),
        run_id,
        detail,
        at: now_ms(),
    }
}

fn state_word(e: HostEnd) -> &'static str {
    match e {
        // Verified and held on the host until the rollout's end settles it.
        HostEnd::Committed => "held",
        HostEnd::Undone => "undone",
        HostEnd::RolledBack => "rolled-back",
        HostEnd::RollbackFailed => "rollback-failed",
        HostEnd::PlanMoved => "plan-moved",
        HostEnd::Refused => "refused",
        HostEnd::Unreachable => "unreachable",
    }
}

pub fn host_line(r: &HostResult) -> String {
    let mut s = format!("{}  {}", r.host, r.end.label());
    if let Some(d) = &r.detail {
        s.push_str(&format!("  {d}"));
    }
    if let Some(id) = &r.run_id {
        s.push_str(&format!("  run {id}"));
    }
    s
}

/// Journaled when the fleet run starts with `--rollback-fleet`.
const ROLLBACK_FLEET: &str = "rollback-fleet";
const SETTLE_COMMIT: &str = "settle: commit";
const SETTLE_ROLLBACK: &str = "settle: rollback";

pub fn run(
    state_dir: &Path,
    dir: &Path,
    json: bool,
    rollback_fleet: bool,
    brk: BreakLock,
) -> Result<FleetRun, Failure> {
    let saved = load(dir)?;
    let mut plans = Vec::new();
    for h in &saved.hosts {
        plans.push(host_plan(dir, h)?);
    }
    check_versions(dir, &saved)?;
    let id = fleet_run_id()?;
    let _lock = lock(state_dir, &saved.runbook, &id)?;
    // The fleet-wide lease before any host is touched; held to the end.
    let pg = open_shared(&saved, &id, brk)?;
    let mut journal = LocalFleetJournal::open(state_dir)?;
    journal.begin(&FleetRunRecord {
        id: id.clone(),
        runbook: saved.runbook.clone(),
        plan_dir: std::fs::canonicalize(dir)
            .unwrap_or_else(|_| dir.to_path_buf())
            .display()
            .to_string(),
        status: "running".into(),
        started_at: now_ms(),
        ended_at: None,
    })?;
    if rollback_fleet {
        journal.decide(&id, ROLLBACK_FLEET)?;
        if let Some(Err(e)) = pg.as_ref().map(|s| s.decide(ROLLBACK_FLEET)) {
            eprintln!("warning: {e}");
        }
    }
    roll(
        &saved,
        &plans,
        &id,
        journal,
        Vec::new(),
        &[],
        json,
        pg.as_ref(),
    )
}

/// Every host's mend is this controller's version before anything starts
/// anywhere: a host whose mend changed since the plan is refused by name,
/// with both versions (exit 2), and nothing is journaled or started. A host
/// not reached is left to the rollout, which counts it.
fn check_versions(dir: &Path, saved: &SavedFleet) -> Result<(), Failure> {
    let ssh = Ssh::new(saved.ssh_config.as_deref())
        .map_err(|e| anyhow::anyhow!("cannot make ssh's control directory: {e}"))?;
    let results = each(&saved.hosts, saved.parallel, |h| {
        Remote {
            ssh: &ssh,
            target: &h.target,
        }
        .check_version()
    });
    for h in &saved.hosts {
        ssh.close(&h.target.ssh);
    }
    let refused: Vec<String> = saved
        .hosts
        .iter()
        .zip(results)
        .filter_map(|(h, r)| match r {
            Err(HostError::Refused(t)) => Some(format!("{}: {t}", h.target.name)),
            _ => None,
        })
        .collect();
    if refused.is_empty() {
        return Ok(());
    }
    Err(Failure::input(
        &dir.display().to_string(),
        format!(
            "{} host{} cannot run this plan, nothing was started:\n  {}",
            refused.len(),
            if refused.len() == 1 { "" } else { "s" },
            refused.join("\n  ")
        ),
        Some("run `mend fleet install` for those hosts, then `mend fleet plan` again".into()),
    ))
}

/// With a shared journal: connect, take (or break) the lease, record the
/// fleet run. `None` without one.
fn open_shared(saved: &SavedFleet, id: &str, brk: BreakLock) -> Result<Option<Session>, Failure> {
    let Some(dsn) = shared::dsn(saved) else {
        if brk.requested {
            return Err(Failure::input(
                "--break-lock",
                "--break-lock breaks the shared journal's fleet lock, and the inventory names                  no [fleet] journal",
                Some("the controller's local lock is freed by ending its holder".into()),
            ));
        }
        return Ok(None);
    };
    let (session, broke) = Session::open(&dsn, &saved.runbook, id, brk).map_err(shared::failure)?;
    if let Some(b) = broke {
        match &b.was {
            Some(h) => eprintln!("broke the fleet lock: {h}; journaled in mend_fleet_events"),
            None => eprintln!("--break-lock: nobody held the fleet lock"),
        }
    }
    session
        .begin(mend_journal::pg::NewFleetRun {
            id: id.to_string(),
            runbook_version: "-".into(),
            runbook_sha256: saved.runbook_sha256.clone(),
            operator: shared::operator(),
        })
        .map_err(shared::failure)?;
    Ok(Some(session))
}

/// One rollout of a runbook at a time from this controller: the run lock
/// of `mend run` (a flock the kernel drops with its holder), keyed
/// `fleet-RUNBOOK`. Across controllers it takes the shared journal's lease.
fn lock(state_dir: &Path, runbook: &str, id: &str) -> Result<RunLock, Failure> {
    RunLock::acquire(
        state_dir,
        &format!("fleet-{runbook}"),
        &Holder::current(Some(id.to_string())),
    )
    .map_err(|e| match e {
        LockError::Io(e) => Failure::Internal(anyhow::anyhow!("cannot take the fleet lock: {e}")),
        e => Failure::Locked(format!("{e}: one rollout of a runbook at a time")),
    })
}

/// `mend fleet resume FLEETRUN`: a controller killed mid-rollout goes on.
/// Hosts the journal saw end keep their outcome; the batch that was in
/// flight is finished (each host is asked again: a start of the same fleet
/// run finds the run already there and only waits for it); then the rule
/// applies before each batch not started. A host the controller could not
/// reach is asked again, even in a run that has ended: its run went on
/// alone, and is settled as the others were.
pub fn resume(state_dir: &Path, id: &str, json: bool, brk: BreakLock) -> Result<FleetRun, Failure> {
    let journal = LocalFleetJournal::open_existing(state_dir)?;
    let run = match &journal {
        Some(j) => j.run(id)?,
        None => None,
    };
    let (Some(journal), Some(run)) = (journal, run) else {
        return Err(Failure::input(
            id,
            format!("no fleet run {id} in {}", state_dir.display()),
            Some("`mend fleet history` lists them".into()),
        ));
    };
    // A run that ended with hosts it could not reach is resumed to
    // reconcile them: their runs went on alone, detached.
    let unreached = journal
        .hosts(id)?
        .iter()
        .any(|h| h.state == state_word(HostEnd::Unreachable));
    if run.status != "running" && run.status != "unsettled" && !unreached {
        return Err(Failure::input(
            id,
            format!(
                "fleet run {id} has ended ({}): nothing to resume",
                run.status
            ),
            Some("`mend fleet show` says how each host ended".into()),
        ));
    }
    let dir = Path::new(&run.plan_dir);
    let saved = load(dir)?;
    let _lock = lock(state_dir, &saved.runbook, id)?;
    let pg = open_shared(&saved, id, brk)?;
    let mut plans = Vec::new();
    for h in &saved.hosts {
        plans.push(host_plan(dir, h)?);
    }
    let rows = journal.hosts(id)?;
    let ended: Vec<HostResult> = rows
        .iter()
        .filter_map(|h| {
            let end = match h.state.as_str() {
                // Verified: held, or being settled (the settle goes on).
                "held" | "committing" | "committed" | "undoing" => HostEnd::Committed,
                "undone" => HostEnd::Undone,
                "rolled-back" => HostEnd::RolledBack,
                "rollback-failed" => HostEnd::RollbackFailed,
                "plan-moved" => HostEnd::PlanMoved,
                "refused" => HostEnd::Refused,
                // An unreachable host may have gone on alone: asked again.
                _ => return None,
            };
            Some(HostResult {
                host: h.host.clone(),
                batch: h.batch as usize,
                end,
                run_id: h.run_id.clone(),
                detail: h.detail.clone(),
            })
        })
        .collect();
    let touched: Vec<String> = rows.into_iter().map(|h| h.host).collect();
    roll(
        &saved,
        &plans,
        id,
        journal,
        ended,
        &touched,
        json,
        pg.as_ref(),
    )
}

/// The rollout from where `ended` leaves it; `touched` are the hosts the
/// journal shows started (their batch is finished whatever the rule says).
#[allow(clippy::too_many_arguments)]
fn roll(
    saved: &SavedFleet,
    plans: &[Vec<u8>],
    id: &str,
    mut journal: LocalFleetJournal,
    ended: Vec<HostResult>,
    touched: &[String],
    json: bool,
    pg: Option<&Session>,
) -> Result<FleetRun, Failure> {
    let id = id.to_string();
    let by_name = |n: &str| saved.hosts.iter().position(|h| h.target.name == n);
    let ssh = Ssh::new(saved.ssh_config.as_deref())
        .map_err(|e| anyhow::anyhow!("cannot make ssh's control directory: {e}"))?;
    let say = |line: String| {
        if json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    say(format!(
        "fleet run {id}: {} on {} hosts in {} batches (stops before a batch when more than {} failed)",
        saved.runbook,
        saved.hosts.len(),
        saved.batches.len(),
        saved.max_failures
    ));
    let mut results: Vec<HostResult> = ended;
    let mut stopped = None;
    let mut fenced = None;
    let total = saved.batches.len();
    for (bi, batch) in saved.batches.iter().enumerate() {
        let left: Vec<&String> = batch
            .iter()
            .filter(|n| !results.iter().any(|r| &r.host == *n))
            .collect();
        if left.is_empty() {
            continue;
        }
        let in_flight = batch.iter().any(|n| touched.contains(n));
        let ends: Vec<HostEnd> = results.iter().map(|r| r.end).collect();
        if in_flight {
            say(format!("batch {}/{total}: in flight, finishing it", bi + 1));
        } else if let Decision::Stop {
            failures,
            max_failures,
        } = rollout(&ends, saved.max_failures)
        {
            say(format!(
                "batch {}/{total}: not started; failures {failures} > max_failures {max_failures}: stopping",
                bi + 1
            ));
            stopped = Some(bi + 1);
            break;
        }
        // Fenced out (another controller took the lease): start nothing more.
        if let Some(Err(e)) = pg.map(Session::check) {
            say(format!("batch {}/{total}: not started; {e}", bi + 1));
            stopped = Some(bi + 1);
            fenced = Some(e.to_string());
            break;
        }
        let idx: Vec<usize> = left.iter().filter_map(|n| by_name(n)).collect();
        // The intent first: a controller killed now still knows where it went.
        for &i in &idx {
            journal.host(
                &id,
                &record(&saved.hosts[i].target.name, bi + 1, "starting", None, None),
            )?;
            if let Some(Err(e)) = pg.map(|s| s.host_started(&saved.hosts[i].target.name, bi + 1)) {
                say(format!("warning: {e}"));
            }
        }
        let done = each(&idx, saved.parallel, |&i| {
            let h = &saved.hosts[i];
            let r = Remote {
                ssh: &ssh,
                target: &h.target,
            };
            let status = r
                .send(&h.plan_sha256, &plans[i])
                .and_then(|()| r.start(&id, &h.plan_sha256))
                .and_then(|_| wait_shipping(pg, &r, &id, &say));
            let (end, run_id, detail) = match &status {
                Ok(s) => end_of(s),
                Err(HostError::Unreachable(t)) => (HostEnd::Unreachable, None, Some(t.clone())),
                Err(HostError::Refused(t)) => (HostEnd::Refused, None, Some(t.clone())),
            };
            let res = HostResult {
                host: h.target.name.clone(),
                batch: bi + 1,
                end,
                run_id,
                detail,
            };
            say(host_line(&res));
            if let Some(s) = pg {
                ship(s, &r, &res, &say);
            }
            res
        });
        for r in &done {
            journal.host(
                &id,
                &record(
                    &r.host,
                    r.batch,
                    state_word(r.end),
                    r.run_id.clone(),
                    r.detail.clone(),
                ),
            )?;
        }
        results.extend(done);
        let failed_now = results
            .iter()
            .filter(|r| r.batch == bi + 1 && r.end.failed())
            .count();
        let failed_all = results.iter().filter(|r| r.end.failed()).count();
        say(format!(
            "batch {}/{total}: {} ok, {failed_now} failed; failures so far {failed_all}, max_failures {}",
            bi + 1,
            batch.len() - failed_now,
            saved.max_failures
        ));
    }
    let back = match settle_way(&journal, &id)? {
        Some(way) => way,
        None => stopped.is_some() && journal.decisions(&id)?.iter().any(|d| d == ROLLBACK_FLEET),
    };
    let (settled, unsettled) = settle(
        saved,
        &ssh,
        &id,
        &mut journal,
        &mut results,
        !back,
        &say,
        pg,
    )?;
    results.sort_by_key(|r| (r.batch, by_name(&r.host)));
    let not_started: Vec<String> = saved
        .hosts
        .iter()
        .map(|h| h.target.name.clone())
        .filter(|n| !results.iter().any(|r| &r.host == n))
        .collect();
    let outcome = FleetRun {
        fleet_run: id.clone(),
        runbook: saved.runbook.clone(),
        hosts: results,
        not_started,
        stopped_before_batch: stopped,
        batches: total,
        settled,
        rollback_command: false,
        fenced,
    };
    for h in &saved.hosts {
        ssh.close(&h.target.ssh);
    }
    let status = match outcome.exit_code() {
        _ if unsettled => "unsettled",
        exit::SUCCESS => "committed",
        _ if outcome.stopped_before_batch.is_some() => "stopped",
        _ => "failed",
    };
    journal.end(&id, status)?;
    if let Some(s) = pg
        && outcome.fenced.is_none()
    {
        use mend_journal::pg::FleetRunStatus as S;
        let st = match status {
            "committed" => S::Committed,
            _ => S::Failed,
        };
        if let Err(e) = s.finish(st, None) {
            say(format!("warning: {e}"));
        }
    }
    Ok(outcome)
}

/// Between two shipments of a running host's progress.
const LIVE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// `r.wait(id)`, shipping the host run's progress (steps with their
/// actions counted, events) to the shared journal meanwhile, so a viewer
/// sees the run as it goes. Shipping is idempotent (records keyed by the
/// host journal's numbers), and the host's journal stays the truth: a
/// shared journal that fails only costs the live view, said once.
fn wait_shipping(
    pg: Option<&Session>,
    r: &Remote<'_>,
    id: &str,
    say: &(dyn Fn(String) + Sync),
) -> Result<Status, HostError> {
    let Some(s) = pg else {
        return r.wait(id);
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let _ = tx.send(r.wait(id));
        });
        let mut warned = false;
        loop {
            match rx.recv_timeout(LIVE_EVERY) {
                Ok(status) => return status,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(HostError::Refused("the wait for the host ended".into()));
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            }
            let shipped = r
                .records(id)
                .map_err(|e| e.to_string())
                .and_then(|t| shared::parse_records(&t))
                .and_then(|(runs, recs)| {
                    s.ship(&r.target.name, runs, recs)
                        .map_err(|e| e.to_string())
                });
            if let Err(e) = shipped
                && !warned
            {
                warned = true;
                say(format!(
                    "warning: {}: progress not shipped to the shared journal while it runs \
                     ({e}); the host's journal keeps it, the run goes on, and it is shipped \
                     again when the host ends",
                    r.target.name
                ));
            }
        }
    })
}

/// After a host ends: its outcome into the shared journal, then its run's
/// records, read from the host. A failure here is a warning: the host's own
/// journal keeps them, and shipping again adds nothing twice.
fn ship(s: &Session, r: &Remote<'_>, res: &HostResult, say: &dyn Fn(String)) {
    if let Err(e) = s.host_finished(
        &res.host,
        res.end,
        res.run_id.as_deref(),
        res.detail.as_deref(),
    ) {
        say(format!("warning: {}: {e}", res.host));
    }
    if res.end == HostEnd::Unreachable {
        return;
    }
    let shipped = r
        .records(&s.fleet_run)
        .map_err(|e| e.to_string())
        .and_then(|t| shared::parse_records(&t))
        .and_then(|(runs, recs)| s.ship(&res.host, runs, recs).map_err(|e| e.to_string()));
    if let Err(e) = shipped {
        say(format!(
            "warning: {}: run records not shipped to the shared journal: {e}",
            res.host
        ));
    }
}

impl FleetRun {
    pub fn render(&self, json: bool) -> i32 {
        let code = self.exit_code();
        if json {
            let v = json!({"fleet_run": self.fleet_run, "runbook": self.runbook, "hosts": self.hosts, "not_started": self.not_started, "stopped_before_batch": self.stopped_before_batch, "exit_code": code});
            println!(
                "{}",
                serde_json::to_string_pretty(&v).expect("JSON serializes")
            );
            return code;
        }
        println!();
        let w = self
            .hosts
            .iter()
            .map(|h| h.host.len())
            .chain(self.not_started.iter().map(String::len))
            .max()
            .unwrap_or(4)
            .max(4);
        println!("{:<w$}  batch  {:<16}  run", "host", "outcome");
        for h in &self.hosts {
            println!(
                "{:<w$}  {:<5}  {:<16}  {}",
                h.host,
                h.batch,
                h.end.label(),
                h.run_id.as_deref().unwrap_or("-")
            );
        }
        for n in &self.not_started {
            println!("{n:<w$}  {:<5}  {:<16}  -", "-", "not started");
        }
        let verdict = match code {
            exit::SUCCESS if self.rollback_command => {
                "every held host rolled back by the fleet".to_string()
            }
            exit::SUCCESS => "every host committed".to_string(),
            _ => match self.stopped_before_batch {
                Some(b) => format!(
                    "stopped before batch {b}/{}; hosts not started are untouched; {}",
                    self.batches,
                    match self.settled {
                        Some("rolled back") => {
                            "the hosts done were rolled back by the fleet, newest batch first"
                        }
                        Some(_) => {
                            "the hosts done are committed (without --rollback-fleet they keep the change)"
                        }
                        None => "no host was left held",
                    }
                ),
                None => "not every host committed".to_string(),
            },
        };
        println!("fleet run {}: {verdict}", self.fleet_run);
        code
    }
}

/// How a decision already journaled settles this fleet run's held hosts:
/// Some(true) rolls back, Some(false) commits, None not decided yet.
fn settle_way(journal: &LocalFleetJournal, id: &str) -> Result<Option<bool>, Failure> {
    Ok(journal
        .decisions(id)?
        .iter()
        .rev()
        .find_map(|d| match d.as_str() {
            SETTLE_ROLLBACK => Some(true),
            SETTLE_COMMIT => Some(false),
            _ => None,
        }))
}

/// Settle every host the journal shows held (or half settled): commit them
/// in batch order, or roll them back newest batch first, one at a time. The
/// decision is journaled first, then each host's intent, then its end.
/// Answers how they were settled, and whether any was left held.
#[allow(clippy::too_many_arguments)]
fn settle(
    saved: &SavedFleet,
    ssh: &Ssh,
    id: &str,
    journal: &mut LocalFleetJournal,
    results: &mut [HostResult],
    commit: bool,
    say: &dyn Fn(String),
    pg: Option<&Session>,
) -> Result<(Option<&'static str>, bool), Failure> {
    let mut pending: Vec<FleetHostRecord> = journal
        .hosts(id)?
        .into_iter()
        .filter(|h| matches!(h.state.as_str(), "held" | "committing" | "undoing"))
        .collect();
    if pending.is_empty() {
        return Ok((None, false));
    }
    // Tests kill the controller here: every host verified, none settled.
    mend_faults::crash_point("fleet-settle", 0, 0);
    if commit {
        pending.sort_by_key(|h| h.batch);
    } else {
        pending.sort_by_key(|h| std::cmp::Reverse(h.batch));
    }
    let decision = if commit {
        SETTLE_COMMIT
    } else {
        SETTLE_ROLLBACK
    };
    journal.decide(id, decision)?;
    // The shared journal hears it too, before any host is settled.
    if let Some(Err(e)) = pg.map(|s| s.decide(decision)) {
        say(format!("warning: {e}"));
    }
    say(format!(
        "{} {} held host{}{}",
        if commit { "committing" } else { "rolling back" },
        pending.len(),
        if pending.len() == 1 { "" } else { "s" },
        if commit { "" } else { ", newest batch first" }
    ));
    let mut unsettled = false;
    for h in pending {
        let Some(target) = saved.hosts.iter().find(|s| s.target.name == h.host) else {
            continue;
        };
        let batch = h.batch as usize;
        let intent = if commit { "committing" } else { "undoing" };
        journal.host(id, &record(&h.host, batch, intent, h.run_id.clone(), None))?;
        let r = Remote {
            ssh,
            target: &target.target,
        };
        let (end, state, detail) = match r.settle(id, commit) {
            Ok(v) if v["settled"].as_bool() == Some(true) => {
                if commit {
                    (HostEnd::Committed, "committed", None)
                } else {
                    (HostEnd::Undone, "undone", None)
                }
            }
            Ok(v) if v["status"] == "rollback-failed" => (
                HostEnd::RollbackFailed,
                "rollback-failed",
                v["message"]
                    .as_str()
                    .map(|m| m.lines().next().unwrap_or("").to_string()),
            ),
            Ok(v) => {
                unsettled = true;
                (
                    HostEnd::Refused,
                    "held",
                    Some(format!(
                        "still {}: {}",
                        v["status"].as_str().unwrap_or("?"),
                        v["message"]
                            .as_str()
                            .unwrap_or("")
                            .lines()
                            .next()
                            .unwrap_or("")
                    )),
                )
            }
            Err(e) => {
                unsettled = true;
                let end = match e {
                    HostError::Unreachable(_) => HostEnd::Unreachable,
                    HostError::Refused(_) => HostEnd::Refused,
                };
                (end, "held", Some(format!("still held: {e}")))
            }
        };
        journal.host(
            id,
            &record(&h.host, batch, state, h.run_id.clone(), detail.clone()),
        )?;
        let res = HostResult {
            host: h.host.clone(),
            batch,
            end,
            run_id: h.run_id.clone(),
            detail,
        };
        say(host_line(&res));
        // The host's run changed again (held -> committed or rolled back):
        // the shared journal hears it, as after the run itself.
        if let Some(s) = pg {
            ship(s, &r, &res, say);
        }
        if let Some(x) = results.iter_mut().find(|x| x.host == h.host) {
            *x = res;
        }
    }
    Ok((
        Some(if commit { "committed" } else { "rolled back" }),
        unsettled,
    ))
}

/// `mend fleet rollback FLEETRUN`: roll back every host of a fleet run that
/// is still held (a controller died before it settled them), newest batch
/// first. Hosts whose run was still going are waited for first.
pub fn rollback(state_dir: &Path, id: &str, json: bool) -> Result<FleetRun, Failure> {
    let journal = LocalFleetJournal::open_existing(state_dir)?;
    let run = match &journal {
        Some(j) => j.run(id)?,
        None => None,
    };
    let (Some(mut journal), Some(run)) = (journal, run) else {
        return Err(Failure::input(
            id,
            format!("no fleet run {id} in {}", state_dir.display()),
            Some("`mend fleet history` lists them".into()),
        ));
    };
    let saved = load(Path::new(&run.plan_dir))?;
    let _lock = lock(state_dir, &saved.runbook, id)?;
    let ssh = Ssh::new(saved.ssh_config.as_deref())
        .map_err(|e| anyhow::anyhow!("cannot make ssh's control directory: {e}"))?;
    let say = |line: String| {
        if json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    // The shared journal hears this rollback as it heard the run: under the
    // fleet lock, each settled host shipped again.
    let pg = open_shared(
        &saved,
        id,
        BreakLock {
            requested: false,
            yes: false,
        },
    )?;
    say(format!(
        "fleet run {id}: rolling back its held hosts ({})",
        saved.runbook
    ));
    // Decided before anything is acted on: a resume rolls back too.
    journal.decide(id, SETTLE_ROLLBACK)?;
    let mut results = Vec::new();
    for h in journal.hosts(id)? {
        let mut res = HostResult {
            host: h.host.clone(),
            batch: h.batch as usize,
            end: HostEnd::Refused,
            run_id: h.run_id.clone(),
            detail: h.detail.clone(),
        };
        match h.state.as_str() {
            // In flight when the controller died: its outcome first.
            "starting" | "running" | "unreachable" => {
                if let Some(t) = saved.hosts.iter().find(|s| s.target.name == h.host) {
                    let r = Remote {
                        ssh: &ssh,
                        target: &t.target,
                    };
                    let (end, run_id, detail) = match r.wait(id) {
                        Ok(s) => end_of(&s),
                        Err(e) => (HostEnd::Unreachable, None, Some(e.to_string())),
                    };
                    journal.host(
                        id,
                        &record(
                            &h.host,
                            res.batch,
                            state_word(end),
                            run_id.clone(),
                            detail.clone(),
                        ),
                    )?;
                    res.end = end;
                    res.run_id = run_id.or(res.run_id);
                    res.detail = detail;
                }
            }
            "committed" => res.end = HostEnd::Committed,
            "undone" => res.end = HostEnd::Undone,
            "rolled-back" => res.end = HostEnd::RolledBack,
            "rollback-failed" => res.end = HostEnd::RollbackFailed,
            "plan-moved" => res.end = HostEnd::PlanMoved,
            _ => {}
        }
        results.push(res);
    }
    let (settled, unsettled) = settle(
        &saved,
        &ssh,
        id,
        &mut journal,
        &mut results,
        false,
        &say,
        pg.as_ref(),
    )?;
    for h in &saved.hosts {
        ssh.close(&h.target.ssh);
    }
    results.sort_by_key(|r| (r.batch, r.host.clone()));
    let not_started = saved
        .hosts
        .iter()
        .map(|h| h.target.name.clone())
        .filter(|n| !results.iter().any(|r| &r.host == n))
        .collect();
    let outcome = FleetRun {
        fleet_run: id.to_string(),
        runbook: saved.runbook.clone(),
        hosts: results,
        not_started,
        stopped_before_batch: None,
        batches: saved.batches.len(),
        settled,
        rollback_command: true,
        fenced: None,
    };
    let status = if unsettled {
        "unsettled"
    } else if outcome.exit_code() == exit::SUCCESS {
        "rolled-back"
    } else {
        "failed"
    };
    journal.end(id, status)?;
    if let Some(s) = &pg {
        use mend_journal::pg::FleetRunStatus as S;
        let st = match status {
            "rolled-back" => S::RolledBack,
            "unsettled" => S::Stopped,
            _ => S::Failed,
        };
        if let Err(e) = s.finish(st, None) {
            say(format!("warning: {e}"));
        }
    }
    Ok(outcome)
}
