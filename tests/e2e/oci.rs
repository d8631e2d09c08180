//! Steps shared as Wasm OCI artifacts, against a real registry: Debian's
//! `docker-registry` (the distribution registry), started by each test on
//! 127.0.0.1 with its own storage directory and config file.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::common::{Fixture, Ran, free_port, guest, mend_bin, shared_cache};

/// A registry of its own: config, storage, port; stopped on drop.
struct Registry {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
    /// An htpasswd line: Basic authentication on.
    htpasswd: Option<String>,
}

impl Registry {
    fn start() -> Registry {
        Registry::start_as(None)
    }

    fn start_as(htpasswd: Option<&str>) -> Registry {
        let port = free_port();
        let mut r = Registry {
            dir: tempfile::tempdir().unwrap(),
            port,
            child: None,
            htpasswd: htpasswd.map(String::from),
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let data = self.dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let config = self.dir.path().join("config.yml");
        let mut text = format!(
            "version: 0.1\nlog: {{level: error, accesslog: {{disabled: true}}}}\nstorage: {{filesystem: {{rootdirectory: {}}}, delete: {{enabled: true}}}}\nhttp: {{addr: 127.0.0.1:{}, secret: mend-test-secret}}\n",
            data.display(),
            self.port
        );
        if let Some(line) = &self.htpasswd {
            let file = self.dir.path().join("htpasswd");
            std::fs::write(&file, format!("{line}\n")).unwrap();
            text.push_str(&format!(
                "auth: {{htpasswd: {{realm: mend-test, path: {}}}}}\n",
                file.display()
            ));
        }
        std::fs::write(&config, text).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (Debian's package of the same name; .ci/run installs it)");
        self.child = Some(child);
        // Ready when /v2/ answers at all.
        for _ in 0..500 {
            if http(self.port, "GET", "/v2/", &[], b"").is_some() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        panic!("docker-registry did not answer on 127.0.0.1:{}", self.port);
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: a plain kill(2) of the child this test started.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            c.wait().unwrap();
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn oci(&self, repo_tag: &str) -> String {
        format!("oci://{}/{repo_tag}", self.host())
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// An HTTP answer: status, headers (lower-case names), body.
type Exchange = (u16, Vec<(String, String)>, Vec<u8>);

/// One plain HTTP/1.1 exchange: (status, headers, body); None when nothing
/// listens.
fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<Exchange> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    let mut lines = head.lines();
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect::<Vec<_>>();
    let mut body = raw[end + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = unchunk(&body);
    }
    Some((status, headers, body))
}

fn unchunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let n = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 4 + n..];
    }
}

fn sha256(bytes: &[u8]) -> String {
    format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes))
    )
}

/// Another writer: the Wasm OCI artifact layout written by hand, as the
/// spec shows it (the spike's curl_push.sh): config, layer, manifest.
fn raw_push(port: u16, repo: &str, tag: &str, wasm: &[u8]) -> String {
    let layer = sha256(wasm);
    let config = format!(
        r#"{{"created":"2026-11-27T00:00:00Z","architecture":"wasm","os":"wasip2","layerDigests":["{layer}"],"component":{{"exports":[],"imports":[]}}}}"#
    );
    let upload = |bytes: &[u8]| {
        let (status, headers, _) = http(
            port,
            "POST",
            &format!("/v2/{repo}/blobs/uploads/"),
            &[],
            b"",
        )
        .unwrap();
        assert_eq!(status, 202);
        let loc = headers
            .iter()
            .find(|(k, _)| k == "location")
            .unwrap()
            .1
            .clone();
        let loc = loc
            .strip_prefix(&format!("http://127.0.0.1:{port}"))
            .unwrap_or(&loc)
            .to_string();
        let sep = if loc.contains('?') { '&' } else { '?' };
        let (status, _, body) = http(
            port,
            "PUT",
            &format!("{loc}{sep}digest={}", sha256(bytes)),
            &[("Content-Type", "application/octet-stream")],
            bytes,
        )
        .unwrap();
        assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    };
    upload(config.as_bytes());
    upload(wasm);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","annotations":{{"org.opencontainers.image.version":"{tag}"}},"config":{{"mediaType":"application/vnd.wasm.config.v0+json","size":{},"digest":"{}"}},"layers":[{{"mediaType":"application/wasm","size":{},"digest":"{layer}"}}]}}"#,
        config.len(),
        sha256(config.as_bytes()),
        wasm.len()
    );
    let (status, _, body) = http(
        port,
        "PUT",
        &format!("/v2/{repo}/manifests/{tag}"),
        &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
        manifest.as_bytes(),
    )
    .unwrap();
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    sha256(manifest.as_bytes())
}

