//! Ansible's YAML inventory (`all: {hosts, vars, children}`) and the
//! `group_vars/`, `host_vars/` files, read with saphyr's `MarkedYaml` so
//! every node keeps its line and column.

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};

use super::{At, NOT_SCALAR, Raw, Sources, Vars, expand, split_port};
use crate::diagnostic::Span;

const VAULT_HINT: &str = "mend does not decrypt Ansible Vault: give the secret to the runbook another way (a file its step reads), or keep it where mend does not read it";

struct Cx<'a> {
    s: &'a mut Sources,
    src: usize,
    text: &'a str,
}

impl<'a> Cx<'a> {
    /// saphyr counts characters; diagnostics want bytes.
    fn byte(&self, c: usize) -> usize {
        self.text
            .char_indices()
            .nth(c)
            .map(|(b, _)| b)
            .unwrap_or(self.text.len())
    }

    fn at(&self, y: &MarkedYaml) -> At {
        let start = self.byte(y.span.start.index());
        let end = self.byte(y.span.end.index()).max(start + 1);
        At {
            src: self.src,
            span: Span::new(start, end),
        }
    }

    fn error(&mut self, y: &MarkedYaml, message: impl Into<String>, hint: impl Into<String>) {
        let at = self.at(y);
        self.s.error(at, message, hint);
    }

