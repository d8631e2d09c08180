//! Supply chain: what a `.wasm` step must satisfy before any of its code
//! runs, beyond its sha256 pin.
//!
//! - **Signatures.** The operator's policy file (not the runbook: whoever
//!   writes a runbook must not be the one who decides whom to trust) may
//!   require every component file to carry a minisign signature,
//!   `FILE.minisig` beside it, by one of its trusted keys. Bundled `std:`
//!   steps ship inside the mend binary and are exempt.
//! - **Capabilities.** A component can only call what it imports, so its
//!   import list is a truthful declaration of what it can ask the host for.
//!   The runbook approves a list (`capabilities = [...]` beside `sha256`); a
//!   component that imports more is refused with the difference, unless the
//!   operator approves it for one invocation (`--approve-capabilities STEP`,
//!   or y at a terminal's prompt).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_spanned::Spanned;
use toml::de::{DeTable, DeValue};

use mend_runbook::{Diagnostic, Span};

/// Where the policy is read from unless `--policy` or `MEND_POLICY` says.
pub const DEFAULT_POLICY: &str = "/etc/mend/policy.toml";

/// The operator's supply-chain policy.
#[derive(Debug, Default)]
pub struct Policy {
    /// The file it was read from; `None`: no policy file, the defaults.
    pub file: Option<PathBuf>,
    /// Every component file needs a signature by a trusted key.
    pub require_signatures: bool,
    pub trusted_keys: Vec<TrustedKey>,
    /// `[history]`: how long runs stay in the journal (`mend prune`, and
    /// after each committed run).
    pub history: mend_journal::Retention,
}

/// A minisign public key the policy trusts.
#[derive(Debug)]
pub struct TrustedKey {
    /// The key id as minisign prints it (16 upper-case hex digits).
    pub id: String,
    key: minisign_verify::PublicKey,
}

impl Policy {
    /// Read the policy: `explicit` (from `--policy`/`MEND_POLICY`) must
    /// exist; the default file may be absent, which means the defaults (no
    /// signature required).
    pub fn load(explicit: Option<&Path>) -> Result<Policy, Vec<Diagnostic>> {
        let file = explicit.unwrap_or(Path::new(DEFAULT_POLICY));
        let name = file.display().to_string();
        let source = match std::fs::read(file) {
            Ok(bytes) => String::from_utf8(bytes).map_err(|_| {
                vec![Diagnostic::plain(
                    &name,
                    format!("the policy {name} is not valid UTF-8"),
                    Some("save it as UTF-8".into()),
                )]
            })?,
            Err(e) if explicit.is_none() && e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Policy::default());
            }
            Err(e) => {
                return Err(vec![Diagnostic::plain(
                    &name,
                    format!("cannot read the policy {name}: {e}"),
                    Some(format!(
                        "fix --policy or MEND_POLICY, or leave both unset to use {DEFAULT_POLICY}"
                    )),
                )]);
            }
        };
        Policy::parse(file, &source)
    }

    /// The policy in `source`, the text of `file`.
    pub fn parse(file: &Path, source: &str) -> Result<Policy, Vec<Diagnostic>> {
        let name = file.display().to_string();
        let root = DeTable::parse(source).map_err(|e| {
            let message = format!("invalid TOML in the policy: {}", e.message().trim());
            vec![match e.span() {
                Some(r) => Diagnostic::at(&name, source, r.into(), message, None),
                None => Diagnostic::plain(&name, message, None),
            }]
        })?;
        let mut errors = Vec::new();
        let mut policy = Policy {
            file: Some(file.to_path_buf()),
            ..Policy::default()
        };
        let mut keys_span = None;
        let at = |span: Span, message: String, hint: &str| {
            Diagnostic::at(&name, source, span, message, Some(hint.to_string()))
        };
        for (k, v) in root.get_ref().iter() {
            let span: Span = v.span().into();
            match k.get_ref().as_ref() {
                "require_signatures" => match v.get_ref() {
                    DeValue::Boolean(b) => policy.require_signatures = *b,
                    _ => errors.push(at(
                        span,
                        "`require_signatures` must be true or false".into(),
                        "write require_signatures = true",
                    )),
                },
                "trusted_keys" => {
                    keys_span = Some(span);
                    match trusted_keys(v) {
                        Ok(keys) => policy.trusted_keys = keys,
                        Err((span, message)) => errors.push(at(
                            span,
                            message,
                            "give each key as the second line of its minisign .pub file, a string starting with RW",
                        )),
                    }
                }
                "history" => match history(v) {
                    Ok(keep) => policy.history = keep,
                    Err((span, message, hint)) => errors.push(at(span, message, hint)),
                },
                other => {
                    let span: Span = k.span().into();
                    errors.push(at(
                        span,
                        format!("unknown key `{other}` in the policy"),
                        "valid keys: `require_signatures`, `trusted_keys`, `[history]`",
                    ));
                }
            }
        }
        if errors.is_empty() && policy.require_signatures && policy.trusted_keys.is_empty() {
            let message = "the policy requires signatures but trusts no key".to_string();
            let hint = "add trusted_keys = [\"RW...\"], the second line of each signer's minisign .pub file";
            errors.push(match keys_span {
                Some(span) => at(span, message, hint),
                None => Diagnostic::plain(&name, message, Some(hint.into())),
            });
        }
        if errors.is_empty() {
            Ok(policy)
        } else {
            errors.sort_by_key(|d| (d.line, d.column));
            Err(errors)
        }
    }

    fn trusted_ids(&self) -> String {
        let ids: Vec<&str> = self.trusted_keys.iter().map(|k| k.id.as_str()).collect();
        ids.join(", ")
    }

    fn name(&self) -> String {
        self.file
            .as_ref()
            .map_or_else(|| DEFAULT_POLICY.to_string(), |f| f.display().to_string())
    }
}

