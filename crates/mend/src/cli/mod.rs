//! The `mend` command line: parse, hand to the library, print, exit with the
//! code the outcome owns ([`crate::outcome`]). One file per subcommand; this
//! one parses and dispatches.

mod demo;
mod fleet;
mod fleet_history;
mod fleet_shared;
mod history;
mod lint;
mod logging;
mod plan;
mod progress;
mod prune;
mod rehearse;
mod render;
pub mod report;
mod resume;
mod rollback;
mod run;
mod sdk;
mod serve;
mod show;
mod step;
mod step_share;
mod step_upgrade;
mod unlock;
mod watch;
pub use render::Out;

#[allow(unused_imports)]
use crate::secrets::eprintln;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use mend_host::sandbox::Sandbox;
use mend_journal::{HistoryFilter, RunStatus};

use crate::exit;
use crate::load::supply::{self, Policy, Trust};
use crate::outcome::Failure;
use crate::settings::{Reporter, Settings, Silent};

/// Runbooks for self-hosted services: planned, sandboxed, journaled, undoable.
#[derive(Parser, Debug)]
#[command(name = "mend", version, about, max_term_width = 100)]
pub struct Cli {
    /// Where the journal and locks live [default: /var/lib/mend for root,
    /// else $XDG_STATE_HOME/mend or ~/.local/state/mend]
    #[arg(long, global = true, env = "MEND_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Where compiled steps are cached [default: /var/cache/mend for root,
    /// else $XDG_CACHE_HOME/mend or ~/.cache/mend]
    #[arg(long, global = true, env = "MEND_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Fix the clock steps see (seconds since the Unix epoch), for
    /// reproducible plans and rehearsals
    #[arg(long, global = true, value_name = "EPOCH")]
    pub now: Option<i64>,
    /// Print one JSON document instead of text
    #[arg(long, global = true)]
    pub json: bool,
    /// More logging on stderr: -v what mend does, -vv why, -vvv wasmtime's
    /// too (journald priorities when stderr is the journal; MEND_LOG overrides)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// The operator's supply-chain policy: signatures required, keys
    /// trusted [default: /etc/mend/policy.toml, when it exists]
    #[arg(long, global = true, env = "MEND_POLICY", value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Run this .wasm step although it imports more than its runbook's
    /// `capabilities` approve, for this invocation only (repeatable)
    #[arg(long = "approve-capabilities", global = true, value_name = "STEP")]
    pub approve_capabilities: Vec<String>,
    /// Reach OCI registries over plain HTTP: only for a registry on this
    /// machine (127.0.0.1, ::1, localhost), as in tests
    #[arg(long, global = true, env = "MEND_INSECURE_REGISTRY")]
    pub insecure: bool,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Show what a run would do. Changes nothing anywhere, the journal included
    Plan {
        runbook: PathBuf,
        /// Set a runbook parameter (repeatable)
        #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_set)]
        sets: Vec<(String, String)>,
        /// List every action, not the first few of each step
        #[arg(long)]
        all: bool,
        /// Save the plan with the facts it rests on, for `mend run --plan FILE`
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Run a runbook: plan, apply, verify each step; roll back on failure
    Run {
        /// The runbook (taken from the saved plan with --plan)
        #[arg(required_unless_present = "plan")]
        runbook: Option<PathBuf>,
        #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_set)]
        sets: Vec<(String, String)>,
        /// Run only if this saved plan (`mend plan --out`) still holds
        #[arg(long, value_name = "FILE", conflicts_with = "sets")]
        plan: Option<PathBuf>,
        /// Once every step verified, hold the run instead of committing it:
        /// its undo data stays until `mend commit RUN` or `mend rollback RUN`
        /// (what `mend fleet run` does on each host)
        #[arg(long)]
        hold: bool,
    },
    /// Commit a held run (`mend run --hold`): its undo data is purged
    Commit { run: String },
    /// Finish a run that was interrupted
    Resume {
        run: String,
        /// Internal (rehearse --faults): resume on the overlays SPEC names
        #[arg(long, value_name = "SPEC", hide = true)]
        in_overlay: Option<std::path::PathBuf>,
    },
    /// Undo a run that failed, stopped or was interrupted
    Rollback { run: String },
    /// Run on overlays (or copies) of the grants, roll back, and prove nothing is left changed
    Rehearse {
        runbook: PathBuf,
        #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_set)]
        sets: Vec<(String, String)>,
        /// Rehearse again under injected faults: a kill after each action
        /// (then resume), no space at each step (then rollback); each must
        /// end with every grant as it started
        #[arg(long)]
        faults: bool,
        /// With --faults: kill after at most N actions, evenly spread
        #[arg(long, value_name = "N", default_value_t = 40, requires = "faults")]
        max_kills: usize,
        /// Internal (--faults): rehearse on copies already made in DIR/GRANT
        #[arg(long, value_name = "DIR", hide = true, conflicts_with = "faults")]
        copies: Option<PathBuf>,
        /// How the grants are presented: overlays on their own paths (root,
        /// Linux), reflinked copies (btrfs, XFS), full copies; auto takes
        /// the first that works and says why
        #[arg(long, value_enum, default_value = "auto", env = "MEND_REHEARSE_ON")]
        on: crate::run::rehearse::On,
        /// Where the upper layers or copies go [default: /dev/shm for
        /// overlays, beside each write grant for reflinked copies, $TMPDIR
        /// for copies]
        #[arg(long, value_name = "DIR")]
        scratch: Option<PathBuf>,
        /// Internal: the child that mounts the overlays SPEC names
        #[arg(long, value_name = "SPEC", hide = true, conflicts_with = "copies")]
        in_overlay: Option<PathBuf>,
    },
    /// Stop a hung run that holds a runbook's lock, by the lock id its refusal
    /// printed; the run stays resumable (mend resume / mend rollback)
    Unlock {
        /// The runbook's name (its [runbook] name, as the refusal says)
        runbook: String,
        /// The lock id from the refusal: a later run's lock has another one
        #[arg(long)]
        id: String,
    },
    /// Past runs, newest first
    History {
        /// Only runs of this runbook
        #[arg(long)]
        runbook: Option<String>,
        /// Only runs with this status (running, committed, rolled-back, ...)
        #[arg(long)]
        status: Option<RunStatus>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Remove old runs from the journal: those older than the policy's
    /// [history] keep_days or past its keep_runs per runbook (90 days, 100
    /// runs by default). Never a run that can still be resumed or rolled
    /// back. mend also prunes after each committed run
    Prune {
        /// Keep runs started within N days (0: no age limit)
        #[arg(long, value_name = "N")]
        keep_days: Option<u32>,
        /// Keep the newest N runs of each runbook (0: no count limit)
        #[arg(long, value_name = "N")]
        keep_runs: Option<u32>,
        /// Show what would be removed; remove nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// One run: its steps, actions and events
    Show { run: String },
    /// Follow a run as the journal records it (read-only, from any shell,
    /// `ssh HOST mend watch` too); exits with the run's exit code
    Watch {
        /// The run (an id or a prefix of 4+ characters) [default: the latest]
        #[arg(conflicts_with = "latest")]
        run: Option<String>,
        /// The latest run (of --runbook, when given)
        #[arg(long)]
        latest: bool,
        /// With --latest: the latest run of this runbook
        #[arg(long, conflicts_with = "run")]
        runbook: Option<String>,
    },
    /// Serve the journal as a read-only web page, live while a run runs
    Serve {
        /// Where to listen; any address but loopback needs --token-file
        #[arg(long, default_value = "127.0.0.1:8719", value_name = "ADDR")]
        listen: std::net::SocketAddr,
        /// A file holding the token viewers must give (bearer, cookie or ?token=)
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
        /// The fleet's shared journal (postgres://USER@HOST/DB or key=value
        /// pairs): show every host's runs from it, read-only, not this
        /// state directory's
        #[arg(long, env = "MEND_FLEET_JOURNAL", value_name = "DSN")]
        journal: Option<String>,
    },
    /// One run as a Markdown timeline for the postmortem: mend report RUN > RUN.md
    Report {
        run: String,
        /// Also write the run's timeline picture (SVG) to this file, to
        /// embed beside the Markdown
        #[arg(long, value_name = "FILE")]
        svg: Option<PathBuf>,
    },
    /// Check a runbook (and its steps' parameters), or a fleet inventory, without running anything
    Lint {
        runbook: PathBuf,
        #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_set)]
        sets: Vec<(String, String)>,
    },
    /// One runbook over many hosts through ssh: plan (with a drift table),
    /// then a rollout in batches, canary first
    Fleet {
        #[command(subcommand)]
        command: fleet::FleetCmd,
    },
    /// For step authors: look inside a step
    Step {
        #[command(subcommand)]
        command: StepCmd,
    },
    /// Print a shell completion script: mend completions bash > /etc/bash_completion.d/mend
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): mend man > /usr/local/share/man/man1/mend.1
    Man,
    /// Print the runbook JSON Schema, bundled steps' parameters included, for
    /// editors: mend schema > runbook.schema.json
    Schema {
        /// The schema of fleet inventories (fleet.toml) instead
        #[arg(long)]
        fleet: bool,
    },
    /// Generate a sandbox Mastodon instance and run the maintenance runbook on it
    Demo {
        /// Where to generate it [default: a new temporary directory]
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum StepCmd {
    /// Scaffold a step crate (Cargo.toml, src/lib.rs with a test) that builds into a component
    New {
        /// The step's name: lowercase letters, digits, dashes
        name: String,
        /// Where to create it [default: ./NAME]
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The sdk/ folder of a mend checkout [default: the SDK inside this
        /// mend, written to CACHE_DIR/sdk/VERSION-HASH]
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Build a step crate into a component (cargo, wasm32-wasip2, release),
    /// check it is a step, and print the lines that pin it in a runbook
    Build {
        /// The step crate [default: .]
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Run a step crate's native tests (cargo test, against the SDK's fake host)
    Test {
        /// The step crate [default: .]
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// A step's name, version, parameters, imports and sha256 (for pinning)
    Inspect {
        /// A component file (.wasm), std:NAME for a bundled step, or an
        /// oci:// reference (pulled into the cache; with its manifest
        /// digest, annotations and signature key)
        step: String,
    },
    /// Publish a step's component as a Wasm OCI artifact (with FILE.minisig
    /// as a referrer when it exists) and print the lines that pin it
    Push {
        /// The step's .wasm file
        file: PathBuf,
        /// oci://REGISTRY/NAMESPACE/NAME:VERSION (VERSION: the step's own)
        target: String,
        /// Where its source lives (org.opencontainers.image.source)
        #[arg(long, value_name = "URL")]
        source: Option<String>,
        /// Move an existing tag to these bytes (runbooks pinned to the old
        /// bytes will refuse to run)
        #[arg(long)]
        force: bool,
    },
    /// Fetch an oci:// step into the state directory's cache (for a CI
    /// image or an air-gapped host) and print the lines that pin it
    Pull {
        /// oci://REGISTRY/NAMESPACE/NAME:VERSION
        reference: String,
    },
    /// Move a runbook's oci:// step to another version: show what changes
    /// (capabilities, parameters, signature key, sha256), then rewrite its
    /// uses, sha256 and capabilities, keeping every other byte of the file
    Upgrade {
        runbook: PathBuf,
        /// The step's id
        step: String,
        /// The version (tag) to move to
        #[arg(long, value_name = "VERSION")]
        to: String,
        /// Rewrite without asking
        #[arg(long, conflicts_with = "dry_run")]
        yes: bool,
        /// Show the changes only
        #[arg(long)]
        dry_run: bool,
    },
}

pub(crate) fn parse_set(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .ok_or_else(|| format!("`{s}` is not KEY=VALUE"))
}

/// The default state directory: right for root and for a normal user.
pub fn default_state_dir() -> PathBuf {
    if rustix::process::geteuid().is_root() {
        return PathBuf::from("/var/lib/mend");
    }
    xdg("XDG_STATE_HOME", ".local/state").join("mend")
}

fn default_cache_dir() -> PathBuf {
    if rustix::process::geteuid().is_root() {
        return PathBuf::from("/var/cache/mend");
    }
    xdg("XDG_CACHE_HOME", ".cache").join("mend")
}

fn xdg(var: &str, fallback: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir)
            .join(fallback),
    }
}

/// What every subcommand gets: the engine, the invocation's settings, the
/// output, built once.
pub(crate) struct Ctx {
    pub sandbox: Sandbox,
    pub settings: Settings,
    pub out: Out,
    /// Where compiled steps are cached (fault rehearsals pass it on).
    pub cache_dir: PathBuf,
    pub verbose: bool,
}

/// Parse the command line, run, print, and return the exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    logging::init(cli.verbose);
    if let Err(e) = mend_faults::check_env() {
        eprintln!("error: {e}");
        return exit::BAD_INPUT;
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return exit::INTERNAL;
        }
    };
    let code = rt.block_on(run(cli));
    // A step killed at its deadline while the kernel blocked it in a file
    // call (a read of a FIFO through WASI) leaves that call's thread
    // behind: the process ends without waiting for it.
    rt.shutdown_background();
    code
}

/// Build the context, run the subcommand, print a failure, give the code.
async fn run(cli: Cli) -> i32 {
    // Generated from the CLI definition itself, so they never fall behind.
    match cli.command {
        Cmd::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "mend", &mut std::io::stdout());
            return exit::SUCCESS;
        }
        Cmd::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            return match clap_mangen::Man::new(cmd).render(&mut std::io::stdout()) {
                Ok(()) => exit::SUCCESS,
                Err(e) => {
                    eprintln!("error: cannot write the man page: {e}");
                    exit::INTERNAL
                }
            };
        }
        _ => {}
    }
    let out = Out::new(cli.json);
    let cx = match context(&cli, out.clone()) {
        Ok(cx) => cx,
        Err(f) => return out.failure(&f),
    };
    // A full disk is when mend is needed: commands that journal may run
    // on the reserve kept in the state directory (mend_journal::reserve).
    let writes = matches!(
        cli.command,
        Cmd::Run { .. } | Cmd::Resume { .. } | Cmd::Rollback { .. } | Cmd::Commit { .. }
    );
    let reserve = writes.then(|| mend_journal::reserve::before(&cx.settings.state_dir));
    let result = dispatch(&cx, cli.command).await;
    if let Some(before) = reserve {
        mend_journal::reserve::after(&cx.settings.state_dir, &before);
    }
    match result {
        Ok(code) => code,
        Err(f) => out.failure(&f),
    }
}

