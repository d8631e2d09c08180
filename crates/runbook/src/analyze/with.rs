//! A step's `with`: the parameters it hands the step, as JSON, with
//! `${param}` interpolated (a value that is exactly `${name}` of a typed
//! param keeps that type). Which parameters a step takes is the step's to
//! check, when it is loaded.

use std::collections::BTreeMap;

use serde_json::Value as J;
use toml::de::DeValue;

use super::Ctx;
use crate::diagnostic::Span;
use crate::shape::{Node, Val, entries, int};

fn sp<T>(s: &serde_spanned::Spanned<T>) -> Span {
    s.span().into()
}

impl Ctx<'_, '_> {
    /// The table as JSON, with the span of each top-level value, and of
    /// what is inside it by path (`checks[1]`: an item's value;
    /// `checks[1].cert.days`: a key), so a step's error points at its line.
    #[allow(clippy::type_complexity)]
    pub(super) fn with(
        &mut self,
        w: &Node<'_, '_>,
    ) -> Option<(serde_json::Map<String, J>, BTreeMap<String, Span>)> {
        let DeValue::Table(wt) = w.raw().get_ref() else {
            unreachable!("the shape pass lets only a table through");
        };
        let mut map = serde_json::Map::new();
        let mut spans = BTreeMap::new();
        let mut ok = true;
        for (k, v) in entries(wt) {
            let path = k.get_ref().to_string();
            match self.json(
                v,
                &format!("{}.{}", w.label, k.get_ref()),
                &path,
                &mut spans,
            ) {
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
    fn json(
        &mut self,
        v: &Val<'_>,
        label: &str,
        path: &str,
        spans: &mut BTreeMap<String, Span>,
    ) -> Option<J> {
        Some(match v.get_ref() {
            DeValue::String(s) => match self.typed_param(s, sp(v), label)? {
                Some(typed) => typed,
                None => J::String(self.interp(s, sp(v), label)?),
            },
            DeValue::Integer(i) => match int(i) {
                Some(n) => J::from(n),
                None => {
                    self.report.error(
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
                    self.report.error(
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
                    let at = format!("{path}[{i}]");
                    spans.insert(at.clone(), sp(item));
                    match self.json(item, &format!("{label}[{i}]"), &at, spans) {
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
                    let at = format!("{path}.{}", k.get_ref());
                    spans.insert(at.clone(), sp(k));
                    match (
                        key,
                        self.json(item, &format!("{label}.{}", k.get_ref()), &at, spans),
                    ) {
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
}
