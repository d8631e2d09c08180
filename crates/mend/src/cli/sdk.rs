//! The step SDK mend was built with, inside the binary: `mend step new`
//! writes it to a cache directory named by mend's version and a hash of the
//! files, so a step scaffolded on a server with only the `mend` binary
//! builds and tests against the very SDK and WIT that mend speaks.

use std::io;
use std::path::{Path, PathBuf};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/sdk.rs"));
}

/// The lock mend was built with: a new step's first build takes the
/// versions mend was tested with (and finds them in an offline cache).
pub const LOCK: &str = embedded::LOCK;

/// `CACHE/sdk/VERSION-HASH`: where this mend's SDK is written.
pub fn dir(cache: &Path) -> PathBuf {
    cache
        .join("sdk")
        .join(format!("{}-{}", env!("CARGO_PKG_VERSION"), embedded::HASH))
}

/// Write the SDK under `cache` unless it is there already, file for file
/// (a file that differs, say from an interrupted write, is written again),
/// and return the path of its `sdk/` crate.
pub fn install(cache: &Path) -> io::Result<PathBuf> {
    let root = dir(cache);
    for (rel, bytes) in embedded::FILES {
        let path = root.join(rel);
        if std::fs::read(&path).is_ok_and(|have| have == *bytes) {
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", parent.display())))?;
        }
        // Beside it, then renamed: a reader never sees half a file.
        let part = path.with_extension(format!("part-{}", std::process::id()));
        std::fs::write(&part, bytes)
            .and_then(|()| std::fs::rename(&part, &path))
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    }
    Ok(root.join("sdk"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sdk_its_crates_and_the_wit_are_embedded() {
        let names: Vec<&str> = embedded::FILES.iter().map(|(n, _)| *n).collect();
        for needed in [
            "Cargo.toml",
            "sdk/Cargo.toml",
            "sdk/src/lib.rs",
            "sdk/derive/Cargo.toml",
            "sdk/derive/src/lib.rs",
            "crates/human/src/lib.rs",
            "crates/plan/src/lib.rs",
            "wit/runbook.wit",
        ] {
            assert!(names.contains(&needed), "{needed} not in {names:?}");
        }
        let workspace = std::str::from_utf8(embedded::FILES[0].1).unwrap();
        assert!(workspace.contains("mend-plan = { path = \"crates/plan\""));
        assert!(!workspace.contains("crates/host"), "{workspace}");
    }

    #[test]
    fn install_writes_once_and_mends_a_changed_file() {
        let cache = std::env::temp_dir().join(format!("mend-sdk-test-{}", std::process::id()));
        let sdk = install(&cache).unwrap();
        assert_eq!(sdk, dir(&cache).join("sdk"));
        let lib = sdk.join("src/lib.rs");
        std::fs::write(&lib, "broken").unwrap();
        install(&cache).unwrap();
        assert_ne!(std::fs::read(&lib).unwrap(), b"broken");
        std::fs::remove_dir_all(&cache).unwrap();
    }
}
