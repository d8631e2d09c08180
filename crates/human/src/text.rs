//! Text from a step, made safe for a terminal, and cut to a size.

/// Neutralise text that came from a step before it reaches a terminal:
/// escape sequences (`ESC [ 2J`, OSC 52 clipboard writes), BEL, CR, DEL and
/// the other control characters become visible escapes (`\x1b`, `\r`,
/// `\u{9b}`), and so do the bidirectional overrides that make text read
/// differently from what it is. Tabs and newlines survive.
pub fn sanitize(text: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' | '\t' => out.push(c),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c == '\x7f' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() || is_bidi_control(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Characters that reorder how a line reads (Trojan Source).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// At most `max` bytes of `text`, cut at a character boundary, and whether
/// anything was cut. Cut before [`sanitize`]: escaping can make text six
/// times longer, and a step's 50 MiB message must not become 300 MiB.
pub fn head(text: &str, max: usize) -> (&str, bool) {
    if text.len() <= max {
        return (text, false);
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    (&text[..cut], true)
}

/// A step's text for a terminal, at most `max` bytes of it, marked when cut.
pub fn shown(text: &str, max: usize) -> String {
    let (h, cut) = head(text, max);
    let mut s = sanitize(h);
    if cut {
        s.push_str(&format!(
            " [{} more bytes cut]",
            crate::human_count((text.len() - h.len()) as u64)
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_counts() {
        use crate::{human_bytes, human_count};
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(22_000_000_000), "22.0 GB");
        assert_eq!(human_count(33553), "33,553");
        assert_eq!(human_count(100), "100");
        assert_eq!(human_count(1_000_000), "1,000,000");
    }

    #[test]
    fn escapes_are_neutralised() {
        assert_eq!(sanitize("a\x1b[2Jb\n"), "a\\x1b[2Jb\n");
        assert_eq!(
            sanitize("\x1b]52;c;cm0gLXJm\x07\roverwritten\u{9b}\u{202e}"),
            "\\x1b]52;c;cm0gLXJm\\x07\\roverwritten\\u{9b}\\u{202e}"
        );
        // Idempotent: text shown once can be shown again unchanged.
        let once = sanitize("\x1b[31m\x7f");
        assert_eq!(sanitize(&once), once);
    }

    #[test]
    fn long_text_is_cut_before_it_is_escaped() {
        let (h, cut) = head("aé", 2);
        assert_eq!((h, cut), ("a", true));
        assert_eq!(
            shown(&"\x1b".repeat(10), 4),
            "\\x1b\\x1b\\x1b\\x1b [6 more bytes cut]"
        );
    }
}
