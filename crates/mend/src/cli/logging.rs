//! mend's own logs (`tracing`), on stderr: plain lines on a terminal or in a
//! pipe, or lines journald reads a priority from (`<4>...`, sd-daemon(3))
//! when stderr is the journal, as under a systemd unit or timer.

use std::fmt;
use std::io::IsTerminal;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// `-v` for what mend does (steps loaded, commands run, denials), `-vv` for
/// why, `-vvv` for everything, wasmtime's own logs included. `MEND_LOG`
/// (an env-filter, e.g. `mend_host=debug`) overrides. A target matches by
/// prefix, so `mend` covers every mend crate (`mend_host`, `mend_journal`...).
pub fn init(verbose: u8) {
    let filter = match verbose {
        0 => "warn",
        1 => "warn,mend=info",
        2 => "warn,mend=debug",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("MEND_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| MaskedStderr);
    if stderr_is_journal() {
        // journald keeps the bytes: no colour codes in its records.
        builder.with_ansi(false).event_format(Journald).init();
    } else {
        builder
            .with_ansi(std::io::stderr().is_terminal() && !no_color())
            .without_time()
            .init();
    }
}

/// stderr, with every secret value masked (`-v` logs the commands run,
/// whose arguments may hold one).
struct MaskedStderr;

impl std::io::Write for MaskedStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let masked = crate::secrets::mask(&text);
        if masked == text {
            std::io::stderr().write_all(buf)?;
        } else {
            std::io::stderr().write_all(masked.as_bytes())?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// systemd sets `JOURNAL_STREAM=DEV:INODE` for a unit's stdout and stderr
/// when they go to the journal; stderr is the journal when they match its.
pub fn stderr_is_journal() -> bool {
    let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    let Ok(st) = rustix::fs::fstat(std::io::stderr()) else {
        return false;
    };
    dev.parse() == Ok(st.st_dev) && ino.parse() == Ok(st.st_ino)
}

/// The syslog priority journald reads from a `<N>` prefix.
pub fn priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// One line per event: `<N>target: message field=value`, no time (journald
/// keeps its own) and no colour.
struct Journald;

impl<S, N> FormatEvent<S, N> for Journald
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        write!(writer, "<{}>{}: ", priority(*meta.level()), meta.target())?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_are_syslogs() {
        assert_eq!(priority(Level::ERROR), 3);
        assert_eq!(priority(Level::WARN), 4);
        assert_eq!(priority(Level::INFO), 6);
        assert_eq!(priority(Level::DEBUG), 7);
    }
}
