//! `mend demo`: a sandbox Mastodon instance, generated, and the bundled
//! maintenance runbook planned, rehearsed and run on it.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;

use crate::cli::Out;
use crate::runner::{self, Failure, Settings};
use mend_host::sandbox::Sandbox;
use mend_journal::RunMode;

/// The runbook the demo runs, as shipped in runbooks/.
pub const MAINTENANCE: &str = include_str!("../../../runbooks/mastodon/maintenance.toml");

const DAY: u64 = 86_400;

/// Generate `root/mastodon/public/system` with remote caches of mixed ages and
/// some local media, deterministically. Returns (files, bytes) written.
pub fn generate(root: &Path, now: SystemTime) -> anyhow::Result<(u64, u64)> {
    let system = root.join("mastodon/public/system");
    let (mut files, mut bytes) = (0, 0);
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let trees: [(&str, usize, u64); 5] = [
        ("cache/media_attachments/files", 240, 60_000),
        ("cache/accounts/avatars", 120, 8_000),
        ("cache/accounts/headers", 60, 30_000),
        ("cache/preview_cards/images", 90, 20_000),
        ("media_attachments/files", 40, 80_000), // local media: never culled
    ];
    for (dir, n, size) in trees {
        for i in 0..n {
            let r = next();
            let sub = system
                .join(dir)
                .join(format!("{:03}/{:03}", r % 7, (r >> 8) % 5));
            std::fs::create_dir_all(&sub)?;
            let path = sub.join(format!(
                "{:016x}.{}",
                r,
                if i % 3 == 0 { "png" } else { "jpg" }
            ));
            let len = size / 2 + (r >> 16) % size;
            std::fs::write(&path, vec![(r & 0xff) as u8; len as usize])?;
            let age = Duration::from_secs((r >> 24) % (60 * DAY));
            std::fs::File::options()
                .write(true)
                .open(&path)?
                .set_modified(now - age)?;
            files += 1;
            bytes += len;
        }
    }
    Ok((files, bytes))
}

fn tree_bytes(p: &Path) -> (u64, u64) {
    let mut stack = vec![p.to_path_buf()];
    let (mut n, mut b) = (0, 0);
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(md) = e.metadata() else { continue };
            if md.is_dir() {
                stack.push(e.path());
            } else {
                n += 1;
                b += md.len();
            }
        }
    }
    (n, b)
}

/// Run the demo and return the exit code.
pub async fn demo(
    sandbox: &Sandbox,
    settings: &Settings,
    out: &Out,
    dir: Option<PathBuf>,
) -> Result<i32, Failure> {
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
    let prepared = runner::prepare(
        sandbox,
        &runbook,
        &sets,
        &Default::default(),
        false,
        &settings.trust,
    )
    .await?;
    let mut steps = Vec::new();
    for step in &prepared.steps {
        steps.push((
            step,
            runner::plan_step(
                sandbox,
                &prepared.runbook,
                step,
                runner::now(&settings),
                &settings,
            )
            .await,
        ));
    }
    out.plan(&prepared, &steps, false);

    // A run cut off half way, as by a power cut, then rolled back.
    let before =
        crate::runner::tree_fingerprint(&system.join("cache")).context("read the demo tree")?;
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
    let (id, rb) = runner::rollback(sandbox, &settings, &cut.id).await?;
    out.rollback_outcome(&id, &rb);
    let after =
        crate::runner::tree_fingerprint(&system.join("cache")).context("read the demo tree")?;
    println!(
        "the cache is {} to before the run, times and modes included",
        if after == before {
            "byte-identical"
        } else {
            "NOT identical"
        }
    );

    println!("\n$ mend rehearse {} --set system=...", runbook.display());
    let report = runner::rehearse(sandbox, &settings, &runbook, &sets).await?;
    let code = out.rehearsal(&report);
    if code != 0 {
        return Ok(code);
    }

    println!("\n$ mend run {} --set system=...", runbook.display());
    let outcome = runner::run(
        sandbox,
        &settings,
        &runbook,
        &sets,
        RunMode::Run,
        &Default::default(),
    )
    .await?;
    let code = out.run_outcome(&outcome);
    show("after");
    let (state, run) = (settings.state_dir.display(), &outcome.run_id[..8]);
    println!(
        "\nthe journal is in {state}: try `mend --state-dir {state} history`, `mend --state-dir {state} show {run}` and `mend --state-dir {state} report {run}`"
    );
    Ok(code)
}
