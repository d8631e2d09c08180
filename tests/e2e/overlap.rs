//! Issue 18's overlap of plan and apply. A step hands over 6,144 removals
//! in six batches while it plans, then proposes a path it may not touch.
//! `mend plan` refuses the whole plan and changes nothing. A run performs
//! the batches as they arrive (`run::early`), then fails naming the step,
//! the action and the rule: with a trash grant the moves are rolled back
//! and nothing anywhere changed, times included; with a disposable one it
//! says how many removals were done, and nothing else changed.

use crate::bulk::cache_of as cache;
use crate::common::*;

/// Six stream batches (256, 256, 512, 1,024, 2,048, 2,048) and a tail.
const FILES: u32 = 3 * 2048 + 100;

/// A scripted step removing every file of the cache, then `refused` (if any).
fn late_refusal(f: &Fixture, disposable: bool, refused: Option<&str>) -> std::path::PathBuf {
    let mut actions: Vec<String> = (0..FILES)
        .map(|i| format!("{{ remove = \"cache/d{}/f{i:05}\" }}", i % 10))
        .collect();
    if let Some(r) = refused {
        actions.push(r.to_string());
    }
    std::fs::create_dir_all(f.path("other")).unwrap();
    f.write("other/canary", "canary\n");
    f.runbook(
        "late.toml",
        &format!(
            r#"[runbook]
name = "late"
version = "1.0.0"
summary = "a cull whose last action is refused"

[grants.cache]
path = "{{root}}/cache"
access = "write"
disposable = {disposable}

[grants.other]
path = "{{root}}/other"
access = "read"

[[steps]]
id = "cull"
{{guest:scripted}}
grants = ["cache", "other"]
with = {{ actions = [{}] }}
"#,
            actions.join(", ")
        ),
    )
}

/// Everything under the fixture but mend's own state, with times.
fn world(f: &Fixture) -> std::collections::BTreeMap<String, String> {
    tree(f.dir.path(), true)
        .into_iter()
        .filter(|(k, _)| !k.starts_with("./state") && k != "." && !k.ends_with(".toml"))
        .collect()
}

const REFUSED: &str = "{ remove = \"other/canary\" }";
const RULE: &str = "is in grant `other`, which is read-only";

