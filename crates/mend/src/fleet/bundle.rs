//! What travels with a fleet run: the runbook and every `.wasm` file its
//! steps use, each addressed by its sha256, and the parameters it declares
//! (a host's inventory params that the runbook does not declare stay home).
//! `--ship PARAM=FILE` adds files the run needs beside its steps (a renewed
//! certificate and key): they travel the same way, checked by sha256 on the
//! host, and land in `shipped/PARAM/` of the bundle, which PARAM then names.

use std::collections::BTreeSet;
use std::path::{Component, Path};

use crate::fleet::host::{Manifest, sha256_hex};
use crate::outcome::Failure;

/// A runbook ready to ship.
pub struct Bundle {
    pub manifest: Manifest,
    /// The manifest as shipped, and its sha256 (the bundle's name).
    pub manifest_bytes: Vec<u8>,
    pub sum: String,
    /// (sha256, content) of each file.
    pub blobs: Vec<(String, Vec<u8>)>,
    /// The parameters the runbook declares.
    pub params: BTreeSet<String>,
    pub runbook_sha256: String,
    /// The parameters `--ship` sets: each names `shipped/PARAM` in the bundle.
    pub shipped: Vec<String>,
}

/// Where `--ship PARAM=FILE` puts FILE in the bundle.
pub fn shipped_dir(param: &str) -> String {
    format!("shipped/{param}")
}

pub fn make(runbook: &Path, ships: &[(String, String)]) -> Result<Bundle, Failure> {
    let name = runbook.display().to_string();
    let bad = |m: String, hint: &str| Failure::input(&name, m, Some(hint.to_string()));
    let text = std::fs::read(runbook)
        .map_err(|e| bad(format!("cannot read runbook {name}: {e}"), "check the path"))?;
    let doc: toml::Table = std::str::from_utf8(&text)
        .ok()
        .and_then(|s| toml::from_str(s).ok())
        .ok_or_else(|| {
            bad(
                format!("{name} is not a valid runbook"),
                &format!("see `mend lint {name}`"),
            )
        })?;
    let file_name = runbook
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| "runbook.toml".into());
    let runbook_sha256 = sha256_hex(&text);
    let mut files = vec![(file_name.clone(), runbook_sha256.clone())];
    let mut blobs = vec![(runbook_sha256.clone(), text)];
    let dir = runbook.parent().unwrap_or(Path::new("."));
    let steps = doc.get("steps").and_then(|s| s.as_array());
    for step in steps.into_iter().flatten() {
        let Some(uses) = step.get("uses").and_then(|u| u.as_str()) else {
            continue;
        };
        if uses.starts_with("std:") {
            continue;
        }
        let rel = Path::new(uses);
        if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(bad(
                format!(
                    "step uses {uses:?}: a fleet run ships only files beside or below the runbook"
                ),
                "move the .wasm under the runbook's directory and name it by a relative path",
            ));
        }
        if files.iter().any(|(f, _)| f == uses) {
            continue;
        }
        let data = std::fs::read(dir.join(rel)).map_err(|e| {
            bad(
                format!(
                    "cannot read {} (uses of a step): {e}",
                    dir.join(rel).display()
                ),
                "build the step (mend step build) or fix the path",
            )
        })?;
        let sum = sha256_hex(&data);
        files.push((uses.to_string(), sum.clone()));
        blobs.push((sum, data));
    }
    let params: BTreeSet<String> = doc
        .get("params")
        .and_then(|p| p.as_table())
        .map(|t| t.keys().cloned().collect())
        .unwrap_or_default();
    let mut shipped = Vec::new();
    for (param, file) in ships {
        if !params.contains(param) {
            return Err(bad(
                format!("--ship {param}={file}: the runbook declares no parameter `{param}`"),
                "name one of the runbook's [params]: it is set to the directory the files land in",
            ));
        }
        let path = Path::new(file);
        let base = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .filter(|_| path.is_file())
            .ok_or_else(|| {
                bad(
                    format!("--ship {param}={file}: not a regular file"),
                    "ship files one by one (--ship PARAM=FILE, repeatable)",
                )
            })?;
        let data = std::fs::read(path).map_err(|e| {
            bad(
                format!("cannot read {file} (--ship {param}): {e}"),
                "check the path",
            )
        })?;
        let rel = format!("{}/{base}", shipped_dir(param));
        if files.iter().any(|(f, _)| *f == rel) {
            return Err(bad(
                format!("--ship {param}: two files named {base}"),
                "ship files with different names",
            ));
        }
        let sum = sha256_hex(&data);
        files.push((rel, sum.clone()));
        blobs.push((sum, data));
        if !shipped.contains(param) {
            shipped.push(param.clone());
        }
    }
    let manifest = Manifest {
        runbook: file_name,
        files,
    };
    let manifest_bytes = serde_json::to_vec(&manifest).expect("a manifest serializes");
    Ok(Bundle {
        sum: sha256_hex(&manifest_bytes),
        manifest,
        manifest_bytes,
        blobs,
        params,
        runbook_sha256,
        shipped,
    })
}
