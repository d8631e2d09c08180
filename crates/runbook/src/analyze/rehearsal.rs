//! [rehearsal]: stand-ins for declared commands, and a drill's budget.

use std::collections::BTreeMap;
use std::time::Duration;

use super::Ctx;
use crate::hints::{list, suggest};
use crate::model::{ARGS, Command, StandIn};
use crate::shape::Node;

impl Ctx<'_, '_> {
    pub(super) fn rehearsal(
        &mut self,
        node: Option<&Node<'_, '_>>,
        commands: &BTreeMap<String, Option<Command>>,
    ) -> (BTreeMap<String, StandIn>, Option<Duration>) {
        let mut out = BTreeMap::new();
        let Some(t) = node.map(Node::fields) else {
            return (out, None);
        };
        let budget = t.get("budget").and_then(|b| self.duration(b));
        for e in t.get("commands").map(Node::entries).unwrap_or_default() {
            let name = e.name;
            if !commands.contains_key(name) {
                let declared = commands.keys().map(|c| c.as_str());
                let mut hint = format!(
                    "stand-ins replace declared commands; declared commands: {}",
                    list(declared.clone())
                );
                if let Some(s) = suggest(name, declared) {
                    hint = format!("did you mean `{s}`? {hint}");
                }
                self.report.error(
                    e.key,
                    format!("rehearsal stand-in for command `{name}`, which the runbook does not declare"),
                    hint,
                );
            }
            let Some(n) = &e.node else {
                continue;
            };
            let st = n.fields();
            let program = st
                .get("program")
                .and_then(|p| self.interp(p.str(), p.span, &p.label));
            let args = match st.written("args") {
                None => Some(None),
                Some(_) => st.get("args").and_then(|a| self.stand_in_args(a)).map(Some),
            };
            if let (Some(program), Some(args)) = (program, args) {
                out.insert(name.to_string(), StandIn { program, args });
            }
        }
        (out, budget)
    }

    /// A stand-in's `args`: `${args}` alone is the call's own arguments
    /// (kept as the marker, spliced when the stand-in runs); every other
    /// entry is interpolated.
    fn stand_in_args(&mut self, a: &Node<'_, '_>) -> Option<Vec<String>> {
        let mut out = Vec::new();
        let mut ok = true;
        for &(s, span) in a.strings() {
            if s == ARGS {
                out.push(s.to_string());
            } else if s.contains(ARGS) {
                self.report.error(
                    span,
                    "`${args}` must be an entry of its own in a stand-in's `args`",
                    "write it alone, e.g. args = [\"-c\", \"script\", \"sh\", \"${args}\"]: it stands for every original argument, each its own".to_string(),
                );
                ok = false;
            } else {
                match self.interp(s, span, &a.label) {
                    Some(v) => out.push(v),
                    None => ok = false,
                }
            }
        }
        ok.then_some(out)
    }
}
