//! Exit codes: what scripts and CI can rely on. Documented in README.md.

/// The run (or plan, lint, rehearsal) succeeded.
pub const SUCCESS: i32 = 0;
/// A step failed; its run was rolled back (or stopped, when the runbook says
/// `on_failure = "stop"`). Also: a rehearsal that did not end where it started.
pub const STEP_FAILED: i32 = 1;
/// Bad input: a runbook, a parameter, a pin or a command line that is wrong.
/// Nothing was run and nothing changed.
pub const BAD_INPUT: i32 = 2;
/// A step failed and its rollback failed too: something is still changed.
/// The message says what; `mend rollback RUN` tries again.
pub const ROLLBACK_FAILED: i32 = 3;
/// Another run of the same runbook holds the lock, or a run of another
/// runbook holds a write grant that nests with one of this runbook's.
pub const LOCKED: i32 = 4;
/// `mend run --plan FILE`: the saved plan no longer holds (the runbook, a
/// step, an action, a fact, a mount or the free space moved). Nothing ran.
pub const PLAN_DRIFTED: i32 = 5;
/// The journal is damaged before its last record (or a record does not
/// match its checksum): nothing was resumed, rolled back or run. A torn
/// last record is not this: it is dropped and the run resumes before it.
pub const JOURNAL_DAMAGED: i32 = 6;
/// `mend fleet`: a host could not be reached over ssh (ssh's own words
/// are shown); its outcome is unknown and it counts as failed. Also: an
/// `oci://` step is not in the cache and its registry cannot be reached;
/// nothing ran (retry where the registry is reachable, or `mend step pull`).
pub const UNREACHABLE: i32 = 7;
/// `mend watch`: the journal says the run is running, but no process holds
/// its runbook's lock: it was killed. `mend resume RUN` or `mend rollback RUN`.
pub const RUN_ABANDONED: i32 = 8;
/// mend itself failed (an I/O error on the journal, a bug).
pub const INTERNAL: i32 = 70;
