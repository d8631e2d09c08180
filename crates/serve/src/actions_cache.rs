//! Pages of a step's actions, kept while nothing journaled since could
//! change them. Under 50 viewers each fetching a page of actions every
//! second, reading it again each time (a batch's zstd blob decompressed,
//! 200 records masked and escaped) was the server's largest cost on a live
//! run; a page of done actions does not change until a rollback. Exact, not
//! timed: a kept page is served only after the journal's change log says
//! no change since it was read touches its step's actions in its range.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::Result;
use mend_journal::{ActionRecord, Change, ChangeRecord, Journal, Redact};

/// Pages kept (a few per run being watched).
const KEPT: usize = 64;
/// Changes read to decide a kept page still holds; more: read it again.
const SCAN: usize = 2000;

/// One page of a step's actions, masked, as read at one change seq.
pub(crate) struct Page {
    /// The run's full id.
    pub run_id: String,
    pub rows: Vec<ActionRecord>,
    /// The page's HTML, rendered once for every viewer.
    pub html: OnceLock<String>,
}

type Key = (String, u32, Option<u32>);

/// The kept pages, by (run id as asked, step, after), with the change seq
/// each was last known current at.
#[derive(Default)]
pub(crate) struct Cache(Mutex<HashMap<Key, (i64, Arc<Page>)>>);

/// Could `c` change the page of `step` after `after` holding `page`?
fn touches(c: &ChangeRecord, step: u32, after: Option<u32>, page: &Page, full: bool) -> bool {
    match c.change {
        // A step's plan (its planned actions) is saved with a step change.
        Change::Step { step: s } => s == step,
        Change::Actions { step: s, lo, hi } => {
            if s != step {
                return false;
            }
            // A page not full yet takes any new action of its step.
            let Some(last) = page.rows.last().filter(|_| full) else {
                return true;
            };
            let first = after.map_or(0, |a| a.saturating_add(1));
            lo <= last.seq && hi >= first
        }
        Change::Run | Change::Event { .. } | Change::End => false,
    }
}

impl Cache {
    /// The page of `step` of run `id` after `after`, `limit` a page: kept,
    /// or read. Call inside `Journal::snapshot`.
    pub(crate) fn load(
        &self,
        j: &Journal,
        id: &str,
        step: u32,
        after: Option<u32>,
        limit: usize,
    ) -> Result<Arc<Page>> {
        let key: Key = (id.to_string(), step, after);
        let now = j.last_seq()?;
        let kept = {
            let g = self.0.lock().unwrap_or_else(|e| e.into_inner());
            g.get(&key).cloned()
        };
        if let Some((seq, page)) = kept {
            if seq == now {
                return Ok(page);
            }
            let full = page.rows.len() >= limit;
            let since = j.changes_after(seq, Some(&page.run_id), SCAN)?;
            if since.len() < SCAN && !since.iter().any(|c| touches(c, step, after, &page, full)) {
                self.keep(key, now, page.clone());
                return Ok(page);
            }
        }
        let run = j.run(id)?;
        let r = Redact::of_run(&run);
        let rows = j
            .actions_page(&run.id, step, after, limit)?
            .into_iter()
            .map(|a| r.action(a))
            .collect();
        let page = Arc::new(Page {
            run_id: run.id,
            rows,
            html: OnceLock::new(),
        });
        self.keep(key, now, page.clone());
        Ok(page)
    }

    fn keep(&self, key: Key, seq: i64, page: Arc<Page>) {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if g.len() >= KEPT && !g.contains_key(&key) {
            // The one known current longest ago goes.
            if let Some(old) = g
                .iter()
                .min_by_key(|(_, (s, _))| *s)
                .map(|(k, _)| k.clone())
            {
                g.remove(&old);
            }
        }
        g.insert(key, (seq, page));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(seqs: &[u32]) -> Page {
        Page {
            run_id: "r".into(),
            rows: seqs
                .iter()
                .map(|&seq| ActionRecord {
                    run_id: "r".into(),
                    step_idx: 0,
                    seq,
                    action_json: "{}".into(),
                    reversible: true,
                    state: mend_journal::ActionState::Done,
                    undo_json: None,
                    intended_at: None,
                    done_at: None,
                    undone_at: None,
                    error: None,
                })
                .collect(),
            html: OnceLock::new(),
        }
    }

    fn actions(step: u32, lo: u32, hi: u32) -> ChangeRecord {
        ChangeRecord {
            seq: 1,
            run_id: "r".into(),
            change: Change::Actions { step, lo, hi },
            at: 0,
        }
    }

    #[test]
    fn only_changes_to_the_pages_own_actions_touch_it() {
        let p = page(&[200, 201, 202]);
        // Full page 200..=202 after 199.
        assert!(touches(&actions(0, 150, 200), 0, Some(199), &p, true));
        assert!(touches(&actions(0, 202, 400), 0, Some(199), &p, true));
        assert!(!touches(&actions(0, 203, 400), 0, Some(199), &p, true));
        assert!(!touches(&actions(0, 0, 199), 0, Some(199), &p, true));
        assert!(!touches(&actions(1, 200, 202), 0, Some(199), &p, true));
        // Not full: any new action of the step may join it.
        assert!(touches(&actions(0, 500, 600), 0, Some(199), &p, false));
        let step = ChangeRecord {
            change: Change::Step { step: 0 },
            ..actions(0, 0, 0)
        };
        assert!(touches(&step, 0, None, &p, true));
        let run = ChangeRecord {
            change: Change::Run,
            ..actions(0, 0, 0)
        };
        assert!(!touches(&run, 0, None, &p, true));
    }

    /// Against a real journal: a kept page is served until a change to its
    /// own actions, then read again, never stale.
    #[test]
    fn a_kept_page_is_served_until_its_own_actions_change() {
        use mend_journal::{ActionState, NewAction};
        let tmp = tempfile::tempdir().unwrap();
        let j = Journal::open(tmp.path()).unwrap();
        let run = crate::testing::run_of_four_removals(&j);
        let cache = Cache::default();
        // A full page of two: actions 0 and 1.
        let first = cache.load(&j, &run.id, 0, None, 2).unwrap();
        assert_eq!(first.rows.len(), 2);
        assert!(first.rows.iter().all(|a| a.state == ActionState::Planned));
        let done = |seq: u32| {
            let a = NewAction {
                seq,
                action_json: r#"{"op":"remove","path":"a"}"#,
                reversible: true,
                undo_json: None,
            };
            j.intend(&run.id, 0, &[a]).unwrap();
            j.mark_done(&run.id, 0, &[(seq, None)]).unwrap();
        };
        // An event and action 3 (past the page) leave it as it was.
        j.event(&run.id, Some(0), "info", "hello").unwrap();
        done(3);
        let again = cache.load(&j, &run.id, 0, None, 2).unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        // Action 1 done: read again, and it says so.
        done(1);
        let now = cache.load(&j, &run.id, 0, None, 2).unwrap();
        assert!(!Arc::ptr_eq(&first, &now));
        assert_eq!(now.rows[1].state, ActionState::Done);
        assert_eq!(now.rows[0].state, ActionState::Planned);
        // The page after 1 (actions 2 and 3) saw action 3 done.
        let next = cache.load(&j, &run.id, 0, Some(1), 2).unwrap();
        assert_eq!(next.rows[1].state, ActionState::Done);
    }
}
