//! An Ansible inventory as the fleet's host list, so operators keep one
//! list of hosts. INI ([`ini`]) and YAML ([`yaml`]) read into the same
//! [`Raw`] form, then [`Raw::resolve`] applies Ansible's rules: every group
//! is under `all`, hosts in no group are in `ungrouped`, and variables
//! layer as Ansible's precedence says (inventory group vars by depth then
//! name, `group_vars/` files the same way, inventory host vars,
//! `host_vars/` files). `ansible_host`/`ansible_user`/`ansible_port` make
//! the ssh destination; `mend_path` is mend's path on the host; every other
//! variable is a parameter (the fleet passes only the ones a runbook
//! declares). What mend cannot honour — vault, non-scalar values, inventory
//! plugins, group cycles — is refused at its file:line:column.

pub mod ini;
pub mod yaml;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::inventory::Host;
use crate::diagnostic::{Diagnostic, Span};

/// Where something was written: a file of [`Sources`] and a byte span.
#[derive(Clone, Copy, Debug)]
pub struct At {
    pub src: usize,
    pub span: Span,
}

/// The files read (inventory, vars files) and the errors found in them.
#[derive(Default)]
pub struct Sources {
    files: Vec<(String, String)>,
    pub errors: Vec<Diagnostic>,
}

impl Sources {
    pub fn add(&mut self, name: String, text: String) -> usize {
        self.files.push((name, text));
        self.files.len() - 1
    }
    pub fn text(&self, src: usize) -> &str {
        &self.files[src].1
    }
    pub fn error(&mut self, at: At, message: impl Into<String>, hint: impl Into<String>) {
        let (name, text) = &self.files[at.src];
        let d = Diagnostic::at(name, text, at.span, message, Some(hint.into()));
        self.errors.push(d);
    }
    pub fn plain(&mut self, file: &Path, message: impl Into<String>, hint: impl Into<String>) {
        let d = Diagnostic::plain(file.display().to_string(), message, Some(hint.into()));
        self.errors.push(d);
    }
}

/// A variable's value: a scalar, or [`NOT_SCALAR`] and what it is (`a
/// list`, `a dict`), kept so precedence applies before it is refused.
pub type Vars = BTreeMap<String, (String, At)>;

/// Marks a value that is a list or dict (no parameter can be one).
pub const NOT_SCALAR: char = '\0';

#[derive(Default, Debug)]
pub struct Group {
    pub hosts: Vec<String>,
    pub children: Vec<(String, At)>,
    pub vars: Vars,
}

/// An inventory as written, before Ansible's rules are applied.
#[derive(Default, Debug)]
pub struct Raw {
    /// Group names in the order first seen.
    pub order: Vec<String>,
    pub groups: BTreeMap<String, Group>,
    /// Host names in the order first seen: the rollout order.
    pub hosts: Vec<String>,
    pub host_at: BTreeMap<String, At>,
    pub host_vars: BTreeMap<String, Vars>,
}

impl Raw {
    pub fn group(&mut self, name: &str) -> &mut Group {
        if !self.groups.contains_key(name) {
            self.order.push(name.to_string());
        }
        self.groups.entry(name.to_string()).or_default()
    }

    pub fn add_host(&mut self, group: &str, name: &str, at: At, vars: &Vars) {
        if !self.host_at.contains_key(name) {
            self.hosts.push(name.to_string());
            self.host_at.insert(name.to_string(), at);
        }
        let g = self.group(group);
        if !g.hosts.iter().any(|h| h == name) {
            g.hosts.push(name.to_string());
        }
        let hv = self.host_vars.entry(name.to_string()).or_default();
        for (k, v) in vars {
            hv.insert(k.clone(), v.clone());
        }
    }
}

