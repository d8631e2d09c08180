//! Durations ("250ms", "90s", "5m", "1h") and memory sizes ("512KiB",
//! "256MiB", "1GiB") as written in runbooks.

use std::time::Duration;

/// Parse a duration string: a whole number followed by `ms`, `s`, `m` or `h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let digits = s.len() - s.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let (num, unit) = s.split_at(digits);
    if num.is_empty() {
        return Err(format!("`{s}` does not start with a whole number"));
    }
    let n: u64 = num.parse().map_err(|_| format!("`{num}` is too large"))?;
    let per = match unit.trim_start() {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "" => return Err(format!("`{s}` has no unit")),
        other => return Err(format!("unknown unit `{other}`")),
    };
    n.checked_mul(per)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("`{s}` is too large"))
}

/// Parse a size string: a whole number followed by `KiB`, `MiB` or `GiB`
/// (or `B`, or nothing, for bytes).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let digits = s.len() - s.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let (num, unit) = s.split_at(digits);
    if num.is_empty() {
        return Err(format!("`{s}` does not start with a whole number"));
    }
    let n: u64 = num.parse().map_err(|_| format!("`{num}` is too large"))?;
    let per: u64 = match unit.trim_start() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        u @ ("K" | "KB" | "k" | "kB" | "M" | "MB" | "G" | "GB") => {
            return Err(format!(
                "unit `{u}` is ambiguous; sizes use binary units (KiB, MiB, GiB)"
            ));
        }
        other => return Err(format!("unknown unit `{other}`")),
    };
    n.checked_mul(per)
        .ok_or_else(|| format!("`{s}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(parse_duration("90").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("1.5s").is_err());
        assert!(parse_duration("3d").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("99999999999999999999s").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("64 MiB"), Ok(64 << 20));
        assert!(parse_size("256MB").unwrap_err().contains("binary"));
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("1TiB").is_err());
        assert!(parse_size("99999999999GiB").is_err());
    }
}
