//! Plans exactly the actions its runbook lists, so the engine's tests can
//! drive every action kind (and hostile paths) from a TOML file:
//!
//! ```toml
//! with = { actions = [
//!   { remove = "data/old" }, { rename = ["data/a", "data/b"] }, { swap = ["data/x", "data/y"] },
//!   { create_dir = "data/new" }, { write_file = ["data/f", "text"] }, { copy = ["data/a", "data/c"] },
//!   { extract = ["data/r.tar.gz", "data/r", "tar-gz"] },
//!   { exec = ["cmd", ["arg"]], undo = ["cmd", ["undo-arg"]] },
//!   { exec = ["dump", ["@data/db.dump"]], creates = "data/db.dump" },
//!   { archive = ["data/a", "data/a.tar.zst", "tar-zst"] },
//!   { set_owner = ["data/a", "nobody", "", true] }, { set_mode = ["data/a", 416, true, 488] },
//! ] }
//! ```
//! (an empty owner or group is none; `set_mode`'s fourth, the directories'
//! mode, may be left out)
//! `fail_plan = "why"` fails planning; `verify = "fail"` fails every verify;
//! `verify = "exists:GRANT/path"` passes once that path exists.
//! `probe = [["cmd", ["arg"]]]` runs each call through `probe` while
//! planning (a hostile step may ask for anything) and reports its status
//! and output as summary lines; `inspect = ["clock:"]` reports the WASI wall
//! clock beside the host's.
use mend_sdk::prelude::*;
use mend_sdk::{ActionKind, ArchiveFormat, Check};
use serde_json::Value;

#[derive(Params, Deserialize)]
pub struct Params {
    /// the actions to plan
    #[serde(default)]
    actions: Vec<serde_json::Map<String, Value>>,
    /// fail planning with this message
    fail_plan: Option<String>,
    /// `fail`, or `exists:GRANT/path`
    verify: Option<String>,
    /// messages to log while planning
    #[serde(default)]
    log: Vec<String>,
    /// summary lines to return, as given
    #[serde(default)]
    summary: Vec<String>,
    /// host helpers to call: walk:, digest:, free:, read:, clock:
    ///
    /// Each reported as a summary line: `walk:GRANT/dir` (entries, files,
    /// bytes), `digest:GRANT/file`, `free:GRANT`, `read:GRANT/file`.
    #[serde(default)]
    inspect: Vec<String>,
    /// calls to run through probe while planning, each `[command, [args]]`
    #[serde(default)]
    probe: Vec<Value>,
}

