//! One describer of actions: what a step's test reads from
//! `mend_sdk::testing::lines` is word for word what `mend plan` prints and
//! a saved plan keeps, for every action kind.

use crate::common::*;

/// The scripted step's `with`: one of every action kind, with arguments
/// that need quoting and a name with a control character.
const WITH: &str = r#"actions = [
  { remove = "data/a.txt" },
  { remove = "data/bell\u0007name" },
  { rename = ["data/b.txt", "data/keep/b.txt"] },
  { swap = ["data/x", "data/y"] },
  { create_dir = "data/new/deep" },
  { write_file = ["data/keep/c.txt", "changed\n"] },
  { copy = ["data/keep", "data/keep-copy"] },
  { extract = ["data/release.tar.gz", "data/unpacked", "tar-gz"] },
  { archive = ["data/old", "data/old.tar.zst", "tar-zst"] },
  { set_owner = ["data/keep", "nobody", "nogroup", true] },
  { set_owner = ["data/a.txt", "", "nogroup"] },
  { set_mode = ["data/keep", 416, true, 488] },
  { set_mode = ["data/b.txt", 384] },
  { exec = ["ctl", ["stop", "web app"]], undo = ["ctl", ["start", "web app"]] },
  { exec = ["ctl", ["stop", "it's"]] },
  { exec = ["dump", ["-f", "@data/db.dump"]], creates = "data/db.dump" },
]"#;

#[test]
fn the_sdk_describes_every_action_kind_in_the_words_of_mend_plan() {
    let f = Fixture::new();
    populate(&f);
    f.write("data/bell\x07name", "ding\n");
    let rb = f.runbook(
        "describe.toml",
        &format!(
            r#"[runbook]
name = "describe"
version = "1.0.0"
summary = "every action kind, described"

[grants.data]
path = "{{root}}/data"
access = "write"

[commands.ctl]
program = "/bin/true"
changes = [["stop", "*"], ["start", "*"]]

[commands.dump]
program = "/bin/true"
changes = [["-f", "@data/*"]]

[[steps]]
id = "every"
{{guest:scripted}}
grants = ["data"]
commands = ["ctl", "dump"]

[steps.with]
{WITH}
"#
        ),
    );

    // The SDK's words: the same step, planned natively with the fake host.
    let with: serde_json::Value = toml::from_str(WITH).unwrap();
    let host = mend_sdk::testing::FakeHost::new(1_795_316_400)
        .grant("data", mend_sdk::Access::Write)
        .command("ctl")
        .command("dump");
    let plan = mend_sdk::testing::plan::<guest_scripted::Scripted>(&host, with).unwrap();
    let sdk = mend_sdk::testing::lines(&plan);
    assert_eq!(sdk.len(), 16, "{sdk:#?}");
    // Spot checks that the comparison below compares something.
    assert!(sdk.contains(&"exec ctl stop 'web app' (undo: ctl start 'web app')".to_string()));
    assert!(sdk.contains(&"remove data/bell\\x07name".to_string()));

    // The engine's: a saved plan keeps each action's line...
    let saved = f.path("describe.plan.json");
    let ran = f.mend(&[
        "--now",
        "1795316400",
        "plan",
        "--all",
        rb.to_str().unwrap(),
        "--out",
        saved.to_str().unwrap(),
    ]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    let pinned: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    let engine: Vec<String> =
        serde_json::from_value(pinned["steps"][0]["actions"].clone()).unwrap();
    assert_eq!(engine, sdk, "saved plan against mend_sdk::testing::lines");
    // ...and the table `mend plan` prints has each, kind in its column.
    for line in &sdk {
        let (kind, what) = line.split_once(' ').unwrap();
        let row = format!("{kind:<10} {what}");
        assert!(
            ran.stdout.lines().any(|l| l.trim_start().starts_with(&row)),
            "no row `{row}` in:\n{}",
            ran.stdout
        );
    }
}
