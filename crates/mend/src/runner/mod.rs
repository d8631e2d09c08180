//! From a runbook file to a prepared run: the runbook validated, each step's
//! component loaded (pinned, compiled once, cached), described, its `with`
//! table checked against the step's own parameter specs, its grants opened.
//! Then plan, run, resume, rollback and rehearse, all journaled.

mod apply_run;
mod check_params;
mod fault_rehearsal;
mod rehearse;
mod rollback;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use serde::Serialize;

use crate::supply::Trust;
use mend_host::commands::CommandPolicy;
use mend_host::grants::Grants;
use mend_host::sandbox::{HostCtx, Limits, LoadedStep, Sandbox, wit};
use mend_plan::StepPlan;
use mend_runbook::{Diagnostic, Runbook, Uses};

pub use apply_run::{RunOutcome, resume, run};
pub use fault_rehearsal::{FaultReport, Variant, rehearse_faults};
pub use rehearse::{RehearsalReport, rehearse, rehearse_on_copies, tree_fingerprint};
pub use rollback::{RollbackOutcome, rollback};

/// The event journaled when a step's actions are applied and its verify
/// passed: a drill's clock stops at the last one.
pub const VERIFIED: &str = "step verified";

/// Why a command did not succeed, in the terms of its exit code.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Bad input: nothing ran, nothing changed.
    #[error("{}", render_diagnostics(.0))]
    BadInput(Vec<Diagnostic>),
    /// Another run holds the lock.
    #[error("{0}")]
    Locked(String),
    /// The journal is damaged; nothing was done with it.
    #[error("error: {0}")]
    Damaged(mend_journal::Damaged),
    /// A journal write failed (a full or failing disk): the run stopped
    /// before its next change and can be resumed once that is fixed.
    #[error("error: {error:#}")]
    Journal {
        error: anyhow::Error,
        run: Option<String>,
    },
    /// mend itself failed.
    #[error("{0:#}")]
    Internal(anyhow::Error),
}

impl Failure {
    /// Names the run a journal failure stopped, for the way back.
    pub fn in_run(self, id: &str) -> Failure {
        match self {
            Failure::Journal { error, run: None } => Failure::Journal {
                error,
                run: Some(id.to_string()),
            },
            f => f,
        }
    }

    /// Whether an error came from writing or reading the journal.
    pub(crate) fn is_journal(e: &anyhow::Error) -> bool {
        e.chain().any(|c| c.is::<rusqlite::Error>())
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Failure {
        match e
            .chain()
            .find_map(|c| c.downcast_ref::<mend_journal::Damaged>())
        {
            Some(d) => Failure::Damaged(d.clone()),
            None if Failure::is_journal(&e) => Failure::Journal {
                error: e,
                run: None,
            },
            None => Failure::Internal(e),
        }
    }
}

impl From<mend_journal::Damaged> for Failure {
    fn from(d: mend_journal::Damaged) -> Failure {
        Failure::Damaged(d)
    }
}

fn render_diagnostics(d: &[Diagnostic]) -> String {
    d.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("\n\n")
}

impl Failure {
    /// A bad-input failure without a runbook position.
    pub fn input(file: &str, message: impl Into<String>, hint: Option<String>) -> Failure {
        Failure::BadInput(vec![Diagnostic::plain(file, message, hint)])
    }
}

/// Settings that hold for a whole invocation.
#[derive(Clone)]
pub struct Settings {
    pub state_dir: PathBuf,
    /// The host's clock for steps (`--now`), else the real one.
    pub now: Option<i64>,
    /// Where step log lines go as they happen.
    pub sink: Option<mend_host::sandbox::LogSink>,
    /// Live lines for the operator (step started, action done).
    pub reporter: Arc<dyn Reporter>,
    /// The supply-chain policy and this invocation's approvals.
    pub trust: Trust,
}

/// Live output of a run. The CLI draws it; tests and `--json` silence it.
pub trait Reporter: Send + Sync {
    /// A line of progress ("step 2/5 cull: 1,204 actions").
    fn line(&self, text: &str);
    /// Actions of a step are about to be applied.
    fn actions_start(&self, _step: &str, _total: u64) {}
    /// One more action applied.
    fn action_done(&self, _bytes: u64) {}
    /// The step's actions are all applied.
    fn actions_end(&self) {}
    /// A copy or extract of `total` bytes begins (`what`: "copy a -> b").
    fn bytes_start(&self, _what: &str, _total: u64) {}
    /// `n` more bytes of it are written.
    fn bytes_done(&self, _n: u64) {}
    /// It ended.
    fn bytes_end(&self) {}
}

/// A reporter that prints nothing.
pub struct Silent;
impl Reporter for Silent {
    fn line(&self, _: &str) {}
}

/// A step, loaded and checked, ready to plan.
pub struct PreparedStep {
    pub idx: u32,
    pub def: mend_runbook::Step,
    pub loaded: LoadedStep,
    pub info: wit::StepInfo,
    pub params_json: String,
    pub grants: Arc<Grants>,
    pub commands: CommandPolicy,
    pub limits: Limits,
}

/// A step as planned: its preparation and its plan (with the step's logs)
/// or why it has none.
pub type PlannedStep<'a> = (
    &'a PreparedStep,
    Result<(StepPlan, Vec<(String, String)>), PlanError>,
);

