//! Expected digests, `[ALGORITHM:]HEX`: refused when the algorithm is unfit to
//! show that a file is intact (MD5, SHA-1) or when the digest cannot be one of
//! its algorithm, with a message that says what it looks like instead.

use mend_sdk::Algorithm;

/// A digest the runbook expects, its hex in lowercase.
#[derive(Clone, Debug, PartialEq)]
pub struct Expected {
    /// How to hash the file.
    pub algorithm: Algorithm,
    /// The digest, lowercase hex of the algorithm's length.
    pub hex: String,
}

/// Why a digest or an algorithm name is refused.
#[derive(Debug)]
pub struct Refusal {
    /// What is wrong (the caller names the file).
    pub message: String,
    /// What to do instead.
    pub hint: String,
    /// Whether the text is recognisably a digest (an algorithm prefix or tag
    /// mend knows, or hex of a common digest length). A list line with such a
    /// digest is refused; any other bad line only counts as improperly formatted.
    pub plausible: bool,
}

const USE_SHA256: &str = "use the file's sha256 digest, as publishers list it in SHA256SUMS: `sha256:` and 64 hex digits";

/// The lowercase name of an algorithm, as runbooks write it.
pub fn name(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::Sha256 => "sha256",
        Algorithm::Sha512 => "sha512",
        Algorithm::Blake3 => "blake3",
    }
}

fn hex_len(algorithm: Algorithm) -> usize {
    match algorithm {
        Algorithm::Sha512 => 128,
        Algorithm::Sha256 | Algorithm::Blake3 => 64,
    }
}

/// An algorithm by name (`sha256`, `SHA-512`, ...). MD5 and SHA-1 are refused.
pub fn algorithm(text: &str) -> Result<Algorithm, Refusal> {
    let key: String = text
        .chars()
        .filter(|c| !matches!(c, '-' | '_'))
        .collect::<String>()
        .to_ascii_lowercase();
    let unfit = |what: &str, why: &str| Refusal {
        message: format!("{what} digests are unfit to verify files: {why}"),
        hint: USE_SHA256.to_string(),
        plausible: true,
    };
    match key.as_str() {
        "sha256" => Ok(Algorithm::Sha256),
        "sha512" => Ok(Algorithm::Sha512),
        "blake3" => Ok(Algorithm::Blake3),
        "md5" => Err(unfit("MD5", "anyone can make two files with the same MD5")),
        "sha1" => Err(unfit("SHA-1", "SHA-1 collisions have been made since 2017")),
        _ => Err(Refusal {
            message: format!("unknown digest algorithm `{text}`"),
            hint: "mend checks sha256, sha512 and blake3 digests".to_string(),
            plausible: false,
        }),
    }
}

/// Parse an expected digest. `forced` is the `algorithm` parameter: the
/// algorithm of a digest without a prefix, and one a prefix must agree with.
pub fn parse(text: &str, forced: Option<Algorithm>) -> Result<Expected, Refusal> {
    let text = text.trim();
    let (algorithm, hex) = match text.split_once(':') {
        Some((prefix, hex)) => {
            let algorithm = algorithm(prefix)?;
            if let Some(f) = forced.filter(|f| *f != algorithm) {
                return Err(Refusal {
                    message: format!(
                        "the digest is marked {} but `algorithm` is {}",
                        name(algorithm),
                        name(f)
                    ),
                    hint: "drop the prefix or the `algorithm` parameter: a file is checked with one algorithm".to_string(),
                    plausible: true,
                });
            }
            (algorithm, hex.trim())
        }
        None => (forced.unwrap_or(Algorithm::Sha256), text),
    };
    let (algo, want) = (name(algorithm), hex_len(algorithm));
    let copy_hint =
        format!("copy the {algo} digest as the publisher prints it: {want} hex digits (0-9, a-f)");
    if hex.is_empty() {
        return Err(Refusal {
            message: "the expected digest is empty".to_string(),
            hint: copy_hint,
            plausible: false,
        });
    }
    let mut odd: Vec<char> = Vec::new();
    for c in hex.chars().filter(|c| !c.is_ascii_hexdigit()) {
        if !odd.contains(&c) {
            odd.push(c);
        }
    }
    if !odd.is_empty() {
        let named: Vec<String> = odd.iter().take(5).map(|c| format!("{c:?}")).collect();
        return Err(Refusal {
            message: format!(
                "the digest has characters that are not hex digits ({}); {algo} digests are {want} hex digits",
                named.join(", ")
            ),
            hint: copy_hint,
            plausible: false,
        });
    }
    let n = hex.len();
    if n != want {
        let looks = match n {
            32 => ", the length of an MD5 digest",
            40 => ", the length of a SHA-1 digest",
            64 => ", the length of a SHA-256 or BLAKE3 digest",
            128 => ", the length of a SHA-512 digest",
            _ => "",
        };
        let digits = if n == 1 { "digit" } else { "digits" };
        let hint = match n {
            32 | 40 => USE_SHA256.to_string(),
            64 | 128 => {
                let other = if n == 64 { "sha256" } else { "sha512" };
                format!(
                    "{copy_hint}; if this is a {other} digest, write `{other}:` before it, or set `algorithm = \"{other}\"` for a whole list"
                )
            }
            _ => copy_hint,
        };
        return Err(Refusal {
            message: format!("this is {n} hex {digits}{looks}; {algo} digests have {want}"),
            hint,
            plausible: !looks.is_empty(),
        });
    }
    Ok(Expected {
        algorithm,
        hex: hex.to_ascii_lowercase(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_and_case() {
        let e = parse(&format!(" SHA512:{} ", "AB".repeat(64)), None).unwrap();
        assert_eq!(e.algorithm, Algorithm::Sha512);
        assert_eq!(e.hex, "ab".repeat(64));
        let e = parse(&"0".repeat(64), Some(Algorithm::Blake3)).unwrap();
        assert_eq!(e.algorithm, Algorithm::Blake3);
        assert_eq!(
            parse(&"0".repeat(64), None).unwrap().algorithm,
            Algorithm::Sha256
        );
    }

    #[test]
    fn refusals_say_what_it_looks_like() {
        let msg = |t: &str, f| parse(t, f).unwrap_err().message;
        assert_eq!(
            msg(&"a".repeat(40), None),
            "this is 40 hex digits, the length of a SHA-1 digest; sha256 digests have 64"
        );
        assert_eq!(
            msg(&"a".repeat(64), Some(Algorithm::Sha512)),
            "this is 64 hex digits, the length of a SHA-256 or BLAKE3 digest; sha512 digests have 128"
        );
        assert_eq!(
            msg("abc", None),
            "this is 3 hex digits; sha256 digests have 64"
        );
        assert_eq!(
            msg("sha256:0xab-z", None),
            "the digest has characters that are not hex digits ('x', '-', 'z'); sha256 digests are 64 hex digits"
        );
        assert_eq!(
            msg(
                &format!("sha256:{}", "a".repeat(64)),
                Some(Algorithm::Blake3)
            ),
            "the digest is marked sha256 but `algorithm` is blake3"
        );
        assert!(msg("sha384:ab", None).contains("unknown digest algorithm `sha384`"));
        assert!(parse(&"a".repeat(32), None).unwrap_err().plausible);
        assert!(!parse(&"a".repeat(33), None).unwrap_err().plausible);
        assert!(!parse("Note: x", None).unwrap_err().plausible);
    }
}
