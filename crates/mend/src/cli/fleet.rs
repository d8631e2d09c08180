//! `mend fleet ...`: the controller's commands, and the hidden `fleet host
//! ...` ones the controller runs on each host over ssh.

use std::path::PathBuf;

use clap::Subcommand;
use mend_journal::fleet::{FleetHistory, LocalFleetJournal};

use crate::cli::{Ctx, parse_set};
use crate::exit;
use crate::fleet::{self, host};
use crate::outcome::Failure;

#[derive(Subcommand, Debug)]
pub enum FleetCmd {
    /// Plan a runbook on every host at once: actions and sizes per host, and
    /// a drift table of what the hosts disagree on; --out saves it for `fleet run`
    Plan {
        runbook: PathBuf,
        /// The inventory
        #[arg(short = 'i', long, default_value = "fleet.toml")]
        inventory: PathBuf,
        /// Only these hosts or groups (comma-separated)
        #[arg(long, value_delimiter = ',')]
        hosts: Vec<String>,
        /// Set a runbook parameter on every host, over the inventory's (repeatable)
        #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_set)]
        sets: Vec<(String, String)>,
        /// Save each host's plan and the batches in DIR, for `mend fleet run DIR`
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Ship FILE with the runbook to every host, checked by sha256 there;
        /// PARAM is set to the directory it lands in (repeatable)
        #[arg(long = "ship", value_name = "PARAM=FILE", value_parser = parse_set)]
        ships: Vec<(String, String)>,
    },
    /// Roll out what `fleet plan --out DIR` saved: batch by batch, canary
    /// first, stopping before a batch when too many hosts failed
    Run {
        dir: PathBuf,
        /// When the stop rule stops the rollout, roll back the hosts already
        /// done, newest batch first (they are held until the rollout ends)
        #[arg(long)]
        rollback_fleet: bool,
        #[command(flatten)]
        lock: BreakLockArgs,
    },
    /// Go on with a fleet run whose controller was killed: finish the batch
    /// in flight (each host is asked where it stands), then the rule decides
    Resume {
        fleet_run: String,
        #[command(flatten)]
        lock: BreakLockArgs,
    },
    /// Roll back the hosts of a fleet run that are still held (its
    /// controller died before it settled them), newest batch first
    Rollback { fleet_run: String },
    /// Fleet runs, newest first: this controller's, or with --journal (or
    /// MEND_FLEET_JOURNAL) every controller's from the shared PostgreSQL
    /// journal, with their hosts: what ran where, when, and how it ended
    History(crate::cli::fleet_history::Args),
    /// One fleet run: each host's batch, outcome and run; with --journal (or
    /// MEND_FLEET_JOURNAL) from the shared PostgreSQL journal
    Show {
        fleet_run: String,
        /// The shared journal: postgres://USER@HOST/DB or key=value pairs
        #[arg(long, env = "MEND_FLEET_JOURNAL", value_name = "DSN")]
        journal: Option<String>,
    },
    /// Retention of the shared journal: delete fleet runs finished, and host
    /// runs and records shipped, more than --keep-days days ago
    Prune {
        /// The shared journal: postgres://USER@HOST/DB or key=value pairs
        #[arg(long, env = "MEND_FLEET_JOURNAL", value_name = "DSN")]
        journal: String,
        #[arg(long, value_name = "N")]
        keep_days: u16,
    },
    /// Copy this controller's own mend to the hosts where mend is missing
    /// or of another version (same architecture, checked by sha256 there)
    Install {
        /// The inventory
        #[arg(short = 'i', long, default_value = "fleet.toml")]
        inventory: PathBuf,
        /// Only these hosts or groups (comma-separated)
        #[arg(long, value_delimiter = ',')]
        hosts: Vec<String>,
    },
    /// Run on a host by the controller, over ssh
    #[command(hide = true)]
    Host {
        #[command(subcommand)]
        command: HostCmd,
    },
}

/// `--break-lock [--yes]` of `fleet run` and `fleet resume`.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct BreakLockArgs {
    /// Break the shared journal's fleet lock held by another controller
    /// (asks first; the break is journaled)
    #[arg(long)]
    pub break_lock: bool,
    /// With --break-lock: break it without asking (no terminal needed)
    #[arg(long, requires = "break_lock")]
    pub yes: bool,
}

