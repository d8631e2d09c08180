//! The runbook format, declared once. The parser takes each table's allowed
//! keys from here and `mend schema` writes the JSON Schema editors use from
//! it, so the two cannot disagree about what a runbook may contain.

/// What a key's value must be.
pub enum Kind {
    /// Any string (`${param}` allowed).
    Str,
    /// A string that is not empty.
    NonEmpty,
    /// `[a-z0-9][a-z0-9-_]*`: runbook names and step ids.
    Ident,
    /// 64 lowercase hex digits.
    Sha256,
    Bool,
    /// One of these strings.
    Enum(&'static [&'static str]),
    /// A list of strings.
    Strings,
    /// Whole seconds, or a string like "250ms", "90s", "5m", "1h".
    Duration,
    /// Bytes, or a string like "512KiB", "256MiB", "1GiB".
    Size,
    /// An integer, at least 1.
    Attempts,
    /// An integer, at least 0.
    Count,
    /// A string, integer, float or boolean.
    Scalar,
    /// Allowed argument vectors: arrays of glob patterns, or strings split on spaces.
    ArgVectors,
    /// A table the step checks against its own parameters.
    StepParams,
    /// A table with exactly these keys.
    Table(&'static Table),
    /// A table of named entries, each of this kind.
    Named(&'static Kind),
    /// An array, at least one item, each of this kind.
    NonEmptyArray(&'static Kind),
    /// Either of these.
    Either(&'static Kind, &'static Kind),
}

/// One key of a table.
pub struct Key {
    pub name: &'static str,
    pub kind: Kind,
    pub required: bool,
    /// One line, shown by editors.
    pub doc: &'static str,
}

/// A TOML table and the keys it may hold.
pub struct Table {
    pub keys: &'static [Key],
}

impl Table {
    /// The allowed key names, in the order of the format.
    pub fn names(&self) -> Vec<&'static str> {
        self.keys.iter().map(|k| k.name).collect()
    }
}

pub(crate) const fn key(name: &'static str, kind: Kind, doc: &'static str) -> Key {
    Key {
        name,
        kind,
        required: false,
        doc,
    }
}

pub(crate) const fn required(name: &'static str, kind: Kind, doc: &'static str) -> Key {
    Key {
        name,
        kind,
        required: true,
        doc,
    }
}

/// The whole file.
pub static TOP: Table = Table {
    keys: &[
        required(
            "runbook",
            Kind::Table(&RUNBOOK),
            "Who the runbook is: name, version, summary.",
        ),
        key(
            "params",
            Kind::Named(&Kind::Either(&Kind::Scalar, &Kind::Table(&PARAM))),
            "Values used as ${NAME} and set with --set NAME=VALUE: a default, or a table.",
        ),
        key(
            "grants",
            Kind::Named(&Kind::Table(&GRANT)),
            "The directories steps may see: each step lists the ones it gets.",
        ),
        key(
            "commands",
            Kind::Named(&Kind::Table(&COMMAND)),
            "The programs steps may run: the argument vectors that read and those that change.",
        ),
        required(
            "steps",
            Kind::NonEmptyArray(&Kind::Table(&STEP)),
            "The steps, run in order: [[steps]].",
        ),
        key(
            "rehearsal",
            Kind::Table(&REHEARSAL),
            "What `mend rehearse` runs instead of the real commands.",
        ),
    ],
};

pub static RUNBOOK: Table = Table {
    keys: &[
        required("name", Kind::Ident, "Lowercase letters, digits, - and _."),
        required(
            "version",
            Kind::NonEmpty,
            "The runbook's own version, e.g. \"1.0.0\".",
        ),
        required(
            "summary",
            Kind::NonEmpty,
            "One line: what the runbook does.",
        ),
        key(
            "on_failure",
            Kind::Enum(&["rollback", "stop"]),
            "When a step fails: undo every step (default), or stop where it is.",
        ),
    ],
};

pub static PARAM: Table = Table {
    keys: &[
        key("default", Kind::Scalar, "The value unless --set gives one."),
        key(
            "required",
            Kind::Bool,
            "The run needs --set NAME=VALUE (no default allowed).",
        ),
        key("doc", Kind::Str, "One line for the operator."),
    ],
};

pub static GRANT: Table = Table {
    keys: &[
        required(
            "path",
            Kind::NonEmpty,
            "The directory; relative paths are taken from where mend runs.",
        ),
        required(
            "access",
            Kind::Enum(&["read", "write"]),
            "read: steps may look; write: steps may plan changes in it.",
        ),
        key(
            "disposable",
            Kind::Bool,
            "Removals are unlinked at once, not kept for undo (caches).",
        ),
    ],
};

pub static COMMAND: Table = Table {
    keys: &[
        required(
            "program",
            Kind::NonEmpty,
            "The program, by absolute path or name on PATH.",
        ),
        key(
            "reads",
            Kind::ArgVectors,
            "Argument vectors that only look (is-active, status): what probe may run while planning and verifying, confined read-only. [[\"is-active\", \"*\"]] or [\"is-active *\"]; a last `**` allows any further arguments.",
        ),
        key(
            "changes",
            Kind::ArgVectors,
            "Argument vectors that change something (stop, dropdb): only an exec action of the plan, or its undo, may run them.",
        ),
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
        ),
        key(
            "env",
            Kind::Named(&Kind::Str),
            "Variables added to the command's clean environment (PATH, LANG, HOME, MEND_GRANT_*); ${param} allowed.",
        ),
    ],
};

