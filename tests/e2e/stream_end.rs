//! A follower stops at the run's end mark, not at its terminal status: a
//! commit writes "committed" before it purges the trash, and the free space
//! that purge left after it. A viewer (`mend serve`'s stream) or `mend
//! watch` that stopped at the status missed that last event, and a browser
//! that came back between the two writes got a 204 and never saw it.
//!
//! The run is held (or killed) exactly between the two writes with
//! `MEND_PAUSE_AT` / `MEND_CRASH_AT` at `ended:0:0`, so nothing depends on
//! timing.

use crate::common::*;
use crate::lifecycle::kinds;
use crate::serve::{Server, Sse, stream};
use crate::watch::{Watcher, paused_run};

/// The run of `f`'s journal, and the kind of its last change.
fn last_change(f: &Fixture) -> (String, String) {
    let c = rusqlite::Connection::open_with_flags(
        f.state().join("journal.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    c.query_row(
        "SELECT run_id, kind FROM changes ORDER BY seq DESC LIMIT 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .unwrap()
}

fn wait_for(path: &std::path::Path) {
    let start = std::time::Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(120),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn free_space_after(events: &[Sse]) -> usize {
    events
        .iter()
        .filter(|e| e.event == "event" && e.data.contains("free space after"))
        .count()
}

#[test]
fn viewers_get_what_a_commit_writes_after_its_status() {
    let f = Fixture::new();
    let rb = kinds(&f, "pass", "rollback");
    let (mut run, gate) = paused_run(&f, &rb, "ended:0:0");
    let mut waiting = gate.clone().into_os_string();
    waiting.push(".waiting");
    wait_for(std::path::Path::new(&waiting));
    let (id, kind) = last_change(&f);
    assert_eq!(kind, "run", "held right after the run's status");
    let s = Server::start(&f, &["--listen", "127.0.0.1:0"]);
    let page = s.get(&format!("/runs/{id}"), &[]);
    assert!(
        page.body.contains("committed") && page.body.contains("data-live='1'"),
        "committed but not over: the page must still follow\n{}",
        page.body
    );

    // A viewer from the start, and `mend watch`, see "committed".
    let fresh = stream(s.port, &id, None);
    let mut got: Vec<Sse> = Vec::new();
    while !got
        .iter()
        .any(|e| e.event == "run" && e.data.contains("\"committed\""))
    {
        got.push(fresh.recv().expect("the stream ended before `committed`"));
    }
    let mut w = Watcher::start(&f, &[&id]);
    w.until(&["step 1", "verified"]);
    // A browser that comes back right after "committed" is not told that
    // nothing more will come (a 204).
    let committed = got.last().unwrap().id.clone();
    let back = stream(s.port, &id, Some(&committed));

    std::fs::write(&gate, "").unwrap();
    assert_eq!(run.wait().unwrap().code(), Some(0));
    got.extend(fresh.iter());
    let back: Vec<Sse> = back.iter().collect();
    let (code, text) = w.finish();

    for (who, events) in [("a viewer from the start", &got), ("a viewer back", &back)] {
        assert_eq!(
            free_space_after(events),
            1,
            "{who} missed the free space after the commit: {events:#?}"
        );
        assert_eq!(events.last().unwrap().event, "end", "{who}: {events:#?}");
    }
    assert_eq!(code, 0, "{text}");
    let after = text
        .lines()
        .position(|l| l.contains("free space after"))
        .unwrap_or_else(|| panic!("watch missed the free space after:\n{text}"));
    assert!(
        text.lines().last().unwrap().contains("committed after")
            && after + 1 < text.lines().count(),
        "{text}"
    );
    assert_eq!(last_change(&f), (id.clone(), "end".to_string()));
    // Now it is over: the page stops following, a stream is told so.
    let page = s.get(&format!("/runs/{id}"), &[]);
    assert!(page.body.contains("data-live='0'"), "{}", page.body);
    let end = &got.last().unwrap().id;
    let done = s.get(&format!("/runs/{id}/stream"), &[("Last-Event-ID", end)]);
    assert_eq!(done.status, 204);
}

#[test]
fn a_run_killed_after_its_status_is_ended_by_watch_and_by_resume() {
    let f = Fixture::new();
    let rb = kinds(&f, "pass", "rollback");
    let ran = f.mend_env(
        &["run", rb.to_str().unwrap()],
        &[("MEND_CRASH_AT", "ended:0:0")],
    );
    assert_eq!(ran.code, -1, "killed: {}", ran.text());
    let (id, kind) = last_change(&f);
    assert_eq!(kind, "run");
    // Its writer is gone: watch ends with the run's code, not "killed".
    let w = Watcher::start(&f, &[&id]);
    let (code, text) = w.finish();
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("committed after"), "{text}");
    // `mend resume` has nothing to do, and says so; it writes the end mark
    // the killed run could not, so a viewer's stream ends.
    let again = f.mend(&["resume", &id]);
    assert_eq!(again.code, 2, "{}", again.text());
    assert!(again.text().contains("is committed"), "{}", again.text());
    assert_eq!(last_change(&f), (id.clone(), "end".to_string()));
    let s = Server::start(&f, &["--listen", "127.0.0.1:0"]);
    let all: Vec<Sse> = stream(s.port, &id, None).iter().collect();
    assert_eq!(
        all.last().map(|e| e.event.as_str()),
        Some("end"),
        "{all:#?}"
    );
}
