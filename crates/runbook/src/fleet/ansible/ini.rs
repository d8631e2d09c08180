//! Ansible's INI inventory: `[group]` host lines with inline `k=v`,
//! `[group:vars]`, `[group:children]`, `host:port`, `cdn[01:04]` ranges.
//! Hand-written: the format is line-based and small, and no INI crate knows
//! its host lines.

use super::{At, NOT_SCALAR, Raw, Sources, Vars, expand, split_port};
use crate::diagnostic::Span;

enum Section {
    Hosts,
    Vars,
    Children,
}

pub fn inventory(s: &mut Sources, src: usize) -> Raw {
    let text = s.text(src).to_string();
    let mut raw = Raw::default();
    let (mut group, mut section) = ("ungrouped".to_string(), Section::Hosts);
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let line = line.trim_end_matches(['\n', '\r']);
        let lead = line.len() - line.trim_start().len();
        let t = line.trim();
        let at = |from: usize, len: usize| At {
            src,
            span: Span::new(start + from, start + from + len.max(1)),
        };
        if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
            continue;
        }
        if let Some(inner) = t.strip_prefix('[') {
            let Some(inner) = inner
                .split(['#', ';'])
                .next()
                .map(str::trim_end)
                .and_then(|i| i.strip_suffix(']'))
            else {
                s.error(
                    at(lead, t.len()),
                    "a section header is [group], [group:vars] or [group:children]",
                    "close it with `]`",
                );
                continue;
            };
            let (g, kind) = inner.split_once(':').unwrap_or((inner, "hosts"));
            section = match kind {
                "hosts" => Section::Hosts,
                "vars" => Section::Vars,
                "children" => Section::Children,
                _ => {
                    s.error(
                        at(lead + 2 + g.len(), kind.len()),
                        format!("unknown section kind `:{kind}`"),
                        "use [group], [group:vars] or [group:children]",
                    );
                    continue;
                }
            };
            if g.is_empty() || g.contains(char::is_whitespace) {
                s.error(
                    at(lead, t.len()),
                    format!("bad group name `{g}`"),
                    "letters, digits and _",
                );
                continue;
            }
            group = g.to_string();
            raw.group(&group);
            continue;
        }
        match section {
            Section::Children => {
                let name = t.split([' ', '\t', '#']).next().unwrap_or(t);
                raw.group(name);
                raw.group(&group)
                    .children
                    .push((name.to_string(), at(lead, name.len())));
            }
            Section::Vars => {
                let Some(eq) = t.find('=') else {
                    s.error(
                        at(lead, t.len()),
                        format!("expected key=value in [{group}:vars]"),
                        "write it as name=value",
                    );
                    continue;
                };
                let key = t[..eq].trim();
                let vstart = lead + eq + 1;
                let v = &line[vstart..];
                let vlead = v.len() - v.trim_start().len();
                if let Some(value) = value(
                    s,
                    at(vstart + vlead, v.trim().len()),
                    key,
                    strip_comment(v.trim()),
                ) {
                    raw.group(&group)
                        .vars
                        .insert(key.to_string(), (value, at(vstart + vlead, v.trim().len())));
                }
            }
            Section::Hosts => {
                let words = words(line);
                let Some(&(hs, pattern)) = words.first() else {
                    continue;
                };
                let mut vars = Vars::new();
                for &(ws, w) in &words[1..] {
                    let Some((k, v)) = w.split_once('=') else {
                        s.error(
                            at(ws, w.len()),
                            format!("expected key=value after host `{pattern}`, found `{w}`"),
                            "write host variables as name=value",
                        );
                        continue;
                    };
                    let vat = at(ws + k.len() + 1, v.len());
                    if let Some(value) = value(s, vat, k, v) {
                        vars.insert(k.to_string(), (value, vat));
                    }
                }
                let (pat, port) = split_port(pattern);
                if let Some(p) = port {
                    vars.insert(
                        "ansible_port".into(),
                        (p.to_string(), at(hs + pat.len() + 1, p.len())),
                    );
                }
                match expand(pat) {
                    Ok(hosts) => {
                        for h in hosts {
                            raw.add_host(&group, &h, at(hs, pattern.len()), &vars);
                        }
                    }
                    Err(e) => s.error(
                        at(hs, pattern.len()),
                        e,
                        "write a range as [01:04] or [a:c]",
                    ),
                }
            }
        }
    }
    raw
}

/// A value as Ansible's INI reader keeps it when it is a scalar: quotes
/// removed; a list or dict (which Ansible would evaluate) marked
/// [`NOT_SCALAR`], refused where a runbook declares it.
fn value(s: &mut Sources, at: At, key: &str, v: &str) -> Option<String> {
    let v = v.trim();
    if v.starts_with('[') || v.starts_with('{') {
        // Kept, marked: refused only if a runbook declares it.
        let _ = (s, at, key);
        return Some(format!("{NOT_SCALAR}a list or dict"));
    }
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return Some(v[1..v.len() - 1].to_string());
        }
    }
    Some(v.to_string())
}

/// ` # comment` at the end of a `:vars` value (outside quotes).
fn strip_comment(v: &str) -> &str {
    if v.starts_with(['"', '\'']) {
        return v;
    }
    match v.find(" #").or_else(|| v.find("\t#")) {
        Some(i) => v[..i].trim_end(),
        None => v,
    }
}

/// Shell-like words with their byte offsets in the line: quotes keep
/// spaces; `#` starting a word ends the line.
fn words(line: &str) -> Vec<(usize, &str)> {
    let mut out = vec![];
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if b[i] == b'#' {
            break;
        }
        let start = i;
        let mut quote = None;
        while i < b.len() {
            match (quote, b[i]) {
                (Some(q), c) if c == q => quote = None,
                (None, c @ (b'"' | b'\'')) => quote = Some(c),
                (None, c) if c.is_ascii_whitespace() => break,
                _ => {}
            }
            i += 1;
        }
        out.push((start, &line[start..i]));
    }
    out
}
