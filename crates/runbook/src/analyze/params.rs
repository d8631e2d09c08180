//! [params], `--set`, and `${param}` in every string that allows it.

use std::collections::BTreeMap;

use toml::de::DeValue;

use super::Ctx;
use crate::diagnostic::Span;
use crate::hints::{list, suggest};
use crate::interpolate::{InterpolateError, interpolate, interpolate_with};
use crate::model::glob_quote;
use crate::shape::{Node, Value};

/// Param names must be usable in `${NAME}` and `--set NAME=VALUE`.
fn is_param_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A param's bare default (or `default = ...`) in its string form.
fn text_of(v: &DeValue<'_>) -> String {
    match v {
        DeValue::String(s) => s.to_string(),
        DeValue::Integer(i) => {
            crate::shape::int(i).map_or_else(|| i.to_string(), |n| n.to_string())
        }
        DeValue::Float(f) => f.as_str().to_string(),
        DeValue::Boolean(b) => b.to_string(),
        _ => unreachable!("the shape pass lets only scalars through"),
    }
}

impl Ctx<'_, '_> {
    /// Declared params, their defaults, `--set` overrides; fills
    /// `self.params` and returns the final values.
    pub(super) fn params(
        &mut self,
        node: Option<&Node<'_, '_>>,
        sets: &[(String, String)],
    ) -> BTreeMap<String, String> {
        // (name, key span, required)
        let mut decls: Vec<(String, Span, bool)> = Vec::new();
        for e in node.map(Node::entries).unwrap_or_default() {
            let name = e.name.to_string();
            if !is_param_name(&name) {
                self.report.error(
                    e.key,
                    format!("param name {name:?} can only use letters, digits, `-` and `_`"),
                    "rename it; it is used as ${NAME} and --set NAME=VALUE".to_string(),
                );
            }
            let mut value = None;
            let mut required = false;
            match e.node.as_ref().map(|n| &n.value) {
                Some(Value::Table(pt)) => {
                    if let Some(d) = pt.get("default") {
                        value = Some(text_of(d.scalar()));
                        self.note_type(&name, d.scalar());
                    }
                    required = pt.get("required").is_some_and(Node::bool);
                    if pt.get("secret").is_some_and(Node::bool) {
                        self.secrets.insert(name.clone());
                    }
                    if required && pt.written("default").is_some() {
                        self.report.error(
                            pt.written("required").unwrap_or(pt.span),
                            format!("param `{name}` is required but also has a `default`"),
                            "a param with a default always has a value: remove `required = true` or the `default`"
                                .to_string(),
                        );
                    }
                    // Neither a default nor required: an optional param
                    // whose value is the empty string unless set.
                    if !required && pt.written("default").is_none() {
                        value = Some(String::new());
                    }
                }
                Some(Value::Scalar(v)) => {
                    value = Some(text_of(v));
                    self.note_type(&name, v);
                }
                Some(_) => unreachable!("param `{name}`: a scalar or a table"),
                // Refused, and reported.
                None => {}
            }
            self.params.insert(name.clone(), value);
            decls.push((name, e.key, required));
        }

        for (key, value) in sets {
            match self.params.get_mut(key) {
                Some(slot) => *slot = Some(value.clone()),
                None => {
                    let mut hint = format!(
                        "{} (this comes from the command line, not the file)",
                        self.declared()
                    );
                    if let Some(s) = suggest(key, self.params.keys().map(|k| k.as_str())) {
                        hint = format!("did you mean `--set {s}=...`? {hint}");
                    }
                    self.report.plain(
                        format!("--set {key}=...: the runbook declares no param `{key}`"),
                        hint,
                    );
                }
            }
        }

        for (name, span, required) in decls {
            if required && self.params.get(&name).is_some_and(Option::is_none) {
                self.report.error(
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

    /// "declared params: `a`, `b`", or that there are none.
    fn declared(&self) -> String {
        if self.params.is_empty() {
            "the runbook declares no params".to_string()
        } else {
            format!(
                "declared params: {}",
                list(self.params.keys().map(|k| k.as_str()))
            )
        }
    }

    /// Remember a param's non-string type (integer, float, boolean).
    fn note_type(&mut self, name: &str, v: &DeValue<'_>) {
        let kind = match v {
            DeValue::Integer(_) => "integer",
            DeValue::Float(_) => "float",
            DeValue::Boolean(_) => "boolean",
            _ => return,
        };
        self.param_types.insert(name.to_string(), kind);
    }

    /// `s` with each `${param}` replaced by its value; what fails is
    /// reported against `label` at `span`.
    pub(super) fn interp(&mut self, s: &str, span: Span, label: &str) -> Option<String> {
        match interpolate(s, &self.params) {
            Ok(v) => Some(v),
            Err(InterpolateError::Unknown(name)) => {
                let mut hint = format!(
                    "{}; declare it under [params], or write `$$` for a literal `$`",
                    self.declared()
                );
                if let Some(s) = suggest(&name, self.params.keys().map(|k| k.as_str())) {
                    hint = format!("did you mean `${{{s}}}`? {hint}");
                }
                self.report.error(
                    span,
                    format!("`{label}` refers to `${{{name}}}`, which is not a declared param"),
                    hint,
                );
                None
            }
            Err(InterpolateError::Unterminated) => {
                self.report.error(
                    span,
                    format!("`{label}` has a `${{` without a closing `}}`"),
                    "close it: `${NAME}`, or write `$$` for a literal `$`".to_string(),
                );
                None
            }
        }
    }

    /// Patterns with `${param}` standing for the param's value, matched
    /// literally (a `*` in it is no wildcard); the ones that fail to
    /// interpolate are reported and left out.
    pub(super) fn patterns(&mut self, words: &[(&str, Span)], label: &str) -> Vec<String> {
        let mut out = Vec::new();
        for (s, span) in words {
            match interpolate_with(s, &self.params, glob_quote) {
                Ok(p) => out.push(p),
                Err(_) => {
                    self.interp(s, *span, label);
                }
            }
        }
        out
    }

    /// A string that is exactly `${name}` of a typed param, as a typed
    /// value; `Some(None)` for any other string.
    pub(super) fn typed_param(
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
                self.report.error(
                    span,
                    format!("`{label}` is `${{{name}}}`, whose default is of type {kind}, but its value is {value:?}"),
                    format!("pass --set {name}=<{kind}>"),
                );
                None
            }
        }
    }
}
