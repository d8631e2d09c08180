//! The tables themselves: the runbook format, key by key.

use super::{DefaultValue, Kind, Place, Retired, Table, key, required, table};
use crate::model::{DEFAULT_ATTEMPTS, DEFAULT_MEMORY, DEFAULT_RETRY_DELAY, DEFAULT_TIMEOUT};

/// The whole file.
pub static TOP: Table = table(
    "runbook",
    Place::Top,
    &[
        required(
            "runbook",
            Kind::Table(&RUNBOOK),
            "one at the top: [runbook] with `name`, `version` and `summary`",
            "Who the runbook is: name, version, summary.",
        )
        .missing("the runbook has no [runbook] table"),
        key(
            "params",
            Kind::Named {
                of: &Kind::Either(&Kind::Scalar, &Kind::Table(&PARAM)),
                dotted: false,
            },
            "Values used as ${NAME} and set with --set NAME=VALUE: a default, or a table.",
        )
        .or(DefaultValue::Empty),
        key(
            "grants",
            Kind::Named {
                of: &Kind::Table(&GRANT),
                dotted: true,
            },
            "The directories steps may see: each step lists the ones it gets.",
        )
        .or(DefaultValue::Empty),
        key(
            "commands",
            Kind::Named {
                of: &Kind::Table(&COMMAND),
                dotted: true,
            },
            "The programs steps may run: the argument vectors that read and those that change.",
        )
        .or(DefaultValue::Empty),
        required(
            "steps",
            Kind::NonEmptyArray(&Kind::Table(&STEP)),
            "a [[steps]] table with `id` and `uses`",
            "The steps, run in order: [[steps]].",
        )
        .missing("the runbook has no steps"),
        key(
            "rehearsal",
            Kind::Table(&REHEARSAL),
            "What `mend rehearse` runs instead of the real commands.",
        )
        .or(DefaultValue::Empty),
    ],
);

pub static RUNBOOK: Table = table(
    "runbook",
    Place::Header,
    &[
        required(
            "name",
            Kind::Ident,
            "name = \"my-runbook\"",
            "Lowercase letters, digits, - and _.",
        ),
        required(
            "version",
            Kind::NonEmpty,
            "version = \"1.0.0\"",
            "The runbook's own version, e.g. \"1.0.0\".",
        ),
        required(
            "summary",
            Kind::NonEmpty,
            "summary = \"what this runbook does\"",
            "One line: what the runbook does.",
        ),
        key(
            "on_failure",
            Kind::Enum(&["rollback", "stop"]),
            "When a step fails: undo every step (default), or stop where it is.",
        )
        .or(DefaultValue::Choice("rollback")),
    ],
);

pub static PARAM: Table = table(
    "param",
    Place::Subject,
    &[
        key("default", Kind::Scalar, "The value unless --set gives one."),
        key(
            "required",
            Kind::Bool,
            "The run needs --set NAME=VALUE (no default allowed).",
        )
        .or(DefaultValue::Bool(false)),
        key("doc", Kind::Str, "One line for the operator."),
        key(
            "secret",
            Kind::Bool,
            "A password or token: shown as *** in every output (terminal, report, mend serve); kept in the journal for resume.",
        )
        .or(DefaultValue::Bool(false)),
    ],
);

pub static GRANT: Table = table(
    "grant",
    Place::Header,
    &[
        required(
            "path",
            Kind::NonEmpty,
            "path = \"/some/dir\"",
            "The directory; relative paths are taken from where mend runs.",
        ),
        required(
            "access",
            Kind::Enum(&["read", "write"]),
            "access = \"read\" or access = \"write\"",
            "read: steps may look; write: steps may plan changes in it.",
        ),
        key(
            "disposable",
            Kind::Bool,
            "Removals are unlinked at once, not kept for undo (caches).",
        )
        .or(DefaultValue::Bool(false)),
    ],
);

