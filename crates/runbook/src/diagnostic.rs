//! Diagnostics: an error message tied to a place in a runbook file, rendered
//! rustc-style with the offending line and a caret under the offending text.

use std::fmt;

/// A byte range in a runbook's source text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Span {
        Span { start, end }
    }
}

impl From<std::ops::Range<usize>> for Span {
    fn from(r: std::ops::Range<usize>) -> Span {
        Span {
            start: r.start,
            end: r.end,
        }
    }
}

/// One error, optionally with a position in a file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    pub file: String,
    /// 1-based line; 0 when the diagnostic has no position.
    pub line: usize,
    /// 1-based column, counted in chars; 0 when there is no position.
    pub column: usize,
    pub message: String,
    pub hint: Option<String>,
    /// The source line, the caret's 1-based start column (in chars, same as
    /// `column`) and the caret's length in chars (at least 1).
    #[serde(skip)]
    pub snippet: Option<(String, usize, usize)>,
}

impl Diagnostic {
    /// A diagnostic without a position (e.g. about a command-line argument).
    pub fn plain(
        file: impl Into<String>,
        message: impl Into<String>,
        hint: Option<String>,
    ) -> Diagnostic {
        Diagnostic {
            file: file.into(),
            line: 0,
            column: 0,
            message: message.into(),
            hint,
            snippet: None,
        }
    }

    /// A diagnostic pointing at `span` in `source` (the text of `file`).
    /// Multi-line spans are underlined on their first line only, to its end.
    pub fn at(
        file: impl Into<String>,
        source: &str,
        span: Span,
        message: impl Into<String>,
        hint: Option<String>,
    ) -> Diagnostic {
        let start = floor_char_boundary(source, span.start.min(source.len()));
        let end = floor_char_boundary(source, span.end.clamp(start, source.len()));
        let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = source[start..]
            .find('\n')
            .map_or(source.len(), |i| start + i);
        let line_no = source[..line_start].matches('\n').count() + 1;
        let column = source[line_start..start].chars().count() + 1;
        let text = source[line_start..line_end].trim_end_matches('\r');
        let caret_end = end.min(line_start + text.len()).max(start);
        let len = source[start..caret_end].chars().count().max(1);
        Diagnostic {
            file: file.into(),
            line: line_no,
            column,
            message: message.into(),
            hint,
            snippet: Some((text.to_string(), column, len)),
        }
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}", self.message)?;
        let width = if self.line == 0 {
            1
        } else {
            self.line.to_string().len()
        };
        let pad = " ".repeat(width);
        if self.line > 0 {
            write!(f, "\n{pad}--> {}:{}:{}", self.file, self.line, self.column)?;
            if let Some((text, col, len)) = &self.snippet {
                // Mirror tabs before the caret so it lines up in a terminal.
                let lead: String = text
                    .chars()
                    .take(col.saturating_sub(1))
                    .map(|c| if c == '\t' { '\t' } else { ' ' })
                    .collect();
                write!(f, "\n{pad} |")?;
                write!(f, "\n{} | {text}", self.line)?;
                write!(f, "\n{pad} | {lead}{}", "^".repeat((*len).max(1)))?;
            }
        } else if !self.file.is_empty() {
            // No position (a missing table, a --set): still name the file.
            write!(f, "\n{pad}--> {}", self.file)?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n{pad} = help: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostic {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_rustc() {
        let mut src = String::new();
        for _ in 0..13 {
            src.push_str("#\n");
        }
        src.push_str("grants = [\"media\"]\n");
        let start = src.find("\"media\"").unwrap();
        let d = Diagnostic::at(
            "runbooks/mastodon/maintenance.toml",
            &src,
            Span::new(start, start + 7),
            "step `cull` uses grant `media`, which the runbook does not declare",
            Some(
                "declare it: [grants.media] with `path` and `access`, or remove it from the step"
                    .into(),
            ),
        );
        assert_eq!((d.line, d.column), (14, 11));
        assert_eq!(
            d.to_string(),
            "error: step `cull` uses grant `media`, which the runbook does not declare\n  --> runbooks/mastodon/maintenance.toml:14:11\n   |\n14 | grants = [\"media\"]\n   |           ^^^^^^^\n   = help: declare it: [grants.media] with `path` and `access`, or remove it from the step"
        );
    }

    #[test]
    fn single_digit_gutter_and_no_hint() {
        let d = Diagnostic::at("f.toml", "a = 1\n", Span::new(4, 5), "bad", None);
        assert_eq!(
            d.to_string(),
            "error: bad\n --> f.toml:1:5\n  |\n1 | a = 1\n  |     ^"
        );
    }

    #[test]
    fn plain_has_no_position() {
        let d = Diagnostic::plain("f.toml", "bad set", Some("do this".into()));
        assert_eq!(
            d.to_string(),
            "error: bad set\n --> f.toml\n  = help: do this"
        );
        assert_eq!((d.line, d.column), (0, 0));
    }

    #[test]
    fn multiline_span_carets_first_line_to_its_end() {
        let src = "x = 1\nwith = { a = 1,\n  b = 2 }\n";
        let start = src.find('{').unwrap();
        let end = src.rfind('}').unwrap() + 1;
        let d = Diagnostic::at("f", src, Span::new(start, end), "m", None);
        assert_eq!((d.line, d.column), (2, 8));
        assert_eq!(d.snippet, Some(("with = { a = 1,".to_string(), 8, 8)));
    }

    #[test]
    fn columns_count_chars_and_empty_spans_get_one_caret() {
        let src = "name = \"é\" x\r\n";
        let start = src.find('x').unwrap();
        let d = Diagnostic::at("f", src, Span::new(start, start), "m", None);
        assert_eq!(d.column, 12);
        assert_eq!(d.snippet, Some(("name = \"é\" x".to_string(), 12, 1)));
        // Past the end of the file.
        let d = Diagnostic::at("f", "a", Span::new(9, 12), "m", None);
        assert_eq!((d.line, d.column), (1, 2));
    }
}
