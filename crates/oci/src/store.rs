//! The cache of pulled steps, `$STATE_DIR/oci/`: an OCI image layout
//! (`oci-layout`, `index.json`, `blobs/sha256/<hex>`), so standard tools
//! read it and a pin finds its component at `blobs/sha256/<pin>`. It is
//! state, not cache: an air-gapped host cannot fetch it again.

use std::path::{Path, PathBuf};

use crate::artifact::{INDEX, Index, MANIFEST, MINISIG, Manifest, REF_NAME};
use crate::client::Pulled;
use crate::referrers::Signature;
use crate::{Descriptor, Reference, digest_of_pin, sha256};

pub struct Store {
    pub root: PathBuf,
}

impl Store {
    /// The store at `root`, made on first use.
    pub fn open(root: &Path) -> std::io::Result<Store> {
        std::fs::create_dir_all(root.join("blobs/sha256"))?;
        let layout = root.join("oci-layout");
        if !layout.exists() {
            write_atomic(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        Ok(Store { root: root.into() })
    }

    /// The store at `root` if it exists; nothing is made.
    pub fn existing(root: &Path) -> Option<Store> {
        root.join("oci-layout")
            .is_file()
            .then(|| Store { root: root.into() })
    }

    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.root
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    }

    /// Keep `bytes` under their digest (temp file, then rename).
    pub fn put(&self, bytes: &[u8]) -> std::io::Result<String> {
        let digest = sha256(bytes);
        let path = self.blob_path(&digest);
        if self.blob(&digest).is_none() {
            write_atomic(&path, bytes)?;
        }
        Ok(digest)
    }

    /// A blob, re-hashed on read: a cache is no reason to trust a file.
    pub fn blob(&self, digest: &str) -> Option<Vec<u8>> {
        let bytes = std::fs::read(self.blob_path(digest)).ok()?;
        (sha256(&bytes) == digest).then_some(bytes)
    }

    /// The bytes of a pinned component, if kept and still whole.
    pub fn component(&self, pin: &str) -> Option<Vec<u8>> {
        self.blob(&digest_of_pin(pin))
    }

    fn index(&self) -> Index {
        std::fs::read(self.root.join("index.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_else(Index::empty)
    }

    fn manifest(&self, digest: &str) -> Option<Manifest> {
        serde_json::from_slice(&self.blob(digest)?).ok()
    }

    /// Keep a pulled artifact and its signatures: their blobs, and
    /// index.json entries (the component's named by its reference).
    pub fn keep(&self, r: &Reference, p: &Pulled, signatures: &[Signature]) -> std::io::Result<()> {
        self.put(&p.config_bytes)?;
        self.put(&p.wasm)?;
        self.put(&p.manifest_bytes)?;
        let mut entries = vec![];
        let mut d = Descriptor::of(MANIFEST, &p.manifest_bytes);
        d.annotations.insert(REF_NAME.into(), r.to_string());
        entries.push(d);
        for s in signatures {
            self.put(b"{}")?;
            self.put(&s.minisig)?;
            self.put(&s.manifest)?;
            entries.push(s.descriptor.clone());
        }
        // One writer at a time: two pulls must not lose each other's entry.
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.root.join(".lock"))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)?;
        let mut index = self.index();
        for e in entries {
            let name = e.annotations.get(REF_NAME).cloned();
            index.manifests.retain(|m| {
                m.digest != e.digest
                    && (name.is_none() || m.annotations.get(REF_NAME) != name.as_ref())
            });
            index.manifests.push(e);
        }
        index.media_type = Some(INDEX.into());
        let bytes = serde_json::to_vec_pretty(&index).expect("an index serializes");
        write_atomic(&self.root.join("index.json"), &bytes)
    }

    /// The kept manifests (digest, manifest) whose layer is the component `pin`.
    pub fn manifests_of(&self, pin: &str) -> Vec<(String, Manifest)> {
        let pin = digest_of_pin(pin);
        self.index()
            .manifests
            .iter()
            .filter(|d| d.artifact_type.as_deref() != Some(MINISIG))
            .filter_map(|d| Some((d.digest.clone(), self.manifest(&d.digest)?)))
            .filter(|(_, m)| m.layers.first().map(|l| &l.digest) == Some(&pin))
            .collect()
    }

    /// The manifest digest kept for a reference (by its ref name).
    pub fn manifest_for(&self, r: &Reference) -> Option<(String, Manifest)> {
        let name = r.to_string();
        let d = self
            .index()
            .manifests
            .into_iter()
            .find(|d| d.annotations.get(REF_NAME) == Some(&name))?;
        Some((d.digest.clone(), self.manifest(&d.digest)?))
    }

    /// The signatures kept for the component `pin`, offline: signature
    /// manifests whose subject is a kept manifest whose layer is `pin`.
    pub fn signatures(&self, pin: &str) -> Vec<Vec<u8>> {
        let subjects: Vec<String> = self.manifests_of(pin).into_iter().map(|(d, _)| d).collect();
        self.index()
            .manifests
            .iter()
            .filter(|d| d.artifact_type.as_deref() == Some(MINISIG))
            .filter_map(|d| self.manifest(&d.digest))
            .filter(|m| {
                m.subject
                    .as_ref()
                    .is_some_and(|s| subjects.contains(&s.digest))
            })
            .filter_map(|m| self.blob(&m.layers.first()?.digest))
            .collect()
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_blob_is_not_a_component() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let d = store.put(b"\0asm component").unwrap();
        assert_eq!(store.component(&d).unwrap(), b"\0asm component");
        std::fs::write(store.blob_path(&d), b"\0asm other").unwrap();
        assert!(store.component(d.trim_start_matches("sha256:")).is_none());
    }
}
