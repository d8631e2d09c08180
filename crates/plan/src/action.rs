//! What a step asks the host to do, as the host keeps it: actions (with
//! their paths as `GRANT/relative/path`), a step's plan of them, checked
//! and sized, and the commands they run.

use serde::{Deserialize, Serialize};

/// An archive format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    Tar,
    TarGz,
    TarZst,
}

impl Format {
    /// As a file extension says it.
    pub fn word(self) -> &'static str {
        match self {
            Format::Tar => "tar",
            Format::TarGz => "tar.gz",
            Format::TarZst => "tar.zst",
        }
    }
}

/// One change, as the host performs it. Paths are `GRANT/relative/path`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Action {
    Remove {
        path: String,
    },
    Rename {
        path: String,
        to: String,
    },
    Swap {
        path: String,
        with: String,
    },
    CreateDir {
        path: String,
    },
    WriteFile {
        path: String,
        #[serde(with = "hex_bytes")]
        contents: Vec<u8>,
        mode: Option<u32>,
    },
    Copy {
        from: String,
        path: String,
    },
    Extract {
        archive: String,
        path: String,
        format: Format,
    },
    Archive {
        from: String,
        path: String,
        format: Format,
    },
    SetOwner {
        path: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group: Option<String>,
        recursive: bool,
    },
    SetMode {
        path: String,
        mode: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dir_mode: Option<u32>,
        recursive: bool,
    },
    Exec {
        call: Call,
        undo: Option<Call>,
        /// The `GRANT/path` the command creates, removed on rollback.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        creates: Option<String>,
    },
}

mod hex_bytes {
    pub fn serialize<S: serde::Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s: String = serde::Deserialize::deserialize(d)?;
        hex::decode(s).map_err(serde::de::Error::custom)
    }
}

impl Action {
    /// The path the action changes (or the command it runs).
    pub fn target(&self) -> String {
        mend_human::shown(&self.raw_target(), 1024)
    }

    fn raw_target(&self) -> String {
        match self {
            Action::Remove { path }
            | Action::Rename { path, .. }
            | Action::Swap { path, .. }
            | Action::CreateDir { path }
            | Action::WriteFile { path, .. }
            | Action::Copy { path, .. }
            | Action::Extract { path, .. }
            | Action::Archive { path, .. }
            | Action::SetOwner { path, .. }
            | Action::SetMode { path, .. } => path.clone(),
            Action::Exec { call, .. } => call.to_string(),
        }
    }

    /// Every `GRANT/path` the action names (read or changed).
    pub fn paths(&self) -> Vec<&str> {
        match self {
            Action::Remove { path }
            | Action::CreateDir { path }
            | Action::WriteFile { path, .. }
            | Action::SetOwner { path, .. }
            | Action::SetMode { path, .. } => vec![path],
            Action::Rename { path, to } => vec![path, to],
            Action::Swap { path, with } => vec![path, with],
            Action::Copy { from, path } | Action::Archive { from, path, .. } => vec![from, path],
            Action::Extract { archive, path, .. } => vec![archive, path],
            Action::Exec { creates, .. } => creates.iter().map(String::as_str).collect(),
        }
    }

    /// The `GRANT/path`s the action changes (not what it reads): a
    /// command's only when it names what it creates.
    pub fn changed_paths(&self) -> Vec<&str> {
        match self {
            Action::Copy { path, .. }
            | Action::Extract { path, .. }
            | Action::Archive { path, .. } => vec![path],
            other => other.paths(),
        }
    }

    /// The action's object: its path, paths or command line.
    pub fn what(&self) -> String {
        mend_human::sanitize(&self.raw_what())
    }