/// `[history] keep_days = 90, keep_runs = 100` (0: no limit).
fn history(
    v: &Spanned<DeValue<'_>>,
) -> Result<mend_journal::Retention, (Span, String, &'static str)> {
    const HINT: &str = "write [history] with keep_days = 90 and keep_runs = 100 (0: no limit)";
    let DeValue::Table(t) = v.get_ref() else {
        return Err((v.span().into(), "`history` must be a table".into(), HINT));
    };
    let mut keep = mend_journal::Retention::default();
    for (k, v) in t.iter() {
        let slot = match k.get_ref().as_ref() {
            "keep_days" => &mut keep.keep_days,
            "keep_runs" => &mut keep.keep_runs,
            other => {
                return Err((
                    k.span().into(),
                    format!("unknown key `{other}` in [history]"),
                    HINT,
                ));
            }
        };
        match v.get_ref() {
            DeValue::Integer(i) => match u32::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => *slot = n,
                Err(_) => {
                    return Err((
                        v.span().into(),
                        format!("`{}` must be a whole number from 0", k.get_ref()),
                        HINT,
                    ));
                }
            },
            _ => {
                return Err((
                    v.span().into(),
                    format!("`{}` must be a whole number from 0", k.get_ref()),
                    HINT,
                ));
            }
        }
    }
    Ok(keep)
}

fn trusted_keys(v: &Spanned<DeValue<'_>>) -> Result<Vec<TrustedKey>, (Span, String)> {
    let DeValue::Array(items) = v.get_ref() else {
        return Err((
            v.span().into(),
            "`trusted_keys` must be an array of minisign public keys".into(),
        ));
    };
    let mut out: Vec<TrustedKey> = Vec::new();
    for item in items.iter() {
        let span: Span = item.span().into();
        let DeValue::String(s) = item.get_ref() else {
            return Err((span, "each trusted key must be a string".into()));
        };
        let s = s.trim();
        let key = minisign_verify::PublicKey::from_base64(s)
            .map_err(|e| (span, format!("not a minisign public key: {e}")))?;
        let id = key_id(s).ok_or((span, "not a minisign public key".to_string()))?;
        if !out.iter().any(|k| k.id == id) {
            out.push(TrustedKey { id, key });
        }
    }
    Ok(out)
}

/// The key id in a minisign public key or signature line (base64 of: two
/// bytes of algorithm, eight of key id, ...), as minisign prints it: the
/// little-endian number in upper-case hex.
fn key_id(b64: &str) -> Option<String> {
    let bin = base64_decode(b64)?;
    let id: [u8; 8] = bin.get(2..10)?.try_into().ok()?;
    Some(format!("{:016X}", u64::from_le_bytes(id)))
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let s = s.trim().trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c)? << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        match chunk.len() {
            4 => out.extend_from_slice(&bytes[1..4]),
            3 => out.extend_from_slice(&bytes[1..3]),
            2 => out.push(bytes[1]),
            _ => return None,
        }
    }
    Some(out)
}

