//! Text for operators: sizes in human units, neutralised step text.

/// Bytes as operators read them: `22.0 GB`, `512 B` (the same as steps print).
pub fn bytes(n: u64) -> String {
    mend_sdk::human_bytes(n)
}

/// A count with thousands separators: `33,553`.
pub fn count(n: u64) -> String {
    mend_sdk::human_count(n)
}

/// Neutralise text that came from a step before it reaches a terminal:
/// escape sequences and other control characters become visible `\x1b`-style
/// escapes; tabs and newlines survive.
pub fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' | '\t' => out.push(c),
            c if c.is_control() => out.push_str(&c.escape_unicode().to_string()),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_counts() {
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(22_000_000_000), "22.0 GB");
        assert_eq!(count(33553), "33,553");
        assert_eq!(count(100), "100");
        assert_eq!(count(1_000_000), "1,000,000");
    }

    #[test]
    fn escapes_are_neutralised() {
        assert_eq!(sanitize("a\x1b[2Jb\n"), "a\\u{1b}[2Jb\n");
    }
}
