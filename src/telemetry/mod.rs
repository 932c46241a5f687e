//! Telemetry: logs, metrics, and one function per notable event.
//!
//! - [`init`] installs the log subscriber (human lines, coloured only on a
//!   terminal; JSON lines on request) and the Prometheus recorder.
//! - [`metrics`] holds every metric name in one place, the recorder and the
//!   `/metrics` route.
//! - [`events`] has one function per notable event (a file indexed, a file failed,
//!   an embedding request, …): each logs *and* counts, so the two never disagree.
//!
//! Level from `RUST_LOG` when set, else from the `--verbose` count. Logs never
//! carry document text or secrets: paths and counts only. Metric labels never carry
//! paths: only the pipeline name and small closed sets (kinds, outcomes).

pub mod events;
pub mod metrics;

use std::ffi::OsStr;
use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

/// Install the global subscriber and the metrics recorder. Logs go to stderr so
/// stdout stays for results.
pub fn init(format: LogFormat, verbosity: u8) {
    let default = match verbosity {
        0 => "warn,ragd=info,qdrant_edge=error",
        1 => "info,ragd=debug,qdrant_edge=warn",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let ansi = colour(
        format,
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let _ = match format {
        LogFormat::Human => builder.with_target(false).try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    // Installed before any work starts: events recorded earlier would be lost.
    metrics::install();
}

/// Whether log lines carry ANSI colour. tracing-subscriber colours whenever its
/// `ansi` feature is on, so `ragd index 2>file`, a pipe or journald got escape
/// codes: colour only human lines on a terminal, and never when `NO_COLOR` is set
/// to something (<https://no-color.org>). JSON is read by programs: never.
fn colour(format: LogFormat, stderr_is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    format == LogFormat::Human && stderr_is_terminal && no_color.is_none_or(OsStr::is_empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_for_human_lines_on_a_terminal_without_no_color() {
        assert!(colour(LogFormat::Human, true, None));
        assert!(colour(LogFormat::Human, true, Some(OsStr::new(""))));
        assert!(!colour(LogFormat::Human, false, None), "a file or a pipe");
        assert!(!colour(LogFormat::Human, true, Some(OsStr::new("1"))));
        assert!(!colour(LogFormat::Json, true, None));
        assert!(!colour(LogFormat::Json, false, None));
    }
}
