//! File names that are not UTF-8, carried losslessly through strings.
//!
//! WIT strings, the journal's JSON and the terminal all hold UTF-8, while a
//! Linux file name is any bytes but `/` and NUL. A walk that skipped such a
//! name would make its directory look empty to a step, and a cull would then
//! remove the directory with the file in it. So every name the host hands a
//! step is written with one escape, documented in the WIT:
//!
//! - each byte that is not part of valid UTF-8 becomes `\xHH` (two lowercase
//!   hex digits, always 80 to ff: ASCII bytes are valid UTF-8);
//! - a backslash becomes `\\`;
//! - every other character stands for itself.
//!
//! The host decodes the same form in every path a step gives it. Decoding is
//! strict: any other use of `\`, an escape of an ASCII byte, or an escape of
//! bytes that would have been valid UTF-8 (a second spelling of a name) is
//! refused, so one name has exactly one spelling.

use std::borrow::Cow;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};
use std::path::Path;

/// The string form of a real name (or path): lossless, readable when it is
/// plain UTF-8 without backslashes (almost always, so then borrowed).
pub fn encode(name: &OsStr) -> Cow<'_, str> {
    let bytes = name.as_bytes();
    match std::str::from_utf8(bytes) {
        Ok(s) if !s.contains('\\') => Cow::Borrowed(s),
        _ => Cow::Owned(encode_bytes(bytes)),
    }
}

fn encode_bytes(mut bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 8);
    loop {
        match std::str::from_utf8(bytes) {
            Ok(s) => {
                push_escaping_backslashes(&mut out, s);
                return out;
            }
            Err(e) => {
                let (good, rest) = bytes.split_at(e.valid_up_to());
                push_escaping_backslashes(
                    &mut out,
                    std::str::from_utf8(good).expect("valid up to here"),
                );
                let bad = e.error_len().unwrap_or(rest.len());
                for b in &rest[..bad] {
                    out.push_str(&format!("\\x{b:02x}"));
                }
                bytes = &rest[bad..];
            }
        }
    }
}

fn push_escaping_backslashes(out: &mut String, s: &str) {
    for part in s.split_inclusive('\\') {
        out.push_str(part);
        if part.ends_with('\\') {
            out.push('\\');
        }
    }
}

/// Why a string is not a valid spelling of a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadEscape {
    /// Byte offset of the backslash that starts the bad escape.
    pub at: usize,
}

/// Check that `text` is a valid (canonical) spelling, without decoding it.
pub fn check(text: &str) -> Result<(), BadEscape> {
    if text.contains('\\') {
        decode_bytes(text)?;
    }
    Ok(())
}

/// The real path a string spells. Borrowed when it holds no escape.
/// Call only on a string [`check`] accepted (the host checks every path it
/// is given, in `grants::split`); an invalid escape is kept as written.
pub fn decode(text: &str) -> Cow<'_, Path> {
    if !text.contains('\\') {
        return Cow::Borrowed(Path::new(text));
    }
    match decode_bytes(text) {
        Ok(b) => Cow::Owned(OsString::from_vec(b).into()),
        Err(_) => Cow::Borrowed(Path::new(text)),
    }
}

fn decode_bytes(text: &str) -> Result<Vec<u8>, BadEscape> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        match bytes.get(i + 1) {
            Some(b'\\') => {
                out.push(b'\\');
                i += 2;
            }
            Some(b'x') => {
                let hex = bytes.get(i + 2..i + 4).ok_or(BadEscape { at: i })?;
                let lower = |c: &u8| c.is_ascii_digit() || (b'a'..=b'f').contains(c);
                if !hex.iter().all(lower) {
                    return Err(BadEscape { at: i });
                }
                let b = u8::from_str_radix(std::str::from_utf8(hex).expect("ascii"), 16)
                    .map_err(|_| BadEscape { at: i })?;
                if b < 0x80 {
                    return Err(BadEscape { at: i });
                }
                out.push(b);
                i += 4;
            }
            _ => return Err(BadEscape { at: i }),
        }
    }
    // One name, one spelling: `\xc3\xa9` for `é` would be a second one.
    if encode_bytes(&out) != text {
        return Err(BadEscape {
            at: text.find("\\x").unwrap_or(0),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(b: &[u8]) -> &OsStr {
        OsStr::from_bytes(b)
    }

    #[test]
    fn plain_names_are_borrowed_and_unchanged() {
        for n in ["a.jpg", "é ü 日本", "line\nbreak", "tab\tand space"] {
            assert!(matches!(encode(os(n.as_bytes())), Cow::Borrowed(s) if s == n));
            assert!(matches!(decode(n), Cow::Borrowed(p) if p == Path::new(n)));
        }
    }

    #[test]
    fn every_name_round_trips() {
        let names: &[&[u8]] = &[
            b"young\xff.jpg",
            b"\xff",
            b"back\\slash",
            b"\\x41",
            b"\\\\",
            b"\xed\xa0\x80 lone surrogate as UTF-8",
            b"\xc3",
            b"ok \xc3\xa9 then \xe9 alone",
            b"nl\n\xfe",
        ];
        for n in names {
            let s = encode(os(n)).into_owned();
            check(&s).unwrap_or_else(|e| panic!("{s:?}: {e:?}"));
            assert_eq!(decode(&s).as_os_str().as_bytes(), *n, "{s}");
        }
        assert_eq!(encode(os(b"young\xff.jpg")), "young\\xff.jpg");
        assert_eq!(encode(os(b"a\\b")), "a\\\\b");
    }

    #[test]
    fn bad_and_second_spellings_are_refused() {
        for bad in [
            "a\\b",       // unknown escape
            "a\\",        // cut
            "\\x4",       // cut
            "\\x41",      // ASCII: never escaped
            "\\xFF",      // upper case: one spelling only
            "\\xc3\\xa9", // valid UTF-8 (é) spelled as escapes
            "\\x2f",      // a slash smuggled in
            "\\x00",      // NUL smuggled in
        ] {
            assert!(check(bad).is_err(), "{bad:?} accepted");
        }
    }
}
