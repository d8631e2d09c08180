//! `mend step upgrade RUNBOOK STEP --to VERSION`: pull the new version of
//! an `oci://` step, show what changes (capabilities, parameters, the
//! signature's key, sha256), and on confirmation rewrite the step's `uses`,
//! `sha256` and `capabilities` in place (`toml_edit`: every other byte of
//! the file stays). Nothing is written when the step's `with` sets a
//! parameter the new version no longer takes, or when it would need a
//! parameter the runbook does not give.

use std::io::IsTerminal;
use std::path::Path;

use mend_host::sandbox::{Sandbox, wit};
use mend_runbook::{Runbook, Uses};

use super::render::Out;
use super::step_share::{oci_failure, parse_ref};
use crate::exit;
use crate::load::supply::{self, Trust};
use crate::outcome::Failure;

/// How the operator confirms: `--yes`, `--dry-run`, or a terminal's y/N.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Confirm {
    Yes,
    DryRun,
    Ask,
}

/// One version's view: what it is, what it imports, who signed it.
struct Side {
    info: wit::StepInfo,
    sha256: String,
    capabilities: Vec<String>,
    key: Option<(String, bool)>,
}

pub async fn upgrade(
    sandbox: &Sandbox,
    out: &Out,
    trust: &Trust,
    file: &Path,
    step: &str,
    to: &str,
    confirm: Confirm,
) -> Result<i32, Failure> {
    let name = file.display().to_string();
    let runbook =
        Runbook::load(file, &[], &crate::load::bundled_names()).map_err(Failure::BadInput)?;
    let Some(def) = runbook.step(step) else {
        return Err(Failure::input(
            &name,
            format!("{name} has no step `{step}`"),
            Some(format!(
                "its steps: {}",
                runbook
                    .steps
                    .iter()
                    .map(|s| s.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        ));
    };
    let Uses::Oci {
        reference, sha256, ..
    } = &def.uses
    else {
        return Err(Failure::BadInput(vec![
            runbook.diagnostic(
                def.uses_span,
                format!("step `{step}` uses {}, not an oci:// step", def.uses),
                Some(
                    "upgrade a file step by pinning the new file's sha256 (mend step inspect FILE)"
                        .into(),
                ),
            ),
        ]));
    };
    let new_ref = parse_ref(&reference.with_tag(to).to_string())?;
    let access = &trust.oci;
    // The pinned version: from the cache, else fetched and checked against the pin.
    let (old_bytes, old_sigs) = crate::load::oci::component(access, reference, sha256)
        .map_err(|e| oci_failure(&reference.to_string(), e))?;
    let (new_pulled, new_sigs) = access
        .pull(&new_ref, None)
        .map_err(|e| oci_failure(&new_ref.to_string(), e))?;
    let old = side(
        sandbox,
        trust,
        &reference.to_string(),
        &old_bytes,
        &old_sigs,
    )
    .await?;
    let new = side(
        sandbox,
        trust,
        &new_ref.to_string(),
        &new_pulled.wasm,
        &new_sigs,
    )
    .await?;

    let mut lines = Vec::new();
    let (gained, dropped) = supply::diff(&old.capabilities, &new.capabilities);
    let mut caps: Vec<String> = gained
        .iter()
        .map(|c| format!("+ {c}: {}", supply::what(c)))
        .collect();
    caps.extend(dropped.iter().map(|c| format!("- {c}")));
    lines.push((
        "capabilities",
        if caps.is_empty() {
            vec!["unchanged".into()]
        } else {
            caps
        },
    ));
    let mut params = Vec::new();
    let mut refusals = Vec::new();
    for p in &new.info.params {
        match old.info.params.iter().find(|o| o.name == p.name) {
            None => {
                let how = match (&p.default, p.required) {
                    (Some(d), _) => format!("default {d}"),
                    (None, true) => "required".into(),
                    (None, false) => "optional".into(),
                };
                params.push(format!(
                    "+ {} ({}, {how})",
                    p.name,
                    super::step::kind(p.kind)
                ));
                if p.required && p.default.is_none() && !def.with.contains_key(&p.name) {
                    refusals.push(format!(
                        "{} {to} requires parameter `{}`, which step `{step}`'s `with` does not set",
                        new.info.name, p.name
                    ));
                }
            }
            Some(o) if o.kind != p.kind => params.push(format!(
                "~ {}: {} -> {}",
                p.name,
                super::step::kind(o.kind),
                super::step::kind(p.kind)
            )),
            Some(_) => {}
        }
    }
    for o in &old.info.params {
        if !new.info.params.iter().any(|p| p.name == o.name) {
            params.push(format!("- {}", o.name));
            if def.with.contains_key(&o.name) {
                refusals.push(format!(
                    "step `{step}` sets `{}` in its `with`, and {} {to} no longer takes it",
                    o.name, new.info.name
                ));
            }
        }
    }
    lines.push((
        "parameters",
        if params.is_empty() {
            vec!["unchanged".into()]
        } else {
            params
        },
    ));
    let key = |k: &Option<(String, bool)>| match k {
        None => "none".to_string(),
        Some((id, true)) => format!("{id} (trusted)"),
        Some((id, false)) => format!("{id} (not trusted by the policy)"),
    };
    lines.push((
        "signature",
        vec![format!("key {} -> {}", key(&old.key), key(&new.key))],
    ));
    lines.push(("sha256", vec![format!("{} -> {}", old.sha256, new.sha256)]));

    let mut text = format!(
        "{step}: {} {} -> {}\n",
        reference.repository_url(),
        old.info.version,
        new.info.version
    );
    for (what, items) in &lines {
        text.push_str(&format!(
            "  {what:<13} {}\n",
            items.join("\n                ")
        ));
    }
    if out.json {
        out.print_json(&serde_json::json!({
            "step": step,
            "from": reference.to_string(),
            "to": new_ref.to_string(),
            "diff": lines.iter().map(|(k, v)| (k.to_string(), v.clone())).collect::<std::collections::BTreeMap<_, _>>(),
            "refused": refusals,
        }));
    } else {
        print!("{text}");
    }
    if !refusals.is_empty() {
        return Err(Failure::BadInput(vec![runbook.diagnostic(
            def.with_span,
            format!("not upgraded: {}", refusals.join("; ")),
            Some(format!(
                "change the step's `with` for {} {to} first; {name} was not rewritten",
                new.info.name
            )),
        )]));
    }
    let approve = match confirm {
        Confirm::DryRun => {
            if !out.json {
                println!("--dry-run: {name} was not rewritten");
            }
            return Ok(exit::SUCCESS);
        }
        Confirm::Yes => true,
        Confirm::Ask if std::io::stdin().is_terminal() && !out.json => {
            eprint!("rewrite {name}? [y/N] ");
            let mut answer = String::new();
            std::io::stdin().read_line(&mut answer).is_ok()
                && matches!(answer.trim(), "y" | "Y" | "yes")
        }
        Confirm::Ask => {
            return Err(Failure::input(
                &name,
                format!("{name} was not rewritten: no terminal to confirm at"),
                Some("review the changes above, then run again with --yes (or --dry-run to only see them)".into()),
            ));
        }
    };
    if !approve {
        println!("{name} was not rewritten");
        return Ok(exit::BAD_INPUT);
    }
    let source = std::fs::read_to_string(file)
        .map_err(|e| Failure::input(&name, format!("cannot read {name}: {e}"), None))?;
    let rewritten = mend_runbook::edit::rewrite_step(
        &source,
        step,
        &new_ref.to_string(),
        &new.sha256,
        &new.capabilities,
    )
    .map_err(|e| Failure::input(&name, e, None))?;
    // Temp file then rename: a crash leaves the old runbook or the new one.
    let tmp = file.with_extension("toml.mend-upgrade");
    std::fs::write(&tmp, rewritten)
        .and_then(|()| std::fs::rename(&tmp, file))
        .map_err(|e| anyhow::anyhow!("cannot rewrite {name}: {e}"))?;
    if !out.json {
        println!("rewrote step `{step}` in {name}: uses, sha256 and capabilities");
    }
    Ok(exit::SUCCESS)
}

async fn side(
    sandbox: &Sandbox,
    trust: &Trust,
    what: &str,
    bytes: &[u8],
    sigs: &[Vec<u8>],
) -> Result<Side, Failure> {
    let imports = sandbox
        .imports(what, bytes)
        .map_err(|e| Failure::input(what, format!("{e:#}"), None))?;
    let (info, loaded) = super::step::describe(sandbox, what, bytes).await?;
    let key = sigs
        .iter()
        .find_map(|s| {
            std::str::from_utf8(s)
                .ok()
                .and_then(supply::signature_key_id)
        })
        .map(|id| {
            let trusted = matches!(
                supply::check_oci_signature(&trust.policy, what, bytes, sigs),
                Ok(Some(ref k)) if *k == id
            );
            (id, trusted)
        });
    Ok(Side {
        info,
        sha256: loaded.sha256,
        capabilities: supply::capabilities(&imports),
        key,
    })
}
