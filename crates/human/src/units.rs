//! Sizes and counts as operators read them, and the headroom rule copies use.

/// What the host keeps free beyond a copy or an extract of `bytes`: 5% of
/// it, at least 64 MiB. A step that checks space at plan time uses this so
/// that it refuses exactly what the host would refuse at run time.
pub fn copy_headroom(bytes: u64) -> u64 {
    (bytes / 20).max(64 << 20)
}

/// A count with thousands separators, as operators read it: `33,553`.
pub fn human_count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A count of files with its noun: `1 file`, `33,553 files`.
pub fn files_text(n: u64) -> String {
    format!("{} file{}", human_count(n), if n == 1 { "" } else { "s" })
}

/// Bytes in human units, as operators read them: `22.0 GB`, `512 B`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_reads_like_df() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1000), "1.0 kB");
        assert_eq!(human_bytes(22_000_000_000), "22.0 GB");
        assert_eq!(human_count(33_553), "33,553");
        assert_eq!(human_count(999), "999");
    }
}
