//! What mend itself costs, apart from what a step does. Prints median and p90
//! over N runs of:
//!
//! 1. Per step, on the `noop` test guest (plans nothing), loaded once:
//!    instantiate + `describe` (the closest public stand-in for a bare
//!    instantiate, which is private), `runner::plan_step` (instantiate, plan,
//!    plan check), one durable journal write of one action (`intend`, then
//!    `mark_done`: one synchronous=FULL commit each), and all of it together.
//! 2. `Sandbox::load` of that guest: a cold compile into an empty cache dir
//!    vs. a new `Sandbox` deserializing it from that cache dir.
//! 3. Cold start of `mend plan` on a 5-step noop runbook with a warm cache,
//!    beside `/bin/true` as the floor for starting any process.
//!
//! Run: cargo bench -p mend --bench overhead
//! Part 3 times the mend binary beside this one (target/release/mend, else
//! target/debug/mend); `cargo bench` builds it, or: cargo build --release -p mend

use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mend::load::prepare;
use mend::plan::{StepCx, plan_step};
use mend::settings::{Settings, Silent};
use mend_host::sandbox::{HostCtx, Sandbox};
use mend_journal::{Journal, NewAction, NewRun, RunMode};
use sha2::Digest;

const STEP_RUNS: usize = 200;
const LOAD_RUNS: usize = 10;
const PROCESS_RUNS: usize = 20;
const RUNBOOK: &str = r#"[runbook]
name = "bench"
version = "1.0.0"
summary = "Five steps that plan nothing"
"#;

/// Prints the median and p90 of some timings as a table row.
fn row(label: &str, mut t: Vec<Duration>) {
    t.sort();
    let ms = |q: usize| t[(t.len() * q / 100).min(t.len() - 1)].as_secs_f64() * 1e3;
    let (n, med, p90) = (t.len(), ms(50), ms(90));
    println!("  {label:<48} {n:>4} {med:>9.3} ms {p90:>9.3} ms");
}

/// Times `n` calls of `f`, which must succeed.
async fn sample<T, E: Debug>(n: usize, mut f: impl AsyncFnMut() -> Result<T, E>) -> Vec<Duration> {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        std::hint::black_box(f().await.expect("benchmarked call"));
        times.push(start.elapsed());
    }
    times
}

/// The mend binary beside this bench (which is target/PROFILE/deps/overhead-HASH).
fn mend_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let target = exe.ancestors().nth(3)?;
    let candidates = ["release", "debug"].map(|p| target.join(p).join("mend"));
    candidates.into_iter().find(|p| p.is_file())
}

