//! `mend step push` and `mend step pull`: steps shared as Wasm OCI
//! artifacts. Push reads what the component is (its `describe` and its
//! imports), uploads it with its `.minisig` as a referrer and prints the
//! lines to pin it; pull fetches ahead of time (a CI image, an air-gapped
//! host) and prints the same lines.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::json;

use mend_host::sandbox::Sandbox;
use mend_oci::{ComponentInfo, Reference};

use super::render::Out;
use crate::exit;
use crate::load::oci::Access;
use crate::load::supply;
use crate::outcome::Failure;

/// A registry failure as the operator reads it: unreachable is exit 7.
pub fn oci_failure(what: &str, e: mend_oci::Error) -> Failure {
    let unreachable = matches!(e, mend_oci::Error::Unreachable { .. });
    let hint = match &e {
        mend_oci::Error::Unreachable { .. } => {
            Some("check the registry's address and that it is up; nothing was changed".into())
        }
        mend_oci::Error::Denied { .. } => {
            Some("log in with `docker login REGISTRY`, or write the credentials to $DOCKER_CONFIG/config.json".into())
        }
        mend_oci::Error::NotFound(_) => {
            Some("check the name and the version (the registry's tags list them)".into())
        }
        _ => None,
    };
    let d = mend_runbook::Diagnostic::plain(what, e.to_string(), hint);
    if unreachable {
        Failure::Unavailable(vec![d])
    } else {
        Failure::BadInput(vec![d])
    }
}

pub fn parse_ref(what: &str) -> Result<Reference, Failure> {
    Reference::parse(what).map_err(|e| {
        Failure::input(
            what,
            e,
            Some(
                "write oci://REGISTRY/NAMESPACE/NAME:VERSION; the registry is always written"
                    .into(),
            ),
        )
    })
}

/// The lines that pin a component in a runbook's step.
pub fn pin_lines(r: &Reference, sha256: &str, capabilities: &[String]) -> String {
    format!(
        "  uses = \"{r}\"\n  sha256 = \"{sha256}\"\n  {}",
        supply::line(capabilities)
    )
}