/// A runbook with every step prepared.
pub struct Prepared {
    pub runbook: Runbook,
    pub steps: Vec<PreparedStep>,
    /// For `mend lint`: what this machine lacks (a grant's directory, a
    /// command's user), each checked no further.
    pub warnings: Vec<String>,
}

/// What a preparation is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Purpose {
    /// plan, run, resume, rollback: everything must be on this machine.
    #[default]
    Run,
    /// A rehearsal: commands run their stand-ins.
    Rehearse,
    /// `mend lint`: a missing grant directory or user is a warning.
    Lint,
}

/// The names of the bundled steps.
pub fn bundled_names() -> Vec<&'static str> {
    crate::bundled::BUNDLED.iter().map(|(n, _)| *n).collect()
}

/// Load and check everything a run needs before anything runs: the runbook,
/// each step's component (pin checked), its parameters, its grants.
/// `grant_paths` overrides where grants point (rehearsals run on copies).
pub async fn prepare(
    sandbox: &Sandbox,
    file: &Path,
    sets: &[(String, String)],
    grant_paths: &BTreeMap<String, PathBuf>,
    stand_ins: bool,
    trust: &Trust,
) -> Result<Prepared, Failure> {
    let purpose = if stand_ins {
        Purpose::Rehearse
    } else {
        Purpose::Run
    };
    prepare_for(sandbox, file, sets, grant_paths, purpose, trust).await
}

