//! Embedding: turning chunk text into vectors.
//!
//! [`Embedder`] is the seam the pipeline embeds through. `ollama` speaks the Ollama
//! API, either to an Ollama server or through Open WebUI's `/ollama` proxy.
//! `server` is the project's own Ollama-API embedding server (used by the tests,
//! by CI as Open WebUI's embedding backend, and by `ragd embed-server`).

use async_trait::async_trait;

use crate::ledger::FailKind;

pub mod local;
pub mod ollama;
pub mod server;

pub use ollama::{EmbedderCounts, EmbedderStats, OllamaEmbedder, OllamaSettings};
pub use server::HashEmbedder;

/// Why an embedding request failed. `is_transient` decides whether a retry can help.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("embedding model {model:?} is not known to the endpoint {endpoint}: {detail}")]
    ModelNotFound {
        model: String,
        endpoint: String,
        detail: String,
    },
    #[error("embedding endpoint {endpoint} rejected the credentials (HTTP {status})")]
    Unauthorized { endpoint: String, status: u16 },
    #[error("embedding endpoint {endpoint} failed transiently: {detail}")]
    Transient { endpoint: String, detail: String },
    #[error("embedding endpoint {endpoint} failed: {detail}")]
    Permanent { endpoint: String, detail: String },
    #[error("embedding endpoint returned {got} vectors for {sent} texts")]
    CountMismatch { sent: usize, got: usize },
    #[error("embedding model {model:?} returned vectors of dimension {got}, expected {expected}")]
    DimensionMismatch {
        model: String,
        expected: usize,
        got: usize,
    },
    /// The in-process model (`local`) could not be loaded or failed to run.
    #[error("local embedding model {model:?}: {detail}")]
    Local { model: String, detail: String },
}

impl EmbedError {
    /// True when the same request may succeed later (5xx, timeouts, resets).
    pub fn is_transient(&self) -> bool {
        matches!(self, EmbedError::Transient { .. })
    }

    /// The kind recorded for the files whose texts this failure left without
    /// vectors: retried when transient.
    pub fn fail_kind(&self) -> FailKind {
        if self.is_transient() {
            FailKind::Transient
        } else {
            FailKind::Embed
        }
    }
}

/// Turns texts into vectors.
///
/// Contract: returns exactly one vector per input text, in input order, all of the
/// same dimension. Must be idempotent (the same text gives the same vector), since
/// the pipeline retries freely. Implementations retry transient failures
/// themselves; an error returned is final for this call.
#[async_trait]
pub trait Embedder: Send + Sync {
    /// The model name, as recorded in payloads and the ledger.
    fn model(&self) -> &str;
    /// Embed `texts`; callers batch, and an empty slice returns an empty vec.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError>;
}
