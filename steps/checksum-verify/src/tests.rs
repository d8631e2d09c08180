use super::*;
use crate::report::REDOWNLOAD;
use mend_sdk::Algorithm;
use mend_sdk::testing::{FakeHost, plan, verify};
use serde_json::{Value, json};

const T: i64 = 1_700_000_000;
const TAR: &str = "releases/v4.3.tar.gz";
const ZIP: &str = "releases/v4.3.zip";

fn a() -> String {
    "ab12".repeat(16)
}
fn b() -> String {
    "cd34".repeat(16)
}
fn c() -> String {
    "ef56".repeat(16)
}

fn host() -> FakeHost {
    FakeHost::new(T)
        .grant("releases", Access::Read)
        .file(TAR, 1000, T)
        .file(ZIP, 2000, T)
        .file("releases/docs/NOTES.txt", 10, T)
        .digest_answer(TAR, Algorithm::Sha256, &a())
        .digest_answer(ZIP, Algorithm::Sha256, &b())
        .digest_answer("releases/docs/NOTES.txt", Algorithm::Sha256, &c())
}

fn with_list(text: &str) -> FakeHost {
    host().file_with("releases/SHA256SUMS", text, T)
}

fn run(host: &FakeHost, params: Value) -> Result<Plan, StepError> {
    plan::<ChecksumVerify>(host, params)
}

fn err(host: &FakeHost, params: Value) -> StepError {
    match run(host, params) {
        Ok(p) => panic!("expected an error, got {:?}", p.summary),
        Err(e) => e,
    }
}

#[test]
fn matching_files_pass_with_checks_and_facts() {
    let files = json!({ TAR: format!("sha256:{}", a()), ZIP: b() });
    let p = run(&host(), json!({ "files": files })).unwrap();
    assert!(p.actions.is_empty());
    assert_eq!(
        p.summary,
        [
            "releases/v4.3.tar.gz: OK (sha256)",
            "releases/v4.3.zip: OK (sha256)",
            "verified 2 files: 2 OK"
        ]
    );
    assert_eq!(
        p.checks,
        [
            "releases/v4.3.tar.gz still has sha256 ab12ab12ab12…",
            "releases/v4.3.zip still has sha256 cd34cd34cd34…"
        ]
    );
    assert_eq!(p.facts[0].key, "sha256:releases/v4.3.tar.gz");
    assert_eq!(p.facts[0].value, a());
}

#[test]
fn a_mismatch_fails_the_plan() {
    let h = host();
    let e = err(&h, json!({ "files": { TAR: b(), ZIP: b() } }));
    assert_eq!(
        e.message,
        "1 of 2 files FAILED: releases/v4.3.tar.gz (expected cd34cd34cd34…, got ab12ab12ab12…)"
    );
    assert_eq!(e.hint.as_deref(), Some(REDOWNLOAD));
    assert_eq!(e.param.as_deref(), Some("files"));
    let logs = h.logs();
    assert!(logs.iter().any(|(l, m)| *l == Level::Error
        && m == "releases/v4.3.tar.gz: FAILED (sha256: expected cd34cd34cd34…, got ab12ab12ab12…)"));
}

#[test]
fn a_missing_file_fails_like_sha256sum() {
    let e = err(&host(), json!({ "files": { "releases/v4.4.tar.gz": a() } }));
    assert_eq!(
        e.message,
        "1 of 1 file FAILED: releases/v4.4.tar.gz (No such file or directory)"
    );
    assert!(e.hint.unwrap().contains("ignore_missing = true"));
}

#[test]
fn ignore_missing_skips_but_one_file_must_be_verified() {
    let files = json!({ TAR: a(), "releases/v4.4.tar.gz": a() });
    let p = run(&host(), json!({ "files": files, "ignore_missing": true })).unwrap();
    assert_eq!(
        p.summary.last().unwrap(),
        "verified 1 file: 1 OK; 1 missing, skipped (ignore_missing)"
    );
    assert_eq!(p.checks.len(), 1);

    let files = json!({ "releases/v4.4.tar.gz": a() });
    let e = err(&host(), json!({ "files": files, "ignore_missing": true }));
    assert_eq!(e.message, "no file was verified: 1 listed file is missing");
    assert_eq!(e.param.as_deref(), Some("files"));
}

