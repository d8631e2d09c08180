//! Load: from a runbook file to a prepared run, before any step plans. The
//! runbook validated; each step's component found (`bundled` or a pinned
//! `.wasm`), its signature and capabilities checked against the operator's
//! policy (`supply`), compiled once and cached, described; its `with` table
//! checked against the step's own parameter specs (`params`); its grants
//! opened.

pub mod bundled;
pub mod oci;
mod params;
pub mod supply;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;

use mend_host::commands::CommandPolicy;
use mend_host::grants::Grants;
use mend_host::sandbox::{HostCtx, Limits, LoadedStep, Sandbox, wit};
use mend_runbook::{Diagnostic, Runbook, Uses};

use crate::outcome::Failure;
use supply::Trust;

/// A step, loaded and checked, ready to plan.
pub struct PreparedStep {
    pub idx: u32,
    pub def: mend_runbook::Step,
    pub loaded: LoadedStep,
    pub info: wit::StepInfo,
    pub params_json: String,
    pub grants: Arc<Grants>,
    pub commands: CommandPolicy,
    pub limits: Limits,
}

/// A runbook with every step prepared.
pub struct Prepared {
    pub runbook: Runbook,
    pub steps: Vec<PreparedStep>,
    /// For `mend lint`: what this machine lacks (a grant's directory, a
    /// command's user), each checked no further.
    pub warnings: Vec<String>,
}

/// What a preparation is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Purpose {
    /// plan, run, resume, rollback: everything must be on this machine.
    #[default]
    Run,
    /// A rehearsal: commands run their stand-ins.
    Rehearse,
    /// `mend lint`: a missing grant directory or user is a warning.
    Lint,
}

/// The names of the bundled steps.
pub fn bundled_names() -> Vec<&'static str> {
    bundled::BUNDLED.iter().map(|(n, _)| *n).collect()
}

/// Load and check everything a run needs before anything runs: the runbook,
/// each step's component (pin checked), its parameters, its grants.
/// `grant_paths` overrides where grants point (rehearsals run on copies).
pub async fn prepare(
    sandbox: &Sandbox,
    file: &Path,
    sets: &[(String, String)],
    grant_paths: &BTreeMap<String, PathBuf>,
    stand_ins: bool,
    trust: &Trust,
) -> Result<Prepared, Failure> {
    let purpose = if stand_ins {
        Purpose::Rehearse
    } else {
        Purpose::Run
    };
    prepare_for(sandbox, file, sets, grant_paths, purpose, trust).await
}

