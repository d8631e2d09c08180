//! Live output of a run on stderr: lines, and a progress bar with rate and
//! ETA for steps with many actions (on a terminal; plain lines otherwise).

#[allow(unused_imports)]
use crate::secrets::eprintln;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::settings::Reporter;

/// Draws on stderr.
pub struct Live {
    tty: bool,
    bar: Mutex<Option<ProgressBar>>,
    bytes: std::sync::atomic::AtomicU64,
    /// A copy or extract under way.
    bulk: Mutex<Option<Bulk>>,
}

/// A copy or extract: a byte bar on a terminal; else a line now and then.
struct Bulk {
    what: String,
    total: u64,
    done: u64,
    bar: Option<ProgressBar>,
    started: Instant,
    last_line: Instant,
}

/// How often a copy's progress is printed when stderr is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(10);

impl Live {
    pub fn new(tty: bool) -> Self {
        Live {
            tty,
            bar: Mutex::new(None),
            bytes: std::sync::atomic::AtomicU64::new(0),
            bulk: Mutex::new(None),
        }
    }
}

/// "125.3 MB of 501.4 MB (25%), 41.2 MB/s": what a plain line says.
fn plain(b: &Bulk) -> String {
    let secs = b.started.elapsed().as_secs_f64().max(0.001);
    format!(
        "  {}: {} of {} ({}%), {}/s",
        b.what,
        mend_human::human_bytes(b.done),
        mend_human::human_bytes(b.total),
        (b.done.min(b.total) * 100)
            .checked_div(b.total)
            .unwrap_or(100),
        mend_human::human_bytes((b.done as f64 / secs) as u64)
    )
}

impl Reporter for Live {
    fn line(&self, text: &str) {
        let text = &*crate::secrets::mask(text);
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
                bar.set_message(mend_human::human_bytes(done));
            }
        }
    }
    fn actions_end(&self) {
        if let Some(bar) = self.bar.lock().expect("not poisoned").take() {
            bar.finish_and_clear();
        }
    }
    fn bytes_start(&self, what: &str, total: u64) {
        // Inside a step with its own action bar, that bar is enough.
        let bar = (self.tty && self.bar.lock().expect("not poisoned").is_none()).then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "  {prefix} [{bar:30}] {decimal_bytes}/{decimal_total_bytes} {decimal_bytes_per_sec} eta {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_prefix(what.to_string());
            bar
        });
        let now = Instant::now();
        *self.bulk.lock().expect("not poisoned") = Some(Bulk {
            what: what.to_string(),
            total,
            done: 0,
            bar,
            started: now,
            last_line: now,
        });
    }
    fn bytes_done(&self, n: u64) {
        let mut bulk = self.bulk.lock().expect("not poisoned");
        let Some(b) = bulk.as_mut() else { return };
        b.done += n;
        match &b.bar {
            Some(bar) => bar.set_position(b.done),
            None if !self.tty && b.last_line.elapsed() >= PLAIN_EVERY => {
                b.last_line = Instant::now();
                eprintln!("{}", plain(b));
            }
            None => {}
        }
    }
    fn bytes_end(&self) {
        if let Some(b) = self.bulk.lock().expect("not poisoned").take()
            && let Some(bar) = b.bar
        {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_progress_line_has_sizes_share_and_rate() {
        let b = Bulk {
            what: "copy snaps/daily.1 -> public/system.restore-daily.1".into(),
            total: 501_400_000,
            done: 125_300_000,
            bar: None,
            started: Instant::now() - Duration::from_secs(10),
            last_line: Instant::now(),
        };
        let line = plain(&b);
        assert!(
            line.starts_with(
                "  copy snaps/daily.1 -> public/system.restore-daily.1: 125.3 MB of 501.4 MB (24%), 12."
            ),
            "{line}"
        );
        assert!(line.ends_with(" MB/s"), "{line}");
    }

    #[test]
    fn bytes_are_counted_only_while_a_copy_is_under_way() {
        let live = Live::new(false);
        live.bytes_done(5);
        live.bytes_start("copy a -> b", 100);
        live.bytes_done(30);
        live.bytes_done(20);
        assert_eq!(live.bulk.lock().unwrap().as_ref().unwrap().done, 50);
        live.bytes_end();
        assert!(live.bulk.lock().unwrap().is_none());
    }
}
