//! The semantic pass: what the values the shape pass accepted mean, and
//! the model built from them. Params first (every later string may name
//! one), then grants, commands, the steps that use them, and the
//! rehearsal's stand-ins; each module checks its own references.
//!
//! It never checks a type or a required key: that is the format table's
//! (`crate::format`), applied by the shape pass. A value the shape pass
//! refused is absent here and was reported there.

mod commands;
mod grants;
mod params;
mod rehearsal;
mod steps;
mod uses;
mod with;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::model::{Command, Grant, OnFailure, StandIn, Step};
use crate::report::Report;
use crate::shape::{Fields, Node, Value, read_duration};

/// What the loader hands to the parser.
pub(crate) struct Input<'a> {
    pub file: &'a Path,
    pub source: &'a str,
    pub sets: &'a [(String, String)],
    pub bundled: &'a [&'a str],
    /// Relative grant paths are resolved against this (the process's
    /// current directory); `None` leaves them relative.
    pub cwd: Option<&'a Path>,
    /// `mend lint`: what this machine lacks (a command's user) is a warning.
    pub lenient: bool,
}

/// Everything in a runbook except the file bookkeeping and warnings.
pub(crate) struct Parsed {
    pub name: String,
    pub version: String,
    pub summary: String,
    pub on_failure: OnFailure,
    pub params: BTreeMap<String, String>,
    /// Params declared `secret = true`.
    pub secrets: std::collections::BTreeSet<String>,
    pub grants: BTreeMap<String, Grant>,
    pub commands: BTreeMap<String, Command>,
    pub steps: Vec<Step>,
    pub rehearsal_commands: BTreeMap<String, StandIn>,
    pub rehearsal_budget: Option<Duration>,
}

struct Ctx<'r, 'a> {
    report: &'r mut Report<'a>,
    /// Declared params and their values (`None`: required, not given).
    params: BTreeMap<String, Option<String>>,
    /// The TOML type of each param's default, when it is not a string: a
    /// value that is exactly `${name}` keeps that type in `with`.
    param_types: BTreeMap<String, &'static str>,
    /// Params declared `secret = true`.
    secrets: std::collections::BTreeSet<String>,
}

/// Check what `doc` means; the model when the whole document holds
/// (errors, from this pass or the shape pass, are in `report`).
pub(crate) fn analyze(
    doc: &Fields<'_, '_>,
    input: &Input<'_>,
    report: &mut Report<'_>,
) -> Option<Parsed> {
    let mut cx = Ctx {
        report,
        params: BTreeMap::new(),
        param_types: BTreeMap::new(),
        secrets: Default::default(),
    };
    let header = doc.get("runbook").and_then(|n| header(n.fields()));
    let params = cx.params(doc.get("params"), input.sets);
    let grants = cx.grants(doc.get("grants"), input.cwd);
    cx.overlapping_grants(&grants);
    let commands = cx.commands(doc.get("commands"), input.lenient);
    let steps = cx.steps(doc.get("steps"), input, &grants, &commands);
    let (rehearsal_commands, rehearsal_budget) = cx.rehearsal(doc.get("rehearsal"), &commands);
    let (name, version, summary, on_failure) = header?;
    Some(Parsed {
        name,
        version,
        summary,
        on_failure,
        params,
        secrets: std::mem::take(&mut cx.secrets),
        grants: grants
            .into_iter()
            .filter_map(|(k, g)| Some((k, g?)))
            .collect(),
        commands: commands
            .into_iter()
            .filter_map(|(k, c)| Some((k, c?)))
            .collect(),
        steps,
        rehearsal_commands,
        rehearsal_budget,
    })
}

/// [runbook]: nothing to check beyond its shape.
fn header(t: &Fields<'_, '_>) -> Option<(String, String, String, OnFailure)> {
    let text = |key: &str| t.get(key).map(|n| n.str().to_string());
    let on_failure = t.get("on_failure").map(|n| match n.choice() {
        "rollback" => OnFailure::Rollback,
        "stop" => OnFailure::Stop,
        other => unreachable!("on_failure {other:?}"),
    });
    Some((
        text("name")?,
        text("version")?,
        text("summary")?,
        on_failure?,
    ))
}

impl Ctx<'_, '_> {
    /// A [`crate::format::Kind::Duration`]'s value, interpolated and read
    /// when it names a param.
    fn duration(&mut self, n: &Node<'_, '_>) -> Option<Duration> {
        match n.value {
            Value::Duration(d) => Some(d),
            Value::DurationText { text, zero_ok } => {
                let text = self.interp(text, n.span, &n.label)?;
                read_duration(self.report, &text, n.span, &n.label, zero_ok)
            }
            _ => unreachable!("`{}` is no duration", n.label),
        }
    }
}
