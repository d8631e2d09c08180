//! Restoring a PostgreSQL database as a planned sequence, every part of it
//! visible in the dry-run: dump the current database, drop it, create it
//! again from the chosen dump. Each part has its compensation, so a restore
//! whose verify fails (row counts, a query) leaves the database as it was.

use std::collections::BTreeMap;

use mend_sdk::prelude::*;
use mend_sdk::time::utc_stamp;

use crate::choose::Candidate;

/// The `database` table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    /// The database's name; the dump must be of a database of that name.
    name: String,
    /// Connection arguments put first, e.g. `["-h", "/run/postgresql", "-p", "5432"]`.
    #[serde(default)]
    connect: Vec<String>,
    /// The database to connect to while this one is dropped and created.
    #[serde(default = "maintenance")]
    maintenance_db: String,
    /// `GRANT/path` where the dump of the current database goes (default: `from`).
    keep_current_in: Option<String>,
    /// Runbook commands for each program.
    #[serde(default = "pg_dump")]
    pg_dump: String,
    #[serde(default = "dropdb")]
    dropdb: String,
    #[serde(default = "pg_restore")]
    pg_restore: String,
    #[serde(default = "psql")]
    psql: String,
    /// Tables and the rows each must have after the restore.
    #[serde(default)]
    counts: BTreeMap<String, u64>,
    /// A query whose output (`psql -At`) must equal `expect`.
    query: Option<String>,
    expect: Option<String>,
}

fn maintenance() -> String {
    "postgres".into()
}
fn pg_dump() -> String {
    "pg_dump".into()
}
fn dropdb() -> String {
    "dropdb".into()
}
fn pg_restore() -> String {
    "pg_restore".into()
}
fn psql() -> String {
    "psql".into()
}

/// A table name that can go into `SELECT count(*) FROM ...` as it is.
fn plain_identifier(t: &str) -> bool {
    !t.is_empty()
        && t.split('.').all(|part| {
            part.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

impl Database {
    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn args<'a>(&'a self, rest: &[&'a str]) -> Vec<&'a str> {
        self.connect
            .iter()
            .map(String::as_str)
            .chain(rest.iter().copied())
            .collect()
    }

    /// Dump what is there, drop it, create it from the chosen dump.
    pub fn plan(
        &self,
        cx: &Context,
        plan: PlanBuilder,
        from: &str,
        chosen: &Candidate,
    ) -> Result<PlanBuilder, StepError> {
        for t in self.counts.keys() {
            if !plain_identifier(t) {
                return Err(StepError::new(format!(
                    "counts: `{t}` is not a plain table name (letters, digits, _ and one schema dot)"
                ))
                .param("database"));
            }
        }
        if self.query.is_some() != self.expect.is_some() {
            return Err(StepError::new("give `query` and `expect` together").param("database"));
        }
        let db = self.name.as_str();
        let keep = self
            .keep_current_in
            .as_deref()
            .unwrap_or(from)
            .trim_end_matches('/');
        let before = format!("{keep}/pre-restore-{db}-{}.dump", utc_stamp(cx.now));
        let before_arg = format!("@{before}");
        let chosen_arg = format!("@{}/{}", from.trim_end_matches('/'), chosen.name);
        let m = self.maintenance_db.as_str();
        let mut plan = plan
            .summary(format!(
                "database {db}: dump it as it is to {before}, drop it, create it from {}",
                chosen.name
            ))
            .exec_creating(
                &self.pg_dump,
                &self.args(&["-Fc", "-f", &before_arg, db]),
                &before,
                "the database as it is, for the rollback",
            )
            .exec(
                &self.dropdb,
                &self.args(&[db]),
                Some((
                    &self.pg_restore,
                    &self.args(&["--create", "-d", m, &before_arg]),
                )),
                "drop it; a rollback creates it again from the dump before",
            )
            .exec(
                &self.pg_restore,
                &self.args(&["--create", "-d", m, &chosen_arg]),
                Some((&self.dropdb, &self.args(&["--if-exists", db]))),
                "create the database from the chosen dump",
            );
        for (t, n) in &self.counts {
            plan = plan.check(format!("{db}.{t} has {} rows", human_count(*n)));
        }
        if let (Some(q), Some(e)) = (&self.query, &self.expect) {
            plan = plan.check(format!("`{q}` answers `{e}`"));
        }
        Ok(plan)
    }

    /// Row counts and the query, through psql.
    pub fn verify(&self, host: &dyn Host) -> Result<Vec<Check>, StepError> {
        let mut checks = Vec::new();
        let ask = |sql: &str| -> Result<String, String> {
            let args = self.args(&["-At", "-d", &self.name, "-c", sql]);
            match host.probe(&self.psql, &args) {
                Ok(out) if out.status == 0 => Ok(out.stdout.trim().to_string()),
                Ok(out) => Err(format!(
                    "psql exited with {}: {}",
                    out.status,
                    out.stderr.trim()
                )),
                Err(e) => Err(e.text()),
            }
        };
        for (t, want) in &self.counts {
            let sql = format!("SELECT count(*) FROM {t}");
            let (ok, detail) = match ask(&sql) {
                Ok(got) if got == want.to_string() => (true, String::new()),
                Ok(got) => (false, format!("it has {got}")),
                Err(e) => (false, e),
            };
            checks.push(Check {
                name: format!("{}.{t} has {} rows", self.name, human_count(*want)),
                ok,
                detail,
            });
        }
        if let (Some(q), Some(e)) = (&self.query, &self.expect) {
            let (ok, detail) = match ask(q) {
                Ok(got) if got == *e => (true, String::new()),
                Ok(got) => (false, format!("it answered `{got}`")),
                Err(err) => (false, err),
            };
            checks.push(Check {
                name: format!("`{q}` answers `{e}`"),
                ok,
                detail,
            });
        }
        Ok(checks)
    }
}
