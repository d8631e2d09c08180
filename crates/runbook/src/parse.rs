//! From TOML text to the typed model: every key, type and cross-reference is
//! checked here, collecting as many independent errors as possible.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_spanned::Spanned;
use toml::de::{DeInteger, DeTable, DeValue};

use super::diagnostic::{Diagnostic, Span};
use super::format;
use super::interpolate::{InterpolateError, interpolate, interpolate_with};
use super::model::{
    Access, Command, DEFAULT_MEMORY, DEFAULT_TIMEOUT, Grant, OnFailure, Retry, StandIn, Step, Uses,
};
use super::units::{parse_duration, parse_size};

pub(crate) type Key<'i> = Spanned<Cow<'i, str>>;

/// In a stand-in's `args`: the original call's arguments.
pub const ARGS: &str = "${args}";
pub(crate) type Val<'i> = Spanned<DeValue<'i>>;

/// What the loader hands to the parser.
pub(crate) struct Input<'a> {
    pub file: &'a Path,
    pub source: &'a str,
    pub sets: &'a [(String, String)],
    pub bundled: &'a [&'a str],
    /// Relative grant paths are resolved against this (the process's
    /// current directory); `None` leaves them relative.
    pub cwd: Option<&'a Path>,
    /// `mend lint`: what this machine lacks (a command's user) is a warning.
    pub lenient: bool,
}

/// Everything in a runbook except the file bookkeeping.
pub(crate) struct Parsed {
    pub name: String,
    pub version: String,
    pub summary: String,
    pub on_failure: OnFailure,
    pub params: BTreeMap<String, String>,
    pub grants: BTreeMap<String, Grant>,
    pub commands: BTreeMap<String, Command>,
    pub steps: Vec<Step>,
    pub rehearsal_commands: BTreeMap<String, StandIn>,
    /// What this machine lacks, when `lenient`.
    pub warnings: Vec<Diagnostic>,
    pub rehearsal_budget: Option<std::time::Duration>,
}

