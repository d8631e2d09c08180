//! A step's `uses`: a bundled step, or a component file pinned by its
//! sha256 and the capabilities it is approved to import.

use std::path::Path;

use super::Ctx;
use crate::hints::{list, suggest};
use crate::model::Uses;
use crate::shape::{Fields, Node};

/// `namespace:package/interface`, each part `[a-z][a-z0-9-]*`.
fn is_interface_name(s: &str) -> bool {
    let part = |p: &str| {
        p.starts_with(|c: char| c.is_ascii_lowercase())
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    match s
        .split_once(':')
        .and_then(|(ns, rest)| Some((ns, rest.split_once('/')?)))
    {
        Some((ns, (pkg, iface))) => part(ns) && part(pkg) && part(iface),
        None => false,
    }
}

impl Ctx<'_, '_> {
    /// `u` is the step's `uses`, `t` its table (for the pins).
    pub(super) fn uses(
        &mut self,
        u: &Node<'_, '_>,
        t: &Fields<'_, '_>,
        label: &str,
        bundled: &[&str],
        dir: &Path,
    ) -> Option<Uses> {
        let s = u.str();
        if let Some(name) = s.strip_prefix("std:") {
            let mut ok = true;
            if !bundled.contains(&name) {
                let mut hint = format!("bundled steps: {}", list(bundled.iter().copied()));
                if let Some(s) = suggest(name, bundled.iter().copied()) {
                    hint = format!("did you mean `std:{s}`? {hint}");
                }
                self.report.error(
                    u.span,
                    format!("step {label} uses `std:{name}`, which is not a bundled step"),
                    hint,
                );
                ok = false;
            }
            if let Some(sha) = t.written("sha256") {
                self.report.error(
                    sha,
                    format!(
                        "step {label} pins a `sha256`, but bundled `std:` steps are not pinned"
                    ),
                    "remove the `sha256` line (the engine verifies its bundled steps)".to_string(),
                );
                ok = false;
            }
            if let Some(caps) = t.written("capabilities") {
                self.report.error(
                    caps,
                    format!(
                        "step {label} lists `capabilities`, but bundled `std:` steps ship inside mend and are not pinned"
                    ),
                    "remove the `capabilities` line".to_string(),
                );
                ok = false;
            }
            return ok.then(|| Uses::Std(name.to_string()));
        }
        if s.starts_with("oci://") {
            let reference = match crate::OciRef::parse(s) {
                Ok(r) => r,
                Err(e) => {
                    self.report.error(
                        u.span,
                        format!("step {label}: {e}"),
                        "write oci://REGISTRY/NAMESPACE/NAME:VERSION, as `mend step push` or `mend step pull` prints it".to_string(),
                    );
                    return None;
                }
            };
            if t.written("sha256").is_none() {
                self.report.error(
                    u.span,
                    format!("step {label} uses an oci:// step but has no `sha256` pin"),
                    format!(
                        "`mend step pull {s}` prints the lines that pin it, after you review it"
                    ),
                );
                return None;
            }
            let digest = t.get("sha256")?.str();
            let capabilities = match t.written("capabilities") {
                None => None,
                Some(_) => Some(self.capabilities(t.get("capabilities")?, label)?),
            };
            return Some(Uses::Oci {
                reference,
                sha256: digest.to_string(),
                capabilities,
            });
        }
        if !s.ends_with(".wasm") {
            let hint = if bundled.contains(&s) {
                format!("did you mean `std:{s}`?")
            } else {
                format!(
                    "write `std:NAME` for a bundled step ({}) or a path ending in .wasm",
                    list(bundled.iter().copied())
                )
            };
            self.report.error(
                u.span,
                format!("`uses` must be \"std:NAME\", a path to a .wasm file or an oci:// reference, found {s:?}"),
                hint,
            );
            return None;
        }
        let path = dir.join(s);
        if t.written("sha256").is_none() {
            self.report.error(
                u.span,
                format!("step {label} uses a component file but has no `sha256` pin"),
                format!(
                    "add sha256 = \"<64 lowercase hex digits>\" next to `uses` (e.g. from `sha256sum {}`)",
                    path.display()
                ),
            );
            return None;
        }
        // A pin that is no sha256 was reported by the shape pass.
        let digest = t.get("sha256")?.str();
        let capabilities = match t.written("capabilities") {
            None => None,
            Some(_) => Some(self.capabilities(t.get("capabilities")?, label)?),
        };
        Some(Uses::File {
            path,
            sha256: digest.to_string(),
            capabilities,
        })
    }

    /// A file step's `capabilities`: interface names without versions, each once.
    fn capabilities(&mut self, names: &Node<'_, '_>, label: &str) -> Option<Vec<String>> {
        let mut ok = true;
        let mut out: Vec<String> = Vec::new();
        for &(name, span) in names.strings() {
            if let Some((bare, _)) = name.split_once('@') {
                self.report.error(
                    span,
                    format!("step {label}: capability {name:?} carries a version"),
                    format!("write the interface without its version: \"{bare}\""),
                );
                ok = false;
            } else if !is_interface_name(name) {
                self.report.error(
                    span,
                    format!("step {label}: {name:?} is not an interface name"),
                    "write NAMESPACE:PACKAGE/INTERFACE, e.g. \"mend:runbook/files\", as `mend step build` or `mend step inspect FILE` prints them".to_string(),
                );
                ok = false;
            } else if out.iter().any(|o| o == name) {
                self.report.error(
                    span,
                    format!("step {label} lists capability `{name}` twice"),
                    "remove the duplicate".to_string(),
                );
                ok = false;
            } else {
                out.push(name.to_string());
            }
        }
        ok.then_some(out)
    }
}
