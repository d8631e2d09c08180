//! `mend rehearse` on overlays. The parent (tokio, threads) never unshares:
//! it starts a child `mend ... rehearse --in-overlay SPEC` in a private mount
//! namespace. The child mounts an overlay on each write grant's own path
//! (upper layer in the scratch area) and a read-only bind on each read
//! grant, runs and rolls back as a rehearsal does, checks the upper layers,
//! and prints the report itself. When the child ends, the parent kills
//! whatever is left in its namespace (a command the run started) and
//! removes the scratch area: nothing stays mounted, nothing is seen
//! outside.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::rehearse::{Presentation, RehearsalReport, report};
use super::{RunOutcome, run};
use crate::outcome::Failure;
use crate::settings::Settings;
use mend_host::cow::overlay::{self, Layer};
use mend_host::cow::skip::{GRAVEYARD, Skip};
use mend_host::cow::upper;
use mend_host::sandbox::Sandbox;
use mend_journal::RunMode;
use mend_runbook::{Access, Runbook};

/// Where the parent tells the child what to mount.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Spec {
    pub layers: Vec<Layer>,
    pub reads: Vec<PathBuf>,
    pub scratch: PathBuf,
    /// The child writes `ok` here once everything is mounted, or
    /// `failed: WHY` (and runs nothing).
    pub status: PathBuf,
    /// The upper layers go on a tmpfs the child mounts for itself on
    /// `scratch/layers` (the scratch area is on a tmpfs whose inodes the
    /// machine shares). Not for `--faults`, whose upper layers outlive a
    /// killed child.
    #[serde(default)]
    pub private_tmpfs: bool,
}

pub(crate) use mend_host::cow::overlay::STAND_IN_DIR;

/// Why a rehearsal could not have overlays here (nothing ran).
pub(crate) enum Unavailable {
    Why(String),
    Failed(Failure),
}

impl From<Failure> for Unavailable {
    fn from(f: Failure) -> Self {
        Unavailable::Failed(f)
    }
}

impl From<anyhow::Error> for Unavailable {
    fn from(e: anyhow::Error) -> Self {
        Unavailable::Failed(Failure::Internal(e))
    }
}

/// The scratch area, removed however the rehearsal ends.
pub(crate) struct Scratch(pub PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.0.exists()
            && let Err(e) = std::fs::remove_dir_all(&self.0)
        {
            eprintln!(
                "mend: cannot remove the rehearsal's scratch area {}: {e}",
                self.0.display()
            );
        }
    }
}

/// Where upper layers go by default: a tmpfs (copy-ups there cost no
/// journal writes; an ext4 upper spends a block of xattrs per entry).
pub(crate) fn default_base() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() && overlay::fs_name(shm) == "tmpfs" {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// Why overlays cannot be had for these grants, before anything starts.
pub(crate) fn precheck(runbook: &Runbook, base: &Path) -> Option<String> {
    if let Some(why) = overlay::unfit_upper(base) {
        return Some(format!("{why}; use --scratch DIR elsewhere"));
    }
    for (name, g) in &runbook.grants {
        if g.access != Access::Write {
            continue;
        }
        if !g.path.is_dir() {
            return Some(format!(
                "grant {name} ({}) is not a directory yet",
                g.path.display()
            ));
        }
    }
    None
}

/// The parent's side; the child's exit code when it ran.
pub(crate) fn rehearse(runbook: &Runbook, base: &Path, chosen: bool) -> Result<i32, Unavailable> {
    if let Some(why) = precheck(runbook, base) {
        return Err(Unavailable::Why(why));
    }
    let scratch = base.join(format!(
        "mend-rehearsal-{}-{}",
        runbook.name,
        std::process::id()
    ));
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch).context("clear an old scratch area")?;
    }
    std::fs::create_dir_all(&scratch)
        .with_context(|| format!("create the scratch area {}", scratch.display()))?;
    std::fs::set_permissions(
        &scratch,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .context("make the scratch area private")?;
    let guard = Scratch(scratch.clone());
    let mut spec = spec(runbook, &scratch);
    // On the default tmpfs only: a --scratch DIR is where the operator
    // wants the changes, and its room is checked as it is.
    spec.private_tmpfs = !chosen && overlay::fs_name(base) == "tmpfs";
    let spec_path = scratch.join("spec.json");
    std::fs::write(
        &spec_path,
        serde_json::to_vec(&spec).context("write the overlay spec")?,
    )
    .context("write the overlay spec")?;
    let code = spawn_child(&spec, &spec_path, &[])?;
    drop(guard);
    Ok(code)
}

