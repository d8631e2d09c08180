//! [[steps]]: unique ids, the grants and commands each names, its URLs,
//! retry, timeout and memory (`uses` and `with` have modules of their own).

use std::collections::BTreeMap;
use std::path::Path;

use super::Ctx;
use super::Input;
use crate::diagnostic::Span;
use crate::hints::suggest;
use crate::model::{Command, Grant, Retry, Step};
use crate::shape::{Fields, Node, Value};

impl Ctx<'_, '_> {
    /// The valid steps; the others are reported.
    pub(super) fn steps(
        &mut self,
        node: Option<&Node<'_, '_>>,
        input: &Input<'_>,
        grants: &BTreeMap<String, Option<Grant>>,
        commands: &BTreeMap<String, Option<Command>>,
    ) -> Vec<Step> {
        let dir = input.file.parent().unwrap_or(Path::new(""));
        let mut seen: BTreeMap<String, Span> = BTreeMap::new();
        let mut out = Vec::new();
        // None: missing, empty or not an array, and reported.
        let items = node.map(Node::items).unwrap_or_default();
        for item in items.iter().flatten() {
            let refs = Declared { grants, commands };
            if let Some(step) = self.step(item, input.bundled, dir, &mut seen, &refs) {
                out.push(step);
            }
        }
        out
    }

    fn step(
        &mut self,
        item: &Node<'_, '_>,
        bundled: &[&str],
        dir: &Path,
        seen: &mut BTreeMap<String, Span>,
        declared: &Declared<'_>,
    ) -> Option<Step> {
        let t = item.fields();
        let span = item.span;
        // "`a`", or "#1" for a step without a usable id.
        let label = t.called.clone().unwrap_or_default();

        let id = t.get("id").and_then(|v| {
            let s = v.str();
            if let Some(first) = seen.get(s) {
                let line = self.report.line_of(first.start);
                self.report.error(
                    v.span,
                    format!("duplicate step id `{s}`"),
                    format!("step ids must be unique; `{s}` is first used on line {line}"),
                );
                return None;
            }
            seen.insert(s.to_string(), v.span);
            Some(s.to_string())
        });

        let uses = t
            .get("uses")
            .and_then(|u| self.uses(u, t, &label, bundled, dir));

        let grant_names = self.references(t, "grants", &label, declared.grants.keys(), |name| {
            format!(
                "declare it: [grants.{name}] with `path` and `access`, or remove it from the step"
            )
        });
        let command_names =
            self.references(t, "commands", &label, declared.commands.keys(), |name| {
                format!("declare it: [commands.{name}] with `program` and `reads` or `changes`, or remove it from the step")
            });
        let urls = t.get("urls").and_then(|u| {
            let out = self.patterns(u.strings(), &u.label);
            (out.len() == u.strings().len()).then_some(out)
        });

        let (with, with_span) = match (t.written("with"), t.get("with")) {
            (None, _) => (Some((serde_json::Map::new(), BTreeMap::new())), span),
            (Some(at), w) => (w.and_then(|w| self.with(w)), at),
        };

        let retry = t.get("retry").and_then(|r| self.retry(r));
        let timeout = t.get("timeout").and_then(|v| self.duration(v));
        let memory = t.get("memory").map(Node::size);

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
            uses_span: t.written("uses").unwrap_or(span),
            capabilities_span: t.written("capabilities"),
            with_span,
        })
    }

    /// A step's `grants` or `commands`: names that must be declared.
    fn references<'n>(
        &mut self,
        t: &Fields<'_, '_>,
        key: &str,
        label: &str,
        declared: impl Iterator<Item = &'n String> + Clone,
        hint: impl Fn(&str) -> String,
    ) -> Option<Vec<String>> {
        let names = t.get(key)?.strings();
        let what = &key[..key.len() - 1];
        let mut ok = true;
        let mut out: Vec<String> = Vec::new();
        for &(name, span) in names {
            if !declared.clone().any(|d| d == name) {
                let mut h = hint(name);
                if let Some(s) = suggest(name, declared.clone().map(|d| d.as_str())) {
                    h = format!("did you mean `{s}`? {h}");
                }
                self.report.error(
                    span,
                    format!(
                        "step {label} uses {what} `{name}`, which the runbook does not declare"
                    ),
                    h,
                );
                ok = false;
            } else if out.iter().any(|o| o == name) {
                self.report.error(
                    span,
                    format!("step {label} lists {what} `{name}` twice"),
                    "remove the duplicate".to_string(),
                );
                ok = false;
            } else {
                out.push(name.to_string());
            }
        }
        ok.then_some(out)
    }

    /// `retry = 3`, or `retry = { attempts = 3, delay = "2s" }`.
    fn retry(&mut self, r: &Node<'_, '_>) -> Option<Retry> {
        match &r.value {
            Value::Count(attempts) => Some(Retry {
                attempts: *attempts,
                ..Retry::default()
            }),
            Value::Table(t) => {
                let attempts = t.get("attempts").map(Node::count);
                let delay = t.get("delay").and_then(|d| self.duration(d));
                Some(Retry {
                    attempts: attempts?,
                    delay: delay?,
                })
            }
            _ => unreachable!("`retry` is a count or a table"),
        }
    }
}

/// What the runbook declares that a step may name.
struct Declared<'a> {
    grants: &'a BTreeMap<String, Option<Grant>>,
    commands: &'a BTreeMap<String, Option<Command>>,
}