#[test]
fn md5_and_sha1_are_refused_by_prefix() {
    let e = err(
        &host(),
        json!({ "files": { TAR: format!("md5:{}", "0".repeat(32)) } }),
    );
    assert_eq!(
        e.message,
        "`releases/v4.3.tar.gz`: MD5 digests are unfit to verify files: anyone can make two files with the same MD5"
    );
    assert!(e.hint.unwrap().contains("sha256"));
    assert_eq!(e.param.as_deref(), Some("files"));

    let e = err(
        &host(),
        json!({ "files": { TAR: format!("SHA1:{}", "0".repeat(40)) } }),
    );
    assert!(
        e.message.contains("SHA-1 digests are unfit"),
        "{}",
        e.message
    );
}

#[test]
fn md5_and_sha1_are_refused_by_algorithm() {
    for (name, what) in [("md5", "MD5"), ("SHA-1", "SHA-1")] {
        let e = err(&host(), json!({ "files": { TAR: a() }, "algorithm": name }));
        assert_eq!(
            e.message.split(" digests").next().unwrap(),
            format!("`algorithm = {name:?}`: {what}")
        );
        assert_eq!(e.param.as_deref(), Some("algorithm"));
        assert!(e.hint.unwrap().contains("sha256"));
    }
    let e = err(
        &host(),
        json!({ "files": { TAR: a() }, "algorithm": "crc32" }),
    );
    assert_eq!(
        e.message,
        "`algorithm = \"crc32\"`: unknown digest algorithm `crc32`"
    );
}

#[test]
fn wrong_lengths_say_what_they_look_like() {
    let cases = [
        (
            "d41d8cd98f00b204e9800998ecf8427e".to_string(),
            None,
            "`releases/v4.3.tar.gz`: this is 32 hex digits, the length of an MD5 digest; sha256 digests have 64",
        ),
        (
            "0".repeat(40),
            None,
            "`releases/v4.3.tar.gz`: this is 40 hex digits, the length of a SHA-1 digest; sha256 digests have 64",
        ),
        (
            "0".repeat(128),
            None,
            "`releases/v4.3.tar.gz`: this is 128 hex digits, the length of a SHA-512 digest; sha256 digests have 64",
        ),
        (
            a(),
            Some("sha512"),
            "`releases/v4.3.tar.gz`: this is 64 hex digits, the length of a SHA-256 or BLAKE3 digest; sha512 digests have 128",
        ),
        (
            format!("{}zz=", &a()[..61]),
            None,
            "`releases/v4.3.tar.gz`: the digest has characters that are not hex digits ('z', '='); sha256 digests are 64 hex digits",
        ),
    ];
    for (digest, algorithm, want) in cases {
        let mut params = json!({ "files": { TAR: digest } });
        if let Some(algo) = algorithm {
            params["algorithm"] = json!(algo);
        }
        let e = err(&host(), params);
        assert_eq!(e.message, want);
        assert_eq!(e.param.as_deref(), Some("files"));
    }
}

#[test]
fn a_sums_list_with_marks_comments_and_bad_lines() {
    let text = format!(
        "# v4.3 release\n{}  v4.3.tar.gz\n{} *v4.3.zip\nthis line is not a checksum\n\n{}  ./docs/NOTES.txt\n",
        a(),
        b(),
        c()
    );
    let h = with_list(&text);
    let p = run(&h, json!({ "list": "releases/SHA256SUMS" })).unwrap();
    assert_eq!(
        p.summary,
        [
            "releases/v4.3.tar.gz: OK (sha256)",
            "releases/v4.3.zip: OK (sha256)",
            "releases/docs/NOTES.txt: OK (sha256)",
            "releases/SHA256SUMS: WARNING: 1 line is improperly formatted (line 4)",
            "verified 3 files: 3 OK"
        ]
    );
    assert!(h.logs().iter().any(|(l, _)| *l == Level::Warn));
    assert_eq!(p.facts.len(), 3);
}

#[test]
fn a_list_mismatch_points_at_the_list() {
    let h = with_list(&format!("{}  v4.3.tar.gz\n{}  v4.3.zip\n", a(), a()));
    let e = err(&h, json!({ "list": "releases/SHA256SUMS" }));
    assert_eq!(
        e.message,
        "1 of 2 files FAILED: releases/v4.3.zip (expected ab12ab12ab12…, got cd34cd34cd34…)"
    );
    assert_eq!(e.param.as_deref(), Some("list"));
}

