//! Making one check: what it claims, and what the host shows.

use std::net::IpAddr;

use mend_sdk::prelude::*;

use crate::amount::Amount;
use crate::spec::{Kind, Spec};
use crate::{cert, procnet};

/// What a check found.
#[derive(Debug)]
pub struct Outcome {
    /// Whether the claim holds.
    pub ok: bool,
    /// When it holds, what was seen (may be empty); when it does not, a
    /// sentence that names the subject and says what is wrong.
    pub detail: String,
    /// A fact the plan records (key, value), for checks that read one.
    pub fact: Option<(String, String)>,
}

fn pass(detail: impl Into<String>) -> Outcome {
    Outcome {
        ok: true,
        detail: detail.into(),
        fact: None,
    }
}

fn fail(detail: impl Into<String>) -> Outcome {
    Outcome {
        ok: false,
        detail: detail.into(),
        fact: None,
    }
}

impl Spec {
    /// What the check asserts, in a line: `pgdata/main is not empty`.
    pub fn claim(&self) -> String {
        match &self.kind {
            Kind::Exists(path) => format!("{path} exists"),
            Kind::NotEmpty(path) => format!("{path} is not empty"),
            Kind::Mount { path, want, .. } => {
                format!("{path} is {}a mount point", if *want { "" } else { "not " })
            }
            Kind::Free {
                path,
                at_least,
                times,
            } => {
                let mut wants = Vec::new();
                match at_least {
                    Some(Amount::Bytes(_, text)) => wants.push(text.clone()),
                    Some(Amount::Percent(p)) => wants.push(format!("{p}% of its filesystem")),
                    None => {}
                }
                match times {
                    Some((other, factor)) if *factor == 1.0 => {
                        wants.push(format!("the size of {other}"))
                    }
                    Some((other, factor)) => wants.push(format!("{factor} × the size of {other}")),
                    None => {}
                }
                format!("{path} has at least {} free", wants.join(" and "))
            }
            Kind::Contains {
                path,
                pattern,
                want,
            } => format!(
                "{path} {} {pattern:?}",
                if *want {
                    "contains"
                } else {
                    "does not contain"
                }
            ),
            Kind::Command { command, args } => format!("`{}` exits 0", call(command, args)),
            Kind::Http { url, status } => format!("{url} answers {status}"),
            Kind::NotListening { port, .. } => {
                format!("nothing listens on TCP port {port} beyond loopback")
            }
            Kind::Cert { path, days_left } => {
                let days = if *days_left == 1 { "day" } else { "days" };
                format!("the certificate in {path} has at least {days_left} {days} left")
            }
            Kind::Dotenv { path, key, equals } => match equals {
                Some(want) => format!("{key} is {want:?} in {path}"),
                None => format!("{key} is set in {path}"),
            },
        }
    }

    /// Make the check. Host errors fail it, with the host's words.
    pub fn run(&self, host: &dyn Host) -> Outcome {
        match &self.kind {
            Kind::Exists(path) => match stat(host, path) {
                Ok(Found::Missing) => fail(format!("{path} does not exist")),
                Ok(_) => pass(""),
                Err(e) => fail(format!("{path}: {}", why(path, &e))),
            },
            Kind::NotEmpty(path) => not_empty(host, path),
            Kind::Mount {
                command,
                path,
                want,
            } => mount(host, command, path, *want),
            Kind::Free {
                path,
                at_least,
                times,
            } => free(host, path, at_least.as_ref(), times.as_ref()),
            Kind::Contains {
                path,
                pattern,
                want,
            } => contains(host, path, pattern, *want),
            Kind::Command { command, args } => {
                let argv: Vec<&str> = args.iter().map(String::as_str).collect();
                let shown = call(command, args);
                match host.probe(command, &argv) {
                    Ok(out) if out.status == 0 => pass(""),
                    Ok(out) => fail(format!("`{shown}` {}", exited(&out))),
                    Err(e) => fail(format!("`{shown}`: {}", why(&shown, &e))),
                }
            }
            Kind::Http { url, status } => match host.http_status(url) {
                Ok(got) if got == *status => pass(""),
                Ok(got) => fail(format!("{url} answered {got}; {status} wanted")),
                Err(e) => fail(format!("{url}: {}", why(url, &e))),
            },
            Kind::NotListening { port, procnet } => not_listening(host, *port, procnet),
            Kind::Cert { path, days_left } => cert_days(host, path, *days_left),
            Kind::Dotenv { path, key, equals } => dotenv(host, path, key, equals.as_deref()),
        }
    }
}

