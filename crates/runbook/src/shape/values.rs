//! The shape pass on one value that is not a table: its TOML type, then
//! what its kind asks of it (a pattern, a unit, a range).

use std::time::Duration;

use toml::de::{DeArray, DeInteger, DeValue};

use super::{At, Owner, Val, Value, Vector, Walker, sp};
use crate::diagnostic::Span;
use crate::format::{Key, Kind};
use crate::hints::suggest;
use crate::report::Report;
use crate::units::{parse_duration, parse_size};

const IDENT: &str = "[a-z0-9][a-z0-9-_]*";
const IDENT_HINT: &str =
    "use lowercase letters, digits, `-` and `_`, starting with a letter or digit";
const DURATION_HINT: &str =
    "write whole seconds (90) or a string like \"250ms\", \"90s\", \"5m\", \"1h\"";
const SIZE_HINT: &str = "write bytes (268435456) or a string like \"512KiB\", \"256MiB\", \"1GiB\"";

impl<'t, 'i> Walker<'_, '_> {
    /// A value of a kind that is not a table, array of tables or either;
    /// `key` when it is a key's own value (for its words and help).
    pub(super) fn leaf(
        &mut self,
        kind: &'static Kind,
        v: &'t Val<'i>,
        at: &At,
        owner: &Owner,
        key: Option<&'static Key>,
    ) -> Option<Value<'t, 'i>> {
        let expected = key.and_then(|k| k.expected);
        // What to write instead of an empty value.
        let write = key
            .filter(|k| !k.help.is_empty())
            .map(|k| format!("write {}", k.help));
        let label = &at.label;
        let subject = format!("`{label}`");
        let span = sp(v);
        let found = v.get_ref();
        let wrong = |w: &mut Self, words: &str| {
            w.type_error(v, &subject, expected.unwrap_or(words));
            None
        };
        Some(match (kind, found) {
            (Kind::Str, DeValue::String(s)) => Value::Str(s),
            (Kind::NonEmpty, DeValue::String(s)) => {
                if s.trim().is_empty() {
                    let message = format!("{} has an empty `{label}`", owner.subject);
                    self.report.error(span, message, write);
                    return None;
                }
                Value::Str(s)
            }
            (Kind::Ident, DeValue::String(s)) => {
                if s.is_empty() {
                    let message = format!("{} has an empty `{label}`", owner.subject);
                    self.report.error(span, message, write);
                    return None;
                }
                if !is_ident(s) {
                    let message = format!("{} {label} {s:?} must match {IDENT}", owner.noun);
                    self.report.error(span, message, IDENT_HINT.to_string());
                    return None;
                }
                Value::Str(s)
            }
            (Kind::Sha256, DeValue::String(s)) => {
                if !is_sha256(s) {
                    let hint = if is_sha256(&s.to_ascii_lowercase()) {
                        "write it in lowercase".to_string()
                    } else {
                        format!(
                            "it has {} characters; a sha256 is exactly 64 characters of 0-9 and a-f",
                            s.chars().count()
                        )
                    };
                    let message = format!("`{label}` must be 64 lowercase hex digits");
                    self.report.error(span, message, hint);
                    return None;
                }
                Value::Str(s)
            }
            (Kind::Str | Kind::NonEmpty | Kind::Ident | Kind::Sha256, _) => {
                return wrong(self, "a string");
            }
            (Kind::Bool, DeValue::Boolean(b)) => Value::Bool(*b),
            (Kind::Bool, _) => return wrong(self, "true or false"),
            (Kind::Enum(options), _) => {
                if let DeValue::String(s) = found
                    && let Some(o) = options.iter().find(|o| *o == s)
                {
                    return Some(Value::Choice(o));
                }
                let words = one_of(options);
                let words = expected.unwrap_or(&words);
                let mut hint = format!("change it to {words}");
                if let DeValue::String(s) = found
                    && let Some(near) = suggest(s, options.iter().copied())
                {
                    hint = format!("did you mean \"{near}\"?");
                }
                let message = format!("{subject} must be {words}, found {}", describe(found));
                self.report.error(span, message, hint);
                return None;
            }
            (Kind::Strings, DeValue::Array(items)) => Value::Strings(self.strings(items, label)?),
            (Kind::Strings, _) => return wrong(self, "an array of strings"),
            (Kind::Duration { zero_ok }, DeValue::Integer(i)) => {
                let Some(secs) = int(i).and_then(|n| u64::try_from(n).ok()) else {
                    let message = format!("`{label}` must not be negative, found {i}");
                    self.report.error(span, message, DURATION_HINT.to_string());
                    return None;
                };
                Value::Duration(nonzero(
                    self.report,
                    Duration::from_secs(secs),
                    span,
                    label,
                    *zero_ok,
                )?)
            }
            // `${param}` works here, so an operator (or a rehearsal) can
            // tune a wait without editing the runbook: read it once params
            // are known.
            (Kind::Duration { zero_ok }, DeValue::String(s)) if s.contains('$') => {
                Value::DurationText {
                    text: s,
                    zero_ok: *zero_ok,
                }
            }
            (Kind::Duration { zero_ok }, DeValue::String(s)) => {
                Value::Duration(read_duration(self.report, s, span, label, *zero_ok)?)
            }
            (Kind::Duration { .. }, _) => {
                return wrong(self, "a duration (seconds, or a string like \"90s\")");
            }
            (Kind::Size, DeValue::Integer(i)) => {
                let Some(n) = int(i).and_then(|n| u64::try_from(n).ok()) else {
                    let message = format!("`{label}` must not be negative, found {i}");
                    self.report.error(span, message, SIZE_HINT.to_string());
                    return None;
                };
                Value::Size(self.some_bytes(n, span, label)?)
            }
            (Kind::Size, DeValue::String(s)) => match parse_size(s) {
                Ok(n) => Value::Size(self.some_bytes(n, span, label)?),
                Err(e) => {
                    let message = format!("`{label}` is not a size: {e}");
                    self.report.error(span, message, SIZE_HINT.to_string());
                    return None;
                }
            },
            (Kind::Size, _) => return wrong(self, "a size (bytes, or a string like \"256MiB\")"),
            (Kind::Attempts, DeValue::Integer(i)) => {
                match int(i).and_then(|n| u32::try_from(n).ok()) {
                    Some(n) if n >= 1 => Value::Count(n),
                    _ => {
                        let message = format!("`{label}` must be at least 1, found {i}");
                        let hint = "it counts attempts, including the first".to_string();
                        self.report.error(span, message, hint);
                        return None;
                    }
                }
            }
            (Kind::Attempts, _) => return wrong(self, "an integer"),
            (Kind::Count, DeValue::Integer(i)) => {
                match int(i).and_then(|n| u32::try_from(n).ok()) {
                    Some(n) => Value::Count(n),
                    None => {
                        let message = format!("`{label}` must be 0 or more, found {i}");
                        self.report
                            .error(span, message, "write a whole number".to_string());
                        return None;
                    }
                }
            }
            (Kind::Count, _) => return wrong(self, "an integer"),
            (
                Kind::Scalar,
                DeValue::String(_) | DeValue::Integer(_) | DeValue::Float(_) | DeValue::Boolean(_),
            ) => Value::Scalar(found),
            (Kind::Scalar, _) => return wrong(self, "a string, integer, float or boolean"),
            (Kind::ArgVectors, DeValue::Array(items)) => {
                Value::Vectors(self.vectors(items, span, label, owner)?)
            }
            (Kind::ArgVectors, _) => return wrong(self, "an array of allowed argument vectors"),
            (Kind::StepParams, DeValue::Table(_)) => Value::Raw(v),
            (Kind::StepParams, _) => return wrong(self, "a table"),
            (
                Kind::Table(_) | Kind::Named { .. } | Kind::NonEmptyArray(_) | Kind::Either(..),
                _,
            ) => unreachable!("`{label}`: not a leaf"),
        })
    }

