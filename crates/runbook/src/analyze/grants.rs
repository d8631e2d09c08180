//! [grants]: each grant's path, and grants that must not nest.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::Ctx;
use crate::model::{Access, Grant};
use crate::shape::Node;

/// The path with symlinks resolved when it exists (two names for one
/// directory overlap too), else with `.` and `..` taken as written.
fn real_path(p: &Path) -> PathBuf {
    if let Ok(real) = std::fs::canonicalize(p) {
        return real;
    }
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

fn access(n: &Node<'_, '_>) -> Access {
    match n.choice() {
        "read" => Access::Read,
        "write" => Access::Write,
        other => unreachable!("access {other:?}"),
    }
}

impl Ctx<'_, '_> {
    /// Every declared grant name, with its model when it is valid.
    pub(super) fn grants(
        &mut self,
        node: Option<&Node<'_, '_>>,
        cwd: Option<&Path>,
    ) -> BTreeMap<String, Option<Grant>> {
        let mut out = BTreeMap::new();
        for e in node.map(Node::entries).unwrap_or_default() {
            let grant = e.node.as_ref().and_then(|n| self.grant(e.name, n, cwd));
            out.insert(e.name.to_string(), grant);
        }
        out
    }

    fn grant(&mut self, name: &str, n: &Node<'_, '_>, cwd: Option<&Path>) -> Option<Grant> {
        let t = n.fields();
        let path = t.get("path").and_then(|p| {
            let s = self.interp(p.str(), p.span, &p.label)?;
            if s.is_empty() {
                self.report.error(
                    p.span,
                    format!("grant `{name}` has an empty `path`"),
                    "give a directory or file path (check the params it uses)".to_string(),
                );
                return None;
            }
            // Relative grant paths are resolved against the current working
            // directory, not the runbook's: their values usually come from
            // `--set` on the command line, where the user means "here".
            // Not canonicalized and not checked for existence.
            let path = PathBuf::from(s);
            Some(match cwd {
                Some(cwd) if path.is_relative() => cwd.join(path),
                _ => path,
            })
        });
        Some(Grant {
            name: name.to_string(),
            path: path?,
            access: access(t.get("access")?),
            disposable: t.get("disposable")?.bool(),
            span: n.span,
        })
    }

    /// Grants whose directories nest, when one of them is written: a step
    /// could change through one what another step only reads, and a
    /// rehearsal (which copies each grant on its own) or a rollback (which
    /// undoes per grant) would not see the other's changes.
    pub(super) fn overlapping_grants(&mut self, grants: &BTreeMap<String, Option<Grant>>) {
        let valid: Vec<(&Grant, PathBuf)> = grants
            .values()
            .flatten()
            .map(|g| (g, real_path(&g.path)))
            .collect();
        for (i, (a, pa)) in valid.iter().enumerate() {
            for (b, pb) in &valid[i + 1..] {
                if a.access == Access::Read && b.access == Access::Read {
                    continue;
                }
                let (outer, inner) = if pb.starts_with(pa) {
                    (a, b)
                } else if pa.starts_with(pb) {
                    (b, a)
                } else {
                    continue;
                };
                let how = |g: &Grant| match g.access {
                    Access::Read => "read",
                    Access::Write => "write",
                };
                let (first, later) = if a.span.start <= b.span.start {
                    (a, b)
                } else {
                    (b, a)
                };
                let place = if pa == pb {
                    format!("both are {}", pa.display())
                } else {
                    format!(
                        "{} is inside {}",
                        inner.path.display(),
                        outer.path.display()
                    )
                };
                self.report.error(
                    later.span,
                    format!(
                        "grants `{}` ({}) and `{}` ({}) overlap: {place}",
                        first.name,
                        how(first),
                        later.name,
                        how(later)
                    ),
                    "a step could change through one what is only read, rehearsed or rolled back through the other; give them separate directories, or use one grant"
                        .to_string(),
                );
            }
        }
    }
}