/// `mend step push FILE.wasm oci://REGISTRY/NS/NAME:VERSION`.
pub async fn push(
    sandbox: &Sandbox,
    out: &Out,
    access: &Access,
    file: &Path,
    target: &str,
    source: Option<&str>,
    force: bool,
) -> Result<i32, Failure> {
    let r = parse_ref(target)?;
    let what = file.display().to_string();
    let Some(tag) = r.tag.clone().filter(|_| r.digest.is_none()) else {
        return Err(Failure::input(
            target,
            "a push names a version tag, not a digest",
            Some("write oci://REGISTRY/NAMESPACE/NAME:VERSION".into()),
        ));
    };
    let bytes = mend_host::sandbox::read_component(file)
        .map_err(|e| Failure::input(&what, e, Some("give a step's .wasm file".into())))?;
    let imports = sandbox
        .imports(&what, &bytes)
        .map_err(|e| Failure::input(&what, format!("{e:#}"), None))?;
    let (info, loaded) = super::step::describe(sandbox, &what, &bytes).await?;
    if tag != info.version {
        return Err(Failure::input(
            target,
            format!(
                "{what} is {} version {}, but the tag is `{tag}`: a step is pushed under its own version",
                info.name, info.version
            ),
            Some(format!("push it as {}", r.with_tag(&info.version))),
        ));
    }
    let capabilities = supply::capabilities(&imports);
    let client = access
        .client(&r, true)
        .map_err(|e| oci_failure(target, e))?;
    if let Some((manifest, layer)) = client
        .component_at(&tag)
        .map_err(|e| oci_failure(target, e))?
        && layer != mend_oci::sha256(&bytes)
        && !force
    {
        return Err(Failure::input(
            target,
            format!(
                "{r} already holds other bytes ({layer}, manifest {manifest}); runbooks pinned to it would refuse to run"
            ),
            Some("publish a new version instead; --force moves the tag on purpose".into()),
        ));
    }
    let params: Vec<serde_json::Value> = info
        .params
        .iter()
        .map(|p| json!({"name": p.name, "kind": super::step::kind(p.kind), "required": p.required}))
        .collect();
    let mut annotations = BTreeMap::new();
    let mut note = |k: &str, v: String| {
        annotations.insert(k.to_string(), v);
    };
    note("org.opencontainers.image.title", info.name.clone());
    note("org.opencontainers.image.version", info.version.clone());
    note("org.opencontainers.image.description", info.summary.clone());
    if let Some(s) = source {
        note("org.opencontainers.image.source", s.to_string());
    }
    note(
        "dev.mend.step.params",
        serde_json::to_string(&params).expect("json"),
    );
    note(
        "dev.mend.step.capabilities",
        serde_json::to_string(&capabilities).expect("json"),
    );
    let component = ComponentInfo {
        exports: vec![
            "mend:runbook/describe".into(),
            "mend:runbook/plan".into(),
            "mend:runbook/verify".into(),
        ],
        imports: imports.clone(),
        target: Some("mend:runbook/step@0.1.0".into()),
    };
    let created = mend_human::time::utc(mend_human::time::now_secs());
    let pushed = client
        .push_component(&tag, &bytes, component, annotations, &created)
        .map_err(|e| oci_failure(target, e))?;
    // The signature beside the file, as `minisign -Sm FILE` writes it.
    let sig_file = supply::signature_path(file);
    let signature = match std::fs::read(&sig_file) {
        Ok(sig) => {
            let key = std::str::from_utf8(&sig)
                .ok()
                .and_then(supply::signature_key_id)
                .ok_or_else(|| {
                    Failure::input(
                        &sig_file.display().to_string(),
                        format!("{} is not a minisign signature", sig_file.display()),
                        Some(format!("sign it again: minisign -Sm {what}")),
                    )
                })?;
            let (d, _) = client
                .push_signature(&pushed.manifest, &sig, &key)
                .map_err(|e| oci_failure(target, e))?;
            Some((key, d.digest))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(Failure::input(
                &sig_file.display().to_string(),
                format!("cannot read {}: {e}", sig_file.display()),
                None,
            ));
        }
    };
    if out.json {
        out.print_json(&json!({
            "reference": r.to_string(),
            "manifest": pushed.manifest.digest,
            "sha256": loaded.sha256,
            "capabilities": capabilities,
            "signature": signature.as_ref().map(|(k, d)| json!({"key_id": k, "referrer": d})),
        }));
        return Ok(exit::SUCCESS);
    }
    println!("pushed {} {} to {r}", info.name, info.version);
    println!(
        "  manifest {} (component {})",
        pushed.manifest.digest,
        mend_human::human_bytes(bytes.len() as u64)
    );
    match &signature {
        Some((key, referrer)) => println!(
            "  signature {}, key {key} (referrer {referrer})",
            sig_file.display()
        ),
        None => println!(
            "  no signature ({} does not exist): a policy that requires signatures will refuse it",
            sig_file.display()
        ),
    }
    println!("pin it in a runbook's step:");
    println!("{}", pin_lines(&r, &loaded.sha256, &capabilities));
    Ok(exit::SUCCESS)
}

