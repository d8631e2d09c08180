//! `mend unlock NAME --id ID`: stop a hung run that holds a runbook's lock.

use crate::cli::Ctx;
use crate::exit;
use crate::outcome::Failure;

/// `mend unlock NAME --id ID`: a flock cannot be taken from its holder, so
/// unlocking stops the holder (SIGTERM, SIGKILL after 10 s), as a crash
/// would; the journal makes that safe and the run resumable.
pub(crate) async fn run(cx: &Ctx, name: &str, id: &str) -> Result<i32, Failure> {
    let (settings, out) = (&cx.settings, &cx.out);
    let holder = |what: &str| {
        crate::run::lock::current_holder(&settings.state_dir, name)
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
            let short = crate::cli::render::short(run);
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
