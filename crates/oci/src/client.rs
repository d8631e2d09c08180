//! One repository on one registry: the distribution API's blob and
//! manifest endpoints, every byte checked against its digest. Plain HTTP
//! only for a registry on this machine.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;

use crate::artifact::{self, ComponentInfo, Descriptor, MANIFEST, Manifest, WasmConfig};
use crate::auth::{self, Credentials};
use crate::error::{Error, Result};
use crate::{Reference, sha256};

/// The largest component mend uploads or downloads (monolithic uploads).
pub const MAX_COMPONENT: u64 = 64 << 20;

pub struct Client {
    agent: ureq::Agent,
    base: String,
    pub registry: String,
    pub repository: String,
    credentials: Option<Credentials>,
    /// The Authorization header that worked last (Basic or Bearer).
    authorization: Mutex<Option<String>>,
    push: bool,
}

pub struct Options {
    /// Plain HTTP; refused unless the registry is on the loopback.
    pub insecure: bool,
    pub credentials: Option<Credentials>,
    pub timeout: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            insecure: false,
            credentials: None,
            timeout: Duration::from_secs(60),
        }
    }
}

/// What a push left on the registry.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub manifest: Descriptor,
    pub component_sha256: String,
}

/// A pulled component.
#[derive(Debug)]
pub struct Pulled {
    pub manifest_digest: String,
    pub manifest_bytes: Vec<u8>,
    pub manifest: Manifest,
    pub config_bytes: Vec<u8>,
    pub config: WasmConfig,
    pub wasm: Vec<u8>,
}

type Response = ureq::http::Response<ureq::Body>;

