//! `std:checksum-verify`: check granted files against expected digests before
//! anything depends on them, with the verdicts of `sha256sum -c`. It plans no
//! actions: when a file does not match, is missing or cannot be read, the plan
//! fails, so the run stops before anything destructive. The host hashes; the
//! step only reads the list and compares.

mod digest;
mod report;
mod sums;

use std::collections::{BTreeMap, BTreeSet};

use digest::{Expected, Refusal};
use mend_sdk::prelude::*;
use report::{Tally, check_line, plural, short};

/// The runbook's `with` table.
#[derive(Params, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// GRANT/path = expected digest, e.g. "sha256:ab12…"
    #[serde(default)]
    files: BTreeMap<String, Text>,
    /// GRANT/path of a SHA256SUMS-style list to check
    ///
    /// Names in it are relative to its directory.
    list: Option<String>,
    /// sha256, sha512 or blake3 for digests without a prefix (default sha256)
    algorithm: Option<String>,
    /// skip listed files that do not exist
    ///
    /// As `sha256sum --ignore-missing`.
    #[serde(default)]
    #[param(default = false)]
    ignore_missing: bool,
}

/// A `files` value: a digest, or anything else (refused, naming the file).
#[derive(Deserialize)]
#[serde(untagged)]
enum Text {
    Digest(String),
    Other(serde::de::IgnoredAny),
}

/// The step.
pub struct ChecksumVerify;

/// One file to check.
struct Entry {
    path: String,
    expected: Expected,
    /// The `with` key it comes from.
    param: &'static str,
}

/// What hashing a file showed.
enum Verdict {
    Ok,
    Mismatch(String),
    Missing,
    Unreadable(String),
}

impl Step for ChecksumVerify {
    type Params = Params;
    const SUMMARY: &'static str =
        "Check files against expected digests (sha256sum -c); fail the plan if any differ";

    fn plan(_cx: &Context, p: Params, host: &dyn Host) -> Result<Plan, StepError> {
        let (entries, warning) = entries(&p, host)?;
        let mut plan = Plan::builder();
        let mut tally = Tally::default();
        let mut announced = BTreeSet::new();
        let total = entries.len() as u64;
        for (i, e) in entries.iter().enumerate() {
            host.progress("verifying checksums", i as u64, total);
            let verdict = check(e, host)?;
            if matches!(verdict, Verdict::Ok) && announced.insert(check_line(e)) {
                let algo = digest::name(e.expected.algorithm);
                plan = plan
                    .check(check_line(e))
                    .fact(format!("{algo}:{}", e.path), &e.expected.hex);
            }
            let (line, level) = tally.add(e, verdict, p.ignore_missing);
            host.log(level, &line);
            plan = plan.summary(line);
        }
        host.progress("verifying checksums", total, total);
        if let Some(warning) = warning {
            host.log(Level::Warn, &warning);
            plan = plan.summary(warning);
        }
        let last = tally.outcome(if p.list.is_some() { "list" } else { "files" })?;
        Ok(plan.summary(last).build())
    }

    /// Hash the files again: nothing may have changed them since the plan.
    fn verify(_cx: &Context, p: Params, host: &dyn Host) -> Result<Vec<Check>, StepError> {
        let (entries, _) = entries(&p, host)?;
        let mut checks = Vec::new();
        let mut seen = BTreeSet::new();
        for e in &entries {
            let name = check_line(e);
            if seen.contains(&name) {
                continue;
            }
            let (ok, detail) = match check(e, host)? {
                Verdict::Ok => (true, String::new()),
                Verdict::Missing if p.ignore_missing => continue,
                Verdict::Missing => (false, "No such file or directory".to_string()),
                Verdict::Unreadable(why) => (false, why),
                Verdict::Mismatch(got) => (false, format!("got {}", short(&got))),
            };
            seen.insert(name.clone());
            checks.push(Check { name, ok, detail });
        }
        Ok(checks)
    }
}

/// The files to check, in order (`files` sorted, then the list's lines), and
/// the warning about improperly formatted list lines, if any.
fn entries(p: &Params, host: &dyn Host) -> Result<(Vec<Entry>, Option<String>), StepError> {
    let forced = match &p.algorithm {
        Some(a) => {
            let what = format!("`algorithm = {a:?}`");
            Some(digest::algorithm(a).map_err(|r| refuse(&what, r, "algorithm"))?)
        }
        None => None,
    };
    let mut entries = Vec::new();
    for (path, text) in &p.files {
        let Text::Digest(text) = text else {
            let message = format!("`{path}`: the expected digest must be a string");
            return Err(StepError::new(message)
                .hint("write it as the publisher prints it, e.g. \"sha256:ab12…\"")
                .param("files"));
        };
        let what = format!("`{path}`");
        let expected = digest::parse(text, forced).map_err(|r| refuse(&what, r, "files"))?;
        let (path, param) = (path.clone(), "files");
        entries.push(Entry {
            path,
            expected,
            param,
        });
    }
    let mut warning = None;
    if let Some(list) = &p.list {
        warning = from_list(list, forced, host, &mut entries)?;
    }
    if entries.is_empty() {
        return Err(
            StepError::new("nothing to verify: `files` is empty and no `list` is given")
                .hint("set `files = { \"GRANT/path\" = \"sha256:…\" }`, or `list = \"GRANT/SHA256SUMS\"`")
                .param("files"),
        );
    }
    Ok((entries, warning))
}

