//! The `checks` parameter: a list of tables, each with one kind key and an
//! optional `message`, read and checked against the step's grants and
//! commands before anything is looked at.

use mend_sdk::prelude::*;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::amount::{self, Amount};

/// Every kind of check, in the order the docs list them.
pub const KINDS: [&str; 12] = [
    "exists",
    "not_empty",
    "mount",
    "not_mount",
    "free",
    "contains",
    "not_contains",
    "command",
    "http",
    "not_listening",
    "cert",
    "dotenv",
];

/// The hint for a check table that is not one of the kinds.
fn kinds_hint() -> String {
    format!(
        "each check is a table with one of {} and an optional `message`, e.g. {{ not_empty = \"data/postgres\", message = \"the data directory is empty\" }}",
        KINDS
            .iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// One check of the list.
#[derive(Debug)]
pub struct Spec {
    /// Its kind and arguments.
    pub kind: Kind,
    /// The operator's words, shown when it fails.
    pub message: Option<String>,
}

/// What a check looks at.
#[derive(Debug, PartialEq)]
pub enum Kind {
    /// `GRANT/path` exists (file, directory, symlink or other).
    Exists(String),
    /// `GRANT/dir` has at least one entry.
    NotEmpty(String),
    /// `command -q path` exits 0 (`want`), or does not (`!want`).
    Mount {
        command: String,
        path: String,
        want: bool,
    },
    /// Free space where `path` lives.
    Free {
        path: String,
        at_least: Option<Amount>,
        /// (`GRANT/path`, factor): at least factor × its size.
        times: Option<(String, f64)>,
    },
    /// `pattern` occurs in the file (`want`), or does not (`!want`).
    Contains {
        path: String,
        pattern: String,
        want: bool,
    },
    /// An allowed command exits 0.
    Command { command: String, args: Vec<String> },
    /// A GET of `url` answers `status`.
    Http { url: String, status: u16 },
    /// No TCP socket listens on `port` beyond loopback; tables under `procnet`.
    NotListening { port: u16, procnet: String },
    /// The first certificate of `path` has at least `days_left` days left.
    Cert { path: String, days_left: u32 },
    /// `key` in the dotenv file `path` is set (to `equals`, when given).
    Dotenv {
        path: String,
        key: String,
        equals: Option<String>,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MountArgs {
    #[serde(default = "mountpoint")]
    command: String,
    path: String,
}

fn mountpoint() -> String {
    "mountpoint".to_string()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FreeArgs {
    path: String,
    at_least: Option<Value>,
    times: Option<TimesArgs>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TimesArgs {
    path: String,
    #[serde(default = "one")]
    factor: f64,
}

fn one() -> f64 {
    1.0
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ContainsArgs {
    path: String,
    pattern: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandArgs {
    command: String,
    #[serde(default)]
    args: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpArgs {
    url: String,
    #[serde(default = "ok")]
    status: u16,
}

fn ok() -> u16 {
    200
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListenArgs {
    port: u16,
    #[serde(default = "procnet")]
    procnet: String,
}

fn procnet() -> String {
    "procnet".to_string()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CertArgs {
    path: String,
    #[serde(default = "fortnight")]
    days_left: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DotenvArgs {
    path: String,
    key: String,
    equals: Option<String>,
}

fn fortnight() -> u32 {
    14
}

/// The keys each kind's table takes, for `mend step inspect` and for
/// "did you mean" (`exists` and `not_empty` take a path, not a table).
pub const KEYS: [(&str, &[&str]); 10] = [
    ("mount", &["command", "path"]),
    ("not_mount", &["command", "path"]),
    ("free", &["path", "at_least", "times"]),
    ("contains", &["path", "pattern"]),
    ("not_contains", &["path", "pattern"]),
    ("command", &["command", "args"]),
    ("http", &["url", "status"]),
    ("not_listening", &["port", "procnet"]),
    ("cert", &["path", "days_left"]),
    ("dotenv", &["path", "key", "equals"]),
];

/// Read and check every entry of `checks`; the first problem.
pub fn parse(checks: &[Value], cx: &Context) -> Result<Vec<Spec>, StepError> {
    let (specs, mut problems) = read(checks, cx);
    match problems.is_empty() {
        true => Ok(specs),
        false => Err(problems.remove(0)),
    }
}

/// Every problem of `checks`, each pointing at its check (`checks[2].cert.days`).
pub fn problems(checks: &[Value], cx: &Context) -> Vec<StepError> {
    read(checks, cx).1
}

fn read(checks: &[Value], cx: &Context) -> (Vec<Spec>, Vec<StepError>) {
    if checks.is_empty() {
        return (
            Vec::new(),
            vec![
                StepError::new("`checks` is empty: there is nothing to assert")
                    .hint(kinds_hint())
                    .param("checks"),
            ],
        );
    }
    let mut specs = Vec::new();
    let mut problems = Vec::new();
    for (i, v) in checks.iter().enumerate() {
        match (One { n: i + 1, cx }.parse(v)) {
            Ok(spec) => specs.push(spec),
            Err(e) => problems.push(e),
        }
    }
    (specs, problems)
}

/// Parsing check number `n` (from 1).
struct One<'a> {
    n: usize,
    cx: &'a Context,
}

impl One<'_> {
    fn error(&self, kind: Option<&str>, message: impl std::fmt::Display) -> StepError {
        let at = match kind {
            Some(k) => format!("check {} (`{k}`)", self.n),
            None => format!("check {}", self.n),
        };
        // Where in `with`: the check, or its kind's key.
        let param = match kind {
            Some(k) => format!("checks[{}].{k}", self.n - 1),
            None => format!("checks[{}]", self.n - 1),
        };
        StepError::new(format!("{at}: {message}")).param(param)
    }

    /// The same error, pointing deeper: at `key` inside the kind's table.
    fn at(&self, e: StepError, kind: &str, key: &str) -> StepError {
        e.param(format!("checks[{}].{kind}.{key}", self.n - 1))
    }

    fn parse(&self, value: &Value) -> Result<Spec, StepError> {
        let Some(table) = value.as_object() else {
            return Err(self
                .error(None, format!("`{value}` is not a table"))
                .hint(kinds_hint()));
        };
        let mut table: Map<String, Value> = table.clone();
        let message = match table.remove("message") {
            None => None,
            Some(Value::String(m)) if !m.trim().is_empty() => Some(m.trim().to_string()),
            Some(other) => {
                return Err(self
                    .error(
                        None,
                        format!("`message = {other}` is not a non-empty string"),
                    )
                    .hint("write what is wrong when the check fails, in your own words")
                    .param(format!("checks[{}].message", self.n - 1)));
            }
        };
        let mut keys: Vec<&String> = table.keys().collect();
        let (kind, value) = match keys.len() {
            1 => {
                let key = keys.pop().expect("one key");
                (key.as_str(), &table[key])
            }
            0 => {
                return Err(self
                    .error(None, "no kind of check is given")
                    .hint(kinds_hint()));
            }
            _ => {
                let named: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
                return Err(self
                    .error(
                        None,
                        format!(
                            "several kinds in one table ({}); one check per table",
                            named.join(", ")
                        ),
                    )
                    .hint(kinds_hint()));
            }
        };
        let kind = self.kind(kind, value)?;
        Ok(Spec { kind, message })
    }

    fn kind(&self, kind: &str, value: &Value) -> Result<Kind, StepError> {
        if value.get("message").is_some() && KINDS.contains(&kind) {
            return Err(self
                .error(
                    Some(kind),
                    format!("`message` is inside the `{kind}` table"),
                )
                .hint(format!(
                    "put it beside the kind: {{ {kind} = {{ ... }}, message = \"...\" }}"
                )));
        }
        Ok(match kind {
            "exists" => Kind::Exists(self.path_at(kind, None, &self.string(kind, value)?)?),
            "not_empty" => Kind::NotEmpty(self.path_at(kind, None, &self.string(kind, value)?)?),
            "mount" | "not_mount" => {
                let a: MountArgs = self.args(
                    kind,
                    value,
                    "{ command = \"mountpoint\", path = \"/srv/postgres\" }",
                )?;
                if !a.path.starts_with('/') {
                    return Err(self
                        .error(Some(kind), format!("`path = {:?}` is not an absolute path", a.path))
                        .hint("the path is passed to the command as it is: write the host's absolute path, e.g. \"/srv/postgres\""));
                }
                Kind::Mount {
                    command: self.command(kind, a.command)?,
                    path: a.path,
                    want: kind == "mount",
                }
            }
            "free" => {
                let a: FreeArgs = self.args(
                    kind,
                    value,
                    "{ path = \"backups\", at_least = \"10GiB\" } or { path = \"backups\", times = { path = \"pgdata/main\", factor = 2.0 } }",
                )?;
                let at_least = match &a.at_least {
                    Some(v) => Some(amount::parse(v).map_err(|e| self.error(Some(kind), e))?),
                    None => None,
                };
                let times = match a.times {
                    Some(t) if !(t.factor.is_finite() && t.factor > 0.0) => {
                        return Err(self
                            .error(
                                Some(kind),
                                format!("`times.factor = {}` is not a number above 0", t.factor),
                            )
                            .hint("e.g. `factor = 2.0` for room for two copies"));
                    }
                    Some(t) => Some((self.path_at(kind, Some("times.path"), &t.path)?, t.factor)),
                    None => None,
                };
                if at_least.is_none() && times.is_none() {
                    return Err(self
                        .error(Some(kind), "neither `at_least` nor `times` is given")
                        .hint(format!("set `at_least` to {}, or `times = {{ path = \"GRANT/path\", factor = 2.0 }}` to need room for copies of it", amount::FORMS)));
                }
                Kind::Free {
                    path: self.path_at(kind, Some("path"), &a.path)?,
                    at_least,
                    times,
                }
            }
            "contains" | "not_contains" => {
                let a: ContainsArgs = self.args(
                    kind,
                    value,
                    "{ path = \"nginx/sites-enabled/mastodon\", pattern = \"ssl_certificate\" }; `pattern` is a plain substring, not a regular expression",
                )?;
                if a.pattern.is_empty() {
                    return Err(self
                        .error(Some(kind), "`pattern` is empty")
                        .hint("`pattern` is the text to look for, as a plain substring"));
                }
                Kind::Contains {
                    path: self.path_at(kind, Some("path"), &a.path)?,
                    pattern: a.pattern,
                    want: kind == "contains",
                }
            }
            "command" => {
                let a: CommandArgs = self.args(
                    kind,
                    value,
                    "{ command = \"nft\", args = [\"list\", \"table\", \"inet\", \"filter\"] }",
                )?;
                Kind::Command {
                    command: self.command(kind, a.command)?,
                    args: a.args,
                }
            }
            "http" => {
                let a: HttpArgs = self.args(
                    kind,
                    value,
                    "{ url = \"http://127.0.0.1:3000/health\", status = 200 }",
                )?;
                if !a.url.starts_with("http://") {
                    return Err(self
                        .error(Some(kind), format!("`url = {:?}` is not an http:// URL", a.url))
                        .hint("the host asks plain http:// URLs only: health endpoints of services on this machine"));
                }
                if !(100..=599).contains(&a.status) {
                    return Err(self.error(
                        Some(kind),
                        format!("`status = {}` is not an HTTP status", a.status),
                    ));
                }
                Kind::Http {
                    url: a.url,
                    status: a.status,
                }
            }
            "not_listening" => {
                let a: ListenArgs = self.args(kind, value, "{ port = 6379, procnet = \"procnet\" } with [grants.procnet] path = \"/proc/net\", access = \"read\"")?;
                if a.port == 0 {
                    return Err(self.error(Some(kind), "`port = 0` is not a port"));
                }
                Kind::NotListening {
                    port: a.port,
                    procnet: self.path_at(kind, Some("procnet"), &a.procnet)?,
                }
            }
            "cert" => {
                let a: CertArgs = self.args(
                    kind,
                    value,
                    "{ path = \"letsencrypt/live/example.org/fullchain.pem\", days_left = 14 }",
                )?;
                Kind::Cert {
                    path: self.path_at(kind, Some("path"), &a.path)?,
                    days_left: a.days_left,
                }
            }
            "dotenv" => {
                let a: DotenvArgs = self.args(
                    kind,
                    value,
                    "{ path = \"mastodon/.env.production\", key = \"S3_ENABLED\", equals = \"true\" }",
                )?;
                if a.key.is_empty()
                    || !a
                        .key
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
                {
                    return Err(self
                        .error(
                            Some(kind),
                            format!("`key = {:?}` is not a dotenv key", a.key),
                        )
                        .hint(
                            "a key is letters, digits, `_` and `.`, as on the left of `KEY=value`",
                        ));
                }
                Kind::Dotenv {
                    path: self.path_at(kind, Some("path"), &a.path)?,
                    key: a.key,
                    equals: a.equals,
                }
            }
            other => {
                let mut hint = kinds_hint();
                if let Some(near) = nearest(other) {
                    hint = format!("did you mean `{near}`? {hint}");
                }
                return Err(self
                    .error(None, format!("unknown kind `{other}`"))
                    .hint(hint)
                    .param(format!("checks[{}].{other}", self.n - 1)));
            }
        })
    }

    fn string(&self, kind: &str, value: &Value) -> Result<String, StepError> {
        value.as_str().map(str::to_string).ok_or_else(|| {
            self.error(
                Some(kind),
                format!("`{kind} = {value}` is not a \"GRANT/path\" string"),
            )
            .hint(format!("e.g. {{ {kind} = \"data/postgres\" }}"))
        })
    }

    fn args<T: DeserializeOwned>(
        &self,
        kind: &str,
        value: &Value,
        example: &str,
    ) -> Result<T, StepError> {
        let known = KEYS
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, keys)| *keys)
            .unwrap_or(&[]);
        if let Some(table) = value.as_object() {
            for key in table.keys() {
                if known.contains(&key.as_str()) {
                    continue;
                }
                let keys = known
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ");
                let hint = match nearest_in(key, known) {
                    Some(near) => format!("did you mean `{near}`? `{kind}` takes {keys}"),
                    None => format!("`{kind}` takes {keys}, e.g. {{ {kind} = {example} }}"),
                };
                return Err(self.at(
                    self.error(Some(kind), format!("unknown key `{key}`"))
                        .hint(hint),
                    kind,
                    key,
                ));
            }
        }
        serde_json::from_value(value.clone()).map_err(|e| {
            self.error(Some(kind), e)
                .hint(format!("write it as {{ {kind} = {example} }}"))
        })
    }

    /// A `GRANT/relative/path` in one of the step's grants, normalised;
    /// an error points at `key` of the kind's table (none: the kind's own value).
    fn path_at(&self, kind: &str, key: Option<&str>, path: &str) -> Result<String, StepError> {
        self.path(kind, path).map_err(|e| match key {
            Some(key) => self.at(e, kind, key),
            None => e,
        })
    }

    fn path(&self, kind: &str, path: &str) -> Result<String, StepError> {
        let parts: Vec<&str> = path
            .split('/')
            .filter(|p| !p.is_empty() && *p != ".")
            .collect();
        let refuse = |why: &str| {
            self.error(Some(kind), format!("`{path}` {why}"))
                .hint("paths are GRANT/relative/path: the name of one of the step's grants, then the path inside it")
        };
        if path.starts_with('/') {
            return Err(refuse("is absolute"));
        }
        if parts.contains(&"..") {
            return Err(refuse("contains `..`"));
        }
        let Some(grant) = parts.first() else {
            return Err(refuse("is empty"));
        };
        if !self.cx.grants.iter().any(|g| g.name == *grant) {
            let held: Vec<String> = self
                .cx
                .grants
                .iter()
                .map(|g| format!("`{}`", g.name))
                .collect();
            let held = if held.is_empty() {
                "none".to_string()
            } else {
                held.join(", ")
            };
            return Err(self
                .error(Some(kind), format!("`{path}`: the step holds no grant `{grant}` (it holds {held})"))
                .hint(format!("add \"{grant}\" to the step's `grants` and declare [grants.{grant}] with its `path`; `access = \"read\"` is enough")));
        }
        Ok(parts.join("/"))
    }

    /// A command the step may run (named by `command` of the kind's table).
    fn command(&self, kind: &str, command: String) -> Result<String, StepError> {
        if self.cx.commands.contains(&command) {
            return Ok(command);
        }
        let e = self.error(
            Some(kind),
            format!("the step may not run command `{command}`"),
        );
        Err(self.at(e, kind, "command")
            .hint(format!("add \"{command}\" to the step's `commands` and declare [commands.{command}] with its `program` and the vectors it may run under `reads`")))
    }
}

/// The kind nearest to a misspelt one, if it is near enough.
fn nearest(word: &str) -> Option<&'static str> {
    nearest_in(word, &KINDS)
}

/// The word of `among` nearest to a misspelt one, if it is near enough:
/// an edit or two, or one is the start of the other (`days`, `days_left`).
fn nearest_in(word: &str, among: &[&'static str]) -> Option<&'static str> {
    let word = word.to_ascii_lowercase().replace('-', "_");
    if let Some(k) = among
        .iter()
        .find(|k| word.len() >= 3 && (k.starts_with(&word) || word.starts_with(**k)))
    {
        return Some(k);
    }
    among
        .iter()
        .map(|k| (distance(&word, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min()
        .map(|(_, k)| k)
}

/// Levenshtein distance.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}