fn s(v: &Value, i: usize) -> String {
    v.get(i)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn strs(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn call(v: &Value) -> mend_sdk::CommandCall {
    mend_sdk::CommandCall {
        command: s(v, 0),
        args: strs(v.get(1)),
    }
}

fn format(name: &str) -> ArchiveFormat {
    match name {
        "tar" => ArchiveFormat::Tar,
        "tar-zst" => ArchiveFormat::TarZst,
        _ => ArchiveFormat::TarGz,
    }
}

pub struct Scripted;
impl Step for Scripted {
    type Params = Params;
    const NAME: &'static str = "scripted";
    const SUMMARY: &'static str = "Plan the actions the runbook lists";
    fn plan(_: &Context, p: Params, host: &dyn Host) -> Result<Plan, StepError> {
        for line in &p.log {
            host.log(Level::Info, line);
        }
        if let Some(why) = p.fail_plan {
            return Err(StepError::new(why).hint("this step fails on purpose"));
        }
        let mut plan = Plan::builder();
        for line in &p.summary {
            plan = plan.summary(line.clone());
        }
        for what in &p.inspect {
            let (verb, path) = what.split_once(':').unwrap_or((what.as_str(), ""));
            let line = match verb {
                "walk" => {
                    let (mut n, mut files, mut bytes, mut links) = (0u64, 0u64, 0u64, 0u64);
                    host.walk(path, &mut |e| {
                        n += 1;
                        match e.kind {
                            mend_sdk::EntryKind::File => {
                                files += 1;
                                bytes += e.size;
                            }
                            mend_sdk::EntryKind::Symlink => links += 1,
                            _ => {}
                        }
                    })
                    .map(|()| format!("walk {path}: {n} entries, {files} files, {bytes} bytes, {links} symlinks"))
                }
                "digest" => host
                    .digest(path, Algorithm::Sha256)
                    .map(|d| format!("sha256 {path}: {d}")),
                "free" => host
                    .free_space(path)
                    .map(|s| format!("free {path}: {} of {}", s.available, s.total)),
                "read" => host
                    .read(path)
                    .map(|b| format!("read {path}: {} bytes", b.len())),
                "clock" => {
                    let wall = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    Ok(format!("wall clock {wall}, host clock {}", host.now()))
                }
                other => return Err(StepError::new(format!("unknown inspect verb `{other}`"))),
            };
            plan = plan
                .summary(line.unwrap_or_else(|e| format!("{verb} {path}: error: {}", e.text())));
        }
        for c in &p.probe {
            let call = call(c);
            let args: Vec<&str> = call.args.iter().map(String::as_str).collect();
            let line = match host.probe(&call.command, &args) {
                Ok(out) => format!(
                    "probe {} {}: exit {}, stdout {:?}, stderr {:?}",
                    call.command,
                    call.args.join(" "),
                    out.status,
                    out.stdout,
                    out.stderr
                ),
                Err(e) => format!(
                    "probe {} {}: error: {}",
                    call.command,
                    call.args.join(" "),
                    e.text()
                ),
            };
            plan = plan.summary(line);
        }
        for a in &p.actions {
            let (key, v) = a
                .iter()
                .find(|(k, _)| *k != "undo" && *k != "creates")
                .ok_or_else(|| StepError::new("empty action"))?;
            let kind = match key.as_str() {
                "remove" => ActionKind::Remove(v.as_str().unwrap_or_default().into()),
                "create_dir" => ActionKind::CreateDir(v.as_str().unwrap_or_default().into()),
                "rename" => ActionKind::Rename(mend_sdk::RenameArgs {
                    src: s(v, 0),
                    dst: s(v, 1),
                }),
                "swap" => ActionKind::Swap(mend_sdk::SwapArgs {
                    a: s(v, 0),
                    b: s(v, 1),
                }),
                "copy" => ActionKind::Copy(mend_sdk::CopyArgs {
                    src: s(v, 0),
                    dst: s(v, 1),
                }),
                "write_file" => ActionKind::WriteFile(mend_sdk::WriteFileArgs {
                    path: s(v, 0),
                    contents: s(v, 1).into_bytes(),
                    mode: None,
                }),
                "extract" => ActionKind::Extract(mend_sdk::ExtractArgs {
                    archive: s(v, 0),
                    dst: s(v, 1),
                    format: format(&s(v, 2)),
                }),
                "archive" => ActionKind::Archive(mend_sdk::ArchiveArgs {
                    src: s(v, 0),
                    dst: s(v, 1),
                    format: format(&s(v, 2)),
                }),
                "set_owner" => ActionKind::SetOwner(mend_sdk::SetOwnerArgs {
                    path: s(v, 0),
                    owner: Some(s(v, 1)).filter(|o| !o.is_empty()),
                    group: Some(s(v, 2)).filter(|g| !g.is_empty()),
                    recursive: v.get(3).and_then(Value::as_bool).unwrap_or(false),
                }),
                "set_mode" => ActionKind::SetMode(mend_sdk::SetModeArgs {
                    path: s(v, 0),
                    mode: v.get(1).and_then(Value::as_u64).unwrap_or(0) as u32,
                    recursive: v.get(2).and_then(Value::as_bool).unwrap_or(false),
                    dir_mode: v.get(3).and_then(Value::as_u64).map(|m| m as u32),
                }),
                "exec" => ActionKind::Exec(mend_sdk::ExecArgs {
                    call: call(v),
                    undo: a.get("undo").map(call),
                    creates: a
                        .get("creates")
                        .and_then(|c| c.as_str())
                        .map(str::to_string),
                }),
                other => return Err(StepError::new(format!("unknown action `{other}`"))),
            };
            plan = plan.action(mend_sdk::Action {
                kind,
                reason: format!("scripted {key}"),
            });
        }
        Ok(plan.build())
    }
    fn verify(_: &Context, p: Params, host: &dyn Host) -> Result<Vec<Check>, StepError> {
        Ok(match p.verify.as_deref() {
            Some("fail") => vec![Check {
                name: "scripted".into(),
                ok: false,
                detail: "fails on purpose".into(),
            }],
            Some(rule) if rule.starts_with("exists:") => {
                let path = &rule["exists:".len()..];
                let ok = host.read(path).is_ok();
                vec![Check {
                    name: format!("{path} exists"),
                    ok,
                    detail: String::new(),
                }]
            }
            _ => Vec::new(),
        })
    }
}
mend_sdk::export_step!(Scripted);
