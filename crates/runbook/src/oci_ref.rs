//! `oci://REGISTRY/NAMESPACE/NAME:VERSION[@sha256:MANIFEST]`: where a
//! community step is published. Parsed here, beside the rest of `uses`, so
//! a runbook is checked without any network code; `mend-oci` fetches it.

/// A reference to a step on an OCI registry. The registry is always
/// written: there is no Docker Hub default, a step's origin is never implicit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OciRef {
    /// `host` or `host:port` (`[::1]:5000` for IPv6).
    pub registry: String,
    /// `namespace/name`, lowercase, as the distribution spec allows.
    pub repository: String,
    pub tag: Option<String>,
    /// A manifest digest (`sha256:…`), which fixes the manifest too.
    pub digest: Option<String>,
}

impl OciRef {
    pub fn parse(s: &str) -> Result<OciRef, String> {
        let rest = s
            .strip_prefix("oci://")
            .ok_or_else(|| format!("`{s}` is not an oci:// reference"))?;
        let (registry, path) = rest.split_once('/').ok_or_else(|| {
            format!("`{s}` names no repository: write oci://REGISTRY/NAMESPACE/NAME:VERSION")
        })?;
        let (path, digest) = match path.split_once('@') {
            Some((p, d)) => (p, Some(d.to_string())),
            None => (path, None),
        };
        let (repository, tag) = match path.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r, Some(t.to_string())),
            _ => (path, None),
        };
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        };
        if registry.is_empty()
            || !registry
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        {
            return Err(format!("`{s}`: `{registry}` is not a registry host[:port]"));
        }
        if repository.is_empty() || !repository.split('/').all(component_ok) {
            return Err(format!(
                "`{s}`: a repository is lowercase letters, digits, `._-` and `/`"
            ));
        }
        if let Some(t) = &tag
            && (t.is_empty()
                || t.len() > 128
                || !t
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)))
        {
            return Err(format!("`{s}`: `{t}` is not a valid tag"));
        }
        if let Some(d) = &digest
            && !(d.len() == 71
                && d.starts_with("sha256:")
                && d[7..]
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        {
            return Err(format!("`{s}`: `{d}` is not a sha256 digest"));
        }
        if tag.is_none() && digest.is_none() {
            return Err(format!("`{s}` names no version: add :VERSION"));
        }
        Ok(OciRef {
            registry: registry.into(),
            repository: repository.into(),
            tag,
            digest,
        })
    }

    /// What to ask the registry for: the digest when there is one.
    pub fn reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .expect("parse requires a tag or a digest")
    }

    /// 127.0.0.0/8, ::1 or localhost: the only hosts plain HTTP may reach.
    pub fn is_loopback(&self) -> bool {
        let host = match self.registry.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => self.registry.split(':').next().unwrap_or(""),
        };
        host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    /// The same repository at another tag.
    pub fn with_tag(&self, tag: &str) -> OciRef {
        OciRef {
            tag: Some(tag.into()),
            digest: None,
            ..self.clone()
        }
    }

    /// The reference without tag or digest: `oci://REGISTRY/REPOSITORY`.
    pub fn repository_url(&self) -> String {
        format!("oci://{}/{}", self.registry, self.repository)
    }
}

impl std::fmt::Display for OciRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "oci://{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_and_print_back() {
        let r = OciRef::parse("oci://127.0.0.1:5000/community/disk-report:1.0.0").unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "community/disk-report");
        assert_eq!(r.tag.as_deref(), Some("1.0.0"));
        assert!(r.is_loopback());
        assert_eq!(
            r.to_string(),
            "oci://127.0.0.1:5000/community/disk-report:1.0.0"
        );
        let d = format!("sha256:{}", "a".repeat(64));
        let r = OciRef::parse(&format!("oci://ghcr.io/alice/x:1.0.0@{d}")).unwrap();
        assert_eq!(r.reference(), d);
        assert!(!r.is_loopback());
        assert!(
            OciRef::parse("oci://[::1]:5000/a/b:1")
                .unwrap()
                .is_loopback()
        );
        for bad in [
            "ghcr.io/a/b:1",
            "oci://ghcr.io",
            "oci://ghcr.io/a/b",
            "oci://ghcr.io/A/b:1",
            "oci://ghcr.io/a/b:1@sha256:zz",
            "oci://ghcr.io/a//b:1",
        ] {
            assert!(OciRef::parse(bad).is_err(), "{bad}");
        }
    }
}
