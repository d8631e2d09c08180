//! The host helpers a step imports, checked against the native tools:
//! walk against `find`, digest against `sha256sum`, and the denials.

use crate::common::*;

fn inspect(f: &Fixture, what: &[&str]) -> String {
    let list = what
        .iter()
        .map(|w| format!("\"{w}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let rb = f.runbook(
        "inspect.toml",
        &format!(
            r#"
[runbook]
name = "inspect"
version = "1.0.0"
summary = "call the host helpers"

[grants.data]
path = "{{root}}/data"
access = "read"

[[steps]]
id = "look"
{{guest:scripted}}
grants = ["data"]
with = {{ inspect = [{list}] }}
"#
        ),
    );
    let ran = f.mend(&["plan", rb.to_str().unwrap()]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    ran.stdout
}

fn sh(cmd: &str) -> String {
    let out = std::process::Command::new("sh")
        .args(["-c", cmd])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn walk_agrees_with_find_on_a_big_awkward_tree() {
    let f = Fixture::new();
    // 12,000 files in nested folders (more than one walk batch), awkward names,
    // a symlink out of the grant (reported, never followed).
    for i in 0..12_000u32 {
        let name = match i % 4 {
            0 => format!("d{}/sub {}/file {i}.txt", i % 17, i % 5),
            1 => format!("d{}/-leading-dash-{i}", i % 17),
            2 => format!("d{}/ünïcødé-{i}", i % 13),
            _ => format!("flat-{i}"),
        };
        f.write(&format!("data/{name}"), &"x".repeat((i % 7) as usize));
    }
    std::fs::create_dir_all(f.path("outside/deep")).unwrap();
    f.write("outside/deep/secret", "not yours");
    std::os::unix::fs::symlink(f.path("outside"), f.path("data/escape")).unwrap();
    let out = inspect(&f, &["walk:data"]);
    let data = f.path("data");
    let d = data.display();
    let entries = sh(&format!("find '{d}' -mindepth 1 | wc -l"));
    let files = sh(&format!("find '{d}' -type f | wc -l"));
    let bytes = sh(&format!(
        "find '{d}' -type f -printf '%s\\n' | awk '{{s+=$1}} END {{print s}}'"
    ));
    let links = sh(&format!("find '{d}' -type l | wc -l"));
    let want =
        format!("walk data: {entries} entries, {files} files, {bytes} bytes, {links} symlinks");
    assert!(out.contains(&want), "expected `{want}` in:\n{out}");
    assert_eq!(files, "12000");
}

#[test]
fn digest_agrees_with_sha256sum_and_paths_are_checked() {
    let f = Fixture::new();
    f.write("data/release.tar.gz", &"release bytes\n".repeat(100_000));
    std::fs::create_dir_all(f.path("outside")).unwrap();
    f.write("outside/secret", "s");
    std::os::unix::fs::symlink(f.path("outside/secret"), f.path("data/link")).unwrap();
    let out = inspect(
        &f,
        &[
            "digest:data/release.tar.gz",
            "digest:data/../outside/secret",
            "digest:data/link",
            "digest:etc/passwd",
            "read:data/release.tar.gz",
            "free:data",
        ],
    );
    let native = sh(&format!(
        "sha256sum '{}' | cut -d' ' -f1",
        f.path("data/release.tar.gz").display()
    ));
    assert!(
        out.contains(&format!("sha256 data/release.tar.gz: {native}")),
        "{out}"
    );
    assert!(out.contains("digest data/../outside/secret: error: denied: path `data/../outside/secret` contains `..`"), "{out}");
    assert!(
        out.contains(
            "digest data/link: error: denied: path `data/link` leaves its grant through a symlink"
        ),
        "a symlink out of the grant was followed:\n{out}"
    );
    assert!(out.contains("digest etc/passwd: error: denied: path `etc/passwd` is in grant `etc`, which this step does not hold"), "{out}");
    assert!(
        out.contains("read data/release.tar.gz: 1400000 bytes"),
        "{out}"
    );
    assert!(out.contains("free data: "), "{out}");
}