pub(crate) fn parse(input: &Input<'_>) -> Result<Parsed, Vec<Diagnostic>> {
    let file = input.file.display().to_string();
    let root = match DeTable::parse(input.source) {
        Ok(root) => root.into_inner(),
        Err(e) => return Err(vec![toml_error(&file, input.source, &e)]),
    };
    let mut cx = Ctx {
        file,
        source: input.source,
        errors: Vec::new(),
        params: BTreeMap::new(),
        param_types: BTreeMap::new(),
        warnings: Vec::new(),
    };
    cx.check_keys(&root, &format::TOP.names(), "at the top level");

    let header = cx.runbook_table(&root);
    let params = cx.params(&root, input.sets);
    let grants = cx.grants(&root, input.cwd);
    cx.overlapping_grants(&grants);
    let commands = cx.commands(&root, input.lenient);
    let steps = cx.steps(&root, input, &grants, &commands);
    let (rehearsal_commands, rehearsal_budget) = cx.rehearsal(&root, &commands);

    let mut errors = cx.errors;
    let warnings = cx.warnings;
    match header {
        Some((name, version, summary, on_failure)) if errors.is_empty() => Ok(Parsed {
            name,
            version,
            summary,
            on_failure,
            params,
            grants: grants
                .into_iter()
                .filter_map(|(k, g)| Some((k, g?)))
                .collect(),
            commands: commands
                .into_iter()
                .filter_map(|(k, c)| Some((k, c?)))
                .collect(),
            steps,
            rehearsal_commands,
            warnings,
            rehearsal_budget,
        }),
        _ => {
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

pub(crate) fn sp<T>(s: &Spanned<T>) -> Span {
    s.span().into()
}

/// Entries of a table in source order (the map itself is sorted by key).
pub(crate) fn entries<'t, 'i>(t: &'t DeTable<'i>) -> Vec<(&'t Key<'i>, &'t Val<'i>)> {
    let mut v: Vec<_> = t.iter().collect();
    v.sort_by_key(|(k, _)| k.span().start);
    v
}

/// "`a`, `b`, `c`", or "(none)".
pub(crate) fn list<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let v: Vec<String> = names.into_iter().map(|n| format!("`{n}`")).collect();
    if v.is_empty() {
        "(none)".to_string()
    } else {
        v.join(", ")
    }
}

pub(crate) fn describe(v: &DeValue<'_>) -> String {
    match v {
        DeValue::String(s) => {
            let shown: String = s.chars().take(40).collect();
            if shown.len() < s.len() {
                format!("string {:?}…", shown)
            } else {
                format!("string {:?}", shown)
            }
        }
        DeValue::Integer(i) => format!("integer {i}"),
        DeValue::Float(f) => format!("float {f}"),
        DeValue::Boolean(b) => format!("boolean {b}"),
        DeValue::Datetime(d) => format!("datetime {d}"),
        DeValue::Array(_) => "an array".to_string(),
        DeValue::Table(_) => "a table".to_string(),
    }
}

pub(crate) fn int(i: &DeInteger<'_>) -> Option<i64> {
    i64::from_str_radix(i.as_str(), i.radix()).ok()
}

/// `[a-z0-9][a-z0-9-_]*`
pub(crate) fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// Param names must be usable in `${NAME}` and `--set NAME=VALUE`.
pub(crate) fn is_param_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

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

/// What pins a component file in its step table.
struct Pins<'t, 'i> {
    sha256: Option<&'t Val<'i>>,
    capabilities: Option<&'t Val<'i>>,
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The path with symlinks resolved when it exists (two names for one
/// directory overlap too), else with `.` and `..` taken as written.
fn real_path(p: &Path) -> PathBuf {
    if let Ok(real) = std::fs::canonicalize(p) {
        return real;
    }
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest candidate, if it is close enough to be a likely typo.
pub(crate) fn suggest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = ((word.chars().count() + 1) / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

struct Ctx<'a> {
    file: String,
    source: &'a str,
    errors: Vec<Diagnostic>,
    /// Declared params and their values (`None`: required, not given).
    params: BTreeMap<String, Option<String>>,
    /// The TOML type of each param's default, when it is not a string: a
    /// value that is exactly `${name}` keeps that type in `with`.
    param_types: BTreeMap<String, &'static str>,
    /// Problems of this machine reported as warnings (`Input::lenient`).
    warnings: Vec<Diagnostic>,
}

impl Ctx<'_> {
    fn error(&mut self, span: Span, message: impl Into<String>, hint: impl Into<Option<String>>) {
        let d = Diagnostic::at(&self.file, self.source, span, message, hint.into());
        self.errors.push(d);
    }

    fn plain(&mut self, message: impl Into<String>, hint: impl Into<Option<String>>) {
        let d = Diagnostic::plain(&self.file, message, hint.into());
        self.errors.push(d);
    }

    fn type_error(&mut self, label: &str, expected: &str, v: &Val<'_>) {
        self.subject_type_error(&format!("`{label}`"), expected, v);
    }

    /// Like `type_error`, with the subject already phrased.
    fn subject_type_error(&mut self, subject: &str, expected: &str, v: &Val<'_>) {
        let mut hint = format!("change it to {expected}");
        if let DeValue::String(found) = v.get_ref() {
            // For a choice between quoted words, suggest the nearest one.
            let options: Vec<&str> = expected.split('"').skip(1).step_by(2).collect();
            if let Some(s) = suggest(found, options) {
                hint = format!("did you mean \"{s}\"?");
            }
        }
        self.error(
            sp(v),
            format!(
                "{subject} must be {expected}, found {}",
                describe(v.get_ref())
            ),
            hint,
        );
    }

    fn check_keys(&mut self, t: &DeTable<'_>, allowed: &[&str], place: &str) {
        self.check_keys_listing(t, allowed, allowed, place);
    }

    /// [`Self::check_keys`], naming only `listed` as the valid keys (a key
    /// that is refused on its own, such as `args`, is known but not listed).
    fn check_keys_listing(
        &mut self,
        t: &DeTable<'_>,
        known: &[&str],
        listed: &[&str],
        place: &str,
    ) {
        for (k, _) in entries(t) {
            if known.contains(&k.get_ref().as_ref()) {
                continue;
            }
            let allowed = listed;
            let mut hint = format!("valid keys {place}: {}", list(allowed.iter().copied()));
            if let Some(s) = suggest(k.get_ref(), allowed.iter().copied()) {
                hint = format!("did you mean `{s}`? {hint}");
            }
            self.error(
                sp(k),
                format!("unknown key `{}` {place}", k.get_ref()),
                hint,
            );
        }
    }

    fn table<'t, 'i>(&mut self, v: &'t Val<'i>, label: &str) -> Option<&'t DeTable<'i>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => {
                self.type_error(label, "a table", v);
                None
            }
        }
    }

    /// A required key: reports it missing (at `owner`) when absent.
    fn required<'t, 'i>(
        &mut self,
        t: &'t DeTable<'i>,
        owner: Span,
        key: &str,
        place: &str,
        hint: &str,
    ) -> Option<&'t Val<'i>> {
        let v = t.get(key);
        if v.is_none() {
            self.error(
                owner,
                format!("missing `{key}` {place}"),
                Some(hint.to_string()),
            );
        }
        v
    }

    fn string<'t>(&mut self, v: &'t Val<'_>, label: &str) -> Option<&'t str> {
        match v.get_ref() {
            DeValue::String(s) => Some(s),
            _ => {
                self.type_error(label, "a string", v);
                None
            }
        }
    }

    fn nonempty_string<'t>(&mut self, v: &'t Val<'_>, label: &str) -> Option<&'t str> {
        let s = self.string(v, label)?;
        if s.trim().is_empty() {
            self.error(sp(v), format!("`{label}` must not be empty"), None);
            return None;
        }
        Some(s)
    }

    fn boolean(&mut self, v: &Val<'_>, label: &str) -> Option<bool> {
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.type_error(label, "true or false", v);
                None
            }
        }
    }

    /// A string that must be one of `options`; returns its index.
    fn one_of(&mut self, v: &Val<'_>, label: &str, options: &[&str]) -> Option<usize> {
        let found = match v.get_ref() {
            DeValue::String(s) => options.iter().position(|o| o == s),
            _ => None,
        };
        if found.is_none() {
            let expected: Vec<String> = options.iter().map(|o| format!("{o:?}")).collect();
            let expected = match expected.split_last() {
                Some((last, init)) if !init.is_empty() => {
                    format!("{} or {last}", init.join(", "))
                }
                _ => expected.join(""),
            };
            self.type_error(label, &expected, v);
        }
        found
    }

    fn strings(&mut self, v: &Val<'_>, label: &str) -> Option<Vec<(String, Span)>> {
        let DeValue::Array(items) = v.get_ref() else {
            self.type_error(label, "an array of strings", v);
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for item in items.iter() {
            match item.get_ref() {
                DeValue::String(s) => out.push((s.to_string(), sp(item))),
                _ => {
                    self.subject_type_error(&format!("each entry of `{label}`"), "a string", item);
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    /// Patterns with `${param}` standing for the param's value, matched
    /// literally (a `*` in it is no wildcard); the ones that fail to
    /// interpolate are reported and left out.
    fn patterns(&mut self, v: &[(String, Span)], label: &str) -> Vec<String> {
        let mut out = Vec::new();
        for (s, span) in v {
            match interpolate_with(s, &self.params, super::model::glob_quote) {
                Ok(p) => out.push(p),
                Err(_) => {
                    self.interp(s, *span, label);
                }
            }
        }
        out
    }

    fn interp(&mut self, s: &str, span: Span, label: &str) -> Option<String> {
        match interpolate(s, &self.params) {
            Ok(v) => Some(v),
            Err(InterpolateError::Unknown(name)) => {
                let declared = if self.params.is_empty() {
                    "the runbook declares no params".to_string()
                } else {
                    format!(
                        "declared params: {}",
                        list(self.params.keys().map(|k| k.as_str()))
                    )
                };
                let mut hint = format!(
                    "{declared}; declare it under [params], or write `$$` for a literal `$`"
                );
                if let Some(s) = suggest(&name, self.params.keys().map(|k| k.as_str())) {
                    hint = format!("did you mean `${{{s}}}`? {hint}");
                }
                self.error(
                    span,
                    format!("`{label}` refers to `${{{name}}}`, which is not a declared param"),
                    hint,
                );
                None
            }
            Err(InterpolateError::Unterminated) => {
                self.error(
                    span,
                    format!("`{label}` has a `${{` without a closing `}}`"),
                    "close it: `${NAME}`, or write `$$` for a literal `$`".to_string(),
                );
                None
            }
        }
    }

    fn runbook_table(&mut self, root: &DeTable<'_>) -> Option<(String, String, String, OnFailure)> {
        let Some(v) = root.get("runbook") else {
            self.plain(
                "the runbook has no [runbook] table",
                "add one at the top: [runbook] with `name`, `version` and `summary`".to_string(),
            );
            return None;
        };
        let t = self.table(v, "runbook")?;
        let place = "in [runbook]";
        self.check_keys(t, &format::RUNBOOK.names(), place);
        let owner = sp(v);
        let name = self
            .required(t, owner, "name", place, "add name = \"my-runbook\"")
            .and_then(|v| {
                let s = self.string(v, "name")?;
                if !is_ident(s) {
                    self.error(
                        sp(v),
                        format!("runbook name {s:?} must match [a-z0-9][a-z0-9-_]*"),
                        "use lowercase letters, digits, `-` and `_`, starting with a letter or digit"
                            .to_string(),
                    );
                    return None;
                }
                Some(s.to_string())
            });
        let version = self
            .required(t, owner, "version", place, "add version = \"1.0.0\"")
            .and_then(|v| self.nonempty_string(v, "version").map(str::to_string));
        let summary = self
            .required(
                t,
                owner,
                "summary",
                place,
                "add summary = \"what this runbook does\"",
            )
            .and_then(|v| self.nonempty_string(v, "summary").map(str::to_string));
        let on_failure = match t.get("on_failure") {
            None => Some(OnFailure::Rollback),
            Some(v) => self
                .one_of(v, "on_failure", &["rollback", "stop"])
                .map(|i| [OnFailure::Rollback, OnFailure::Stop][i]),
        };
        Some((name?, version?, summary?, on_failure?))
    }

    /// A param's bare default (or `default = ...`) in its string form.
    fn param_value(&mut self, v: &Val<'_>, label: &str) -> Option<String> {
        match v.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            DeValue::Integer(i) => Some(int(i).map_or_else(|| i.to_string(), |n| n.to_string())),
            DeValue::Float(f) => Some(f.as_str().to_string()),
            DeValue::Boolean(b) => Some(b.to_string()),
            _ => {
                self.type_error(label, "a string, integer, float or boolean", v);
                None
            }
        }
    }

    /// Remember a param's non-string type (integer, float, boolean).
    fn note_type(&mut self, name: &str, v: &Val<'_>) {
        let kind = match v.get_ref() {
            DeValue::Integer(_) => "integer",
            DeValue::Float(_) => "float",
            DeValue::Boolean(_) => "boolean",
            _ => return,
        };
        self.param_types.insert(name.to_string(), kind);
    }

    /// A string that is exactly `${name}` of a typed param, as a typed value.
    fn typed_param(
        &mut self,
        s: &str,
        span: Span,
        label: &str,
    ) -> Option<Option<serde_json::Value>> {
        let Some(name) = s.strip_prefix("${").and_then(|r| r.strip_suffix('}')) else {
            return Some(None);
        };
        let (Some(kind), Some(Some(value))) =
            (self.param_types.get(name).copied(), self.params.get(name))
        else {
            return Some(None);
        };
        let parsed = match kind {
            "integer" => value.parse::<i64>().ok().map(serde_json::Value::from),
            "float" => value
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(serde_json::Value::Number),
            _ => value.parse::<bool>().ok().map(serde_json::Value::from),
        };
        match parsed {
            Some(v) => Some(Some(v)),
            None => {
                self.error(
                    span,
                    format!("`{label}` is `${{{name}}}`, whose default is of type {kind}, but its value is {value:?}"),
                    format!("pass --set {name}=<{kind}>"),
                );
                None
            }
        }
    }

    /// Declared params, their defaults, `--set` overrides; fills `self.params`
    /// and returns the final values.
    fn params(
        &mut self,
        root: &DeTable<'_>,
        sets: &[(String, String)],
    ) -> BTreeMap<String, String> {
        // (name, key span, required)
        let mut decls: Vec<(String, Span, bool)> = Vec::new();
        if let Some(v) = root.get("params")
            && let Some(t) = self.table(v, "params")
        {
            for (k, v) in entries(t) {
                let name = k.get_ref().to_string();
                if !is_param_name(&name) {
                    self.error(
                        sp(k),
                        format!("param name {name:?} can only use letters, digits, `-` and `_`"),
                        "rename it; it is used as ${NAME} and --set NAME=VALUE".to_string(),
                    );
                }
                let mut value = None;
                let mut required = false;
                match v.get_ref() {
                    DeValue::Table(pt) => {
                        self.check_keys(pt, &format::PARAM.names(), &format!("in param `{name}`"));
                        if let Some(d) = pt.get("default") {
                            value = self.param_value(d, "default");
                            self.note_type(&name, d);
                        }
                        if let Some(r) = pt.get("required") {
                            required = self.boolean(r, "required").unwrap_or(false);
                            if required && pt.get("default").is_some() {
                                self.error(
                                    sp(r),
                                    format!("param `{name}` is required but also has a `default`"),
                                    "a param with a default always has a value: remove `required = true` or the `default`"
                                        .to_string(),
                                );
                            }
                        }
                        if let Some(d) = pt.get("doc") {
                            self.string(d, "doc");
                        }
                        // Neither a default nor required: an optional param whose
                        // value is the empty string unless set.
                        if !required && value.is_none() && pt.get("default").is_none() {
                            value = Some(String::new());
                        }
                    }
                    _ => {
                        value = self.param_value(v, &name);
                        self.note_type(&name, v);
                    }
                }
                self.params.insert(name.clone(), value);
                decls.push((name, sp(k), required));
            }
        }

        for (key, value) in sets {
            match self.params.get_mut(key) {
                Some(slot) => *slot = Some(value.clone()),
                None => {
                    let declared = if self.params.is_empty() {
                        "the runbook declares no params".to_string()
                    } else {
                        format!(
                            "declared params: {}",
                            list(self.params.keys().map(|k| k.as_str()))
                        )
                    };
                    let mut hint =
                        format!("{declared} (this comes from the command line, not the file)");
                    if let Some(s) = suggest(key, self.params.keys().map(|k| k.as_str())) {
                        hint = format!("did you mean `--set {s}=...`? {hint}");
                    }
                    self.plain(
                        format!("--set {key}=...: the runbook declares no param `{key}`"),
                        hint,
                    );
                }
            }
        }

        for (name, span, required) in decls {
            if required && self.params.get(&name).is_some_and(Option::is_none) {
                self.error(
                    span,
                    format!("param `{name}` is required but has no value"),
                    format!("pass --set {name}=VALUE"),
                );
            }
        }

        self.params
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().unwrap_or_default()))
            .collect()
    }

    /// Every declared grant name, with its model when it is valid.
    fn grants(
        &mut self,
        root: &DeTable<'_>,
        cwd: Option<&Path>,
    ) -> BTreeMap<String, Option<Grant>> {
        let mut out = BTreeMap::new();
        let Some(v) = root.get("grants") else {
            return out;
        };
        let Some(t) = self.table(v, "grants") else {
            return out;
        };
        for (k, v) in entries(t) {
            let name = k.get_ref().to_string();
            let grant = self.grant(&name, v, cwd);
            out.insert(name, grant);
        }
        out
    }

    fn grant(&mut self, name: &str, v: &Val<'_>, cwd: Option<&Path>) -> Option<Grant> {
        let t = self.table(v, &format!("grants.{name}"))?;
        let place = format!("in [grants.{name}]");
        self.check_keys(t, &format::GRANT.names(), &place);
        let path = self
            .required(t, sp(v), "path", &place, "add path = \"/some/dir\"")
            .and_then(|p| {
                let s = self.string(p, "path")?;
                let s = self.interp(s, sp(p), "path")?;
                if s.is_empty() {
                    self.error(
                        sp(p),
                        format!("grant `{name}` has an empty `path`"),
                        "give a directory or file path (check the params it uses)".to_string(),
                    );
                    return None;
                }
                // Relative grant paths are resolved against the current working
                // directory, not the runbook's: their values usually come from
                // `--set` on the command line, where the user means "here".
                // Not canonicalized and not checked for existence.
                let path = PathBuf::from(s);
                Some(match cwd {
                    Some(cwd) if path.is_relative() => cwd.join(path),
                    _ => path,
                })
            });
        let access = self
            .required(
                t,
                sp(v),
                "access",
                &place,
                "add access = \"read\" or access = \"write\"",
            )
            .and_then(|a| self.one_of(a, "access", &["read", "write"]))
            .map(|i| [Access::Read, Access::Write][i]);
        let disposable = match t.get("disposable") {
            None => Some(false),
            Some(d) => self.boolean(d, "disposable"),
        };
        Some(Grant {
            name: name.to_string(),
            path: path?,
            access: access?,
            disposable: disposable?,
            span: sp(v),
        })
    }

    /// Grants whose directories nest, when one of them is written: a step
    /// could change through one what another step only reads, and a
    /// rehearsal (which copies each grant on its own) or a rollback (which
    /// undoes per grant) would not see the other's changes.
    fn overlapping_grants(&mut self, grants: &BTreeMap<String, Option<Grant>>) {
        let valid: Vec<(&Grant, PathBuf)> = grants
            .values()
            .flatten()
            .map(|g| (g, real_path(&g.path)))
            .collect();
        for (i, (a, pa)) in valid.iter().enumerate() {
            for (b, pb) in &valid[i + 1..] {
                if a.access == Access::Read && b.access == Access::Read {
                    continue;
                }
                let (outer, inner) = if pb.starts_with(pa) {
                    (a, b)
                } else if pa.starts_with(pb) {
                    (b, a)
                } else {
                    continue;
                };
                let how = |g: &Grant| match g.access {
                    Access::Read => "read",
                    Access::Write => "write",
                };
                let (first, later) = if a.span.start <= b.span.start {
                    (a, b)
                } else {
                    (b, a)
                };
                let place = if pa == pb {
                    format!("both are {}", pa.display())
                } else {
                    format!(
                        "{} is inside {}",
                        inner.path.display(),
                        outer.path.display()
                    )
                };
                self.error(
                    later.span,
                    format!(
                        "grants `{}` ({}) and `{}` ({}) overlap: {place}",
                        first.name,
                        how(first),
                        later.name,
                        how(later)
                    ),
                    "a step could change through one what is only read, rehearsed or rolled back through the other; give them separate directories, or use one grant"
                        .to_string(),
                );
            }
        }
    }

    /// Every declared command name, with its model when it is valid.
    fn commands(&mut self, root: &DeTable<'_>, lenient: bool) -> BTreeMap<String, Option<Command>> {
        let mut out = BTreeMap::new();
        let Some(v) = root.get("commands") else {
            return out;
        };
        let Some(t) = self.table(v, "commands") else {
            return out;
        };
        for (k, v) in entries(t) {
            let name = k.get_ref().to_string();
            let command = self.command(&name, v, lenient);
            out.insert(name, command);
        }
        out
    }

    fn command(&mut self, name: &str, v: &Val<'_>, lenient: bool) -> Option<Command> {
        let t = self.table(v, &format!("commands.{name}"))?;
        let place = format!("in [commands.{name}]");
        let keys = format::COMMAND.names();
        // `args` said nothing of what a vector does: it is refused with
        // how to write it now, not as an unknown key.
        let mut ok = true;
        if let Some((k, _)) = t.get_key_value("args") {
            self.error(
                sp(k),
                format!(
                    "`args` is no longer allowed {place}: mend must know which argument vectors only look and which change something"
                ),
                "split it: `reads = [...]` for the vectors that only look (is-active, status), `changes = [...]` for those that change something (stop, dropdb); e.g. reads = [[\"is-active\", \"*\"]] and changes = [[\"stop\", \"*\"]]. probe runs only reads, an exec action only changes"
                    .to_string(),
            );
            ok = false;
        }
        let mut known = keys.clone();
        known.push("args");
        self.check_keys_listing(t, &known, &keys, &place);
        let program = self
            .required(
                t,
                sp(v),
                "program",
                &place,
                "add program = \"/usr/bin/NAME\"",
            )
            .and_then(|p| {
                let s = self.nonempty_string(p, "program")?;
                self.interp(s, sp(p), "program")
            });
        let reads = match t.get("reads") {
            None => Some(Vec::new()),
            Some(a) => self.allowed_args(name, "reads", a),
        };
        let changes = match t.get("changes") {
            None => Some(Vec::new()),
            Some(a) => self.allowed_args(name, "changes", a),
        };
        if t.get("reads").is_none() && t.get("changes").is_none() && t.get("args").is_none() {
            self.error(
                sp(v),
                format!("command `{name}` allows nothing: it has neither `reads` nor `changes`"),
                "add reads = [[\"status\", \"*\"]] for vectors that only look, changes = [[\"restart\", \"*\"]] for those that change something"
                    .to_string(),
            );
            ok = false;
        }
        let run_as = self.run_as(name, t, lenient);
        let env = self.command_env(name, t);
        let opens = match t.get("opens") {
            None => Some(Vec::new()),
            Some(v) => self.strings(v, "opens").and_then(|items| {
                let mut out = Vec::new();
                for (s, span) in items {
                    let p = self.interp(&s, span, "opens")?;
                    if !p.starts_with('/') {
                        self.error(
                            span,
                            format!("`opens` of command `{name}`: {p:?} is not an absolute path"),
                            "name the file the program opens, e.g. \"/run/prosody/prosody.pid\""
                                .to_string(),
                        );
                        return None;
                    }
                    out.push(std::path::PathBuf::from(p));
                }
                Some(out)
            }),
        };
        if !ok {
            return None;
        }
        Some(Command {
            name: name.to_string(),
            program: program?,
            reads: reads?,
            changes: changes?,
            run_as: run_as?,
            env: env?,
            opens: opens?,
            span: sp(v),
        })
    }

    /// A command's `user` and `group`, looked up on this machine. When
    /// `lenient` (mend lint), a user or group this machine lacks is a
    /// warning, not an error.
    fn run_as(
        &mut self,
        name: &str,
        t: &DeTable<'_>,
        lenient: bool,
    ) -> Option<Option<super::model::RunAs>> {
        let user = match t.get("user") {
            None => None,
            Some(u) => {
                let s = self.nonempty_string(u, "user")?;
                Some((self.interp(s, sp(u), "user")?, sp(u)))
            }
        };
        let group = match t.get("group") {
            None => None,
            Some(g) => {
                let s = self.nonempty_string(g, "group")?;
                Some((self.interp(s, sp(g), "group")?, sp(g)))
            }
        };
        let (user, at) = match (user, group) {
            (None, None) => return Some(None),
            (None, Some((_, at))) => {
                self.error(
                    at,
                    format!("command `{name}` names a `group` but no `user`"),
                    "add user = \"NAME\": a group only replaces the primary group of the user the command runs as".to_string(),
                );
                return None;
            }
            (Some(u), g) => (u, g),
        };
        let (user, user_span) = user;
        let group_name = at.as_ref().map(|(g, _)| g.clone());
        let found = crate::accounts::lookup(&user, group_name.as_deref());
        let problem = match &found {
            Ok(Some(_)) => None,
            Ok(None) => Some((
                user_span,
                format!("command `{name}` runs as user `{user}`, which does not exist on this machine"),
                "create the user, or set `user` to one that exists (`getent passwd NAME` finds it); commands never fall back to root".to_string(),
            )),
            Err(e) => Some((
                at.as_ref().map_or(user_span, |(_, s)| *s),
                format!("command `{name}`: {e}"),
                "create it, or name one that exists (`getent group NAME` finds it)".to_string(),
            )),
        };
        if let Some((span, message, hint)) = problem {
            if !lenient {
                self.error(span, message, hint);
                return None;
            }
            let d = Diagnostic::at(&self.file, self.source, span, message, Some(hint));
            self.warnings.push(d);
        }
        Some(Some(super::model::RunAs {
            user,
            group: group_name,
            account: found.ok().flatten(),
        }))
    }

    /// A command's `env` table: names a program can read, values interpolated.
    fn command_env(&mut self, name: &str, t: &DeTable<'_>) -> Option<Vec<(String, String)>> {
        let Some(v) = t.get("env") else {
            return Some(Vec::new());
        };
        let et = self.table(v, &format!("commands.{name}.env"))?;
        let mut out = Vec::new();
        let mut ok = true;
        for (k, val) in entries(et) {
            let key = k.get_ref().to_string();
            let valid = key
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                self.error(
                    sp(k),
                    format!("`env` of command `{name}`: {key:?} is not a variable name"),
                    "use letters, digits and `_`, not starting with a digit".to_string(),
                );
                ok = false;
                continue;
            }
            if key.starts_with("MEND_GRANT_") || key == "MEND_REHEARSAL" {
                self.error(
                    sp(k),
                    format!("`env` of command `{name}` sets {key}, which mend sets itself"),
                    "remove it: MEND_GRANT_<NAME> is where each grant of the step is now (a rehearsal's copy during a rehearsal), MEND_REHEARSAL a rehearsal's directory for its stand-ins".to_string(),
                );
                ok = false;
                continue;
            }
            let label = format!("env.{key}");
            match self.string(val, &label) {
                Some(text) => match self.interp(text, sp(val), &label) {
                    Some(text) => out.push((key, text)),
                    None => ok = false,
                },
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn allowed_args(&mut self, name: &str, key: &str, a: &Val<'_>) -> Option<Vec<Vec<String>>> {
        let DeValue::Array(entries) = a.get_ref() else {
            self.type_error(key, "an array of allowed argument vectors", a);
            return None;
        };
        if entries.is_empty() {
            self.error(
                sp(a),
                format!("command `{name}` allows nothing: `{key}` is empty"),
                format!("list at least one argument vector, e.g. {key} = [[\"status\", \"*\"]] or {key} = [\"status *\"], or remove the key"),
            );
            return None;
        }
        let mut out = Vec::new();
        let mut ok = true;
        for entry in entries.iter() {
            let patterns: Vec<String> = match entry.get_ref() {
                // "restart ${unit}": split on spaces, then each word as in
                // the array form (`${param}` matched literally).
                DeValue::String(s) => {
                    let words: Vec<(String, Span)> = s
                        .split_ascii_whitespace()
                        .map(|w| (w.to_string(), sp(entry)))
                        .collect();
                    let out = self.patterns(&words, key);
                    ok &= out.len() == words.len();
                    out
                }
                DeValue::Array(_) => match self.strings(entry, key) {
                    // `${param}` in a pattern stands for the param's value,
                    // matched literally (a `*` in it is no wildcard).
                    Some(v) => {
                        let out = self.patterns(&v, key);
                        ok &= out.len() == v.len();
                        out
                    }
                    None => {
                        ok = false;
                        continue;
                    }
                },
                _ => {
                    self.subject_type_error(
                        &format!("each entry of `{key}`"),
                        "an array of patterns or a string",
                        entry,
                    );
                    ok = false;
                    continue;
                }
            };
            if let Some((_, init)) = patterns.split_last()
                && init.iter().any(|p| p == "**")
            {
                self.error(
                    sp(entry),
                    "`**` can only be the last pattern of an argument vector",
                    "move it to the end (it matches any further arguments), or use `*` to match within one argument"
                        .to_string(),
                );
                ok = false;
                continue;
            }
            out.push(patterns);
        }
        ok.then_some(out)
    }

    fn steps(
        &mut self,
        root: &DeTable<'_>,
        input: &Input<'_>,
        grants: &BTreeMap<String, Option<Grant>>,
        commands: &BTreeMap<String, Option<Command>>,
    ) -> Vec<Step> {
        let no_steps_hint = "add a [[steps]] table with `id` and `uses`".to_string();
        let Some(v) = root.get("steps") else {
            self.plain("the runbook has no steps", no_steps_hint);
            return Vec::new();
        };
        let DeValue::Array(items) = v.get_ref() else {
            self.type_error("steps", "an array of tables ([[steps]])", v);
            return Vec::new();
        };
        if items.is_empty() {
            self.error(sp(v), "the runbook has no steps", no_steps_hint);
            return Vec::new();
        }
        let dir = input.file.parent().unwrap_or(Path::new(""));
        let mut seen: BTreeMap<String, Span> = BTreeMap::new();
        let mut out = Vec::new();
        for (n, item) in items.iter().enumerate() {
            let Some(t) = self.table(item, "steps") else {
                continue;
            };
            if let Some(step) = self.step(n + 1, item, t, input, dir, &mut seen, grants, commands) {
                out.push(step);
            }
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn step(
        &mut self,
        number: usize,
        item: &Val<'_>,
        t: &DeTable<'_>,
        input: &Input<'_>,
        dir: &Path,
        seen: &mut BTreeMap<String, Span>,
        grants: &BTreeMap<String, Option<Grant>>,
        commands: &BTreeMap<String, Option<Command>>,
    ) -> Option<Step> {
        let span = sp(item);
        // How the step is called in messages: its id when it has a usable one.
        let raw_id = t
            .get("id")
            .and_then(|v| v.get_ref().as_str())
            .filter(|s| !s.is_empty());
        let label = raw_id.map_or_else(|| format!("#{number}"), |id| format!("`{id}`"));
        let place = format!("in step {label}");
        self.check_keys(t, &format::STEP.names(), &place);

        let id = self
            .required(t, span, "id", &place, "add id = \"my-step\" (unique within the runbook)")
            .and_then(|v| {
                let s = self.string(v, "id")?;
                if s.is_empty() {
                    self.error(
                        sp(v),
                        format!("step {label} has an empty `id`"),
                        "give it a unique id matching [a-z0-9][a-z0-9-_]*".to_string(),
                    );
                    return None;
                }
                if !is_ident(s) {
                    self.error(
                        sp(v),
                        format!("step id {s:?} must match [a-z0-9][a-z0-9-_]*"),
                        "use lowercase letters, digits, `-` and `_`, starting with a letter or digit"
                            .to_string(),
                    );
                    return None;
                }
                if let Some(first) = seen.get(s) {
                    let line = self.source[..first.start.min(self.source.len())]
                        .matches('\n')
                        .count()
                        + 1;
                    self.error(
                        sp(v),
                        format!("duplicate step id `{s}`"),
                        format!("step ids must be unique; `{s}` is first used on line {line}"),
                    );
                    return None;
                }
                seen.insert(s.to_string(), sp(v));
                Some(s.to_string())
            });

        let uses = self
            .required(
                t,
                span,
                "uses",
                &place,
                "add uses = \"std:NAME\" or uses = \"path/to/step.wasm\" with a sha256 pin",
            )
            .and_then(|u| {
                let pins = Pins {
                    sha256: t.get("sha256"),
                    capabilities: t.get("capabilities"),
                };
                self.uses(u, pins, &label, input.bundled, dir)
            });

        let grant_names = self.references(t, "grants", &label, grants.keys(), |name| {
            format!(
                "declare it: [grants.{name}] with `path` and `access`, or remove it from the step"
            )
        });
        let command_names = self.references(t, "commands", &label, commands.keys(), |name| {
            format!("declare it: [commands.{name}] with `program` and `reads` or `changes`, or remove it from the step")
        });
        let urls = match t.get("urls") {
            None => Some(Vec::new()),
            Some(u) => self.strings(u, "urls").and_then(|v| {
                let out = self.patterns(&v, "urls");
                (out.len() == v.len()).then_some(out)
            }),
        };

        let (with, with_span) = match t.get("with") {
            None => (Some((serde_json::Map::new(), BTreeMap::new())), span),
            Some(w) => (self.with(w), sp(w)),
        };

        let retry = match t.get("retry") {
            None => Some(Retry::default()),
            Some(r) => self.retry(r),
        };
        let timeout = match t.get("timeout") {
            None => Some(DEFAULT_TIMEOUT),
            Some(v) => self.duration(v, "timeout", false),
        };
        let memory = match t.get("memory") {
            None => Some(DEFAULT_MEMORY),
            Some(v) => self.memory(v),
        };

        let with = with?;
        Some(Step {
            id: id?,
            uses: uses?,
            grants: grant_names?,
            commands: command_names?,
            urls: urls?,
            with: with.0,
            with_spans: with.1,
            retry: retry?,
            timeout: timeout?,
            memory: memory?,
            span,
            uses_span: t.get("uses").map_or(span, sp),
            capabilities_span: t.get("capabilities").map(sp),
            with_span,
        })
    }

    fn uses(
        &mut self,
        u: &Val<'_>,
        pins: Pins<'_, '_>,
        label: &str,
        bundled: &[&str],
        dir: &Path,
    ) -> Option<Uses> {
        let sha = pins.sha256;
        let s = self.string(u, "uses")?;
        if let Some(name) = s.strip_prefix("std:") {
            let mut ok = true;
            if !bundled.contains(&name) {
                let mut hint = format!("bundled steps: {}", list(bundled.iter().copied()));
                if let Some(s) = suggest(name, bundled.iter().copied()) {
                    hint = format!("did you mean `std:{s}`? {hint}");
                }
                self.error(
                    sp(u),
                    format!("step {label} uses `std:{name}`, which is not a bundled step"),
                    hint,
                );
                ok = false;
            }
            if let Some(sha) = sha {
                self.error(
                    sp(sha),
                    format!(
                        "step {label} pins a `sha256`, but bundled `std:` steps are not pinned"
                    ),
                    "remove the `sha256` line (the engine verifies its bundled steps)".to_string(),
                );
                ok = false;
            }
            if let Some(caps) = pins.capabilities {
                self.error(
                    sp(caps),
                    format!(
                        "step {label} lists `capabilities`, but bundled `std:` steps ship inside mend and are not pinned"
                    ),
                    "remove the `capabilities` line".to_string(),
                );
                ok = false;
            }
            return ok.then(|| Uses::Std(name.to_string()));
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
            self.error(
                sp(u),
                format!("`uses` must be \"std:NAME\" or a path to a .wasm file, found {s:?}"),
                hint,
            );
            return None;
        }
        let path = dir.join(s);
        let Some(sha) = sha else {
            self.error(
                sp(u),
                format!("step {label} uses a component file but has no `sha256` pin"),
                format!(
                    "add sha256 = \"<64 lowercase hex digits>\" next to `uses` (e.g. from `sha256sum {}`)",
                    path.display()
                ),
            );
            return None;
        };
        let digest = self.string(sha, "sha256")?;
        if !is_sha256(digest) {
            let hint = if is_sha256(&digest.to_ascii_lowercase()) {
                "write it in lowercase".to_string()
            } else {
                format!(
                    "it has {} characters; a sha256 is exactly 64 characters of 0-9 and a-f",
                    digest.chars().count()
                )
            };
            self.error(sp(sha), "`sha256` must be 64 lowercase hex digits", hint);
            return None;
        }
        let capabilities = match pins.capabilities {
            None => None,
            Some(c) => Some(self.capabilities(c, label)?),
        };
        Some(Uses::File {
            path,
            sha256: digest.to_string(),
            capabilities,
        })
    }

    /// A file step's `capabilities`: interface names without versions, each once.
    fn capabilities(&mut self, v: &Val<'_>, label: &str) -> Option<Vec<String>> {
        let names = self.strings(v, "capabilities")?;
        let mut ok = true;
        let mut out: Vec<String> = Vec::new();
        for (name, span) in names {
            if let Some((bare, _)) = name.split_once('@') {
                self.error(
                    span,
                    format!("step {label}: capability {name:?} carries a version"),
                    format!("write the interface without its version: \"{bare}\""),
                );
                ok = false;
            } else if !is_interface_name(&name) {
                self.error(
                    span,
                    format!("step {label}: {name:?} is not an interface name"),
                    "write NAMESPACE:PACKAGE/INTERFACE, e.g. \"mend:runbook/files\", as `mend step build` or `mend step inspect FILE` prints them".to_string(),
                );
                ok = false;
            } else if out.contains(&name) {
                self.error(
                    span,
                    format!("step {label} lists capability `{name}` twice"),
                    "remove the duplicate".to_string(),
                );
                ok = false;
            } else {
                out.push(name);
            }
        }
        ok.then_some(out)
    }

    /// A step's `grants` or `commands`: names that must be declared.
    fn references<'n>(
        &mut self,
        t: &DeTable<'_>,
        key: &str,
        label: &str,
        declared: impl Iterator<Item = &'n String> + Clone,
        hint: impl Fn(&str) -> String,
    ) -> Option<Vec<String>> {
        let Some(v) = t.get(key) else {
            return Some(Vec::new());
        };
        let names = self.strings(v, key)?;
        let what = &key[..key.len() - 1];
        let mut ok = true;
        let mut out: Vec<String> = Vec::new();
        for (name, span) in names {
            if !declared.clone().any(|d| *d == name) {
                let mut h = hint(&name);
                if let Some(s) = suggest(&name, declared.clone().map(|d| d.as_str())) {
                    h = format!("did you mean `{s}`? {h}");
                }
                self.error(
                    span,
                    format!(
                        "step {label} uses {what} `{name}`, which the runbook does not declare"
                    ),
                    h,
                );
                ok = false;
            } else if out.contains(&name) {
                self.error(
                    span,
                    format!("step {label} lists {what} `{name}` twice"),
                    "remove the duplicate".to_string(),
                );
                ok = false;
            } else {
                out.push(name);
            }
        }
        ok.then_some(out)
    }

    /// A step's `with` table as JSON, with the span of each top-level value.
    #[allow(clippy::type_complexity)]
    fn with(
        &mut self,
        w: &Val<'_>,
    ) -> Option<(
        serde_json::Map<String, serde_json::Value>,
        BTreeMap<String, Span>,
    )> {
        let wt = self.table(w, "with")?;
        let mut map = serde_json::Map::new();
        let mut spans = BTreeMap::new();
        let mut ok = true;
        for (k, v) in entries(wt) {
            match self.json(v, &format!("with.{}", k.get_ref())) {
                Some(j) => {
                    map.insert(k.get_ref().to_string(), j);
                    spans.insert(k.get_ref().to_string(), sp(v));
                }
                None => ok = false,
            }
        }
        ok.then_some((map, spans))
    }

    /// A `with` value as JSON; strings are interpolated.
    fn json(&mut self, v: &Val<'_>, label: &str) -> Option<serde_json::Value> {
        use serde_json::Value as J;
        Some(match v.get_ref() {
            DeValue::String(s) => match self.typed_param(s, sp(v), label)? {
                Some(typed) => typed,
                None => J::String(self.interp(s, sp(v), label)?),
            },
            DeValue::Integer(i) => match int(i) {
                Some(n) => J::from(n),
                None => {
                    self.error(
                        sp(v),
                        format!("`{label}` is out of range for a 64-bit integer"),
                        None,
                    );
                    return None;
                }
            },
            DeValue::Float(f) => match f
                .as_str()
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
            {
                Some(n) => J::Number(n),
                None => {
                    self.error(
                        sp(v),
                        format!("`{label}` is {f}, which steps cannot receive"),
                        "use a finite number, or pass it as a string".to_string(),
                    );
                    return None;
                }
            },
            DeValue::Boolean(b) => J::Bool(*b),
            DeValue::Datetime(d) => J::String(d.to_string()),
            DeValue::Array(items) => {
                let mut out = Vec::new();
                let mut ok = true;
                for (i, item) in items.iter().enumerate() {
                    match self.json(item, &format!("{label}[{i}]")) {
                        Some(j) => out.push(j),
                        None => ok = false,
                    }
                }
                if !ok {
                    return None;
                }
                J::Array(out)
            }
            DeValue::Table(t) => {
                let mut out = serde_json::Map::new();
                let mut ok = true;
                for (k, item) in entries(t) {
                    // Keys are interpolated too: `files = { "dist/${release}" = ... }`.
                    let key = self.interp(k.get_ref(), sp(k), &format!("{label} key"));
                    match (key, self.json(item, &format!("{label}.{}", k.get_ref()))) {
                        (Some(key), Some(j)) => {
                            out.insert(key, j);
                        }
                        _ => ok = false,
                    }
                }
                if !ok {
                    return None;
                }
                J::Object(out)
            }
        })
    }

    fn retry(&mut self, r: &Val<'_>) -> Option<Retry> {
        match r.get_ref() {
            DeValue::Integer(_) => Some(Retry {
                attempts: self.attempts(r, "retry")?,
                ..Retry::default()
            }),
            DeValue::Table(t) => {
                self.check_keys(t, &format::RETRY.names(), "in `retry`");
                let attempts = match t.get("attempts") {
                    None => Some(Retry::default().attempts),
                    Some(a) => self.attempts(a, "retry.attempts"),
                };
                let delay = match t.get("delay") {
                    None => Some(Retry::default().delay),
                    Some(d) => self.duration(d, "retry.delay", true),
                };
                Some(Retry {
                    attempts: attempts?,
                    delay: delay?,
                })
            }
            _ => {
                self.type_error(
                    "retry",
                    "an integer (attempts) or a table like { attempts = 5, delay = \"2s\" }",
                    r,
                );
                None
            }
        }
    }

    fn attempts(&mut self, v: &Val<'_>, label: &str) -> Option<u32> {
        let DeValue::Integer(i) = v.get_ref() else {
            self.type_error(label, "an integer", v);
            return None;
        };
        match int(i).and_then(|n| u32::try_from(n).ok()) {
            Some(n) if n >= 1 => Some(n),
            _ => {
                self.error(
                    sp(v),
                    format!("`{label}` must be at least 1, found {i}"),
                    "it counts attempts, including the first".to_string(),
                );
                None
            }
        }
    }

    fn duration(&mut self, v: &Val<'_>, label: &str, zero_ok: bool) -> Option<Duration> {
        let hint = "write whole seconds (90) or a string like \"250ms\", \"90s\", \"5m\", \"1h\"";
        let d = match v.get_ref() {
            DeValue::Integer(i) => match int(i).and_then(|n| u64::try_from(n).ok()) {
                Some(n) => Duration::from_secs(n),
                None => {
                    self.error(
                        sp(v),
                        format!("`{label}` must not be negative, found {i}"),
                        hint.to_string(),
                    );
                    return None;
                }
            },
            // `${param}` works here, so an operator (or a rehearsal) can
            // tune a wait without editing the runbook.
            DeValue::String(s) => match parse_duration(&self.interp(s, sp(v), label)?) {
                Ok(d) => d,
                Err(e) => {
                    self.error(
                        sp(v),
                        format!("`{label}` is not a duration: {e}"),
                        hint.to_string(),
                    );
                    return None;
                }
            },
            _ => {
                self.type_error(label, "a duration (seconds, or a string like \"90s\")", v);
                return None;
            }
        };
        if d.is_zero() && !zero_ok {
            self.error(
                sp(v),
                format!("`{label}` must be longer than zero"),
                hint.to_string(),
            );
            return None;
        }
        Some(d)
    }

    fn memory(&mut self, v: &Val<'_>) -> Option<u64> {
        let hint = "write bytes (268435456) or a string like \"512KiB\", \"256MiB\", \"1GiB\"";
        let n = match v.get_ref() {
            DeValue::Integer(i) => match int(i).and_then(|n| u64::try_from(n).ok()) {
                Some(n) => n,
                None => {
                    self.error(
                        sp(v),
                        format!("`memory` must not be negative, found {i}"),
                        hint.to_string(),
                    );
                    return None;
                }
            },
            DeValue::String(s) => match parse_size(s) {
                Ok(n) => n,
                Err(e) => {
                    self.error(
                        sp(v),
                        format!("`memory` is not a size: {e}"),
                        hint.to_string(),
                    );
                    return None;
                }
            },
            _ => {
                self.type_error("memory", "a size (bytes, or a string like \"256MiB\")", v);
                return None;
            }
        };
        if n == 0 {
            self.error(sp(v), "`memory` must be more than zero", hint.to_string());
            return None;
        }
        Some(n)
    }

    /// A stand-in's `args`: `${args}` alone is the call's own arguments
    /// (kept as the marker, spliced when the stand-in runs); every other
    /// entry is interpolated.
    fn stand_in_args(&mut self, a: &Val<'_>) -> Option<Vec<String>> {
        let items = self.strings(a, "args")?;
        let mut out = Vec::new();
        let mut ok = true;
        for (s, span) in items {
            if s == ARGS {
                out.push(s);
            } else if s.contains(ARGS) {
                self.error(
                    span,
                    "`${args}` must be an entry of its own in a stand-in's `args`",
                    "write it alone, e.g. args = [\"-c\", \"script\", \"sh\", \"${args}\"]: it stands for every original argument, each its own".to_string(),
                );
                ok = false;
            } else {
                match self.interp(&s, span, "args") {
                    Some(v) => out.push(v),
                    None => ok = false,
                }
            }
        }
        ok.then_some(out)
    }

    fn rehearsal(
        &mut self,
        root: &DeTable<'_>,
        commands: &BTreeMap<String, Option<Command>>,
    ) -> (BTreeMap<String, StandIn>, Option<std::time::Duration>) {
        let mut out = BTreeMap::new();
        let Some(v) = root.get("rehearsal") else {
            return (out, None);
        };
        let Some(t) = self.table(v, "rehearsal") else {
            return (out, None);
        };
        self.check_keys(t, &format::REHEARSAL.names(), "in [rehearsal]");
        let budget = t
            .get("budget")
            .and_then(|b| self.duration(b, "rehearsal.budget", false));
        let Some(cv) = t.get("commands") else {
            return (out, budget);
        };
        let Some(ct) = self.table(cv, "rehearsal.commands") else {
            return (out, budget);
        };
        for (k, v) in entries(ct) {
            let name = k.get_ref().to_string();
            if !commands.contains_key(&name) {
                let mut hint = format!(
                    "stand-ins replace declared commands; declared commands: {}",
                    list(commands.keys().map(|c| c.as_str()))
                );
                if let Some(s) = suggest(&name, commands.keys().map(|c| c.as_str())) {
                    hint = format!("did you mean `{s}`? {hint}");
                }
                self.error(
                    sp(k),
                    format!("rehearsal stand-in for command `{name}`, which the runbook does not declare"),
                    hint,
                );
            }
            let Some(st) = self.table(v, &format!("rehearsal.commands.{name}")) else {
                continue;
            };
            let place = format!("in [rehearsal.commands.{name}]");
            self.check_keys(st, &format::STAND_IN.names(), &place);
            let program = self
                .required(
                    st,
                    sp(v),
                    "program",
                    &place,
                    "add program = \"/bin/true\" (or another harmless stand-in)",
                )
                .and_then(|p| {
                    let s = self.nonempty_string(p, "program")?;
                    self.interp(s, sp(p), "program")
                });
            let args = match st.get("args") {
                None => Some(None),
                Some(a) => self.stand_in_args(a).map(Some),
            };
            if let (Some(program), Some(args)) = (program, args) {
                out.insert(name, StandIn { program, args });
            }
        }
        (out, budget)
    }
}
