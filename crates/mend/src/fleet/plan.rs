//! `mend fleet plan RUNBOOK -i fleet.toml`: on every host at once (bounded),
//! check its mend, ship the bundle, run `mend plan` there and collect the
//! plan; print actions and sizes per host, then the drift table. `--out DIR`
//! saves what `mend fleet run DIR` runs: each host's plan and the batches.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use mend_human::human_bytes;
use mend_runbook::fleet::{Inventory, batches};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::exit;
use crate::fleet::bundle;
use crate::fleet::host::sha256_hex;
use crate::fleet::remote::{HostError, Remote, Target, each};
use crate::fleet::ssh::Ssh;
use crate::outcome::{Failure, Outcome};

/// The format of `DIR/fleet-plan.json`.
pub const FORMAT: &str = "mend-fleet-plan/1";
pub const PLAN_FILE: &str = "fleet-plan.json";

/// What `fleet plan --out DIR` saves and `fleet run DIR` runs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SavedFleet {
    pub format: String,
    pub runbook: String,
    pub runbook_sha256: String,
    pub inventory: PathBuf,
    pub ssh_config: Option<PathBuf>,
    pub parallel: usize,
    pub max_failures: usize,
    /// Host names, batch by batch.
    pub batches: Vec<Vec<String>>,
    pub hosts: Vec<SavedHost>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SavedHost {
    #[serde(flatten)]
    pub target: Target,
    /// File name in DIR, and its sha256.
    pub plan: String,
    pub plan_sha256: String,
}

/// One host's plan, or why there is none.
pub struct HostPlan {
    pub target: Target,
    pub sets: Vec<(String, String)>,
    pub result: Result<Value, HostError>,
}

impl HostPlan {
    fn exit_code(&self) -> Option<i64> {
        self.result
            .as_ref()
            .ok()
            .and_then(|v| v["exit_code"].as_i64())
    }
    fn planned(&self) -> bool {
        self.exit_code() == Some(0) && self.result.as_ref().is_ok_and(|v| !v["saved"].is_null())
    }
}

/// What a fleet plan ended in.
pub struct FleetPlan {
    pub runbook: String,
    pub runbook_sha256: String,
    pub bundle: String,
    pub hosts: Vec<HostPlan>,
    pub batches: Vec<Vec<String>>,
    pub max_failures: usize,
    pub saved: Option<PathBuf>,
    pub drift: Vec<(String, BTreeMap<String, String>)>,
}

impl Outcome for FleetPlan {
    fn exit_code(&self) -> i32 {
        let refused = self
            .hosts
            .iter()
            .any(|h| matches!(h.result, Err(HostError::Refused(_))) || h.exit_code() == Some(2));
        if refused {
            exit::BAD_INPUT
        } else if self
            .hosts
            .iter()
            .any(|h| matches!(h.result, Err(HostError::Unreachable(_))))
        {
            exit::UNREACHABLE
        } else if self.hosts.iter().all(HostPlan::planned) {
            exit::SUCCESS
        } else {
            exit::STEP_FAILED
        }
    }
}

pub struct Args<'a> {
    pub runbook: &'a Path,
    pub inventory: &'a Path,
    pub hosts: &'a [String],
    pub sets: &'a [(String, String)],
    pub out: Option<&'a Path>,
    /// `--ship PARAM=FILE`: files that travel with the bundle.
    pub ships: &'a [(String, String)],
}

