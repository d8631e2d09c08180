//! `mend serve [--listen ADDR] [--token-file F] [--journal DSN]`: the
//! journal as a small read-only web site (crates/serve), or with --journal
//! (or MEND_FLEET_JOURNAL) the fleet's shared PostgreSQL journal, every
//! host's runs. Loopback by default; any other address needs a token, or
//! anyone who reaches it could read the journal.

use std::net::SocketAddr;
use std::path::Path;

use crate::cli::Ctx;
use crate::exit;
use crate::outcome::Failure;

pub(crate) async fn run(
    cx: &Ctx,
    listen: SocketAddr,
    token_file: Option<&Path>,
    fleet_journal: Option<String>,
) -> Result<i32, Failure> {
    let token = match token_file {
        Some(f) => {
            let text = std::fs::read_to_string(f).map_err(|e| {
                Failure::input(
                    &f.display().to_string(),
                    format!("cannot read the token: {e}"),
                    None,
                )
            })?;
            let token = text.trim();
            if token.len() < 16 {
                return Err(Failure::input(
                    &f.display().to_string(),
                    format!(
                        "the token is {} characters long: make it at least 16",
                        token.len()
                    ),
                    Some("head -c 24 /dev/urandom | base64 > FILE".into()),
                ));
            }
            Some(token.as_bytes().to_vec())
        }
        None if !listen.ip().is_loopback() => {
            return Err(Failure::input(
                "--listen",
                format!(
                    "{listen} is not a loopback address: without --token-file anyone who \
                     reaches it could read the journal"
                ),
                Some("add --token-file FILE, or keep 127.0.0.1 and use ssh -L".into()),
            ));
        }
        None => None,
    };
    let state_dir = cx.settings.state_dir.clone();
    if let Some(dsn) = fleet_journal.filter(|d| !d.is_empty()) {
        // Refused before listening: a bad DSN, no mend journal there, a
        // newer one (exit 2), or no server (70).
        let ro = mend_journal::pg::ReadOnly::connect(&dsn)
            .await
            .map_err(crate::cli::fleet_history::failure)?;
        eprintln!(
            "mend serve: the fleet's shared journal at {}, read-only",
            ro.target()
        );
        drop(ro);
        let opts = mend_serve::Options {
            state_dir,
            fleet_journal: Some(dsn),
            listen,
            token,
        };
        mend_serve::serve(opts, |addr| {
            eprintln!("mend serve: read-only on http://{addr}/");
        })
        .await?;
        return Ok(exit::SUCCESS);
    }
    if mend_journal::Journal::open_read_only(&state_dir)?.is_none() {
        return Err(Failure::input(
            &state_dir.display().to_string(),
            format!("no journal in {}", state_dir.display()),
            Some("mend serve shows the runs of this state directory; none ran here yet".into()),
        ));
    }
    let opts = mend_serve::Options {
        state_dir,
        fleet_journal: None,
        listen,
        token,
    };
    mend_serve::serve(opts, |addr| {
        eprintln!("mend serve: read-only on http://{addr}/");
    })
    .await?;
    Ok(exit::SUCCESS)
}