#[test]
fn a_list_without_a_good_line_fails() {
    let h = with_list("# nothing\nhello world\n");
    let e = err(&h, json!({ "list": "releases/SHA256SUMS" }));
    assert_eq!(
        e.message,
        "`releases/SHA256SUMS`: no properly formatted checksum lines found"
    );
    assert_eq!(e.param.as_deref(), Some("list"));
}

#[test]
fn an_md5sums_list_is_refused() {
    let h = with_list("d41d8cd98f00b204e9800998ecf8427e  v4.3.tar.gz\n");
    let e = err(&h, json!({ "list": "releases/SHA256SUMS" }));
    assert_eq!(
        e.message,
        "`releases/SHA256SUMS` line 1: this is 32 hex digits, the length of an MD5 digest; sha256 digests have 64"
    );
    assert_eq!(e.param.as_deref(), Some("list"));
}

#[test]
fn list_names_stay_below_the_list() {
    let h = with_list(&format!("{}  ../etc/passwd\n", a()));
    let e = err(&h, json!({ "list": "releases/SHA256SUMS" }));
    assert!(
        e.message.contains("line 1: `../etc/passwd` climbs out"),
        "{}",
        e.message
    );
    assert_eq!(e.param.as_deref(), Some("list"));
}

#[test]
fn uppercase_hex_matches() {
    let h = with_list(&format!("{}  v4.3.zip\n", b().to_uppercase()));
    let params = json!({ "files": { TAR: a().to_uppercase() }, "list": "releases/SHA256SUMS" });
    let p = run(&h, params).unwrap();
    assert_eq!(p.summary.last().unwrap(), "verified 2 files: 2 OK");
    assert_eq!(p.facts[1].value, b(), "facts are lowercase");
}

#[test]
fn other_algorithms_by_prefix_and_parameter() {
    let h = host()
        .digest_answer(TAR, Algorithm::Sha512, &"12".repeat(64))
        .digest_answer(ZIP, Algorithm::Blake3, &c());
    let files = json!({ TAR: format!("sha512:{}", "12".repeat(64)), ZIP: c() });
    let p = run(&h, json!({ "files": files, "algorithm": "blake3" }));
    let e = p.unwrap_err();
    assert_eq!(
        e.message,
        "`releases/v4.3.tar.gz`: the digest is marked sha512 but `algorithm` is blake3"
    );
    let files =
        json!({ TAR: format!("sha512:{}", "12".repeat(64)), ZIP: format!("blake3:{}", c()) });
    let p = run(&h, json!({ "files": files })).unwrap();
    assert_eq!(p.summary[0], "releases/v4.3.tar.gz: OK (sha512)");
    assert_eq!(p.summary[1], "releases/v4.3.zip: OK (blake3)");
    assert_eq!(p.facts[0].key, "sha512:releases/v4.3.tar.gz");
}

#[test]
fn bad_values_and_nothing_to_do_are_refused() {
    let e = err(&host(), json!({ "files": { TAR: 42 } }));
    assert_eq!(
        e.message,
        "`releases/v4.3.tar.gz`: the expected digest must be a string"
    );
    assert_eq!(e.param.as_deref(), Some("files"));
    let e = err(&host(), json!({}));
    assert!(e.message.starts_with("nothing to verify"));
    let e = err(&host(), json!({ "list": "releases/MISSING" }));
    assert_eq!(e.message, "`releases/MISSING`: No such file or directory");
    assert_eq!(e.param.as_deref(), Some("list"));
}

#[test]
fn an_unreadable_path_fails() {
    let e = err(&host(), json!({ "files": { "releases/docs": a() } }));
    assert!(
        e.message
            .starts_with("1 of 1 file FAILED: releases/docs (the fake host"),
        "{}",
        e.message
    );
    assert_eq!(
        e.hint.as_deref(),
        Some("check that each path names a readable file")
    );
}

#[test]
fn verify_hashes_again() {
    let params = json!({ "files": { TAR: a(), ZIP: b() } });
    let changed = host().digest_answer(ZIP, Algorithm::Sha256, &c());
    let checks = verify::<ChecksumVerify>(&changed, params).unwrap();
    assert_eq!(checks.len(), 2);
    assert!(checks[0].ok);
    assert_eq!(
        checks[1].name,
        "releases/v4.3.zip still has sha256 cd34cd34cd34…"
    );
    assert!(!checks[1].ok);
    assert_eq!(checks[1].detail, "got ef56ef56ef56…");
}
