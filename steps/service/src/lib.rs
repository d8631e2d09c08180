//! `std:service`: stop, start, restart or reload a set of units through an
//! allowed command (`systemctl` in production, any program with the same
//! verbs in tests). Each change is planned with its compensation (a stop is
//! undone by a start), and a unit already in the wanted state is left alone,
//! so a rollback never starts what was not running. `verify` asks the
//! command's `is-active` until every unit reports the state asked for; the
//! runbook's `retry` says how long to wait.
//!
//! Without systemd, `manager` names another service manager's verbs
//! (OpenRC's `rc-service`, runit's `sv`, `prosodyctl`, `docker compose`),
//! or `verbs` spells them out; the compensations are the same.

use mend_sdk::prelude::*;

/// The runbook's `with` table.
#[derive(Params, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// the units, e.g. ["mastodon-web.service"]
    ///
    /// In the order to act on them (stop runs in reverse).
    units: Vec<String>,
    /// stop, start, restart or reload
    action: String,
    /// the runbook command to use (a [commands.NAME] with the manager's verbs)
    #[param(default = "systemctl")]
    command: String,
    /// systemd (default), openrc (rc-service), runit (sv), prosodyctl or compose (docker compose)
    #[serde(default)]
    manager: Option<String>,
    /// each verb's arguments, {unit} for the unit: { is-active = [...], start = [...], stop = [...], restart = [...], reload = [...] }
    #[serde(default)]
    verbs: Option<std::collections::BTreeMap<String, Vec<String>>>,
}

/// How a service manager says each verb, `{unit}` for the unit, and
/// whether `is-active` answers by its exit status or by listing the unit.
struct Manager {
    verbs: std::collections::BTreeMap<String, Vec<String>>,
    lists: bool,
}

/// Each verb and its arguments.
type Verbs = Vec<(&'static str, &'static [&'static str])>;

/// A manager's verbs, and whether `is-active` answers by listing units.
fn preset(name: &str) -> Option<(Verbs, bool)> {
    Some(match name {
        "systemd" => (
            vec![
                ("is-active", &["is-active", "{unit}"][..]),
                ("start", &["start", "{unit}"][..]),
                ("stop", &["stop", "{unit}"][..]),
                ("restart", &["restart", "{unit}"][..]),
                ("reload", &["reload", "{unit}"][..]),
            ],
            false,
        ),
        // rc-service UNIT status exits 0 only when started.
        "openrc" => (
            vec![
                ("is-active", &["{unit}", "status"][..]),
                ("start", &["{unit}", "start"][..]),
                ("stop", &["{unit}", "stop"][..]),
                ("restart", &["{unit}", "restart"][..]),
                ("reload", &["{unit}", "reload"][..]),
            ],
            false,
        ),
        // sv check exits 0 when the service is up; reload is a HUP.
        "runit" => (
            vec![
                ("is-active", &["check", "{unit}"][..]),
                ("start", &["up", "{unit}"][..]),
                ("stop", &["down", "{unit}"][..]),
                ("restart", &["restart", "{unit}"][..]),
                ("reload", &["hup", "{unit}"][..]),
            ],
            false,
        ),
        // One daemon: the unit names nothing prosodyctl needs.
        "prosodyctl" => (
            vec![
                ("is-active", &["status"][..]),
                ("start", &["start"][..]),
                ("stop", &["stop"][..]),
                ("restart", &["restart"][..]),
                ("reload", &["reload"][..]),
            ],
            false,
        ),
        // `docker compose ps --status running --services` lists what runs.
        "compose" => (
            vec![
                (
                    "is-active",
                    &["ps", "--status", "running", "--services"][..],
                ),
                ("start", &["start", "{unit}"][..]),
                ("stop", &["stop", "{unit}"][..]),
                ("restart", &["restart", "{unit}"][..]),
                ("reload", &["kill", "-s", "HUP", "{unit}"][..]),
            ],
            true,
        ),
        _ => return None,
    })
}

impl Manager {
    fn of(p: &Params) -> Result<Manager, StepError> {
        let name = p.manager.as_deref().unwrap_or("systemd");
        let (base, lists) = preset(name).ok_or_else(|| {
            StepError::new(format!(
                "manager `{name}` is not one of systemd, openrc, runit, prosodyctl, compose; or spell the verbs out with `verbs`"
            ))
            .param("manager")
        })?;
        let mut verbs: std::collections::BTreeMap<String, Vec<String>> = base
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|a| a.to_string()).collect()))
            .collect();
        for (k, v) in p.verbs.clone().unwrap_or_default() {
            if !verbs.contains_key(&k) {
                return Err(StepError::new(format!(
                    "verbs: `{k}` is not one of is-active, start, stop, restart, reload"
                ))
                .param("verbs"));
            }
            verbs.insert(k, v);
        }
        Ok(Manager { verbs, lists })
    }

    fn args(&self, verb: &str, unit: &str) -> Vec<String> {
        self.verbs[verb]
            .iter()
            .map(|a| a.replace("{unit}", unit))
            .collect()
    }
}

