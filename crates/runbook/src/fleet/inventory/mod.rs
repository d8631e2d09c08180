//! `fleet.toml`: the hosts, their ssh destinations, groups, per-host
//! parameters, the rollout. Its tables are declared here in the runbook
//! format's style ([`crate::format`]), so the parser and `mend schema
//! --fleet` cannot disagree; errors point at file:line:column.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};

use super::rollout::BatchSize;
use crate::diagnostic::{Diagnostic, Span};
mod tables;

pub use tables::{FLEET, GROUP, HOST, ROLLOUT, SSH, TOP};

use crate::format::Table;
use crate::hints::{list, suggest};
use crate::parse::toml_error;
use crate::shape::{Val, describe, entries, int, is_ident, sp};

/// Where the fleet's history goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JournalTarget {
    /// The controller's own state directory (SQLite).
    Local,
    /// A shared PostgreSQL journal: the fleet's history and lock.
    Postgres(String),
}

/// One host of the fleet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    pub name: String,
    /// What `ssh` is given.
    pub ssh: String,
    pub groups: Vec<String>,
    /// mend's path (or name) on the host.
    pub mend: String,
    /// Its groups' parameters, then its own over them.
    pub params: BTreeMap<String, String>,
    /// Variables an Ansible inventory gives as a list or dict, which no
    /// parameter can be: refused only when a runbook declares them
    /// ([`Host::refused_params`]), since group_vars hold many such that no
    /// runbook reads.
    pub refused: BTreeMap<String, Diagnostic>,
}

impl Host {
    /// The refusals of the parameters in `declared`, each naming the host.
    pub fn refused_params(&self, declared: &std::collections::BTreeSet<String>) -> Vec<Diagnostic> {
        self.refused
            .iter()
            .filter(|(k, _)| declared.contains(*k))
            .map(|(_, d)| {
                let mut d = d.clone();
                d.message = format!("host `{}`: {}", self.name, d.message);
                d
            })
            .collect()
    }
}

/// A checked `fleet.toml`.
#[derive(Clone, Debug)]
pub struct Inventory {
    pub file: PathBuf,
    pub name: Option<String>,
    pub journal: JournalTarget,
    pub parallel: usize,
    /// `ssh -F`, resolved against the inventory's directory.
    pub ssh_config: Option<PathBuf>,
    pub batches: Vec<BatchSize>,
    pub max_failures: usize,
    /// Group names in file order.
    pub groups: Vec<String>,
    /// In file order: the rollout order.
    pub hosts: Vec<Host>,
}

impl Inventory {
    pub fn load(file: &Path) -> Result<Inventory, Vec<Diagnostic>> {
        // Anything but a .toml is an Ansible inventory, given as `-i`:
        // the fleet's defaults, its hosts and groups.
        if file.extension().is_none_or(|e| e != "toml") {
            let a = super::ansible::load(file)?;
            return Ok(Inventory {
                file: file.to_path_buf(),
                name: None,
                journal: JournalTarget::Local,
                parallel: 8,
                ssh_config: None,
                batches: vec![BatchSize::Count(1), BatchSize::Rest],
                max_failures: 0,
                groups: a.groups,
                hosts: a.hosts,
            });
        }
        let name = file.display().to_string();
        let source = std::fs::read_to_string(file).map_err(|e| {
            vec![Diagnostic::plain(
                &name,
                format!("cannot read inventory {name}: {e}"),
                Some("check the path (-i FILE)".to_string()),
            )]
        })?;
        Inventory::parse(file, &source)
    }

