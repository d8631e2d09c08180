//! The journal's record types and the status enums, with their text forms.
//!
//! Every enum's text form (`as_str` / `FromStr` / SQL column value) equals
//! its serde form: kebab-case (`"rolling-back"`, `"rollback-failed"`, ...).

use std::fmt;
use std::str::FromStr;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

/// A text value that names no variant of the enum it was parsed as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownVariant {
    pub kind: &'static str,
    pub value: String,
    /// The valid values, for the message.
    pub valid: &'static [&'static str],
}

impl fmt::Display for UnknownVariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown {} `{}` (one of: {})",
            self.kind,
            self.value,
            self.valid.join(", ")
        )
    }
}

impl std::error::Error for UnknownVariant {}

/// Defines `as_str`, `ALL`, `Display`, `FromStr`, `ToSql` and `FromSql` for a
/// fieldless enum from one table of (variant, text) pairs.
macro_rules! text_enum {
    ($ty:ident, $kind:literal, { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The text form, identical to the serde form.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = UnknownVariant;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($ty::$variant),)+
                    _ => Err(UnknownVariant {
                        kind: $kind,
                        value: s.to_owned(),
                        valid: &[$($text),+],
                    }),
                }
            }
        }

        impl ToSql for $ty {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }

        impl FromSql for $ty {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                value.as_str()?.parse().map_err(|e| FromSqlError::Other(Box::new(e)))
            }
        }
    };
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunMode {
    Run,
    Rehearse,
}

text_enum!(RunMode, "run mode", { Run => "run", Rehearse => "rehearse" });

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    Running,
    RollingBack,
    Committed,
    /// Stopped, not rolled back (`on_failure = "stop"`).
    Failed,
    RolledBack,
    RollbackFailed,
    /// Every step verified, not committed (`mend run --hold`): undo data
    /// and trash kept until `mend commit` or `mend rollback` settles it.
    Held,
}

text_enum!(RunStatus, "run status", {
    Running => "running",
    RollingBack => "rolling-back",
    Committed => "committed",
    Failed => "failed",
    RolledBack => "rolled-back",
    RollbackFailed => "rollback-failed",
    Held => "held",
});

