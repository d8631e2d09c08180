//! The `mend` command line: parse, hand to the library, print, exit with a
//! documented code ([`crate::exit`]).

mod logging;
mod progress;
mod render;
pub mod report;
mod step;
pub use render::Out;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::runner::{self, Failure, Settings};
use crate::supply::{self, Policy, Trust};
use crate::{exit, pinned};
use mend_host::sandbox::Sandbox;
use mend_journal::{HistoryFilter, Journal, RunMode, RunStatus};

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
    },
    /// Finish a run that was interrupted
    Resume { run: String },
    /// Undo a run that failed, stopped or was interrupted
    Rollback { run: String },
    /// Run on copies of the grants, roll back, and prove nothing is left changed
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
    /// One run: its steps, actions and events
    Show { run: String },
    /// One run as a Markdown timeline for the postmortem: mend report RUN > RUN.md
    Report { run: String },
    /// Check a runbook (and its steps' parameters) without running anything
    Lint {
        runbook: PathBuf,
        #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_set)]
        sets: Vec<(String, String)>,
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
    Schema,
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
        /// The sdk/ folder of a mend checkout [default: the one mend was built from]
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
        /// A component file (.wasm), or std:NAME for a bundled step
        step: String,
    },
}

fn parse_set(s: &str) -> Result<(String, String), String> {
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

/// Output and exit code of a command.
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
    let out = render::Out::new(cli.json);
    let state_dir = cli.state_dir.clone().unwrap_or_else(default_state_dir);
    let cache_dir = cli.cache_dir.clone().unwrap_or_else(default_cache_dir);
    let sandbox = match Sandbox::new(Some(cache_dir.clone())) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot start the WebAssembly engine: {e:#}");
            return exit::INTERNAL;
        }
    };
    let reporter: Arc<dyn runner::Reporter> = if cli.json {
        Arc::new(runner::Silent)
    } else {
        Arc::new(progress::Live::new(std::io::stderr().is_terminal()))
    };
    let trust = match trust(&cli) {
        Ok(t) => t,
        Err(f) => return out.failure(&f),
    };
    let sink_out = out.clone();
    let settings = Settings {
        trust,
        state_dir,
        now: cli.now,
        sink: Some(Arc::new(move |step, level, msg| {
            sink_out.step_log(step, level, msg)
        })),
        reporter,
    };
    // A full disk is when mend is needed: commands that journal may run
    // on the reserve kept in the state directory (journal/reserve.rs).
    let writes = matches!(
        cli.command,
        Cmd::Run { .. } | Cmd::Resume { .. } | Cmd::Rollback { .. }
    );
    let reserve = writes.then(|| mend_journal::reserve::before(&settings.state_dir));
    let verbose = cli.verbose > 0;
    let result = match cli.command {
        Cmd::Plan {
            runbook,
            sets,
            all,
            out: file,
        } => {
            plan(
                &sandbox,
                &settings,
                &out,
                &runbook,
                &sets,
                all,
                file.as_deref(),
            )
            .await
        }
        Cmd::Lint { runbook, sets } => lint(&sandbox, &settings, &out, &runbook, &sets).await,
        Cmd::Run {
            runbook,
            sets,
            plan: saved,
        } => run_runbook(&sandbox, &settings, &out, runbook, sets, saved.as_deref()).await,
        Cmd::Resume { run } => runner::resume(&sandbox, &settings, &run)
            .await
            .map(|o| out.run_outcome(&o)),
        Cmd::Rollback { run } => runner::rollback(&sandbox, &settings, &run)
            .await
            .map(|(id, o)| out.rollback_outcome(&id, &o)),
        Cmd::Rehearse {
            runbook,
            sets,
            faults: true,
            max_kills,
            ..
        } => runner::rehearse_faults(&settings, &cache_dir, &runbook, &sets, max_kills)
            .await
            .map(|r| out.fault_rehearsal(&r)),
        Cmd::Rehearse {
            runbook,
            sets,
            copies: Some(dir),
            ..
        } => runner::rehearse_on_copies(&sandbox, &settings, &runbook, &sets, &dir)
            .await
            .map(|o| out.run_outcome(&o)),
        Cmd::Rehearse { runbook, sets, .. } => {
            runner::rehearse(&sandbox, &settings, &runbook, &sets)
                .await
                .map(|r| out.rehearsal(&r))
        }
        Cmd::History {
            runbook,
            status,
            limit,
        } => history(
            &settings,
            &out,
            HistoryFilter {
                runbook,
                status,
                limit: Some(limit),
            },
        ),
        Cmd::Show { run } => show(&settings, &out, &run),
        Cmd::Unlock { runbook, id } => unlock(&settings, &out, &runbook, &id).await,
        Cmd::Report { run } => report(&settings, &out, &run),
        Cmd::Step {
            command: StepCmd::Inspect { step },
        } => step::inspect(&sandbox, &out, &step, verbose).await,
        Cmd::Step {
            command: StepCmd::New { name, dir, sdk },
        } => step::new(&out, &name, dir.as_deref(), sdk.as_deref()),
        Cmd::Step {
            command: StepCmd::Build { dir },
        } => step::build(&sandbox, &out, &dir).await,
        Cmd::Step {
            command: StepCmd::Test { dir },
        } => step::test(&dir),
        Cmd::Schema => step::schema(&sandbox).await,
        Cmd::Completions { .. } | Cmd::Man => unreachable!("handled above"),
        Cmd::Demo { dir } => crate::demo::demo(&sandbox, &settings, &out, dir).await,
    };
    if let Some(before) = reserve {
        mend_journal::reserve::after(&settings.state_dir, &before);
    }
    match result {
        Ok(code) => code,
        Err(f) => out.failure(&f),
    }
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
    })
}