pub static STEP: Table = Table {
    keys: &[
        required("id", Kind::Ident, "Unique within the runbook."),
        required(
            "uses",
            Kind::NonEmpty,
            "std:NAME for a bundled step, or a .wasm file (relative to the runbook) with `sha256`.",
        ),
        key(
            "sha256",
            Kind::Sha256,
            "The component's sha256 (mend step inspect FILE prints it); required for files.",
        ),
        key(
            "capabilities",
            Kind::Strings,
            "The interfaces a .wasm step is approved to import, e.g. [\"mend:runbook/files\"] (mend step build prints the line); a file step that imports more is refused.",
        ),
        key("grants", Kind::Strings, "The grants this step may see."),
        key("commands", Kind::Strings, "The commands this step may run."),
        key(
            "urls",
            Kind::Strings,
            "URL patterns this step may probe, e.g. \"http://127.0.0.1:3000/*\".",
        ),
        key(
            "with",
            Kind::StepParams,
            "The step's parameters (mend step inspect std:NAME lists them).",
        ),
        key(
            "retry",
            Kind::Either(&Kind::Attempts, &Kind::Table(&RETRY)),
            "Verify again on failure: attempts, or { attempts = 5, delay = \"2s\" }.",
        ),
        key(
            "timeout",
            Kind::Duration,
            "How long each call into the step may take (default 60s).",
        ),
        key(
            "memory",
            Kind::Size,
            "The step's memory limit (default 256MiB).",
        ),
    ],
};

pub static RETRY: Table = Table {
    keys: &[
        key(
            "attempts",
            Kind::Attempts,
            "Attempts, the first included (default 1).",
        ),
        key(
            "delay",
            Kind::Duration,
            "Wait between attempts (default 1s).",
        ),
    ],
};

pub static REHEARSAL: Table = Table {
    keys: &[
        key(
            "commands",
            Kind::Named(&Kind::Table(&STAND_IN)),
            "Stand-ins for declared commands, by command name.",
        ),
        key(
            "budget",
            Kind::Duration,
            "A restore drill's time budget (\"2h\"): `mend rehearse` fails when the run takes longer than this until its last verify passes.",
        ),
    ],
};

pub static STAND_IN: Table = Table {
    keys: &[
        required(
            "program",
            Kind::NonEmpty,
            "The harmless program run instead, e.g. \"/bin/true\".",
        ),
        key(
            "args",
            Kind::Strings,
            "Its arguments (default: the original ones); an entry \"${args}\" stands for the original ones.",
        ),
    ],
};