/// Where a component file's signature lives: `FILE.minisig`, as `minisign
/// -Sm FILE` writes it.
pub fn signature_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_os_string();
    name.push(".minisig");
    PathBuf::from(name)
}

/// Why a component file fails the signature policy: a message and what to do.
#[derive(Debug, PartialEq)]
pub struct Refusal {
    pub message: String,
    pub hint: String,
}

/// Check `bytes`, read from `file`, against the policy's signature rule.
pub fn check_signature(policy: &Policy, file: &Path, bytes: &[u8]) -> Result<(), Refusal> {
    if !policy.require_signatures {
        return Ok(());
    }
    let sig_file = signature_path(file);
    let (f, s, p) = (file.display(), sig_file.display(), policy.name());
    let trusted = policy.trusted_ids();
    let text = match std::fs::read_to_string(&sig_file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Refusal {
                message: format!(
                    "no signature: the policy {p} requires one (require_signatures = true), and {s} does not exist"
                ),
                hint: format!(
                    "have the step signed by a trusted key (key id {trusted}): `minisign -Sm {f}` writes {s}; or ask its author for the .minisig"
                ),
            });
        }
        Err(e) => {
            return Err(Refusal {
                message: format!("cannot read the signature {s}: {e}"),
                hint: "check the file's permissions".into(),
            });
        }
    };
    let signature = minisign_verify::Signature::decode(&text).map_err(|e| Refusal {
        message: format!("{s} is not a minisign signature: {e}"),
        hint: format!("sign the file again: `minisign -Sm {f}`"),
    })?;
    let sig_id = text.lines().nth(1).and_then(key_id).unwrap_or_default();
    let Some(key) = policy.trusted_keys.iter().find(|k| k.id == sig_id) else {
        return Err(Refusal {
            message: format!(
                "{s} is signed by key {sig_id}, which the policy {p} does not trust (trusted: {trusted})"
            ),
            hint: format!(
                "have it signed by a trusted key; or, if key {sig_id} is one you trust, add its public key (the second line of its .pub file) to trusted_keys in {p}"
            ),
        });
    };
    match key.key.verify(bytes, &signature, false) {
        Ok(()) => Ok(()),
        Err(minisign_verify::Error::UnexpectedAlgorithm) => Err(Refusal {
            message: format!(
                "{s} (key {sig_id}) is a legacy signature of the whole file; mend accepts only pre-hashed ones"
            ),
            hint: format!(
                "sign it again with a current minisign (pre-hashed is its default): `minisign -Sm {f}`"
            ),
        }),
        Err(e) => Err(Refusal {
            message: format!(
                "{s} (key {sig_id}) does not verify against {f}: {e}; the file or its signature changed after signing"
            ),
            hint: format!(
                "do not run it: fetch {f} and its signature again from where they were published, or review it and have it signed again by key {sig_id}"
            ),
        }),
    }
}

/// Check the component `bytes` of an `oci://` step against the policy's
/// signature rule, with the signatures its registry holds for it (kept in
/// the cache beside it). One by a trusted key that verifies is enough.
/// `Ok(Some(key id))` names the key that signed it.
pub fn check_oci_signature(
    policy: &Policy,
    reference: &str,
    bytes: &[u8],
    signatures: &[Vec<u8>],
) -> Result<Option<String>, Refusal> {
    let (p, trusted) = (policy.name(), policy.trusted_ids());
    let mut found: Vec<String> = Vec::new();
    for sig in signatures {
        let Ok(text) = std::str::from_utf8(sig) else {
            continue;
        };
        let Ok(signature) = minisign_verify::Signature::decode(text) else {
            continue;
        };
        let id = text.lines().nth(1).and_then(key_id).unwrap_or_default();
        match policy.trusted_keys.iter().find(|k| k.id == id) {
            Some(key) if key.key.verify(bytes, &signature, false).is_ok() => return Ok(Some(id)),
            Some(_) => found.push(format!("{id} (does not verify)")),
            None => found.push(id),
        }
    }
    if !policy.require_signatures {
        return Ok(None);
    }
    if found.is_empty() {
        return Err(Refusal {
            message: format!(
                "no signature: the policy {p} requires one, and {reference} has none (no referrer of type {})",
                mend_oci::artifact::MINISIG
            ),
            hint: format!(
                "ask its publisher to sign it with a key the policy trusts (key id {trusted}) and push the signature: `mend step push FILE.wasm {reference}` with FILE.wasm.minisig beside it"
            ),
        });
    }
    let keys = found.join(", ");
    Err(Refusal {
        message: format!(
            "{reference} is signed by key {keys}, which the policy {p} does not trust (trusted: {trusted})"
        ),
        hint: format!(
            "do not run it unless you trust that key: then add its public key to trusted_keys in {p}; or have it signed by a trusted key"
        ),
    })
}

