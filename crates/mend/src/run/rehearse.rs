//! `mend rehearse`: run the runbook with command stand-ins on overlays of
//! its grants ([`super::overlay`]) or, where overlays cannot be had, on
//! copies in a scratch area; roll it back, and prove every grant is
//! byte-identical (metadata included) to where it started, apart from what
//! the plan declared irreversible.

#[allow(unused_imports)]
use crate::secrets::eprintln;
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Serialize;

use super::{RunOutcome, run};
use crate::exit;
use crate::load::bundled_names;
use crate::outcome::{Failure, Outcome};
use crate::settings::Settings;
use mend_host::sandbox::Sandbox;
use mend_journal::{RunMode, RunStatus};
use mend_runbook::Runbook;

/// What a rehearsal found.
#[derive(Debug, Serialize)]
pub struct RehearsalReport {
    /// Whether every grant ended where it started.
    pub ok: bool,
    /// The run's own outcome (it rolls back even when all steps pass).
    pub run: RunOutcome,
    /// Paths that differ after the rollback ("media/x: content differs").
    pub differences: Vec<String>,
    /// Actions the plan called irreversible: their paths are not compared.
    pub irreversible: Vec<String>,
    /// Files compared.
    pub files: u64,
    /// Where the copies or upper layers were (removed on every way out).
    pub scratch: PathBuf,
    /// Overlays, reflinked or full copies, and why.
    pub presentation: Presentation,
    /// From the run's start until its last verify passed (a restore
    /// drill's time), in milliseconds; none when a step failed.
    pub elapsed_ms: Option<u64>,
    /// `[rehearsal] budget`, in milliseconds.
    pub budget_ms: Option<u64>,
    /// Each step's time, planning to its verify passing.
    pub step_ms: Vec<(String, u64)>,
    /// The drill took longer than its budget.
    pub over_budget: bool,
}

/// The scratch area, removed however the rehearsal ends (an error, a
/// panic, a failed comparison): copies of 360,080 entries must not stay.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.0.exists()
            && let Err(e) = std::fs::remove_dir_all(&self.0)
        {
            eprintln!(
                "mend: cannot remove the rehearsal's copies in {}: {e}",
                self.0.display()
            );
        }
    }
}

/// A rehearsal runs every command through its stand-in: refuse one that
/// lacks any, before anything is copied.
fn stand_ins_present(file: &Path, runbook: &Runbook) -> Result<(), Failure> {
    let missing: Vec<String> = runbook
        .steps
        .iter()
        .flat_map(|s| s.commands.iter().map(move |c| (s, c)))
        .filter(|(_, c)| !runbook.rehearsal_commands.contains_key(*c))
        .map(|(s, c)| format!("`{c}` (step `{}`)", s.id))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Failure::input(
        &file.display().to_string(),
        format!(
            "a rehearsal runs no real command, and these have no stand-in: {}; nothing was copied",
            missing.join(", ")
        ),
        Some("add [rehearsal.commands.NAME] with program = \"/bin/true\" (or a harmless stand-in) for each".into()),
    ))
}

/// The drill's milliseconds (none unless every step verified), and each step's.
type Timings = (Option<u64>, Vec<(String, u64)>);

/// Each step's time and the drill's, from the journal: from the run's
/// start (or the step's) to the step's `verified` event.
fn timings(settings: &Settings, run_id: &str) -> anyhow::Result<Timings> {
    let Some(journal) = mend_journal::Journal::open_existing(&settings.state_dir)? else {
        return Ok((None, Vec::new()));
    };
    let run = journal.run(run_id)?;
    let events = journal.events(run_id)?;
    let mut last = None;
    let mut steps = Vec::new();
    for s in journal.steps(run_id)? {
        let Some(done) = events
            .iter()
            .find(|e| e.step_idx == Some(s.idx) && e.message == super::VERIFIED)
        else {
            return Ok((None, steps));
        };
        steps.push((s.step_id.clone(), (done.at - s.started_at).max(0) as u64));
        last = Some(done.at);
    }
    Ok((last.map(|l| (l - run.started_at).max(0) as u64), steps))
}