async fn dispatch(cx: &Ctx, command: Cmd) -> Result<i32, Failure> {
    match command {
        Cmd::Plan {
            runbook,
            sets,
            all,
            out,
        } => plan::run(cx, &runbook, &sets, all, out.as_deref()).await,
        Cmd::Run {
            runbook,
            sets,
            plan,
            hold,
        } => run::run(cx, runbook, sets, plan.as_deref(), hold).await,
        Cmd::Commit { run } => run::commit(cx, &run).await,
        Cmd::Resume { run, in_overlay } => resume::run(cx, &run, in_overlay.as_deref()).await,
        Cmd::Rollback { run } => rollback::run(cx, &run).await,
        Cmd::Rehearse {
            runbook,
            sets,
            faults,
            max_kills,
            copies,
            on,
            scratch,
            in_overlay,
        } => {
            let mode = match (faults, copies, in_overlay) {
                (_, _, Some(spec)) => rehearse::Mode::InOverlay(spec),
                (true, _, None) => rehearse::Mode::Faults { max_kills, on },
                (false, Some(dir), None) => rehearse::Mode::OnCopies(dir),
                (false, None, None) => rehearse::Mode::Plain { on, scratch },
            };
            rehearse::run(cx, &runbook, &sets, mode).await
        }
        Cmd::Unlock { runbook, id } => unlock::run(cx, &runbook, &id).await,
        Cmd::History {
            runbook,
            status,
            limit,
        } => history::run(
            cx,
            HistoryFilter {
                runbook,
                status,
                limit: Some(limit),
            },
        ),
        Cmd::Prune {
            keep_days,
            keep_runs,
            dry_run,
        } => prune::run(cx, keep_days, keep_runs, dry_run),
        Cmd::Show { run } => show::run(cx, &run),
        Cmd::Report { run, svg } => report::run(cx, &run, svg.as_deref()),
        Cmd::Serve {
            listen,
            token_file,
            journal,
        } => serve::run(cx, listen, token_file.as_deref(), journal).await,
        Cmd::Watch {
            run,
            latest: _,
            runbook,
        } => watch::run(cx, run.as_deref(), runbook),
        Cmd::Lint { runbook, sets } => lint::run(cx, &runbook, &sets).await,
        Cmd::Fleet {
            command: fleet::FleetCmd::History(args),
        } if args.journal.is_some() => fleet_history::run(cx, args).await,
        Cmd::Fleet {
            command:
                fleet::FleetCmd::Show {
                    fleet_run,
                    journal: Some(dsn),
                },
        } => fleet_shared::show(cx, &dsn, &fleet_run).await,
        Cmd::Fleet {
            command: fleet::FleetCmd::Prune { journal, keep_days },
        } => fleet_shared::prune(cx, &journal, keep_days).await,
        Cmd::Fleet { command } => fleet::run(cx, command),
        Cmd::Step { command } => match command {
            StepCmd::Inspect { step } if step.starts_with("oci://") => {
                step_share::inspect(&cx.sandbox, &cx.out, &cx.settings.trust, &step, cx.verbose)
                    .await
            }
            StepCmd::Inspect { step } => {
                step::inspect(&cx.sandbox, &cx.out, &step, cx.verbose).await
            }
            StepCmd::New { name, dir, sdk } => step::new(
                &cx.out,
                &name,
                dir.as_deref(),
                sdk.as_deref(),
                &cx.cache_dir,
            ),
            StepCmd::Build { dir } => step::build(&cx.sandbox, &cx.out, &dir).await,
            StepCmd::Test { dir } => step::test(&dir),
            StepCmd::Push {
                file,
                target,
                source,
                force,
            } => {
                step_share::push(
                    &cx.sandbox,
                    &cx.out,
                    &cx.settings.trust.oci,
                    &file,
                    &target,
                    source.as_deref(),
                    force,
                )
                .await
            }
            StepCmd::Upgrade {
                runbook,
                step,
                to,
                yes,
                dry_run,
            } => {
                let confirm = match (yes, dry_run) {
                    (true, _) => step_upgrade::Confirm::Yes,
                    (_, true) => step_upgrade::Confirm::DryRun,
                    _ => step_upgrade::Confirm::Ask,
                };
                step_upgrade::upgrade(
                    &cx.sandbox,
                    &cx.out,
                    &cx.settings.trust,
                    &runbook,
                    &step,
                    &to,
                    confirm,
                )
                .await
            }
            StepCmd::Pull { reference } => {
                step_share::pull(
                    &cx.sandbox,
                    &cx.out,
                    &cx.settings.trust.oci,
                    &cx.settings.trust.policy,
                    &reference,
                )
                .await
            }
        },
        Cmd::Schema { fleet: true } => {
            cx.out.print_json(&mend_runbook::schema::fleet_schema());
            Ok(exit::SUCCESS)
        }
        Cmd::Schema { fleet: false } => step::schema(&cx.sandbox).await,
        Cmd::Demo { dir } => demo::run(cx, dir).await,
        Cmd::Completions { .. } | Cmd::Man => unreachable!("handled before the context"),
    }
}

