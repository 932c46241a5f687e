//! Shared helpers for the integration tests.
pub mod daemon;
pub mod embed;
pub mod env;
pub mod fake_openwebui;
pub mod owui;
pub mod pdf;
pub mod qdrant_node;
pub mod real;