/// How a rehearsal presents the grants to the run (`--on`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum On {
    /// Overlays, else reflinked copies, else full copies.
    Auto,
    /// Overlays on the grants' own paths, or nothing runs (exit 2).
    Overlay,
    /// Reflinked copies of the write grants (btrfs, XFS), or nothing runs
    /// (exit 2).
    Reflink,
    /// Full copies.
    Copy,
}

/// Which presentation a rehearsal used, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Presentation {
    /// "overlay", "reflink" or "copy".
    pub kind: &'static str,
    /// Why: what the overlay kept, or why each earlier option was not used.
    pub why: String,
    /// Where the upper layers or the copies were.
    pub scratch: PathBuf,
}

/// A rehearsal's result: reported here, or by the child that ran it in
/// its own mount namespace (which printed it; its exit code).
pub enum Rehearsed {
    Here(Box<RehearsalReport>),
    InChild(i32),
}

/// Rehearse a runbook: on overlays when it can (`--on auto`), else on
/// copies; `base` is where the scratch area goes (`--scratch`).
pub async fn rehearse(
    sandbox: &Sandbox,
    settings: &Settings,
    file: &Path,
    sets: &[(String, String)],
    on: On,
    base: Option<&Path>,
) -> Result<Rehearsed, Failure> {
    let runbook = Runbook::load(file, sets, &bundled_names()).map_err(Failure::BadInput)?;
    stand_ins_present(file, &runbook)?;
    let mut why_not = Vec::new();
    if matches!(on, On::Auto | On::Overlay) {
        let at = base
            .map(Path::to_path_buf)
            .unwrap_or_else(super::overlay::default_base);
        match super::overlay::rehearse(&runbook, &at, base.is_some()) {
            Ok(code) => return Ok(Rehearsed::InChild(code)),
            Err(super::overlay::Unavailable::Failed(f)) => return Err(f),
            Err(super::overlay::Unavailable::Why(why)) if on == On::Overlay => {
                return Err(Failure::input(
                    &file.display().to_string(),
                    format!("cannot rehearse on overlays: {why}; nothing ran"),
                    Some("rehearse as root on Linux with overlayfs, or choose --on copy".into()),
                ));
            }
            Err(super::overlay::Unavailable::Why(why)) => {
                why_not.push(format!("no overlay: {why}"))
            }
        }
    }
    if matches!(on, On::Auto | On::Reflink) {
        match reflinked(&runbook, base) {
            Ok((overrides, guards)) => {
                let scratch = guards
                    .iter()
                    .map(|g| g.0.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                let how = Copies {
                    kind: "reflink",
                    line: format!("on reflinked copies in {scratch}"),
                    scratch: guards.first().map(|g| g.0.clone()).unwrap_or_default(),
                    overrides,
                    _guards: guards,
                };
                let report = on_copies(
                    sandbox,
                    settings,
                    file,
                    sets,
                    &runbook,
                    how,
                    why_not.join("; "),
                )
                .await?;
                return Ok(Rehearsed::Here(Box::new(report)));
            }
            Err(why) if on == On::Reflink => {
                return Err(Failure::input(
                    &file.display().to_string(),
                    format!("cannot rehearse on reflinked copies: {why}; nothing ran"),
                    Some("put the grants and --scratch DIR on one btrfs or XFS filesystem, or choose --on copy".into()),
                ));
            }
            Err(why) => why_not.push(format!("no reflink: {why}")),
        }
    }
    if on == On::Copy {
        why_not.push("asked for with --on copy".into());
    }
    let base = base
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir);
    let how = full_copies(&runbook, &base)?;
    let report = on_copies(
        sandbox,
        settings,
        file,
        sets,
        &runbook,
        how,
        why_not.join("; "),
    )
    .await?;
    Ok(Rehearsed::Here(Box::new(report)))
}