/// The layers and read-only binds of a runbook's grants, in `scratch`.
/// A filesystem mounted inside a write grant (a volume) gets an overlay of
/// its own on its mount point, after the grant's: one overlay would hide
/// it, as overlayfs does not cross mounts in a lower layer. Its changes are
/// named `GRANT/path/in/grant` like any other.
pub(crate) fn spec(runbook: &Runbook, scratch: &Path) -> Spec {
    let _ = std::fs::create_dir_all(scratch);
    let mut layers = Vec::new();
    for (name, g) in runbook
        .grants
        .iter()
        .filter(|(_, g)| g.access == Access::Write)
    {
        let at = scratch.join("layers").join(name);
        layers.push(Layer {
            name: name.clone(),
            grant: g.path.clone(),
            upper: at.join("upper"),
            work: at.join("work"),
        });
        let real = std::fs::canonicalize(&g.path).unwrap_or_else(|_| g.path.clone());
        let mut inside = overlay::mounts_inside(&g.path);
        // Outer mounts first; a point mounted twice is the top one, once.
        inside.sort();
        inside.dedup();
        for (k, m) in inside.into_iter().enumerate() {
            let rel = m
                .strip_prefix(&real)
                .unwrap_or(&m)
                .to_string_lossy()
                .into_owned();
            let at = at.join("mounts").join(k.to_string());
            layers.push(Layer {
                name: format!("{name}/{rel}"),
                grant: m,
                upper: at.join("upper"),
                work: at.join("work"),
            });
        }
    }
    let reads = runbook
        .grants
        .values()
        .filter(|g| g.access == Access::Read && g.path.is_dir())
        .map(|g| g.path.clone())
        .collect();
    Spec {
        layers,
        reads,
        scratch: scratch.to_path_buf(),
        status: scratch.join("status"),
        private_tmpfs: false,
    }
}

/// Start this very command again (same options, same policy) as the
/// child, with `--in-overlay SPEC`, in its own mount namespace; wait for
/// it, sweep its namespace. `extra` replaces the arguments when given.
pub(crate) fn spawn_child(
    spec: &Spec,
    spec_path: &Path,
    extra: &[(&str, &str)],
) -> Result<i32, Unavailable> {
    let exe = std::env::current_exe().context("cannot find the mend executable")?;
    let mut cmd = Command::new(exe);
    cmd.args(std::env::args_os().skip(1))
        .arg("--in-overlay")
        .arg(spec_path)
        .env(STAND_IN_DIR, spec.scratch.join(".stand-ins"));
    for (k, v) in extra {
        cmd.env(k, v);
    }
    run_in_namespace(cmd, spec)
}

