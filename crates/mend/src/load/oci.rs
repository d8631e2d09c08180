//! An `oci://` step's component, before any of its code runs:
//!
//! 1. If `$STATE/oci/blobs/sha256/<pin>` re-hashes to the pin, use it and
//!    make no network call: offline works, and a moved tag does not matter
//!    (the bytes that were reviewed run).
//! 2. Otherwise fetch the manifest; if its layer is not the pin, refuse
//!    before downloading the layer; else download it (digest and size
//!    checked), fetch its signature referrers and keep it all in the cache.
//!
//! The caller then runs the checks every component gets: signature under
//! the policy, capabilities.

use std::path::PathBuf;

use mend_oci::{Client, Error, Options, Pulled, Reference, Store};

/// Where pulled steps are kept and how registries are reached.
#[derive(Clone, Debug, Default)]
pub struct Access {
    /// `$STATE_DIR/oci`.
    pub store: PathBuf,
    /// Plain HTTP to a registry on this machine (`--insecure`).
    pub insecure: bool,
}

impl Access {
    pub fn client(&self, r: &Reference, push: bool) -> Result<Client, Error> {
        Client::new(
            r,
            push,
            Options {
                insecure: self.insecure,
                ..Options::default()
            },
        )
    }

    pub fn open_store(&self) -> Result<Store, Error> {
        Store::open(&self.store).map_err(|e| {
            Error::Invalid(format!(
                "cannot write the step cache {}: {e}",
                self.store.display()
            ))
        })
    }

    /// Pull `r` (its component must be `pin` when given) with its
    /// signatures, and keep it all in the store.
    pub fn pull(&self, r: &Reference, pin: Option<&str>) -> Result<(Pulled, Vec<Vec<u8>>), Error> {
        let client = self.client(r, false)?;
        let pulled = client.pull_component(r, pin)?;
        let signatures = client.signatures(&pulled.manifest_digest)?;
        self.open_store()?
            .keep(r, &pulled, &signatures)
            .map_err(|e| {
                Error::Invalid(format!(
                    "cannot keep {r} in the step cache {}: {e}",
                    self.store.display()
                ))
            })?;
        let sigs = signatures.into_iter().map(|s| s.minisig).collect();
        Ok((pulled, sigs))
    }
}

/// The component `r` pinned by `pin`, and its signatures: from the cache,
/// else from the registry.
pub fn component(
    access: &Access,
    r: &Reference,
    pin: &str,
) -> Result<(Vec<u8>, Vec<Vec<u8>>), Error> {
    if let Some(store) = Store::existing(&access.store)
        && let Some(bytes) = store.component(pin)
    {
        return Ok((bytes, store.signatures(pin)));
    }
    let (pulled, sigs) = access.pull(r, Some(pin))?;
    // The layer was checked against its descriptor, and the descriptor
    // against the pin; the bytes are checked against the pin once more.
    let found = mend_oci::sha256(&pulled.wasm);
    if found != mend_oci::digest_of_pin(pin) {
        return Err(Error::PinMismatch {
            reference: r.to_string(),
            pinned: mend_oci::digest_of_pin(pin),
            found,
            manifest: pulled.manifest_digest,
        });
    }
    Ok((pulled.wasm, sigs))
}