    fn raw_what(&self) -> String {
        match self {
            Action::Rename { path, to } => format!("{path} -> {to}"),
            Action::Swap { path, with } => format!("{path} <-> {with}"),
            Action::Copy { from, path } => format!("{from} -> {path}"),
            Action::Extract { archive, path, .. } => format!("{archive} -> {path}"),
            Action::Archive {
                from, path, format, ..
            } => format!("{from} -> {path} ({})", format.word()),
            Action::SetOwner {
                path,
                owner,
                group,
                recursive,
            } => format!(
                "{path}{} to {}{}",
                if *recursive { " (recursively)" } else { "" },
                owner.as_deref().unwrap_or(""),
                group
                    .as_deref()
                    .map(|g| format!(":{g}"))
                    .unwrap_or_default()
            ),
            Action::SetMode {
                path,
                mode,
                dir_mode,
                recursive,
            } => format!(
                "{path}{} to {mode:o}{}",
                if *recursive { " (recursively)" } else { "" },
                dir_mode
                    .map(|d| format!(", directories {d:o}"))
                    .unwrap_or_default()
            ),
            Action::Exec {
                call,
                undo: Some(u),
                ..
            } => format!("{call} (undo: {u})"),
            Action::Exec {
                call,
                creates: Some(c),
                ..
            } => format!("{call} (creates {c})"),
            other => other.raw_target(),
        }
    }

    /// The action's kind, as a runbook's reader knows it: `remove`,
    /// `set-owner`, `exec`.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Remove { .. } => "remove",
            Action::Rename { .. } => "rename",
            Action::Swap { .. } => "swap",
            Action::CreateDir { .. } => "create-dir",
            Action::WriteFile { .. } => "write-file",
            Action::Copy { .. } => "copy",
            Action::Extract { .. } => "extract",
            Action::Archive { .. } => "archive",
            Action::SetOwner { .. } => "set-owner",
            Action::SetMode { .. } => "set-mode",
            Action::Exec { .. } => "exec",
        }
    }
}

/// What the action does to what, on one line: `rename a -> b`,
/// `exec cmd args (undo: ...)`. The one describer of actions: `mend plan`
/// prints these words (kind and object in columns of their own), a saved
/// plan and the report keep them, and `mend_sdk::testing` gives a step's
/// tests the same. The alternate form (`{:#}`) names the action by what it
/// changes alone, for progress and failure lines: `rename a`,
/// `exec pg_dump -f @b/db.dump`.
impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if f.alternate() {
            write!(f, "{} {}", self.kind(), self.target())
        } else {
            write!(f, "{} {}", self.kind(), self.what())
        }
    }
}

/// An action in a plan, checked and sized.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Planned {
    #[serde(flatten)]
    pub action: Action,
    /// Bytes the action moves, removes or writes (a tree's total).
    pub bytes: u64,
    /// Files it touches (a tree's count; 1 for a file).
    pub files: u64,
    /// Whether rollback can undo it.
    pub reversible: bool,
    /// The step's reason.
    pub reason: String,
    /// A removal or a write-file: what the plan's check found at its
    /// path. The removal happens only if it still finds that; a write-file
    /// over a file someone changed since fails its step (journals from
    /// before this field have none, and are not compared).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seen: Option<Seen>,
}

/// What a removal's (or a write-file's) path held when the plan was checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Seen {
    /// A file, symlink or special: its size and modification time
    /// (nanoseconds since the epoch). Rewritten since (a service touched
    /// it), it is no longer what the plan showed.
    File { size: u64, mtime_ns: i64 },
    /// A directory, sized by its tree: `Planned::bytes` and `files` are
    /// what it must still hold when its turn comes (after the plan's
    /// earlier removals inside it), nothing more.
    Dir,
    /// A directory removed whole, with no earlier removal inside it: its
    /// tree as the walk saw it (every entry's path, kind, size and time,
    /// see [`tree_digest`]). One file added, removed or rewritten below
    /// it since, even to the same size, and it is not what the plan showed.
    Tree { digest: u64 },
    /// Nothing: a write-file creates the file. One put there since is
    /// someone else's, not the plan's to replace.
    Absent,
}

/// Nanoseconds since the epoch, as a removal's [`Seen`] keeps a time.
pub fn mtime_ns(secs: i64, nanos: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

/// What a removal must find when its turn comes ([`Planned::expect`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    File { size: u64, mtime_ns: i64 },
    Dir { bytes: u64, files: u64 },
    Tree { bytes: u64, files: u64, digest: u64 },
    Absent,
}