/// Run `cmd` in a private namespace, sweep it, read the child's status.
pub(crate) fn run_in_namespace(mut cmd: Command, spec: &Spec) -> Result<i32, Unavailable> {
    overlay::in_private_namespace(&mut cmd);
    let mut child = cmd.spawn().map_err(|e| {
        let root = rustix::process::geteuid().is_root();
        Unavailable::Why(if root {
            format!("unshare: {e}")
        } else {
            format!("mend is not running as root: unshare: {e}")
        })
    })?;
    let own = overlay::namespace_of(std::process::id());
    let ns = overlay::namespace_of(child.id()).filter(|n| Some(*n) != own);
    let status = child.wait().context("wait for the rehearsal's process")?;
    if let Some(ns) = ns {
        overlay::kill_namespace(ns);
    }
    match std::fs::read_to_string(&spec.status) {
        Ok(s) if s.starts_with("failed: ") => {
            return Err(Unavailable::Why(s["failed: ".len()..].trim().to_string()));
        }
        Ok(_) => {}
        Err(_) => {
            return Err(Unavailable::Failed(Failure::Internal(anyhow::anyhow!(
                "the rehearsal's process ended before it mounted its overlays ({status})"
            ))));
        }
    }
    match (status.code(), status.signal()) {
        (Some(c), _) => Ok(c),
        (None, Some(s)) => Ok(128 + s),
        (None, None) => Ok(crate::exit::INTERNAL),
    }
}

/// What the child mounted.
pub(crate) struct Mounted {
    pub grants: Vec<(Layer, overlay::Mounted)>,
    /// For the first line and the report: "redirect_dir, index, metacopy (upper on tmpfs)".
    pub why: String,
    /// Where the changes go, for the first line.
    pub upper: String,
}

/// Where this process's upper layers are, once mounted: each step's
/// changes are checked against its filesystem's room.
static UPPER_SCRATCH: std::sync::OnceLock<(PathBuf, bool)> = std::sync::OnceLock::new();

/// The filesystem of the upper layers, in the child that mounted them, and
/// whether it is the rehearsal's own tmpfs (grown to fit each step).
pub(crate) fn upper_scratch() -> Option<(&'static Path, bool)> {
    UPPER_SCRATCH.get().map(|(p, own)| (p.as_path(), *own))
}

/// On overlays: room in the upper layer's filesystem for `need(fs)` (what
/// the actions about to be performed write there, on filesystem `fs`), the
/// rehearsal's own tmpfs grown to it first. Nothing outside a rehearsal on
/// overlays.
pub(crate) fn make_room(
    step: &str,
    need: impl FnOnce(&str) -> anyhow::Result<mend_host::cow::space::Need>,
) -> Result<(), super::apply::StepStop> {
    let Some((scratch, own)) = upper_scratch() else {
        return Ok(());
    };
    let need = need(overlay::fs_name(scratch))?;
    if own {
        mend_host::cow::space::grow_private(need, scratch, step)
            .map_err(super::apply::StepStop::Failed)?;
    }
    mend_host::cow::space::check(need, scratch, step).map_err(super::apply::StepStop::Failed)
}

/// Initial limits of a rehearsal's own tmpfs; each step's room check grows
/// them to what its plan writes there.
/// Bytes: half the memory available, as a tmpfs's default (the host's
/// own free-space checks read this tmpfs's room, with their headroom).
fn private_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemAvailable:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(1 << 30, |k| k * 1024 / 2)
}
const PRIVATE_INODES: u64 = 65_536;

