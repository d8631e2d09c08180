//! Builds the guest components (the bundled steps in ../../steps and the
//! test steps in ../../tests/guests) for wasm32-wasip2, once, with their own target
//! directory, and generates the list the engine embeds and the tests use;
//! and lists the SDK's sources for `mend step new` to write out, so that a
//! step can be built with the mend binary alone.

use std::path::{Path, PathBuf};
use std::process::Command;

fn crates(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().join("Cargo.toml").exists())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.join("../..").canonicalize().unwrap();
    for watched in [
        "steps",
        "sdk",
        "wit",
        "tests/guests",
        "Cargo.lock",
        "Cargo.toml",
        "crates/human",
        "crates/plan",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let steps = crates(&root.join("steps"));
    let guests = crates(&root.join("tests/guests"));
    let target_dir = root.join("target/guests");

    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(&root)
        .args([
            "build",
            "--profile",
            "guest",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target_dir);
    for s in &steps {
        cmd.args(["-p", &format!("step-{s}")]);
    }
    for g in &guests {
        cmd.args(["-p", &format!("guest-{g}")]);
    }
    // The outer build's settings are not the guests' (clippy, coverage, host flags).
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .expect("run cargo to build the guest components");
    if !status.success() {
        panic!(
            "building the step components failed (see above). If the target is missing: rustup target add wasm32-wasip2"
        );
    }
    let out_dir = target_dir.join("wasm32-wasip2/guest");
    let wasm = |prefix: &str, name: &str| {
        out_dir.join(format!("{prefix}_{}.wasm", name.replace('-', "_")))
    };
    let mut src = String::from(
        "/// Bundled steps: (name, component bytes).\npub const BUNDLED: &[(&str, &[u8])] = &[\n",
    );
    for s in &steps {
        src += &format!("    ({s:?}, include_bytes!({:?})),\n", wasm("step", s));
    }
    src += "];\n/// Test steps: (name, path of the component).\n#[allow(dead_code)]\npub const TEST_GUESTS: &[(&str, &str)] = &[\n";
    for g in &guests {
        src += &format!("    ({g:?}, {:?}),\n", wasm("guest", g).to_string_lossy());
    }
    src += "];\n";
    // Every test guest, for the test suite's compile-time check that each
    // has a test (see `guest_tests` in tests/e2e/main.rs).
    src += "/// Calls `$mac!(name)` for every test guest (its crate name, `-` as `_`).\n#[macro_export]\nmacro_rules! foreach_test_guest {\n    ($mac:ident) => {\n";
    for g in &guests {
        src += &format!("        $mac!({});\n", g.replace('-', "_"));
    }
    src += "    };\n}\n";
    std::fs::write(
        PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("guests.rs"),
        src,
    )
    .unwrap();
    println!("cargo:rustc-env=MEND_TEST_GUESTS_DIR={}", out_dir.display());
    embed_sdk(&root);
}

/// The crates a step builds against, where the checkout has them: the SDK,
/// its derive, and the two small crates it links (no wasmtime among them).
const SDK_CRATES: &[&str] = &["sdk", "sdk/derive", "crates/human", "crates/plan"];

/// Every file under `dir` (sorted), relative to `root`.
fn files(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files(root, &p, out);
        } else {
            out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
        }
    }
}

/// A section of a TOML file, header to the next header, as written.
fn section(text: &str, header: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with('[') {
            inside = line.trim() == header;
        }
        if inside {
            out += line;
            out.push('\n');
        }
    }
    out
}

/// Generates `sdk.rs`: the SDK's sources (each crate's Cargo.toml and
/// src/, and the WIT), a workspace manifest that gives them what they
/// inherit, the lock mend was built with, and a short hash of it all that
/// names the cache directory they are written to.
fn embed_sdk(root: &Path) {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let mut list = Vec::new();
    for c in SDK_CRATES {
        list.push(format!("{c}/Cargo.toml"));
        files(root, &root.join(c).join("src"), &mut list);
    }
    files(root, &root.join("wit"), &mut list);
    // The checkout's workspace manifest holds the engine too: the SDK's
    // needs only its own crates as members and what they inherit (the
    // package fields and the shared dependency versions), minus the paths
    // of crates that are not written out.
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let members: Vec<String> = SDK_CRATES.iter().map(|c| format!("{c:?}")).collect();
    let mut workspace = format!(
        "# The mend SDK, written out by `mend step new` from the mend binary it\n\
         # came with: steps build against it with no checkout of mend.\n\
         [workspace]\nresolver = \"3\"\nmembers = [{}]\n\n",
        members.join(", ")
    );
    workspace += &section(&manifest, "[workspace.package]");
    for line in section(&manifest, "[workspace.dependencies]").lines() {
        let elsewhere = line
            .split_once("path = \"")
            .and_then(|(_, p)| p.split_once('"'))
            .is_some_and(|(p, _)| !SDK_CRATES.contains(&p));
        if !elsewhere {
            workspace += line;
            workspace.push('\n');
        }
    }
    let workspace_file = out_dir.join("sdk-workspace.toml");
    std::fs::write(&workspace_file, &workspace).unwrap();

    // FNV-1a over every path and its bytes: it names a directory by what it
    // holds (a change, not an attack, is what it must tell apart).
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(0x100_0000_01b3);
        }
    };
    eat(workspace.as_bytes());
    let mut src = String::from(
        "/// The SDK's files: (path in its directory, contents).\npub const FILES: &[(&str, &[u8])] = &[\n",
    );
    src += &format!(
        "    (\"Cargo.toml\", include_bytes!({:?})),\n",
        workspace_file.to_string_lossy()
    );
    for f in &list {
        let bytes = std::fs::read(root.join(f)).unwrap();
        eat(f.as_bytes());
        eat(&(bytes.len() as u64).to_le_bytes());
        eat(&bytes);
        src += &format!(
            "    ({f:?}, include_bytes!({:?})),\n",
            root.join(f).to_string_lossy()
        );
    }
    src += "];\n";
    src += &format!(
        "/// A short hash of [`FILES`].\npub const HASH: &str = \"{:012x}\";\n",
        hash >> 16
    );
    src += &format!(
        "/// The lock mend was built with, for a new step's first build.\npub const LOCK: &str = include_str!({:?});\n",
        root.join("Cargo.lock").to_string_lossy()
    );
    std::fs::write(out_dir.join("sdk.rs"), src).unwrap();
}