/// The grants as the run sees them on copies: each grant's copy, and the
/// scratch areas that hold them (removed when this is dropped).
struct Copies {
    /// "reflink" or "copy".
    kind: &'static str,
    /// The first line's "on ... in ...".
    line: String,
    scratch: PathBuf,
    overrides: BTreeMap<String, PathBuf>,
    _guards: Vec<Scratch>,
}

/// Full copies of every grant in one scratch area in `base`.
fn full_copies(runbook: &Runbook, base: &Path) -> Result<Copies, Failure> {
    let scratch = base.join(format!(
        "mend-rehearsal-{}-{}",
        runbook.name,
        std::process::id()
    ));
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch).context("clear an old scratch area")?;
    }
    std::fs::create_dir_all(&scratch).context("create the scratch area")?;
    let guard = Scratch(scratch.clone());
    let mut overrides = BTreeMap::new();
    for (name, g) in &runbook.grants {
        let copy = scratch.join(name);
        copy_dir(&g.path, &copy).with_context(|| {
            format!(
                "copy grant `{name}` ({}) for the rehearsal",
                g.path.display()
            )
        })?;
        overrides.insert(name.clone(), copy);
    }
    Ok(Copies {
        kind: "copy",
        line: format!("on full copies in {}", scratch.display()),
        scratch,
        overrides,
        _guards: vec![guard],
    })
}

/// Reflinked copies of each write grant, each in a scratch area on its own
/// filesystem: in `base` (`--scratch`) or else beside the grant, as a
/// hidden directory. Read grants stay where they are (the run may only
/// read them). Why not, when a filesystem cannot share extents; nothing
/// is left behind either way.
fn reflinked(
    runbook: &Runbook,
    base: Option<&Path>,
) -> Result<(BTreeMap<String, PathBuf>, Vec<Scratch>), String> {
    use mend_host::cow::reflink;
    let mut guards: Vec<Scratch> = Vec::new();
    let mut overrides = BTreeMap::new();
    for (name, g) in &runbook.grants {
        if g.access != mend_runbook::Access::Write {
            continue;
        }
        let scratch = match base {
            Some(b) => b.join(format!(
                "mend-rehearsal-{}-{}",
                runbook.name,
                std::process::id()
            )),
            None => g.path.parent().unwrap_or(Path::new("/")).join(format!(
                ".mend-rehearsal-{}-{}",
                runbook.name,
                std::process::id()
            )),
        };
        if !guards.iter().any(|s| s.0 == scratch) {
            if scratch.exists() {
                std::fs::remove_dir_all(&scratch)
                    .map_err(|e| format!("cannot clear {}: {e}", scratch.display()))?;
            }
            std::fs::create_dir_all(&scratch)
                .map_err(|e| format!("cannot create {}: {e}", scratch.display()))?;
            guards.push(Scratch(scratch.clone()));
        }
        if let Some(why) = reflink::unfit(&g.path, &scratch) {
            return Err(why);
        }
        let copy = scratch.join(name);
        if g.path.exists() {
            reflink::clone_tree(&g.path, &copy).map_err(|e| format!("{e:#}"))?;
        } else {
            std::fs::create_dir_all(&copy)
                .map_err(|e| format!("cannot create {}: {e}", copy.display()))?;
        }
        overrides.insert(name.clone(), copy);
    }
    Ok((overrides, guards))
}