/// Plan every step against the world as it is now (nothing runs between
/// them): what `mend plan` shows and a saved plan is checked against.
async fn plan_all<'a>(
    sandbox: &Sandbox,
    settings: &Settings,
    prepared: &'a runner::Prepared,
    now: i64,
) -> Vec<runner::PlannedStep<'a>> {
    let mut steps = Vec::new();
    for step in &prepared.steps {
        let planned = runner::plan_step(sandbox, &prepared.runbook, step, now, settings).await;
        steps.push((step, planned));
    }
    steps
}

async fn plan(
    sandbox: &Sandbox,
    settings: &Settings,
    out: &render::Out,
    file: &Path,
    sets: &[(String, String)],
    all: bool,
    save: Option<&Path>,
) -> Result<i32, Failure> {
    let prepared = runner::prepare(
        sandbox,
        file,
        sets,
        &Default::default(),
        false,
        &settings.trust,
    )
    .await?;
    let now = runner::now(settings);
    let steps = plan_all(sandbox, settings, &prepared, now).await;
    let code = out.plan(&prepared, &steps, all);
    let Some(save) = save else {
        return Ok(code);
    };
    match pinned::capture(&prepared.runbook, sets, now, &steps) {
        Ok(saved) => {
            pinned::save(&saved, save)
                .map_err(|e| anyhow::anyhow!("cannot write the plan to {}: {e}", save.display()))?;
            out.note(&format!(
                "plan saved to {}; `mend run --plan {}` runs exactly it, or nothing if anything it rests on has moved",
                save.display(),
                save.display()
            ));
            Ok(code)
        }
        Err(failed) => {
            out.note(&format!(
                "plan not saved to {}: a plan that cannot run is not worth keeping ({})",
                save.display(),
                failed.join("; ")
            ));
            Ok(exit::STEP_FAILED)
        }
    }
}

/// `mend run`, of a runbook or of a saved plan that must still hold.
async fn run_runbook(
    sandbox: &Sandbox,
    settings: &Settings,
    out: &render::Out,
    runbook: Option<PathBuf>,
    sets: Vec<(String, String)>,
    saved: Option<&Path>,
) -> Result<i32, Failure> {
    let (file, sets) = match saved {
        None => (runbook.expect("clap requires it"), sets),
        Some(saved_file) => {
            let saved = pinned::load(saved_file)
                .map_err(|e| Failure::input(&saved_file.display().to_string(), e, None))?;
            if let Some(given) = &runbook
                && std::path::absolute(given).ok().as_ref() != Some(&saved.runbook.path)
            {
                return Err(Failure::input(
                    &saved_file.display().to_string(),
                    format!(
                        "the plan is of {}, not {}",
                        saved.runbook.path.display(),
                        given.display()
                    ),
                    Some("leave the runbook out: the plan names it".to_string()),
                ));
            }
            let prepared = runner::prepare(
                sandbox,
                &saved.runbook.path,
                &saved.sets,
                &Default::default(),
                false,
                &settings.trust,
            )
            .await?;
            let now = runner::now(settings);
            let steps = plan_all(sandbox, settings, &prepared, now).await;
            let drift = match pinned::capture(&prepared.runbook, &saved.sets, now, &steps) {
                Ok(current) => pinned::drift(&saved, &current),
                Err(failed) => failed
                    .into_iter()
                    .map(|f| format!("step {f} (it planned at plan time)"))
                    .collect(),
            };
            if !drift.is_empty() {
                return Ok(out.drifted(saved_file, &drift));
            }
            out.note(&format!(
                "the plan in {} still holds: runbook, steps, actions, facts, mounts and free space",
                saved_file.display()
            ));
            (saved.runbook.path, saved.sets)
        }
    };
    runner::run(
        sandbox,
        settings,
        &file,
        &sets,
        RunMode::Run,
        &Default::default(),
    )
    .await
    .map(|o| out.run_outcome(&o))
}