impl Client {
    /// A client for `r`'s repository; `push` asks tokens for push too.
    /// Credentials: `o.credentials`, else Docker's config.
    pub fn new(r: &Reference, push: bool, mut o: Options) -> Result<Client> {
        if o.insecure && !r.is_loopback() {
            return Err(Error::Invalid(format!(
                "--insecure (plain HTTP) is only for a registry on this machine (127.0.0.1, ::1, localhost), not {}",
                r.registry
            )));
        }
        if o.credentials.is_none() {
            o.credentials = auth::docker_credentials(&r.registry).map_err(Error::Invalid)?;
        }
        let scheme = if o.insecure { "http" } else { "https" };
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::PlatformVerifier)
            .build();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(o.timeout))
            .tls_config(tls)
            .user_agent(concat!("mend/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(Client {
            agent,
            base: format!("{scheme}://{}", r.registry),
            registry: r.registry.clone(),
            repository: r.repository.clone(),
            credentials: o.credentials,
            authorization: Mutex::new(None),
            push,
        })
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{path}", self.base, self.repository)
    }

    /// One request; on 401, answer the challenge and retry once.
    pub(crate) fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response> {
        let mut retried = false;
        loop {
            let mut b = ureq::http::Request::builder().method(method).uri(url);
            for (k, v) in headers {
                b = b.header(*k, *v);
            }
            if let Some(a) = self.authorization.lock().expect("not poisoned").as_deref() {
                b = b.header("Authorization", a);
            }
            let req = b
                .body(body.to_vec())
                .map_err(|e| Error::Invalid(e.to_string()))?;
            let resp = self.agent.run(req).map_err(|e| self.transport(e))?;
            if resp.status() != 401 {
                return Ok(resp);
            }
            if retried {
                return Err(self.denied());
            }
            let header = resp
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let answer = self.answer(&header)?;
            *self.authorization.lock().expect("not poisoned") = Some(answer);
            retried = true;
        }
    }

    fn denied(&self) -> Error {
        Error::Denied {
            registry: self.registry.clone(),
            why: if self.credentials.is_some() {
                "the credentials from Docker's config.json were refused".into()
            } else {
                "it wants credentials: `docker login` (or write them to $DOCKER_CONFIG/config.json)"
                    .into()
            },
        }
    }

    fn transport(&self, e: ureq::Error) -> Error {
        let why = match &e {
            ureq::Error::Io(io) => io.to_string(),
            ureq::Error::HostNotFound => "host not found".into(),
            ureq::Error::Timeout(t) => format!("timed out ({t})"),
            other => other.to_string(),
        };
        if why.contains("certificate") || why.contains("UnknownIssuer") {
            return Error::Untrusted {
                registry: self.registry.clone(),
                why,
            };
        }
        Error::Unreachable {
            registry: self.registry.clone(),
            why,
        }
    }

    /// The Authorization header that answers `header`.
    fn answer(&self, header: &str) -> Result<String> {
        let (scheme, params) = auth::challenge(header);
        match scheme.as_str() {
            "basic" => match &self.credentials {
                Some(c) => Ok(auth::basic(c)),
                None => Err(self.denied()),
            },
            "bearer" => {
                let realm = params.get("realm").ok_or_else(|| {
                    Error::Invalid(format!("a Bearer challenge without realm: {header}"))
                })?;
                let actions = if self.push { "pull,push" } else { "pull" };
                let scope = format!("repository:{}:{actions}", self.repository);
                let mut url = format!(
                    "{realm}?scope={}",
                    scope.replace(':', "%3A").replace(',', "%2C")
                );
                if let Some(s) = params.get("service") {
                    url.push_str(&format!("&service={s}"));
                }
                let mut b = ureq::http::Request::builder().uri(&url);
                if let Some(c) = &self.credentials {
                    b = b.header("Authorization", auth::basic(c));
                }
                let req = b.body(()).map_err(|e| Error::Invalid(e.to_string()))?;
                let mut resp = self.agent.run(req).map_err(|e| self.transport(e))?;
                if resp.status() == 401 || resp.status() == 403 {
                    return Err(self.denied());
                }
                if resp.status() != 200 {
                    return Err(Error::Denied {
                        registry: self.registry.clone(),
                        why: format!("its token service {realm} answered {}", resp.status()),
                    });
                }
                #[derive(Deserialize)]
                struct Token {
                    token: Option<String>,
                    access_token: Option<String>,
                }
                let body = self.read(&mut resp, 1 << 20)?;
                let t: Token = serde_json::from_slice(&body)
                    .map_err(|e| Error::Invalid(format!("token from {realm}: {e}")))?;
                let t = t
                    .token
                    .or(t.access_token)
                    .ok_or_else(|| Error::Invalid(format!("{realm} gave no token")))?;
                Ok(format!("Bearer {t}"))
            }
            _ => Err(Error::Invalid(format!(
                "the registry {} asks for an authentication mend does not know: `{header}`",
                self.registry
            ))),
        }
    }

    pub(crate) fn check(&self, what: &str, mut resp: Response, ok: &[u16]) -> Result<Response> {
        let status = resp.status().as_u16();
        if ok.contains(&status) {
            return Ok(resp);
        }
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        let body: String = body.trim().chars().take(300).collect();
        if status == 404 {
            return Err(Error::NotFound(format!(
                "{what}: not found on {} ({body})",
                self.registry
            )));
        }
        if status == 403 {
            return Err(Error::Denied {
                registry: self.registry.clone(),
                why: format!("{what}: 403 {body}"),
            });
        }
        Err(Error::Registry {
            what: what.into(),
            status,
            body,
        })
    }

    pub(crate) fn read(&self, resp: &mut Response, limit: u64) -> Result<Vec<u8>> {
        resp.body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|e| self.transport(e))
    }

    /// Upload a blob unless the registry has it (monolithic POST + PUT).
    pub fn push_blob(&self, bytes: &[u8]) -> Result<String> {
        let digest = sha256(bytes);
        let head = self.send("HEAD", &self.url(&format!("blobs/{digest}")), &[], &[])?;
        if head.status() == 200 {
            return Ok(digest);
        }
        let resp = self.send("POST", &self.url("blobs/uploads/"), &[], &[])?;
        let resp = self.check("start an upload", resp, &[202])?;
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                Error::Invalid("the registry started an upload without a Location".into())
            })?;
        let mut url = if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            location.to_string()
        };
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&format!("digest={digest}"));
        let resp = self.send(
            "PUT",
            &url,
            &[("Content-Type", "application/octet-stream")],
            bytes,
        )?;
        self.check("upload a blob", resp, &[201])?;
        Ok(digest)
    }

    /// Put a manifest under `reference` (tag or digest): its descriptor and
    /// the `OCI-Subject` header, which says the registry indexed a referrer.
    pub fn put_manifest(
        &self,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<(Descriptor, Option<String>)> {
        let resp = self.send(
            "PUT",
            &self.url(&format!("manifests/{reference}")),
            &[("Content-Type", media_type)],
            bytes,
        )?;
        let resp = self.check("push a manifest", resp, &[201])?;
        let d = Descriptor::of(media_type, bytes);
        if let Some(h) = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            && h != d.digest
        {
            return Err(Error::Invalid(format!(
                "the registry stored the manifest as {h}, not {}",
                d.digest
            )));
        }
        let subject = resp
            .headers()
            .get("oci-subject")
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        Ok((d, subject))
    }

    /// A manifest (or index) by tag or digest, its bytes checked against the
    /// digest: the one asked for, else the one the registry says.
    pub fn get_manifest(&self, reference: &str, accept: &str) -> Result<(String, Vec<u8>)> {
        let resp = self.send(
            "GET",
            &self.url(&format!("manifests/{reference}")),
            &[("Accept", accept)],
            &[],
        )?;
        let what = format!("{}:{reference}", self.repository);
        let mut resp = self.check(&what, resp, &[200])?;
        let header = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let bytes = self.read(&mut resp, 4 << 20)?;
        let digest = sha256(&bytes);
        let expected = if reference.starts_with("sha256:") {
            Some(reference.to_string())
        } else {
            header
        };
        if let Some(e) = expected
            && e != digest
        {
            return Err(Error::Invalid(format!(
                "manifest {reference}: its bytes hash to {digest}, not {e}"
            )));
        }
        Ok((digest, bytes))
    }

    /// A blob, checked against its descriptor's size and digest.
    pub fn get_blob(&self, d: &Descriptor, limit: u64) -> Result<Vec<u8>> {
        if d.size > limit {
            return Err(Error::Invalid(format!(
                "blob {} is {} bytes, more than {limit}",
                d.digest, d.size
            )));
        }
        let resp = self.send("GET", &self.url(&format!("blobs/{}", d.digest)), &[], &[])?;
        let mut resp = self.check(&format!("blob {}", d.digest), resp, &[200])?;
        let bytes = self.read(&mut resp, d.size + 1)?;
        if bytes.len() as u64 != d.size || sha256(&bytes) != d.digest {
            return Err(Error::Invalid(format!(
                "blob {} from {}: {} bytes hashing to {}, not what its manifest says",
                d.digest,
                self.registry,
                bytes.len(),
                sha256(&bytes)
            )));
        }
        Ok(bytes)
    }

    /// The digest of the component `tag` holds now, if the tag exists.
    pub fn component_at(&self, tag: &str) -> Result<Option<(String, String)>> {
        match self.get_manifest(tag, MANIFEST) {
            Ok((digest, bytes)) => {
                let m = artifact::parse_component_manifest(tag, &bytes)?;
                Ok(Some((digest, m.layers[0].digest.clone())))
            }
            Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Push a component as a Wasm OCI artifact under `tag`.
    pub fn push_component(
        &self,
        tag: &str,
        wasm: &[u8],
        component: ComponentInfo,
        annotations: BTreeMap<String, String>,
        created: &str,
    ) -> Result<Pushed> {
        if wasm.len() as u64 > MAX_COMPONENT {
            return Err(Error::Invalid(format!(
                "the component is {} bytes; mend uploads at most {MAX_COMPONENT}",
                wasm.len()
            )));
        }
        let (config_bytes, manifest) =
            artifact::component_manifest(wasm, component, annotations, created);
        self.push_blob(&config_bytes)?;
        self.push_blob(wasm)?;
        let bytes = serde_json::to_vec(&manifest).expect("a manifest serializes");
        let (d, _) = self.put_manifest(tag, MANIFEST, &bytes)?;
        Ok(Pushed {
            manifest: d,
            component_sha256: manifest.layers[0].digest.clone(),
        })
    }

    /// Resolve `r` to its manifest and check that it is a Wasm component
    /// artifact; with `pin`, refuse a layer of other bytes before
    /// downloading it.
    pub fn resolve(&self, r: &Reference, pin: Option<&str>) -> Result<(String, Vec<u8>, Manifest)> {
        let (digest, bytes) = self.get_manifest(r.reference(), MANIFEST)?;
        let m = artifact::parse_component_manifest(&r.to_string(), &bytes)?;
        if let Some(pin) = pin {
            let pinned = crate::digest_of_pin(pin);
            if m.layers[0].digest != pinned {
                return Err(Error::PinMismatch {
                    reference: r.to_string(),
                    pinned,
                    found: m.layers[0].digest.clone(),
                    manifest: digest,
                });
            }
        }
        Ok((digest, bytes, m))
    }

    /// The component `r` names, with its manifest and config.
    pub fn pull_component(&self, r: &Reference, pin: Option<&str>) -> Result<Pulled> {
        let (manifest_digest, manifest_bytes, manifest) = self.resolve(r, pin)?;
        let config_bytes = self.get_blob(&manifest.config, 1 << 20)?;
        let config = artifact::parse_config(&r.to_string(), &manifest, &config_bytes)?;
        let wasm = self.get_blob(&manifest.layers[0], MAX_COMPONENT)?;
        Ok(Pulled {
            manifest_digest,
            manifest_bytes,
            manifest,
            config_bytes,
            config,
            wasm,
        })
    }

    /// The repository's tags.
    pub fn tags(&self) -> Result<Vec<String>> {
        let resp = self.send("GET", &self.url("tags/list"), &[], &[])?;
        let mut resp = self.check("list tags", resp, &[200])?;
        #[derive(Deserialize)]
        struct Tags {
            tags: Option<Vec<String>>,
        }
        let t: Tags = serde_json::from_slice(&self.read(&mut resp, 4 << 20)?)
            .map_err(|e| Error::Invalid(e.to_string()))?;
        Ok(t.tags.unwrap_or_default())
    }
}