    pub fn parse(file: &Path, source: &str) -> Result<Inventory, Vec<Diagnostic>> {
        let mut cx = Cx {
            file: file.display().to_string(),
            source,
            errors: Vec::new(),
        };
        let root = match DeTable::parse(source) {
            Ok(r) => r.into_inner(),
            Err(e) => return Err(vec![toml_error(&cx.file, source, &e)]),
        };
        cx.keys(&root, &TOP, "at the top level");
        let mut inv = Inventory {
            file: file.to_path_buf(),
            name: None,
            journal: JournalTarget::Local,
            parallel: 8,
            ssh_config: None,
            batches: vec![BatchSize::Count(1), BatchSize::Rest],
            max_failures: 0,
            groups: Vec::new(),
            hosts: Vec::new(),
        };
        if let Some(t) = root.get("fleet").and_then(|v| cx.table(v, "fleet")) {
            cx.keys(t, &FLEET, "in [fleet]");
            if let Some(v) = t.get("name") {
                match v.get_ref() {
                    DeValue::String(s) if is_ident(s) => inv.name = Some(s.to_string()),
                    _ => cx.type_error(v, "fleet.name", "lowercase letters, digits, - and _"),
                }
            }
            if let Some(v) = t.get("journal")
                && let Some(s) = cx.string(v, "fleet.journal")
            {
                if s.starts_with("postgres://") || s.starts_with("postgresql://") {
                    inv.journal = JournalTarget::Postgres(s.to_string());
                } else {
                    cx.error(
                        sp(v),
                        "`fleet.journal` must be a postgres:// URL",
                        Some(
                            "omit it to keep the history in the controller's state directory"
                                .into(),
                        ),
                    );
                }
            }
            if let Some(v) = t.get("parallel") {
                match v.get_ref() {
                    DeValue::Integer(i) if int(i).is_some_and(|n| n >= 1) => {
                        inv.parallel = int(i).unwrap_or(1) as usize
                    }
                    _ => cx.type_error(v, "fleet.parallel", "an integer, at least 1"),
                }
            }
        }
        if let Some(t) = root.get("ssh").and_then(|v| cx.table(v, "ssh")) {
            cx.keys(t, &SSH, "in [ssh]");
            if let Some(v) = t.get("config")
                && let Some(s) = cx.string(v, "ssh.config")
            {
                // `~/` as ssh itself reads it in its own options.
                let p = match (s.strip_prefix("~/"), std::env::var_os("HOME")) {
                    (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
                    _ => PathBuf::from(s),
                };
                inv.ssh_config = Some(if p.is_relative() {
                    file.parent().unwrap_or(Path::new(".")).join(p)
                } else {
                    p
                });
            }
        }
        if let Some(t) = root.get("rollout").and_then(|v| cx.table(v, "rollout")) {
            cx.keys(t, &ROLLOUT, "in [rollout]");
            if let Some(v) = t.get("batches")
                && let Some(b) = cx.batches(v)
            {
                inv.batches = b;
            }
            if let Some(v) = t.get("max_failures") {
                match v.get_ref() {
                    DeValue::Integer(i) if int(i).is_some_and(|n| n >= 0) => {
                        inv.max_failures = int(i).unwrap_or(0) as usize
                    }
                    _ => cx.type_error(v, "rollout.max_failures", "an integer, at least 0"),
                }
            }
        }
        let mut ansible = false;
        if let Some(v) = root
            .get("fleet")
            .and_then(|f| f.get_ref().as_table())
            .and_then(|t| t.get("ansible"))
            && let Some(s) = cx.string(v, "fleet.ansible")
        {
            ansible = true;
            for k in ["hosts", "groups"] {
                if let Some((k, _)) = root.get_key_value(k) {
                    cx.error(
                        sp(k),
                        format!("[{}] and `fleet.ansible` both list hosts", k.get_ref()),
                        Some("keep one list: remove this table, or `ansible` in [fleet]".into()),
                    );
                }
            }
            let p = file.parent().unwrap_or(Path::new(".")).join(s);
            match super::ansible::load(&p) {
                Ok(a) => {
                    inv.groups = a.groups;
                    inv.hosts = a.hosts;
                }
                Err(e) => cx.errors.extend(e),
            }
        }
        let mut group_params: BTreeMap<String, BTreeMap<String, (String, Span)>> = BTreeMap::new();
        if let Some(t) = root.get("groups").and_then(|v| cx.table(v, "groups")) {
            for (k, v) in entries(t) {
                let name = k.get_ref().to_string();
                if !is_ident(&name) {
                    cx.error(
                        sp(k),
                        format!("group name `{name}` must be lowercase letters, digits, - and _"),
                        None,
                    );
                }
                let label = format!("groups.{name}");
                let Some(g) = cx.table(v, &label) else {
                    continue;
                };
                cx.keys(g, &GROUP, &format!("in [{label}]"));
                let params = g
                    .get("params")
                    .map(|p| cx.params(p, &format!("{label}.params")))
                    .unwrap_or_default();
                inv.groups.push(name.clone());
                group_params.insert(name, params);
            }
        }
        match root.get("hosts") {
            None if ansible => {}
            None => cx.plain(
                "the inventory has no [hosts]",
                "add one table per host: [hosts.web1] ssh = \"root@web1.example.org\", or ansible = \"hosts.yml\" in [fleet]",
            ),
            Some(v) => {
                if let Some(t) = cx.table(v, "hosts") {
                    for (k, v) in entries(t) {
                        if let Some(h) = cx.host(k.get_ref(), sp(k), v, &inv.groups, &group_params)
                        {
                            inv.hosts.push(h);
                        }
                    }
                    if t.is_empty() {
                        cx.error(sp(v), "[hosts] is empty", None);
                    }
                }
            }
        }
        if cx.errors.is_empty() {
            Ok(inv)
        } else {
            cx.errors.sort_by_key(|d| (d.line, d.column));
            Err(cx.errors)
        }
    }

    /// The hosts `--hosts` names (host or group names; "all"), in the
    /// inventory's order. Empty `sel` means all.
    pub fn select(&self, sel: &[String]) -> Result<Vec<&Host>, Vec<Diagnostic>> {
        let file = self.file.display().to_string();
        if sel.is_empty() || sel.iter().any(|s| s == "all") {
            return Ok(self.hosts.iter().collect());
        }
        for s in sel {
            let known = self.hosts.iter().any(|h| &h.name == s) || self.groups.contains(s);
            if !known {
                let names: Vec<&str> = self
                    .hosts
                    .iter()
                    .map(|h| h.name.as_str())
                    .chain(self.groups.iter().map(String::as_str))
                    .collect();
                let mut hint = format!("hosts and groups: {}", list(names.iter().copied()));
                if let Some(m) = suggest(s, names.iter().copied()) {
                    hint = format!("did you mean `{m}`? {hint}");
                }
                return Err(vec![Diagnostic::plain(
                    file,
                    format!("--hosts: `{s}` is no host or group of the inventory"),
                    Some(hint),
                )]);
            }
        }
        let picked: Vec<&Host> = self
            .hosts
            .iter()
            .filter(|h| sel.iter().any(|s| &h.name == s || h.groups.contains(s)))
            .collect();
        if picked.is_empty() {
            return Err(vec![Diagnostic::plain(
                file,
                format!("--hosts {} names no host", sel.join(",")),
                Some("add hosts to the group, or name hosts".into()),
            )]);
        }
        Ok(picked)
    }
}

struct Cx<'a> {
    file: String,
    source: &'a str,
    errors: Vec<Diagnostic>,
}

