//! The runbook parser on arbitrary text: it returns a runbook or diagnostics,
//! never panics, and every diagnostic points inside the text and renders.
//!
//! Input: the runbook's bytes, then optionally a NUL and `--set` pairs, one
//! `name=value` a line. Valid UTF-8 goes through `Runbook::from_source`;
//! anything else through `Runbook::load` on a file, as `mend` reads it.

#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mend_runbook::{Diagnostic, Runbook, Span};

const FILE: &str = "fuzz/runbook.toml";

/// A private directory for the non-UTF-8 inputs' file, made once.
fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("mend-fuzz-runbook-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the scratch directory");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let (text, sets) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let sets: Vec<(String, String)> = String::from_utf8_lossy(sets)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    // The bundled steps' names, as the engine embeds them from steps/.
    let bundled = [
        "archive-cleanup", "assert", "cache-cull", "checksum-verify", "release", "restore",
        "service", "snapshot",
    ];

    let (result, source, file) = match std::str::from_utf8(text) {
        Ok(s) => (
            Runbook::from_source(Path::new(FILE), s.to_string(), &sets, &bundled),
            s.to_string(),
            FILE.to_string(),
        ),
        Err(_) => {
            let path = scratch().join("runbook.toml");
            std::fs::write(&path, text).expect("write the runbook");
            let result = Runbook::load(&path, &sets, &bundled);
            // A diagnostic about bytes that are not UTF-8 points into the
            // text as it is shown: replacement characters for bad bytes.
            let shown = String::from_utf8_lossy(text).into_owned();
            (result, shown, path.display().to_string())
        }
    };
    match result {
        Ok(rb) => {
            assert_eq!(rb.source, source);
            // A diagnostic at any span of a loaded runbook points inside it.
            let n = source.len();
            for span in [(0, 0), (n / 2, n), (n, n + 3), (n + 1, 0)] {
                let d = rb.diagnostic(Span::new(span.0, span.1), "fuzz", None);
                check(&d, &source, &file);
            }
        }
        Err(diagnostics) => {
            assert!(!diagnostics.is_empty(), "an error without a diagnostic");
            for d in &diagnostics {
                check(d, &source, &file);
            }
        }
    }
});

/// Line and column lie inside `source` (1-based; the column may be one past
/// the line's last char, where a missing value or the end of file is), the
/// snippet is that line, and rendering names the position.
fn check(d: &Diagnostic, source: &str, file: &str) {
    let shown = d.to_string();
    assert!(shown.starts_with("error: "), "{shown}");
    if d.line == 0 {
        assert_eq!(d.column, 0, "a column without a line: {d:?}");
        assert!(d.snippet.is_none(), "a snippet without a line: {d:?}");
        return;
    }
    assert_eq!(d.file, file);
    let lines: Vec<&str> = source.split('\n').collect();
    assert!(
        d.line <= lines.len(),
        "line {} of a {}-line input: {d:?}",
        d.line,
        lines.len()
    );
    let line = lines[d.line - 1].trim_end_matches('\r');
    let chars = lines[d.line - 1].chars().count();
    assert!(
        d.column >= 1 && d.column <= chars + 1,
        "column {} of a {chars}-char line: {d:?}",
        d.column
    );
    let (text, col, len) = d
        .snippet
        .as_ref()
        .expect("a positioned diagnostic has a snippet");
    assert_eq!(text, line, "{d:?}");
    assert_eq!(*col, d.column, "{d:?}");
    assert!(*len >= 1, "{d:?}");
    assert!(
        col - 1 + len <= line.chars().count().max(col - 1) + 1,
        "caret past the line: {d:?}"
    );
    let at = format!("{}:{}:{}", d.file, d.line, d.column);
    assert!(shown.contains(&at), "{shown}");
}