/// Add the lines of a checksum list; the warning about its bad lines, if any.
fn from_list(
    list: &str,
    forced: Option<Algorithm>,
    host: &dyn Host,
    entries: &mut Vec<Entry>,
) -> Result<Option<String>, StepError> {
    let text = host.read(list).map_err(|e| host_error(list, e, "list"))?;
    let text = String::from_utf8_lossy(&text);
    let is_digest = |d: &str| digest::parse(d, forced).map_or_else(|r| r.plausible, |_| true);
    let parsed = sums::parse(&text, is_digest);
    if parsed.lines.is_empty() {
        let message = format!("`{list}`: no properly formatted checksum lines found");
        return Err(StepError::new(message)
            .hint("a line is `<hex digest>  <file name>`, as sha256sum writes it; is this the right file?")
            .param("list"));
    }
    let dir = list.rsplit_once('/').map_or("", |(dir, _)| dir);
    for line in parsed.lines {
        let at = format!("`{list}` line {}", line.number);
        let expected = digest::parse(&line.digest, forced).map_err(|r| refuse(&at, r, "list"))?;
        let path = resolve(dir, &line.name).map_err(|why| {
            StepError::new(format!("{at}: `{}` {why}", line.name))
                .hint("name the file in `files` with its GRANT/path instead")
                .param("list")
        })?;
        let param = "list";
        entries.push(Entry {
            path,
            expected,
            param,
        });
    }
    let bad = parsed.bad;
    if bad.is_empty() {
        return Ok(None);
    }
    let mut numbers: Vec<String> = bad.iter().take(10).map(|n| n.to_string()).collect();
    if bad.len() > 10 {
        numbers.push("…".to_string());
    }
    let (n, is) = (
        bad.len(),
        if bad.len() == 1 {
            "line is"
        } else {
            "lines are"
        },
    );
    Ok(Some(format!(
        "{list}: WARNING: {n} {is} improperly formatted ({} {})",
        plural(n, "line"),
        numbers.join(", ")
    )))
}

/// Hash one file in the host and compare (hex in any case).
fn check(e: &Entry, host: &dyn Host) -> Result<Verdict, StepError> {
    match host.digest(&e.path, e.expected.algorithm) {
        Ok(got) if got.eq_ignore_ascii_case(&e.expected.hex) => Ok(Verdict::Ok),
        Ok(got) => Ok(Verdict::Mismatch(got.to_ascii_lowercase())),
        Err(HostError::NotFound(_)) => Ok(Verdict::Missing),
        Err(HostError::Io(why)) => {
            // The engine's message starts with the path; the verdict names it already.
            let prefix = format!("{}: ", e.path);
            let why = why.strip_prefix(&prefix).unwrap_or(&why);
            Ok(Verdict::Unreadable(why.to_string()))
        }
        // Not granted, or a malformed path: the runbook must change.
        Err(err) => Err(host_error(&e.path, err, e.param)),
    }
}

/// `dir/name`, refusing names that leave the list's directory.
fn resolve(dir: &str, name: &str) -> Result<String, &'static str> {
    if name.starts_with('/') {
        return Err("is an absolute path; names in a list are relative to its directory");
    }
    let mut parts: Vec<&str> = dir.split('/').filter(|c| !c.is_empty()).collect();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("climbs out of the list's directory"),
            part => parts.push(part),
        }
    }
    Ok(parts.join("/"))
}

fn refuse(what: &str, r: Refusal, param: &str) -> StepError {
    StepError::new(format!("{what}: {}", r.message))
        .hint(r.hint)
        .param(param)
}

fn host_error(path: &str, e: HostError, param: &str) -> StepError {
    let message = match e {
        HostError::NotFound(_) => format!("`{path}`: No such file or directory"),
        HostError::Denied(why) | HostError::Invalid(why) | HostError::Io(why) => why,
    };
    StepError::new(message).param(param)
}

mend_sdk::export_step!(ChecksumVerify);

#[cfg(test)]
mod tests;