    fn load(&mut self) -> Option<MarkedYaml<'a>> {
        if self.text.starts_with("$ANSIBLE_VAULT;") {
            let at = At {
                src: self.src,
                span: Span::new(0, 1),
            };
            self.s.error(at, "a vault-encrypted file", VAULT_HINT);
            return None;
        }
        match MarkedYaml::load_from_str(self.text) {
            Ok(mut docs) if !docs.is_empty() => Some(docs.swap_remove(0)),
            Ok(_) => None,
            Err(e) => {
                let b = self.byte(e.marker().index());
                let at = At {
                    src: self.src,
                    span: Span::new(b, b + 1),
                };
                self.s.error(
                    at,
                    format!("invalid YAML: {}", e.info()),
                    "fix the YAML (ansible-inventory -i FILE --list reads the same file)",
                );
                None
            }
        }
    }

    /// A key or name.
    fn name(&mut self, y: &MarkedYaml) -> Option<String> {
        match &y.data {
            YamlData::Value(Scalar::String(v)) => Some(v.to_string()),
            YamlData::Value(Scalar::Integer(i)) => Some(i.to_string()),
            YamlData::Representation(v, _, None) => Some(v.to_string()),
            _ => {
                self.error(y, "expected a name here", "write a plain name");
                None
            }
        }
    }

    /// A variable's value as a parameter string; vault, collections and
    /// nulls refused.
    fn scalar(&mut self, key: &str, y: &MarkedYaml) -> Option<String> {
        let what = match &y.data {
            YamlData::Value(Scalar::String(v)) => return Some(v.to_string()),
            YamlData::Value(Scalar::Integer(i)) => return Some(i.to_string()),
            YamlData::Value(Scalar::Boolean(b)) => return Some(b.to_string()),
            YamlData::Value(Scalar::FloatingPoint(f)) => return Some(f.to_string()),
            YamlData::Representation(v, _, None) => return Some(v.to_string()),
            YamlData::Tagged(tag, inner) if tag.suffix == "unsafe" => {
                return self.scalar(key, inner);
            }
            YamlData::Representation(v, _, Some(tag)) if tag.suffix == "unsafe" => {
                return Some(v.to_string());
            }
            YamlData::Tagged(tag, _) | YamlData::Representation(_, _, Some(tag))
                if tag.suffix == "vault" =>
            {
                self.error(
                    y,
                    format!("variable `{key}` is vault-encrypted"),
                    VAULT_HINT,
                );
                return None;
            }
            YamlData::Value(Scalar::Null) => {
                self.error(
                    y,
                    format!("variable `{key}` has no value"),
                    "give it a value, or remove it",
                );
                return None;
            }
            // Kept, marked: refused only if a runbook declares it.
            YamlData::Sequence(_) => return Some(format!("{NOT_SCALAR}a list")),
            YamlData::Mapping(_) => return Some(format!("{NOT_SCALAR}a dict")),
            YamlData::Tagged(..) | YamlData::Representation(..) => "a tagged value",
            _ => "not a plain value",
        };
        self.error(
            y,
            format!("variable `{key}` is {what}: a mend parameter is a string, number or boolean"),
            "make it a scalar, or keep it where mend does not read it",
        );
        None
    }

    /// A mapping of variables (null: none).
    fn vars(&mut self, y: &MarkedYaml, place: &str) -> Vars {
        let mut out = Vars::new();
        match &y.data {
            YamlData::Value(Scalar::Null) => {}
            YamlData::Mapping(m) => {
                for (k, v) in m {
                    let Some(k) = self.name(k) else { continue };
                    if let Some(val) = self.scalar(&k, v) {
                        out.insert(k, (val, self.at(v)));
                    }
                }
            }
            _ => self.error(
                y,
                format!("{place} must be a mapping of name: value"),
                "write `name: value` lines",
            ),
        }
        out
    }

    fn group(&mut self, raw: &mut Raw, name: &str, y: &MarkedYaml) {
        raw.group(name);
        let m = match &y.data {
            YamlData::Value(Scalar::Null) => return,
            YamlData::Mapping(m) => m,
            _ => {
                self.error(
                    y,
                    format!("group `{name}` must be a mapping of hosts, vars and children"),
                    "write `hosts:`, `vars:`, `children:` under it",
                );
                return;
            }
        };
        for (k, v) in m {
            let Some(key) = self.name(k) else { continue };
            let entries = match (&v.data, key.as_str()) {
                (_, "vars") => {
                    let vars = self.vars(v, &format!("`vars` of group `{name}`"));
                    raw.group(name).vars.extend(vars);
                    continue;
                }
                (YamlData::Value(Scalar::Null), "hosts" | "children") => continue,
                (YamlData::Mapping(e), "hosts" | "children") => e,
                (_, "hosts" | "children") => {
                    self.error(
                        v,
                        format!("`{key}` of group `{name}` must be a mapping"),
                        "one `name:` line per entry",
                    );
                    continue;
                }
                _ => {
                    self.error(
                        k,
                        format!("unknown key `{key}` in group `{name}`"),
                        "valid keys in a group: hosts, vars, children",
                    );
                    continue;
                }
            };
            for (ek, ev) in entries {
                let Some(en) = self.name(ek) else { continue };
                let eat = self.at(ek);
                if key == "children" {
                    raw.group(&en);
                    raw.group(name).children.push((en.clone(), eat));
                    self.group(raw, &en, ev);
                    continue;
                }
                let mut vars = self.vars(ev, &format!("host `{en}`"));
                let (pat, port) = split_port(&en);
                if let Some(p) = port {
                    vars.insert("ansible_port".into(), (p.to_string(), eat));
                }
                match expand(pat) {
                    Ok(hosts) => {
                        for h in hosts {
                            raw.add_host(name, &h, eat, &vars);
                        }
                    }
                    Err(e) => self.error(ek, e, "write a range as [01:04] or [a:c]"),
                }
            }
        }
    }
}

pub fn inventory(s: &mut Sources, src: usize) -> Raw {
    let text = s.text(src).to_string();
    let mut cx = Cx {
        s,
        src,
        text: &text,
    };
    let mut raw = Raw::default();
    let Some(doc) = cx.load() else {
        return raw;
    };
    let YamlData::Mapping(top) = &doc.data else {
        cx.error(
            &doc,
            "an Ansible YAML inventory is a mapping of groups",
            "start with `all:`",
        );
        return raw;
    };
    for (k, v) in top {
        let Some(g) = cx.name(k) else { continue };
        if g == "plugin" {
            cx.error(
                k,
                "an inventory plugin file: mend reads static inventories only",
                "export it: ansible-inventory -i FILE --list --yaml > hosts.yml, and point mend at hosts.yml",
            );
            return raw;
        }
        cx.group(&mut raw, &g, v);
    }
    raw
}

/// A `group_vars/` or `host_vars/` file: a mapping of variables.
pub fn vars_file(s: &mut Sources, src: usize) -> Vars {
    let text = s.text(src).to_string();
    let mut cx = Cx {
        s,
        src,
        text: &text,
    };
    match cx.load() {
        Some(doc) => cx.vars(&doc, "a vars file"),
        None => Vars::new(),
    }
}
