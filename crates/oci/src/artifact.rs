//! The JSON on the registry: an OCI image manifest whose config is
//! `application/vnd.wasm.config.v0+json` and whose one layer is the
//! component (`application/wasm`), as the CNCF TAG Runtime's Wasm OCI
//! Artifact layout writes it; and the image index the referrers use.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::sha256;

pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";
pub const WASM_LAYER: &str = "application/wasm";
pub const EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// The artifactType of a signature referrer, and its one layer's type.
pub const MINISIG: &str = "application/vnd.mend.minisign.signature.v1";
/// The annotation naming the key a signature referrer was made with.
pub const KEY_ID: &str = "dev.mend.minisign.key-id";
/// Where an OCI image layout names the reference an entry came from.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    pub fn of(media_type: &str, bytes: &[u8]) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest: sha256(bytes),
            size: bytes.len() as u64,
            artifact_type: None,
            data: None,
            annotations: BTreeMap::new(),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
}

impl Index {
    pub fn empty() -> Index {
        Index {
            schema_version: 2,
            media_type: Some(INDEX.into()),
            manifests: vec![],
        }
    }
}

/// `application/vnd.wasm.config.v0+json`, as the layout's spec writes it.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct WasmConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    pub architecture: String,
    pub os: String,
    pub layer_digests: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<ComponentInfo>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct ComponentInfo {
    pub exports: Vec<String>,
    pub imports: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// The config and manifest of a component: (config bytes, manifest).
pub fn component_manifest(
    wasm: &[u8],
    component: ComponentInfo,
    annotations: BTreeMap<String, String>,
    created: &str,
) -> (Vec<u8>, Manifest) {
    let layer = Descriptor::of(WASM_LAYER, wasm);
    let config = WasmConfig {
        created: Some(created.into()),
        author: annotations.get("org.opencontainers.image.authors").cloned(),
        architecture: "wasm".into(),
        os: "wasip2".into(),
        layer_digests: vec![layer.digest.clone()],
        component: Some(component),
    };
    let config_bytes = serde_json::to_vec(&config).expect("a config serializes");
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(MANIFEST.into()),
        artifact_type: None,
        config: Descriptor::of(WASM_CONFIG, &config_bytes),
        layers: vec![layer],
        subject: None,
        annotations,
    };
    (config_bytes, manifest)
}

/// `bytes` as the manifest of a Wasm component artifact, or why not.
pub fn parse_component_manifest(what: &str, bytes: &[u8]) -> Result<Manifest> {
    let m: Manifest = serde_json::from_slice(bytes)
        .map_err(|e| Error::Invalid(format!("{what}: not an OCI image manifest: {e}")))?;
    if let Some(t) = m.media_type.as_deref()
        && t != MANIFEST
    {
        return Err(Error::Invalid(format!(
            "{what}: a {t}, not an OCI image manifest"
        )));
    }
    if m.config.media_type != WASM_CONFIG {
        return Err(Error::Invalid(format!(
            "{what} is not a Wasm artifact: its config is {}, not {WASM_CONFIG}",
            m.config.media_type
        )));
    }
    if m.layers.len() != 1 || m.layers[0].media_type != WASM_LAYER {
        return Err(Error::Invalid(format!(
            "{what}: a step is one layer of {WASM_LAYER}; this has {} layer(s) of {}",
            m.layers.len(),
            m.layers
                .iter()
                .map(|l| l.media_type.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(m)
}

/// The config of `m`, checked to describe its one layer.
pub fn parse_config(what: &str, m: &Manifest, bytes: &[u8]) -> Result<WasmConfig> {
    let config: WasmConfig = serde_json::from_slice(bytes)
        .map_err(|e| Error::Invalid(format!("{what}: its Wasm config: {e}")))?;
    if config.architecture != "wasm" || config.layer_digests != [m.layers[0].digest.clone()] {
        return Err(Error::Invalid(format!(
            "{what}: its config does not describe its layer (architecture {:?}, layerDigests {:?})",
            config.architecture, config.layer_digests
        )));
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_component_manifest_is_what_the_layout_says() {
        let (config, m) = component_manifest(
            b"\0asm",
            ComponentInfo::default(),
            BTreeMap::new(),
            "2026-11-27T00:00:00Z",
        );
        let bytes = serde_json::to_vec(&m).unwrap();
        let back = parse_component_manifest("x", &bytes).unwrap();
        assert_eq!(back.config.media_type, WASM_CONFIG);
        assert_eq!(back.layers[0].digest, sha256(b"\0asm"));
        let c = parse_config("x", &back, &config).unwrap();
        assert_eq!(c.os, "wasip2");
        let mut other = m.clone();
        other.config.media_type = "application/vnd.oci.image.config.v1+json".into();
        let e = parse_component_manifest("x", &serde_json::to_vec(&other).unwrap()).unwrap_err();
        assert!(e.to_string().contains("is not a Wasm artifact"), "{e}");
    }
}
