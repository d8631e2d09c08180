//! The shape pass's result: typed values that keep their spans, as the
//! semantic pass reads them.

use std::time::Duration;

use serde_spanned::Spanned;
use toml::de::DeValue;

use crate::diagnostic::Span;
use crate::format::Table;

pub(crate) type Val<'i> = Spanned<DeValue<'i>>;

/// A value the shape pass accepted (or a default it filled in).
pub(crate) struct Node<'t, 'i> {
    /// The value; for a default, the table that lacks the key.
    pub span: Span,
    /// How messages call it: `timeout`, `retry.delay`, `env.HOME`.
    pub label: String,
    pub value: Value<'t, 'i>,
}

/// A value of the kind its key declares.
pub(crate) enum Value<'t, 'i> {
    /// `Str`, `NonEmpty`, `Ident`, `Sha256`.
    Str(&'t str),
    /// One of an `Enum`'s options.
    Choice(&'static str),
    Bool(bool),
    /// `Attempts`.
    Count(u32),
    Duration(Duration),
    /// A duration written with `${...}`: the semantic pass interpolates it,
    /// then reads it with `read_duration`.
    DurationText {
        text: &'t str,
        zero_ok: bool,
    },
    /// Bytes.
    Size(u64),
    Strings(Vec<(&'t str, Span)>),
    /// A string, integer, float or boolean.
    Scalar(&'t DeValue<'i>),
    Vectors(Vec<Vector<'t>>),
    /// A step's `with`: what it holds is the step's to check.
    Raw(&'t Val<'i>),
    Table(Fields<'t, 'i>),
    Named(Vec<Entry<'t, 'i>>),
    /// Items of an array; `None` where an item was refused.
    Items(Vec<Option<Node<'t, 'i>>>),
}

/// One allowed argument vector of a command: its patterns, each with the
/// span of the entry that holds it.
pub(crate) struct Vector<'t> {
    pub span: Span,
    pub words: Vec<(&'t str, Span)>,
}

/// One entry of a `Named` table; `node` is `None` when its value was
/// refused (the name is declared all the same).
pub(crate) struct Entry<'t, 'i> {
    pub name: &'t str,
    pub key: Span,
    pub node: Option<Node<'t, 'i>>,
}

/// A table's keys, each with its value, its default, or nothing (absent
/// and optional, or refused).
pub(crate) struct Fields<'t, 'i> {
    pub table: &'static Table,
    /// The table's header or inline table.
    pub span: Span,
    /// How messages name it: "`a`" or "#1" for a step, "`media`" for a
    /// grant; `None` for a section such as [runbook].
    pub called: Option<String>,
    pub(super) fields: Vec<Field<'t, 'i>>,
}

pub(super) struct Field<'t, 'i> {
    pub name: &'static str,
    /// The value's span, when the file writes the key.
    pub written: Option<Span>,
    pub node: Option<Node<'t, 'i>>,
}

impl<'t, 'i> Fields<'t, 'i> {
    fn field(&self, name: &str) -> Option<&Field<'t, 'i>> {
        let found = self.fields.iter().find(|f| f.name == name);
        debug_assert!(
            self.table.key(name).is_some() || self.table.retired.iter().any(|r| r.name == name),
            "`{name}` is not a key of the `{}` table",
            self.table.noun
        );
        found
    }

    /// The key's value or default; `None` when it is absent without a
    /// default, or was refused (and reported).
    pub fn get(&self, name: &str) -> Option<&Node<'t, 'i>> {
        self.field(name)?.node.as_ref()
    }

    /// The span of the key's value, when the file writes the key (valid or not).
    pub fn written(&self, name: &str) -> Option<Span> {
        self.field(name)?.written
    }
}

pub(super) fn subject(t: &Table, called: Option<&str>) -> String {
    match called {
        Some(c) => format!("{} {c}", t.noun),
        None => format!("the {}", t.noun),
    }
}

/// A value's accessors, for the semantic pass: the shape pass has checked
/// the kind, so another variant is a bug in the format table or the pass.
impl<'t, 'i> Node<'t, 'i> {
    fn wrong(&self, want: &str) -> ! {
        panic!("the shape pass gave `{}` no {want}", self.label)
    }

    pub fn str(&self) -> &'t str {
        match self.value {
            Value::Str(s) => s,
            _ => self.wrong("string"),
        }
    }

    pub fn choice(&self) -> &'static str {
        match self.value {
            Value::Choice(c) => c,
            _ => self.wrong("choice"),
        }
    }

    pub fn bool(&self) -> bool {
        match self.value {
            Value::Bool(b) => b,
            _ => self.wrong("boolean"),
        }
    }

    pub fn scalar(&self) -> &'t DeValue<'i> {
        match self.value {
            Value::Scalar(v) => v,
            _ => self.wrong("scalar"),
        }
    }

    pub fn raw(&self) -> &'t Val<'i> {
        match self.value {
            Value::Raw(v) => v,
            _ => self.wrong("table"),
        }
    }

    pub fn count(&self) -> u32 {
        match self.value {
            Value::Count(n) => n,
            _ => self.wrong("count"),
        }
    }

    pub fn size(&self) -> u64 {
        match self.value {
            Value::Size(n) => n,
            _ => self.wrong("size"),
        }
    }

    pub fn strings(&self) -> &[(&'t str, Span)] {
        match &self.value {
            Value::Strings(v) => v,
            _ => self.wrong("list of strings"),
        }
    }

    pub fn vectors(&self) -> &[Vector<'t>] {
        match &self.value {
            Value::Vectors(v) => v,
            _ => self.wrong("argument vectors"),
        }
    }

    pub fn fields(&self) -> &Fields<'t, 'i> {
        match &self.value {
            Value::Table(f) => f,
            _ => self.wrong("table"),
        }
    }

    pub fn entries(&self) -> &[Entry<'t, 'i>] {
        match &self.value {
            Value::Named(v) => v,
            _ => self.wrong("named entries"),
        }
    }

    pub fn items(&self) -> &[Option<Node<'t, 'i>>] {
        match &self.value {
            Value::Items(v) => v,
            _ => self.wrong("array"),
        }
    }
}