    /// An array of strings, each with its span; an entry that is not a
    /// string is reported.
    fn strings(&mut self, items: &'t DeArray<'i>, label: &str) -> Option<Vec<(&'t str, Span)>> {
        let mut out = Vec::new();
        let mut ok = true;
        for item in items.iter() {
            match item.get_ref() {
                DeValue::String(s) => out.push((s.as_ref(), sp(item))),
                _ => {
                    self.type_error(item, &format!("each entry of `{label}`"), "a string");
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    /// A command's `reads` or `changes`: at least one vector, each an array
    /// of patterns or a string of them separated by spaces.
    fn vectors(
        &mut self,
        items: &'t DeArray<'i>,
        span: Span,
        label: &str,
        owner: &Owner,
    ) -> Option<Vec<Vector<'t>>> {
        if items.is_empty() {
            self.report.error(
                span,
                format!("{} allows nothing: `{label}` is empty", owner.subject),
                format!("list at least one argument vector, e.g. {label} = [[\"status\", \"*\"]] or {label} = [\"status *\"], or remove the key"),
            );
            return None;
        }
        let mut out = Vec::new();
        for entry in items.iter() {
            let words = match entry.get_ref() {
                // "restart ${unit}": split on spaces, then each word as in
                // the array form.
                DeValue::String(s) => s.split_ascii_whitespace().map(|w| (w, sp(entry))).collect(),
                DeValue::Array(words) => match self.strings(words, label) {
                    Some(words) => words,
                    None => continue,
                },
                _ => {
                    let subject = format!("each entry of `{label}`");
                    self.type_error(entry, &subject, "an array of patterns or a string");
                    continue;
                }
            };
            out.push(Vector {
                span: sp(entry),
                words,
            });
        }
        // The refused entries are reported and left out; the others still
        // go on, so that what their params say is checked too.
        Some(out)
    }

    fn some_bytes(&mut self, n: u64, span: Span, label: &str) -> Option<u64> {
        if n == 0 {
            let message = format!("`{label}` must be more than zero");
            self.report.error(span, message, SIZE_HINT.to_string());
            return None;
        }
        Some(n)
    }

    /// "SUBJECT must be EXPECTED, found ...".
    pub(super) fn type_error(&mut self, v: &Val<'_>, subject: &str, expected: &str) {
        self.report.error(
            sp(v),
            format!(
                "{subject} must be {expected}, found {}",
                describe(v.get_ref())
            ),
            format!("change it to {expected}"),
        );
    }
}

/// "\"read\" or \"write\"".
fn one_of(options: &[&str]) -> String {
    let quoted: Vec<String> = options.iter().map(|o| format!("{o:?}")).collect();
    match quoted.split_last() {
        Some((last, init)) if !init.is_empty() => format!("{} or {last}", init.join(", ")),
        _ => quoted.join(""),
    }
}

/// A duration string as a runbook writes it (after interpolation), for
/// the key called `label`.
pub(crate) fn read_duration(
    report: &mut Report<'_>,
    text: &str,
    span: Span,
    label: &str,
    zero_ok: bool,
) -> Option<Duration> {
    match parse_duration(text) {
        Ok(d) => nonzero(report, d, span, label, zero_ok),
        Err(e) => {
            let message = format!("`{label}` is not a duration: {e}");
            report.error(span, message, DURATION_HINT.to_string());
            None
        }
    }
}

fn nonzero(
    report: &mut Report<'_>,
    d: Duration,
    span: Span,
    label: &str,
    zero_ok: bool,
) -> Option<Duration> {
    if d.is_zero() && !zero_ok {
        let message = format!("`{label}` must be longer than zero");
        report.error(span, message, DURATION_HINT.to_string());
        return None;
    }
    Some(d)
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

/// A TOML integer that fits an `i64`.
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

fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}
