//! The typed, validated runbook.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::diagnostic::Span;

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_MEMORY: u64 = 256 << 20;
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(1);
pub const DEFAULT_ATTEMPTS: u32 = 1;

/// In a stand-in's `args`: the original call's arguments.
pub const ARGS: &str = "${args}";

#[derive(Debug, Clone)]
pub struct Runbook {
    /// The path as given.
    pub file: PathBuf,
    /// The file's text, kept for rendering later diagnostics.
    pub source: String,
    /// Lowercase hex sha256 of the file's bytes.
    pub sha256: String,
    pub name: String,
    pub version: String,
    pub summary: String,
    pub on_failure: OnFailure,
    /// Final values: defaults overridden by `--set`.
    pub params: BTreeMap<String, String>,
    /// Params declared `secret = true`: every output shows them as `***`.
    pub secrets: std::collections::BTreeSet<String>,
    pub grants: BTreeMap<String, Grant>,
    pub commands: BTreeMap<String, Command>,
    pub steps: Vec<Step>,
    pub rehearsal_commands: BTreeMap<String, StandIn>,
    /// What this machine lacks, when loaded for `mend lint` (else empty:
    /// loading refuses it).
    pub warnings: Vec<super::Diagnostic>,
    /// `[rehearsal] budget`: how long a restore drill may take.
    pub rehearsal_budget: Option<std::time::Duration>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    #[default]
    Rollback,
    Stop,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    Read,
    Write,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub name: String,
    /// Interpolated; a relative path has been resolved against the current
    /// working directory. Not canonicalized, existence not checked.
    pub path: PathBuf,
    pub access: Access,
    pub disposable: bool,
    /// The grant's table (`[grants.NAME]` header or inline table).
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    pub name: String,
    /// Interpolated.
    pub program: String,
    /// Argument vectors that only look (`is-active`, `status`): what `probe`
    /// may run, while planning and verifying. One glob pattern per argument;
    /// a vector whose last element is exactly `**` matches zero or more
    /// further arguments.
    pub reads: Vec<Vec<String>>,
    /// Argument vectors that change the world (`stop`, `dropdb`): what an
    /// `exec` action of the plan (and its undo) may run.
    pub changes: Vec<Vec<String>>,
    /// Who the command runs as; `None`: the user mend runs as.
    pub run_as: Option<RunAs>,
    /// The runbook's `env` table, interpolated, in the file's order.
    pub env: Vec<(String, String)>,
    /// Existing files its reads may open for writing (no create, no
    /// truncate): what a program that only looks still locks or appends to.
    pub opens: Vec<std::path::PathBuf>,
    /// The command's table.
    pub span: Span,
}

/// Which list of a command an argument vector must match.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// `reads`: run by `probe`, confined read-only.
    Read,
    /// `changes`: run by an `exec` action or its undo.
    Change,
}

impl Class {
    pub fn word(self) -> &'static str {
        match self {
            Class::Read => "read",
            Class::Change => "change",
        }
    }
}

/// The `user` (and `group`) of a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunAs {
    pub user: String,
    pub group: Option<String>,
    /// Resolved on this machine; `None` only when the runbook was loaded
    /// for `mend lint`, which warns about a user this machine lacks.
    pub account: Option<crate::accounts::Account>,
}

impl Command {
    /// The vectors of one class.
    pub fn vectors(&self, class: Class) -> &[Vec<String>] {
        match class {
            Class::Read => &self.reads,
            Class::Change => &self.changes,
        }
    }

    /// Whether `args` (not including the program) matches one vector of
    /// `class`.
    pub fn allows(&self, class: Class, args: &[String]) -> bool {
        self.vectors(class)
            .iter()
            .any(|patterns| args_match(patterns, args))
    }
}

/// Match an argument vector against one allowed pattern vector.
pub fn args_match(patterns: &[String], args: &[String]) -> bool {
    let (patterns, rest_ok) = match patterns.split_last() {
        Some((last, init)) if last == "**" => (init, true),
        _ => (patterns, false),
    };
    let len_ok = if rest_ok {
        args.len() >= patterns.len()
    } else {
        args.len() == patterns.len()
    };
    len_ok && patterns.iter().zip(args).all(|(p, a)| glob_match(p, a))
}

#[derive(Clone, Copy, PartialEq)]
enum Tok {
    Any,
    One,
    Lit(char),
}

/// `*` matches any run of characters (possibly empty), `?` exactly one,
/// `\c` the character c itself; everything else matches itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let mut p = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        p.push(match c {
            '*' => Tok::Any,
            '?' => Tok::One,
            '\\' => Tok::Lit(chars.next().unwrap_or('\\')),
            c => Tok::Lit(c),
        });
    }
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    // Position of the last `*` seen and the text position it resumed from.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == Tok::One || p[pi] == Tok::Lit(t[ti])) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == Tok::Any {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == Tok::Any)
}

