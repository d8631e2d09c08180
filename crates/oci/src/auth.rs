//! Credentials the way other OCI tools find them: Docker's config.json
//! (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`), its
//! `auths` and credential helpers; and the answer to a registry's
//! `WWW-Authenticate` challenge (Basic, or a Bearer token per scope).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

/// A user name and password (or token) for one registry.
pub type Credentials = (String, String);

/// Credentials for `registry` from Docker's config. `Ok(None)`: anonymous.
pub fn docker_credentials(registry: &str) -> Result<Option<Credentials>, String> {
    let dir = match std::env::var_os("DOCKER_CONFIG") {
        Some(d) => PathBuf::from(d),
        None => match std::env::var_os("HOME") {
            Some(h) => Path::new(&h).join(".docker"),
            None => return Ok(None),
        },
    };
    let file = dir.join("config.json");
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", file.display())),
    };
    from_config(&file, &text, registry)
}

#[derive(Deserialize, Default)]
struct Config {
    #[serde(default)]
    auths: BTreeMap<String, Auth>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
    #[serde(rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Deserialize, Default)]
struct Auth {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

fn from_config(file: &Path, text: &str, registry: &str) -> Result<Option<Credentials>, String> {
    let f = file.display();
    let config: Config =
        serde_json::from_str(text).map_err(|e| format!("{f} is not Docker's config.json: {e}"))?;
    // Keys are hosts, or URLs as `docker login` of old wrote them.
    let host_of = |k: &str| -> String {
        let k = k
            .strip_prefix("https://")
            .or_else(|| k.strip_prefix("http://"))
            .unwrap_or(k);
        k.split('/').next().unwrap_or(k).to_string()
    };
    if let Some(helper) = config
        .cred_helpers
        .get(registry)
        .or(config.creds_store.as_ref())
        && let Some(c) = credential_helper(helper, registry)?
    {
        return Ok(Some(c));
    }
    for (key, a) in &config.auths {
        if host_of(key) != registry {
            continue;
        }
        if let Some(b64) = &a.auth
            && !b64.is_empty()
        {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|e| format!("{f}: auths.\"{key}\".auth is not base64: {e}"))?;
            let raw = String::from_utf8(raw)
                .map_err(|_| format!("{f}: auths.\"{key}\".auth is not UTF-8"))?;
            let (u, p) = raw.split_once(':').ok_or_else(|| {
                format!("{f}: auths.\"{key}\".auth is not base64 of user:password")
            })?;
            return Ok(Some((u.into(), p.into())));
        }
        if let (Some(u), Some(p)) = (&a.username, &a.password) {
            return Ok(Some((u.clone(), p.clone())));
        }
    }
    Ok(None)
}

/// `docker-credential-NAME get`, the registry on its stdin.
fn credential_helper(helper: &str, registry: &str) -> Result<Option<Credentials>, String> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let program = format!("docker-credential-{helper}");
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            format!("Docker's config names the credential helper {program}, which cannot run: {e}")
        })?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(registry.as_bytes())
        .map_err(|e| format!("{program} get: {e}"))?;
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{program} get: {e}"))?;
    if !out.status.success() {
        return Ok(None); // "credentials not found": anonymous
    }
    #[derive(Deserialize)]
    struct Helper {
        #[serde(rename = "Username")]
        username: String,
        #[serde(rename = "Secret")]
        secret: String,
    }
    let h: Helper =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("{program} get: {e}"))?;
    Ok(Some((h.username, h.secret)))
}

/// `Basic base64(user:password)`.
pub fn basic((u, p): &Credentials) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
    )
}

/// The scheme and parameters of a `WWW-Authenticate` header:
/// `Bearer realm="…",service="…"` (quoted values may hold commas).
pub fn challenge(header: &str) -> (String, BTreeMap<String, String>) {
    let (scheme, params) = header.split_once(' ').unwrap_or((header, ""));
    let mut out = BTreeMap::new();
    let mut rest = params.trim();
    while let Some((k, v)) = rest.split_once('=') {
        let k = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let v = v.trim_start();
        let (value, after) = if let Some(q) = v.strip_prefix('"') {
            let end = q.find('"').unwrap_or(q.len());
            (&q[..end], &q[(end + 1).min(q.len())..])
        } else {
            let end = v.find(',').unwrap_or(v.len());
            (&v[..end], &v[end..])
        };
        out.insert(k, value.to_string());
        rest = after.trim_start_matches(',').trim();
    }
    (scheme.to_ascii_lowercase(), out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_config_keys_may_be_hosts_or_old_urls() {
        let f = Path::new("config.json");
        let text = r#"{"auths":{"https://127.0.0.1:5000/v1/":{"auth":"bWVuZDpzM2NyZXQ="},"ghcr.io":{"username":"a","password":"b"}}}"#;
        assert_eq!(
            from_config(f, text, "127.0.0.1:5000").unwrap(),
            Some(("mend".into(), "s3cret".into()))
        );
        assert_eq!(
            from_config(f, text, "ghcr.io").unwrap(),
            Some(("a".into(), "b".into()))
        );
        assert_eq!(from_config(f, text, "quay.io").unwrap(), None);
        let e = from_config(f, r#"{"auths":{"x":{"auth":"!!"}}}"#, "x").unwrap_err();
        assert!(e.contains("auths.\"x\".auth is not base64"), "{e}");
    }

    #[test]
    fn challenges_keep_commas_inside_quotes() {
        let (s, p) = challenge(
            r#"Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(s, "bearer");
        assert_eq!(p["realm"], "https://auth.example/token");
        assert_eq!(p["scope"], "repository:a/b:pull,push");
    }
}
