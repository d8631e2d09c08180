//! From TOML text to the typed model, in three passes: TOML syntax (the
//! `toml` crate), shape (the document against the format table, `shape`)
//! and meaning (`analyze`). Each pass reports as many independent errors
//! as it finds; the model is built only when there are none.

use toml::de::DeTable;

use crate::analyze::{Input, Parsed, analyze};
use crate::diagnostic::Diagnostic;
use crate::report::Report;
use crate::shape::shape;

/// The runbook, and what this machine lacks when `lenient`.
pub(crate) fn parse(input: &Input<'_>) -> Result<(Parsed, Vec<Diagnostic>), Vec<Diagnostic>> {
    let file = input.file.display().to_string();
    let root = match DeTable::parse(input.source) {
        Ok(root) => root.into_inner(),
        Err(e) => return Err(vec![toml_error(&file, input.source, &e)]),
    };
    let mut report = Report::new(file, input.source);
    let doc = shape(&root, &mut report);
    let parsed = analyze(&doc, input, &mut report);
    match parsed {
        Some(parsed) if report.errors.is_empty() => Ok((parsed, report.warnings)),
        _ => {
            let mut errors = report.errors;
            // Position-less (command line) errors first, then source order.
            errors.sort_by_key(|d| (d.line, d.column));
            Err(errors)
        }
    }
}

pub(crate) fn toml_error(file: &str, source: &str, e: &toml::de::Error) -> Diagnostic {
    let mut lines = e.message().trim().lines();
    let first = lines.next().unwrap_or("syntax error");
    let rest: Vec<&str> = lines.map(str::trim).filter(|l| !l.is_empty()).collect();
    let hint = if first == "duplicate key" {
        "a key can be set only once per table: remove or rename one".to_string()
    } else if rest.is_empty() {
        "fix the TOML syntax (see https://toml.io)".to_string()
    } else {
        rest.join("; ")
    };
    let message = format!("invalid TOML: {first}");
    match e.span() {
        Some(r) => Diagnostic::at(file, source, r.into(), message, Some(hint)),
        None => Diagnostic::plain(file, message, Some(hint)),
    }
}
