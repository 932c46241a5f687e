//! Logging: human-readable on a terminal, JSON lines on request.
//!
//! Level from `RUST_LOG` when set, else from the `--verbose` count. Logs never
//! carry document text or secrets: paths and counts only.

use tracing_subscriber::EnvFilter;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

/// Install the global subscriber. Logs go to stderr so stdout stays for results.
pub fn init(format: LogFormat, verbosity: u8) {
    let default = match verbosity {
        0 => "warn,ragd=info",
        1 => "info,ragd=debug",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.with_target(false).try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