/// The key id in a `.minisig` text (its second line), as minisign prints it.
pub fn signature_key_id(minisig: &str) -> Option<String> {
    minisig.lines().nth(1).and_then(key_id)
}

/// What a component can ask the host for: its imports without versions,
/// less the plumbing that reaches nothing outside the sandbox by itself
/// (types, streams, exit, the standard streams the host leaves empty).
pub fn capabilities(imports: &[String]) -> Vec<String> {
    let mut out: Vec<String> = imports
        .iter()
        .map(|i| i.split('@').next().unwrap_or(i).to_string())
        .filter(|i| !PLUMBING.contains(&i.as_str()))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Imports that grant nothing by themselves.
const PLUMBING: &[&str] = &[
    "mend:runbook/types",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
];

/// What a capability lets a step do, in one line.
pub fn what(capability: &str) -> &'static str {
    match capability {
        "mend:runbook/probe" => "runs allowed commands, fetches allowed URLs",
        "mend:runbook/files" => "walks, hashes and measures files in its grants",
        "mend:runbook/log" => "writes lines to mend's log",
        "mend:runbook/progress" => "reports progress",
        "mend:runbook/clock" => "reads mend's clock",
        "wasi:filesystem/types" | "wasi:filesystem/preopens" => {
            "reads its grants' directories (read-only)"
        }
        "wasi:clocks/wall-clock" | "wasi:clocks/monotonic-clock" => "reads the real clock",
        "wasi:random/random" | "wasi:random/insecure" | "wasi:random/insecure-seed" => {
            "draws random numbers"
        }
        "wasi:cli/environment" => "reads environment variables and arguments (mend gives none)",
        c if c.starts_with("wasi:sockets/") => "opens network connections (mend allows none)",
        c if c.starts_with("wasi:http/") => "makes HTTP requests (mend does not provide it)",
        _ => "an interface mend does not describe: read the step's source",
    }
}

/// The runbook line that approves `caps`.
pub fn line(caps: &[String]) -> String {
    let quoted: Vec<String> = caps.iter().map(|c| format!("{c:?}")).collect();
    format!("capabilities = [{}]", quoted.join(", "))
}

/// How an invocation decides about capabilities the runbook does not approve.
#[derive(Clone, Default)]
pub struct Trust {
    pub policy: Arc<Policy>,
    /// Step ids approved on the command line (`--approve-capabilities`).
    pub approved: Vec<String>,
    /// Asks the operator (a terminal's y/N): step id and the difference.
    pub ask: Option<Asker>,
    /// Tells the operator about an approval for this invocation only.
    pub tell: Option<Teller>,
    /// Rolling back a journaled run: the components are the ones the run
    /// started with (checked against the journal), and undoing must stay
    /// possible whatever the policy says now.
    pub undo: bool,
    /// Where `oci://` steps are cached and how their registries are reached.
    pub oci: super::oci::Access,
}

/// A prompt: (step id, what it would gain) -> approved?
pub type Asker = Arc<dyn Fn(&str, &str) -> bool + Send + Sync>;

/// Where notes for the operator go.
pub type Teller = Arc<dyn Fn(&str) + Send + Sync>;

impl Trust {
    /// For a rollback: signatures and capabilities are not checked again.
    pub fn for_undo(&self) -> Trust {
        Trust {
            undo: true,
            ..self.clone()
        }
    }
}

/// The difference between what the runbook approves and what the component
/// imports: `+` lines for what it gained (refused unless approved), `-` for
/// what it no longer imports.
pub fn diff(approved: &[String], actual: &[String]) -> (Vec<String>, Vec<String>) {
    let gained = actual
        .iter()
        .filter(|c| !approved.contains(c))
        .cloned()
        .collect();
    let dropped = approved
        .iter()
        .filter(|c| !actual.contains(c))
        .cloned()
        .collect();
    (gained, dropped)
}

