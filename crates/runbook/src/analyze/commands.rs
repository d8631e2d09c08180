//! [commands]: what each allows (argument patterns), who it runs as, its
//! environment and the files its reads may open.

use std::collections::BTreeMap;

use super::Ctx;
use crate::accounts;
use crate::diagnostic::Span;
use crate::model::{Command, RunAs};
use crate::shape::{Fields, Node};

impl Ctx<'_, '_> {
    /// Every declared command name, with its model when it is valid.
    pub(super) fn commands(
        &mut self,
        node: Option<&Node<'_, '_>>,
        lenient: bool,
    ) -> BTreeMap<String, Option<Command>> {
        let mut out = BTreeMap::new();
        for e in node.map(Node::entries).unwrap_or_default() {
            let command = e
                .node
                .as_ref()
                .and_then(|n| self.command(e.name, n, lenient));
            out.insert(e.name.to_string(), command);
        }
        out
    }

    fn command(&mut self, name: &str, n: &Node<'_, '_>, lenient: bool) -> Option<Command> {
        let t = n.fields();
        // The retired `args` was reported by the shape pass.
        let mut ok = t.written("args").is_none();
        let program = t
            .get("program")
            .and_then(|p| self.interp(p.str(), p.span, &p.label));
        let reads = t.get("reads").and_then(|v| self.arg_vectors(v));
        let changes = t.get("changes").and_then(|v| self.arg_vectors(v));
        if ok && t.written("reads").is_none() && t.written("changes").is_none() {
            self.report.error(
                n.span,
                format!("command `{name}` allows nothing: it has neither `reads` nor `changes`"),
                "add reads = [[\"status\", \"*\"]] for vectors that only look, changes = [[\"restart\", \"*\"]] for those that change something"
                    .to_string(),
            );
            ok = false;
        }
        let run_as = self.run_as(name, t, lenient);
        let env = self.command_env(name, t);
        let opens = t.get("opens").and_then(|o| {
            let mut out = Vec::new();
            for (s, span) in o.strings() {
                let p = self.interp(s, *span, &o.label)?;
                if !p.starts_with('/') {
                    self.report.error(
                        *span,
                        format!("`opens` of command `{name}`: {p:?} is not an absolute path"),
                        "name the file the program opens, e.g. \"/run/prosody/prosody.pid\""
                            .to_string(),
                    );
                    return None;
                }
                out.push(std::path::PathBuf::from(p));
            }
            Some(out)
        });
        if !ok {
            return None;
        }
        Some(Command {
            name: name.to_string(),
            program: program?,
            reads: reads?,
            changes: changes?,
            run_as: run_as?,
            env: env?,
            opens: opens?,
            span: n.span,
        })
    }

    /// `reads` or `changes`: each vector's patterns, `${param}` in them
    /// matched literally.
    fn arg_vectors(&mut self, node: &Node<'_, '_>) -> Option<Vec<Vec<String>>> {
        let mut out = Vec::new();
        let mut ok = true;
        for vector in node.vectors() {
            let patterns = self.patterns(&vector.words, &node.label);
            ok &= patterns.len() == vector.words.len();
            if let Some((_, init)) = patterns.split_last()
                && init.iter().any(|p| p == "**")
            {
                self.report.error(
                    vector.span,
                    "`**` can only be the last pattern of an argument vector",
                    "move it to the end (it matches any further arguments), or use `*` to match within one argument"
                        .to_string(),
                );
                ok = false;
                continue;
            }
            out.push(patterns);
        }
        ok.then_some(out)
    }

    /// A command's `user` and `group`, looked up on this machine. When
    /// `lenient` (mend lint), a user or group this machine lacks is a
    /// warning, not an error.
    fn run_as(&mut self, name: &str, t: &Fields<'_, '_>, lenient: bool) -> Option<Option<RunAs>> {
        let mut person = |key: &str| -> Option<Option<(String, Span)>> {
            if t.written(key).is_none() {
                return Some(None);
            }
            let n = t.get(key)?;
            Some(Some((self.interp(n.str(), n.span, &n.label)?, n.span)))
        };
        let user = person("user")?;
        let group = person("group")?;
        let (user, at) = match (user, group) {
            (None, None) => return Some(None),
            (None, Some((_, at))) => {
                self.report.error(
                    at,
                    format!("command `{name}` names a `group` but no `user`"),
                    "add user = \"NAME\": a group only replaces the primary group of the user the command runs as".to_string(),
                );
                return None;
            }
            (Some(u), g) => (u, g),
        };
        let (user, user_span) = user;
        let group_name = at.as_ref().map(|(g, _)| g.clone());
        let found = accounts::lookup(&user, group_name.as_deref());
        let problem = match &found {
            Ok(Some(_)) => None,
            Ok(None) => Some((
                user_span,
                format!("command `{name}` runs as user `{user}`, which does not exist on this machine"),
                "create the user, or set `user` to one that exists (`getent passwd NAME` finds it); commands never fall back to root".to_string(),
            )),
            Err(e) => Some((
                at.as_ref().map_or(user_span, |(_, s)| *s),
                format!("command `{name}`: {e}"),
                "create it, or name one that exists (`getent group NAME` finds it)".to_string(),
            )),
        };
        if let Some((span, message, hint)) = problem {
            if !lenient {
                self.report.error(span, message, hint);
                return None;
            }
            self.report.warn(span, message, hint);
        }
        Some(Some(RunAs {
            user,
            group: group_name,
            account: found.ok().flatten(),
        }))
    }

    /// A command's `env` table: names a program can read, values interpolated.
    fn command_env(&mut self, name: &str, t: &Fields<'_, '_>) -> Option<Vec<(String, String)>> {
        let mut out = Vec::new();
        let mut ok = true;
        for e in t.get("env")?.entries() {
            let key = e.name;
            let valid = key
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                self.report.error(
                    e.key,
                    format!("`env` of command `{name}`: {key:?} is not a variable name"),
                    "use letters, digits and `_`, not starting with a digit".to_string(),
                );
                ok = false;
                continue;
            }
            if key.starts_with("MEND_GRANT_") || key == "MEND_REHEARSAL" {
                self.report.error(
                    e.key,
                    format!("`env` of command `{name}` sets {key}, which mend sets itself"),
                    "remove it: MEND_GRANT_<NAME> is where each grant of the step is now (a rehearsal's copy during a rehearsal), MEND_REHEARSAL a rehearsal's directory for its stand-ins".to_string(),
                );
                ok = false;
                continue;
            }
            match &e.node {
                Some(v) => match self.interp(v.str(), v.span, &v.label) {
                    Some(text) => out.push((key.to_string(), text)),
                    None => ok = false,
                },
                None => ok = false,
            }
        }
        ok.then_some(out)
    }
}
