//! What the operator reads: a line per file as `sha256sum -c` prints them,
//! then a count, or the error that fails the plan.

use mend_sdk::prelude::*;

use crate::{Entry, Verdict, digest};

/// The hint when a file does not match.
pub const REDOWNLOAD: &str =
    "do not use these files; download them again and compare with the publisher's checksums";

const MISSING: &str = "No such file or directory";

/// The verdicts so far.
#[derive(Default)]
pub struct Tally {
    ok: usize,
    skipped: usize,
    /// `path (why)` and the `with` key of each failure, in order.
    failed: Vec<(String, &'static str)>,
    mismatch: bool,
    missing: bool,
}

impl Tally {
    /// Count a verdict; return its line for the summary and the log.
    pub fn add(&mut self, e: &Entry, verdict: Verdict, ignore_missing: bool) -> (String, Level) {
        let (path, algo) = (&e.path, digest::name(e.expected.algorithm));
        let (line, why) = match verdict {
            Verdict::Ok => {
                self.ok += 1;
                return (format!("{path}: OK ({algo})"), Level::Debug);
            }
            Verdict::Missing if ignore_missing => {
                self.skipped += 1;
                let line = format!("{path}: missing, skipped (ignore_missing)");
                return (line, Level::Warn);
            }
            Verdict::Missing => {
                self.missing = true;
                (
                    format!("FAILED open or read ({MISSING})"),
                    MISSING.to_string(),
                )
            }
            Verdict::Unreadable(why) => (format!("FAILED open or read ({why})"), why),
            Verdict::Mismatch(got) => {
                self.mismatch = true;
                let why = format!("expected {}, got {}", short(&e.expected.hex), short(&got));
                (format!("FAILED ({algo}: {why})"), why)
            }
        };
        self.failed.push((format!("{path} ({why})"), e.param));
        (format!("{path}: {line}"), Level::Error)
    }

    /// The last summary line, or the error that fails the plan. `param` is
    /// the `with` key to point at when every file was missing.
    pub fn outcome(&self, param: &str) -> Result<String, StepError> {
        let verified = self.ok + self.failed.len();
        if let Some((_, first)) = self.failed.first() {
            let mut named: Vec<String> = self.failed.iter().take(10).map(|f| f.0.clone()).collect();
            if self.failed.len() > 10 {
                named.push(format!("and {} more", self.failed.len() - 10));
            }
            let hint = match (self.mismatch, self.missing) {
                (true, _) => REDOWNLOAD,
                (false, true) => {
                    "check the paths; `ignore_missing = true` skips files that are not there, as `sha256sum --ignore-missing` does"
                }
                (false, false) => "check that each path names a readable file",
            };
            let message = format!(
                "{} of {verified} {} FAILED: {}",
                self.failed.len(),
                plural(verified, "file"),
                named.join(", ")
            );
            return Err(StepError::new(message).hint(hint).param(*first));
        }
        if verified == 0 {
            let skipped = self.skipped;
            let are = if skipped == 1 {
                "file is"
            } else {
                "files are all"
            };
            return Err(
                StepError::new(format!("no file was verified: {skipped} listed {are} missing"))
                    .hint("check the paths; `ignore_missing` skips missing files, but one at least must be there")
                    .param(param),
            );
        }
        let mut last = format!(
            "verified {verified} {}: {} OK",
            plural(verified, "file"),
            self.ok
        );
        if self.skipped > 0 {
            last += &format!("; {} missing, skipped (ignore_missing)", self.skipped);
        }
        Ok(last)
    }
}

/// The line announcing what `verify` checks again.
pub fn check_line(e: &Entry) -> String {
    let algo = digest::name(e.expected.algorithm);
    format!("{} still has {algo} {}", e.path, short(&e.expected.hex))
}

/// The first 12 hex digits, enough to tell digests apart by eye.
pub fn short(hex: &str) -> String {
    format!("{}…", hex.chars().take(12).collect::<String>())
}

/// `word` or `words`.
pub fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        word.to_string()
    } else {
        format!("{word}s")
    }
}