/// Decide about a component file's capabilities: approved by the runbook,
/// by `--approve-capabilities`, at the prompt, or refused with the
/// difference and the line that approves it.
pub fn approve(
    trust: &Trust,
    step: &mend_runbook::Step,
    runbook: &mend_runbook::Runbook,
    label: &str,
    actual: &[String],
) -> Result<(), Box<Diagnostic>> {
    let Some((_, capabilities)) = step.uses.pin() else {
        return Ok(());
    };
    if trust.undo {
        return Ok(());
    }
    let approved = capabilities.unwrap_or(&[]);
    let (gained, dropped) = diff(approved, actual);
    if gained.is_empty() {
        return Ok(());
    }
    let mut lines: Vec<String> = gained
        .iter()
        .map(|c| format!("+ {c}: {}", what(c)))
        .collect();
    lines.extend(dropped.iter().map(|c| format!("- {c}: no longer imported")));
    let new_line = line(actual);
    let id = &step.id;
    let by_flag = trust.approved.iter().any(|s| s == id);
    let asked = !by_flag && trust.ask.is_some();
    let by_prompt = asked
        && trust.ask.as_ref().is_some_and(|ask| {
            ask(
                id,
                &format!(
                    "{label} can do more than the runbook approves:\n{}",
                    indent(&lines, "  ")
                ),
            )
        });
    if by_flag || by_prompt {
        if let Some(tell) = &trust.tell {
            tell(&format!(
                "note: {label}: approved for this invocation only:\n{}\n  to approve it for good, put this line in the step: {new_line}",
                indent(&lines, "  ")
            ));
        }
        return Ok(());
    }
    let (message, span) = match capabilities {
        Some(_) => (
            format!("{label} imports more than its `capabilities` approve"),
            step.capabilities_span.unwrap_or(step.uses_span),
        ),
        None => (
            format!(
                "{label} has no `capabilities`: nothing it imports is approved yet (a pin made before mend approved capabilities?)"
            ),
            step.uses_span,
        ),
    };
    let verb = if capabilities.is_some() {
        "replace the step's `capabilities` line with"
    } else {
        "add this line to the step, after its sha256"
    };
    let refused = if asked { "refused at the prompt; " } else { "" };
    let hint = format!(
        "{refused}review what it would be able to do:\n{}\n    then, to approve it, {verb}:\n      {new_line}\n    or approve it for this invocation only: --approve-capabilities {id}",
        indent(&lines, "      ")
    );
    Err(Box::new(runbook.diagnostic(span, message, Some(hint))))
}

