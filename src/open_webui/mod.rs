//! Open WebUI: the typed HTTP client ragd registers files with and its errors. The
//! knowledge-base publish flow built on it is [`crate::publish`].
//!
//! - [`client`]: [`OpenWebUi`], a typed client for files, knowledge bases and processing
//!   status, with retries of transient failures inside.
//! - [`external`]: external knowledge bases (a Qdrant collection Open WebUI searches
//!   itself), their connections, retrieval and Open WebUI's RAG embedding settings.
//! - [`error`]: [`OwuiError`], failures classified by what the caller must do.
//! - [`filename`]: [`sanitize_filename`], the name a source file is uploaded under.
//! - [`marker`]: [`UploadMarker`], ragd's mark on its uploads, and the one test of
//!   whose an upload is.
//! - [`access`]: [`access::keep_access`], who may read or write a knowledge base, kept
//!   equal to `[knowledge] access`.

pub mod access;
pub mod client;
pub mod error;
pub mod external;
pub mod filename;
pub mod marker;

pub use client::{
    FileInfo, FileStatus, GroupInfo, KnowledgeBase, KnowledgeDirectory, ManifestEntry, OpenWebUi,
    ProcessOutcome, RetryPolicy, ServerVersion, SyncDiff, UserInfo, Whoami,
};
pub use error::OwuiError;
pub use filename::sanitize_filename;
pub use marker::{MARKER, UploadMarker};
