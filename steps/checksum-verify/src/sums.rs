//! Checksum lists (`SHA256SUMS`), read the way GNU `sha256sum -c` reads them:
//!
//! - `<hex>  <name>` (text mark), `<hex> *<name>` (binary mark), or the BSD
//!   `<hex> <name>`; once a list's first good line has chosen marks or no
//!   marks, the other lines must follow (as coreutils does, so that a file
//!   renamed to ` name` cannot pass for `name`);
//! - the tagged form `SHA256 (<name>) = <hex>` (also SHA512, BLAKE3; MD5 and
//!   SHA1 are read so that they can be refused);
//! - a leading `\` means the name escapes `\\`, `\n` and `\r`;
//! - lines starting with `#` and empty lines are skipped; a trailing CR is
//!   dropped; everything after the mark, spaces included, is the name.

/// One well-formed line.
#[derive(Debug, PartialEq)]
pub struct Line {
    /// 1-based line number, for messages.
    pub number: usize,
    /// The digest as written; `algo:hex` for a tagged line.
    pub digest: String,
    /// The file name, relative to the list's directory.
    pub name: String,
}

/// What a list holds.
#[derive(Debug, Default, PartialEq)]
pub struct List {
    /// The well-formed lines, in order.
    pub lines: Vec<Line>,
    /// Numbers of the improperly formatted lines.
    pub bad: Vec<usize>,
}

const TAGS: [&str; 5] = ["SHA256", "SHA512", "BLAKE3", "SHA1", "MD5"];

/// Read a list. `is_digest` says whether a line's digest text is one (the
/// right length for its algorithm); a line whose digest is not is counted bad.
pub fn parse(text: &str, is_digest: impl Fn(&str) -> bool) -> List {
    let mut list = List::default();
    // None until the first good plain line says whether lines carry a mark.
    let mut marked: Option<bool> = None;
    for (i, raw) in text.split('\n').enumerate() {
        let number = i + 1;
        if raw.starts_with('#') {
            continue;
        }
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.is_empty() {
            continue;
        }
        match split(line, &mut marked, &is_digest) {
            Some((digest, name)) => list.lines.push(Line {
                number,
                digest,
                name,
            }),
            None => list.bad.push(number),
        }
    }
    list
}

fn split(
    line: &str,
    marked: &mut Option<bool>,
    is_digest: &impl Fn(&str) -> bool,
) -> Option<(String, String)> {
    let line = line.trim_start_matches([' ', '\t']);
    let (escaped, line) = match line.strip_prefix('\\') {
        Some(rest) => (true, rest),
        None => (false, line),
    };
    let (digest, name) = match TAGS.iter().find(|t| line.starts_with(**t)) {
        Some(tag) => tagged(tag, &line[tag.len()..]).filter(|(d, _)| is_digest(d))?,
        None => plain(line, marked, is_digest)?,
    };
    let name = if escaped {
        unescape(name)?
    } else {
        name.to_string()
    };
    (!name.is_empty()).then_some((digest, name))
}

/// `TAG (name) = hex`, `rest` being what follows the tag.
fn tagged<'a>(tag: &str, rest: &'a str) -> Option<(String, &'a str)> {
    let rest = rest.strip_prefix(' ').unwrap_or(rest).strip_prefix('(')?;
    let close = rest.rfind(')')?;
    let hex = rest[close + 1..].trim_start_matches([' ', '\t']);
    let hex = hex.strip_prefix('=')?.trim_start_matches([' ', '\t']);
    Some((
        format!("{}:{hex}", tag.to_ascii_lowercase()),
        &rest[..close],
    ))
}

/// `hex<space or tab>[mark]name`.
fn plain<'a>(
    line: &'a str,
    marked: &mut Option<bool>,
    is_digest: &impl Fn(&str) -> bool,
) -> Option<(String, &'a str)> {
    let end = line.find([' ', '\t'])?;
    let (digest, rest) = (&line[..end], &line[end + 1..]);
    if !is_digest(digest) {
        return None;
    }
    let has_mark = rest.len() > 1 && rest.starts_with([' ', '*']);
    let name = match (*marked, has_mark) {
        (Some(true), false) => return None,
        (Some(false), _) => rest,
        (_, true) => {
            *marked = Some(true);
            &rest[1..]
        }
        (None, false) => {
            *marked = Some(false);
            rest
        }
    };
    Some((digest.to_string(), name))
}

fn unescape(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len());
    let mut chars = name.chars();
    while let Some(c) = chars.next() {
        out.push(match c {
            '\\' => match chars.next()? {
                '\\' => '\\',
                'n' => '\n',
                'r' => '\r',
                _ => return None,
            },
            c => c,
        });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "98ea6e4f216f2fb4b69fff9b3a44842c38686ca685f3f55dc48c5d3fb1107be4";

    fn hex64(d: &str) -> bool {
        let hex = d.split_once(':').map_or(d, |(_, h)| h);
        hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())
    }

    fn names(text: &str) -> (Vec<(usize, String)>, Vec<usize>) {
        let list = parse(text, hex64);
        let lines = list.lines.into_iter().map(|l| (l.number, l.name));
        (lines.collect(), list.bad)
    }

    /// The lines and verdicts were checked against GNU coreutils 9.1 `sha256sum -c`.
    #[test]
    fn reads_like_sha256sum() {
        let text = [
            format!("{H}  a"),
            "   ".to_string(),
            format!("  {H} *b"),
            format!("{H}\ta"),
            "#c".to_string(),
            format!(" {H}  a\r"),
            format!("SHA256 (b) = {H}"),
            format!("SHA256(b)= {H}"),
            format!("{H}   a"),
            format!("\\{H}  a"),
            format!("{}  a", H.to_uppercase()),
            format!("{H}  a\t"),
            " #x".to_string(),
            format!("{H}\t\ta"),
            format!("{H}\t*b"),
            format!("{H} \ta"),
            String::new(),
        ]
        .join("\n");
        let (lines, bad) = names(&text);
        let want = [
            (1, "a"),
            (3, "b"),
            (6, "a"),
            (7, "b"),
            (8, "b"),
            (9, " a"),
            (10, "a"),
            (11, "a"),
            (12, "a\t"),
            (15, "b"),
        ];
        let want: Vec<(usize, String)> = want.iter().map(|(n, s)| (*n, s.to_string())).collect();
        assert_eq!(lines, want);
        assert_eq!(bad, [2, 4, 13, 14, 16]);
    }

    #[test]
    fn unmarked_lists_stay_unmarked() {
        // As coreutils: the first line has no mark, so `  b` is the name ` b`.
        let (lines, bad) = names(&format!("{H} a\n{H}  b\n"));
        assert_eq!(lines, [(1, "a".to_string()), (2, " b".to_string())]);
        assert!(bad.is_empty());
        // And the other way round a line without a mark is refused.
        let (_, bad) = names(&format!("{H}  b\n{H} a\n"));
        assert_eq!(bad, [2]);
    }

    #[test]
    fn escaped_names_and_tags() {
        let (lines, bad) = names(&format!("\\{H}  a\\nb\\\\c\n\\{H}  bad\\x\n"));
        assert_eq!(lines, [(1, "a\nb\\c".to_string())]);
        assert_eq!(bad, [2]);
        let list = parse(&format!("MD5 (x) = {H}\nSHA512 (y (1)) = {H}\n"), hex64);
        assert_eq!(list.lines[0].digest, format!("md5:{H}"));
        assert_eq!(list.lines[1].name, "y (1)");
    }
}
