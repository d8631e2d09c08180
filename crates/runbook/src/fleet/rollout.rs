//! The one stop rule of a fleet rollout, as a pure function, and the split
//! of a fleet's hosts into batches.
//!
//! **Before starting each batch, the rollout stops if the hosts of this
//! fleet run that failed so far number more than `max_failures`.** A host
//! failed if its run did not commit (it rolled back, its rollback failed,
//! its plan moved, its mend refused, or it was unreachable). The count is
//! absolute and covers the whole fleet run. A batch already started always
//! finishes. Nothing else stops a rollout.

use serde::Serialize;

/// How a host's part of a fleet run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostEnd {
    Committed,
    RolledBack,
    /// Its rollback failed too: something is still changed there.
    RollbackFailed,
    /// Its saved plan no longer held (`mend run --plan` exit 5).
    PlanMoved,
    /// Its mend refused the run (bad input, lock held, another version).
    Refused,
    /// ssh could not reach it; its outcome is unknown, so it counts as failed.
    Unreachable,
    /// It had verified (held), and the fleet rolled it back
    /// (`--rollback-fleet`, `mend fleet rollback`).
    Undone,
}

impl HostEnd {
    pub fn failed(self) -> bool {
        self != HostEnd::Committed
    }

    pub fn label(self) -> &'static str {
        match self {
            HostEnd::Committed => "committed",
            HostEnd::RolledBack => "rolled back",
            HostEnd::RollbackFailed => "rollback failed",
            HostEnd::PlanMoved => "plan moved",
            HostEnd::Refused => "refused",
            HostEnd::Unreachable => "unreachable",
            HostEnd::Undone => "undone by fleet",
        }
    }
}

/// What the rule says before a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Start,
    Stop {
        failures: usize,
        max_failures: usize,
    },
}

/// The stop rule. `done` holds every host of this fleet run that has ended
/// so far, over all batches (not only the last one).
pub fn rollout(done: &[HostEnd], max_failures: usize) -> Decision {
    let failures = done.iter().filter(|e| e.failed()).count();
    if failures > max_failures {
        Decision::Stop {
            failures,
            max_failures,
        }
    } else {
        Decision::Start
    }
}

/// One entry of `rollout.batches`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum BatchSize {
    /// This many hosts.
    Count(usize),
    /// This share of the fleet's hosts (not of those left), rounded up.
    Percent(u8),
    /// Every host left.
    Rest,
}

/// Hosts `0..n` in batches. Past the end of `sizes` the last size repeats
/// (Ansible's `serial` does the same); no sizes is one batch of all.
pub fn batches(n: usize, sizes: &[BatchSize]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < n {
        let size = match sizes.get(i).or(sizes.last()) {
            None | Some(BatchSize::Rest) => n - at,
            Some(BatchSize::Count(c)) => *c,
            Some(BatchSize::Percent(p)) => (n * usize::from(*p)).div_ceil(100),
        }
        .max(1);
        let end = (at + size).min(n);
        out.push(at..end);
        at = end;
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::BatchSize::*;
    use super::HostEnd::*;
    use super::*;

    /// Each row is a rollout as the hosts ended, batch by batch, with the
    /// batches the rule lets start. Each cites the failure of another tool
    /// it is there to rule out.
    #[test]
    fn the_stop_rule_counts_failures_over_the_whole_run_before_each_batch() {
        struct Row {
            why: &'static str,
            max_failures: usize,
            /// How each batch's hosts end, if it is started.
            batches: &'static [&'static [HostEnd]],
            started: usize,
        }
        let rows = [
            Row {
                why: "all commit: every batch runs",
                max_failures: 0,
                batches: &[&[Committed], &[Committed], &[Committed, Committed]],
                started: 3,
            },
            Row {
                why: "default max_failures 0: one failed canary stops the rest",
                max_failures: 0,
                batches: &[&[RolledBack], &[Committed], &[Committed]],
                started: 1,
            },
            Row {
                why: "ansible/ansible#76915, #82267: a batch failing as a whole is no hidden \
                      second rule; with room for failures the rollout goes on",
                max_failures: 5,
                batches: &[&[Committed], &[RolledBack, RolledBack], &[Committed]],
                started: 3,
            },
            Row {
                why: "ansible/ansible#33672, PR #3661: failures add up across batches, \
                      one per batch is not forgiven each time",
                max_failures: 1,
                batches: &[
                    &[Committed, RolledBack],
                    &[RolledBack, Committed],
                    &[Committed],
                    &[Committed],
                ],
                started: 2,
            },
            Row {
                why: "ansible/ansible#6781, #32255: an absolute count, not a percentage of \
                      a small batch (1 of 1 is 100% yet within max_failures 1)",
                max_failures: 1,
                batches: &[&[RolledBack], &[Committed, Committed], &[Committed]],
                started: 3,
            },
            Row {
                why: "ansible/ansible#7686, #56265, #82834: an unreachable host is a failure",
                max_failures: 0,
                batches: &[&[Committed], &[Unreachable], &[Committed]],
                started: 2,
            },
            Row {
                why: "saltstack/salt#54521, #24996, #29643: a failure stops the next batch; \
                      it does not depend on how a module reported it",
                max_failures: 0,
                batches: &[&[Committed], &[Committed, RollbackFailed], &[Committed]],
                started: 2,
            },
            Row {
                why: "saltstack/salt#38698: a failed host stops the fleet only through the \
                      count; its batch still finishes (the other host commits)",
                max_failures: 0,
                batches: &[&[PlanMoved, Committed], &[Committed]],
                started: 1,
            },
            Row {
                why: "exactly max_failures is still allowed (more than, stops)",
                max_failures: 2,
                batches: &[&[Refused], &[RolledBack], &[Committed], &[Committed]],
                started: 4,
            },
        ];
        for row in rows {
            let mut done = Vec::new();
            let mut started = 0;
            for batch in row.batches {
                if let Decision::Stop { failures, .. } = rollout(&done, row.max_failures) {
                    assert!(failures > row.max_failures, "{}", row.why);
                    break;
                }
                started += 1;
                // A started batch finishes: all its hosts end.
                done.extend_from_slice(batch);
            }
            assert_eq!(started, row.started, "{}", row.why);
        }
    }

    #[test]
    fn batches_split_canary_then_percent_then_rest() {
        let r = |n, s: &[BatchSize]| {
            batches(n, s)
                .into_iter()
                .map(|r| r.len())
                .collect::<Vec<_>>()
        };
        assert_eq!(r(4, &[Count(1), Rest]), [1, 3]);
        assert_eq!(
            r(10, &[Count(1), Count(1), Percent(50), Rest]),
            [1, 1, 5, 3]
        );
        assert_eq!(r(4, &[Count(1), Count(1), Percent(50), Rest]), [1, 1, 2]);
        // The last size repeats; no sizes is one batch.
        assert_eq!(r(5, &[Count(2)]), [2, 2, 1]);
        assert_eq!(r(3, &[]), [3]);
        assert_eq!(r(0, &[Count(1)]), Vec::<usize>::new());
        assert_eq!(r(3, &[Percent(1)]), [1, 1, 1]);
    }
}
