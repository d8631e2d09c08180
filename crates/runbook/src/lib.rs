//! Runbooks: loading a runbook TOML file, validating it completely, and
//! producing the typed model, or diagnostics that point into the file.
//!
//! It knows no wasmtime, no SQLite, no filesystem beyond reading the
//! runbook and looking up the users its commands name: the fuzz target for
//! the parser links this crate alone.
//!
//! One table drives it: [`format`] declares every key of a runbook, its
//! kind, whether it is required and its default; the parser checks
//! documents against it and [`schema`] writes the JSON Schema from it.
//!
//! - [`format`]: every table and key, for the parser and the JSON Schema
//! - `parse`: TOML to model: syntax, then `shape`, then `analyze`
//! - `shape`: a document against the format table: unknown and missing
//!   keys, types, defaults; typed values with their spans
//! - `analyze`: what the values mean: params, grants, commands, steps,
//!   rehearsal; builds the [`model`]
//! - [`model`]: the typed runbook and command-argument matching
//! - [`diagnostic`]: positions, rendering (`file:line:column`, caret, hint)
//! - [`fleet`]: the fleet inventory (`fleet.toml`) and the rollout's stop rule
//! - [`schema`]: the JSON Schema editors check runbooks with
//! - [`accounts`]: the users and groups commands run as, from this machine
//! - [`interpolate`]: `${param}` substitution
//! - [`units`]: durations and memory sizes

pub mod accounts;
mod analyze;
pub mod diagnostic;
pub mod edit;
pub mod fleet;
pub mod format;
mod hints;
pub mod interpolate;
pub mod model;
pub mod oci_ref;
mod parse;
mod report;
pub mod schema;
mod shape;
pub mod units;

use std::path::Path;

use sha2::{Digest, Sha256};

pub use diagnostic::{Diagnostic, Span};
pub use model::{
    ARGS, Access, Class, Command, Grant, OnFailure, Retry, RunAs, Runbook, StandIn, Step, Uses,
};
pub use oci_ref::OciRef;

impl Runbook {
    /// Read, parse, interpolate and validate. `sets` are --set pairs in
    /// order (later ones win); `bundled` the std step names.
    pub fn load(
        file: &Path,
        sets: &[(String, String)],
        bundled: &[&str],
    ) -> Result<Runbook, Vec<Diagnostic>> {
        Runbook::load_as(file, sets, bundled, false)
    }

    /// [`Runbook::load`]; `lenient` (for `mend lint`) turns what this
    /// machine lacks (a command's user or group) into `warnings`.
    pub fn load_as(
        file: &Path,
        sets: &[(String, String)],
        bundled: &[&str],
        lenient: bool,
    ) -> Result<Runbook, Vec<Diagnostic>> {
        let name = file.display().to_string();
        let bytes = std::fs::read(file).map_err(|e| {
            vec![Diagnostic::plain(
                &name,
                format!("cannot read runbook {name}: {e}"),
                Some("check the path".to_string()),
            )]
        })?;
        let source = match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => {
                let at = e.utf8_error().valid_up_to();
                let lossy = String::from_utf8_lossy(e.as_bytes()).into_owned();
                return Err(vec![Diagnostic::at(
                    &name,
                    &lossy,
                    Span::new(at, at + 1),
                    "the runbook is not valid UTF-8",
                    Some("save the file as UTF-8".to_string()),
                )]);
            }
        };
        Runbook::parse_source(file, source, sets, bundled, lenient)
    }

    /// Like [`Runbook::load`], with the file's text already in hand. `file`
    /// still names the runbook (diagnostics, resolving `uses` paths).
    pub fn from_source(
        file: &Path,
        source: String,
        sets: &[(String, String)],
        bundled: &[&str],
    ) -> Result<Runbook, Vec<Diagnostic>> {
        Runbook::parse_source(file, source, sets, bundled, false)
    }

    fn parse_source(
        file: &Path,
        source: String,
        sets: &[(String, String)],
        bundled: &[&str],
        lenient: bool,
    ) -> Result<Runbook, Vec<Diagnostic>> {
        let cwd = std::env::current_dir().ok();
        let (parsed, warnings) = parse::parse(&analyze::Input {
            file,
            source: &source,
            sets,
            bundled,
            cwd: cwd.as_deref(),
            lenient,
        })?;
        Ok(Runbook {
            file: file.to_path_buf(),
            sha256: hex::encode(Sha256::digest(source.as_bytes())),
            source,
            name: parsed.name,
            version: parsed.version,
            summary: parsed.summary,
            on_failure: parsed.on_failure,
            params: parsed.params,
            secrets: parsed.secrets,
            grants: parsed.grants,
            commands: parsed.commands,
            steps: parsed.steps,
            rehearsal_commands: parsed.rehearsal_commands,
            warnings,
            rehearsal_budget: parsed.rehearsal_budget,
        })
    }

    /// A diagnostic pointing into this runbook (used later by the engine,
    /// e.g. when a step's own parameter check fails at `with.days`).
    pub fn diagnostic(
        &self,
        span: Span,
        message: impl Into<String>,
        hint: Option<String>,
    ) -> Diagnostic {
        Diagnostic::at(
            self.file.display().to_string(),
            &self.source,
            span,
            message,
            hint,
        )
    }

    /// The step with this id.
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.id == id)
    }
}

#[cfg(test)]
mod tests;
