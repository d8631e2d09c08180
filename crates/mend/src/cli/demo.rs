//! `mend demo`: a sandbox Mastodon instance, generated, and the bundled
//! maintenance runbook planned, cut off, rolled back, rehearsed and run on it.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use mend_journal::RunMode;

use crate::cli::Ctx;
use crate::demo::{MAINTENANCE, generate, tree_bytes};
use crate::load::prepare;
use crate::outcome::{Failure, Outcome as _};
use crate::plan::{StepCx, plan_step};
use crate::settings::Settings;

/// Run the demo and return the exit code.
pub(crate) async fn run(cx: &Ctx, dir: Option<PathBuf>) -> Result<i32, Failure> {
    let (sandbox, settings, out) = (&cx.sandbox, &cx.settings, &cx.out);
    let root = match dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("mend-demo-{}", std::process::id())),
    };
    if root.join("mastodon").exists() {
        return Err(Failure::input(
            &root.display().to_string(),
            format!("{} already holds a demo instance", root.display()),
            Some("pass an empty --dir".into()),
        ));
    }
    std::fs::create_dir_all(&root).context("create the demo directory")?;
    let now = settings.now.map_or_else(SystemTime::now, |s| {
        SystemTime::UNIX_EPOCH + Duration::from_secs(s as u64)
    });
    let (files, bytes) = generate(&root, now)?;
    let runbook = root.join("maintenance.toml");
    std::fs::write(&runbook, MAINTENANCE).context("write the demo runbook")?;
    let settings = Settings {
        state_dir: root.join("state"),
        ..settings.clone()
    };
    let system = root.join("mastodon/public/system");
    let sets = vec![("system".to_string(), system.display().to_string())];
    let show = |what: &str| {
        let (cn, cb) = tree_bytes(&system.join("cache"));
        let (ln, lb) = tree_bytes(&system.join("media_attachments"));
        println!(
            "{what}: cache {} files, {}; local media {} files, {}",
            mend_human::human_count(cn),
            mend_human::human_bytes(cb),
            mend_human::human_count(ln),
            mend_human::human_bytes(lb)
        );
    };
    println!(
        "demo: a sandbox Mastodon instance in {} ({} files, {})",
        root.display(),
        mend_human::human_count(files),
        mend_human::human_bytes(bytes)
    );
    println!(
        "runbook: {} (the bundled runbooks/mastodon/maintenance.toml)\n",
        runbook.display()
    );
    show("before");

    println!("\n$ mend plan {} --set system=...", runbook.display());
    let prepared = prepare(
        sandbox,
        &runbook,
        &sets,
        &Default::default(),
        false,
        &settings.trust,
    )
    .await?;
    let now = crate::settings::now(&settings);
    let mut steps = Vec::new();
    for step in &prepared.steps {
        let step_cx = StepCx {
            step,
            now,
            settings: &settings,
        };
        steps.push((step, plan_step(sandbox, &prepared.runbook, &step_cx).await));
    }
    out.plan(&prepared, &steps, false);

    // A run cut off half way, as by a power cut, then rolled back.
    let before = crate::run::rehearse::tree_fingerprint(&system.join("cache"))
        .context("read the demo tree")?;
    println!(
        "\n$ mend run {} --set system=...   # killed after its 100th action, as by a power cut",
        runbook.display()
    );
    let mut child =
        std::process::Command::new(std::env::current_exe().context("find the mend binary")?);
    child.arg("--state-dir").arg(&settings.state_dir);
    // The child plans with the demo's clock, not the real one: with `--now`
    // fixed (the golden test), a child reading the wall clock would find more
    // files past the cut as the calendar moves on.
    if let Some(now) = settings.now {
        child.arg("--now").arg(now.to_string());
    }
    let killed = child
        .arg("run")
        .arg(&runbook)
        .arg("--set")
        .arg(format!("system={}", system.display()))
        .env("MEND_CRASH_AT", "perform:0:99")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .context("start the demo run")?;
    let journal = mend_journal::Journal::open(&settings.state_dir)?;
    let cut = journal
        .history(&Default::default())?
        .into_iter()
        .next()
        .context("the killed run is journaled")?;
    let actions: Vec<_> = journal
        .actions(&cut.id)?
        .into_iter()
        .filter(|a| a.state != mend_journal::ActionState::Planned)
        .collect();
    let done = actions
        .iter()
        .filter(|a| a.state == mend_journal::ActionState::Done)
        .count();
    println!(
        "killed ({killed}); the journal says run {} is {}: {} actions intended, {done} recorded done (small actions share a commit in batches); rollback checks the world for each",
        cut.id,
        cut.status.as_str(),
        actions.len()
    );
    show("now");
    println!("\n$ mend rollback {}", &cut.id[..8]);
    let (id, rb) = crate::run::rollback::rollback(sandbox, &settings, &cut.id).await?;
    out.rollback_outcome(&id, &rb);
    let after = crate::run::rehearse::tree_fingerprint(&system.join("cache"))
        .context("read the demo tree")?;
    println!(
        "the cache is {} to before the run, times and modes included",
        if after == before {
            "byte-identical"
        } else {
            "NOT identical"
        }
    );

    println!("\n$ mend rehearse {} --set system=...", runbook.display());
    // In this process, on copies: the demo runs as any user, and its
    // output stays the same everywhere.
    let code = match crate::run::rehearse::rehearse(
        sandbox,
        &settings,
        &runbook,
        &sets,
        crate::run::rehearse::On::Copy,
        None,
    )
    .await?
    {
        crate::run::rehearse::Rehearsed::Here(report) => {
            out.rehearsal(&report);
            report.exit_code()
        }
        crate::run::rehearse::Rehearsed::InChild(code) => code,
    };
    if code != 0 {
        return Ok(code);
    }

    println!("\n$ mend run {} --set system=...", runbook.display());
    let outcome = crate::run::run(
        sandbox,
        &settings,
        &runbook,
        &sets,
        RunMode::Run,
        &Default::default(),
        false,
    )
    .await?;
    out.run_outcome(&outcome);
    let code = outcome.exit_code();
    show("after");
    let (state, run) = (settings.state_dir.display(), &outcome.run_id[..8]);
    println!(
        "\nthe journal is in {state}: try `mend --state-dir {state} history`, `mend --state-dir {state} show {run}` and `mend --state-dir {state} report {run}`"
    );
    Ok(code)
}
