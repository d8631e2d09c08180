//! On overlays a walk reads what the run has not touched from the lower
//! layer itself, and the overlay for the rest (issue 20). Whatever the
//! run did before the walk (a file removed from a copied-up folder, a
//! folder removed and made again, which the upper layer marks opaque, a
//! folder renamed over one removed, which it marks with a redirect, above
//! a lower folder of the same name), the rehearsal's walk
//! sees exactly what the run's walk sees.

use crate::common::*;

const RUNBOOK: &str = r#"
[runbook]
name = "reshape-then-walk"
version = "1.0.0"
summary = "change the tree, then walk it"

[grants.data]
path = "{root}/data"
access = "write"

[[steps]]
id = "remove-and-rename"
{guest:scripted}
grants = ["data"]
with = { actions = [{ remove = "data/copied/x" }, { remove = "data/opaque" }, { remove = "data/to" }, { rename = ["data/from", "data/to"] }] }

[[steps]]
id = "make-again"
{guest:scripted}
grants = ["data"]
with = { actions = [{ create_dir = "data/opaque" }, { write_file = ["data/opaque/new", "hello"] }] }

[[steps]]
id = "look"
{guest:scripted}
grants = ["data"]
with = { inspect = ["walk:data"] }
"#;

fn reshaped_tree(f: &Fixture) {
    for p in [
        "plain/sub/a",
        "plain/sub/b",
        "plain/sub/c",
        "copied/x",
        "copied/y",
        "copied/deep/p",
        "copied/deep/q",
        "opaque/o1",
        "opaque/o2",
        "opaque/o3",
        "opaque/sub/s1",
        "from/f1",
        "from/f2",
        "from/inner/f3",
    ] {
        f.write(&format!("data/{p}"), "0123456789");
    }
    // What `to` held before `from` took its place: under the redirect the
    // lower layer's `to/inner` is not what the overlay shows there.
    f.write("data/to/inner/stale", "abc");
    f.write("data/to/old", "abc");
    std::os::unix::fs::symlink("plain", f.path("data/link")).unwrap();
}

/// The walk's line of the `look` step.
fn walked(out: &str) -> String {
    out.lines()
        .find_map(|l| l.trim().strip_prefix("walk data: "))
        .unwrap_or_else(|| panic!("no walk line in:\n{out}"))
        .to_string()
}

#[test]
fn a_walk_on_an_overlay_sees_what_the_run_sees_after_removals_renames_and_folders_made_again() {
    // After the first two steps: plain (5 entries, 3 files), copied
    // without x (5, 3), opaque made again with one file of 5 B (2, 1),
    // `to` (5, 3), and the symlink.
    let want = "18 entries, 10 files, 95 bytes, 1 symlinks";
    let run = Fixture::new();
    reshaped_tree(&run);
    let rb = run.runbook("walk.toml", RUNBOOK);
    let ran = run.mend(&["run", rb.to_str().unwrap()]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    assert_eq!(walked(&ran.text()), want, "the run's walk");

    let f = Fixture::new();
    reshaped_tree(&f);
    let before = tree(&f.path("data"), true);
    let rb = f.runbook("walk.toml", RUNBOOK);
    let rehearsed = f.mend(&["rehearse", "--on", "overlay", rb.to_str().unwrap()]);
    assert_eq!(rehearsed.code, 0, "{}", rehearsed.text());
    assert!(
        rehearsed.text().contains("on overlays"),
        "{}",
        rehearsed.text()
    );
    assert_eq!(walked(&rehearsed.text()), want, "the rehearsal's walk");
    assert_same(&before, &tree(&f.path("data"), true), "the real grant");
}