/// [`PRIVATE_INODES`], or `MEND_REHEARSAL_TMPFS_INODES`: a test reaches the
/// growth of the tmpfs with a few thousand files rather than 65,536.
fn private_inodes() -> u64 {
    std::env::var("MEND_REHEARSAL_TMPFS_INODES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(PRIVATE_INODES)
}

/// The upper layers' own tmpfs on `scratch/layers`, when asked for: the
/// first line's words for where the changes go, and the directory whose
/// filesystem holds them. Falls back to the scratch area itself, saying why.
fn private_upper(spec: &Spec) -> (String, PathBuf, bool) {
    let shared = || {
        (
            spec.scratch.display().to_string(),
            spec.scratch.clone(),
            false,
        )
    };
    if !spec.private_tmpfs {
        return shared();
    }
    let at = spec.scratch.join("layers");
    let base = spec.scratch.parent().unwrap_or(&spec.scratch);
    let free = rustix::fs::statvfs(&spec.scratch)
        .map(|s| mend_human::human_count(s.f_favail))
        .unwrap_or_else(|_| "?".into());
    match std::fs::create_dir_all(&at)
        .and_then(|()| overlay::mount_tmpfs(&at, private_bytes(), private_inodes(), false))
    {
        Ok(()) => (
            format!(
                "{}, a tmpfs of the rehearsal's own in its mount namespace, grown to fit each step's plan: {} is a tmpfs whose {free} free inodes the machine shares",
                at.display(),
                base.display()
            ),
            at,
            true,
        ),
        Err(e) => {
            let (words, path, own) = shared();
            (format!("{words}; no tmpfs of its own: {e}"), path, own)
        }
    }
}

/// The child's side of the mounts: open every grant's real directory
/// first (a grant inside another stays reachable), then mount; write the
/// status the parent reads. `Err(why)`: nothing may run.
pub(crate) fn mount_all(spec: &Spec) -> Result<Mounted, String> {
    let fail = |why: String| {
        let _ = std::fs::write(&spec.status, format!("failed: {why}"));
        Err(why)
    };
    let mut fds = Vec::new();
    for l in &spec.layers {
        match overlay::open_path(&l.grant) {
            Ok(fd) => fds.push(fd),
            Err(e) => return fail(format!("cannot open {}: {e}", l.grant.display())),
        }
    }
    // Every upper root takes its lower root's owner, mode and times before
    // anything is mounted: a volume's mount point, once the grant's
    // overlay is on, shows the directory beneath the volume.
    let (upper_words, upper_at, own) = private_upper(spec);
    for l in &spec.layers {
        if let Err(e) = overlay::prepare_upper(l) {
            return fail(format!("cannot prepare {}: {e}", l.upper.display()));
        }
    }
    let mut grants = Vec::new();
    let mut options = String::new();
    for (l, fd) in spec.layers.iter().zip(&fds) {
        match overlay::mount_overlay(fd, l) {
            Ok(m) => {
                options = m.options.clone();
                grants.push((l.clone(), m));
            }
            Err(why) => {
                return fail(format!(
                    "{why} (upper filesystem {})",
                    overlay::fs_name(&upper_at)
                ));
            }
        }
    }
    for r in &spec.reads {
        if let Err(e) = overlay::bind_read_only(r) {
            return fail(format!("cannot bind {} read-only: {e}", r.display()));
        }
    }
    // Walks read what the run has not touched from the lower layers. A
    // view that cannot be opened only means that overlay is read through.
    mend_host::cow::lower::register(
        grants
            .iter()
            .filter_map(|(l, m)| {
                mend_host::cow::lower::View::new(&l.grant, &m.lower, &l.upper).ok()
            })
            .collect(),
    );
    let _ = UPPER_SCRATCH.set((upper_at.clone(), own));
    if std::fs::write(&spec.status, "ok").is_err() {
        return Err("cannot write the status".into());
    }
    let kept: Vec<&str> = ["redirect_dir", "index", "metacopy"]
        .into_iter()
        .filter(|k| options.split(',').any(|o| o == format!("{k}=on")))
        .collect();
    Ok(Mounted {
        grants,
        why: format!(
            "overlayfs with {} (upper filesystem {}{})",
            kept.join(", "),
            if own { "a private " } else { "" },
            overlay::fs_name(&upper_at)
        ),
        upper: upper_words,
    })
}

/// The upper layers after the rollback: the differences, and how many
/// entries were looked at.
pub(crate) fn check_all(m: &Mounted, skip: &[String]) -> anyhow::Result<(Vec<String>, u64)> {
    let mut differences = Vec::new();
    let mut entries = 0;
    // Where disposable folders went in one rename each.
    let graveyards: Vec<String> = m
        .grants
        .iter()
        .map(|(l, _)| format!("{}/{GRAVEYARD}", l.name))
        .collect();
    let mut skip = Skip::new(skip.iter().map(String::as_str));
    for g in &graveyards {
        skip.insert(g);
    }
    for (l, mounted) in &m.grants {
        let v = upper::check(&upper::Layers {
            name: &l.name,
            upper: &l.upper,
            lower: &mounted.lower,
            merged: &l.grant,
            links: mounted.index,
            skip: &skip,
        })
        .with_context(|| format!("check grant {}'s upper layer", l.name))?;
        differences.extend(v.differences);
        entries += v.entries;
    }
    Ok((differences, entries))
}

fn read_spec(spec_path: &Path) -> Result<Spec, Failure> {
    Ok(serde_json::from_slice(
        &std::fs::read(spec_path)
            .with_context(|| format!("read the overlay spec {}", spec_path.display()))?,
    )
    .context("parse the overlay spec")?)
}

/// `mend resume RUN --in-overlay SPEC`: a fault rehearsal killed on these
/// upper layers, mounted again and resumed to its rollback, then checked.
pub(crate) async fn resume_in_overlay(
    sandbox: &Sandbox,
    settings: &Settings,
    run_id: &str,
    spec_path: &Path,
) -> Result<Option<RehearsalReport>, Failure> {
    let spec = read_spec(spec_path)?;
    let Ok(mounted) = mount_all(&spec) else {
        return Ok(None);
    };
    let outcome = super::resume(sandbox, settings, run_id).await?;
    checked(settings, None, outcome, &mounted, &spec).map(Some)
}

/// After the run (or its resume) and its rollback on the overlays: the
/// upper layers checked, skipping what the rollback could not undo, and
/// the rehearsal's report.
fn checked(
    settings: &Settings,
    budget: Option<std::time::Duration>,
    outcome: RunOutcome,
    mounted: &Mounted,
    spec: &Spec,
) -> Result<RehearsalReport, Failure> {
    // Borrowed: half a million paths are not copied for the check.
    let skip: &[String] = outcome
        .rollback
        .as_ref()
        .map_or(&[], |r| r.irreversible_paths.as_slice());
    let (differences, entries) = check_all(mounted, skip)?;
    let presentation = Presentation {
        kind: "overlay",
        why: mounted.why.clone(),
        scratch: spec.scratch.clone(),
    };
    report(
        settings,
        budget,
        outcome,
        differences,
        entries,
        presentation,
    )
}

/// Run `cmd` (a child mend) in a private namespace with its output
/// captured; sweep the namespace once it ends.
pub(crate) fn output_in_namespace(mut cmd: Command) -> std::io::Result<std::process::Output> {
    overlay::in_private_namespace(&mut cmd);
    let child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let own = overlay::namespace_of(std::process::id());
    let ns = overlay::namespace_of(child.id()).filter(|n| Some(*n) != own);
    let out = child.wait_with_output();
    if let Some(ns) = ns {
        overlay::kill_namespace(ns);
    }
    out
}

/// The child: mount, say so, run, roll back, check. `None`: the mounts
/// failed (the parent reads why and runs nothing, or falls back).
pub(crate) async fn rehearse_in_overlay(
    sandbox: &Sandbox,
    settings: &Settings,
    file: &Path,
    sets: &[(String, String)],
    spec_path: &Path,
) -> Result<Option<RehearsalReport>, Failure> {
    let spec = read_spec(spec_path)?;
    let Ok(mounted) = mount_all(&spec) else {
        return Ok(None);
    };
    let runbook =
        Runbook::load(file, sets, &crate::load::bundled_names()).map_err(Failure::BadInput)?;
    settings.reporter.line(&format!(
        "rehearsing {} on overlays (real directories read-only; changes go to {})",
        runbook.name, mounted.upper
    ));
    let outcome = run(
        sandbox,
        settings,
        file,
        sets,
        RunMode::Rehearse,
        &BTreeMap::new(),
        false,
    )
    .await?;
    checked(settings, runbook.rehearsal_budget, outcome, &mounted, &spec).map(Some)
}
