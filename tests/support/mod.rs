//! Shared helpers for the integration tests.
pub mod pdf;
pub mod embed;
pub mod env;
pub mod fake_openwebui;
pub mod daemon;