impl Cx<'_> {
    fn error(&mut self, span: Span, message: impl Into<String>, hint: Option<String>) {
        let d = Diagnostic::at(&self.file, self.source, span, message, hint);
        self.errors.push(d);
    }

    fn plain(&mut self, message: &str, hint: &str) {
        let d = Diagnostic::plain(&self.file, message, Some(hint.to_string()));
        self.errors.push(d);
    }

    fn type_error(&mut self, v: &Val<'_>, label: &str, expected: &str) {
        self.error(
            sp(v),
            format!(
                "`{label}` must be {expected}, found {}",
                describe(v.get_ref())
            ),
            Some(format!("change it to {expected}")),
        );
    }

    fn keys(&mut self, t: &DeTable<'_>, table: &Table, place: &str) {
        let allowed = table.names();
        for (k, _) in entries(t) {
            if allowed.contains(&k.get_ref().as_ref()) {
                continue;
            }
            let mut hint = format!("valid keys {place}: {}", list(allowed.iter().copied()));
            if let Some(s) = suggest(k.get_ref(), allowed.iter().copied()) {
                hint = format!("did you mean `{s}`? {hint}");
            }
            self.error(
                sp(k),
                format!("unknown key `{}` {place}", k.get_ref()),
                Some(hint),
            );
        }
    }

    fn table<'t, 'i>(&mut self, v: &'t Val<'i>, label: &str) -> Option<&'t DeTable<'i>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => {
                self.type_error(v, label, "a table");
                None
            }
        }
    }

    fn string<'t>(&mut self, v: &'t Val<'_>, label: &str) -> Option<&'t str> {
        match v.get_ref() {
            DeValue::String(s) if !s.trim().is_empty() => Some(s),
            _ => {
                self.type_error(v, label, "a string that is not empty");
                None
            }
        }
    }

    fn batches(&mut self, v: &Val<'_>) -> Option<Vec<BatchSize>> {
        let expected = "a count (1), a share (\"50%\") or \"rest\"";
        let DeValue::Array(items) = v.get_ref() else {
            self.type_error(
                v,
                "rollout.batches",
                "an array such as [1, \"50%\", \"rest\"]",
            );
            return None;
        };
        if items.is_empty() {
            self.type_error(
                v,
                "rollout.batches",
                "an array such as [1, \"50%\", \"rest\"]",
            );
            return None;
        }
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let b = match item.get_ref() {
                DeValue::Integer(n) => int(n)
                    .filter(|n| *n >= 1)
                    .map(|n| BatchSize::Count(n as usize)),
                DeValue::String(s) if s == "rest" => Some(BatchSize::Rest),
                DeValue::String(s) => s
                    .strip_suffix('%')
                    .and_then(|p| p.trim().parse::<u8>().ok())
                    .filter(|p| (1..=100).contains(p))
                    .map(BatchSize::Percent),
                _ => None,
            };
            match b {
                Some(BatchSize::Rest) if i + 1 != items.len() => self.error(
                    sp(item),
                    "\"rest\" must be the last batch",
                    Some("remove the batches after it".into()),
                ),
                Some(b) => out.push(b),
                None => self.type_error(item, "each batch of `rollout.batches`", expected),
            }
        }
        Some(out)
    }

    fn params(&mut self, v: &Val<'_>, label: &str) -> BTreeMap<String, (String, Span)> {
        let mut out = BTreeMap::new();
        let Some(t) = self.table(v, label) else {
            return out;
        };
        for (k, v) in entries(t) {
            let value = match v.get_ref() {
                DeValue::String(s) => s.to_string(),
                DeValue::Integer(i) => i.to_string(),
                DeValue::Float(f) => f.to_string(),
                DeValue::Boolean(b) => b.to_string(),
                _ => {
                    self.type_error(
                        v,
                        &format!("{label}.{}", k.get_ref()),
                        "a string, number or boolean",
                    );
                    continue;
                }
            };
            out.insert(k.get_ref().to_string(), (value, sp(v)));
        }
        out
    }

    fn host(
        &mut self,
        name: &str,
        at: Span,
        v: &Val<'_>,
        groups: &[String],
        group_params: &BTreeMap<String, BTreeMap<String, (String, Span)>>,
    ) -> Option<Host> {
        if !is_ident(name) {
            self.error(
                at,
                format!("host name `{name}` must be lowercase letters, digits, - and _"),
                Some("the name is mend's; the destination goes in `ssh`".into()),
            );
        }
        let label = format!("hosts.{name}");
        let t = self.table(v, &label)?;
        self.keys(t, &HOST, &format!("in [{label}]"));
        let ssh = match t.get("ssh") {
            None => {
                self.error(
                    at,
                    format!("missing `ssh` in [{label}]"),
                    Some("add the destination: ssh = \"root@host.example.org\"".into()),
                );
                None
            }
            Some(v) => {
                let s = self.string(v, &format!("{label}.ssh"));
                if s.is_some_and(|s| s.starts_with('-')) {
                    self.error(
                        sp(v),
                        "an ssh destination cannot start with `-`",
                        Some("it would be read as an ssh option".into()),
                    );
                    None
                } else {
                    s.map(str::to_string)
                }
            }
        };
        let mend = t
            .get("mend")
            .and_then(|v| self.string(v, &format!("{label}.mend")))
            .unwrap_or("mend")
            .to_string();
        let mut host_groups = Vec::new();
        if let Some(v) = t.get("groups") {
            match v.get_ref() {
                DeValue::Array(items) => {
                    for item in items.iter() {
                        let DeValue::String(g) = item.get_ref() else {
                            self.type_error(
                                item,
                                &format!("each entry of `{label}.groups`"),
                                "a string",
                            );
                            continue;
                        };
                        if !groups.iter().any(|x| x == g.as_ref()) {
                            let mut hint = format!(
                                "declare it as [groups.{g}], or use one of: {}",
                                list(groups.iter().map(String::as_str))
                            );
                            if let Some(s) = suggest(g, groups.iter().map(String::as_str)) {
                                hint = format!("did you mean `{s}`? {hint}");
                            }
                            self.error(sp(item), format!("unknown group `{g}`"), Some(hint));
                            continue;
                        }
                        host_groups.push(g.to_string());
                    }
                }
                _ => self.type_error(v, &format!("{label}.groups"), "an array of strings"),
            }
        }
        // Group params, where two groups of this host must agree.
        let mut params: BTreeMap<String, String> = BTreeMap::new();
        let mut from: BTreeMap<String, &str> = BTreeMap::new();
        for g in &host_groups {
            for (k, (val, _)) in group_params.get(g).into_iter().flatten() {
                match params.get(k) {
                    Some(prev) if prev != val => {
                        let other = from.get(k).copied().unwrap_or("?");
                        self.error(
                            at,
                            format!(
                                "host `{name}`: groups `{other}` and `{g}` disagree on param `{k}` ({prev:?} vs {val:?})"
                            ),
                            Some(format!("set `{k}` in [{label}.params] to say which wins")),
                        );
                    }
                    _ => {
                        params.insert(k.clone(), val.clone());
                        from.insert(k.clone(), g);
                    }
                }
            }
        }
        if let Some(p) = t.get("params") {
            for (k, (val, _)) in self.params(p, &format!("{label}.params")) {
                params.insert(k, val);
            }
        }
        Some(Host {
            name: name.to_string(),
            ssh: ssh?,
            groups: host_groups,
            mend,
            params,
            refused: BTreeMap::new(),
        })
    }
}

/// Whether a TOML file is a fleet inventory rather than a runbook (for
/// `mend lint`): it has `[hosts]` and no `[runbook]`.
pub fn looks_like_inventory(source: &str) -> bool {
    match DeTable::parse(source) {
        Ok(t) => {
            let t = t.into_inner();
            let ansible = t
                .get("fleet")
                .and_then(|f| f.get_ref().as_table())
                .is_some_and(|f| f.get("ansible").is_some());
            (t.get("hosts").is_some() || ansible) && t.get("runbook").is_none()
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests;
