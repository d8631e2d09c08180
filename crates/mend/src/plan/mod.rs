//! Plan: a prepared step asked what it would do, in its sandbox (read-only),
//! and its answer checked by the host; and plans saved for later (`saved`).

pub mod saved;
pub mod spool;

use std::sync::Arc;

use mend_host::sandbox::{HostCtx, Sandbox, wit};
use mend_plan::StepPlan;
use mend_runbook::Runbook;
use serde::Serialize;

use crate::exit;
use crate::load::PreparedStep;
use crate::outcome::Outcome;
use crate::settings::{Reporter, Settings};

/// A step as planned: its preparation and its plan (with the step's logs)
/// or why it has none.
pub type PlannedStep<'a> = (
    &'a PreparedStep,
    Result<(StepPlan, Vec<(String, String)>), PlanError>,
);

/// A step's context, built once where the step starts and handed down to
/// its plan and its verify: the clock it sees, its grants and commands,
/// where its logs and progress go. Nothing below asks for it again.
pub struct StepCx<'a> {
    pub step: &'a PreparedStep,
    /// The clock the step sees (`--now`, or the run's start).
    pub now: i64,
    pub settings: &'a Settings,
}

impl StepCx<'_> {
    /// What the step is told of itself (the WIT `context`).
    pub fn context(&self) -> wit::Context {
        let step = self.step;
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
            now: self.now,
        }
    }

    /// What the host knows while the step's code runs: a fresh one for
    /// each call (plan, each verify attempt), from the same context.
    pub fn host(&self) -> HostCtx {
        let step = self.step;
        let mut h = HostCtx::new(
            &step.def.id,
            step.grants.clone(),
            step.commands.clone(),
            step.def.urls.clone(),
            self.now,
            step.limits.timeout,
        );
        h.sink = self.settings.sink.clone();
        h.progress = Some(progress_sink(self.settings.reporter.clone()));
        h
    }
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
    cx: &StepCx<'_>,
) -> Result<(StepPlan, Vec<(String, String)>), PlanError> {
    plan_step_from(sandbox, runbook, cx, 0, Default::default(), None).await
}

/// Plan one step, its first action numbered `seq` (removals of `done`, the
/// paths a resumed step's journaled batches removed, dropped), handing
/// removals to `early` as they arrive (`mend run` performs them while the
/// step still plans; see `run::early`).
pub async fn plan_step_from(
    sandbox: &Sandbox,
    runbook: &Runbook,
    cx: &StepCx<'_>,
    seq: u32,
    done: std::collections::HashSet<String>,
    early: Option<spool::Early>,
) -> Result<(StepPlan, Vec<(String, String)>), PlanError> {
    let (step, now) = (cx.step, cx.now);
    // Everything here may carry a step's words or paths: neutralised.
    let err = |message: String, hint: Option<String>| PlanError {
        step: step.def.id.clone(),
        message: mend_human::sanitize(&message),
        hint: hint.map(|h| mend_human::sanitize(&h)),
        bad_input: false,
    };
    tracing::debug!(step = %step.def.id, uses = %step.def.uses, now, "planning");
    // What the step hands over while it plans is checked and packed as it
    // comes: the plan never sits whole in memory.
    let spool: spool::Shared = Arc::new(std::sync::Mutex::new(spool::Spool::from_seq(
        step.grants.clone(),
        step.commands.clone(),
        &step.def.id,
        seq,
        done,
        early,
    )));
    let mut host = cx.host();
    host.plan_sink = Some(spool.clone());
    let (result, host) = sandbox
        .plan(
            &step.loaded,
            host,
            step.limits,
            cx.context(),
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
            .map(|p| step.def.param_span(p))
            .map(|span| {
                let d = runbook.diagnostic(span, "", None);
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
    let mut checked = spool
        .lock()
        .expect("not poisoned")
        .finish(plan, &host.walked)
        .map_err(|m| err(m, None))?;
    checked.arrival.step_memory = host.memory_peak;
    checked.reads = host
        .probes
        .iter()
        .map(|(call, status)| format!("{call} (exit {status})"))
        .collect();
    Ok((checked, host.logs))
}

/// A plan of every step: a step that refused its own parameters makes the
/// runbook wrong (bad input); any other that cannot plan fails it.
impl Outcome for [PlannedStep<'_>] {
    fn exit_code(&self) -> i32 {
        if self
            .iter()
            .any(|(_, r)| r.as_ref().is_err_and(|e| e.bad_input))
        {
            exit::BAD_INPUT
        } else if self.iter().any(|(_, r)| r.is_err()) {
            exit::STEP_FAILED
        } else {
            exit::SUCCESS
        }
    }
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