pub static COMMAND: Table = Table {
    retired: &[Retired {
        name: "args",
        why: "mend must know which argument vectors only look and which change something",
        help: "split it: `reads = [...]` for the vectors that only look (is-active, status), `changes = [...]` for those that change something (stop, dropdb); e.g. reads = [[\"is-active\", \"*\"]] and changes = [[\"stop\", \"*\"]]. probe runs only reads, an exec action only changes",
    }],
    ..table(
        "command",
        Place::Header,
        &[
            required(
                "program",
                Kind::NonEmpty,
                "program = \"/usr/bin/NAME\"",
                "The program, by absolute path or name on PATH.",
            ),
            key(
                "reads",
                Kind::ArgVectors,
                "Argument vectors that only look (is-active, status): what probe may run while planning and verifying, confined read-only. [[\"is-active\", \"*\"]] or [\"is-active *\"]; a last `**` allows any further arguments.",
            )
            .or(DefaultValue::Empty),
            key(
                "changes",
                Kind::ArgVectors,
                "Argument vectors that change something (stop, dropdb): only an exec action of the plan, or its undo, may run them.",
            )
            .or(DefaultValue::Empty),
            key(
                "user",
                Kind::NonEmpty,
                "Run as this user (its uid, gid and groups), never as root; it must exist on this machine.",
            ),
            key(
                "group",
                Kind::NonEmpty,
                "With `user`: run with this primary group instead of the user's.",
            ),
            key(
                "opens",
                Kind::Strings,
                "Existing files (absolute paths, ${param} allowed) that its reads may open for writing, never create or truncate: a pid file that `prosodyctl status` locks, the logs `nginx -t` opens. Everything else stays read-only.",
            )
            .or(DefaultValue::Empty),
            key(
                "env",
                Kind::Named {
                    of: &Kind::Str,
                    dotted: true,
                },
                "Variables added to the command's clean environment (PATH, LANG, HOME, MEND_GRANT_*); ${param} allowed.",
            )
            .or(DefaultValue::Empty),
        ],
    )
};

pub static STEP: Table = Table {
    named_by: Some("id"),
    ..table(
        "step",
        Place::Subject,
        &[
            required(
                "id",
                Kind::Ident,
                "id = \"my-step\" (unique within the runbook)",
                "Unique within the runbook.",
            ),
            required(
                "uses",
                Kind::NonEmpty,
                "uses = \"std:NAME\", uses = \"path/to/step.wasm\" or uses = \"oci://REGISTRY/NS/NAME:VERSION\" with a sha256 pin",
                "std:NAME for a bundled step, a .wasm file (relative to the runbook) or an oci:// reference (mend step push), with `sha256`.",
            ),
            key(
                "sha256",
                Kind::Sha256,
                "The component's sha256 (mend step inspect FILE prints it); required for files and oci:// steps.",
            ),
            key(
                "capabilities",
                Kind::Strings,
                "The interfaces a .wasm step is approved to import, e.g. [\"mend:runbook/files\"] (mend step build prints the line); a file step that imports more is refused.",
            ),
            key("grants", Kind::Strings, "The grants this step may see.").or(DefaultValue::Empty),
            key("commands", Kind::Strings, "The commands this step may run.")
                .or(DefaultValue::Empty),
            key(
                "urls",
                Kind::Strings,
                "URL patterns this step may probe, e.g. \"http://127.0.0.1:3000/*\".",
            )
            .or(DefaultValue::Empty),
            key(
                "with",
                Kind::StepParams,
                "The step's parameters (mend step inspect std:NAME lists them).",
            ),
            key(
                "retry",
                Kind::Either(&Kind::Attempts, &Kind::Table(&RETRY)),
                "Verify again on failure: attempts, or { attempts = 5, delay = \"2s\" }.",
            )
            .or(DefaultValue::Empty)
            .expected("an integer (attempts) or a table like { attempts = 5, delay = \"2s\" }"),
            key(
                "timeout",
                Kind::Duration { zero_ok: false },
                "How long each call into the step may take (default 60s).",
            )
            .or(DefaultValue::Duration(DEFAULT_TIMEOUT)),
            key(
                "memory",
                Kind::Size,
                "The step's memory limit (default 256MiB).",
            )
            .or(DefaultValue::Size(DEFAULT_MEMORY)),
        ],
    )
};

