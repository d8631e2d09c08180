//! Steps as OCI artifacts: the CNCF TAG Runtime "Wasm OCI Artifact layout"
//! (config `application/vnd.wasm.config.v0+json`, one `application/wasm`
//! layer), minisign signatures as OCI 1.1 referrers (with the tag-schema
//! fallback for registries without the referrers API), Docker's
//! credentials, and the content-addressed cache under the state directory.
//!
//! No wasmtime, no SQLite: the engine reads what a component is; this crate
//! only moves bytes and checks their digests.
//!
//! - [`artifact`]: the manifest, config and index JSON; build and validate
//! - [`auth`]: Docker's config.json, credential helpers, challenges
//! - [`client`]: one repository on one registry: blobs, manifests, tags
//! - [`referrers`]: signatures attached to a manifest
//! - [`store`]: the OCI image layout the pulled steps are kept in
//! - [`error`]: what went wrong, in the words the operator reads

pub mod artifact;
pub mod auth;
pub mod client;
pub mod error;
pub mod referrers;
pub mod store;

pub use artifact::{ComponentInfo, Descriptor, Index, Manifest, WasmConfig};
pub use client::{Client, Options, Pulled, Pushed};
pub use error::{Error, Result};
pub use mend_runbook::OciRef as Reference;
pub use store::Store;

/// `sha256:<hex>` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// `sha256:<hex>` from a runbook's bare hex pin (or a prefixed one).
pub fn digest_of_pin(pin: &str) -> String {
    format!("sha256:{}", pin.trim_start_matches("sha256:"))
}
