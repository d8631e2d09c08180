//! `mend step inspect`: what a step is before a runbook uses it: its name,
//! version, parameters, what it imports (the host interfaces it can call)
//! and the sha256 to pin it by.

use std::sync::Arc;

use serde_json::json;

use crate::commands::CommandPolicy;
use crate::exit;
use crate::grants::Grants;
use crate::runbook::model::{DEFAULT_MEMORY, DEFAULT_TIMEOUT};
use crate::runner::Failure;
use crate::sandbox::{HostCtx, Limits, Sandbox, wit};

use super::render::Out;

/// Inspect `what`: `std:NAME` (a bundled step) or a `.wasm` file.
pub async fn inspect(sandbox: &Sandbox, out: &Out, what: &str) -> Result<i32, Failure> {
    let bytes = match what.strip_prefix("std:") {
        Some(name) => crate::bundled::get(name)
            .ok_or_else(|| {
                Failure::input(
                    what,
                    format!("no bundled step `{name}`"),
                    Some(format!(
                        "bundled steps: {}",
                        crate::runner::bundled_names()
                            .iter()
                            .map(|n| format!("std:{n}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                )
            })?
            .to_vec(),
        None => std::fs::read(what).map_err(|e| {
            Failure::input(
                what,
                format!("cannot read {what}: {e}"),
                Some("give a step's .wasm file, or std:NAME for a bundled one".into()),
            )
        })?,
    };
    let bad = |e: anyhow::Error| Failure::input(what, format!("{e:#}"), None);
    let imports = sandbox.imports(what, &bytes).map_err(bad)?;
    let loaded = sandbox.load(what, &bytes).map_err(bad)?;
    let host = HostCtx::new(
        "inspect",
        Arc::new(Grants::default()),
        CommandPolicy::default(),
        Vec::new(),
        0,
        DEFAULT_TIMEOUT,
    );
    let limits = Limits {
        timeout: DEFAULT_TIMEOUT,
        memory: DEFAULT_MEMORY,
    };
    let info = sandbox
        .describe(&loaded, host, limits)
        .await
        .map_err(|e| Failure::input(what, e.to_string(), None))?;
    if out.json {
        out.print_json(&json!({
            "name": info.name,
            "version": info.version,
            "summary": info.summary,
            "sha256": loaded.sha256,
            "params": info.params.iter().map(|p| json!({
                "name": p.name,
                "kind": kind(p.kind),
                "required": p.required,
                "default": p.default.as_ref().and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok()),
                "doc": p.doc,
            })).collect::<Vec<_>>(),
            "imports": imports,
        }));
        return Ok(exit::SUCCESS);
    }
    println!("{} {}: {}", info.name, info.version, info.summary);
    println!("sha256 {}", loaded.sha256);
    if !what.starts_with("std:") {
        println!(
            "pin it in a runbook's step: uses = \"{what}\" (relative to the runbook) and sha256 = \"{}\"",
            loaded.sha256
        );
    }
    println!("\nparameters:");
    let width = info.params.iter().map(|p| p.name.len()).max().unwrap_or(0);
    for p in &info.params {
        let how = if p.required {
            "required".to_string()
        } else {
            match &p.default {
                Some(d) => format!("default {d}"),
                None => "optional".to_string(),
            }
        };
        println!(
            "  {:<width$}  {:<7}  {how}: {}",
            p.name,
            kind(p.kind),
            p.doc
        );
    }
    println!("\nimports (what it can ask the host for; grants, commands and URLs still decide):");
    for i in &imports {
        println!("  {i}");
    }
    Ok(exit::SUCCESS)
}

fn kind(k: wit::ParamKind) -> &'static str {
    match k {
        wit::ParamKind::String => "string",
        wit::ParamKind::Integer => "integer",
        wit::ParamKind::Number => "number",
        wit::ParamKind::Boolean => "boolean",
        wit::ParamKind::List => "list",
        wit::ParamKind::Table => "table",
        wit::ParamKind::Any => "any",
    }
}
