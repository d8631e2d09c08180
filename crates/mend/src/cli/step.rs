//! `mend step inspect`: what a step is before a runbook uses it: its name,
//! version, parameters, what it imports (the host interfaces it can call)
//! and the sha256 to pin it by.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::json;

use crate::exit;
use crate::outcome::Failure;
use mend_host::commands::CommandPolicy;
use mend_host::grants::Grants;
use mend_host::sandbox::{HostCtx, Limits, Sandbox, wit};
use mend_runbook::model::{DEFAULT_MEMORY, DEFAULT_TIMEOUT};
use mend_runbook::schema::{Param, StepParams, runbook_schema};

use super::render::Out;

/// Inspect `what`: `std:NAME` (a bundled step) or a `.wasm` file.
pub async fn inspect(
    sandbox: &Sandbox,
    out: &Out,
    what: &str,
    verbose: bool,
) -> Result<i32, Failure> {
    inspect_file(sandbox, out, what, what, verbose).await
}

/// Inspect a bundled step or a component file; `uses` is how a runbook
/// names it (the file, or the oci:// reference it was pulled from).
pub(super) async fn inspect_file(
    sandbox: &Sandbox,
    out: &Out,
    what: &str,
    uses: &str,
    verbose: bool,
) -> Result<i32, Failure> {
    let bytes = match what.strip_prefix("std:") {
        Some(name) => crate::load::bundled::get(name)
            .ok_or_else(|| {
                Failure::input(
                    what,
                    format!("no bundled step `{name}`"),
                    Some(format!(
                        "bundled steps: {}",
                        crate::load::bundled_names()
                            .iter()
                            .map(|n| format!("std:{n}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                )
            })?
            .to_vec(),
        None => mend_host::sandbox::read_component(Path::new(what)).map_err(|e| {
            Failure::input(
                what,
                e,
                Some("give a step's .wasm file, or std:NAME for a bundled one".into()),
            )
        })?,
    };
    let bad = |e: anyhow::Error| Failure::input(what, format!("{e:#}"), None);
    let imports = sandbox.imports(what, &bytes).map_err(bad)?;
    let (info, loaded) = describe(sandbox, what, &bytes).await?;
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
            "capabilities": crate::load::supply::capabilities(&imports),
        }));
        return Ok(exit::SUCCESS);
    }
    println!("{} {}: {}", info.name, info.version, info.summary);
    println!("sha256 {}", loaded.sha256);
    let capabilities = crate::load::supply::capabilities(&imports);
    if !what.starts_with("std:") {
        let relative = if uses.starts_with("oci://") {
            ""
        } else {
            " (relative to the runbook)"
        };
        println!(
            "pin it in a runbook's step: uses = \"{uses}\"{relative} and sha256 = \"{}\"",
            loaded.sha256
        );
        println!(
            "approve what it can do: {}",
            crate::load::supply::line(&capabilities)
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
        // A multi-line doc (std:assert's check kinds) goes on, indented.
        let mut doc = p.doc.lines();
        println!(
            "  {:<width$}  {:<7}  {how}: {}",
            p.name,
            kind(p.kind),
            doc.next().unwrap_or("")
        );
        for line in doc {
            println!("  {:<width$}             {line}", "");
        }
    }
    if verbose {
        println!(
            "\nimports (what it can ask the host for; grants, commands and URLs still decide):"
        );
        for i in &imports {
            println!("  {i}");
        }
    } else {
        println!(
            "\ncan ask the host for: {} (-v lists the {} interfaces it imports)",
            crate::load::supply::line(&capabilities),
            imports.len()
        );
    }
    Ok(exit::SUCCESS)
}

/// Load a component and ask it who it is.
pub(super) async fn describe(
    sandbox: &Sandbox,
    what: &str,
    bytes: &[u8],
) -> Result<(wit::StepInfo, mend_host::sandbox::LoadedStep), Failure> {
    let loaded = sandbox
        .load(what, bytes)
        .map_err(|e| Failure::input(what, format!("{e:#}"), None))?;
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
    Ok((info, loaded))
}

/// `mend schema`: the runbook JSON Schema, with each bundled step's `with`.
pub async fn schema(sandbox: &Sandbox) -> Result<i32, Failure> {
    let mut steps = Vec::new();
    for (name, bytes) in crate::load::bundled::BUNDLED {
        let uses = format!("std:{name}");
        let (info, _) = describe(sandbox, &uses, bytes).await?;
        steps.push(StepParams {
            uses,
            summary: info.summary,
            params: info
                .params
                .into_iter()
                .map(|p| Param {
                    kind: kind(p.kind).to_string(),
                    default: p
                        .default
                        .as_deref()
                        .and_then(|d| serde_json::from_str(d).ok()),
                    name: p.name,
                    required: p.required,
                    doc: p.doc,
                })
                .collect(),
        });
    }
    let schema = runbook_schema(&steps);
    println!(
        "{}",
        serde_json::to_string_pretty(&schema).expect("a schema serializes")
    );
    Ok(exit::SUCCESS)
}

pub(super) fn kind(k: wit::ParamKind) -> &'static str {
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

/// The cargo that built mend's caller (`$CARGO` under cargo), else the one on
/// PATH.
fn cargo() -> std::process::Command {
    std::process::Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Run cargo in `dir` with the author's terminal; Err when it fails.
fn cargo_in(dir: &Path, args: &[&str]) -> Result<(), Failure> {
    let status = cargo().args(args).current_dir(dir).status().map_err(|e| {
        Failure::input(
            &dir.display().to_string(),
            format!("cannot run cargo: {e}"),
            Some("install Rust with rustup (https://rustup.rs)".into()),
        )
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(Failure::input(
            &dir.display().to_string(),
            format!(
                "cargo {} failed in {} ({status})",
                args.join(" "),
                dir.display()
            ),
            Some("its messages are above".into()),
        ))
    }
}

/// `mend step test`: the crate's native tests.
pub fn test(dir: &Path) -> Result<i32, Failure> {
    cargo_in(dir, &["test"])?;
    Ok(exit::SUCCESS)
}

/// `mend step build`: cargo builds the component, mend loads it as a step
/// and prints how to pin it.
pub async fn build(sandbox: &Sandbox, out: &Out, dir: &Path) -> Result<i32, Failure> {
    cargo_in(
        dir,
        &["build", "--release", "--target", "wasm32-wasip2", "--quiet"],
    )?;
    // Where cargo put it: its target directory and the package's name.
    let meta = cargo()
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(dir)
        .output()
        .map_err(|e| anyhow::anyhow!("cargo metadata: {e}"))?;
    let meta: serde_json::Value =
        serde_json::from_slice(&meta.stdout).map_err(|e| anyhow::anyhow!("cargo metadata: {e}"))?;
    let manifest = std::path::absolute(dir.join("Cargo.toml")).unwrap_or_default();
    let package = meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["manifest_path"].as_str().map(Path::new) == Some(manifest.as_path()))
        .or_else(|| meta["packages"].get(0))
        .and_then(|p| p["name"].as_str())
        .ok_or_else(|| anyhow::anyhow!("cargo metadata names no package in {}", dir.display()))?;
    let target = meta["target_directory"].as_str().unwrap_or("target");
    let wasm = Path::new(target)
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", package.replace('-', "_")));
    let what = wasm.display().to_string();
    let bytes = std::fs::read(&wasm).map_err(|e| {
        Failure::input(
            &what,
            format!("cargo built no {what}: {e}"),
            Some("a step crate is a cdylib: [lib] crate-type = [\"cdylib\"]".into()),
        )
    })?;
    let (info, loaded) = describe(sandbox, &what, &bytes).await?;
    let capabilities = crate::load::supply::capabilities(&loaded.imports);
    if out.json {
        out.print_json(&json!({
            "path": wasm,
            "bytes": bytes.len(),
            "name": info.name,
            "version": info.version,
            "sha256": loaded.sha256,
            "capabilities": capabilities,
        }));
        return Ok(exit::SUCCESS);
    }
    println!(
        "built {} {}: {what} ({})",
        info.name,
        info.version,
        mend_human::human_bytes(bytes.len() as u64)
    );
    println!("what it can ask the host for (review it; the runbook approves it below):");
    let width = capabilities.iter().map(|c| c.len()).max().unwrap_or(0);
    for c in &capabilities {
        println!("  {c:<width$}  {}", crate::load::supply::what(c));
    }
    println!("pin it in a runbook's step (uses is relative to the runbook):");
    println!(
        "  uses = \"{what}\"\n  sha256 = \"{}\"\n  {}",
        loaded.sha256,
        crate::load::supply::line(&capabilities)
    );
    println!(
        "where a policy requires signatures, sign it where it will be used: minisign -Sm FILE.wasm (writes FILE.wasm.minisig beside it)"
    );
    Ok(exit::SUCCESS)
}

/// `mend step new NAME`: a step crate that builds into a component and
/// passes its own test, for an author to change.
pub fn new(
    out: &Out,
    name: &str,
    dir: Option<&Path>,
    sdk: Option<&Path>,
    cache: &Path,
) -> Result<i32, Failure> {
    let valid = name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !valid {
        return Err(Failure::input(
            name,
            format!("`{name}` is not a step name"),
            Some(
                "use lowercase letters, digits and dashes, starting with a letter: disk-report"
                    .into(),
            ),
        ));
    }
    let dir = dir.map_or_else(|| PathBuf::from(name), Path::to_path_buf);
    if dir.exists() {
        return Err(Failure::input(
            &dir.display().to_string(),
            format!("{} already exists; nothing was written", dir.display()),
            Some("pick another name or --dir".into()),
        ));
    }
    // The SDK inside this binary unless the author names a checkout's.
    let sdk = match sdk {
        Some(s) => std::fs::canonicalize(s).map_err(|e| {
            Failure::input(
                &s.display().to_string(),
                format!("cannot find mend's SDK at {}: {e}", s.display()),
                Some("give the path of the sdk/ folder of a mend checkout: --sdk PATH".into()),
            )
        })?,
        None => super::sdk::install(cache).map_err(|e| {
            anyhow::anyhow!(
                "cannot write mend's SDK under {}: {e}",
                cache.join("sdk").display()
            )
        })?,
    };
    let type_name: String = name
        .split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect();
    let crate_file = format!("step_{}", name.replace('-', "_"));
    let fill = |t: &str| {
        t.replace("{{name}}", name)
            .replace("{{type}}", &type_name)
            .replace("{{crate}}", &crate_file)
            .replace("{{sdk}}", &sdk.display().to_string())
    };
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(dir.join("src"))?;
        std::fs::write(
            dir.join("Cargo.toml"),
            fill(include_str!("scaffold/Cargo.toml.in")),
        )?;
        std::fs::write(
            dir.join("src/lib.rs"),
            fill(include_str!("scaffold/lib.rs.in")),
        )?;
        std::fs::write(dir.join(".gitignore"), "/target\n")?;
        // The versions mend was built and tested with; cargo drops the
        // engine's own entries on the first build.
        std::fs::write(dir.join("Cargo.lock"), super::sdk::LOCK)?;
        Ok(())
    };
    write().map_err(|e| anyhow::anyhow!("cannot write the step in {}: {e}", dir.display()))?;
    let d = dir.display();
    if out.json {
        out.print_json(&json!({"dir": dir, "name": name, "sdk": sdk}));
    } else {
        println!("created step `{name}` in {d}: Cargo.toml, src/lib.rs (the step and its test)");
        println!("  its SDK:   {}", sdk.display());
        println!("  test it:   cd {d} && cargo test");
        println!("  build it:  cargo build --release --target wasm32-wasip2");
        println!(
            "  inspect:   mend step inspect {d}/target/wasm32-wasip2/release/{crate_file}.wasm"
        );
        println!(
            "  use it in a runbook: uses = \"PATH/{crate_file}.wasm\" with the sha256 inspect prints"
        );
    }
    Ok(exit::SUCCESS)
}