/// Rehearse a runbook on copies of its grants (`how`): snapshot each,
/// run and roll back on them, compare.
async fn on_copies(
    sandbox: &Sandbox,
    settings: &Settings,
    file: &Path,
    sets: &[(String, String)],
    runbook: &Runbook,
    how: Copies,
    why: String,
) -> Result<RehearsalReport, Failure> {
    let mut before = BTreeMap::new();
    for (name, copy) in &how.overrides {
        before.insert(name.clone(), snapshot(copy)?);
    }
    let overrides = &how.overrides;
    settings.reporter.line(&format!(
        "rehearsing {} {}{}",
        runbook.name,
        how.line,
        if why.is_empty() {
            String::new()
        } else {
            format!(" ({why})")
        }
    ));
    let outcome = run(
        sandbox,
        settings,
        file,
        sets,
        RunMode::Rehearse,
        overrides,
        false,
    )
    .await?;
    // Borrowed: half a million paths are not copied for the check.
    let skip: &[String] = outcome
        .rollback
        .as_ref()
        .map_or(&[], |r| r.irreversible_paths.as_slice());
    let (differences, files) = compare(overrides, &before, skip)?;
    let presentation = Presentation {
        kind: how.kind,
        why,
        scratch: how.scratch.clone(),
    };
    report(
        settings,
        runbook.rehearsal_budget,
        outcome,
        differences,
        files,
        presentation,
    )
}

/// The report of a run, its rollback and the comparison after it.
pub(super) fn report(
    settings: &Settings,
    budget: Option<std::time::Duration>,
    outcome: RunOutcome,
    differences: Vec<String>,
    files: u64,
    presentation: Presentation,
) -> Result<RehearsalReport, Failure> {
    let irreversible = outcome
        .rollback
        .as_ref()
        .map(|r| r.irreversible.clone())
        .unwrap_or_default();
    let (elapsed_ms, step_ms) = timings(settings, &outcome.run_id)?;
    let budget_ms = budget.map(|b| b.as_millis() as u64);
    let over_budget = match (budget_ms, elapsed_ms) {
        (Some(b), Some(e)) => e > b,
        _ => false,
    };
    let ok = differences.is_empty()
        && outcome.status == RunStatus::RolledBack
        && outcome.error.is_none()
        && !over_budget;
    Ok(RehearsalReport {
        ok,
        run: outcome,
        differences,
        irreversible,
        files,
        scratch: presentation.scratch.clone(),
        presentation,
        elapsed_ms,
        budget_ms,
        step_ms,
        over_budget,
    })
}

/// The child of `mend rehearse --faults`: a rehearsal run on copies that
/// are already made (`DIR/GRANT`), compared by the parent, not here.
pub async fn rehearse_on_copies(
    sandbox: &Sandbox,
    settings: &Settings,
    file: &Path,
    sets: &[(String, String)],
    copies: &Path,
) -> Result<RunOutcome, Failure> {
    let runbook = Runbook::load(file, sets, &bundled_names()).map_err(Failure::BadInput)?;
    let overrides = runbook
        .grants
        .keys()
        .map(|name| (name.clone(), copies.join(name)))
        .collect();
    run(
        sandbox,
        settings,
        file,
        sets,
        RunMode::Rehearse,
        &overrides,
        false,
    )
    .await
}

/// What differs in each grant's copy from its snapshot `before`, apart from
/// the paths in `skip` (irreversible by the plan), and how many entries
/// were compared.
pub(super) fn compare(
    copies: &BTreeMap<String, PathBuf>,
    before: &BTreeMap<String, BTreeMap<String, Meta>>,
    skip: &[String],
) -> anyhow::Result<(Vec<String>, u64)> {
    let skip = mend_host::cow::skip::Skip::new(skip.iter().map(String::as_str));
    let mut differences = Vec::new();
    let mut files = 0;
    for (name, copy) in copies {
        let after = snapshot(copy)?;
        let was = &before[name];
        files += was.len() as u64;
        for (path, meta) in was {
            let full = format!("{name}{}{path}", if path.is_empty() { "" } else { "/" });
            if skip.covers(&full) {
                continue;
            }
            match after.get(path) {
                None => differences.push(format!("{full}: missing after rollback")),
                // A directory that held a disposable file the run removed
                // (by design, for good) has new times and entries; what is
                // below it is compared entry by entry.
                Some(m)
                    if m.kind == 'd'
                        && meta.kind == 'd'
                        && (m.mode, m.uid, m.gid) == (meta.mode, meta.uid, meta.gid)
                        && skip.is_above(&full) => {}
                Some(m) if m != meta => {
                    differences.push(format!("{full}: {}", describe_change(meta, m)))
                }
                _ => {}
            }
        }
        for path in after.keys().filter(|p| !was.contains_key(*p)) {
            let full = format!("{name}/{path}");
            if !skip.covers(&full) {
                differences.push(format!("{full}: left behind by the run"));
            }
        }
    }
    Ok((differences, files))
}