/// `www[01:03].example.org` -> www01, www02, www03 (numbers keep the
/// start's width; `[a:c]` letters; `[1:9:2]` a stride), as Ansible.
pub fn expand(pattern: &str) -> Result<Vec<String>, String> {
    let Some(open) = pattern.find('[') else {
        return Ok(vec![pattern.to_string()]);
    };
    let close = pattern[open..]
        .find(']')
        .ok_or("unclosed `[` in a host range")?
        + open;
    let inner = &pattern[open + 1..close];
    let mut parts = inner.split(':');
    let (a, b) = match (parts.next(), parts.next()) {
        (Some(a), Some(b)) => (a, b),
        _ => return Err(format!("`[{inner}]` is no host range: write [start:end]")),
    };
    let step = match parts.next() {
        None => 1,
        Some(s) => s.parse::<usize>().ok().filter(|s| *s >= 1).ok_or(format!(
            "`[{inner}]`: the stride must be a number, at least 1"
        ))?,
    };
    let items: Vec<String> = match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(x), Ok(y)) if x <= y => (x..=y)
            .step_by(step)
            .map(|n| format!("{n:0w$}", w = a.len()))
            .collect(),
        _ if a.len() == 1 && b.len() == 1 && a.as_bytes()[0].is_ascii_alphabetic() && a <= b => {
            (a.as_bytes()[0]..=b.as_bytes()[0])
                .step_by(step)
                .map(|c| (c as char).to_string())
                .collect()
        }
        _ => {
            return Err(format!(
                "`[{inner}]` is no host range: numbers or single letters, start <= end"
            ));
        }
    };
    let (pre, post) = (&pattern[..open], &pattern[close + 1..]);
    let mut out = vec![];
    for i in items {
        out.extend(expand(&format!("{pre}{i}{post}"))?);
    }
    Ok(out)
}

/// `host:port` -> (host, port); a colon inside a range does not count, and
/// more than one colon outside is an IPv6 address, not a port.
pub fn split_port(pattern: &str) -> (&str, Option<&str>) {
    let mut depth = 0;
    let mut colons = vec![];
    for (i, c) in pattern.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ':' if depth == 0 => colons.push(i),
            _ => {}
        }
    }
    match colons.as_slice() {
        [i] => (&pattern[..*i], Some(&pattern[i + 1..])),
        _ => (pattern, None),
    }
}

/// Variables that make the destination, not parameters.
const CONNECTION: &[&str] = &[
    "ansible_host",
    "ansible_ssh_host",
    "ansible_user",
    "ansible_ssh_user",
    "ansible_port",
    "ansible_ssh_port",
    "mend_path",
];

/// The hosts and group names of an Ansible inventory file.
pub struct Resolved {
    pub groups: Vec<String>,
    pub hosts: Vec<Host>,
}

/// Read an inventory (YAML for .yml/.yaml/.json, INI otherwise, as
/// Ansible decides) and the `group_vars/`, `host_vars/` next to it.
pub fn load(file: &Path) -> Result<Resolved, Vec<Diagnostic>> {
    let mut s = Sources::default();
    let text = std::fs::read_to_string(file).map_err(|e| {
        vec![Diagnostic::plain(
            file.display().to_string(),
            format!("cannot read Ansible inventory {}: {e}", file.display()),
            Some("check the path (-i FILE, or `ansible` in [fleet])".into()),
        )]
    })?;
    let src = s.add(file.display().to_string(), text);
    let raw = if is_yaml(file) {
        yaml::inventory(&mut s, src)
    } else {
        ini::inventory(&mut s, src)
    };
    let mut res = None;
    if s.errors.is_empty() {
        let dir = file.parent().unwrap_or(Path::new("."));
        res = raw.resolve(&mut s, file, dir);
    }
    match res {
        Some(r) if s.errors.is_empty() => Ok(r),
        _ => Err(s.errors),
    }
}

fn is_yaml(file: &Path) -> bool {
    matches!(
        file.extension().and_then(|e| e.to_str()),
        Some("yml" | "yaml" | "json")
    )
}

/// `group_vars/NAME`, `NAME.yml`, `NAME.yaml`, `NAME.json`, and every such
/// file under a directory `NAME/` (sorted), as Ansible reads them.
fn vars_files(dir: &Path, kind: &str, name: &str) -> Vec<PathBuf> {
    let base = dir.join(kind);
    let mut out = vec![];
    for ext in ["", ".yml", ".yaml", ".json"] {
        let p = base.join(format!("{name}{ext}"));
        if p.is_file() {
            out.push(p);
        }
    }
    let d = base.join(name);
    if d.is_dir() {
        let mut stack = vec![d];
        let mut found = vec![];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_none_or(|e| matches!(e, "yml" | "yaml" | "json"))
                    && !p
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                {
                    found.push(p);
                }
            }
        }
        found.sort();
        out.extend(found);
    }
    out
}

