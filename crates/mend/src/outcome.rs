//! What a command ended in, and the exit code each outcome owns (the
//! renderer prints, it never decides a code). Failures are one diagnostic
//! shape, rendered in one place: `error: message`, a place in a file when
//! there is one, `= help:` when there is something to do.

use mend_runbook::Diagnostic;

use crate::exit;

/// What a command ended in owns its exit code (nextest's rule): the
/// renderer shows it and asks it, never decides. Each outcome implements it
/// beside its own definition.
pub trait Outcome {
    fn exit_code(&self) -> i32;
}

/// Why a command did not succeed, in the terms of its exit code.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Bad input: nothing ran, nothing changed.
    #[error("{}", render_diagnostics(.0))]
    BadInput(Vec<Diagnostic>),
    /// Another run holds the lock.
    #[error("error: {0}")]
    Locked(String),
    /// The journal is damaged; nothing was done with it.
    #[error("error: {0}")]
    Damaged(mend_journal::Damaged),
    /// A journal write failed (a full or failing disk): the run stopped
    /// before its next change and can be resumed once that is fixed.
    #[error("error: {error:#}")]
    Journal {
        error: anyhow::Error,
        run: Option<String>,
    },
    /// mend itself failed.
    #[error("error: {0:#}")]
    Internal(anyhow::Error),
    /// A registry a step comes from could not be reached and the step is
    /// not in the cache: nothing ran; retry where it is reachable.
    #[error("{}", render_diagnostics(.0))]
    Unavailable(Vec<Diagnostic>),
}

impl Failure {
    /// The exit code this failure owns.
    pub fn exit_code(&self) -> i32 {
        match self {
            Failure::BadInput(_) => exit::BAD_INPUT,
            Failure::Locked(_) => exit::LOCKED,
            Failure::Damaged(_) => exit::JOURNAL_DAMAGED,
            Failure::Journal { .. } | Failure::Internal(_) => exit::INTERNAL,
            Failure::Unavailable(_) => exit::UNREACHABLE,
        }
    }

    /// Names the run a journal failure stopped, for the way back.
    pub fn in_run(self, id: &str) -> Failure {
        match self {
            Failure::Journal { error, run: None } => Failure::Journal {
                error,
                run: Some(id.to_string()),
            },
            f => f,
        }
    }

    /// Whether an error came from writing or reading the journal.
    pub(crate) fn is_journal(e: &anyhow::Error) -> bool {
        e.chain().any(|c| c.is::<rusqlite::Error>())
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Failure {
        match e
            .chain()
            .find_map(|c| c.downcast_ref::<mend_journal::Damaged>())
        {
            Some(d) => Failure::Damaged(d.clone()),
            None if Failure::is_journal(&e) => Failure::Journal {
                error: e,
                run: None,
            },
            None => Failure::Internal(e),
        }
    }
}

impl From<mend_journal::Damaged> for Failure {
    fn from(d: mend_journal::Damaged) -> Failure {
        Failure::Damaged(d)
    }
}

fn render_diagnostics(d: &[Diagnostic]) -> String {
    d.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("\n\n")
}

impl Failure {
    /// A bad-input failure without a runbook position.
    pub fn input(file: &str, message: impl Into<String>, hint: Option<String>) -> Failure {
        Failure::BadInput(vec![Diagnostic::plain(file, message, hint)])
    }
}
