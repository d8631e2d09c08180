//! Supply chain: a `.wasm` step runs only when it is signed by a key the
//! operator's policy trusts (when the policy requires it) and imports
//! nothing its runbook has not approved; refusals name the step, the file,
//! the key and what to do, exit 2, before any step code runs. Keys and
//! signatures are made here with the `minisign` crate, the reference
//! implementation, so nothing secret is checked in.

use std::path::PathBuf;

use crate::common::*;

const HEAD: &str = r#"[runbook]
name = "supply"
version = "1.0.0"
summary = "one pinned step"
"#;

/// A fresh minisign key pair: (public key line for a policy, key id).
struct Key {
    pair: minisign::KeyPair,
}

impl Key {
    fn new() -> Key {
        Key {
            pair: minisign::KeyPair::generate_unencrypted_keypair().unwrap(),
        }
    }
    fn public(&self) -> String {
        self.pair.pk.to_base64()
    }
    /// The id as minisign prints it, from the public key file's comment.
    fn id(&self) -> String {
        let text = self.pair.pk.to_box().unwrap().to_string();
        text.lines()
            .next()
            .unwrap()
            .rsplit(' ')
            .next()
            .unwrap()
            .to_string()
    }
    /// A `.minisig` file's text for `bytes`, as `minisign -Sm` writes it.
    fn sign(&self, bytes: &[u8]) -> String {
        minisign::sign(
            Some(&self.pair.pk),
            &self.pair.sk,
            std::io::Cursor::new(bytes),
            Some("file:noop.wasm"),
            None,
        )
        .unwrap()
        .to_string()
    }
}

/// The noop guest copied into the fixture (its signature goes beside it),
/// a runbook pinning it with `pin` after its sha256, and the copy's path.
fn pinned_noop(f: &Fixture, pin: &str) -> (PathBuf, PathBuf) {
    let (src, sha) = guest("noop");
    let wasm = f.path("steps/noop.wasm");
    std::fs::create_dir_all(wasm.parent().unwrap()).unwrap();
    std::fs::copy(src, &wasm).unwrap();
    let runbook = f.write(
        "rb.toml",
        &format!(
            "{HEAD}\n[[steps]]\nid = \"noop\"\nuses = \"steps/noop.wasm\"\nsha256 = \"{sha}\"\n{pin}\n"
        ),
    );
    (runbook, wasm)
}

fn policy(f: &Fixture, keys: &[&Key]) -> String {
    let keys: Vec<String> = keys.iter().map(|k| format!("{:?}", k.public())).collect();
    f.write(
        "policy.toml",
        &format!(
            "require_signatures = true\ntrusted_keys = [{}]\n",
            keys.join(", ")
        ),
    )
    .display()
    .to_string()
}

/// `mend run` refused with exit 2 before anything ran (no journal appeared).
fn refused(f: &Fixture, args: &[&str], env: &[(&str, &str)]) -> String {
    let ran = f.mend_env(args, env);
    assert_eq!(ran.code, 2, "{}", ran.text());
    assert!(!f.state().exists(), "a state directory appeared");
    ran.stderr
}

