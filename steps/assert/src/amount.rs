//! Amounts of free space as operators write them: `10GiB`, `500 MB`, `15%`.

use serde_json::Value;

/// A floor of free space.
#[derive(Clone, Debug, PartialEq)]
pub enum Amount {
    /// At least this many bytes; the text as the runbook wrote it.
    Bytes(u64, String),
    /// At least this share of the filesystem, in percent.
    Percent(f64),
}

const UNITS: [(&str, u64); 10] = [
    ("b", 1),
    ("kb", 1_000),
    ("mb", 1_000_000),
    ("gb", 1_000_000_000),
    ("tb", 1_000_000_000_000),
    ("kib", 1 << 10),
    ("mib", 1 << 20),
    ("gib", 1 << 30),
    ("tib", 1 << 40),
    ("", 1),
];

/// What `at_least` may be, for error messages.
pub const FORMS: &str = "a size such as \"10GiB\" or \"500MB\" (B, kB, MB, GB, TB, KiB, MiB, GiB, TiB), a share such as \"15%\", or a number of bytes";

/// Read `at_least`: a number of bytes, `"10GiB"`, `"1.5 TB"` or `"15%"`.
pub fn parse(value: &Value) -> Result<Amount, String> {
    if let Some(n) = value.as_u64() {
        return Ok(Amount::Bytes(n, format!("{n} B")));
    }
    let Some(text) = value.as_str() else {
        return Err(format!("`at_least = {value}` is not {FORMS}"));
    };
    let bad = || format!("`at_least = {text:?}` is not {FORMS}");
    let t = text.trim();
    if let Some(p) = t.strip_suffix('%') {
        let p: f64 = p.trim().parse().map_err(|_| bad())?;
        if !(p > 0.0 && p <= 100.0) {
            return Err(format!(
                "`at_least = {text:?}`: a share of the filesystem is more than 0% and at most 100%"
            ));
        }
        return Ok(Amount::Percent(p));
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = (&t[..split], t[split..].trim());
    let number: f64 = number.parse().map_err(|_| bad())?;
    let unit = unit.to_ascii_lowercase();
    let &(_, scale) = UNITS.iter().find(|(u, _)| *u == unit).ok_or_else(bad)?;
    let bytes = number * scale as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(bad());
    }
    Ok(Amount::Bytes(bytes.ceil() as u64, t.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bytes(v: Value) -> u64 {
        match parse(&v) {
            Ok(Amount::Bytes(n, _)) => n,
            other => panic!("{v}: {other:?}"),
        }
    }

    #[test]
    fn sizes_in_binary_and_decimal_units() {
        assert_eq!(bytes(json!("10GiB")), 10 << 30);
        assert_eq!(bytes(json!("10 GiB")), 10 << 30);
        assert_eq!(bytes(json!("10gib")), 10 << 30);
        assert_eq!(bytes(json!("1.5TB")), 1_500_000_000_000);
        assert_eq!(bytes(json!("500MB")), 500_000_000);
        assert_eq!(bytes(json!("64kB")), 64_000);
        assert_eq!(bytes(json!("64KiB")), 65_536);
        assert_eq!(bytes(json!("2MiB")), 2 << 20);
        assert_eq!(bytes(json!("1TiB")), 1 << 40);
        assert_eq!(bytes(json!("512B")), 512);
        assert_eq!(bytes(json!("512")), 512);
        assert_eq!(bytes(json!(4096)), 4096);
        let Ok(Amount::Bytes(_, text)) = parse(&json!(" 10GiB ")) else {
            panic!()
        };
        assert_eq!(text, "10GiB");
    }

    #[test]
    fn shares_of_the_filesystem() {
        assert_eq!(parse(&json!("15%")), Ok(Amount::Percent(15.0)));
        assert_eq!(parse(&json!("2.5 %")), Ok(Amount::Percent(2.5)));
        assert!(parse(&json!("0%")).is_err());
        assert!(parse(&json!("150%")).unwrap_err().contains("at most 100%"));
    }

    #[test]
    fn nonsense_is_refused_with_the_forms() {
        for v in [
            json!("10 GiBs"),
            json!("ten GB"),
            json!("10PB"),
            json!(""),
            json!(-5),
            json!(true),
            json!("1.2.3GB"),
        ] {
            let e = parse(&v).unwrap_err();
            assert!(e.contains("GiB"), "{v}: {e}");
        }
    }
}
