//! `std:assert`: preconditions and postconditions as data. It plans no
//! actions; when a check fails, the plan fails, so the run stops before
//! anything destructive (or, placed after a restart, the run fails and rolls
//! back). `verify` makes the same checks again, so a step's `retry` re-checks
//! a service that takes a while to come back.
//!
//! `checks` is a list of tables, each with one kind key and an optional
//! `message`, the operator's own words shown when the check fails:
//!
//! | kind | passes when |
//! |---|---|
//! | `exists = "GRANT/path"` | the path exists (file, directory, symlink, other) |
//! | `not_empty = "GRANT/dir"` | the directory has at least one entry |
//! | `mount = { command = "mountpoint", path = "/abs/path" }` | `command -q path` exits 0 (`command` defaults to `mountpoint`) |
//! | `not_mount = { ... }` | the same exits non-zero |
//! | `free = { path = "GRANT/path", at_least = "10GiB" \| "15%", times = { path = "GRANT/other", factor = 2.0 } }` | the filesystem of `path` has that much free: bytes (B, kB, MB, GB, TB, KiB, MiB, GiB, TiB), a share of the filesystem, and/or `factor` (default 1) × the size of the files under `times.path` |
//! | `contains = { path = "GRANT/file", pattern = "..." }` | the file contains `pattern`, a plain substring (no regular expressions) |
//! | `not_contains = { ... }` | the file exists and does not contain it |
//! | `command = { command = "NAME", args = [...] }` | the allowed command exits 0 |
//! | `http = { url = "http://...", status = 200 }` | a GET of the allowed URL answers `status` (default 200) |
//! | `not_listening = { port = 6379, procnet = "procnet" }` | no TCP socket listens on the port on a non-loopback address, per the granted copy of `/proc/net` (`procnet` names the grant; default `procnet`) |
//! | `cert = { path = "GRANT/fullchain.pem", days_left = 14 }` | the first certificate in the PEM file expires at least `days_left` (default 14) days from the host's clock |
//! | `dotenv = { path = "GRANT/.env.production", key = "S3_ENABLED", equals = "true" }` | the dotenv file sets `key` (to exactly `equals`, when given), read as Mastodon reads it; the plan records the fact `dotenv:PATH:KEY` (the value, or `(absent)`) |
//!
//! `when = "after"` makes the checks only in `verify`, after the steps
//! before it ran, retried as the step's `retry` says: the checks after a
//! restart, for a service that takes a few seconds to come back. The plan
//! then only lists them.
//!
//! A check that cannot be made (a missing file, a command that cannot run, a
//! URL that does not answer) fails with the host's reason. Paths outside the
//! step's grants and commands it may not run are errors in the runbook,
//! reported before any check is made.

mod amount;
mod cert;
mod dotenv;
mod procnet;
mod run;
mod spec;

use mend_sdk::prelude::*;
use serde_json::Value;

use run::Outcome;
use spec::Spec;

/// The runbook's `with` table.
#[derive(Params, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The checks, each read by [`spec::parse`].
    #[param(doc = "tables with one kind and an optional `message`:
exists = \"GRANT/path\"
not_empty = \"GRANT/dir\"
mount | not_mount = { command = \"mountpoint\", path = \"/abs/path\" }
free = { path = \"GRANT/path\", at_least = \"10GiB\" | \"15%\", times = { path = \"GRANT/other\", factor = 2.0 } }
contains | not_contains = { path = \"GRANT/file\", pattern = \"...\" }
command = { command = \"NAME\", args = [...] }
http = { url = \"http://...\", status = 200 }
not_listening = { port = 6379, procnet = \"procnet\" }
cert = { path = \"GRANT/fullchain.pem\", days_left = 14 }
dotenv = { path = \"GRANT/.env.production\", key = \"S3_ENABLED\", equals = \"true\" }")]
    checks: Vec<Value>,
    /// `plan` (check before anything runs) or `after` (check in verify, with retry)
    #[serde(default = "when_default")]
    #[param(default = "plan")]
    when: String,
}

fn when_default() -> String {
    "plan".to_string()
}

/// The step.
pub struct Assert;

/// The hint when a check fails.
pub const FIX_AND_RERUN: &str = "nothing was changed: fix what the checks say, then run again";

impl Step for Assert {
    type Params = Params;
    const SUMMARY: &'static str = "Check preconditions and postconditions (paths, mounts, free space, file contents, commands, URLs, listening ports, certificates, dotenv values); plan nothing, fail if any check fails";

    fn plan(cx: &Context, p: Params, host: &dyn Host) -> Result<Plan, StepError> {
        match p.when.as_str() {
            "plan" => {}
            "after" => {
                // Check the runbook now; make the checks in verify.
                let specs = spec::parse(&p.checks, cx)?;
                let mut plan = Plan::builder();
                for spec in &specs {
                    plan = plan.check(spec.claim());
                }
                return Ok(plan
                    .summary(format!(
                        "{} {}, made after the steps before this one",
                        specs.len(),
                        if specs.len() == 1 { "check" } else { "checks" }
                    ))
                    .build());
            }
            other => return Err(bad_when(other)),
        }
        let results = check_all(cx, &p, host)?;
        let mut plan = Plan::builder();
        let mut failed = Vec::new();
        for (spec, outcome) in &results {
            let line = if outcome.ok {
                let seen = &outcome.detail;
                let seen = if seen.is_empty() {
                    String::new()
                } else {
                    format!(" ({seen})")
                };
                format!("ok: {}{seen}", spec.claim())
            } else {
                failed.push(failure(spec, outcome));
                format!("FAILED: {}", failure(spec, outcome))
            };
            let level = if outcome.ok {
                Level::Debug
            } else {
                Level::Error
            };
            host.log(level, &line);
            plan = plan.summary(line).check(spec.claim());
            if let Some((key, value)) = &outcome.fact {
                plan = plan.fact(key.clone(), value.clone());
            }
        }
        let total = results.len();
        if !failed.is_empty() {
            let mut named: Vec<String> = failed.iter().take(10).cloned().collect();
            if failed.len() > 10 {
                named.push(format!("and {} more", failed.len() - 10));
            }
            let message = format!(
                "{} of {total} {} FAILED: {}",
                failed.len(),
                if total == 1 { "check" } else { "checks" },
                named.join("; ")
            );
            return Err(StepError::new(message).hint(FIX_AND_RERUN).param("checks"));
        }
        let all = match total {
            1 => "the check passed".to_string(),
            n => format!("all {n} checks passed"),
        };
        Ok(plan.summary(format!("{all}; nothing to change")).build())
    }

    /// Every check read and checked against the step's grants and
    /// commands, and `when`: what `mend lint` reports.
    fn validate(cx: &Context, p: &Params) -> Vec<StepError> {
        let mut problems = Vec::new();
        if !matches!(p.when.as_str(), "plan" | "after") {
            problems.push(bad_when(&p.when));
        }
        problems.extend(spec::problems(&p.checks, cx));
        problems
    }

    /// The same checks again: after earlier steps' actions, or a restart.
    fn verify(cx: &Context, p: Params, host: &dyn Host) -> Result<Vec<Check>, StepError> {
        let results = check_all(cx, &p, host)?;
        Ok(results
            .into_iter()
            .map(|(spec, outcome)| Check {
                name: spec.claim(),
                ok: outcome.ok,
                detail: match (&spec.message, outcome.ok) {
                    (Some(message), false) => format!("{message}; {}", outcome.detail),
                    _ => outcome.detail,
                },
            })
            .collect())
    }
}

fn bad_when(when: &str) -> StepError {
    StepError::new(format!("`when` is {when:?}"))
        .hint(
            "use \"plan\" (check before anything runs) or \"after\" (check in verify, with retry)",
        )
        .param("when")
}

/// Read the checks (refusing a bad one before any is made), then make them all.
fn check_all(cx: &Context, p: &Params, host: &dyn Host) -> Result<Vec<(Spec, Outcome)>, StepError> {
    let specs = spec::parse(&p.checks, cx)?;
    let total = specs.len() as u64;
    let mut results = Vec::with_capacity(specs.len());
    for (i, spec) in specs.into_iter().enumerate() {
        host.progress("checking", i as u64, total);
        let outcome = spec.run(host);
        results.push((spec, outcome));
    }
    host.progress("checking", total, total);
    Ok(results)
}

/// `the data directory is empty (pgdata/main: no entries)`, or the detail
/// alone when the runbook gave no message.
fn failure(spec: &Spec, outcome: &Outcome) -> String {
    match &spec.message {
        Some(message) => format!("{message} ({})", outcome.detail),
        None => outcome.detail.clone(),
    }
}

mend_sdk::export_step!(Assert);

#[cfg(test)]
mod tests;