/// `nft list ruleset`.
fn call(command: &str, args: &[String]) -> String {
    std::iter::once(command)
        .chain(args.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `exited 1: Error: No such file or directory` (the first line it printed).
fn exited(out: &mend_sdk::Output) -> String {
    if out.status == -1 {
        return "was killed by a signal".to_string();
    }
    let said = [&out.stderr, &out.stdout]
        .into_iter()
        .find_map(|s| s.lines().map(str::trim).find(|l| !l.is_empty()));
    match said {
        Some(line) if line.chars().count() > 200 => {
            format!(
                "exited {}: {}…",
                out.status,
                line.chars().take(200).collect::<String>()
            )
        }
        Some(line) => format!("exited {}: {line}", out.status),
        None => format!("exited {}", out.status),
    }
}

/// The host's reason, without the `step `ID`: ` and `SUBJECT: ` the engine
/// starts it with (the check's line names its subject already).
fn why(subject: &str, e: &HostError) -> String {
    let (label, message) = match e {
        HostError::Denied(m) => ("denied", m),
        HostError::NotFound(m) => ("not found", m),
        HostError::Invalid(m) => ("invalid", m),
        HostError::Io(m) => ("i/o error", m),
    };
    let mut m = message.as_str();
    if let Some((_, rest)) = m.strip_prefix("step `").and_then(|r| r.split_once('`'))
        && let Some(rest) = rest.strip_prefix(": ")
    {
        m = rest;
    }
    for prefix in [format!("{subject}: "), format!("`{subject}`: ")] {
        m = m.strip_prefix(prefix.as_str()).unwrap_or(m);
    }
    if m.is_empty() || m == subject {
        label.to_string()
    } else {
        format!("{label}: {m}")
    }
}

/// Walk `root`, handing entries to `each` until it returns false.
///
/// In the component this uses the walk resource directly, so that it stops
/// after the batch where `each` said so: [`Host::walk`] cannot stop, and a
/// check of a tree of millions of files must not list them all.
#[cfg(target_arch = "wasm32")]
fn walk_until(
    _host: &dyn Host,
    root: &str,
    batch: u32,
    each: &mut dyn FnMut(&Entry) -> bool,
) -> Result<(), HostError> {
    let walk = mend_sdk::bindings::mend::runbook::files::Walk::new(root);
    loop {
        let entries = walk.next(batch)?;
        if entries.is_empty() {
            return Ok(());
        }
        if !entries.iter().all(&mut *each) {
            return Ok(());
        }
    }
}

/// Walk `root`, handing entries to `each` until it returns false (natively,
/// through the host; the rest of the walk is skipped).
#[cfg(not(target_arch = "wasm32"))]
fn walk_until(
    host: &dyn Host,
    root: &str,
    _batch: u32,
    each: &mut dyn FnMut(&Entry) -> bool,
) -> Result<(), HostError> {
    let mut going = true;
    host.walk(root, &mut |e| {
        if going {
            going = each(&e);
        }
    })
}

/// What is at a path.
#[derive(Debug, PartialEq)]
enum Found {
    Dir,
    /// A file, symlink or other, and its size.
    Other(EntryKind, u64),
    Missing,
}

/// What is at `path`.
fn stat(host: &dyn Host, path: &str) -> Result<Found, HostError> {
    match host.stat(path) {
        Ok(e) if e.kind == EntryKind::Dir => Ok(Found::Dir),
        Ok(e) => Ok(Found::Other(e.kind, e.size)),
        Err(HostError::NotFound(_)) => Ok(Found::Missing),
        Err(e) => Err(e),
    }
}

fn not_empty(host: &dyn Host, path: &str) -> Outcome {
    let mut any = false;
    let walked = walk_until(host, path, 1, &mut |_| {
        any = true;
        false
    });
    match (walked, any) {
        (Ok(()), true) => pass(""),
        (Ok(()), false) => fail(format!("{path}: no entries")),
        (Err(e), _) => match stat(host, path) {
            Ok(Found::Missing) => fail(format!("{path} does not exist")),
            Ok(Found::Other(..)) => fail(format!("{path} is not a directory")),
            Ok(Found::Dir) | Err(_) => fail(format!("{path}: cannot list it: {}", why(path, &e))),
        },
    }
}

fn mount(host: &dyn Host, command: &str, path: &str, want: bool) -> Outcome {
    let shown = format!("{command} -q {path}");
    match host.probe(command, &["-q", path]) {
        Ok(out) if out.status == -1 => fail(format!("`{shown}` was killed by a signal")),
        Ok(out) if (out.status == 0) == want => pass(""),
        Ok(_) if !want => fail(format!("{path} is a mount point")),
        Ok(out) => fail(format!(
            "{path} is not a mount point (`{shown}` {})",
            exited(&out)
        )),
        Err(e) => fail(format!("`{shown}`: {}", why(&shown, &e))),
    }
}

/// The sum of the sizes of the files under `path`, or of the file `path`.
fn size_of(host: &dyn Host, path: &str) -> Result<u64, String> {
    let mut total = 0u64;
    let walked = walk_until(host, path, 4096, &mut |e| {
        if e.kind == EntryKind::File {
            total = total.saturating_add(e.size);
        }
        true
    });
    match walked {
        Ok(()) => Ok(total),
        Err(e) => match stat(host, path) {
            Ok(Found::Other(EntryKind::File, size)) => Ok(size),
            Ok(Found::Missing) => Err(format!("{path} does not exist")),
            Ok(_) | Err(_) => Err(format!("{path}: {}", why(path, &e))),
        },
    }
}

fn free(
    host: &dyn Host,
    path: &str,
    at_least: Option<&Amount>,
    times: Option<&(String, f64)>,
) -> Outcome {
    let space = match host.free_space(path) {
        Ok(space) => space,
        Err(e) => return fail(format!("{path}: {}", why(path, &e))),
    };
    // (what is wanted, in words; bytes)
    let mut wants: Vec<(String, u64)> = Vec::new();
    match at_least {
        Some(Amount::Bytes(n, text)) if text.ends_with("iB") => {
            wants.push((format!("{text} ({})", human_bytes(*n)), *n))
        }
        Some(Amount::Bytes(n, _)) => wants.push((human_bytes(*n), *n)),
        Some(Amount::Percent(p)) => {
            let n = (space.total as f64 * p / 100.0).ceil() as u64;
            wants.push((
                format!("{p}% of {} ({})", human_bytes(space.total), human_bytes(n)),
                n,
            ));
        }
        None => {}
    }
    if let Some((other, factor)) = times {
        let size = match size_of(host, other) {
            Ok(size) => size,
            Err(why) => return fail(why),
        };
        let n = (size as f64 * factor).ceil() as u64;
        let words = if *factor == 1.0 {
            format!("the size of {other} ({})", human_bytes(size))
        } else {
            format!(
                "{factor} × {other} ({}) = {}",
                human_bytes(size),
                human_bytes(n)
            )
        };
        wants.push((words, n));
    }
    let seen = format!(
        "{} free of {}",
        human_bytes(space.available),
        human_bytes(space.total)
    );
    let short: Vec<String> = wants
        .into_iter()
        .filter(|(_, n)| space.available < *n)
        .map(|(words, _)| words)
        .collect();
    if short.is_empty() {
        pass(seen)
    } else {
        fail(format!(
            "{path}: {seen}; at least {} wanted",
            short.join(" and ")
        ))
    }
}

fn contains(host: &dyn Host, path: &str, pattern: &str, want: bool) -> Outcome {
    let data = match host.read(path) {
        Ok(data) => data,
        Err(HostError::NotFound(_)) => return fail(format!("{path} does not exist")),
        Err(e) => return fail(format!("{path}: {}", why(path, &e))),
    };
    let needle = pattern.as_bytes();
    let at = data.windows(needle.len()).position(|w| w == needle);
    let line = |i: usize| data[..i].iter().filter(|&&b| b == b'\n').count() + 1;
    match (at, want) {
        (Some(i), true) => pass(format!("line {}", line(i))),
        (None, false) => pass(""),
        (None, true) => fail(format!("{path}: no {pattern:?} in it")),
        (Some(i), false) => fail(format!("{path} contains {pattern:?} on line {}", line(i))),
    }
}

/// The value of `key` in the dotenv file, with the fact `dotenv:PATH:KEY`
/// (the value, `(absent)` when the file sets no such key, `(no file)`).
fn dotenv(host: &dyn Host, path: &str, key: &str, equals: Option<&str>) -> Outcome {
    let fact_key = format!("dotenv:{path}:{key}");
    let with = |mut o: Outcome, value: &str| {
        o.fact = Some((fact_key.clone(), value.to_string()));
        o
    };
    let data = match host.read(path) {
        Ok(data) => data,
        Err(HostError::NotFound(_)) => {
            return with(fail(format!("{path} does not exist")), "(no file)");
        }
        Err(e) => return fail(format!("{path}: {}", why(path, &e))),
    };
    let text = String::from_utf8_lossy(&data);
    match (crate::dotenv::lookup(&text, key), equals) {
        (None, _) => with(fail(format!("{path}: {key} is not set")), "(absent)"),
        (Some(v), Some(want)) if v != want => {
            with(fail(format!("{path}: {key} is {v:?}, not {want:?}")), &v)
        }
        (Some(v), _) => with(pass(format!("{key}={v}")), &v),
    }
}

fn not_listening(host: &dyn Host, port: u16, procnet: &str) -> Outcome {
    let mut all: Vec<IpAddr> = Vec::new();
    for (table, required) in [("tcp", true), ("tcp6", false)] {
        let file = format!("{procnet}/{table}");
        let text = match host.read(&file) {
            Ok(data) => String::from_utf8_lossy(&data).into_owned(),
            // No tcp6 when IPv6 is off.
            Err(HostError::NotFound(_)) if !required => continue,
            Err(e) => {
                return fail(format!(
                    "{file}: {} (grant /proc/net as `{procnet}`)",
                    why(&file, &e)
                ));
            }
        };
        match procnet::listening(&text, port) {
            Ok(found) => all.extend(found),
            Err(why) => return fail(format!("{file} {why}")),
        }
    }
    let mut open: Vec<IpAddr> = all
        .iter()
        .copied()
        .filter(|ip| !procnet::is_loopback(ip))
        .collect();
    let mut local: Vec<IpAddr> = all.into_iter().filter(procnet::is_loopback).collect();
    for list in [&mut open, &mut local] {
        list.sort();
        list.dedup();
    }
    let named = |ips: &[IpAddr]| {
        ips.iter()
            .map(procnet::describe)
            .collect::<Vec<_>>()
            .join(" and ")
    };
    if !open.is_empty() {
        fail(format!("port {port} listens on {}", named(&open)))
    } else if !local.is_empty() {
        pass(format!("listens on {} only", named(&local)))
    } else {
        pass("nothing listens on it")
    }
}

fn cert_days(host: &dyn Host, path: &str, days_left: u32) -> Outcome {
    let pem = match host.read(path) {
        Ok(data) => data,
        Err(HostError::NotFound(_)) => return fail(format!("{path} does not exist")),
        Err(e) => return fail(format!("{path}: {}", why(path, &e))),
    };
    let not_after = match cert::not_after(&pem) {
        Ok(t) => t,
        Err(why) => return fail(format!("{path}: {why}")),
    };
    let left = not_after - host.now();
    let date = cert::date(not_after);
    let wanted = i64::from(days_left) * 86_400;
    let days = |secs: i64| {
        let n = secs / 86_400;
        format!("{n} day{}", if n == 1 { "" } else { "s" })
    };
    match (left >= wanted, left >= 0) {
        (true, _) => pass(format!("expires {date} ({} left)", days(left))),
        (false, true) => fail(format!(
            "{path} expires {date} ({} left; at least {days_left} wanted)",
            days(left)
        )),
        (false, false) => fail(format!(
            "{path} expired {date} ({} ago; at least {days_left} days left wanted)",
            days(-left)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_reasons_lose_the_engines_prefixes() {
        let url = "http://127.0.0.1:1/health";
        let e = HostError::Io(format!("{url}: Connection refused (os error 111)"));
        assert_eq!(why(url, &e), "i/o error: Connection refused (os error 111)");
        let e = HostError::Denied(
            "step `pre`: `nft list ruleset`: killed after 60 s (the step's timeout)".into(),
        );
        assert_eq!(
            why("nft list ruleset", &e),
            "denied: killed after 60 s (the step's timeout)"
        );
        let e = HostError::Denied(
            "step `pre` may not run command `nft`; add \"nft\" to the step's `commands`".into(),
        );
        assert_eq!(
            why("nft", &e),
            "denied: step `pre` may not run command `nft`; add \"nft\" to the step's `commands`"
        );
        assert_eq!(why("a/b", &HostError::NotFound("a/b".into())), "not found");
        assert_eq!(
            why("a/b", &HostError::Invalid("bad path".into())),
            "invalid: bad path"
        );
    }
}