/// Runs a process to the end, its output discarded; its stderr is the error.
fn run_quiet(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).output();
    let out = out.map_err(|e| e.to_string())?;
    match out.status.success() {
        true => Ok(()),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let noop = mend::load::bundled::TEST_GUESTS
        .iter()
        .find(|(n, _)| *n == "noop");
    let noop = Path::new(noop.expect("the noop test guest").1);
    let bytes = std::fs::read(noop)?;
    let sha = hex::encode(sha2::Sha256::digest(&bytes));
    let tmp = tempfile::tempdir()?;
    let (cache, state) = (tmp.path().join("cache"), tmp.path().join("state"));
    let runbook = tmp.path().join("bench.toml");
    let mut toml = RUNBOOK.to_string();
    let caps = mend::load::supply::line(&mend::load::supply::capabilities(
        &Sandbox::new(None)?.imports("noop", &bytes)?,
    ));
    for i in 1..=5 {
        let uses = noop.display();
        toml += &format!(
            "\n[[steps]]\nid = \"noop-{i}\"\nuses = \"{uses}\"\nsha256 = \"{sha}\"\n{caps}\n"
        );
    }
    std::fs::write(&runbook, toml)?;

    println!("mend engine overhead: median and p90 over N runs\n");
    println!("  {:<48} {:>4} {:>12} {:>12}", "", "N", "median", "p90");
    println!("1. per step, noop guest (loaded once)");
    let sandbox = Sandbox::new(Some(cache.clone()))?;
    let settings = Settings {
        state_dir: state.clone(),
        now: Some(0),
        sink: None,
        reporter: Arc::new(Silent),
        trust: Default::default(),
    };
    let prepared = prepare(
        &sandbox,
        &runbook,
        &[],
        &Default::default(),
        false,
        &settings.trust,
    )
    .await?;
    let (rb, step) = (&prepared.runbook, &prepared.steps[0]);
    let step_cx = StepCx {
        step,
        now: 0,
        settings: &settings,
    };
    let plan = async || plan_step(&sandbox, rb, &step_cx).await;
    let describe = async || {
        let (g, c) = (step.grants.clone(), step.commands.clone());
        let host = HostCtx::new(&step.def.id, g, c, Vec::new(), 0, step.limits.timeout);
        sandbox.describe(&step.loaded, host, step.limits).await
    };
    let journal = Journal::open(&state)?;
    let run = journal.new_run(&NewRun {
        runbook_name: "bench",
        runbook_version: "1.0.0",
        runbook_path: &runbook.to_string_lossy(),
        runbook_sha256: &sha,
        mode: RunMode::Run,
        params_json: "{}",
        now: 0,
    })?;
    journal.save_step(&run.id, 0, &step.def.id, "noop", &sha, "{}")?;
    let intend = |seq| {
        let action = NewAction {
            seq,
            action_json: "{}",
            reversible: true,
            undo_json: None,
        };
        journal.intend(&run.id, 0, &[action])
    };
    let done = |seq| journal.mark_done(&run.id, 0, &[(seq, Some("{}"))]);
    plan().await.expect("plan the noop step"); // warm up
    let t = sample(STEP_RUNS, &describe).await;
    row("instantiate + describe", t);
    let t = sample(STEP_RUNS, &plan).await;
    row("plan_step (instantiate + plan + check)", t);
    let mut seqs = 0..;
    let t = sample(STEP_RUNS, async || intend(seqs.next().unwrap())).await;
    row("journal intend, 1 action (1 commit)", t);
    let mut seqs = 0..;
    let t = sample(STEP_RUNS, async || done(seqs.next().unwrap())).await;
    row("journal mark_done, 1 action (1 commit)", t);
    let mut seqs = STEP_RUNS as u32..;
    let whole = async || {
        let seq = seqs.next().unwrap();
        plan().await.expect("plan the noop step");
        intend(seq)?;
        done(seq)
    };
    let t = sample(STEP_RUNS, whole).await;
    row("sum: plan_step + intend + mark_done, together", t);

    println!("2. Sandbox::load of the noop guest");
    let (mut cold, mut cached) = (Vec::new(), Vec::new());
    for _ in 0..LOAD_RUNS {
        let dir = tempfile::tempdir()?;
        for times in [&mut cold, &mut cached] {
            let sandbox = Sandbox::new(Some(dir.path().to_path_buf()))?;
            let start = Instant::now();
            sandbox.load("noop", &bytes)?;
            times.push(start.elapsed());
        }
    }
    row("cold: compile + write cache (empty cache dir)", cold);
    row("cached: new Sandbox, deserialize from cache dir", cached);

    println!("3. process cold start, warm cache");
    let Some(mend) = mend_binary() else {
        println!("  skipped: no mend binary; run `cargo build --release -p mend`");
        return Ok(());
    };
    let mut mend_plan = Command::new(&mend);
    mend_plan.arg("--cache-dir").arg(&cache);
    mend_plan.arg("--state-dir").arg(&state);
    mend_plan.arg("plan").arg(&runbook);
    run_quiet(&mut mend_plan).map_err(anyhow::Error::msg)?; // it works
    let t = sample(PROCESS_RUNS, async || run_quiet(&mut mend_plan)).await;
    row("`mend plan` of 5 noop steps", t);
    let mut true_cmd = Command::new("/bin/true");
    let t = sample(PROCESS_RUNS, async || run_quiet(&mut true_cmd)).await;
    row("`/bin/true` (floor: fork + exec + wait)", t);
    println!("\n  mend binary: {}", mend.display());
    Ok(())
}
