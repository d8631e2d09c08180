//! `mend lint RUNBOOK`: check a runbook and its steps' parameters without
//! running anything. Given a fleet inventory (`[hosts]`, no `[runbook]`),
//! it checks that instead.

#[allow(unused_imports)]
use crate::secrets::{eprintln, println};
use std::path::Path;

use mend_runbook::fleet::{Inventory, JournalTarget, inventory::looks_like_inventory};
use serde_json::json;

use crate::cli::Ctx;
use crate::exit;
use crate::load::{Purpose, prepare_for};
use crate::outcome::Failure;

pub(crate) async fn run(cx: &Ctx, file: &Path, sets: &[(String, String)]) -> Result<i32, Failure> {
    if std::fs::read_to_string(file).is_ok_and(|s| looks_like_inventory(&s)) {
        return inventory(cx, file);
    }
    // A laptop or a CI job lacks the server's directories and users: each
    // is a warning, and everything else is checked.
    let prepared = prepare_for(
        &cx.sandbox,
        file,
        sets,
        &Default::default(),
        Purpose::Lint,
        &cx.settings.trust,
    )
    .await?;
    cx.out.lint(&prepared);
    Ok(exit::SUCCESS)
}

fn inventory(cx: &Ctx, file: &Path) -> Result<i32, Failure> {
    let inv = Inventory::load(file).map_err(Failure::BadInput)?;
    let note: Option<&str> = match &inv.journal {
        JournalTarget::Local | JournalTarget::Postgres(_) => None,
    };
    if cx.out.json {
        cx.out.print_json(&json!({
            "ok": true,
            "inventory": {"file": file, "hosts": inv.hosts.len(), "groups": inv.groups},
            "warnings": note.into_iter().collect::<Vec<_>>(),
        }));
    } else {
        if let Some(n) = note {
            eprintln!("warning: {n}");
        }
        println!(
            "{}: ok (fleet inventory, {} hosts, {} groups)",
            file.display(),
            inv.hosts.len(),
            inv.groups.len()
        );
    }
    Ok(exit::SUCCESS)
}