impl From<BreakLockArgs> for fleet::shared::BreakLock {
    fn from(a: BreakLockArgs) -> Self {
        fleet::shared::BreakLock {
            requested: a.break_lock,
            yes: a.yes,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum HostCmd {
    Receive {
        sum: String,
    },
    Bundle {
        sum: String,
    },
    Plan {
        runbook: PathBuf,
        #[arg(long = "set", value_parser = parse_set)]
        sets: Vec<(String, String)>,
    },
    Start {
        #[arg(long)]
        fleet_run: String,
        #[arg(long)]
        plan: String,
    },
    Supervise {
        #[arg(long)]
        fleet_run: String,
    },
    Wait {
        #[arg(long)]
        fleet_run: String,
    },
    Status {
        #[arg(long)]
        fleet_run: String,
    },
    /// Commit (--commit) or roll back (--rollback) this host's held run
    Settle {
        #[arg(long)]
        fleet_run: String,
        #[arg(
            long,
            conflicts_with = "rollback",
            required_unless_present = "rollback"
        )]
        commit: bool,
        #[arg(long)]
        rollback: bool,
    },
    /// The host run's records as JSON lines, for the shared journal
    Records {
        #[arg(long)]
        fleet_run: String,
    },
}

pub(crate) fn run(cx: &Ctx, command: FleetCmd) -> Result<i32, Failure> {
    let json = cx.out.json;
    match command {
        FleetCmd::Plan {
            runbook,
            inventory,
            hosts,
            sets,
            out,
            ships,
        } => {
            let p = fleet::plan::plan(&fleet::plan::Args {
                runbook: &runbook,
                inventory: &inventory,
                hosts: &hosts,
                sets: &sets,
                out: out.as_deref(),
                ships: &ships,
            })?;
            Ok(p.render(json))
        }
        FleetCmd::Install { inventory, hosts } => {
            Ok(fleet::install::install(&inventory, &hosts)?.render(json))
        }
        FleetCmd::Run {
            dir,
            rollback_fleet,
            lock,
        } => {
            let r = fleet::run::run(
                &cx.settings.state_dir,
                &dir,
                json,
                rollback_fleet,
                lock.into(),
            )?;
            Ok(r.render(json))
        }
        FleetCmd::Resume { fleet_run, lock } => {
            let r = fleet::run::resume(&cx.settings.state_dir, &fleet_run, json, lock.into())?;
            Ok(r.render(json))
        }
        FleetCmd::Rollback { fleet_run } => {
            let r = fleet::run::rollback(&cx.settings.state_dir, &fleet_run, json)?;
            Ok(r.render(json))
        }
        FleetCmd::Prune { .. } => Err(anyhow::anyhow!("fleet prune is async").into()),
        FleetCmd::History(args) => {
            let limit = usize::try_from(args.limit).unwrap_or(0);
            let runs = match LocalFleetJournal::open_existing(&cx.settings.state_dir)? {
                Some(j) => j.runs(limit)?,
                None => vec![],
            };
            if json {
                cx.out.print_json(&serde_json::json!({"fleet_runs": runs}));
            } else if runs.is_empty() {
                println!("no fleet runs in {}", cx.settings.state_dir.display());
            } else {
                for r in runs {
                    println!(
                        "{}  {}  {:<12}  {}",
                        r.id,
                        mend_journal::format_utc(r.started_at / 1000),
                        r.status,
                        r.runbook
                    );
                }
            }
            Ok(exit::SUCCESS)
        }
        FleetCmd::Show { fleet_run, .. } => {
            let j = LocalFleetJournal::open_existing(&cx.settings.state_dir)?;
            let run = match &j {
                Some(j) => j.run(&fleet_run)?,
                None => None,
            };
            let (Some(j), Some(run)) = (j, run) else {
                return Err(Failure::input(
                    &fleet_run,
                    format!(
                        "no fleet run {fleet_run} in {}",
                        cx.settings.state_dir.display()
                    ),
                    Some("`mend fleet history` lists them".into()),
                ));
            };
            let hosts = j.hosts(&fleet_run)?;
            if json {
                cx.out
                    .print_json(&serde_json::json!({"fleet_run": run, "hosts": hosts}));
            } else {
                println!("fleet run {}: {} ({})", run.id, run.runbook, run.status);
                for h in hosts {
                    println!(
                        "  {}  batch {}  {}  {}{}",
                        h.host,
                        h.batch,
                        h.state,
                        h.run_id.as_deref().unwrap_or("-"),
                        h.detail.map(|d| format!("  {d}")).unwrap_or_default()
                    );
                }
            }
            Ok(exit::SUCCESS)
        }
        FleetCmd::Host { command } => host_cmd(cx, command),
    }
}

fn host_cmd(cx: &Ctx, command: HostCmd) -> Result<i32, Failure> {
    let state = &cx.settings.state_dir;
    let print = |v: serde_json::Value| {
        cx.out.print_json(&v);
        Ok(exit::SUCCESS)
    };
    let bad = |e: anyhow::Error| Failure::input("fleet host", format!("{e:#}"), None);
    match command {
        HostCmd::Receive { sum } => print(host::receive(state, &sum).map_err(bad)?),
        HostCmd::Bundle { sum } => print(host::bundle(state, &sum).map_err(bad)?),
        HostCmd::Plan { runbook, sets } => print(host::plan(state, &runbook, &sets)?),
        HostCmd::Start { fleet_run, plan } => {
            let s = host::start(state, &fleet_run, &plan).map_err(bad)?;
            print(serde_json::to_value(s).expect("serializes"))
        }
        HostCmd::Supervise { fleet_run } => Ok(host::supervise(state, &fleet_run)?),
        HostCmd::Settle {
            fleet_run, commit, ..
        } => print(host::settle(state, &fleet_run, commit)?),
        HostCmd::Wait { fleet_run } => {
            print(serde_json::to_value(host::wait(state, &fleet_run)?).expect("serializes"))
        }
        HostCmd::Status { fleet_run } => {
            print(serde_json::to_value(host::status(state, &fleet_run)?).expect("serializes"))
        }
        HostCmd::Records { fleet_run } => {
            for line in fleet::shared::host_records(state, &fleet_run).map_err(bad)? {
                println!("{line}");
            }
            Ok(exit::SUCCESS)
        }
    }
}
