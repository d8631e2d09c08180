//! Live output of a run on stderr: lines, and a progress bar with rate and
//! ETA for steps with many actions (on a terminal; plain lines otherwise).

use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::runner::Reporter;

/// Draws on stderr.
pub struct Live {
    tty: bool,
    bar: Mutex<Option<ProgressBar>>,
    bytes: std::sync::atomic::AtomicU64,
}

impl Live {
    pub fn new(tty: bool) -> Self {
        Live {
            tty,
            bar: Mutex::new(None),
            bytes: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl Reporter for Live {
    fn line(&self, text: &str) {
        match self.bar.lock().expect("not poisoned").as_ref() {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }
    fn actions_start(&self, step: &str, total: u64) {
        if !self.tty || total < 50 {
            return;
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "  {prefix} [{bar:30}] {pos}/{len} actions {per_sec} eta {eta} {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(step.to_string());
        self.bytes.store(0, std::sync::atomic::Ordering::Relaxed);
        *self.bar.lock().expect("not poisoned") = Some(bar);
    }
    fn action_done(&self, bytes: u64) {
        if let Some(bar) = self.bar.lock().expect("not poisoned").as_ref() {
            bar.inc(1);
            let done = self
                .bytes
                .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed)
                + bytes;
            if bytes > 0 {
                bar.set_message(crate::output::bytes(done));
            }
        }
    }
    fn actions_end(&self) {
        if let Some(bar) = self.bar.lock().expect("not poisoned").take() {
            bar.finish_and_clear();
        }
    }
}