/// One entry of a tree's digest (see [`Seen::Tree`]): its path as a walk
/// writes it (`GRANT/rel`, names escaped as [`crate::names`] does),
/// whether it is a directory, and for anything else its size and time.
/// The digest of a tree is the wrapping sum of its entries' (so the walk
/// that planned and the check that performs may list in any order).
pub fn tree_entry(path: &[u8], dir: bool, size: u64, mtime_ns: i64) -> u64 {
    // A walk hashes every entry it hands over, so eight bytes a step (a
    // multiply-rotate mix, then a final avalanche so that sums of nearby
    // values do not cancel). Stable across builds and machines, which a
    // journal read by another mend needs; strength against a chosen
    // collision is not the point (the digest guards against change, not
    // an attacker who could as well have changed the files before the plan).
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = path.len() as u64;
    let mut eat = |w: u64| h = (h.rotate_left(23) ^ w).wrapping_mul(K);
    let mut words = path.chunks_exact(8);
    for w in &mut words {
        eat(u64::from_le_bytes(w.try_into().expect("eight bytes")));
    }
    let mut last = [0u8; 8];
    last[..words.remainder().len()].copy_from_slice(words.remainder());
    eat(u64::from_le_bytes(last));
    eat(u64::from(dir));
    if !dir {
        eat(size);
        eat(mtime_ns as u64);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

impl Planned {
    /// What this removal must still find at its path, if the plan saw it.
    pub fn expect(&self) -> Option<Expect> {
        match self.seen? {
            Seen::File { size, mtime_ns } => Some(Expect::File { size, mtime_ns }),
            Seen::Dir => Some(Expect::Dir {
                bytes: self.bytes,
                files: self.files,
            }),
            Seen::Tree { digest } => Some(Expect::Tree {
                bytes: self.bytes,
                files: self.files,
                digest,
            }),
            Seen::Absent => Some(Expect::Absent),
        }
    }
}

/// A run of consecutive removals (all reversible or none) the host packed
/// as the step handed them over: the JSON lines of their [`Planned`],
/// compressed as the journal keeps a batch (`mend_journal::PlannedBulk`).
/// Sizes and counts are kept beside, so a plan is shown without unpacking.
#[derive(Clone, Debug, Default)]
pub struct Packed {
    /// The seq of its first action; the others follow without gaps.
    pub lo: u32,
    pub n: u32,
    pub reversible: bool,
    /// Bytes and files the removals free.
    pub bytes: u64,
    pub files: u64,
    pub blob: Vec<u8>,
}

/// How a step's plan reached the host, for `mend plan --json`: proof that
/// the host's memory does not grow with the plan.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Arrival {
    /// Batches the step handed over while it planned (`plan-sink`).
    pub batches: u32,
    /// The most actions the host held unpacked at once.
    pub held_max: usize,
    /// The largest linear memory the step grew to while it planned, bytes.
    pub step_memory: usize,
}

/// A step's plan as the host keeps it (and journals it).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StepPlan {
    /// The actions not in `packed`, in order: together with the packed
    /// runs they are the plan, the seqs `packed` does not cover going to
    /// these one by one.
    pub actions: Vec<Planned>,
    /// Runs of removals packed while the step planned (never saved with
    /// the plan: the journal keeps them as batches).
    #[serde(skip)]
    pub packed: Vec<Packed>,
    /// How the plan arrived from the step (not saved).
    #[serde(skip)]
    pub arrival: Arrival,
    pub summary: Vec<String>,
    pub checks: Vec<String>,
    pub facts: Vec<(String, String)>,
    /// The reads the step ran through `probe` while planning, with their
    /// exit status: `systemctl is-active x (exit 0)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reads: Vec<String>,
    /// The grants whose top folder one of the actions changes (a path
    /// right under the grant), noted as the plan arrived, so a commit need
    /// not read a million actions back to know. `None` in a plan journaled
    /// before it was noted: those actions are read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tops_changed: Option<Vec<String>>,
    /// The seq of the first action here: the batches before it were
    /// performed while the step planned (or before a crash), not kept.
    #[serde(skip)]
    pub first: u32,
}

