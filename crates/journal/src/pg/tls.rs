//! TLS for the shared journal: rustls (ring), verifying the server's
//! certificate against the system's roots, plus the file `PGSSLROOTCERT`
//! names when set (libpq's variable, for a private CA). With the DSN's
//! `sslmode=require` the connection is TLS or nothing; with the default
//! (`prefer`) TLS is used when the server offers it. Either way a
//! certificate that does not verify fails the connection: there is no
//! unverified mode. A Unix-socket connection never uses TLS.

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::PgError;

pub(super) fn connector() -> Result<MakeRustlsConnect, PgError> {
    let mut roots = rustls::RootCertStore::empty();
    // Unreadable entries of the system's store are skipped, as libpq does.
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = std::env::var_os("PGSSLROOTCERT") {
        let path = std::path::PathBuf::from(path);
        let certs = CertificateDer::pem_file_iter(&path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| {
                PgError::BadDsn(format!(
                    "shared journal: PGSSLROOTCERT={}: cannot read its certificates: {e}",
                    path.display()
                ))
            })?;
        if certs.is_empty() {
            return Err(PgError::BadDsn(format!(
                "shared journal: PGSSLROOTCERT={} holds no PEM certificate",
                path.display()
            )));
        }
        roots.add_parsable_certificates(certs);
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| PgError::Db(format!("shared journal: TLS setup: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}
