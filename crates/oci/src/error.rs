//! What went wrong talking to a registry, in the operator's words. The
//! engine maps `Unreachable` to exit 7 (retryable, nothing ran) and the
//! rest to exit 2 (bad input).

#[derive(Debug)]
pub enum Error {
    /// No connection: the registry is named so the operator knows which.
    Unreachable {
        registry: String,
        why: String,
    },
    /// The TLS certificate is not one this machine trusts.
    Untrusted {
        registry: String,
        why: String,
    },
    /// The registry answered with an error.
    Registry {
        what: String,
        status: u16,
        body: String,
    },
    /// Credentials missing or refused.
    Denied {
        registry: String,
        why: String,
    },
    /// The tag points at another component than the runbook pins.
    PinMismatch {
        reference: String,
        pinned: String,
        found: String,
        manifest: String,
    },
    /// Not a Wasm component artifact, or bytes that do not match their digest.
    Invalid(String),
    NotFound(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Unreachable { registry, why } => {
                write!(f, "cannot reach the registry {registry}: {why}")
            }
            Error::Untrusted { registry, why } => write!(
                f,
                "the registry {registry}'s certificate is not trusted by this machine ({why}); add its CA with update-ca-certificates, or point SSL_CERT_FILE at it"
            ),
            Error::Registry { what, status, body } => {
                write!(f, "{what}: the registry answered {status}: {body}")
            }
            Error::Denied { registry, why } => {
                write!(f, "the registry {registry} refused access: {why}")
            }
            Error::PinMismatch {
                reference,
                pinned,
                found,
                manifest,
            } => write!(
                f,
                "{reference} now points at other bytes: the runbook pins sha256 = \"{}\", the registry now has sha256 = \"{}\" (manifest {manifest}); the tag was moved after the pin was made",
                pinned.trim_start_matches("sha256:"),
                found.trim_start_matches("sha256:")
            ),
            Error::Invalid(s) | Error::NotFound(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;
