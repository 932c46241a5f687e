//! What can go wrong talking to Open WebUI, classified by what the caller must do about it.
//!
//! Open WebUI answers almost every failure of the knowledge endpoints with a 400, so the
//! status alone cannot tell a permanent failure (duplicate content) from a transient one
//! (a locked SQLite database behind `Error uploading file`): classification reads the body.

use reqwest::StatusCode;

/// Open WebUI's `ERROR_MESSAGES.NOT_FOUND`; the knowledge endpoints send it with a 400.
const NOT_FOUND_DETAIL: &str = "We could not find what you're looking for";
/// Open WebUI's `ERROR_MESSAGES.DUPLICATE_CONTENT` (file/add answers it as `400: …`).
const DUPLICATE_DETAIL: &str = "Duplicate content detected";
/// Open WebUI's `ERROR_MESSAGES.EMPTY_CONTENT`.
const EMPTY_DETAIL: &str = "The content provided is empty";
/// The upload handler's catch-all; seen when the SQLite database was locked.
const UPLOAD_FAILED_DETAIL: &str = "Error uploading file";
/// How much of an unexpected body an error keeps.
const MAX_DETAIL_CHARS: usize = 500;

/// A failed Open WebUI call.
///
/// The variants are the decisions a caller has to make: stop the pipeline
/// ([`OwuiError::Unauthorized`]), record a permanent per-file failure
/// ([`OwuiError::DuplicateContent`], [`OwuiError::EmptyContent`],
/// [`OwuiError::ProcessingFailed`], [`OwuiError::Permanent`]), retry later
/// ([`OwuiError::Transient`]) or treat the object as gone ([`OwuiError::NotFound`]).
#[derive(Debug, thiserror::Error)]
pub enum OwuiError {
    /// The API key was refused (401/403): nothing will work until the configuration changes.
    #[error(
        "Open WebUI refused the API key (HTTP {status}): {detail} — check [open_webui] api_key"
    )]
    Unauthorized {
        /// The HTTP status, 401 or 403.
        status: u16,
        /// The server's reason.
        detail: String,
    },
    /// The knowledge base already holds another file with the same extracted text.
    /// Permanent: retrying the same content cannot succeed.
    #[error("Open WebUI rejected the file as duplicate content: {detail}")]
    DuplicateContent {
        /// The server's message.
        detail: String,
    },
    /// The file is empty, or no text could be extracted from it.
    #[error("Open WebUI found no content in the file: {detail}")]
    EmptyContent {
        /// The server's message.
        detail: String,
    },
    /// Open WebUI's processing of an uploaded file ended in `failed`.
    #[error("Open WebUI failed to process the file: {reason}")]
    ProcessingFailed {
        /// `data.error` of the file.
        reason: String,
    },
    /// The file or knowledge base does not exist (404, or the knowledge endpoints' 400).
    #[error("not found in Open WebUI: {detail}")]
    NotFound {
        /// The server's message.
        detail: String,
    },
    /// Worth retrying later: 5xx, 408/429, timeouts, connection errors and the upload
    /// handler's `Error uploading file` 400 (a locked database).
    #[error("transient Open WebUI failure{}: {detail}", status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
    Transient {
        /// The HTTP status, when the server answered at all.
        status: Option<u16>,
        /// What happened.
        detail: String,
        /// Whether the server may have carried out the request although the answer was
        /// lost (timeouts, dropped connections, 500s). Non-idempotent calls are only
        /// retried blindly when this is false.
        maybe_applied: bool,
    },
    /// The server's TLS certificate is not one ragd trusts: every request will
    /// fail the same way until the configuration changes (`tls_ca_file`), so it
    /// is neither retried nor held against a file.
    #[error("Open WebUI's certificate is not trusted: {detail}")]
    Untrusted {
        /// The transport error, with what to do.
        detail: String,
    },
    /// Any other refusal: retrying the same request will fail the same way.
    #[error("Open WebUI answered HTTP {status}: {detail}")]
    Permanent {
        /// The HTTP status.
        status: u16,
        /// The server's message.
        detail: String,
    },
    /// A 2xx answer that does not have the shape this client was written against.
    #[error("unexpected answer from Open WebUI to {operation}: {detail}")]
    UnexpectedResponse {
        /// The call that got it.
        operation: &'static str,
        /// What did not fit.
        detail: String,
    },
    /// The client was given something it cannot send (bad URL, key, metadata).
    #[error("invalid Open WebUI request: {0}")]
    InvalidInput(String),
    /// The server has no such feature: it answered the route as unknown (an older
    /// Open WebUI). The caller falls back to what older servers do.
    #[error("this Open WebUI has no {what}")]
    Unsupported {
        /// The feature.
        what: &'static str,
    },
}