fn read_vars(s: &mut Sources, dir: &Path, kind: &str, name: &str) -> Vars {
    let mut vars = Vars::new();
    for p in vars_files(dir, kind, name) {
        match std::fs::read_to_string(&p) {
            Ok(text) => {
                let src = s.add(p.display().to_string(), text);
                vars.extend(yaml::vars_file(s, src));
            }
            Err(e) => s.plain(
                &p,
                format!("cannot read {}: {e}", p.display()),
                "make it readable, or remove it",
            ),
        }
    }
    vars
}

impl Raw {
    /// Ansible's rules over the inventory as written; `None` after errors
    /// (in `s`).
    pub fn resolve(mut self, s: &mut Sources, file: &Path, dir: &Path) -> Option<Resolved> {
        if self.hosts.is_empty() {
            s.plain(
                file,
                "the Ansible inventory has no hosts",
                "add hosts under a group's `hosts:` (YAML) or a [group] section (INI)",
            );
            return None;
        }
        let ungrouped: Vec<String> = self
            .hosts
            .iter()
            .filter(|h| {
                !self
                    .groups
                    .iter()
                    .any(|(g, x)| g != "all" && g != "ungrouped" && x.hosts.contains(h))
            })
            .cloned()
            .collect();
        for h in ungrouped {
            let g = self.group("ungrouped");
            if !g.hosts.contains(&h) {
                g.hosts.push(h);
            }
        }
        self.group("all");
        // Cycles first: depth is meaningless in one.
        let mut bad = false;
        let names: Vec<String> = self.order.clone();
        for g in &names {
            if let Some((path, at)) = self.cycle(g, &mut vec![g.clone()]) {
                s.error(
                    at,
                    format!("group cycle: {}", path.join(" -> ")),
                    "a group cannot contain itself; remove one of these children",
                );
                bad = true;
                break;
            }
        }
        if bad {
            return None;
        }
        // Depth: all 0, a group no one lists as a child 1, else its
        // deepest parent's plus one.
        let mut depth: BTreeMap<&str, usize> = BTreeMap::new();
        fn depth_of<'a>(raw: &'a Raw, g: &'a str, memo: &mut BTreeMap<&'a str, usize>) -> usize {
            if g == "all" {
                return 0;
            }
            if let Some(d) = memo.get(g) {
                return *d;
            }
            let d = raw
                .groups
                .iter()
                .filter(|(p, x)| *p != "all" && x.children.iter().any(|(c, _)| c == g))
                .map(|(p, _)| depth_of(raw, p, memo) + 1)
                .max()
                .unwrap_or(1);
            memo.insert(g, d);
            d
        }
        for g in &self.order {
            depth_of(&self, g, &mut depth);
        }
        let mut group_files: BTreeMap<String, Vars> = BTreeMap::new();
        for g in &self.order {
            group_files.insert(g.clone(), read_vars(s, dir, "group_vars", g));
        }
        let mut hosts = vec![];
        for name in &self.hosts {
            let at = self.host_at[name];
            if !valid_host(name) {
                s.error(
                    at,
                    format!("host name `{name}`: letters, digits, `.`, `-` and `_`, starting with a letter or digit"),
                    "name the host with an alias and give the address as ansible_host: `web1 ansible_host=ADDRESS`",
                );
                continue;
            }
            let mut groups: Vec<&String> = self
                .order
                .iter()
                .filter(|g| *g == "all" || self.contains(g, name, &mut BTreeSet::new()))
                .collect();
            groups.sort_by_key(|g| (depth.get(g.as_str()).copied().unwrap_or(0), g.as_str()));
            let mut vars = Vars::new();
            for g in &groups {
                vars.extend(self.groups[*g].vars.clone());
            }
            for g in &groups {
                vars.extend(group_files[*g].clone());
            }
            vars.extend(self.host_vars.get(name).cloned().unwrap_or_default());
            vars.extend(read_vars(s, dir, "host_vars", name));
            if let Some(h) = host(s, name, vars, &groups) {
                hosts.push(h);
            }
        }
        // `ungrouped` last whichever form named it first, so INI and YAML agree.
        let mut groups: Vec<String> = self
            .order
            .into_iter()
            .filter(|g| g != "all" && g != "ungrouped")
            .collect();
        if self
            .groups
            .get("ungrouped")
            .is_some_and(|g| !g.hosts.is_empty())
        {
            groups.push("ungrouped".into());
        }
        Some(Resolved { groups, hosts })
    }

    /// A path from `path`'s first group back to itself, with the child entry
    /// that closes it.
    fn cycle(&self, g: &str, path: &mut Vec<String>) -> Option<(Vec<String>, At)> {
        for (c, at) in self.groups.get(g).map(|x| &x.children[..]).unwrap_or(&[]) {
            if c == &path[0] {
                let mut p = path.clone();
                p.push(c.clone());
                return Some((p, *at));
            }
            if path.contains(c) {
                continue; // a cycle not through path[0]: found from its own start
            }
            path.push(c.clone());
            let found = self.cycle(c, path);
            path.pop();
            if found.is_some() {
                return found;
            }
        }
        None
    }

    fn contains(&self, g: &str, h: &str, seen: &mut BTreeSet<String>) -> bool {
        if !seen.insert(g.to_string()) {
            return false;
        }
        let Some(grp) = self.groups.get(g) else {
            return false;
        };
        grp.hosts.iter().any(|x| x == h)
            || grp.children.iter().any(|(c, _)| self.contains(c, h, seen))
    }
}