/// [`prepare`], for a purpose.
pub async fn prepare_for(
    sandbox: &Sandbox,
    file: &Path,
    sets: &[(String, String)],
    grant_paths: &BTreeMap<String, PathBuf>,
    purpose: Purpose,
    trust: &Trust,
) -> Result<Prepared, Failure> {
    let lint = purpose == Purpose::Lint;
    let stand_ins = purpose == Purpose::Rehearse;
    let mut runbook =
        Runbook::load_as(file, sets, &bundled_names(), lint).map_err(Failure::BadInput)?;
    let mut warnings: Vec<String> = runbook
        .warnings
        .iter()
        .map(|d| d.to_string().replacen("error: ", "warning: ", 1))
        .collect();
    // For lint: the grants whose directory is not on this machine, said
    // once each; the steps that hold them are checked without them.
    let mut absent: Vec<String> = Vec::new();
    let unknown: Vec<Diagnostic> = trust
        .approved
        .iter()
        .filter(|id| runbook.step(id).is_none())
        .map(|id| {
            Diagnostic::plain(
                file.display().to_string(),
                format!("--approve-capabilities {id}: the runbook has no step `{id}`"),
                Some(format!(
                    "its steps: {}",
                    runbook
                        .steps
                        .iter()
                        .map(|s| s.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            )
        })
        .collect();
    if !unknown.is_empty() {
        return Err(Failure::BadInput(unknown));
    }
    for (name, path) in grant_paths {
        if let Some(g) = runbook.grants.get_mut(name) {
            g.path = path.clone();
        }
    }
    if lint {
        for (name, g) in &runbook.grants {
            if !g.path.is_dir() {
                let d = runbook.diagnostic(
                    g.span,
                    format!(
                        "grant `{name}`: {} is not a directory on this machine; the steps that hold it are checked without it",
                        g.path.display()
                    ),
                    Some("on the server it must exist; point it elsewhere with --set to check it here".into()),
                );
                warnings.push(d.to_string().replacen("error: ", "warning: ", 1));
                absent.push(name.clone());
            }
        }
    }
    let stand_in_dir = if stand_ins {
        Some(stand_in_dir(&runbook, grant_paths)?)
    } else {
        None
    };
    let mut steps = Vec::new();
    let mut problems = Vec::new();
    for (idx, def) in runbook.steps.iter().enumerate() {
        let label = format!("step `{}` ({})", def.id, def.uses);
        let bytes: std::borrow::Cow<[u8]> = match &def.uses {
            Uses::Std(name) => match crate::bundled::get(name) {
                Some(b) => b.into(),
                None => unreachable!("the runbook checks std names"),
            },
            Uses::File { path, sha256, .. } => {
                let bytes = mend_host::sandbox::read_component(path).map_err(|e| {
                    Failure::BadInput(vec![
                        runbook.diagnostic(
                            def.span,
                            format!("{label}: {e}"),
                            Some(
                                "build the step, or fix the `uses` path (relative to the runbook)"
                                    .into(),
                            ),
                        ),
                    ])
                })?;
                let actual = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
                if &actual != sha256 {
                    problems.push(runbook.diagnostic(
                        def.span,
                        format!("{label}: {} has sha256 {actual}, but the runbook pins {sha256}", path.display()),
                        Some("if you rebuilt or updated the step on purpose, review it and pin the new digest: sha256 = \"".to_string() + &actual + "\""),
                    ));
                    continue;
                }
                if !trust.undo
                    && let Err(r) = crate::supply::check_signature(&trust.policy, path, &bytes)
                {
                    problems.push(runbook.diagnostic(
                        def.uses_span,
                        format!("{label}: {}", r.message),
                        Some(r.hint),
                    ));
                    continue;
                }
                bytes.into()
            }
        };
        let loaded = sandbox.load(&label, &bytes).map_err(|e| {
            Failure::BadInput(vec![runbook.diagnostic(def.span, format!("{e:#}"), None)])
        })?;
        // Before any of its code runs (describe included).
        let capabilities = crate::supply::capabilities(&loaded.imports);
        if let Err(d) = crate::supply::approve(trust, def, &runbook, &label, &capabilities) {
            problems.push(*d);
            continue;
        }
        let limits = Limits {
            timeout: def.timeout,
            memory: def.memory,
        };
        let empty = Arc::new(Grants::default());
        let probe_ctx = HostCtx::new(
            &def.id,
            empty,
            CommandPolicy::default(),
            Vec::new(),
            0,
            def.timeout,
        );
        let info = sandbox
            .describe(&loaded, probe_ctx, limits)
            .await
            .map_err(|e| {
                Failure::BadInput(vec![runbook.diagnostic(def.span, e.to_string(), None)])
            })?;
        let params_json = match check_params::check(&runbook, def, &info) {
            Ok(j) => j,
            Err(mut d) => {
                problems.append(&mut d);
                continue;
            }
        };
        let held = def.grants.iter().filter(|g| !absent.contains(g));
        let grants = Grants::open(&runbook, held).map_err(|e| {
            Failure::BadInput(vec![runbook.diagnostic(
                def.span,
                format!("step `{}`: {e:#}", def.id),
                None,
            )])
        })?;
        let commands = CommandPolicy {
            allowed: def
                .commands
                .iter()
                .map(|c| (c.clone(), runbook.commands[c].clone()))
                .collect(),
            stand_ins: stand_ins.then(|| runbook.rehearsal_commands.clone()),
            env: grants
                .iter()
                .map(|g| {
                    (
                        format!("MEND_GRANT_{}", g.name.to_uppercase().replace('-', "_")),
                        g.root.display().to_string(),
                    )
                })
                .chain(
                    stand_in_dir
                        .as_ref()
                        .map(|d| ("MEND_REHEARSAL".to_string(), d.display().to_string())),
                )
                .collect(),
            grants: None,
        };
        let grants = Arc::new(grants);
        let commands = CommandPolicy {
            grants: Some(grants.clone()),
            ..commands
        };
        steps.push(PreparedStep {
            idx: idx as u32,
            def: def.clone(),
            loaded,
            info,
            params_json,
            grants,
            commands,
            limits,
        });
    }
    if !problems.is_empty() {
        return Err(Failure::BadInput(problems));
    }
    Ok(Prepared {
        runbook,
        steps,
        warnings,
    })
}

/// Where a rehearsal's stand-ins keep what they pretend (which units they
/// stopped): `MEND_REHEARSAL`, beside the grants' copies, so it goes with
/// them; made on first use, the same on a resume.
fn stand_in_dir(
    runbook: &Runbook,
    grant_paths: &BTreeMap<String, PathBuf>,
) -> Result<PathBuf, Failure> {
    let dir = match grant_paths.values().next().and_then(|p| p.parent()) {
        Some(scratch) => scratch.join(".stand-ins"),
        None => std::env::temp_dir().join(format!("mend-rehearsal-{}-stand-ins", runbook.name)),
    };
    std::fs::create_dir_all(&dir).map_err(|e| {
        Failure::Internal(anyhow::anyhow!(
            "cannot make {} for the rehearsal's stand-ins: {e}",
            dir.display()
        ))
    })?;
    Ok(dir)
}

/// The context a step sees.
pub fn context(step: &PreparedStep, now: i64) -> wit::Context {
    wit::Context {
        step_id: step.def.id.clone(),
        grants: step
            .grants
            .iter()
            .map(|g| wit::GrantInfo {
                name: g.name.clone(),
                access: match g.access {
                    mend_runbook::Access::Read => wit::Access::Read,
                    mend_runbook::Access::Write => wit::Access::Write,
                },
                disposable: g.disposable,
            })
            .collect(),
        commands: step.def.commands.clone(),
        now,
    }
}

fn host_ctx(step: &PreparedStep, now: i64, settings: &Settings) -> HostCtx {
    let mut h = HostCtx::new(
        &step.def.id,
        step.grants.clone(),
        step.commands.clone(),
        step.def.urls.clone(),
        now,
        step.limits.timeout,
    );
    h.sink = settings.sink.clone();
    h.progress = Some(progress_sink(settings.reporter.clone()));
    h
}

/// The host's byte progress inside a step's call (hashing a big file:
/// `hash PATH`, `done` of `total` bytes, cumulative) as the reporter's byte
/// progress: a bar on a terminal, a line every few seconds elsewhere. A
/// step's own reports count things, not bytes, and are not shown yet.
fn progress_sink(reporter: Arc<dyn Reporter>) -> mend_host::sandbox::ProgressSink {
    let last: std::sync::Mutex<Option<(String, u64)>> = Default::default();
    Arc::new(move |_step, label, done, total| {
        if !label.starts_with(mend_host::sandbox::HASH_PROGRESS) {
            return;
        }
        let mut last = last.lock().expect("not poisoned");
        let before = match &*last {
            Some((l, d)) if l == label && *d <= done => *d,
            _ => {
                if last.is_some() {
                    reporter.bytes_end();
                }
                reporter.bytes_start(label, total);
                0
            }
        };
        reporter.bytes_done(done - before);
        if done >= total {
            reporter.bytes_end();
            *last = None;
        } else {
            *last = Some((label.to_string(), done));
        }
    })
}

/// Why planning a step failed.
#[derive(Debug, Clone, Serialize)]
pub struct PlanError {
    pub step: String,
    pub message: String,
    pub hint: Option<String>,
    /// The step refused one of its `with` parameters before it asked the
    /// host anything: the runbook (or a --set) is wrong, not the world.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub bad_input: bool,
}

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.message)?;
        if let Some(h) = &self.hint {
            write!(f, "\n  = help: {h}")?;
        }
        Ok(())
    }
}