fn indent(lines: &[String], by: &str) -> String {
    lines
        .iter()
        .map(|l| format!("{by}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn capabilities_drop_versions_and_plumbing() {
        let imports = s(&[
            "mend:runbook/files@0.1.0",
            "mend:runbook/types@0.1.0",
            "wasi:io/streams@0.2.6",
            "wasi:filesystem/types@0.2.6",
            "wasi:filesystem/types@0.2.3",
            "wasi:sockets/tcp@0.2.6",
        ]);
        assert_eq!(
            capabilities(&imports),
            s(&[
                "mend:runbook/files",
                "wasi:filesystem/types",
                "wasi:sockets/tcp"
            ])
        );
    }

    #[test]
    fn diff_names_what_was_gained_and_dropped() {
        let (gained, dropped) = diff(
            &s(&["mend:runbook/files", "mend:runbook/log"]),
            &s(&["mend:runbook/files", "mend:runbook/probe"]),
        );
        assert_eq!(gained, s(&["mend:runbook/probe"]));
        assert_eq!(dropped, s(&["mend:runbook/log"]));
        assert_eq!(
            line(&s(&["mend:runbook/files", "wasi:cli/environment"])),
            r#"capabilities = ["mend:runbook/files", "wasi:cli/environment"]"#
        );
    }

    #[test]
    fn key_ids_read_as_minisign_prints_them() {
        // minisign's own test key: "minisign public key E7620F1842B4E81F".
        assert_eq!(
            key_id("RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3").as_deref(),
            Some("E7620F1842B4E81F")
        );
        assert_eq!(base64_decode("TWFu").unwrap(), b"Man");
        assert_eq!(base64_decode("TWE=").unwrap(), b"Ma");
        assert_eq!(base64_decode("TQ==").unwrap(), b"M");
        assert!(base64_decode("T").is_none());
        assert!(base64_decode("T*==").is_none());
    }

    #[test]
    fn a_policy_is_checked_like_a_runbook() {
        let f = Path::new("policy.toml");
        let p = Policy::parse(
            f,
            "require_signatures = true\ntrusted_keys = [\"RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3\"]\n",
        )
        .unwrap();
        assert!(p.require_signatures);
        assert_eq!(p.trusted_keys[0].id, "E7620F1842B4E81F");

        let e = Policy::parse(f, "require_signatures = true\n").unwrap_err();
        assert_eq!(
            e[0].message,
            "the policy requires signatures but trusts no key"
        );
        let e = Policy::parse(f, "require_signature = true\ntrusted_keys = [\"RWnope\"]\n")
            .unwrap_err();
        assert_eq!(e.len(), 2);
        assert_eq!((e[0].line, e[0].column), (1, 1));
        assert!(e[0].message.contains("unknown key `require_signature`"));
        assert_eq!((e[1].line, e[1].column), (2, 17));
        assert!(e[1].message.starts_with("not a minisign public key"));
    }

    /// A runbook with one file step that approves `files`, and what the
    /// component imports: `files` and `probe`.
    fn grown() -> (mend_runbook::Runbook, Vec<String>) {
        let src = format!(
            "[runbook]\nname = \"r\"\nversion = \"1\"\nsummary = \"s\"\n\n[[steps]]\nid = \"x\"\nuses = \"x.wasm\"\nsha256 = \"{}\"\ncapabilities = [\"mend:runbook/files\"]\n",
            "a".repeat(64)
        );
        let rb = mend_runbook::Runbook::from_source(Path::new("r.toml"), src, &[], &[]).unwrap();
        (rb, s(&["mend:runbook/files", "mend:runbook/probe"]))
    }

    #[test]
    fn the_prompt_approves_or_refuses_and_the_flag_needs_no_prompt() {
        use std::sync::Mutex;
        let (rb, actual) = grown();
        let step = &rb.steps[0];
        let told: Arc<Mutex<Vec<String>>> = Default::default();
        let asked: Arc<Mutex<Vec<String>>> = Default::default();
        let trust = |answer: bool, approved: &[&str]| {
            let (told, asked) = (told.clone(), asked.clone());
            Trust {
                approved: s(approved),
                ask: Some(Arc::new(move |id: &str, what: &str| {
                    asked.lock().unwrap().push(format!("{id}: {what}"));
                    answer
                })),
                tell: Some(Arc::new(move |t: &str| told.lock().unwrap().push(t.into()))),
                ..Trust::default()
            }
        };
        // y at the prompt: approved for this invocation, and told so.
        approve(&trust(true, &[]), step, &rb, "step `x`", &actual).unwrap();
        assert_eq!(
            asked.lock().unwrap().pop().unwrap(),
            "x: step `x` can do more than the runbook approves:\n  + mend:runbook/probe: runs allowed commands, fetches allowed URLs"
        );
        assert!(told.lock().unwrap().pop().unwrap().contains(
            "to approve it for good, put this line in the step: capabilities = [\"mend:runbook/files\", \"mend:runbook/probe\"]"
        ));
        // N (or nothing) at the prompt: refused, pointing at the line.
        let d = approve(&trust(false, &[]), step, &rb, "step `x`", &actual).unwrap_err();
        assert_eq!((d.line, d.column), (10, 16));
        assert!(d.hint.unwrap().starts_with("refused at the prompt; "));
        asked.lock().unwrap().clear();
        // --approve-capabilities: no question asked.
        approve(&trust(false, &["x"]), step, &rb, "step `x`", &actual).unwrap();
        assert!(asked.lock().unwrap().is_empty());
        // Nothing gained: nothing asked, nothing told.
        told.lock().unwrap().clear();
        approve(&trust(false, &[]), step, &rb, "step `x`", &actual[..1]).unwrap();
        assert!(asked.lock().unwrap().is_empty() && told.lock().unwrap().is_empty());
        // A rollback checks nothing.
        approve(
            &trust(false, &[]).for_undo(),
            step,
            &rb,
            "step `x`",
            &actual,
        )
        .unwrap();
    }

    #[test]
    fn no_policy_file_means_the_defaults_but_a_named_one_must_exist() {
        let missing = Path::new("/nonexistent/mend-policy.toml");
        let e = Policy::load(Some(missing)).unwrap_err();
        assert!(e[0].message.starts_with("cannot read the policy"));
        assert_eq!(
            signature_path(Path::new("steps/x.wasm")),
            PathBuf::from("steps/x.wasm.minisig")
        );
    }
}
