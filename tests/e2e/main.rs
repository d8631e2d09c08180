//! End-to-end tests: the `mend` binary on generated fixtures.

mod common;

mod backups;
mod bad_input;
mod crash;
mod faults;
mod golden;
mod host;
mod hostile;
mod inspect;
mod lifecycle;
mod postgres;
mod prosody;
mod repos;
mod restore;
mod runbooks;
mod schema;
mod steps_native;
mod supply;
mod upgrade;

/// Every test step that build.rs compiles is used by some test here, so
/// none is built and forgotten (wasmtime's test-programs rule).
#[test]
fn every_test_guest_has_a_test() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/e2e");
    let sources: String = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    for (name, _) in mend::bundled::TEST_GUESTS {
        let used = [
            format!("{{guest:{name}}}"),
            format!("guest(\"{name}\")"),
            format!("\"{name}\", \""),
        ];
        assert!(
            used.iter().any(|u| sources.contains(u.as_str())),
            "test guest `{name}` has no test in tests/e2e"
        );
    }
}
