//! Shared helpers for the integration tests.
pub mod daemon;
pub mod embed;
pub mod env;
pub mod fake_openwebui;
pub mod metrics;
pub mod owui;
pub mod pdf;
pub mod qdrant_node;
pub mod real;
pub mod tls;
pub mod zipcraft;

/// The ragd binary the tests run: cargo's build of it, or `RAGD_TEST_BIN` (a
/// frozen copy, so a long soak is not changed under it by the next build).
pub fn ragd_bin() -> std::path::PathBuf {
    std::env::var_os("RAGD_TEST_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_ragd").into())
}

/// A finished ragd's exit status, stdout (the summary naming each failed file
/// and why) and stderr, for a failure message.
pub fn report(out: &std::process::Output) -> String {
    format!(
        "{:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