/// The step really streams: six batches (256, 256, 512, 1,024, 2,048 and
/// 2,048) arrive before its plan returns.
#[test]
fn the_late_refusal_fixture_streams_six_batches_first() {
    let f = Fixture::new();
    cache(&f, FILES);
    let rb = late_refusal(&f, true, None);
    let ran = f.mend(&["--json", "plan", rb.to_str().unwrap()]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    let v: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(
        v["steps"][0]["arrival"]["batches"], 6,
        "{}",
        v["steps"][0]["arrival"]
    );
}

/// Refused after six batches: exit 1, the message names the step, the
/// path and the rule, and nothing anywhere changed. What mend said.
fn refused_whole(mode: &str, disposable: bool) -> String {
    let f = Fixture::new();
    cache(&f, FILES);
    let rb = late_refusal(&f, disposable, Some(REFUSED));
    let before = world(&f);
    let ran = f.mend(&[mode, rb.to_str().unwrap()]);
    assert_eq!(ran.code, 1, "{mode}: {}", ran.text());
    let said = ran
        .stdout
        .lines()
        .find(|l| l.contains("step `cull`") && l.contains(RULE))
        .unwrap_or_else(|| panic!("{mode}: expected `{RULE}` in:\n{}", ran.text()));
    assert!(said.contains("`other/canary`"), "{mode}: {said}");
    let after = world(&f);
    let changed: Vec<_> = before
        .iter()
        .filter(|(k, v)| after.get(*k) != Some(v))
        .map(|(k, _)| k)
        .take(5)
        .collect();
    assert!(
        changed.is_empty() && after.len() == before.len(),
        "{mode} (disposable {disposable}): changed {changed:?}, {} entries before, {} after",
        before.len(),
        after.len()
    );
    ran.text()
}

#[test]
fn plan_refuses_a_streamed_disposable_cull_whole() {
    let _ = refused_whole("plan", true);
}

/// The moves went to the trash while the step planned; the refusal rolled
/// them back, the grant's own time too (seen failing with the roots' times
/// left out of the step row journaled before the moves: `./cache` changed).
#[test]
fn a_trash_run_refuses_a_streamed_cull_whole() {
    let said = refused_whole("run", false);
    assert!(
        said.contains("6,144 files were moved to the trash while it planned"),
        "{said}"
    );
}

/// The six batches handed over before the refusal were performed while
/// the step planned: the step fails naming the refused path, the rule and
/// the 6,144 removals done; exactly their files are gone, the tail of 100
/// (not yet handed over) and the canary are untouched, the journal lists
/// the removals, and the rollback says them irreversible in a few lines.
#[test]
fn a_disposable_run_refused_late_says_the_removals_it_already_did() {
    let f = Fixture::new();
    cache(&f, FILES);
    let rb = late_refusal(&f, true, Some(REFUSED));
    let before = world(&f);
    let ran = f.mend(&["run", rb.to_str().unwrap()]);
    assert_eq!(ran.code, 1, "{}", ran.text());
    let text = ran.text();
    assert!(
        text.contains("step `cull`") && text.contains(RULE) && text.contains("`other/canary`"),
        "expected the step, the path and `{RULE}` in:\n{text}"
    );
    assert!(
        text.contains("6,144 removals in its disposable grants were done while it planned"),
        "expected the removals already done in:\n{text}"
    );
    let after = world(&f);
    let gone: Vec<&String> = before.keys().filter(|k| !after.contains_key(*k)).collect();
    let want: Vec<String> = (0..3 * 2048u32)
        .map(|i| format!("./cache/d{}/f{i:05}", i % 10))
        .collect();
    let mut want_sorted: Vec<&String> = want.iter().collect();
    want_sorted.sort();
    assert_eq!(gone, want_sorted, "removed: exactly the six batches");
    // The folders lost files, so their times moved; nothing else changed.
    let folder = |k: &str| k.strip_prefix("./cache/d").is_some_and(|d| d.len() == 1);
    let changed: Vec<_> = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(v) && !folder(k))
        .map(|(k, _)| k)
        .take(5)
        .collect();
    assert!(
        changed.is_empty(),
        "changed besides the removals: {changed:?}"
    );
    let id = history_id(&f);
    let states = crate::bulk::states(&f, &id);
    let mut runs: Vec<(String, usize)> = Vec::new();
    for s in &states {
        match runs.last_mut() {
            Some((last, n)) if last == s => *n += 1,
            _ => runs.push((s.clone(), 1)),
        }
    }
    // The failed step rolled the run back: each removal journaled, marked
    // undone as far as it goes, and said irreversible, in a few lines.
    assert_eq!(
        runs,
        vec![("undone".to_string(), 3 * 2048)],
        "journaled: the six batches"
    );
    assert!(
        text.contains("irreversible: 6,144 actions could not be undone by design")
            && text.contains("... and 6,132 more"),
        "{text}"
    );
    assert!(text.lines().count() < 40, "one line per removal:\n{text}");
}

/// Batches performed while the step planned, then an action of another
/// kind: the rest of the plan keeps the seqs after the batches (seen
/// failing when it was numbered from 0: "journal records of step 0 are
/// damaged (no action 6244)"). All 6,244 removals went early (the tail's
/// run ends when the other action arrives); every file goes, the folder is
/// made, each action is journaled once, in order, done.
#[test]
fn a_disposable_run_goes_on_after_its_early_batches_in_plan_order() {
    let f = Fixture::new();
    cache(&f, FILES);
    let rb = late_refusal(&f, true, Some("{ create_dir = \"cache/after\" }"));
    let ran = f.mend(&["run", rb.to_str().unwrap()]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    assert!(
        ran.text()
            .contains("6,244 removals done while it planned (7 batches)"),
        "{}",
        ran.text()
    );
    assert!(f.path("cache/after").is_dir());
    let left = tree(&f.path("cache"), false);
    assert!(
        left.keys().all(|k| !k.contains("/f")),
        "files left: {:?}",
        left.keys()
            .filter(|k| k.contains("/f"))
            .take(3)
            .collect::<Vec<_>>()
    );
    let id = history_id(&f);
    let states = crate::bulk::states(&f, &id);
    assert_eq!(states.len(), FILES as usize + 1);
    assert!(states.iter().all(|s| s == "done"), "not all done");
}