impl StepPlan {
    /// How many actions, packed ones included.
    pub fn len(&self) -> usize {
        self.actions.len() + self.packed.iter().map(|p| p.n as usize).sum::<usize>()
    }

    /// Whether the plan has no action.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes all actions move, remove or write.
    pub fn bytes(&self) -> u64 {
        self.actions.iter().map(|a| a.bytes).sum::<u64>()
            + self.packed.iter().map(|p| p.bytes).sum::<u64>()
    }

    /// How many actions rollback cannot undo.
    pub fn irreversible(&self) -> usize {
        self.actions.iter().filter(|a| !a.reversible).count()
            + self
                .packed
                .iter()
                .filter(|p| !p.reversible)
                .map(|p| p.n as usize)
                .sum::<usize>()
    }

    /// The order of the plan: for each seq, either the next of `actions`
    /// (`Err(index)`) or the start of a packed run (`Ok(index)`).
    pub fn layout(&self) -> impl Iterator<Item = (u32, Result<usize, usize>)> + '_ {
        let mut packed = self.packed.iter().enumerate().peekable();
        let mut row = 0usize;
        let mut seq = self.first;
        std::iter::from_fn(move || {
            if let Some((i, p)) = packed.peek().copied()
                && p.lo == seq
            {
                packed.next();
                seq += p.n;
                return Some((p.lo, Ok(i)));
            }
            if row < self.actions.len() {
                row += 1;
                seq += 1;
                return Some((seq - 1, Err(row - 1)));
            }
            None
        })
    }
}

/// A command by its runbook name, with arguments.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    pub command: String,
    pub args: Vec<String>,
}

impl std::fmt::Display for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.command)?;
        for a in &self.args {
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '\'' || c == '"') {
                write!(f, " '{}'", a.replace('\'', "'\\''"))?;
            } else {
                write!(f, " {a}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plan whose first batches were performed while the step planned
    /// starts at their end: its rows and runs keep the seqs the step gave
    /// them (numbered from 0, the rows of a resumed step's plan named
    /// actions that did not exist: "no action 7").
    #[test]
    fn a_plan_after_early_batches_is_laid_out_from_its_first_seq() {
        let row = |p: &str| Planned {
            action: Action::CreateDir { path: p.into() },
            bytes: 0,
            files: 0,
            reversible: true,
            reason: String::new(),
            seen: None,
        };
        let packed = |lo, n| Packed {
            lo,
            n,
            reversible: false,
            bytes: 0,
            files: 0,
            blob: Vec::new(),
        };
        let plan = StepPlan {
            actions: vec![row("g/a"), row("g/b")],
            packed: vec![packed(5, 3)],
            first: 4,
            ..Default::default()
        };
        let seqs: Vec<(u32, Result<usize, usize>)> = plan.layout().collect();
        assert_eq!(seqs, vec![(4, Err(0)), (5, Ok(0)), (8, Err(1))]);
    }

    #[test]
    fn an_action_is_said_in_full_or_by_what_it_changes() {
        let rename = Action::Rename {
            path: "srv/app".into(),
            to: "srv/app.old".into(),
        };
        assert_eq!(rename.to_string(), "rename srv/app -> srv/app.old");
        assert_eq!(format!("{rename:#}"), "rename srv/app");
        let dump = Action::Exec {
            call: Call {
                command: "pg_dump".into(),
                args: vec!["-f".into(), "@b/db.dump".into(), "my db".into()],
            },
            undo: None,
            creates: Some("b/db.dump".into()),
        };
        assert_eq!(
            dump.to_string(),
            "exec pg_dump -f @b/db.dump 'my db' (creates b/db.dump)"
        );
        assert_eq!(format!("{dump:#}"), "exec pg_dump -f @b/db.dump 'my db'");
        // What a terminal would obey is shown, not obeyed.
        let odd = Action::Remove {
            path: "c/\u{1b}[2J".into(),
        };
        assert_eq!(odd.to_string(), "remove c/\\x1b[2J");
        assert_eq!(format!("{odd:#}"), "remove c/\\x1b[2J");
    }
}