pub static RETRY: Table = Table {
    dotted: true,
    ..table(
        "retry",
        Place::Key,
        &[
            key(
                "attempts",
                Kind::Attempts,
                "Attempts, the first included (default 1).",
            )
            .or(DefaultValue::Count(DEFAULT_ATTEMPTS)),
            key(
                "delay",
                Kind::Duration { zero_ok: true },
                "Wait between attempts (default 1s).",
            )
            .or(DefaultValue::Duration(DEFAULT_RETRY_DELAY)),
        ],
    )
};

pub static REHEARSAL: Table = Table {
    dotted: true,
    ..table(
        "rehearsal",
        Place::Header,
        &[
            key(
                "commands",
                Kind::Named {
                    of: &Kind::Table(&STAND_IN),
                    dotted: true,
                },
                "Stand-ins for declared commands, by command name.",
            )
            .or(DefaultValue::Empty),
            key(
                "budget",
                Kind::Duration { zero_ok: false },
                "A restore drill's time budget (\"2h\"): `mend rehearse` fails when the run takes longer than this until its last verify passes.",
            ),
        ],
    )
};

pub static STAND_IN: Table = table(
    "stand-in",
    Place::Header,
    &[
        required(
            "program",
            Kind::NonEmpty,
            "program = \"/bin/true\" (or another harmless stand-in)",
            "The harmless program run instead, e.g. \"/bin/true\".",
        ),
        key(
            "args",
            Kind::Strings,
            "Its arguments (default: the original ones); an entry \"${args}\" stands for the original ones.",
        ),
    ],
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{Kind, Table};

    /// Every table reachable from the top, each once.
    fn tables() -> Vec<&'static Table> {
        fn walk(kind: &'static Kind, out: &mut Vec<&'static Table>) {
            match kind {
                Kind::Table(t) if !out.iter().any(|o| std::ptr::eq(*o, *t)) => {
                    out.push(t);
                    for k in t.keys {
                        walk(&k.kind, out);
                    }
                }
                Kind::Named { of, .. } | Kind::NonEmptyArray(of) => walk(of, out),
                Kind::Either(a, b) => {
                    walk(a, out);
                    walk(b, out);
                }
                _ => {}
            }
        }
        static ROOT: Kind = Kind::Table(&TOP);
        let mut out = Vec::new();
        walk(&ROOT, &mut out);
        out
    }

    #[test]
    fn every_key_is_coherent() {
        let all = tables();
        assert_eq!(all.len(), 9, "a table is unreachable from TOP");
        for t in all {
            let mut names = t.names();
            names.extend(t.retired.iter().map(|r| r.name));
            let n = names.len();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), n, "a key twice in the `{}` table", t.noun);
            for k in t.keys {
                let at = format!("{}.{}", t.noun, k.name);
                // A required key says what to add; a default and
                // `required` exclude each other.
                assert_eq!(k.required, !k.help.is_empty(), "{at}");
                assert!(!(k.required && k.default.is_some()), "{at}");
                assert!(!k.doc.is_empty(), "{at}");
                if let Some(DefaultValue::Choice(c)) = &k.default {
                    let Kind::Enum(options) = &k.kind else {
                        panic!("{at}: a choice for a kind that is no enum");
                    };
                    assert!(options.contains(c), "{at}");
                }
            }
            if let Some(by) = t.named_by {
                assert!(t.key(by).is_some_and(|k| k.required), "{}", t.noun);
            }
        }
    }

    /// A table that is left out takes its keys' defaults, so none of them
    /// may be required.
    #[test]
    fn tables_that_default_to_empty_need_nothing() {
        for t in tables() {
            for k in t.keys {
                let inner = match &k.kind {
                    Kind::Table(inner) => Some(inner),
                    Kind::Either(_, Kind::Table(inner)) => Some(inner),
                    _ => None,
                };
                if let (Some(inner), Some(DefaultValue::Empty)) = (inner, &k.default) {
                    assert!(
                        inner.keys.iter().all(|k| !k.required),
                        "{}.{}",
                        t.noun,
                        k.name
                    );
                }
            }
        }
    }
}