impl OwuiError {
    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient { .. })
    }

    /// Whether the pipeline that got this error must stop (the key is refused,
    /// or the server's certificate is not trusted).
    pub fn stops_pipeline(&self) -> bool {
        matches!(self, Self::Unauthorized { .. } | Self::Untrusted { .. })
    }

    /// Whether this is a verdict about the file's content, to be recorded against the file
    /// and not retried until the file changes.
    pub fn is_permanent_for_file(&self) -> bool {
        matches!(
            self,
            Self::DuplicateContent { .. }
                | Self::EmptyContent { .. }
                | Self::ProcessingFailed { .. }
        )
    }

    /// Classifies a processing failure (`data.error` of a `failed` file). Auto-linked
    /// uploads report a duplicate in the knowledge base this way, not as a 400.
    pub fn from_processing_failure(reason: impl Into<String>) -> Self {
        let reason = reason.into();
        if reason.contains(DUPLICATE_DETAIL) {
            Self::DuplicateContent { detail: reason }
        } else if reason.contains(EMPTY_DETAIL) {
            Self::EmptyContent { detail: reason }
        } else {
            Self::ProcessingFailed { reason }
        }
    }

    /// Classifies a non-2xx answer from its status and body.
    pub(crate) fn from_response(status: StatusCode, body: &[u8]) -> Self {
        let detail = extract_detail(body);
        let code = status.as_u16();
        match code {
            401 | 403 => Self::Unauthorized {
                status: code,
                detail,
            },
            404 => Self::NotFound { detail },
            _ if detail.contains(DUPLICATE_DETAIL) => Self::DuplicateContent { detail },
            _ if detail.contains(EMPTY_DETAIL) => Self::EmptyContent { detail },
            400 if detail.contains(NOT_FOUND_DETAIL) => Self::NotFound { detail },
            // The upload handler turns any unexpected exception (in practice SQLite's
            // "database is locked") into this 400; the request did not create a file.
            400 if detail.contains(UPLOAD_FAILED_DETAIL) => Self::Transient {
                status: Some(code),
                detail,
                maybe_applied: false,
            },
            408 | 429 | 500..=599 => Self::Transient {
                status: Some(code),
                detail,
                // 429 and 503 are refusals before any work; a 500 may come after a write.
                maybe_applied: !matches!(code, 429 | 503),
            },
            _ => Self::Permanent {
                status: code,
                detail,
            },
        }
    }

    /// Classifies a transport failure. Only a failed connect is known not to have reached
    /// the server.
    pub(crate) fn from_transport(err: &reqwest::Error) -> Self {
        let what = if err.is_timeout() {
            "timed out"
        } else if err.is_connect() {
            "could not connect"
        } else {
            "connection failed"
        };
        let detail = format!("{what}: {}", crate::http::describe(err));
        if crate::http::untrusted_certificate_hint(&detail).is_some() {
            return Self::Untrusted { detail };
        }
        Self::Transient {
            status: None,
            detail,
            maybe_applied: !err.is_connect(),
        }
    }

    /// Whether a transient failure may have been carried out by the server.
    pub(crate) fn maybe_applied(&self) -> bool {
        matches!(
            self,
            Self::Transient {
                maybe_applied: true,
                ..
            }
        )
    }
}

/// The human part of an error body: FastAPI's `{"detail": "…"}`, an Ollama-style
/// `{"error": "…"}`, or the raw text, shortened.
fn extract_detail(body: &[u8]) -> String {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        for key in ["detail", "error", "message"] {
            match value.get(key) {
                Some(serde_json::Value::String(s)) => return shorten(s),
                Some(other) if !other.is_null() => return shorten(&other.to_string()),
                _ => {}
            }
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        "(empty body)".to_owned()
    } else {
        shorten(text)
    }
}

fn shorten(s: &str) -> String {
    match s.char_indices().nth(MAX_DETAIL_CHARS) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(status: u16, body: &str) -> OwuiError {
        OwuiError::from_response(StatusCode::from_u16(status).unwrap(), body.as_bytes())
    }

    #[test]
    fn the_body_tells_a_locked_database_from_a_duplicate() {
        let locked = classify(400, r#"{"detail":"Error uploading file"}"#);
        assert!(
            locked.is_transient() && !locked.maybe_applied(),
            "{locked:?}"
        );
        let dup = classify(
            400,
            r#"{"detail":"400: Duplicate content detected. Please provide unique content to proceed."}"#,
        );
        assert!(matches!(dup, OwuiError::DuplicateContent { .. }), "{dup:?}");
        assert!(dup.is_permanent_for_file());
    }

    #[test]
    fn statuses_map_to_decisions() {
        assert!(classify(401, r#"{"detail":"x"}"#).stops_pipeline());
        assert!(classify(403, r#"{"detail":"x"}"#).stops_pipeline());
        assert!(matches!(classify(404, "{}"), OwuiError::NotFound { .. }));
        assert!(matches!(
            classify(
                400,
                r#"{"detail":"We could not find what you're looking for :/"}"#
            ),
            OwuiError::NotFound { .. }
        ));
        assert!(matches!(
            classify(
                400,
                r#"{"detail":"The content provided is empty. Please ensure …"}"#
            ),
            OwuiError::EmptyContent { .. }
        ));
        assert!(classify(502, "bad gateway").is_transient());
        assert!(classify(503, "").is_transient());
        assert!(matches!(
            classify(422, r#"{"detail":[{"loc":["body"]}]}"#),
            OwuiError::Permanent { status: 422, .. }
        ));
    }

    #[test]
    fn processing_failures_are_classified_by_reason() {
        assert!(matches!(
            OwuiError::from_processing_failure(
                "Duplicate content detected. Please provide unique content to proceed."
            ),
            OwuiError::DuplicateContent { .. }
        ));
        assert!(matches!(
            OwuiError::from_processing_failure("Stream has ended unexpectedly"),
            OwuiError::ProcessingFailed { .. }
        ));
    }

    #[test]
    fn long_bodies_are_shortened() {
        let body = "x".repeat(5000);
        let OwuiError::Permanent { detail, .. } = classify(418, &body) else {
            panic!()
        };
        assert!(detail.chars().count() <= MAX_DETAIL_CHARS + 1);
    }
}
