//! A read-only session with the shared journal, for viewers (`mend serve
//! --journal`): every transaction of the session is READ ONLY (set as a
//! startup option, so it holds from the first statement), nothing is
//! migrated, no lock is taken. Only this type hands out its client, so a
//! viewer has no way to write.

use tokio_postgres::Client;

use super::schema::SCHEMA_VERSION;
use super::{PgError, Shared, db, describe, open, parse_dsn};

/// One read-only session.
pub struct ReadOnly {
    shared: Shared,
}

impl std::fmt::Debug for ReadOnly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadOnly")
            .field("target", &self.shared.target)
            .finish()
    }
}

impl ReadOnly {
    /// Connects read-only and checks the schema is one this mend reads: a
    /// database with no mend tables, or newer ones, is refused. No pooler
    /// check: a viewer keeps no session state (every read is one
    /// transaction), so a transaction pooler does it no harm.
    pub async fn connect(dsn: &str) -> Result<ReadOnly, PgError> {
        let mut config = parse_dsn(dsn)?;
        if config.get_application_name() == Some("mend fleet") {
            config.application_name("mend serve");
        }
        config.options("-c default_transaction_read_only=on");
        let target = describe(&config);
        let shared = open(&config, &target).await?;
        let doing = "checking the schema";
        let c = &shared.client;
        let has: bool = c
            .query_one("SELECT to_regclass('mend_schema') IS NOT NULL", &[])
            .await
            .map_err(|e| db(doing, e))?
            .get(0);
        if !has {
            return Err(PgError::BadDsn(format!(
                "shared journal: {target} holds no mend journal yet: no `mend fleet run` \
                 with this [fleet] journal has written to it"
            )));
        }
        let found: i64 = c
            .query_one("SELECT coalesce(max(version), 0) FROM mend_schema", &[])
            .await
            .map_err(|e| db(doing, e))?
            .get(0);
        if found > SCHEMA_VERSION {
            return Err(PgError::NewerSchema {
                found,
                known: SCHEMA_VERSION,
            });
        }
        if found < SCHEMA_VERSION {
            // A viewer migrates nothing: the next `mend fleet run` does.
            return Err(PgError::BadDsn(format!(
                "shared journal: {target} is at schema {found}, this mend reads {SCHEMA_VERSION}: \
                 the next `mend fleet run` of this mend brings it up to date"
            )));
        }
        Ok(ReadOnly { shared })
    }

    /// Where this session goes, for messages (no password).
    pub fn target(&self) -> &str {
        &self.shared.target
    }

    /// The client: read-only, whatever is sent through it.
    pub fn client(&self) -> &Client {
        &self.shared.client
    }

    /// The server ended the session (restarted, or a network cut).
    pub fn is_closed(&self) -> bool {
        self.shared.client.is_closed()
    }
}
