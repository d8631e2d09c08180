//! Plans that stream: a step's plan builder hands its actions to the host
//! every 2,048 (`plan-sink.emit`; the first hand-overs 256, 256, 512 and
//! 1,024) while it plans; the host checks and packs each batch as it
//! arrives and the run reads the batches back from the journal one at a
//! time. A cull of 5,000 files arrives in five batches and a tail. Killed
//! inside the batch from 2,048 to 4,095, a resume ends as an uninterrupted
//! run, every removal done once; a trash run killed there rolls back byte
//! identical. And neither the host's unpacked actions nor the step's memory
//! grow with the number of files (deterministic counts, not timings).

use crate::bulk::{cache_of as cache, cull, each_kill_resumes_to, rows, states};
use crate::common::*;

/// `mend --json plan`'s step: its actions and how they arrived.
fn planned(f: &Fixture, rb: &std::path::Path) -> serde_json::Value {
    let ran = f.mend(&["--json", "plan", rb.to_str().unwrap()]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    let v: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    v["steps"][0].clone()
}

const FILES: u32 = 5_000;

#[test]
fn a_streamed_cull_killed_inside_a_later_batch_resumes_exactly() {
    let want = {
        let f = Fixture::new();
        cache(&f, FILES);
        let rb = cull(&f, true);
        let step = planned(&f, &rb);
        assert_eq!(step["actions"].as_array().unwrap().len(), FILES as usize);
        // 256, 256, 512, 1,024 and 2,048 handed over while planning; the
        // 904 left came with the returned plan.
        assert_eq!(step["arrival"]["batches"], 5, "{}", step["arrival"]);
        let ran = f.mend(&["run", rb.to_str().unwrap()]);
        assert_eq!(ran.code, 0, "{}", ran.text());
        assert_eq!(rows(&f, "bulk"), 6, "5,000 removals in 6 batch records");
        assert_eq!(rows(&f, "actions"), 0);
        tree(&f.path("cache"), false)
    };
    each_kill_resumes_to(
        &want,
        FILES,
        &["intent:0:2048", "perform:0:3000", "perform:0:4095"],
    );
}

/// A disposable cull performs its batches while it still plans: killed
/// inside the batch from 2,048, the journal holds the four before it done
/// (2,048 removals) and that one intended, and nothing of the tail (the
/// whole plan journaled first would list all 5,000). The step is left
/// applying with no plan; the resume finishes the intended batch, plans again from seq 4,096 and ends as
/// an uninterrupted run, each removal done once.
#[test]
fn a_disposable_cull_performs_its_batches_while_it_plans() {
    let f = Fixture::new();
    cache(&f, FILES);
    let rb = cull(&f, true);
    let ran = f.mend_env(
        &["run", rb.to_str().unwrap()],
        &[("MEND_CRASH_AT", "perform:0:3000")],
    );
    assert_eq!(ran.code, -1, "expected a SIGKILL: {}", ran.text());
    let id = history_id(&f);
    let at_kill = states(&f, &id);
    let done = at_kill.iter().filter(|s| *s == "done").count();
    let intended = at_kill.iter().filter(|s| *s == "intended").count();
    assert_eq!(
        (at_kill.len(), done, intended),
        (4096, 2048, 2048),
        "journaled at the kill: the batches before 2,048 done, the one from 2,048 intended, no tail"
    );
    let resumed = f.mend(&["resume", &id]);
    assert_eq!(resumed.code, 0, "{}", resumed.text());
    assert_eq!(states(&f, &id), vec!["done"; FILES as usize]);
    assert_eq!(tree(&f.path("cache"), false).len(), 1 + 10 + 10);
}

#[test]
fn a_streamed_trash_cull_killed_inside_a_later_batch_rolls_back_byte_identical() {
    let f = Fixture::new();
    cache(&f, FILES);
    let before = tree(&f.path("cache"), true);
    let rb = cull(&f, false);
    let ran = f.mend_env(
        &["run", rb.to_str().unwrap()],
        &[("MEND_CRASH_AT", "perform:0:3000")],
    );
    assert_eq!(ran.code, -1, "expected a SIGKILL: {}", ran.text());
    let id = history_id(&f);
    let back = f.mend(&["rollback", &id]);
    assert_eq!(back.code, 0, "{}", back.text());
    assert_same(&before, &tree(&f.path("cache"), true), "after the rollback");
    let undone = states(&f, &id);
    // The moves went to the trash while the step planned: the kill inside
    // the batch from 2,048 left the tail unjournaled (the whole plan first
    // would list all 5,000, the tail planned). The batches before it and
    // that one up to the kill were undone.
    assert_eq!(undone.len(), 4096);
    assert!(undone.iter().all(|s| s == "undone"), "{:?}", &undone[..3]);
}

#[test]
fn memory_does_not_grow_with_the_number_of_files() {
    let arrival = |n: u32| {
        let f = Fixture::new();
        cache(&f, n);
        let step = planned(&f, &cull(&f, true));
        assert_eq!(step["actions"].as_array().unwrap().len(), n as usize);
        let a = &step["arrival"];
        (
            a["held_max"].as_u64().unwrap(),
            a["step_memory"].as_u64().unwrap(),
        )
    };
    let (held_small, mem_small) = arrival(5_000);
    let (held_big, mem_big) = arrival(20_000);
    // The host holds at most the batch handed over and the run it is
    // packing, whatever the plan's size.
    assert!(held_small <= 2 * 2048, "{held_small}");
    assert_eq!(held_big, held_small, "unpacked actions held at once");
    // The step's memory: its walk batch, its plan builder's batch and the
    // 10 directories, not its 20,000 files. 15,000 more actions held would
    // be some 2 MB more (wasm memory grows by 64 KiB pages).
    assert!(
        mem_big <= mem_small + (512 << 10),
        "the step grew from {mem_small} to {mem_big} bytes for 4 times the files"
    );
}