/// mend with its own state directory (and the suite's component cache).
fn mend_in(state: &Path, args: &[&str]) -> Ran {
    mend_with(state, &shared_cache(), args)
}

fn mend_with(state: &Path, cache: &Path, args: &[&str]) -> Ran {
    mend_docker(state, cache, &state.join("no-docker-config"), args)
}

/// mend with Docker's config in `docker` (DOCKER_CONFIG).
fn mend_docker(state: &Path, cache: &Path, docker: &Path, args: &[&str]) -> Ran {
    let out = Command::new(mend_bin())
        .arg("--state-dir")
        .arg(state)
        .arg("--cache-dir")
        .arg(cache)
        .arg("--insecure")
        .args(args)
        .env("DOCKER_CONFIG", docker)
        .env_remove("MEND_POLICY")
        .output()
        .unwrap();
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The three pin lines a push or pull printed.
fn pin_lines(out: &str) -> String {
    let lines: Vec<&str> = out
        .lines()
        .map(str::trim)
        .filter(|l| {
            l.starts_with("uses = ")
                || l.starts_with("sha256 = ")
                || l.starts_with("capabilities = ")
        })
        .collect();
    assert_eq!(lines.len(), 3, "{out}");
    lines.join("\n")
}

const HEAD: &str =
    "[runbook]\nname = \"shared\"\nversion = \"1\"\nsummary = \"a community step\"\n";

/// A runbook with one step pinned by `pins`, its `path` set.
fn runbook(f: &Fixture, name: &str, pins: &str) -> PathBuf {
    f.write(
        name,
        &format!(
            "{HEAD}\n[[steps]]\nid = \"report\"\n{pins}\n\n  [steps.with]\n  path = \"media\"\n"
        ),
    )
}

/// A copy of a test guest in the fixture (a signature can go beside it).
fn guest_copy(f: &Fixture, name: &str) -> (PathBuf, Vec<u8>) {
    let (src, _) = guest(name);
    let bytes = std::fs::read(src).unwrap();
    let path = f.write(&format!("steps/{name}.wasm"), "");
    std::fs::write(&path, &bytes).unwrap();
    (path, bytes)
}

#[test]
pub fn a_step_pushed_from_one_state_dir_is_pulled_pinned_and_run_from_another() {
    let mut reg = Registry::start();
    let f = Fixture::new();
    let (wasm, bytes) = guest_copy(&f, "shared-1-0");
    let target = reg.oci("community/disk-report:1.0.0");
    let pushed = mend_in(
        &f.path("a"),
        &["step", "push", &wasm.display().to_string(), &target],
    );
    assert_eq!(pushed.code, 0, "{}", pushed.text());
    assert!(
        pushed
            .stdout
            .starts_with(&format!("pushed disk-report 1.0.0 to {target}\n")),
        "{}",
        pushed.stdout
    );
    let pins = pin_lines(&pushed.stdout);
    assert!(
        pins.contains(&format!("sha256 = \"{}\"", &sha256(&bytes)[7..])),
        "{pins}"
    );
    // A tag that is not the step's own version is refused.
    let wrong = mend_in(
        &f.path("a"),
        &[
            "step",
            "push",
            &wasm.display().to_string(),
            &reg.oci("community/disk-report:2.0.0"),
        ],
    );
    assert_eq!(wrong.code, 2, "{}", wrong.text());
    assert!(
        wrong.stderr.contains("but the tag is `2.0.0`"),
        "{}",
        wrong.stderr
    );

    // Plain HTTP is only for a registry on this machine.
    let far = mend_in(
        &f.path("a"),
        &[
            "step",
            "pull",
            "oci://registry.example.org/community/disk-report:1.0.0",
        ],
    );
    assert_eq!(far.code, 2, "{}", far.text());
    assert!(
        far.stderr.contains("--insecure (plain HTTP) is only for a registry on this machine (127.0.0.1, ::1, localhost), not registry.example.org"),
        "{}",
        far.stderr
    );

    // Pulled from another state directory: the same lines.
    let pulled = mend_in(&f.path("b"), &["step", "pull", &target]);
    assert_eq!(pulled.code, 0, "{}", pulled.text());
    assert_eq!(pin_lines(&pulled.stdout), pins);
    let kept = f.path(&format!("b/oci/blobs/sha256/{}", &sha256(&bytes)[7..]));
    assert_eq!(
        std::fs::read(&kept).unwrap(),
        bytes,
        "the pulled bytes are the pushed ones"
    );
    assert!(f.path("b/oci/oci-layout").is_file() && f.path("b/oci/index.json").is_file());

    // Pinned in a runbook and run from a third, fetched on first use.
    let rb = runbook(&f, "rb.toml", &pins);
    let rb = rb.display().to_string();
    let ran = mend_in(&f.path("c"), &["run", &rb]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    assert!(
        ran.text().contains("disk-report 1.0.0: top 20 of media"),
        "{}",
        ran.text()
    );
    let kept = f.path(&format!("c/oci/blobs/sha256/{}", &sha256(&bytes)[7..]));
    assert_eq!(std::fs::read(&kept).unwrap(), bytes);

    // Offline: the cached reference still plans and runs.
    reg.stop();
    let plan = mend_in(&f.path("c"), &["plan", &rb]);
    assert_eq!(plan.code, 0, "{}", plan.text());
    let ran = mend_in(&f.path("c"), &["run", &rb]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    // An uncached one fails naming the registry: exit 7, nothing ran.
    let other = runbook(
        &f,
        "other.toml",
        &pins
            .replace("disk-report:1.0.0", "other:2.0.0")
            .replace(&sha256(&bytes)[7..], &"ab".repeat(32)),
    );
    let ran = mend_in(&f.path("c"), &["run", &other.display().to_string()]);
    assert_eq!(ran.code, 7, "{}", ran.text());
    assert!(
        ran.stderr.contains(&format!(
            "{} is not in the cache ({}) and cannot reach the registry {}",
            reg.oci("community/other:2.0.0"),
            f.path("c/oci").display(),
            reg.host()
        )),
        "{}",
        ran.stderr
    );
    assert!(ran.stderr.contains("mend step pull"), "{}", ran.stderr);
}

#[test]
pub fn a_moved_tag_is_refused_before_any_step_code_runs_naming_both_digests() {
    let reg = Registry::start();
    let f = Fixture::new();
    let (wasm, bytes) = guest_copy(&f, "shared-1-0");
    let target = reg.oci("community/disk-report:1.0.0");
    let pushed = mend_in(
        &f.path("a"),
        &["step", "push", &wasm.display().to_string(), &target],
    );
    assert_eq!(pushed.code, 0, "{}", pushed.text());
    let rb = runbook(&f, "rb.toml", &pin_lines(&pushed.stdout));
    // mend itself will not move a tag to other bytes...
    let (other, other_bytes) = guest_copy(&f, "noop");
    let again = mend_in(
        &f.path("a"),
        &[
            "step",
            "push",
            &other.display().to_string(),
            &reg.oci("community/disk-report:0.1.0"),
        ],
    );
    assert_eq!(again.code, 0, "{}", again.text());
    // ...but another writer can: the same tag, other bytes.
    let manifest = raw_push(reg.port, "community/disk-report", "1.0.0", &other_bytes);
    let cache = f.path("fresh-cache");
    let ran = mend_with(&f.path("d"), &cache, &["run", &rb.display().to_string()]);
    assert_eq!(ran.code, 2, "{}", ran.text());
    assert!(
        ran.stderr.contains(&format!(
            "step `report`: {target} now points at other bytes: the runbook pins sha256 = \"{}\", the registry now has sha256 = \"{}\" (manifest {manifest})",
            &sha256(&bytes)[7..],
            &sha256(&other_bytes)[7..]
        )),
        "{}",
        ran.stderr
    );
    // Nothing of the new bytes was downloaded, compiled or journaled.
    assert!(
        !f.path(&format!(
            "d/oci/blobs/sha256/{}",
            &sha256(&other_bytes)[7..]
        ))
        .exists()
    );
    let compiled = walk(&cache);
    assert!(compiled.is_empty(), "compiled: {compiled:?}");
    let history = mend_in(&f.path("d"), &["history"]);
    assert!(!history.stdout.contains("shared"), "{}", history.text());
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

/// A fresh minisign key pair.
struct Key {
    pair: minisign::KeyPair,
}

impl Key {
    fn new() -> Key {
        Key {
            pair: minisign::KeyPair::generate_unencrypted_keypair().unwrap(),
        }
    }
    /// The id as minisign prints it.
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
    /// Write FILE.minisig beside `file`, as `minisign -Sm FILE` does.
    fn sign(&self, file: &Path) {
        let bytes = std::fs::read(file).unwrap();
        let sig = minisign::sign(
            Some(&self.pair.pk),
            &self.pair.sk,
            std::io::Cursor::new(bytes),
            Some("file:step.wasm"),
            None,
        )
        .unwrap()
        .to_string();
        std::fs::write(format!("{}.minisig", file.display()), sig).unwrap();
    }
}

#[test]
fn a_signature_pushed_as_a_referrer_verifies_after_the_pull_and_others_are_refused() {
    let mut reg = Registry::start();
    let f = Fixture::new();
    let (k, l) = (Key::new(), Key::new());
    let policy = f.write(
        "policy.toml",
        &format!(
            "require_signatures = true\ntrusted_keys = [{:?}]\n",
            k.pair.pk.to_base64()
        ),
    );
    let policy = policy.display().to_string();
    // The same component three times: signed by K, unsigned, signed by L.
    let push = |repo: &str, key: Option<&Key>| -> String {
        let (wasm, _) = guest_copy(&f, "shared-1-0");
        let dir = f.path(repo);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("step.wasm");
        std::fs::rename(&wasm, &file).unwrap();
        if let Some(key) = key {
            key.sign(&file);
        }
        let target = reg.oci(&format!("community/{repo}:1.0.0"));
        let pushed = mend_in(
            &f.path("a"),
            &["step", "push", &file.display().to_string(), &target],
        );
        assert_eq!(pushed.code, 0, "{}", pushed.text());
        if let Some(key) = key {
            assert!(
                pushed
                    .stdout
                    .contains(&format!("key {} (referrer sha256:", key.id())),
                "{}",
                pushed.stdout
            );
        }
        pin_lines(&pushed.stdout)
    };
    let signed = runbook(&f, "signed.toml", &push("signed", Some(&k)));
    let unsigned = runbook(&f, "unsigned.toml", &push("unsigned", None));
    let wrong = runbook(&f, "wrong.toml", &push("wrong", Some(&l)));

    let pulled = mend_in(
        &f.path("b"),
        &[
            "--policy",
            &policy,
            "step",
            "pull",
            &reg.oci("community/signed:1.0.0"),
        ],
    );
    assert_eq!(pulled.code, 0, "{}", pulled.text());
    assert!(
        pulled.stdout.contains(&format!(
            "signature: key {} (trusted by the policy)",
            k.id()
        )),
        "{}",
        pulled.stdout
    );
    let ran = mend_in(
        &f.path("b"),
        &["--policy", &policy, "run", &signed.display().to_string()],
    );
    assert_eq!(ran.code, 0, "{}", ran.text());

    let ran = mend_in(
        &f.path("c"),
        &["--policy", &policy, "run", &unsigned.display().to_string()],
    );
    assert_eq!(ran.code, 2, "{}", ran.text());
    assert!(
        ran.stderr.contains(&format!(
            "step `report`: no signature: the policy {policy} requires one, and {} has none",
            reg.oci("community/unsigned:1.0.0")
        )),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr.contains(&format!("(key id {})", k.id())),
        "{}",
        ran.stderr
    );

    let ran = mend_in(
        &f.path("d"),
        &["--policy", &policy, "run", &wrong.display().to_string()],
    );
    assert_eq!(ran.code, 2, "{}", ran.text());
    assert!(
        ran.stderr.contains(&format!(
            "step `report`: {} is signed by key {}, which the policy {policy} does not trust (trusted: {})",
            reg.oci("community/wrong:1.0.0"),
            l.id(),
            k.id()
        )),
        "{}",
        ran.stderr
    );

    // Offline, the kept signature still verifies.
    reg.stop();
    let ran = mend_in(
        &f.path("b"),
        &["--policy", &policy, "run", &signed.display().to_string()],
    );
    assert_eq!(ran.code, 0, "{}", ran.text());
}

const COMMENTED: &str = "# Weekly disk report for the Mastodon host.
[runbook]
name = \"disk-report\"   # shown in `mend history`
version = \"3\"
summary = \"Report what fills the disk\"

# The community step, reviewed 2026-10-02 by ops.
[[steps]]
id      = \"report\"
uses    = \"USES\"   # was a file until v2
sha256  = \"SHA\"
capabilities = CAPS  # reviewed

  [steps.with]
  path = \"media\"    # the grant's name
  top  = 20

# A second step pinned the same way must not change.
[[steps]]
id = \"other\"
uses = \"USES\"
sha256 = \"SHA\"
capabilities = CAPS

  [steps.with]
  path = \"other\"
";

#[test]
pub fn upgrade_shows_the_diff_and_rewrites_three_lines_only_on_confirmation() {
    let reg = Registry::start();
    let f = Fixture::new();
    let mut pins = Vec::new();
    for (guest_name, version) in [
        ("shared-1-0", "1.0.0"),
        ("shared-1-1", "1.1.0"),
        ("shared-1-2", "1.2.0"),
    ] {
        let (wasm, _) = guest_copy(&f, guest_name);
        let pushed = mend_in(
            &f.path("a"),
            &[
                "step",
                "push",
                &wasm.display().to_string(),
                &reg.oci(&format!("community/disk-report:{version}")),
            ],
        );
        assert_eq!(pushed.code, 0, "{}", pushed.text());
        pins.push(pin_lines(&pushed.stdout));
    }
    let field = |pins: &str, key: &str| -> String {
        let line = pins.lines().find(|l| l.starts_with(key)).unwrap();
        line.split_once(" = ").unwrap().1.to_string()
    };
    let fill = |p: &str| {
        COMMENTED
            .replace("\"USES\"", &field(p, "uses"))
            .replace("\"SHA\"", &field(p, "sha256"))
            .replace("CAPS", &field(p, "capabilities"))
    };
    let before = fill(&pins[0]);
    let rb = f.write("maintenance.toml", &before);
    let rb_s = rb.display().to_string();
    let b = f.path("b");

    let dry = mend_in(
        &b,
        &[
            "step",
            "upgrade",
            &rb_s,
            "report",
            "--to",
            "1.1.0",
            "--dry-run",
        ],
    );
    assert_eq!(dry.code, 0, "{}", dry.text());
    let old_sha = field(&pins[0], "sha256").trim_matches('"').to_string();
    let new_sha = field(&pins[1], "sha256").trim_matches('"').to_string();
    for expected in [
        format!(
            "report: {} 1.0.0 -> 1.1.0",
            reg.oci("community/disk-report")
        ),
        "capabilities  + wasi:clocks/monotonic-clock: reads the real clock".to_string(),
        "parameters    + depth (integer, default 3)".to_string(),
        "signature     key none -> none".to_string(),
        format!("sha256        {old_sha} -> {new_sha}"),
    ] {
        assert!(
            dry.stdout.contains(&expected),
            "{expected:?} in:\n{}",
            dry.stdout
        );
    }
    assert_eq!(std::fs::read_to_string(&rb).unwrap(), before);

    // No terminal and no --yes: nothing written, exit 2.
    let asked = mend_in(&b, &["step", "upgrade", &rb_s, "report", "--to", "1.1.0"]);
    assert_eq!(asked.code, 2, "{}", asked.text());
    assert!(
        asked
            .stderr
            .contains("was not rewritten: no terminal to confirm at"),
        "{}",
        asked.stderr
    );
    assert_eq!(std::fs::read_to_string(&rb).unwrap(), before);

    // 1.2.0 no longer takes `path`, which the step sets: refused, unchanged.
    let gone = mend_in(
        &b,
        &["step", "upgrade", &rb_s, "report", "--to", "1.2.0", "--yes"],
    );
    assert_eq!(gone.code, 2, "{}", gone.text());
    assert!(gone.stdout.contains("- path"), "{}", gone.stdout);
    assert!(
        gone.stderr.contains("not upgraded: step `report` sets `path` in its `with`, and disk-report 1.2.0 no longer takes it"),
        "{}",
        gone.stderr
    );
    assert_eq!(std::fs::read_to_string(&rb).unwrap(), before);

    // --yes: exactly the three lines change, each keeping its comment.
    let yes = mend_in(
        &b,
        &["step", "upgrade", &rb_s, "report", "--to", "1.1.0", "--yes"],
    );
    assert_eq!(yes.code, 0, "{}", yes.text());
    let after = std::fs::read_to_string(&rb).unwrap();
    assert_eq!(before.lines().count(), after.lines().count());
    let changed: Vec<(&str, &str)> = before
        .lines()
        .zip(after.lines())
        .filter(|(a, b)| a != b)
        .collect();
    let caps_1_1 = field(&pins[1], "capabilities");
    assert_eq!(
        changed,
        [
            (
                format!(
                    "uses    = {}   # was a file until v2",
                    field(&pins[0], "uses")
                )
                .as_str(),
                format!(
                    "uses    = {}   # was a file until v2",
                    field(&pins[1], "uses")
                )
                .as_str()
            ),
            (
                format!("sha256  = \"{old_sha}\"").as_str(),
                format!("sha256  = \"{new_sha}\"").as_str()
            ),
            (
                format!(
                    "capabilities = {}  # reviewed",
                    field(&pins[0], "capabilities")
                )
                .as_str(),
                format!("capabilities = {caps_1_1}  # reviewed").as_str()
            ),
        ]
    );
    assert!(
        caps_1_1.contains("wasi:clocks/monotonic-clock"),
        "{caps_1_1}"
    );
    // And the upgraded step runs.
    let ran = mend_in(&b, &["run", &rb_s]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    assert!(
        ran.text()
            .contains("disk-report 1.1.0: top 20 of media, depth 3"),
        "{}",
        ran.text()
    );
}

#[test]
fn a_pushed_artifact_is_a_valid_wasm_oci_artifact_and_one_written_by_hand_runs() {
    let reg = Registry::start();
    let f = Fixture::new();
    let (wasm, bytes) = guest_copy(&f, "shared-1-0");
    let pushed = mend_in(
        &f.path("a"),
        &[
            "step",
            "push",
            &wasm.display().to_string(),
            &reg.oci("community/disk-report:1.0.0"),
        ],
    );
    assert_eq!(pushed.code, 0, "{}", pushed.text());
    // The manifest and config as the Wasm OCI Artifact layout specifies.
    let (status, _, body) = http(
        reg.port,
        "GET",
        "/v2/community/disk-report/manifests/1.0.0",
        &[("Accept", "application/vnd.oci.image.manifest.v1+json")],
        b"",
    )
    .unwrap();
    assert_eq!(status, 200);
    let m: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(m["schemaVersion"], 2);
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.wasm.config.v0+json"
    );
    let layers = m["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    assert_eq!(layers[0]["mediaType"], "application/wasm");
    assert_eq!(layers[0]["digest"], sha256(&bytes));
    assert_eq!(layers[0]["size"], bytes.len());
    assert_eq!(
        m["annotations"]["org.opencontainers.image.version"],
        "1.0.0"
    );
    assert_eq!(
        m["annotations"]["org.opencontainers.image.title"],
        "disk-report"
    );
    let config_digest = m["config"]["digest"].as_str().unwrap();
    let (status, _, config) = http(
        reg.port,
        "GET",
        &format!("/v2/community/disk-report/blobs/{config_digest}"),
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(status, 200);
    assert_eq!(sha256(&config), config_digest);
    let c: serde_json::Value = serde_json::from_slice(&config).unwrap();
    assert_eq!(c["architecture"], "wasm");
    assert_eq!(c["os"], "wasip2");
    assert_eq!(c["layerDigests"], serde_json::json!([sha256(&bytes)]));
    let inspect = mend_in(
        &f.path("a"),
        &["--json", "step", "inspect", &wasm.display().to_string()],
    );
    assert_eq!(inspect.code, 0, "{}", inspect.text());
    let inspect: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
    assert_eq!(c["component"]["imports"], inspect["imports"]);

    // Written by another writer (the layout by hand): pulled, pinned, run.
    raw_push(reg.port, "community/by-hand", "1.0.0", &bytes);
    let pulled = mend_in(
        &f.path("b"),
        &["step", "pull", &reg.oci("community/by-hand:1.0.0")],
    );
    assert_eq!(pulled.code, 0, "{}", pulled.text());
    let rb = runbook(&f, "rb.toml", &pin_lines(&pulled.stdout));
    let ran = mend_in(&f.path("b"), &["run", &rb.display().to_string()]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    assert!(
        ran.text().contains("disk-report 1.0.0: top 20 of media"),
        "{}",
        ran.text()
    );

    // And a reviewer's view of it.
    let seen = mend_in(
        &f.path("b"),
        &["step", "inspect", &reg.oci("community/disk-report:1.0.0")],
    );
    assert_eq!(seen.code, 0, "{}", seen.text());
    for expected in [
        "  org.opencontainers.image.title: disk-report".to_string(),
        "  signature: none".to_string(),
        format!(
            "pin it in a runbook's step: uses = \"{}\" and sha256",
            reg.oci("community/disk-report:1.0.0")
        ),
        "disk-report 1.0.0: Report what fills the disk".to_string(),
    ] {
        assert!(
            seen.stdout.contains(&expected),
            "{expected:?} in:\n{}",
            seen.stdout
        );
    }
}

#[test]
fn credentials_come_from_docker_config() {
    // htpasswd -Bbn mend s3cret
    let reg = Registry::start_as(Some(
        "mend:$2y$05$a5Cx0MA3Fbh6IUALyGwwvOJDiWzmNXO/ncs025DLLqLppyFWzFucO",
    ));
    let f = Fixture::new();
    let (wasm, _) = guest_copy(&f, "shared-1-0");
    let wasm = wasm.display().to_string();
    let target = reg.oci("community/disk-report:1.0.0");
    let push = |docker: &str| {
        mend_docker(
            &f.path("a"),
            &shared_cache(),
            &f.path(docker),
            &["step", "push", &wasm, &target],
        )
    };
    let none = push("none");
    assert_eq!(none.code, 2, "{}", none.text());
    assert!(
        none.stderr.contains(&format!(
            "the registry {} refused access: it wants credentials: `docker login`",
            reg.host()
        )),
        "{}",
        none.stderr
    );
    // An old-style key, as `docker login` once wrote it.
    f.write(
        "wrong/config.json",
        &format!(
            r#"{{"auths":{{"https://{}/v1/":{{"auth":"bWVuZDpub3BlCg=="}}}}}}"#,
            reg.host()
        ),
    );
    let wrong = push("wrong");
    assert_eq!(wrong.code, 2, "{}", wrong.text());
    assert!(
        wrong
            .stderr
            .contains("the credentials from Docker's config.json were refused"),
        "{}",
        wrong.stderr
    );
    // base64 of mend:s3cret
    f.write(
        "right/config.json",
        &format!(
            r#"{{"auths":{{"{}":{{"auth":"bWVuZDpzM2NyZXQ="}}}}}}"#,
            reg.host()
        ),
    );
    let right = push("right");
    assert_eq!(right.code, 0, "{}", right.text());
}
