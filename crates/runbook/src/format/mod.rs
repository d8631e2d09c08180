//! The runbook format, declared once: every table, its keys, each key's
//! kind, whether it is required, its default and what to write when it is
//! missing. The shape pass (`shape`) checks a document against these
//! tables, and `mend schema` (the `schema` module) writes the JSON Schema
//! editors use from them, so the parser and the schema cannot disagree.
//! What a value means (params, grants that nest, commands that steps name)
//! is the semantic pass's (`analyze`).

mod tables;

use std::time::Duration;

pub use tables::*;

/// What a key's value must be.
pub enum Kind {
    /// Any string (`${param}` allowed).
    Str,
    /// A string that is not empty.
    NonEmpty,
    /// `[a-z0-9][a-z0-9-_]*`: runbook names and step ids.
    Ident,
    /// 64 lowercase hex digits.
    Sha256,
    Bool,
    /// One of these strings.
    Enum(&'static [&'static str]),
    /// A list of strings.
    Strings,
    /// Whole seconds, or a string like "250ms", "90s", "5m", "1h"
    /// (`${param}` allowed); zero only when `zero_ok`.
    Duration {
        zero_ok: bool,
    },
    /// Bytes, or a string like "512KiB", "256MiB", "1GiB"; not zero.
    Size,
    /// An integer, at least 1.
    Attempts,
    /// An integer, at least 0.
    Count,
    /// A string, integer, float or boolean.
    Scalar,
    /// Allowed argument vectors: arrays of glob patterns, or strings split on spaces.
    ArgVectors,
    /// A table the step checks against its own parameters.
    StepParams,
    /// A table with exactly these keys.
    Table(&'static Table),
    /// A table of named entries, each of this kind. Messages call an entry
    /// by its dotted path (`grants.media`) when `dotted`, else by its name.
    Named {
        of: &'static Kind,
        dotted: bool,
    },
    /// An array, at least one item, each of this kind.
    NonEmptyArray(&'static Kind),
    /// Either of these: a table goes to the side that is a table, any
    /// other value to the other side.
    Either(&'static Kind, &'static Kind),
}

/// The value of a key the runbook leaves out.
pub enum DefaultValue {
    Bool(bool),
    /// One of an [`Kind::Enum`]'s strings.
    Choice(&'static str),
    Duration(Duration),
    /// Bytes.
    Size(u64),
    /// Attempts.
    Count(u32),
    /// An empty list or table (a table's own keys take their defaults).
    Empty,
}

/// One key of a table.
pub struct Key {
    pub name: &'static str,
    pub kind: Kind,
    pub required: bool,
    /// The value when the key is absent.
    pub default: Option<DefaultValue>,
    /// One line, shown by editors.
    pub doc: &'static str,
    /// What to write, after "add " when a required key is missing and
    /// after "write " when its value is empty: `path = "/some/dir"`.
    pub help: &'static str,
    /// The message when it is missing, instead of "missing `KEY` in ...".
    pub missing: Option<&'static str>,
    /// How a value of the wrong type is told what it must be, instead of
    /// the kind's own words.
    pub expected: Option<&'static str>,
}

/// How messages say where a table's key is.
pub enum Place {
    /// "at the top level"
    Top,
    /// "in [grants.media]": the table's dotted path.
    Header,
    /// "in step `a`", "in param `db`": the table's noun and name.
    Subject,
    /// "in `retry`": the key that holds it.
    Key,
}

/// A key that was part of the format once, refused with how to write it now.
pub struct Retired {
    pub name: &'static str,
    /// Why it went, after "`NAME` is no longer allowed in ...: ".
    pub why: &'static str,
    pub help: &'static str,
}

/// A TOML table and the keys it may hold.
pub struct Table {
    /// What one is called in messages: "step `a`", "grant `media`", "the runbook".
    pub noun: &'static str,
    pub place: Place,
    /// Whether messages call its keys by their dotted path (`retry.delay`)
    /// rather than their bare name (`timeout`).
    pub dotted: bool,
    /// For the items of an array: the key whose value names an item in
    /// messages (a step's `id`); an item without one is called `#N`.
    pub named_by: Option<&'static str>,
    pub keys: &'static [Key],
    pub retired: &'static [Retired],
}

impl Table {
    /// The allowed key names, in the order of the format.
    pub fn names(&self) -> Vec<&'static str> {
        self.keys.iter().map(|k| k.name).collect()
    }

    /// The key with this name.
    pub fn key(&'static self, name: &str) -> Option<&'static Key> {
        self.keys.iter().find(|k| k.name == name)
    }
}

pub(crate) const fn key(name: &'static str, kind: Kind, doc: &'static str) -> Key {
    Key {
        name,
        kind,
        required: false,
        default: None,
        doc,
        help: "",
        missing: None,
        expected: None,
    }
}

/// A key the table needs; `help` says what to write (see [`Key::help`]).
pub(crate) const fn required(
    name: &'static str,
    kind: Kind,
    help: &'static str,
    doc: &'static str,
) -> Key {
    Key {
        required: true,
        help,
        ..key(name, kind, doc)
    }
}

impl Key {
    /// The value when the key is absent.
    const fn or(self, default: DefaultValue) -> Key {
        Key {
            default: Some(default),
            ..self
        }
    }

    const fn missing(self, message: &'static str) -> Key {
        Key {
            missing: Some(message),
            ..self
        }
    }

    const fn expected(self, words: &'static str) -> Key {
        Key {
            expected: Some(words),
            ..self
        }
    }
}

pub(crate) const fn table(noun: &'static str, place: Place, keys: &'static [Key]) -> Table {
    Table {
        noun,
        place,
        dotted: false,
        named_by: None,
        keys,
        retired: &[],
    }
}
