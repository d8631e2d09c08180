//! `${param}` interpolation. `$$` is a literal `$`; a `$` followed by
//! anything other than `{` or `$` is kept as is.

use std::collections::BTreeMap;

#[derive(Debug, PartialEq, Eq)]
pub enum InterpolateError {
    /// `${name}` where `name` is not a declared param.
    Unknown(String),
    /// `${` without a closing `}`.
    Unterminated,
}

/// Replace every `${name}` in `s` with the param's value. A declared param
/// without a value (`None`, already reported elsewhere) becomes "".
pub fn interpolate(
    s: &str,
    params: &BTreeMap<String, Option<String>>,
) -> Result<String, InterpolateError> {
    interpolate_with(s, params, str::to_string)
}

/// [`interpolate`], passing each param's value through `quote` (for glob
/// patterns, so that a value is matched literally).
pub fn interpolate_with(
    s: &str,
    params: &BTreeMap<String, Option<String>>,
    quote: impl Fn(&str) -> String,
) -> Result<String, InterpolateError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let close = tail.find('}').ok_or(InterpolateError::Unterminated)?;
            let name = &tail[..close];
            match params.get(name) {
                Some(value) => out.push_str(&quote(value.as_deref().unwrap_or(""))),
                None => return Err(InterpolateError::Unknown(name.to_string())),
            }
            rest = &tail[close + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> BTreeMap<String, Option<String>> {
        BTreeMap::from([
            ("root".to_string(), Some("/srv".to_string())),
            ("days".to_string(), Some("7".to_string())),
            ("db".to_string(), None),
        ])
    }

    #[test]
    fn substitutes_and_escapes() {
        let p = params();
        assert_eq!(interpolate("${root}/x", &p).unwrap(), "/srv/x");
        assert_eq!(interpolate("${days}${days}", &p).unwrap(), "77");
        assert_eq!(interpolate("cost $$5", &p).unwrap(), "cost $5");
        assert_eq!(interpolate("$${root}", &p).unwrap(), "${root}");
        assert_eq!(interpolate("$$$${root}", &p).unwrap(), "$${root}");
        assert_eq!(interpolate("a$b $", &p).unwrap(), "a$b $");
        assert_eq!(interpolate("[${db}]", &p).unwrap(), "[]");
        assert_eq!(interpolate("plain", &p).unwrap(), "plain");
        assert_eq!(interpolate("é${root}ü", &p).unwrap(), "é/srvü");
    }

    #[test]
    fn errors() {
        let p = params();
        assert_eq!(
            interpolate("${nope}", &p),
            Err(InterpolateError::Unknown("nope".into()))
        );
        assert_eq!(
            interpolate("${}", &p),
            Err(InterpolateError::Unknown(String::new()))
        );
        assert_eq!(
            interpolate("${root", &p),
            Err(InterpolateError::Unterminated)
        );
    }
}
