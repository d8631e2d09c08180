//! The fleet's shared journal in PostgreSQL: fleet runs and the hosts they
//! reached (`history`), every host's run records copied in (`ship`), and the
//! fleet-wide lock (`lease`). A host's SQLite journal stays the source of
//! truth for its own run; this is the copy every controller can read.
//!
//! One [`Shared`] is one PostgreSQL session. The fleet lock is a *session*
//! advisory lock, so the session must live as long as the rollout: keep the
//! `Shared` (and the tokio runtime it was opened on) until the rollout ends.
//! When the controller dies, its session ends and the server frees the lock.
//!
//! Modules: `schema` (versioned migrations), `lease` (the lock, its fencing
//! token, breaking it), `ship` (idempotent upload of run records),
//! `history` (fleet runs and hosts, written fenced, read by anyone),
//! `pooler` (the connect-time check that refuses a transaction pooler),
//! `read_only` (a viewer's session: READ ONLY, nothing migrated),
//! `tls` (rustls with the system's roots).

mod history;
mod lease;
mod pooler;
mod read_only;
mod schema;
mod ship;
mod tls;

use std::fmt;
use std::str::FromStr;

use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config};

pub use history::{
    FleetRun, FleetRunStatus, HistoryQuery, HostOutcome, HostRow, NewFleetRun, fleet_events_on,
    history_on, show_on,
};
pub use lease::{BrokenLock, Holder, Lease, LeaseRow};
pub use read_only::ReadOnly;
pub use schema::SCHEMA_VERSION;
pub use ship::{HostRun, ShipReport, ShippedRecord};

/// mend's advisory-lock class: `pg_try_advisory_lock(int4, int4)` with this
/// fixed first key ("mend" in ASCII), so mend's keys never meet another
/// application's single-bigint keys.
pub const LOCK_CLASS: i32 = 0x6d65_6e64;

/// What went wrong, sorted by what the operator must do. The controller maps
/// these to exit codes: [`PgError::is_bad_input`] ones are exit 2.
#[derive(Debug)]
pub enum PgError {
    /// The DSN does not parse, or names an option mend does not know.
    BadDsn(String),
    /// A transaction-pooling proxy stands between mend and the server.
    Pooler(String),
    /// The shared journal was written by a newer mend.
    NewerSchema { found: i64, known: i64 },
    /// The fleet lock is held by someone else.
    Held(Holder),
    /// This controller's lease is no longer the current one.
    Fenced(String),
    /// The server could not be reached, or refused or failed a statement.
    Db(String),
}

impl PgError {
    /// Errors in what the operator gave (DSN, a pooler where a direct
    /// connection is needed, a journal too new for this mend): exit 2.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            PgError::BadDsn(_) | PgError::Pooler(_) | PgError::NewerSchema { .. }
        )
    }
}

impl fmt::Display for PgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PgError::BadDsn(m) | PgError::Pooler(m) | PgError::Fenced(m) | PgError::Db(m) => {
                f.write_str(m)
            }
            PgError::NewerSchema { found, known } => write!(
                f,
                "the shared journal is at schema version {found}, this mend knows up to \
                 {known}: upgrade mend on this controller"
            ),
            PgError::Held(h) => write!(f, "{h}"),
        }
    }
}

impl std::error::Error for PgError {}

/// A database error with what mend was doing. The server's own message
/// (`db_error`) carries the detail tokio-postgres' Display leaves out.
pub(crate) fn db(doing: &str, e: tokio_postgres::Error) -> PgError {
    let detail = match e.as_db_error() {
        Some(d) => format!("{}: {}", d.severity(), d.message()),
        None => e.to_string(),
    };
    PgError::Db(format!("shared journal: {doing}: {detail}"))
}

/// Who a controller is, as a lock refusal names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Controller {
    /// The controller's host name.
    pub host: String,
    pub pid: u32,
    /// The fleet run it acts for.
    pub fleet_run: String,
}

impl Controller {
    /// This process, acting for `fleet_run`.
    pub fn this(fleet_run: &str) -> Controller {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "unknown-host".to_string());
        Controller {
            host,
            pid: std::process::id(),
            fleet_run: fleet_run.to_string(),
        }
    }
}

/// One session with the shared journal, checked and migrated.
pub struct Shared {
    client: Client,
    /// Where, for messages: host, port, database and user; never a password.
    target: String,
    connection: tokio::task::JoinHandle<()>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("target", &self.target)
            .finish()
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Ends the session, and with it every lock it holds.
        self.connection.abort();
    }
}

impl Shared {
    /// Connects to the shared journal named by `dsn` (a `postgres://` URL or
    /// `key=value` pairs, as libpq takes), refuses a transaction-pooling
    /// proxy, and brings the schema up to this mend's version. Must be called
    /// inside a tokio runtime, which must outlive the `Shared`.
    pub async fn connect(dsn: &str) -> Result<Shared, PgError> {
        let config = parse_dsn(dsn)?;
        let target = describe(&config);
        let shared = open(&config, &target).await?;
        pooler::check(&shared, &config, &target).await?;
        schema::migrate(&shared.client).await?;
        Ok(shared)
    }

    /// Where this session goes, for messages (no password).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// This session's server process id.
    pub async fn backend_pid(&self) -> Result<i32, PgError> {
        let row = self
            .client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .map_err(|e| db("reading the backend pid", e))?;
        Ok(row.get(0))
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }
}

/// Parses a DSN. `PGSSLROOTCERT` (libpq's variable) is read at connect, not
/// here: tokio-postgres takes no `sslrootcert` option.
fn parse_dsn(dsn: &str) -> Result<Config, PgError> {
    let mut config = Config::from_str(dsn).map_err(|e| {
        PgError::BadDsn(format!(
            "shared journal: the DSN does not parse: {e}; give a postgres://USER@HOST/DB URL \
             or key=value pairs (host=... dbname=...)"
        ))
    })?;
    if config.get_hosts().is_empty() {
        return Err(PgError::BadDsn(
            "shared journal: the DSN names no host; give one (postgres://USER@HOST/DB, or \
             host=/run/postgresql for the local socket)"
                .into(),
        ));
    }
    // libpq's variable, so a password need not sit in a command line.
    if config.get_password().is_none()
        && let Some(pw) = std::env::var_os("PGPASSWORD")
    {
        config.password(pw.as_encoded_bytes());
    }
    if config.get_application_name().is_none() {
        config.application_name("mend fleet");
    }
    Ok(config)
}

fn describe(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "?".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("(default user)");
    let dbname = config.get_dbname().unwrap_or(user);
    format!("{host}:{port} database {dbname} as {user}")
}

/// Opens one session; its connection runs on the current runtime.
pub(crate) async fn open(config: &Config, target: &str) -> Result<Shared, PgError> {
    let tls = tls::connector()?;
    let (client, connection) = config.connect(tls).await.map_err(|e| {
        let detail = match (e.as_db_error(), std::error::Error::source(&e)) {
            (Some(d), _) => d.message().to_string(),
            (None, Some(cause)) => format!("{e}: {cause}"),
            (None, None) => e.to_string(),
        };
        PgError::Db(format!(
            "shared journal: cannot connect to {target}: {detail}"
        ))
    })?;
    let connection = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("shared journal session ended: {e}");
        }
    });
    Ok(Shared {
        client,
        target: target.to_string(),
        connection,
    })
}