/// A param's value in a pattern: its `*`, `?` and `\\` match themselves.
pub fn glob_quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '*' | '?' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StandIn {
    pub program: String,
    /// When `None` the original arguments are passed; an element that is
    /// exactly `${args}` stands for them (spliced, each its own argument).
    pub args: Option<Vec<String>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Uses {
    /// A bundled step, by name (without `std:`).
    Std(String),
    /// A component file; `path` is resolved against the runbook's directory.
    File {
        path: PathBuf,
        sha256: String,
        /// The interfaces the runbook approves it to import (`capabilities`),
        /// without versions; `None` when the pin predates the key.
        capabilities: Option<Vec<String>>,
    },
    /// A component published on an OCI registry (`mend step push`), pinned
    /// like a file: by the sha256 of its bytes, and its capabilities.
    Oci {
        reference: crate::OciRef,
        sha256: String,
        capabilities: Option<Vec<String>>,
    },
}

impl Uses {
    /// The pin and approved capabilities of a component (file or OCI).
    pub fn pin(&self) -> Option<(&str, Option<&[String]>)> {
        match self {
            Uses::Std(_) => None,
            Uses::File {
                sha256,
                capabilities,
                ..
            }
            | Uses::Oci {
                sha256,
                capabilities,
                ..
            } => Some((sha256, capabilities.as_deref())),
        }
    }
}

impl std::fmt::Display for Uses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Uses::Std(name) => write!(f, "std:{name}"),
            Uses::File { path, .. } => write!(f, "{}", path.display()),
            Uses::Oci { reference, .. } => write!(f, "{reference}"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    /// At least 1; default 1.
    pub attempts: u32,
    /// Default 1s.
    pub delay: Duration,
}

impl Default for Retry {
    fn default() -> Retry {
        Retry {
            attempts: DEFAULT_ATTEMPTS,
            delay: DEFAULT_RETRY_DELAY,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub id: String,
    pub uses: Uses,
    pub grants: Vec<String>,
    pub commands: Vec<String>,
    pub urls: Vec<String>,
    /// Interpolated; TOML datetimes become strings.
    pub with: serde_json::Map<String, serde_json::Value>,
    /// Span of each top-level `with` key's value, and of what is inside
    /// it by path: `checks[1]` (an item), `checks[1].cert.days` (a key).
    pub with_spans: BTreeMap<String, Span>,
    pub retry: Retry,
    pub timeout: Duration,
    pub memory: u64,
    /// The step's `[[steps]]` header (or its inline table).
    pub span: Span,
    /// The `uses` value.
    pub uses_span: Span,
    /// The `capabilities` value, when there is one.
    pub capabilities_span: Option<Span>,
    /// The `with` table, or `span` when absent.
    pub with_span: Span,
}

impl Step {
    /// Where a step's error points: the deepest part of `param` (a path
    /// into `with`, `checks[2].cert.days`) the runbook has, else the `with`
    /// table.
    pub fn param_span(&self, param: &str) -> Span {
        let mut at = param;
        loop {
            if let Some(span) = self.with_spans.get(at) {
                return *span;
            }
            match at.rfind(['.', '[']) {
                Some(cut) if cut > 0 => at = &at[..cut],
                _ => return self.with_span,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn glob() {
        assert!(glob_match("mastodon-*.service", "mastodon-web.service"));
        assert!(glob_match("mastodon-*.service", "mastodon-.service"));
        assert!(!glob_match("mastodon-*.service", "mastodon-web.socket"));
        assert!(glob_match("a?c", "abc"));
        assert!(glob_match("a?c", "aéc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("*", ""));
        assert!(glob_match("", ""));
        assert!(!glob_match("", "x"));
        assert!(glob_match("*a*b*", "xxaxxbxx"));
        assert!(!glob_match("*a*b", "xxaxxbxxc"));
        assert!(glob_match("**", "anything"));
        assert!(glob_match("x**y", "x/y"));
    }

    #[test]
    fn quoted_values_match_only_themselves() {
        let q = glob_quote("SELECT count(*) FROM a?");
        assert!(glob_match(&q, "SELECT count(*) FROM a?"));
        assert!(!glob_match(&q, "SELECT count(1) FROM ab"));
        assert!(!glob_match(
            &q,
            "SELECT count(1); DROP TABLE a; SELECT count(*) FROM a?"
        ));
        assert!(glob_match(&format!("{}*", glob_quote("a\\b")), "a\\bcd"));
    }

    #[test]
    fn allows() {
        let cmd = Command {
            name: "systemctl".into(),
            program: "/usr/bin/systemctl".into(),
            reads: vec![v(&["is-active", "**"]), v(&["status", "unit-?"]), v(&[])],
            changes: vec![v(&["restart", "mastodon-*.service"])],
            run_as: None,
            env: Vec::new(),
            opens: Vec::new(),
            span: Span::default(),
        };
        let (r, c) = (Class::Read, Class::Change);
        assert!(cmd.allows(c, &v(&["restart", "mastodon-web.service"])));
        assert!(!cmd.allows(r, &v(&["restart", "mastodon-web.service"])));
        assert!(!cmd.allows(c, &v(&["restart", "mastodon-web.service", "x"])));
        assert!(!cmd.allows(c, &v(&["restart"])));
        assert!(!cmd.allows(c, &v(&["stop", "mastodon-web.service"])));
        assert!(cmd.allows(r, &v(&["is-active"])));
        assert!(!cmd.allows(c, &v(&["is-active"])));
        assert!(cmd.allows(r, &v(&["is-active", "a", "b", "c"])));
        assert!(!cmd.allows(r, &v(&["is-activex"])));
        assert!(cmd.allows(r, &v(&["status", "unit-1"])));
        assert!(!cmd.allows(r, &v(&["status", "unit-12"])));
        assert!(cmd.allows(r, &v(&[])));
        // `*` stays within one argument.
        let only_star = Command {
            reads: vec![v(&["*"])],
            ..cmd.clone()
        };
        assert!(only_star.allows(r, &v(&["a b"])));
        assert!(!only_star.allows(r, &v(&["a", "b"])));
        assert!(!only_star.allows(r, &v(&[])));
    }

    #[test]
    fn uses_display() {
        assert_eq!(Uses::Std("cache-cull".into()).to_string(), "std:cache-cull");
        let f = Uses::File {
            path: PathBuf::from("steps/x.wasm"),
            sha256: String::new(),
            capabilities: None,
        };
        assert_eq!(f.to_string(), "steps/x.wasm");
    }
}
