//! Open WebUI: the HTTP client ragd registers files with, and (on top of it) the
//! knowledge-base publish flow.
//!
//! - [`client`]: [`OpenWebUi`], a typed client for files, knowledge bases and processing
//!   status, with retries of transient failures inside.
//! - [`external`]: external knowledge bases (a Qdrant collection Open WebUI searches
//!   itself), their connections, retrieval and Open WebUI's RAG embedding settings.
//! - [`error`]: [`OwuiError`], failures classified by what the caller must do.
//! - [`filename`]: [`sanitize_filename`], the name a source file is uploaded under.
//! - [`tree`]: [`tree::Place`], where a file sits in a knowledge base's directory tree.

pub mod client;
pub mod error;
pub mod external;
pub mod filename;
pub mod tree;

pub use client::{
    FileInfo, FileStatus, KnowledgeBase, KnowledgeDirectory, ManifestEntry, OpenWebUi,
    ProcessOutcome, RetryPolicy, ServerVersion, SyncDiff, Whoami,
};
pub use error::OwuiError;
pub use filename::sanitize_filename;
pub mod publish;
