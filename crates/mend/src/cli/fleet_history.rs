//! `mend fleet history --journal DSN [--runbook NAME] [--host HOST]
//! [--limit N]`: the fleet runs in the shared PostgreSQL journal, newest
//! first, each with its hosts: what ran where, when, and how it ended. Any
//! controller can ask; it needs no state of its own.
//!
//! A file of its own so the fleet commands (the controller) can take this
//! subcommand into their own `mend fleet` without touching it.

use mend_human::time::format_utc;
use mend_journal::pg::{FleetRun, HistoryQuery, PgError, Shared};

use crate::cli::Ctx;
use crate::exit;
use crate::outcome::Failure;

/// The arguments of `mend fleet history`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The shared journal: postgres://USER@HOST/DB or key=value pairs
    /// (host=/run/postgresql dbname=mend). A password is better given in
    /// PGPASSWORD than on the command line
    #[arg(long, env = "MEND_FLEET_JOURNAL", value_name = "DSN")]
    pub journal: Option<String>,
    /// Only fleet runs of this runbook (its [runbook] name)
    #[arg(long)]
    pub runbook: Option<String>,
    /// Only fleet runs that reached this host (its inventory name)
    #[arg(long)]
    pub host: Option<String>,
    #[arg(long, default_value_t = 20)]
    pub limit: i64,
}

/// A shared-journal error in the terms of mend's exit codes: a bad DSN, a
/// pooler, a too-new journal are bad input (2); the rest internal (70).
pub(crate) fn failure(e: PgError) -> Failure {
    if e.is_bad_input() {
        Failure::input("--journal", e.to_string(), None)
    } else {
        Failure::Internal(anyhow::Error::new(e))
    }
}

pub(crate) async fn run(cx: &Ctx, args: Args) -> Result<i32, Failure> {
    let Some(dsn) = args.journal.as_deref() else {
        return Err(anyhow::anyhow!("fleet_history::run without --journal").into());
    };
    let shared = Shared::connect(dsn).await.map_err(failure)?;
    let runs = shared
        .history(&HistoryQuery {
            limit: args.limit,
            runbook: args.runbook,
            host: args.host,
        })
        .await
        .map_err(failure)?;
    if cx.out.json {
        cx.out.print_json(&serde_json::json!(runs));
        return Ok(exit::SUCCESS);
    }
    print!("{}", text(&runs));
    Ok(exit::SUCCESS)
}

fn time(ms: i64) -> String {
    format_utc(ms.div_euclid(1000))
}

/// One line per fleet run, then one per host, indented.
fn text(runs: &[FleetRun]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    if runs.is_empty() {
        s.push_str("no fleet runs in the shared journal\n");
    }
    for r in runs {
        let _ = write!(
            s,
            "{}  {:<11} {} {}  {}",
            r.id,
            r.status,
            r.runbook,
            r.runbook_version,
            time(r.started_at_ms)
        );
        if let Some(f) = r.finished_at_ms {
            let _ = write!(s, " .. {}", time(f));
        }
        let _ = writeln!(
            s,
            "  by {} on {} pid {} (token {})",
            r.operator, r.controller, r.pid, r.token
        );
        if let Some(e) = &r.error {
            let _ = writeln!(s, "    error: {e}");
        }
        for h in &r.hosts {
            let _ = write!(s, "    batch {}  {:<16} {:<11}", h.batch, h.host, h.status);
            if let Some(id) = &h.run_id {
                let _ = write!(s, " run {id}");
                if let Some(st) = &h.run_status {
                    let _ = write!(s, " ({st})");
                }
            }
            if let Some(e) = &h.error {
                let _ = write!(s, "  {e}");
            }
            s.push('\n');
        }
    }
    s
}