async fn lint(
    sandbox: &Sandbox,
    settings: &Settings,
    out: &render::Out,
    file: &std::path::Path,
    sets: &[(String, String)],
) -> Result<i32, Failure> {
    // A laptop or a CI job lacks the server's directories and users: each
    // is a warning, and everything else is checked.
    let prepared = runner::prepare_for(
        sandbox,
        file,
        sets,
        &Default::default(),
        runner::Purpose::Lint,
        &settings.trust,
    )
    .await?;
    Ok(out.lint(&prepared))
}

fn history(settings: &Settings, out: &render::Out, filter: HistoryFilter) -> Result<i32, Failure> {
    let runs = match Journal::open_existing(&settings.state_dir)? {
        Some(j) => j.history(&filter)?,
        None => Vec::new(),
    };
    Ok(out.history(&runs))
}

/// A run and everything the journal holds of it.
type RunRecords = (
    mend_journal::RunRecord,
    Vec<mend_journal::StepRecord>,
    Vec<mend_journal::ActionRecord>,
    Vec<mend_journal::EventRecord>,
);

fn load_run(settings: &Settings, run: &str) -> Result<RunRecords, Failure> {
    let journal = Journal::open_existing(&settings.state_dir)?.ok_or_else(|| {
        Failure::input(
            run,
            format!("no journal in {}", settings.state_dir.display()),
            None,
        )
    })?;
    let record = journal
        .run(run)
        .map_err(|e| Failure::input(run, format!("{e:#}"), None))?;
    let steps = journal.steps(&record.id)?;
    let actions = journal.actions(&record.id)?;
    let events = journal.events(&record.id)?;
    Ok((record, steps, actions, events))
}

/// `mend unlock NAME --id ID`: a flock cannot be taken from its holder, so
/// unlocking stops the holder (SIGTERM, SIGKILL after 10 s), as a crash
/// would; the journal makes that safe and the run resumable.
async fn unlock(
    settings: &Settings,
    out: &render::Out,
    name: &str,
    id: &str,
) -> Result<i32, Failure> {
    let holder = |what: &str| {
        crate::lock::current_holder(&settings.state_dir, name)
            .map_err(|e| anyhow::anyhow!("{what} the lock of {name}: {e}"))
    };
    let Some(h) = holder("cannot read")? else {
        out.note(&format!("runbook `{name}` is not locked; nothing to do"));
        return Ok(exit::SUCCESS);
    };
    if h.id != id {
        return Err(Failure::input(
            name,
            format!(
                "the lock of `{name}` has id {}, not {id}: it is held by another run than the one you saw (pid {}, since {})",
                h.id,
                h.pid,
                mend_journal::format_utc(h.since)
            ),
            Some(format!(
                "look again with `mend history --runbook {name}`; unlock by the id a refusal prints now"
            )),
        ));
    }
    let pid = rustix::process::Pid::from_raw(h.pid as i32)
        .ok_or_else(|| anyhow::anyhow!("the lock of {name} names pid {}", h.pid))?;
    let signal = |sig| rustix::process::kill_process(pid, sig);
    let mut killed = false;
    let _ = signal(rustix::process::Signal::TERM);
    let start = std::time::Instant::now();
    while holder("cannot read")?.is_some() {
        if !killed && start.elapsed() > std::time::Duration::from_secs(10) {
            let _ = signal(rustix::process::Signal::KILL);
            killed = true;
        }
        if start.elapsed() > std::time::Duration::from_secs(20) {
            return Err(anyhow::anyhow!(
                "pid {} still holds the lock of {name} after SIGTERM and SIGKILL",
                h.pid
            )
            .into());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let how = if killed { "SIGKILL" } else { "SIGTERM" };
    let next = match &h.run_id {
        Some(run) => {
            let short = render::short(run);
            format!("; run {run} stays as it was: `mend resume {short}` or `mend rollback {short}`")
        }
        None => String::new(),
    };
    out.note(&format!(
        "stopped pid {} ({how}); the lock of `{name}` is free{next}",
        h.pid
    ));
    Ok(exit::SUCCESS)
}

fn report(settings: &Settings, out: &render::Out, run: &str) -> Result<i32, Failure> {
    let (record, steps, actions, events) = load_run(settings, run)?;
    let md = report::markdown(&record, &steps, &actions, &events);
    if out.json {
        out.print_json(&serde_json::json!({"run": record.id, "markdown": md}));
    } else {
        print!("{md}");
    }
    Ok(exit::SUCCESS)
}

fn show(settings: &Settings, out: &render::Out, run: &str) -> Result<i32, Failure> {
    let (record, steps, actions, events) = load_run(settings, run)?;
    Ok(out.show(&record, &steps, &actions, &events))
}