/// Plan one step against the world as it is now: read-only.
pub async fn plan_step(
    sandbox: &Sandbox,
    runbook: &Runbook,
    step: &PreparedStep,
    now: i64,
    settings: &Settings,
) -> Result<(StepPlan, Vec<(String, String)>), PlanError> {
    // Everything here may carry a step's words or paths: neutralised.
    let err = |message: String, hint: Option<String>| PlanError {
        step: step.def.id.clone(),
        message: mend_human::sanitize(&message),
        hint: hint.map(|h| mend_human::sanitize(&h)),
        bad_input: false,
    };
    tracing::debug!(step = %step.def.id, uses = %step.def.uses, now, "planning");
    let (result, host) = sandbox
        .plan(
            &step.loaded,
            host_ctx(step, now, settings),
            step.limits,
            context(step, now),
            step.params_json.clone(),
        )
        .await
        .map_err(|e| err(e.to_string(), None))?;
    // A refusal of a parameter before any question to the host depends on
    // the parameters alone: bad input, like a bad runbook.
    let bad_input = !host.asked;
    let plan = result.map_err(|e| {
        let bad_input = bad_input && e.param.is_some();
        // Point at the parameter's line when the step names one.
        let at = e
            .param
            .as_ref()
            .and_then(|p| step.def.with_spans.get(p))
            .map(|span| {
                let d = runbook.diagnostic(*span, "", None);
                format!(" ({}:{}:{})", d.file, d.line, d.column)
            });
        PlanError {
            bad_input,
            ..err(
                format!(
                    "step `{}` cannot plan: {}{}",
                    step.def.id,
                    mend_human::sanitize(&e.message),
                    at.unwrap_or_default()
                ),
                e.hint.map(|h| mend_human::sanitize(&h)),
            )
        }
    })?;
    let mut checked = mend_host::check::check(plan, &step.grants, &step.commands, &step.def.id)
        .map_err(|m| err(m, None))?;
    checked.reads = host
        .probes
        .iter()
        .map(|(call, status)| format!("{call} (exit {status})"))
        .collect();
    Ok((checked, host.logs))
}

