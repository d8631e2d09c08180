//! Builds the guest components (the bundled steps in ../../steps and the
//! test steps in ../../tests/guests) for wasm32-wasip2, once, with their own target
//! directory, and generates the list the engine embeds and the tests use.

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
    for watched in ["steps", "sdk", "wit", "tests/guests", "Cargo.lock"] {
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
}