/// [`prepare`], for a purpose.
pub async fn prepare_for(
    sandbox: &Sandbox,
    file: &Path,
    sets: &[(String, String)],
    grant_paths: &BTreeMap<String, PathBuf>,
    purpose: Purpose,
    trust: &Trust,
) -> Result<Prepared, Failure> {
    let lint = purpose == Purpose::Lint;
    let stand_ins = purpose == Purpose::Rehearse;
    let mut runbook =
        Runbook::load_as(file, sets, &bundled_names(), lint).map_err(Failure::BadInput)?;
    // From here on, every line the CLI prints masks its secret values.
    crate::secrets::add(&mend_journal::Redact::new(
        runbook
            .secrets
            .iter()
            .filter_map(|n| runbook.params.get(n).cloned()),
    ));
    let mut warnings: Vec<String> = runbook
        .warnings
        .iter()
        .map(|d| d.to_string().replacen("error: ", "warning: ", 1))
        .collect();
    // A secret too short to mask in text: said once, naming the param.
    for (name, len) in mend_journal::Redact::too_short(
        runbook
            .secrets
            .iter()
            .filter_map(|n| runbook.params.get(n).map(|v| (n.as_str(), v.as_str()))),
    ) {
        let w = mend_journal::Redact::too_short_warning(&name, len);
        if lint {
            warnings.push(w);
        } else {
            crate::secrets::eprintln!("{w}");
        }
    }
    // For lint: the grants whose directory is not on this machine, said
    // once each; the steps that hold them are checked without them.
    let mut absent: Vec<String> = Vec::new();
    let unknown: Vec<Diagnostic> = trust
        .approved
        .iter()
        .filter(|id| runbook.step(id).is_none())
        .map(|id| {
            Diagnostic::plain(
                file.display().to_string(),
                format!("--approve-capabilities {id}: the runbook has no step `{id}`"),
                Some(format!(
                    "its steps: {}",
                    runbook
                        .steps
                        .iter()
                        .map(|s| s.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            )
        })
        .collect();
    if !unknown.is_empty() {
        return Err(Failure::BadInput(unknown));
    }
    for (name, path) in grant_paths {
        if let Some(g) = runbook.grants.get_mut(name) {
            g.path = path.clone();
        }
    }
    if lint {
        for (name, g) in &runbook.grants {
            if !g.path.is_dir() {
                let d = runbook.diagnostic(
                    g.span,
                    format!(
                        "grant `{name}`: {} is not a directory on this machine; the steps that hold it are checked without it",
                        g.path.display()
                    ),
                    Some("on the server it must exist; point it elsewhere with --set to check it here".into()),
                );
                warnings.push(d.to_string().replacen("error: ", "warning: ", 1));
                absent.push(name.clone());
            }
        }
    }
    let stand_in_dir = if stand_ins {
        Some(stand_in_dir(&runbook, grant_paths)?)
    } else {
        None
    };
    let mut steps = Vec::new();
    let mut problems = Vec::new();
    for (idx, def) in runbook.steps.iter().enumerate() {
        let label = format!("step `{}` ({})", def.id, def.uses);
        let bytes: std::borrow::Cow<[u8]> = match &def.uses {
            Uses::Std(name) => match bundled::get(name) {
                Some(b) => b.into(),
                None => unreachable!("the runbook checks std names"),
            },
            Uses::File { path, sha256, .. } => {
                let bytes = mend_host::sandbox::read_component(path).map_err(|e| {
                    Failure::BadInput(vec![
                        runbook.diagnostic(
                            def.span,
                            format!("{label}: {e}"),
                            Some(
                                "build the step, or fix the `uses` path (relative to the runbook)"
                                    .into(),
                            ),
                        ),
                    ])
                })?;
                let actual = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
                if &actual != sha256 {
                    problems.push(runbook.diagnostic(
                        def.span,
                        format!("{label}: {} has sha256 {actual}, but the runbook pins {sha256}", path.display()),
                        Some("if you rebuilt or updated the step on purpose, review it and pin the new digest: sha256 = \"".to_string() + &actual + "\""),
                    ));
                    continue;
                }
                if !trust.undo
                    && let Err(r) = supply::check_signature(&trust.policy, path, &bytes)
                {
                    problems.push(runbook.diagnostic(
                        def.uses_span,
                        format!("{label}: {}", r.message),
                        Some(r.hint),
                    ));
                    continue;
                }
                bytes.into()
            }
            Uses::Oci {
                reference, sha256, ..
            } => {
                let (bytes, signatures) = match oci::component(&trust.oci, reference, sha256) {
                    Ok(found) => found,
                    Err(e) => {
                        let (d, unreachable) =
                            oci_refusal(&runbook, def, &label, &trust.oci.store, e);
                        if unreachable {
                            return Err(Failure::Unavailable(vec![d]));
                        }
                        problems.push(d);
                        continue;
                    }
                };
                if !trust.undo
                    && let Err(r) = supply::check_oci_signature(
                        &trust.policy,
                        &reference.to_string(),
                        &bytes,
                        &signatures,
                    )
                {
                    problems.push(runbook.diagnostic(
                        def.uses_span,
                        format!("step `{}`: {}", def.id, r.message),
                        Some(r.hint),
                    ));
                    continue;
                }
                bytes.into()
            }
        };
        let loaded = sandbox.load(&label, &bytes).map_err(|e| {
            Failure::BadInput(vec![runbook.diagnostic(def.span, format!("{e:#}"), None)])
        })?;
        // Before any of its code runs (describe included).
        let capabilities = supply::capabilities(&loaded.imports);
        if let Err(d) = supply::approve(trust, def, &runbook, &label, &capabilities) {
            problems.push(*d);
            continue;
        }
        let limits = Limits {
            timeout: def.timeout,
            memory: def.memory,
        };
        let empty = Arc::new(Grants::default());
        let probe_ctx = HostCtx::new(
            &def.id,
            empty,
            CommandPolicy::default(),
            Vec::new(),
            0,
            def.timeout,
        );
        let info = sandbox
            .describe(&loaded, probe_ctx, limits)
            .await
            .map_err(|e| {
                Failure::BadInput(vec![runbook.diagnostic(def.span, e.to_string(), None)])
            })?;
        let params_json = match params::check(&runbook, def, &info) {
            Ok(j) => j,
            Err(mut d) => {
                problems.append(&mut d);
                continue;
            }
        };
        // The step's own deeper checks of its `with` (a misspelt kind, a
        // key it does not know, a command it was not granted): errors in
        // the runbook, for lint and plan alike, before any grant is opened.
        // Never in the way of a rollback (the run passed it to start).
        let mut wrong = match trust.undo {
            true => Vec::new(),
            false => validate(sandbox, &runbook, def, &loaded, limits, &params_json).await?,
        };
        if !wrong.is_empty() {
            problems.append(&mut wrong);
            continue;
        }
        let held = def.grants.iter().filter(|g| !absent.contains(g));
        let grants = Grants::open(&runbook, held).map_err(|e| {
            Failure::BadInput(vec![runbook.diagnostic(
                def.span,
                format!("step `{}`: {e:#}", def.id),
                None,
            )])
        })?;
        let commands = CommandPolicy {
            allowed: def
                .commands
                .iter()
                .map(|c| (c.clone(), runbook.commands[c].clone()))
                .collect(),
            stand_ins: stand_ins.then(|| runbook.rehearsal_commands.clone()),
            env: grants
                .iter()
                .map(|g| {
                    (
                        format!("MEND_GRANT_{}", g.name.to_uppercase().replace('-', "_")),
                        g.root.display().to_string(),
                    )
                })
                .chain(
                    stand_in_dir
                        .as_ref()
                        .map(|d| ("MEND_REHEARSAL".to_string(), d.display().to_string())),
                )
                .collect(),
            grants: None,
        };
        let grants = Arc::new(grants);
        let commands = CommandPolicy {
            grants: Some(grants.clone()),
            ..commands
        };
        steps.push(PreparedStep {
            idx: idx as u32,
            def: def.clone(),
            loaded,
            info,
            params_json,
            grants,
            commands,
            limits,
        });
    }
    if !problems.is_empty() {
        return Err(Failure::BadInput(problems));
    }
    Ok(Prepared {
        runbook,
        steps,
        warnings,
    })
}

/// Why an `oci://` step's component could not be had, at its `uses`; true
/// when the registry could not be reached (exit 7, retryable).
fn oci_refusal(
    runbook: &Runbook,
    def: &mend_runbook::Step,
    label: &str,
    store: &Path,
    e: mend_oci::Error,
) -> (Diagnostic, bool) {
    let id = &def.id;
    match e {
        mend_oci::Error::PinMismatch { .. } => (
            runbook.diagnostic(
                def.uses_span,
                format!("step `{id}`: {e}"),
                Some(format!(
                    "do not run it; review it with `mend step inspect {}`, then `mend step upgrade`",
                    def.uses
                )),
            ),
            false,
        ),
        mend_oci::Error::Unreachable { ref registry, ref why } => {
            let Uses::Oci { reference, .. } = &def.uses else {
                unreachable!("an oci step")
            };
            (
                runbook.diagnostic(
                    def.uses_span,
                    format!(
                        "step `{id}`: {reference} is not in the cache ({}) and cannot reach the registry {registry}: {why}",
                        store.display()
                    ),
                    Some(format!(
                        "fetch it where the registry is reachable: mend step pull {reference} (then copy the state directory's oci/ here)"
                    )),
                ),
                true,
            )
        }
        e => (
            runbook.diagnostic(
                def.uses_span,
                format!("{label}: {e}"),
                Some("check the reference, the registry and its credentials (Docker's config.json)".into()),
            ),
            false,
        ),
    }
}

/// What the step's own `validate` says of its parameters, each problem
/// at the line of `with` it names; nothing from a step built before
/// `validate` existed. The step sees its grants' and commands' names only.
async fn validate(
    sandbox: &Sandbox,
    runbook: &Runbook,
    def: &mend_runbook::Step,
    loaded: &LoadedStep,
    limits: Limits,
    params_json: &str,
) -> Result<Vec<Diagnostic>, Failure> {
    let cx = wit::Context {
        step_id: def.id.clone(),
        grants: def
            .grants
            .iter()
            .filter_map(|name| runbook.grants.get(name).map(|g| (name, g)))
            .map(|(name, g)| wit::GrantInfo {
                name: name.clone(),
                access: match g.access {
                    mend_runbook::Access::Read => wit::Access::Read,
                    mend_runbook::Access::Write => wit::Access::Write,
                },
                disposable: g.disposable,
            })
            .collect(),
        commands: def.commands.clone(),
        now: 0,
    };
    let host = HostCtx::new(
        &def.id,
        Arc::new(Grants::default()),
        CommandPolicy::default(),
        Vec::new(),
        0,
        def.timeout,
    );
    let problems = sandbox
        .validate(loaded, host, limits, cx, params_json.to_string())
        .await
        .map_err(|e| Failure::BadInput(vec![runbook.diagnostic(def.span, e.to_string(), None)]))?;
    Ok(problems
        .unwrap_or_default()
        .into_iter()
        .map(|e| {
            let span = match &e.param {
                Some(p) => def.param_span(p),
                None => def.with_span,
            };
            runbook.diagnostic(
                span,
                format!("step `{}`: {}", def.id, mend_human::sanitize(&e.message)),
                e.hint.map(|h| mend_human::sanitize(&h)),
            )
        })
        .collect())
}

/// Where a rehearsal's stand-ins keep what they pretend (which units they
/// stopped): `MEND_REHEARSAL`, beside the grants' copies, so it goes with
/// them; made on first use, the same on a resume.
fn stand_in_dir(
    runbook: &Runbook,
    grant_paths: &BTreeMap<String, PathBuf>,
) -> Result<PathBuf, Failure> {
    // On overlays the grants keep their paths: the parent names a place
    // in the scratch area.
    let named = std::env::var_os(mend_host::cow::overlay::STAND_IN_DIR).map(PathBuf::from);
    let dir = match grant_paths.values().next().and_then(|p| p.parent()) {
        _ if named.is_some() => named.unwrap_or_default(),
        Some(scratch) => scratch.join(".stand-ins"),
        None => std::env::temp_dir().join(format!("mend-rehearsal-{}-stand-ins", runbook.name)),
    };
    std::fs::create_dir_all(&dir).map_err(|e| {
        Failure::Internal(anyhow::anyhow!(
            "cannot make {} for the rehearsal's stand-ins: {e}",
            dir.display()
        ))
    })?;
    Ok(dir)
}