/// A comparable fingerprint of a tree: every entry's type, mode, owner,
/// size, modification time and content hash.
pub fn tree_fingerprint(root: &Path) -> anyhow::Result<Vec<String>> {
    Ok(snapshot(root)?
        .into_iter()
        .map(|(k, m)| format!("{k} {m:?}"))
        .collect())
}

#[derive(Debug, PartialEq, Eq)]
pub(super) struct Meta {
    kind: char,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: (i64, i64),
    content: String,
}

fn describe_change(a: &Meta, b: &Meta) -> String {
    let mut what = Vec::new();
    if a.kind != b.kind {
        what.push("type");
    }
    if a.content != b.content {
        what.push("content");
    }
    if a.mode != b.mode {
        what.push("mode");
    }
    if (a.uid, a.gid) != (b.uid, b.gid) {
        what.push("owner");
    }
    if a.mtime != b.mtime {
        what.push("mtime");
    }
    format!("{} differs", what.join(", "))
}

/// Every entry under `root` with its metadata and content hash.
pub(super) fn snapshot(root: &Path) -> anyhow::Result<BTreeMap<String, Meta>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((path, rel)) = stack.pop() {
        let md = std::fs::symlink_metadata(&path)?;
        let ft = md.file_type();
        let (kind, content) = if ft.is_symlink() {
            (
                'l',
                std::fs::read_link(&path)?.to_string_lossy().into_owned(),
            )
        } else if ft.is_dir() {
            for e in std::fs::read_dir(&path)? {
                let e = e?;
                let name = e.file_name().to_string_lossy().into_owned();
                let child = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                stack.push((e.path(), child));
            }
            ('d', String::new())
        } else if ft.is_file() {
            let mut h = blake3::Hasher::new();
            let mut f = std::fs::File::open(&path)?;
            let mut buf = vec![0; 1 << 16];
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            ('f', h.finalize().to_hex().to_string())
        } else {
            ('o', String::new())
        };
        out.insert(
            rel,
            Meta {
                kind,
                mode: md.mode(),
                uid: md.uid(),
                gid: md.gid(),
                size: if kind == 'd' { 0 } else { md.size() },
                mtime: (md.mtime(), md.mtime_nsec()),
                content,
            },
        );
    }
    Ok(out)
}

/// Copy a directory tree with modes and modification times (symlinks as
/// symlinks). A grant whose directory does not exist yet is created empty.
pub(super) fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    if !from.exists() {
        std::fs::create_dir_all(to)?;
        return Ok(());
    }
    let parent = to.parent().context("scratch path has a parent")?;
    let src = cap_std::fs::Dir::open_ambient_dir(
        from.parent().unwrap_or(Path::new("/")),
        cap_std::ambient_authority(),
    )?;
    let dst = cap_std::fs::Dir::open_ambient_dir(parent, cap_std::ambient_authority())?;
    let name = from
        .file_name()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    mend_host::apply::copy_between(
        &src,
        &name,
        &dst,
        Path::new(to.file_name().context("scratch name")?),
    )
}

impl Outcome for RehearsalReport {
    fn exit_code(&self) -> i32 {
        if self.ok {
            exit::SUCCESS
        } else {
            exit::STEP_FAILED
        }
    }
}