fn valid_host(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// One host: its destination from the connection variables, the rest as
/// parameters.
fn host(s: &mut Sources, name: &str, mut vars: Vars, groups: &[&String]) -> Option<Host> {
    let mut take = |a: &str, b: &str| {
        let x = vars.remove(a);
        let y = vars.remove(b);
        x.or(y)
    };
    let addr = take("ansible_host", "ansible_ssh_host");
    let user = take("ansible_user", "ansible_ssh_user");
    let port = take("ansible_port", "ansible_ssh_port");
    let mend = vars.remove("mend_path");
    let mut ok = true;
    let addr_s = addr
        .as_ref()
        .map(|(v, _)| v.clone())
        .unwrap_or(name.to_string());
    for (what, v) in [("ansible_host", &addr), ("ansible_user", &user)] {
        if let Some((v, vat)) = v
            && (v.is_empty()
                || v.starts_with('-')
                || v.contains(char::is_whitespace)
                || v.contains('@') && what == "ansible_user")
        {
            s.error(
                *vat,
                format!("host `{name}`: {what} {v:?} cannot be given to ssh"),
                "no spaces, no leading `-`, not empty",
            );
            ok = false;
        }
    }
    if let Some((p, pat)) = &port
        && p.parse::<u16>().ok().filter(|p| *p >= 1).is_none()
    {
        s.error(
            *pat,
            format!("host `{name}`: ansible_port {p:?} is not a port"),
            "a number from 1 to 65535",
        );
        ok = false;
    }
    if !ok {
        return None;
    }
    let user_at = user.map(|(u, _)| format!("{u}@")).unwrap_or_default();
    // A port goes in an ssh:// destination, which ssh (7.7 and later)
    // takes where a host goes: nothing else of ssh.rs changes.
    let ssh = match port {
        Some((p, _)) if addr_s.contains(':') => format!("ssh://{user_at}[{addr_s}]:{p}"),
        Some((p, _)) => format!("ssh://{user_at}{addr_s}:{p}"),
        None => format!("{user_at}{addr_s}"),
    };
    let mut params = BTreeMap::new();
    let mut refused = BTreeMap::new();
    for (k, (v, at)) in vars {
        if CONNECTION.contains(&k.as_str()) {
            continue;
        }
        match v.strip_prefix(NOT_SCALAR) {
            Some(what) => {
                let (file, text) = &s.files[at.src];
                let d = Diagnostic::at(
                    file,
                    text,
                    at.span,
                    format!(
                        "variable `{k}` is {what}: a mend parameter is a string, number or boolean"
                    ),
                    Some("make it a scalar, or give the parameter with --set".into()),
                );
                refused.insert(k, d);
            }
            None => {
                params.insert(k, v);
            }
        }
    }
    Some(Host {
        name: name.to_string(),
        ssh,
        groups: groups
            .iter()
            .filter(|g| g.as_str() != "all")
            .map(|g| g.to_string())
            .collect(),
        mend: mend.map(|(m, _)| m).unwrap_or_else(|| "mend".into()),
        params,
        refused,
    })
}

#[cfg(test)]
mod tests;
