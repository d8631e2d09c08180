//! The shape pass: a TOML document walked against the format table
//! ([`crate::format`]). It reports unknown keys (with "did you mean"),
//! missing required keys and values of the wrong type, fills in defaults,
//! and gives the semantic pass (`analyze`) typed values that keep their
//! spans. It knows nothing of what a value means: a grant's path may name
//! an undeclared param, a step a grant that does not exist.

mod typed;
mod values;

use std::borrow::Cow;

use serde_spanned::Spanned;
use toml::de::{DeTable, DeValue};

use crate::diagnostic::Span;
use crate::format::{DefaultValue, Key, Kind, Place, TOP, Table};
use crate::hints::{list, suggest};
use crate::report::Report;

pub(crate) use typed::{Entry, Fields, Node, Val, Value, Vector};
pub(crate) use values::{describe, int, is_ident, read_duration};

use typed::{Field, subject};

/// Check the whole document against [`TOP`].
pub(crate) fn shape<'t, 'i>(root: &'t DeTable<'i>, report: &mut Report<'_>) -> Fields<'t, 'i> {
    let at = At {
        label: String::new(),
        path: String::new(),
        called: None,
        number: None,
    };
    Walker { report }.table(&TOP, root, None, &at)
}

pub(crate) fn sp<T>(s: &Spanned<T>) -> Span {
    s.span().into()
}

/// Entries of a table in source order (the map itself is sorted by key).
pub(crate) fn entries<'t, 'i>(t: &'t DeTable<'i>) -> Vec<(&'t Spanned<Cow<'i, str>>, &'t Val<'i>)> {
    let mut v: Vec<_> = t.iter().collect();
    v.sort_by_key(|(k, _)| k.span().start);
    v
}

/// Where a value is, as messages name it.
#[derive(Clone)]
struct At {
    /// `timeout`, `retry.delay`, `grants.media`.
    label: String,
    /// From the top, for headers: `rehearsal.commands.c`.
    path: String,
    /// A named entry's name, as "`media`".
    called: Option<String>,
    /// An array item's 1-based number.
    number: Option<usize>,
}

impl At {
    fn key(&self, t: &Table, name: &str) -> At {
        At {
            label: if t.dotted {
                format!("{}.{name}", self.label)
            } else {
                name.to_string()
            },
            path: if self.path.is_empty() {
                name.to_string()
            } else {
                format!("{}.{name}", self.path)
            },
            called: None,
            number: None,
        }
    }
}

/// The table a value sits in, as its messages need it.
struct Owner {
    noun: &'static str,
    /// "step `a`", "command `c`", "the runbook".
    subject: String,
}

struct Walker<'r, 'a> {
    report: &'r mut Report<'a>,
}

impl<'t, 'i> Walker<'_, '_> {
    /// `span`: the table's own, `None` for the document.
    fn table(
        &mut self,
        t: &'static Table,
        de: &'t DeTable<'i>,
        span: Option<Span>,
        at: &At,
    ) -> Fields<'t, 'i> {
        let called = match (t.named_by, at.number) {
            (Some(by), Some(n)) => Some(
                de.get(by)
                    .and_then(|v| v.get_ref().as_str())
                    .filter(|s| !s.is_empty())
                    .map_or_else(|| format!("#{n}"), |id| format!("`{id}`")),
            ),
            _ => at.called.clone(),
        };
        let owner = Owner {
            noun: t.noun,
            subject: subject(t, called.as_deref()),
        };
        let place = match t.place {
            Place::Top => "at the top level".to_string(),
            Place::Header => format!("in [{}]", at.path),
            Place::Subject => format!("in {}", owner.subject),
            Place::Key => format!("in `{}`", at.label),
        };
        let mut fields = Vec::new();
        for (k, v) in entries(de) {
            let name = k.get_ref().as_ref();
            if let Some(r) = t.retired.iter().find(|r| r.name == name) {
                self.report.error(
                    sp(k),
                    format!("`{name}` is no longer allowed {place}: {}", r.why),
                    r.help.to_string(),
                );
                fields.push(Field {
                    name: r.name,
                    written: Some(sp(v)),
                    node: None,
                });
            } else if t.key(name).is_none() {
                let valid = t.names();
                let mut hint = format!("valid keys {place}: {}", list(valid.iter().copied()));
                if let Some(s) = suggest(name, valid) {
                    hint = format!("did you mean `{s}`? {hint}");
                }
                self.report
                    .error(sp(k), format!("unknown key `{name}` {place}"), hint);
            }
        }
        for key in t.keys {
            let at = at.key(t, key.name);
            let field = match de.get(key.name) {
                Some(v) => Field {
                    name: key.name,
                    written: Some(sp(v)),
                    node: self.value(&key.kind, v, &at, &owner, Some(key)),
                },
                None => {
                    if key.required {
                        let message = key.missing.map_or_else(
                            || format!("missing `{}` {place}", key.name),
                            String::from,
                        );
                        self.report
                            .error_or_plain(span, message, format!("add {}", key.help));
                    }
                    Field {
                        name: key.name,
                        written: None,
                        node: key
                            .default
                            .as_ref()
                            .map(|d| fill(&key.kind, d, span.unwrap_or_default(), &at)),
                    }
                }
            };
            fields.push(field);
        }
        Fields {
            table: t,
            span: span.unwrap_or_default(),
            called,
            fields,
        }
    }