pub fn plan(a: &Args<'_>) -> Result<FleetPlan, Failure> {
    let inv = Inventory::load(a.inventory).map_err(Failure::BadInput)?;
    let picked = inv.select(a.hosts).map_err(Failure::BadInput)?;
    let b = bundle::make(a.runbook, a.ships)?;
    // An Ansible list or dict is refused only where this runbook declares it.
    let refused: Vec<_> = picked
        .iter()
        .flat_map(|h| h.refused_params(&b.params))
        .collect();
    if !refused.is_empty() {
        return Err(Failure::BadInput(refused));
    }
    if let Some(dir) = a.out
        && dir.join(PLAN_FILE).exists()
    {
        return Err(Failure::input(
            &dir.display().to_string(),
            format!("{} already holds a fleet plan", dir.display()),
            Some("name a new directory: a reviewed plan is never overwritten".into()),
        ));
    }
    let ssh = Ssh::new(inv.ssh_config.as_deref())
        .map_err(|e| anyhow::anyhow!("cannot make ssh's control directory: {e}"))?;
    // Precedence: group < host (the inventory) < --set; only the params
    // the runbook declares travel.
    let jobs: Vec<(Target, Vec<(String, String)>)> = picked
        .iter()
        .map(|h| {
            let mut sets: BTreeMap<String, String> = h
                .params
                .iter()
                .filter(|(k, _)| b.params.contains(*k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for (k, v) in a.sets {
                sets.insert(k.clone(), v.clone());
            }
            let t = Target {
                name: h.name.clone(),
                ssh: h.ssh.clone(),
                mend: h.mend.clone(),
            };
            (t, sets.into_iter().collect())
        })
        .collect();
    // Every host's mend first: while one runs another version, nothing is
    // shipped anywhere (a plan changes nothing, not even bundle stores).
    let versions = each(&jobs, inv.parallel, |(t, _)| {
        Remote {
            ssh: &ssh,
            target: t,
        }
        .check_version()
    });
    let other_version = versions
        .iter()
        .any(|v| matches!(v, Err(HostError::Refused(_))));
    let jobs_v: Vec<_> = jobs.iter().zip(versions).collect();
    let results = each(&jobs_v, inv.parallel, |((t, sets), version)| {
        let r = Remote {
            ssh: &ssh,
            target: t,
        };
        version
            .clone()
            .and_then(|()| {
                if other_version {
                    return Err(HostError::Refused(
                        "not planned: nothing is shipped while another host runs another mend"
                            .into(),
                    ));
                }
                r.ship(&b)
            })
            .and_then(|rb| {
                // A shipped parameter names its directory in this host's
                // bundle; it stays out of the drift table (each host's state
                // directory is its own).
                let dir = Path::new(&rb).parent().unwrap_or(Path::new("/"));
                let mut sets = sets.clone();
                sets.retain(|(k, _)| !b.shipped.contains(k));
                for p in &b.shipped {
                    let d = dir.join(bundle::shipped_dir(p));
                    sets.push((p.clone(), d.display().to_string()));
                }
                r.plan(&rb, &sets)
            })
    });
    for (t, _) in &jobs {
        ssh.close(&t.ssh);
    }
    let hosts: Vec<HostPlan> = jobs
        .into_iter()
        .zip(results)
        .map(|((target, sets), result)| HostPlan {
            target,
            sets,
            result,
        })
        .collect();
    let names: Vec<String> = hosts.iter().map(|h| h.target.name.clone()).collect();
    let batches: Vec<Vec<String>> = batches(names.len(), &inv.batches)
        .into_iter()
        .map(|r| names[r].to_vec())
        .collect();
    let runbook = hosts
        .iter()
        .find_map(|h| h.result.as_ref().ok()?["plan"]["runbook"]["name"].as_str())
        .unwrap_or("?")
        .to_string();
    let mut fp = FleetPlan {
        runbook,
        runbook_sha256: b.runbook_sha256.clone(),
        bundle: b.sum.clone(),
        drift: drift(&hosts),
        hosts,
        batches,
        max_failures: inv.max_failures,
        saved: None,
    };
    if let Some(dir) = a.out
        && fp.exit_code() == exit::SUCCESS
    {
        save(&fp, &inv, dir)?;
        fp.saved = Some(dir.to_path_buf());
    }
    Ok(fp)
}

fn save(fp: &FleetPlan, inv: &Inventory, dir: &Path) -> Result<(), Failure> {
    let io = |e: std::io::Error| {
        anyhow::anyhow!("cannot write the fleet plan in {}: {e}", dir.display())
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut hosts = Vec::new();
    for h in &fp.hosts {
        let saved = &h.result.as_ref().expect("saved only when all planned")["saved"];
        let bytes = serde_json::to_vec_pretty(saved).expect("JSON serializes");
        let file = format!("{}.plan.json", h.target.name);
        std::fs::write(dir.join(&file), &bytes).map_err(io)?;
        hosts.push(SavedHost {
            target: h.target.clone(),
            plan: file,
            plan_sha256: sha256_hex(&bytes),
        });
    }
    let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let saved = SavedFleet {
        format: FORMAT.into(),
        runbook: fp.runbook.clone(),
        runbook_sha256: fp.runbook_sha256.clone(),
        inventory: abs(&inv.file),
        ssh_config: inv.ssh_config.as_deref().map(abs),
        parallel: inv.parallel,
        max_failures: fp.max_failures,
        batches: fp.batches.clone(),
        hosts,
    };
    let bytes = serde_json::to_vec_pretty(&saved).expect("JSON serializes");
    std::fs::write(dir.join(PLAN_FILE), bytes).map_err(io)?;
    Ok(())
}

/// Every row (param, fact, pin) on which the planned hosts disagree.
fn drift(hosts: &[HostPlan]) -> Vec<(String, BTreeMap<String, String>)> {
    let mut rows: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for h in hosts {
        let Ok(v) = &h.result else { continue };
        let name = &h.target.name;
        seen.insert(name.clone());
        for (k, val) in &h.sets {
            rows.entry(format!("param {k}"))
                .or_default()
                .insert(name.clone(), val.clone());
        }
        for s in v["plan"]["steps"].as_array().into_iter().flatten() {
            let id = s["id"].as_str().unwrap_or("?");
            for f in s["facts"].as_array().into_iter().flatten() {
                if let (Some(k), Some(val)) = (f[0].as_str(), f[1].as_str()) {
                    rows.entry(format!("{id} {k}"))
                        .or_default()
                        .insert(name.clone(), val.to_string());
                }
            }
            if let Some(e) = step_error(s) {
                rows.entry(format!("{id} (plan)"))
                    .or_default()
                    .insert(name.clone(), format!("✗ {}", first_line(e)));
            }
        }
        for s in v["saved"]["steps"].as_array().into_iter().flatten() {
            if let (Some(id), Some(c)) = (s["id"].as_str(), s["component_sha256"].as_str()) {
                rows.entry(format!("{id} component sha256"))
                    .or_default()
                    .insert(name.clone(), c.chars().take(12).collect());
            }
        }
    }
    rows.into_iter()
        .filter(|(row, by)| {
            // A host that did not plan saved no components: not drift.
            if row.ends_with(" component sha256") {
                return by.values().collect::<BTreeSet<_>>().len() > 1;
            }
            let vals: BTreeSet<&str> = seen
                .iter()
                .map(|h| by.get(h).map_or("(none)", String::as_str))
                .collect();
            vals.len() > 1
        })
        .collect()
}

/// A step's plan error: `mend --json plan` writes it as an object with a
/// `message` (`step `ID` cannot plan: ...`); the id is shown beside it.
fn step_error(s: &Value) -> Option<&str> {
    let e = &s["error"];
    let m = e.as_str().or_else(|| e["message"].as_str())?;
    let id = s["id"].as_str().unwrap_or("");
    Some(
        m.strip_prefix(&format!("step `{id}` cannot plan: "))
            .unwrap_or(m),
    )
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// One host's summary: actions and bytes, or what stopped it.
fn host_line(h: &HostPlan) -> String {
    match &h.result {
        Err(e) => e.to_string(),
        Ok(v) => {
            let steps = v["plan"]["steps"].as_array().cloned().unwrap_or_default();
            let (mut n, mut bytes) = (0u64, 0u64);
            for s in &steps {
                for a in s["actions"].as_array().into_iter().flatten() {
                    n += 1;
                    bytes += a["bytes"].as_u64().unwrap_or(0);
                }
            }
            let failed: Vec<String> = steps
                .iter()
                .filter_map(|s| {
                    Some(format!(
                        "{}: {}",
                        s["id"].as_str()?,
                        first_line(step_error(s)?)
                    ))
                })
                .collect();
            if let Some(f) = v["plan"]["failure"].as_object() {
                let msg = f
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("refused");
                return format!("plan refused: {}", first_line(msg));
            }
            let base = format!(
                "{n} action{}, {}",
                if n == 1 { "" } else { "s" },
                human_bytes(bytes)
            );
            if failed.is_empty() {
                format!("planned: {base}")
            } else {
                format!("plan failed: {}", failed.join("; "))
            }
        }
    }
}

impl FleetPlan {
    pub fn render(&self, json: bool) -> i32 {
        let code = self.exit_code();
        if json {
            let hosts: Vec<Value> = self
                .hosts
                .iter()
                .map(|h| match &h.result {
                    Ok(v) => json!({"host": h.target.name, "summary": host_line(h), "exit_code": v["exit_code"], "plan": v["plan"]}),
                    Err(HostError::Unreachable(t)) => json!({"host": h.target.name, "unreachable": t}),
                    Err(HostError::Refused(t)) => json!({"host": h.target.name, "refused": t}),
                })
                .collect();
            let drift: Vec<Value> = self
                .drift
                .iter()
                .map(|(row, by)| json!({"row": row, "hosts": by}))
                .collect();
            let v = json!({"runbook": self.runbook, "runbook_sha256": self.runbook_sha256, "bundle": self.bundle, "hosts": hosts, "batches": self.batches, "max_failures": self.max_failures, "drift": drift, "saved": self.saved, "exit_code": code});
            println!(
                "{}",
                serde_json::to_string_pretty(&v).expect("JSON serializes")
            );
            return code;
        }
        println!(
            "fleet plan: {} (runbook sha256 {}) on {} host{}",
            self.runbook,
            &self.runbook_sha256[..12],
            self.hosts.len(),
            if self.hosts.len() == 1 { "" } else { "s" }
        );
        let w = self
            .hosts
            .iter()
            .map(|h| h.target.name.len())
            .max()
            .unwrap_or(4);
        for h in &self.hosts {
            println!("  {:<w$}  {}", h.target.name, host_line(h));
        }
        let b: Vec<String> = self
            .batches
            .iter()
            .enumerate()
            .map(|(i, hs)| format!("{}: {}", i + 1, hs.join(" ")))
            .collect();
        println!(
            "batches: {}  (stops before a batch when more than {} host{} failed)",
            b.join(" | "),
            self.max_failures,
            if self.max_failures == 1 { "" } else { "s" }
        );
        if self.drift.is_empty() {
            println!("drift: none (the hosts agree on every param and fact)");
        } else {
            let names: Vec<&str> = self.hosts.iter().map(|h| h.target.name.as_str()).collect();
            let rw = self
                .drift
                .iter()
                .map(|(r, _)| r.chars().count())
                .max()
                .unwrap_or(5);
            let cell = |by: &BTreeMap<String, String>, n: &str| {
                let v = by.get(n).map_or("(none)", String::as_str);
                let s: String = v.chars().take(40).collect();
                s
            };
            let cw: Vec<usize> = names
                .iter()
                .map(|n| {
                    self.drift
                        .iter()
                        .map(|(_, by)| cell(by, n).chars().count())
                        .chain([n.len()])
                        .max()
                        .unwrap_or(1)
                })
                .collect();
            let mut head = format!("  {:<rw$}", "drift");
            for (n, w) in names.iter().zip(&cw) {
                head.push_str(&format!("  {n:<w$}"));
            }
            println!("{}", head.trim_end());
            for (row, by) in &self.drift {
                let mut line = format!("  {row:<rw$}");
                for (n, w) in names.iter().zip(&cw) {
                    line.push_str(&format!("  {:<w$}", cell(by, n)));
                }
                println!("{}", line.trim_end());
            }
        }
        match (&self.saved, code) {
            (Some(dir), _) => println!(
                "saved in {}: review it, then `mend fleet run {}`",
                dir.display(),
                dir.display()
            ),
            (None, exit::SUCCESS) => {}
            (None, _) => println!(
                "{} host{} did not plan: nothing saved, nothing changed",
                self.hosts.iter().filter(|h| !h.planned()).count(),
                if self.hosts.iter().filter(|h| !h.planned()).count() == 1 {
                    ""
                } else {
                    "s"
                }
            ),
        }
        code
    }
}
