//! Signatures: a `.minisig` attached to a component's manifest as an OCI
//! 1.1 referrer (its `subject` is the manifest, so it cannot move as a
//! second tag could). Where the registry has no referrers API (distribution
//! 2.8), mend also keeps the tag-schema fallback: an index tagged
//! `sha256-<hex>` listing the referrers.

use std::collections::BTreeMap;

use crate::artifact::{Descriptor, EMPTY, INDEX, Index, KEY_ID, MANIFEST, MINISIG, Manifest};
use crate::client::Client;
use crate::error::{Error, Result};
use crate::sha256;

/// A signature found on the registry: its manifest and the minisig text.
pub struct Signature {
    pub descriptor: Descriptor,
    pub manifest: Vec<u8>,
    pub minisig: Vec<u8>,
}

/// The tag-schema fallback tag of a digest.
pub fn fallback_tag(digest: &str) -> String {
    digest.replacen(':', "-", 1)
}

impl Client {
    /// Attach `minisig` to `subject`. Returns the signature's descriptor
    /// and whether the fallback index was used.
    pub fn push_signature(
        &self,
        subject: &Descriptor,
        minisig: &[u8],
        key_id: &str,
    ) -> Result<(Descriptor, bool)> {
        let empty = b"{}";
        self.push_blob(empty)?;
        self.push_blob(minisig)?;
        let mut config = Descriptor::of(EMPTY, empty);
        config.data = Some("e30=".into());
        let mut layer = Descriptor::of(MINISIG, minisig);
        layer.annotations.insert(
            "org.opencontainers.image.title".into(),
            "component.wasm.minisig".into(),
        );
        let mut annotations = BTreeMap::new();
        annotations.insert(KEY_ID.to_string(), key_id.to_string());
        let m = Manifest {
            schema_version: 2,
            media_type: Some(MANIFEST.into()),
            artifact_type: Some(MINISIG.into()),
            config,
            layers: vec![layer],
            subject: Some(Descriptor {
                annotations: BTreeMap::new(),
                artifact_type: None,
                data: None,
                ..subject.clone()
            }),
            annotations: annotations.clone(),
        };
        let bytes = serde_json::to_vec(&m).expect("a manifest serializes");
        let digest = sha256(&bytes);
        let (mut d, oci_subject) = self.put_manifest(&digest, MANIFEST, &bytes)?;
        d.artifact_type = Some(MINISIG.into());
        d.annotations = annotations;
        if oci_subject.as_deref() == Some(subject.digest.as_str()) {
            return Ok((d, false));
        }
        let tag = fallback_tag(&subject.digest);
        let mut index = match self.get_manifest(&tag, INDEX) {
            Ok((_, b)) => serde_json::from_slice::<Index>(&b)
                .map_err(|e| Error::Invalid(format!("referrers index {tag}: {e}")))?,
            Err(Error::NotFound(_)) => Index::empty(),
            Err(e) => return Err(e),
        };
        if !index.manifests.iter().any(|m| m.digest == d.digest) {
            index.manifests.push(d.clone());
        }
        let bytes = serde_json::to_vec(&index).expect("an index serializes");
        self.put_manifest(&tag, INDEX, &bytes)?;
        Ok((d, true))
    }

    /// The signatures attached to the manifest `subject`: the referrers
    /// API, else the fallback tag. A listed manifest counts only if its own
    /// `subject` is `subject`: the index is a hint.
    pub fn signatures(&self, subject: &str) -> Result<Vec<Signature>> {
        let url = self.url(&format!("referrers/{subject}?artifactType={MINISIG}"));
        let mut resp = self.send("GET", &url, &[("Accept", INDEX)], &[])?;
        let listed = if resp.status() == 200 {
            serde_json::from_slice::<Index>(&self.read(&mut resp, 4 << 20)?)
                .map_err(|e| Error::Invalid(format!("referrers of {subject}: {e}")))?
        } else {
            match self.get_manifest(&fallback_tag(subject), INDEX) {
                Ok((_, b)) => serde_json::from_slice::<Index>(&b)
                    .map_err(|e| Error::Invalid(format!("referrers of {subject}: {e}")))?,
                Err(Error::NotFound(_)) => return Ok(vec![]),
                Err(e) => return Err(e),
            }
        };
        let mut out = vec![];
        for d in listed
            .manifests
            .iter()
            .filter(|d| d.artifact_type.as_deref() == Some(MINISIG))
        {
            let (_, bytes) = self.get_manifest(&d.digest, MANIFEST)?;
            let Ok(m) = serde_json::from_slice::<Manifest>(&bytes) else {
                continue;
            };
            if m.subject.as_ref().map(|s| s.digest.as_str()) != Some(subject) || m.layers.len() != 1
            {
                continue;
            }
            let minisig = self.get_blob(&m.layers[0], 64 << 10)?;
            out.push(Signature {
                descriptor: d.clone(),
                manifest: bytes,
                minisig,
            });
        }
        Ok(out)
    }
}