    /// A value of `kind`; `key` when it is a key's own value (not an
    /// entry's or an item's).
    fn value(
        &mut self,
        kind: &'static Kind,
        v: &'t Val<'i>,
        at: &At,
        owner: &Owner,
        key: Option<&'static Key>,
    ) -> Option<Node<'t, 'i>> {
        let expected = key.and_then(|k| k.expected);
        let value = match kind {
            Kind::Table(t) => {
                let de = self.expect_table(v, at, expected)?;
                Value::Table(self.table(t, de, Some(sp(v)), at))
            }
            Kind::Named { of, dotted } => {
                let de = self.expect_table(v, at, expected)?;
                Value::Named(self.named(of, *dotted, de, at, owner))
            }
            Kind::NonEmptyArray(of) => Value::Items(self.items(of, v, at, owner, key)?),
            Kind::Either(a, b) => {
                // A table goes to the side that is a table, anything else
                // to the other side (whose words then say what it must be).
                let is_table = matches!(a, Kind::Table(_) | Kind::Named { .. });
                let side = if matches!(v.get_ref(), DeValue::Table(_)) == is_table {
                    a
                } else {
                    b
                };
                return self.value(side, v, at, owner, key);
            }
            leaf => self.leaf(leaf, v, at, owner, key)?,
        };
        Some(Node {
            span: sp(v),
            label: at.label.clone(),
            value,
        })
    }

    /// The entries of a [`Kind::Named`] table, each of kind `of`.
    fn named(
        &mut self,
        of: &'static Kind,
        dotted: bool,
        de: &'t DeTable<'i>,
        at: &At,
        owner: &Owner,
    ) -> Vec<Entry<'t, 'i>> {
        let mut out = Vec::new();
        for (k, v) in entries(de) {
            let name = k.get_ref().as_ref();
            let at = At {
                label: if dotted {
                    format!("{}.{name}", at.label)
                } else {
                    name.to_string()
                },
                path: format!("{}.{name}", at.path),
                called: Some(format!("`{name}`")),
                number: None,
            };
            out.push(Entry {
                name,
                key: sp(k),
                node: self.value(of, v, &at, owner, None),
            });
        }
        out
    }

    /// The items of a [`Kind::NonEmptyArray`]; an empty one is reported
    /// as the key's `missing` message says.
    fn items(
        &mut self,
        of: &'static Kind,
        v: &'t Val<'i>,
        at: &At,
        owner: &Owner,
        key: Option<&'static Key>,
    ) -> Option<Vec<Option<Node<'t, 'i>>>> {
        let DeValue::Array(items) = v.get_ref() else {
            let words = match of {
                Kind::Table(_) => format!("an array of tables ([[{}]])", at.label),
                _ => "an array".to_string(),
            };
            let expected = key.and_then(|k| k.expected).unwrap_or(&words);
            self.type_error(v, &format!("`{}`", at.label), expected);
            return None;
        };
        if items.is_empty() {
            let message = key
                .and_then(|k| k.missing)
                .map_or_else(|| format!("`{}` must not be empty", at.label), String::from);
            let help = key.filter(|k| !k.help.is_empty());
            let help = help.map(|k| format!("add {}", k.help));
            self.report.error(sp(v), message, help);
            return None;
        }
        let nodes = items.iter().enumerate().map(|(n, item)| {
            let at = At {
                number: Some(n + 1),
                ..at.clone()
            };
            self.value(of, item, &at, owner, None)
        });
        Some(nodes.collect())
    }

    fn expect_table(
        &mut self,
        v: &'t Val<'i>,
        at: &At,
        expected: Option<&str>,
    ) -> Option<&'t DeTable<'i>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => {
                self.type_error(v, &format!("`{}`", at.label), expected.unwrap_or("a table"));
                None
            }
        }
    }
}

/// The node of a key the file leaves out, from its default.
fn fill<'t, 'i>(kind: &'static Kind, d: &DefaultValue, span: Span, at: &At) -> Node<'t, 'i> {
    let value = match (d, kind) {
        (DefaultValue::Bool(b), _) => Value::Bool(*b),
        (DefaultValue::Choice(c), Kind::Enum(_)) => Value::Choice(c),
        (DefaultValue::Duration(d), _) => Value::Duration(*d),
        (DefaultValue::Size(n), _) => Value::Size(*n),
        (DefaultValue::Count(n), _) => Value::Count(*n),
        (DefaultValue::Empty, Kind::Strings) => Value::Strings(Vec::new()),
        (DefaultValue::Empty, Kind::ArgVectors) => Value::Vectors(Vec::new()),
        (DefaultValue::Empty, Kind::Table(t)) => Value::Table(Fields {
            table: t,
            span,
            called: None,
            fields: t
                .keys
                .iter()
                .map(|k| Field {
                    name: k.name,
                    written: None,
                    node: k
                        .default
                        .as_ref()
                        .map(|d| fill(&k.kind, d, span, &at.key(t, k.name))),
                })
                .collect(),
        }),
        (DefaultValue::Empty, Kind::Either(a, b)) => {
            let side = if matches!(a, Kind::Table(_)) { a } else { b };
            return fill(side, d, span, at);
        }
        (DefaultValue::Empty, Kind::Named { .. }) => Value::Named(Vec::new()),
        // format.rs's tests keep the table from declaring these.
        _ => unreachable!("`{}`: no default of this kind", at.label),
    };
    Node {
        span,
        label: at.label.clone(),
        value,
    }
}