impl RunStatus {
    /// Whether the run is over in this status (`finished_at` is set).
    pub const fn is_terminal(self) -> bool {
        !matches!(self, RunStatus::Running | RunStatus::RollingBack)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepStatus {
    Pending,
    Planned,
    Applying,
    Applied,
    Verified,
    Failed,
    Undone,
}

text_enum!(StepStatus, "step status", {
    Pending => "pending",
    Planned => "planned",
    Applying => "applying",
    Applied => "applied",
    Verified => "verified",
    Failed => "failed",
    Undone => "undone",
});

impl StepStatus {
    /// Whether the step has stopped doing work in this status (`finished_at`
    /// is set): applied, verified, failed or undone.
    pub const fn is_finished(self) -> bool {
        !matches!(
            self,
            StepStatus::Pending | StepStatus::Planned | StepStatus::Applying
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActionState {
    /// In the step's plan; not yet about to be performed.
    Planned,
    Intended,
    Done,
    Undoing,
    Undone,
    Failed,
}

text_enum!(ActionState, "action state", {
    Planned => "planned",
    Intended => "intended",
    Done => "done",
    Undoing => "undoing",
    Undone => "undone",
    Failed => "failed",
});

/// What `Journal::new_run` needs to start a run.
pub struct NewRun<'a> {
    pub runbook_name: &'a str,
    pub runbook_version: &'a str,
    pub runbook_path: &'a str,
    pub runbook_sha256: &'a str,
    pub mode: RunMode,
    /// The `--set` values etc.
    pub params_json: &'a str,
    /// The run's logical clock, Unix seconds.
    pub now: i64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct RunRecord {
    pub id: String,
    pub runbook_name: String,
    pub runbook_version: String,
    pub runbook_path: String,
    pub runbook_sha256: String,
    pub mode: RunMode,
    pub status: RunStatus,
    pub params_json: String,
    /// The run's logical clock, Unix seconds.
    pub now: i64,
    /// Unix milliseconds, real clock.
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub error: Option<String>,
    /// Who started it: `SUDO_USER` under sudo, else the user's name (or
    /// uid). `None` in runs journaled before this was kept.
    pub started_by: Option<String>,
    /// The host it ran on (its node name).
    pub host: Option<String>,
}

impl RunRecord {
    /// The runbook's sha256 as messages show it: its first 12 characters.
    /// Never panics, whatever a damaged journal holds.
    pub fn short_sha256(&self) -> &str {
        let s = self.runbook_sha256.as_str();
        s.char_indices().nth(12).map_or(s, |(i, _)| &s[..i])
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct StepRecord {
    pub run_id: String,
    pub idx: u32,
    pub step_id: String,
    pub uses: String,
    pub component_sha256: String,
    pub status: StepStatus,
    pub plan_json: Option<String>,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub error: Option<String>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct ActionRecord {
    pub run_id: String,
    pub step_idx: u32,
    pub seq: u32,
    pub action_json: String,
    pub reversible: bool,
    pub state: ActionState,
    pub undo_json: Option<String>,
    /// When it was journaled as intended (none while only planned).
    pub intended_at: Option<i64>,
    pub done_at: Option<i64>,
    pub undone_at: Option<i64>,
    pub error: Option<String>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct EventRecord {
    pub run_id: String,
    pub step_idx: Option<u32>,
    pub at: i64,
    pub level: String,
    pub message: String,
}

/// One action of a step's plan, journaled when the step is planned.
pub struct PlannedAction<'a> {
    pub seq: u32,
    pub action_json: &'a str,
    pub reversible: bool,
}

/// One action to record as intended.
pub struct NewAction<'a> {
    pub seq: u32,
    pub action_json: &'a str,
    pub reversible: bool,
    pub undo_json: Option<&'a str>,
}

/// Which runs `Journal::history` returns (all of them by default).
#[derive(Clone, Debug, Default)]
pub struct HistoryFilter {
    pub runbook: Option<String>,
    pub status: Option<RunStatus>,
    pub limit: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serde_text<T: serde::Serialize>(v: T) -> String {
        serde_json::to_value(v)
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn short_sha256_cuts_at_a_char_not_a_byte() {
        let mut run = RunRecord {
            id: "0ea41512fa391fa7".into(),
            runbook_name: "x".into(),
            runbook_version: "1".into(),
            runbook_path: "/x.toml".into(),
            runbook_sha256: "ab".repeat(32),
            mode: RunMode::Run,
            status: RunStatus::Running,
            params_json: "{}".into(),
            now: 0,
            started_at: 0,
            finished_at: None,
            error: None,
            started_by: None,
            host: None,
        };
        assert_eq!(run.short_sha256(), "abababababab");
        // What a damaged journal can hold: short, or `é` across byte 12.
        for (stored, shown) in [("", ""), ("abc", "abc"), ("0123456789aéé", "0123456789aé")] {
            run.runbook_sha256 = stored.into();
            assert_eq!(run.short_sha256(), shown);
        }
    }

    #[test]
    fn text_form_equals_serde_form() {
        for &s in RunStatus::ALL {
            assert_eq!(s.as_str(), serde_text(s));
            assert_eq!(s.as_str().parse::<RunStatus>().unwrap(), s);
        }
        for &s in RunMode::ALL {
            assert_eq!(s.as_str(), serde_text(s));
            assert_eq!(s.as_str().parse::<RunMode>().unwrap(), s);
        }
        for &s in StepStatus::ALL {
            assert_eq!(s.as_str(), serde_text(s));
            assert_eq!(s.as_str().parse::<StepStatus>().unwrap(), s);
        }
        for &s in ActionState::ALL {
            assert_eq!(s.as_str(), serde_text(s));
            assert_eq!(s.as_str().parse::<ActionState>().unwrap(), s);
        }
        assert_eq!(RunStatus::RollbackFailed.as_str(), "rollback-failed");
        let err = "nope".parse::<RunStatus>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown run status `nope` (one of: running, rolling-back, committed, failed, rolled-back, rollback-failed, held)"
        );
    }
}
