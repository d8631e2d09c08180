//! What holds for a whole invocation: the state directory, the clock steps
//! see, where step logs and live progress go, and the supply-chain policy.

use std::path::PathBuf;
use std::sync::Arc;

use crate::load::supply::Trust;

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

/// The clock for a run: `--now` when given, else the real one.
pub fn now(settings: &Settings) -> i64 {
    settings.now.unwrap_or_else(mend_journal::now_secs)
}