/// `mend step pull REF`: into the cache; prints the pin lines.
pub async fn pull(
    sandbox: &Sandbox,
    out: &Out,
    access: &Access,
    policy: &supply::Policy,
    target: &str,
) -> Result<i32, Failure> {
    let r = parse_ref(target)?;
    let (pulled, signatures) = access.pull(&r, None).map_err(|e| oci_failure(target, e))?;
    let imports = sandbox
        .imports(target, &pulled.wasm)
        .map_err(|e| Failure::input(target, format!("{e:#}"), None))?;
    let (info, loaded) = super::step::describe(sandbox, target, &pulled.wasm).await?;
    let capabilities = supply::capabilities(&imports);
    let keys: Vec<String> = signatures
        .iter()
        .filter_map(|s| {
            std::str::from_utf8(s)
                .ok()
                .and_then(supply::signature_key_id)
        })
        .collect();
    let trusted = supply::check_oci_signature(policy, &r.to_string(), &pulled.wasm, &signatures);
    if out.json {
        out.print_json(&json!({
            "reference": r.to_string(),
            "name": info.name,
            "version": info.version,
            "manifest": pulled.manifest_digest,
            "sha256": loaded.sha256,
            "capabilities": capabilities,
            "signature_keys": keys,
            "trusted": matches!(trusted, Ok(Some(_))),
            "cache": access.store,
        }));
        return Ok(exit::SUCCESS);
    }
    println!(
        "pulled {} {} from {r} into {}",
        info.name,
        info.version,
        access.store.display()
    );
    println!("  manifest {}", pulled.manifest_digest);
    match (keys.is_empty(), &trusted) {
        (true, _) => println!("  signature: none"),
        (false, Ok(Some(k))) => println!("  signature: key {k} (trusted by the policy)"),
        (false, _) => println!(
            "  signature: key {} (not trusted by the policy)",
            keys.join(", ")
        ),
    }
    println!("review it (mend step inspect {r}), then pin it in a runbook's step:");
    println!("{}", pin_lines(&r, &loaded.sha256, &capabilities));
    Ok(exit::SUCCESS)
}

/// `mend step inspect oci://…`: what a reviewer looks at before pinning:
/// today's inspect of the bytes, plus where they came from (the manifest
/// digest, the annotations, for people only) and who signed them.
pub async fn inspect(
    sandbox: &Sandbox,
    out: &Out,
    trust: &supply::Trust,
    what: &str,
    verbose: bool,
) -> Result<i32, Failure> {
    let r = parse_ref(what)?;
    let access = &trust.oci;
    let (pulled, signatures) = access.pull(&r, None).map_err(|e| oci_failure(what, e))?;
    let keys: Vec<String> = signatures
        .iter()
        .filter_map(|s| {
            std::str::from_utf8(s)
                .ok()
                .and_then(supply::signature_key_id)
        })
        .collect();
    let trusted = supply::check_oci_signature(&trust.policy, what, &pulled.wasm, &signatures);
    let annotations = &pulled.manifest.annotations;
    if !out.json {
        println!("{r}");
        println!("  manifest {}", pulled.manifest_digest);
        for (k, v) in annotations {
            println!("  {k}: {v}");
        }
        match (keys.is_empty(), &trusted) {
            (true, _) => println!("  signature: none"),
            (false, Ok(Some(k))) => println!("  signature: key {k} (trusted by the policy)"),
            (false, _) => println!(
                "  signature: key {} (not trusted by the policy)",
                keys.join(", ")
            ),
        }
        println!(
            "  (annotations are what the publisher says; what follows is read from the bytes)\n"
        );
    }
    // The bytes, inspected as a file is: kept in the cache under their digest.
    let kept = kept_path(access, &pulled.manifest.layers[0].digest);
    if out.json {
        // One JSON document: the file inspect's fields are left to `step
        // inspect FILE` of the kept blob.
        out.print_json(&json!({
            "reference": r.to_string(),
            "manifest": pulled.manifest_digest,
            "annotations": annotations,
            "signature_keys": keys,
            "trusted": matches!(trusted, Ok(Some(_))),
            "component": kept,
        }));
        return Ok(exit::SUCCESS);
    }
    super::step::inspect_file(
        sandbox,
        out,
        &kept.display().to_string(),
        &r.to_string(),
        verbose,
    )
    .await
}

fn kept_path(access: &Access, digest: &str) -> std::path::PathBuf {
    access
        .store
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}
