//! Reading a dotenv file the way Mastodon's `.env.production` is read (the
//! Ruby `dotenv` gem): `KEY=value` lines, an optional `export ` prefix,
//! `#` comments (whole lines, and after an unquoted value), single quotes
//! taken literally, double quotes with `\n`, `\"` and `\\` escapes, quoted
//! values that span lines, and the last assignment of a key winning.
//! `${VAR}` is not expanded: the check compares what the file says.

/// The value the file gives `key`, or `None` when it gives none.
pub fn lookup(text: &str, key: &str) -> Option<String> {
    let mut found = None;
    for (k, v) in parse(text) {
        if k == key {
            found = Some(v);
        }
    }
    found
}

/// Every assignment of the file, in order (duplicates kept; the last wins).
pub fn parse(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = match line.strip_prefix("export") {
            Some(rest) if rest.starts_with([' ', '\t']) => rest.trim_start(),
            _ => line,
        };
        let Some(eq) = line.find(['=', ':']) else {
            continue;
        };
        let key = line[..eq].trim_end();
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        {
            continue;
        }
        let rest = line[eq + 1..].trim_start();
        let value = match rest.chars().next() {
            Some(q @ ('"' | '\'')) => {
                // A quoted value ends at the next unescaped quote, on this
                // line or a later one.
                let mut body = rest[1..].to_string();
                let mut end = closing(&body, q);
                while end.is_none() {
                    match lines.next() {
                        Some(more) => {
                            body.push('\n');
                            body.push_str(more);
                            end = closing(&body, q);
                        }
                        None => break,
                    }
                }
                let body = match end {
                    Some(i) => &body[..i],
                    None => body.as_str(),
                };
                if q == '"' {
                    unescape(body)
                } else {
                    body.to_string()
                }
            }
            _ => {
                // An unquoted value: up to ` #`, trimmed.
                let cut = rest
                    .char_indices()
                    .find(|&(i, c)| c == '#' && (i == 0 || rest[..i].ends_with([' ', '\t'])))
                    .map_or(rest.len(), |(i, _)| i);
                rest[..cut].trim().to_string()
            }
        };
        out.push((key.to_string(), value));
    }
    out
}

/// Where the closing quote `q` is in `body`, skipping `\`-escaped ones in
/// double quotes.
fn closing(body: &str, q: char) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in body.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' && q == '"' {
            escaped = true;
        } else if c == q {
            return Some(i);
        }
    }
    None
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_quoted_exported_and_commented() {
        let text = "# Mastodon\n\
            LOCAL_DOMAIN=hachyderm.io\n\
            S3_ENABLED = TRUE   # on since 2022\n\
            export S3_BUCKET='media #1'\n\
            DB_PASS=\"p\\\"w\\\\d # not a comment\"\n\
            \n  # indented comment\n\
            SECRET_KEY_BASE=abc#def\n\
            EMPTY=\n\
            COLON: yes\n\
            exportNOT=1\n";
        assert_eq!(
            lookup(text, "LOCAL_DOMAIN").as_deref(),
            Some("hachyderm.io")
        );
        assert_eq!(lookup(text, "S3_ENABLED").as_deref(), Some("TRUE"));
        assert_eq!(lookup(text, "S3_BUCKET").as_deref(), Some("media #1"));
        assert_eq!(
            lookup(text, "DB_PASS").as_deref(),
            Some("p\"w\\d # not a comment")
        );
        // `#` inside an unquoted word is part of it, as in dotenv.
        assert_eq!(lookup(text, "SECRET_KEY_BASE").as_deref(), Some("abc#def"));
        assert_eq!(lookup(text, "EMPTY").as_deref(), Some(""));
        assert_eq!(lookup(text, "COLON").as_deref(), Some("yes"));
        assert_eq!(lookup(text, "exportNOT").as_deref(), Some("1"));
        assert_eq!(lookup(text, "NOT"), None);
        assert_eq!(lookup(text, "Mastodon"), None);
    }

    #[test]
    fn the_last_assignment_wins() {
        let text = "S3_ENABLED=TRUE\nS3_ENABLED=FALSE\n";
        assert_eq!(lookup(text, "S3_ENABLED").as_deref(), Some("FALSE"));
        assert_eq!(parse(text).len(), 2);
    }

    #[test]
    fn a_typo_is_another_key() {
        let text = "S3_ENABLED=TRUE\n3_BUCKET=files.hachyderm.io\n";
        assert_eq!(lookup(text, "S3_BUCKET"), None);
        assert_eq!(
            lookup(text, "3_BUCKET").as_deref(),
            Some("files.hachyderm.io")
        );
    }

    #[test]
    fn quoted_values_span_lines_and_single_quotes_are_literal() {
        let text = "KEY=\"-----BEGIN\nabc\\n\n-----END\"\nNEXT='a\\nb'\nCRLF=x\r\n";
        assert_eq!(
            lookup(text, "KEY").as_deref(),
            Some("-----BEGIN\nabc\n\n-----END")
        );
        assert_eq!(lookup(text, "NEXT").as_deref(), Some("a\\nb"));
        assert_eq!(lookup(text, "CRLF").as_deref(), Some("x"));
    }

    #[test]
    fn lines_that_are_not_assignments_are_skipped() {
        let text = "just words\n=nokey\nBAD KEY=1\nGOOD=2\n";
        assert_eq!(parse(text), vec![("GOOD".to_string(), "2".to_string())]);
    }
}