/// The clock for a run.
pub fn now(settings: &Settings) -> i64 {
    settings.now.unwrap_or_else(mend_journal::now_secs)
}

#[cfg(test)]
mod progress_tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl Reporter for Recorder {
        fn line(&self, _: &str) {}
        fn actions_start(&self, _: &str, _: u64) {}
        fn action_done(&self, _: u64) {}
        fn actions_end(&self) {}
        fn bytes_start(&self, what: &str, total: u64) {
            self.0.lock().unwrap().push(format!("start {what} {total}"));
        }
        fn bytes_done(&self, n: u64) {
            self.0.lock().unwrap().push(format!("+{n}"));
        }
        fn bytes_end(&self) {
            self.0.lock().unwrap().push("end".into());
        }
    }

    #[test]
    fn hashing_progress_becomes_one_byte_bar_per_file() {
        let rec = Arc::new(Recorder::default());
        let sink = progress_sink(rec.clone());
        sink("s", "verifying checksums", 0, 2); // a step's count: not bytes
        for done in [40, 80, 100] {
            sink("s", "hash a.tar", done, 100);
        }
        sink("s", "hash b.tar", 10, 50);
        sink("s", "hash b.tar", 50, 50);
        assert_eq!(
            *rec.0.lock().unwrap(),
            [
                "start hash a.tar 100",
                "+40",
                "+40",
                "+20",
                "end",
                "start hash b.tar 50",
                "+10",
                "+40",
                "end"
            ]
        );
    }
}