/// The step.
pub struct Service;

#[derive(Clone, Copy, PartialEq)]
enum Verb {
    Stop,
    Start,
    Restart,
    Reload,
}

impl Verb {
    fn parse(s: &str) -> Result<Verb, StepError> {
        Ok(match s {
            "stop" => Verb::Stop,
            "start" => Verb::Start,
            "restart" => Verb::Restart,
            "reload" => Verb::Reload,
            other => {
                return Err(StepError::new(format!(
                    "`{other}` is not an action; use stop, start, restart or reload"
                ))
                .param("action"));
            }
        })
    }
    fn word(self) -> &'static str {
        match self {
            Verb::Stop => "stop",
            Verb::Start => "start",
            Verb::Restart => "restart",
            Verb::Reload => "reload",
        }
    }
    /// What undoes it: the opposite for stop and start; a restart or reload
    /// is undone by doing it again (once the files under it are back).
    fn undo(self) -> &'static str {
        match self {
            Verb::Stop => "start",
            Verb::Start => "stop",
            Verb::Restart => "restart",
            Verb::Reload => "reload",
        }
    }
    /// Whether the unit should be running afterwards.
    fn wants_active(self) -> bool {
        self != Verb::Stop
    }
}

/// Whether a unit is active now, by the manager's `is-active` (exit 0, or
/// the unit in what it lists).
fn is_active(host: &dyn Host, m: &Manager, command: &str, unit: &str) -> Result<bool, StepError> {
    let args = m.args("is-active", unit);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = host.probe(command, &argv).map_err(|e| {
        StepError::new(format!("cannot ask whether {unit} is active: {}", e.text()))
    })?;
    Ok(out.status == 0 && (!m.lists || out.stdout.lines().any(|l| l.trim() == unit)))
}

impl Step for Service {
    type Params = Params;
    const SUMMARY: &'static str =
        "Stop, start, restart or reload units, each with its compensation, and wait for them";

    fn plan(_cx: &Context, p: Params, host: &dyn Host) -> Result<Plan, StepError> {
        let verb = Verb::parse(&p.action)?;
        let m = Manager::of(&p)?;
        if p.units.is_empty() {
            return Err(StepError::new("name at least one unit").param("units"));
        }
        let mut units = p.units.clone();
        if verb == Verb::Stop {
            // Stop dependants first: the reverse of the order they start in.
            units.reverse();
        }
        let mut plan = Plan::builder();
        let mut left = Vec::new();
        for unit in &units {
            let active = is_active(host, &m, &p.command, unit)?;
            let needed = match verb {
                Verb::Stop => active,
                Verb::Start => !active,
                // A reload of a stopped unit fails; a restart starts it.
                Verb::Reload => {
                    if !active {
                        return Err(StepError::new(format!(
                            "{unit} is not running, so it cannot be reloaded; start it first"
                        )));
                    }
                    true
                }
                Verb::Restart => true,
            };
            if !needed {
                left.push(format!(
                    "{unit}: already {}",
                    if active { "active" } else { "inactive" }
                ));
                continue;
            }
            let state = if active { "active" } else { "inactive" };
            let (does, undoes) = (m.args(verb.word(), unit), m.args(verb.undo(), unit));
            let does: Vec<&str> = does.iter().map(String::as_str).collect();
            let undoes: Vec<&str> = undoes.iter().map(String::as_str).collect();
            plan = plan.exec(
                &p.command,
                &does,
                Some((&p.command, &undoes)),
                &format!("{unit} is {state}; on rollback: {} {unit}", verb.undo()),
            );
        }
        let n = plan.len();
        plan = plan.summary(format!(
            "{} {} of {} unit{}: {}",
            verb.word(),
            n,
            units.len(),
            if units.len() == 1 { "" } else { "s" },
            units.join(", ")
        ));
        for line in left {
            // A plan made before the steps ahead ran (`mend plan`) sees the
            // units as they are now; at run time the step plans again.
            plan = plan.summary(format!(
                "  {line}; left alone, unless a step before this one changes that"
            ));
        }
        plan = plan.check(format!(
            "every unit reports {} ({} is-active)",
            if verb.wants_active() {
                "active"
            } else {
                "inactive"
            },
            p.command
        ));
        Ok(plan.build())
    }

    fn verify(_cx: &Context, p: Params, host: &dyn Host) -> Result<Vec<Check>, StepError> {
        let verb = Verb::parse(&p.action)?;
        let m = Manager::of(&p)?;
        let want = verb.wants_active();
        let mut checks = Vec::new();
        for unit in &p.units {
            let active = is_active(host, &m, &p.command, unit)?;
            checks.push(Check {
                name: format!("{unit} is {}", if want { "active" } else { "inactive" }),
                ok: active == want,
                detail: if active == want {
                    String::new()
                } else {
                    format!("it is {}", if active { "active" } else { "not active" })
                },
            });
        }
        Ok(checks)
    }
}

mend_sdk::export_step!(Service);

#[cfg(test)]
mod tests;