#[test]
fn a_step_that_imports_more_than_approved_is_refused_with_the_difference() {
    let f = Fixture::new();
    let approved = "capabilities = [\"mend:runbook/files\", \"mend:runbook/log\"]";
    let (runbook, _) = pinned_noop(&f, approved);
    let rb = runbook.display().to_string();
    let err = refused(&f, &["run", &rb], &[]);
    let full = guest_capabilities("noop");
    for expected in [
        "step `noop` (",
        "imports more than its `capabilities` approve",
        "rb.toml:10:16",
        "+ mend:runbook/probe: runs allowed commands, fetches allowed URLs",
        "+ wasi:filesystem/types: reads its grants' directories (read-only)",
        "replace the step's `capabilities` line with:",
        &full,
        "--approve-capabilities noop",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    // What was approved is not shown as gained.
    assert!(!err.contains("+ mend:runbook/files"), "{err}");

    // Approved for one invocation: it runs, and says how to make it last.
    let ran = f.mend(&["run", &rb, "--approve-capabilities", "noop"]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    assert!(
        ran.stderr.contains("approved for this invocation only") && ran.stderr.contains(&full),
        "{}",
        ran.stderr
    );

    // The printed line approves it for good.
    std::fs::write(
        &runbook,
        std::fs::read_to_string(&runbook)
            .unwrap()
            .replace(approved, &full),
    )
    .unwrap();
    let ran = f.mend(&["plan", &rb]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    assert!(!ran.stderr.contains("approved"), "{}", ran.stderr);
}

#[test]
fn an_old_pin_without_capabilities_says_what_to_add() {
    let f = Fixture::new();
    let (runbook, _) = pinned_noop(&f, "");
    let err = refused(&f, &["run", &runbook.display().to_string()], &[]);
    for expected in [
        "has no `capabilities`: nothing it imports is approved yet",
        "rb.toml:8:8",
        "+ mend:runbook/probe: runs allowed commands, fetches allowed URLs",
        "add this line to the step, after its sha256:",
        &guest_capabilities("noop"),
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    // lint and plan refuse alike: describe is step code too.
    for cmd in ["lint", "plan"] {
        let ran = f.mend(&[cmd, &runbook.display().to_string()]);
        assert_eq!(ran.code, 2, "{cmd}: {}", ran.text());
    }
}

#[test]
fn approving_a_step_the_runbook_does_not_have_is_refused() {
    let f = Fixture::new();
    let (runbook, _) = pinned_noop(&f, &guest_capabilities("noop"));
    let err = refused(
        &f,
        &[
            "run",
            &runbook.display().to_string(),
            "--approve-capabilities",
            "nope",
        ],
        &[],
    );
    assert!(
        err.contains("--approve-capabilities nope: the runbook has no step `nope`")
            && err.contains("its steps: noop"),
        "{err}"
    );
}

#[test]
fn a_signed_step_runs_under_a_policy_that_requires_signatures() {
    let f = Fixture::new();
    let key = Key::new();
    let (runbook, wasm) = pinned_noop(&f, &guest_capabilities("noop"));
    let bytes = std::fs::read(&wasm).unwrap();
    std::fs::write(f.path("steps/noop.wasm.minisig"), key.sign(&bytes)).unwrap();
    let policy = policy(&f, &[&Key::new(), &key]);
    let ran = f.mend(&["--policy", &policy, "run", &runbook.display().to_string()]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    // MEND_POLICY says the same.
    let ran = f.mend_env(
        &["plan", &runbook.display().to_string()],
        &[("MEND_POLICY", &policy)],
    );
    assert_eq!(ran.code, 0, "{}", ran.text());
}

#[test]
fn a_missing_signature_is_refused_with_what_to_do() {
    let f = Fixture::new();
    let key = Key::new();
    let (runbook, wasm) = pinned_noop(&f, &guest_capabilities("noop"));
    let policy = policy(&f, &[&key]);
    let err = refused(
        &f,
        &["--policy", &policy, "run", &runbook.display().to_string()],
        &[],
    );
    let sig = format!("{}.minisig", wasm.display());
    for expected in [
        "step `noop` (".to_string(),
        "rb.toml:8:8".to_string(),
        format!(
            "no signature: the policy {policy} requires one (require_signatures = true), and {sig} does not exist"
        ),
        format!(
            "have the step signed by a trusted key (key id {})",
            key.id()
        ),
        format!("`minisign -Sm {}`", wasm.display()),
    ] {
        assert!(err.contains(&expected), "missing {expected:?} in:\n{err}");
    }
}

#[test]
fn a_signature_by_an_untrusted_key_is_refused() {
    let f = Fixture::new();
    let (trusted, stranger) = (Key::new(), Key::new());
    let (runbook, wasm) = pinned_noop(&f, &guest_capabilities("noop"));
    let bytes = std::fs::read(&wasm).unwrap();
    std::fs::write(f.path("steps/noop.wasm.minisig"), stranger.sign(&bytes)).unwrap();
    let policy = policy(&f, &[&trusted]);
    let err = refused(
        &f,
        &["--policy", &policy, "run", &runbook.display().to_string()],
        &[],
    );
    for expected in [
        format!(
            "noop.wasm.minisig is signed by key {}, which the policy {policy} does not trust (trusted: {})",
            stranger.id(),
            trusted.id()
        ),
        format!(
            "add its public key (the second line of its .pub file) to trusted_keys in {policy}"
        ),
    ] {
        assert!(err.contains(&expected), "missing {expected:?} in:\n{err}");
    }
}

#[test]
fn a_bad_signature_is_refused() {
    let f = Fixture::new();
    let key = Key::new();
    let (runbook, wasm) = pinned_noop(&f, &guest_capabilities("noop"));
    // A real signature by the trusted key, of other bytes: as if the
    // component were swapped and re-pinned, or the signature copied.
    std::fs::write(
        f.path("steps/noop.wasm.minisig"),
        key.sign(b"another component"),
    )
    .unwrap();
    let policy = policy(&f, &[&key]);
    let err = refused(
        &f,
        &["--policy", &policy, "run", &runbook.display().to_string()],
        &[],
    );
    for expected in [
        format!(
            "noop.wasm.minisig (key {}) does not verify against {}",
            key.id(),
            wasm.display()
        ),
        "the file or its signature changed after signing".to_string(),
        "do not run it".to_string(),
    ] {
        assert!(err.contains(&expected), "missing {expected:?} in:\n{err}");
    }
    // A signature file that is not one.
    std::fs::write(f.path("steps/noop.wasm.minisig"), "hello\n").unwrap();
    let err = refused(
        &f,
        &["--policy", &policy, "run", &runbook.display().to_string()],
        &[],
    );
    assert!(err.contains("is not a minisign signature"), "{err}");
}

#[test]
fn bundled_steps_need_no_signature_and_a_broken_policy_stops_everything() {
    let f = Fixture::new();
    f.write("data/a.txt", "a");
    let runbook = f.runbook(
        "std.toml",
        &format!(
            "{HEAD}\n[grants.data]\npath = \"{{root}}/data\"\naccess = \"write\"\n\n[[steps]]\nid = \"cull\"\nuses = \"std:cache-cull\"\ngrants = [\"data\"]\nwith = {{ path = \"data\", days = 30 }}\n"
        ),
    );
    let rb = runbook.display().to_string();
    let policy = policy(&f, &[&Key::new()]);
    let ran = f.mend(&["--policy", &policy, "plan", &rb]);
    assert_eq!(ran.code, 0, "{}", ran.text());

    // A policy that does not parse, or is not there, is bad input.
    let broken = f.write("broken.toml", "require_signatures = \"yes\"\n");
    let err = refused(
        &f,
        &["--policy", &broken.display().to_string(), "run", &rb],
        &[],
    );
    assert!(
        err.contains("`require_signatures` must be true or false")
            && err.contains("broken.toml:1:22"),
        "{err}"
    );
    let err = refused(
        &f,
        &["run", &rb],
        &[("MEND_POLICY", f.path("absent.toml").to_str().unwrap())],
    );
    assert!(err.contains("cannot read the policy"), "{err}");
}

/// A rollback checks nothing again: a run that started under one policy
/// can be undone under a stricter (or broken) one. Resume runs steps, so it
/// checks like run.
#[test]
fn rollback_is_never_blocked_by_the_policy_but_resume_is_checked() {
    let f = Fixture::new();
    f.write("data/a.txt", "a");
    let (src, sha) = guest("scripted");
    let wasm = f.path("steps/scripted.wasm");
    std::fs::create_dir_all(wasm.parent().unwrap()).unwrap();
    std::fs::copy(src, &wasm).unwrap();
    let runbook = f.runbook(
        "rb.toml",
        &format!(
            r#"{HEAD}on_failure = "stop"

[grants.data]
path = "{{root}}/data"
access = "write"

[[steps]]
id = "write"
uses = "steps/scripted.wasm"
sha256 = "{sha}"
{caps}
grants = ["data"]
with = {{ actions = [{{ write_file = ["data/b.txt", "b"] }}] }}

[[steps]]
id = "fail"
uses = "std:assert"
grants = ["data"]
with = {{ when = "after", checks = [{{ exists = "data/missing", message = "the check fails" }}] }}
"#,
            caps = guest_capabilities("scripted")
        ),
    );
    let ran = f.mend(&["run", &runbook.display().to_string()]);
    assert_eq!(ran.code, 1, "{}", ran.text());
    assert!(f.path("data/b.txt").exists(), "{}", ran.text());
    let id = history_id(&f);

    // Now the operator requires signatures; the step has none.
    let policy = policy(&f, &[&Key::new()]);
    let resumed = f.mend(&["--policy", &policy, "resume", &id]);
    assert_eq!(resumed.code, 2, "{}", resumed.text());
    assert!(
        resumed.stderr.contains("no signature"),
        "{}",
        resumed.stderr
    );
    // ... and, say, breaks the policy file: a rollback still goes through.
    let broken = f.write("broken.toml", "nonsense = 1\n");
    let rolled = f.mend(&["--policy", &broken.display().to_string(), "rollback", &id]);
    assert_eq!(rolled.code, 0, "{}", rolled.text());
    assert!(!f.path("data/b.txt").exists(), "{}", rolled.text());
}