/// The engine, the settings and the policy, for one invocation.
fn context(cli: &Cli, out: Out) -> Result<Ctx, Failure> {
    let state_dir = cli.state_dir.clone().unwrap_or_else(default_state_dir);
    let cache_dir = cli.cache_dir.clone().unwrap_or_else(default_cache_dir);
    let sandbox = Sandbox::new(Some(cache_dir.clone()))
        .map_err(|e| anyhow::anyhow!("cannot start the WebAssembly engine: {e:#}"))?;
    let reporter: Arc<dyn Reporter> = if cli.json {
        Arc::new(Silent)
    } else {
        Arc::new(progress::Live::new(std::io::stderr().is_terminal()))
    };
    let sink_out = out.clone();
    let mut trust = trust(cli)?;
    trust.oci = crate::load::oci::Access {
        store: state_dir.join("oci"),
        insecure: cli.insecure,
    };
    let settings = Settings {
        trust,
        state_dir,
        now: cli.now,
        sink: Some(Arc::new(move |step, level, msg| {
            sink_out.step_log(step, level, msg)
        })),
        reporter,
    };
    Ok(Ctx {
        sandbox,
        settings,
        out,
        cache_dir,
        verbose: cli.verbose > 0,
    })
}

/// The supply-chain policy and this invocation's approvals. Only the
/// commands that run step code read the policy: a broken policy file does
/// not stop `mend history`, nor `mend rollback`, which checks nothing again.
fn trust(cli: &Cli) -> Result<Trust, Failure> {
    let loads_steps = matches!(
        cli.command,
        Cmd::Plan { .. }
            | Cmd::Run { .. }
            | Cmd::Lint { .. }
            | Cmd::Rehearse { .. }
            | Cmd::Resume { .. }
            | Cmd::Demo { .. }
            | Cmd::Prune { .. }
            | Cmd::Step {
                command: StepCmd::Pull { .. } | StepCmd::Inspect { .. } | StepCmd::Upgrade { .. }
            }
    );
    if !loads_steps {
        return Ok(Trust::default());
    }
    let policy = Policy::load(cli.policy.as_deref()).map_err(Failure::BadInput)?;
    // A question needs someone to answer it: a terminal, and text output.
    let ask: Option<supply::Asker> = (std::io::stdin().is_terminal() && !cli.json).then(|| {
        Arc::new(|step: &str, what: &str| {
            eprintln!("{what}");
            eprint!("approve step `{step}` for this invocation? [y/N] ");
            let mut answer = String::new();
            std::io::stdin().read_line(&mut answer).is_ok()
                && matches!(answer.trim(), "y" | "Y" | "yes")
        }) as supply::Asker
    });
    Ok(Trust {
        policy: Arc::new(policy),
        approved: cli.approve_capabilities.clone(),
        ask,
        tell: Some(Arc::new(|text: &str| eprintln!("{text}"))),
        undo: false,
        oci: Default::default(),
    })
}
