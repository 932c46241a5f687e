//! The Ollama-API embedding client.
//!
//! Speaks `POST /api/embed` either directly to an Ollama(-compatible) server or through
//! Open WebUI's authenticated proxy (`/ollama/api/embed`), which forwards to the
//! Ollama server Open WebUI is configured with. Retries transient failures itself, as
//! the [`Embedder`] contract asks, and classifies the rest into [`EmbedError`]s.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use reqwest::{RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{EmbedError, Embedder};
use crate::backoff::Backoff;

/// First retry delay; doubles per attempt up to [`DEFAULT_BACKOFF_CAP`].
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(200);
/// Longest computed retry delay.
pub const DEFAULT_BACKOFF_CAP: Duration = Duration::from_secs(10);
/// Server messages quoted in errors are cut to this many characters.
const MAX_DETAIL_CHARS: usize = 500;
/// The text embedded by [`OllamaEmbedder::probe_dimension`].
const PROBE_TEXT: &str = "ragd dimension probe";

/// Where and how to reach the embedding endpoint.
#[derive(Clone)]
pub struct OllamaSettings {
    /// The endpoint base: the Ollama server, or Open WebUI when `via_open_webui`.
    pub url: String,
    /// True: `POST {url}/ollama/api/embed` with the API key as a bearer token.
    /// False: `POST {url}/api/embed`.
    pub via_open_webui: bool,
    /// Sent as `Authorization: Bearer` when set (required through Open WebUI).
    pub api_key: Option<String>,
    /// The embedding model, e.g. `nomic-embed-text` or `hash-embed`.
    pub model: String,
    /// Limit on one HTTP request, from connect to the last byte.
    pub timeout: Duration,
    /// Retries after the first attempt for transient failures.
    pub max_retries: u32,
    /// Most texts per HTTP request; larger inputs are split. 0 is treated as 1.
    pub max_batch: usize,
    /// Extra trusted CA certificates (`tls_ca_file`).
    pub ca_file: Option<std::path::PathBuf>,
}

impl OllamaSettings {
    /// Direct mode, no key, 60 s timeout, 5 retries, batches of 64.
    pub fn direct(url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            via_open_webui: false,
            api_key: None,
            model: model.into(),
            timeout: Duration::from_secs(60),
            max_retries: 5,
            max_batch: 64,
            ca_file: None,
        }
    }
}

/// Redacts the API key.
impl fmt::Debug for OllamaSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OllamaSettings")
            .field("url", &self.url)
            .field("via_open_webui", &self.via_open_webui)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("model", &self.model)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("max_batch", &self.max_batch)
            .finish()
    }
}

/// Live counters, shared with whoever holds a clone (pipeline metrics, tests).
#[derive(Debug, Clone, Default)]
pub struct EmbedderStats {
    /// HTTP embed requests sent, every attempt counted (retries included; model
    /// listing not).
    pub requests: Arc<AtomicU64>,
    /// Texts embedded successfully.
    pub texts: Arc<AtomicU64>,
    /// Attempts that were retried after a transient failure.
    pub retries: Arc<AtomicU64>,
}

/// A point-in-time copy of [`EmbedderStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EmbedderCounts {
    /// See [`EmbedderStats::requests`].
    pub requests: u64,
    /// See [`EmbedderStats::texts`].
    pub texts: u64,
    /// See [`EmbedderStats::retries`].
    pub retries: u64,
}

impl EmbedderStats {
    /// Reads all counters.
    pub fn snapshot(&self) -> EmbedderCounts {
        EmbedderCounts {
            requests: self.requests.load(Ordering::Relaxed),
            texts: self.texts.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
        }
    }
}

/// [`Embedder`] over the Ollama HTTP API.
pub struct OllamaEmbedder {
    client: reqwest::Client,
    /// The base URL without a trailing slash; named in errors.
    endpoint: String,
    embed_url: String,
    tags_url: String,
    api_key: Option<String>,
    model: String,
    max_retries: u32,
    max_batch: usize,
    backoff_base: Duration,
    backoff_cap: Duration,
    /// The dimension seen first (0 until then). A model that changes dimension
    /// mid-run would corrupt a collection, so later answers must match it.
    dimension: AtomicUsize,
    stats: EmbedderStats,
}

/// Redacts the API key.
impl fmt::Debug for OllamaEmbedder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OllamaEmbedder")
            .field("embed_url", &self.embed_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("model", &self.model)
            .field("max_retries", &self.max_retries)
            .field("max_batch", &self.max_batch)
            .field("stats", &self.stats.snapshot())
            .finish()
    }
}

#[derive(Serialize)]
struct EmbedBody<'a> {
    model: &'a str,
    input: &'a [String],
}

#[derive(Deserialize)]
struct EmbedReply {
    embeddings: Vec<Vec<f32>>,
}

#[derive(Deserialize)]
struct TagsReply {
    #[serde(default)]
    models: Vec<TagEntry>,
}

#[derive(Deserialize)]
struct TagEntry {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    model: Option<String>,
}

/// Which call a failure belongs to: only an embed call can blame the model.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Call {
    Embed,
    ListModels,
}

/// The verdict on one failed attempt.
enum Failure {
    /// Retrying may help; `retry_after` is the server's hint, if any.
    Retry {
        detail: String,
        retry_after: Option<Duration>,
    },
    /// Final for this call.
    Stop(EmbedError),
}

impl OllamaEmbedder {
    /// Builds the client. Fails (`Permanent`) if the URL does not parse or the HTTP
    /// client cannot be built.
    pub fn new(settings: OllamaSettings) -> Result<Self, EmbedError> {
        let endpoint = settings.url.trim_end_matches('/').to_string();
        // What errors and logs show of it: never a `user:password@`.
        let shown = crate::http::redact_url(&endpoint);
        let invalid = |detail: String| EmbedError::Permanent {
            endpoint: shown.clone(),
            detail,
        };
        let parsed =
            reqwest::Url::parse(&endpoint).map_err(|e| invalid(format!("invalid URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(invalid(format!(
                "unsupported URL scheme {:?}",
                parsed.scheme()
            )));
        }
        let client = crate::http::client(&crate::http::ClientSettings {
            timeout: Some(settings.timeout),
            ca_file: settings.ca_file.clone(),
            ..Default::default()
        })
        .map_err(|e| invalid(e.to_string()))?;
        let prefix = if settings.via_open_webui {
            format!("{endpoint}/ollama")
        } else {
            endpoint.clone()
        };
        Ok(Self {
            client,
            embed_url: format!("{prefix}/api/embed"),
            tags_url: format!("{prefix}/api/tags"),
            endpoint: shown,
            api_key: settings.api_key.filter(|k| !k.is_empty()),
            model: settings.model,
            max_retries: settings.max_retries,
            max_batch: settings.max_batch.max(1),
            backoff_base: DEFAULT_BACKOFF_BASE,
            backoff_cap: DEFAULT_BACKOFF_CAP,
            dimension: AtomicUsize::new(0),
            stats: EmbedderStats::default(),
        })
    }

    /// Replaces the retry backoff (tests use a short one so retries do not slow them).
    pub fn with_backoff(mut self, base: Duration, cap: Duration) -> Self {
        self.backoff_base = base;
        self.backoff_cap = cap.max(base);
        self
    }

    /// The live counters; clones share them.
    pub fn stats(&self) -> EmbedderStats {
        self.stats.clone()
    }

    /// The vector dimension seen so far, if any request has succeeded.
    pub fn dimension(&self) -> Option<usize> {
        match self.dimension.load(Ordering::Relaxed) {
            0 => None,
            d => Some(d),
        }
    }

    /// Embeds a short text and returns the model's dimension. Use at startup to
    /// check the model exists and to size the vector collection.
    pub async fn probe_dimension(&self) -> Result<usize, EmbedError> {
        let vectors = self.embed(&[PROBE_TEXT.to_string()]).await?;
        Ok(vectors.first().map_or(0, Vec::len))
    }

    /// Model names the endpoint offers (`GET /api/tags`, or `/ollama/api/tags`
    /// through Open WebUI).
    pub async fn list_models(&self) -> Result<Vec<String>, EmbedError> {
        let reply: TagsReply = self
            .send_with_retry(Call::ListModels, || self.client.get(&self.tags_url))
            .await?;
        Ok(reply
            .models
            .into_iter()
            .filter_map(|m| m.name.or(m.model))
            .collect())
    }

    /// One HTTP request's worth of texts.
    async fn embed_batch(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let body = EmbedBody {
            model: &self.model,
            input: texts,
        };
        // `.json()` sets `Content-Type: application/json`; Open WebUI answers 422
        // without it.
        let reply: EmbedReply = self
            .send_with_retry(Call::Embed, || {
                self.client.post(&self.embed_url).json(&body)
            })
            .await?;
        let vectors = reply.embeddings;
        if vectors.len() != texts.len() {
            return Err(EmbedError::CountMismatch {
                sent: texts.len(),
                got: vectors.len(),
            });
        }
        let expected = match self.dimension.load(Ordering::Relaxed) {
            0 => vectors.first().map_or(0, Vec::len),
            d => d,
        };
        if let Some(bad) = vectors.iter().find(|v| v.len() != expected || v.is_empty()) {
            return Err(EmbedError::DimensionMismatch {
                model: self.model.clone(),
                expected,
                got: bad.len(),
            });
        }
        if !vectors.is_empty() {
            // Two first batches racing may both see 0; the loser is checked here.
            if let Err(seen) =
                self.dimension
                    .compare_exchange(0, expected, Ordering::Relaxed, Ordering::Relaxed)
                && seen != expected
            {
                return Err(EmbedError::DimensionMismatch {
                    model: self.model.clone(),
                    expected: seen,
                    got: expected,
                });
            }
        }
        self.stats
            .texts
            .fetch_add(vectors.len() as u64, Ordering::Relaxed);
        Ok(vectors)
    }

    /// Sends the request `build` makes, retrying transient failures with exponential
    /// backoff and jitter, and decodes a successful body as `T`.
    async fn send_with_retry<T, F>(&self, call: Call, build: F) -> Result<T, EmbedError>
    where
        T: DeserializeOwned,
        F: Fn() -> RequestBuilder,
    {
        let mut attempt: u32 = 0;
        loop {
            if call == Call::Embed {
                self.stats.requests.fetch_add(1, Ordering::Relaxed);
            }
            let mut request = build();
            if let Some(key) = &self.api_key {
                // `bearer_auth` marks the header sensitive, so it is not logged.
                request = request.bearer_auth(key);
            }
            let failure = match request.send().await {
                Ok(response) if response.status().is_success() => {
                    match crate::http::read_capped(response, MAX_ANSWER_BYTES).await {
                        Ok(bytes) => {
                            return serde_json::from_slice(&bytes).map_err(|e| {
                                EmbedError::Permanent {
                                    endpoint: self.endpoint.clone(),
                                    detail: format!("unreadable response: {e}"),
                                }
                            });
                        }
                        Err(e @ crate::http::HttpError::TooLarge { .. }) => {
                            Failure::Stop(EmbedError::Permanent {
                                endpoint: self.endpoint.clone(),
                                detail: e.to_string(),
                            })
                        }
                        // The connection broke mid-body: worth another try.
                        Err(e) => Failure::Retry {
                            detail: self.scrub(&e.to_string()),
                            retry_after: None,
                        },
                    }
                }
                Ok(response) => {
                    let status = response.status();
                    let retry_after = crate::backoff::retry_after(response.headers());
                    // An error's body is read for its message only.
                    let body = crate::http::read_capped(response, MAX_ERROR_BODY_BYTES)
                        .await
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_default();
                    self.classify(call, status, &body, retry_after)
                }
                Err(e) => self.classify_transport(&e),
            };
            match failure {
                Failure::Stop(err) => return Err(err),
                Failure::Retry {
                    detail,
                    retry_after,
                } => {
                    if attempt >= self.max_retries {
                        return Err(EmbedError::Transient {
                            endpoint: self.endpoint.clone(),
                            detail: format!("{detail} (gave up after {} attempts)", attempt + 1),
                        });
                    }
                    let delay = self.backoff(attempt, retry_after);
                    crate::http::retrying("embed", &self.endpoint, attempt + 1, delay, &detail);
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
            }
        }
    }

    /// Classifies an HTTP error answer.
    fn classify(
        &self,
        call: Call,
        status: StatusCode,
        body: &str,
        retry_after: Option<Duration>,
    ) -> Failure {
        let message = self.scrub(&server_message(body));
        let detail = format!("HTTP {}: {message}", status.as_u16());
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Failure::Stop(EmbedError::Unauthorized {
                endpoint: self.endpoint.clone(),
                status: status.as_u16(),
            });
        }
        if status.is_server_error()
            || status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT
        {
            return Failure::Retry {
                detail,
                retry_after,
            };
        }
        if call == Call::Embed
            && (status == StatusCode::NOT_FOUND || status == StatusCode::BAD_REQUEST)
            && blames_model(body, &self.model)
        {
            return Failure::Stop(EmbedError::ModelNotFound {
                model: self.model.clone(),
                endpoint: self.endpoint.clone(),
                detail: message,
            });
        }
        let detail = if status == StatusCode::NOT_FOUND {
            // A 404 that does not name a model means the path is wrong: the usual
            // cause is pointing direct mode at Open WebUI or the reverse.
            format!("{detail} (is the URL right, and is via_open_webui set correctly?)")
        } else {
            detail
        };
        Failure::Stop(EmbedError::Permanent {
            endpoint: self.endpoint.clone(),
            detail,
        })
    }

    /// Classifies a failure to get an answer at all.
    fn classify_transport(&self, e: &reqwest::Error) -> Failure {
        let detail = self.scrub(&crate::http::describe(e));
        if e.is_builder() || e.is_redirect() {
            // The request itself is wrong; sending it again cannot help.
            return Failure::Stop(EmbedError::Permanent {
                endpoint: self.endpoint.clone(),
                detail,
            });
        }
        // Timeouts, refused or reset connections, DNS: the server may come back.
        Failure::Retry {
            detail,
            retry_after: None,
        }
    }

    /// The wait after failed attempt `attempt` (0-based): the one [`Backoff`],
    /// at least the server's `Retry-After`.
    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        Backoff::new(self.backoff_base, self.backoff_cap).delay(attempt, retry_after)
    }

    /// Removes the API key from text that will end up in an error or a log, in case
    /// a server echoes the request headers back.
    fn scrub(&self, text: &str) -> String {
        match &self.api_key {
            Some(key) if text.contains(key.as_str()) => text.replace(key.as_str(), "[redacted]"),
            _ => text.to_string(),
        }
    }
}

#[async_trait]
impl Embedder for OllamaEmbedder {
    fn model(&self) -> &str {
        &self.model
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(self.max_batch) {
            out.extend(self.embed_batch(batch).await?);
        }
        Ok(out)
    }
}

/// True when an error body says the model is missing: Ollama answers 404
/// `model "x" not found, try pulling it first`; Open WebUI's proxy 400
/// `Model 'x' was not found`.
fn blames_model(body: &str, model: &str) -> bool {
    let lower = body.to_lowercase();
    lower.contains("not found") && (lower.contains("model") || body.contains(model))
}

/// The message in an error body: Ollama's `error`, FastAPI's `detail`, or the text.
fn server_message(body: &str) -> String {
    let from_json = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            ["error", "detail", "message"]
                .iter()
                .find_map(|k| match v.get(k)? {
                    serde_json::Value::String(s) => Some(s.clone()),
                    other => Some(other.to_string()),
                })
        });
    let text = from_json.unwrap_or_else(|| body.trim().to_string());
    if text.is_empty() {
        return "(empty body)".to_string();
    }
    match text.char_indices().nth(MAX_DETAIL_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// Most bytes of an embedding answer ragd reads: a batch of 64 texts at 4,096
/// dimensions is about 3 MB of JSON; anything far beyond is not an answer.
const MAX_ANSWER_BYTES: usize = 64 << 20;
/// Most bytes of an error answer read for its message.
const MAX_ERROR_BODY_BYTES: usize = 64 << 10;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::server::{self, EmbedServerConfig};

    fn embedder(url: &str, model: &str) -> OllamaEmbedder {
        OllamaEmbedder::new(OllamaSettings::direct(url, model))
            .unwrap()
            .with_backoff(Duration::from_millis(1), Duration::from_millis(5))
    }

    #[test]
    fn urls_follow_the_mode() {
        let direct = embedder("http://h:11434/", "m");
        assert_eq!(direct.embed_url, "http://h:11434/api/embed");
        assert_eq!(direct.tags_url, "http://h:11434/api/tags");
        let mut s = OllamaSettings::direct("http://h:3000", "m");
        s.via_open_webui = true;
        let proxied = OllamaEmbedder::new(s).unwrap();
        assert_eq!(proxied.embed_url, "http://h:3000/ollama/api/embed");
        assert_eq!(proxied.tags_url, "http://h:3000/ollama/api/tags");
        assert!(OllamaEmbedder::new(OllamaSettings::direct("not a url", "m")).is_err());
        assert!(OllamaEmbedder::new(OllamaSettings::direct("ftp://h", "m")).is_err());
    }

    #[test]
    fn debug_output_never_shows_the_key() {
        let mut s = OllamaSettings::direct("http://h", "m");
        s.api_key = Some("sk-very-secret".into());
        assert!(!format!("{s:?}").contains("sk-very-secret"));
        let e = OllamaEmbedder::new(s).unwrap();
        assert!(!format!("{e:?}").contains("sk-very-secret"));
        assert_eq!(e.scrub("echo sk-very-secret"), "echo [redacted]");
    }

    #[test]
    fn statuses_are_classified() {
        let e = embedder("http://h", "nomic");
        let stop = |status: u16, body: &str| match e.classify(
            Call::Embed,
            StatusCode::from_u16(status).unwrap(),
            body,
            None,
        ) {
            Failure::Stop(err) => Some(err),
            Failure::Retry { .. } => None,
        };
        assert!(matches!(
            stop(404, r#"{"error":"model \"nomic\" not found, try pulling it first"}"#),
            Some(EmbedError::ModelNotFound { model, .. }) if model == "nomic"
        ));
        assert!(matches!(
            stop(400, r#"{"detail":"Model 'nomic' was not found"}"#),
            Some(EmbedError::ModelNotFound { .. })
        ));
        assert!(matches!(
            stop(404, "404 page not found"),
            Some(EmbedError::Permanent { detail, .. }) if detail.contains("via_open_webui")
        ));
        assert!(matches!(
            stop(401, ""),
            Some(EmbedError::Unauthorized { status: 401, .. })
        ));
        assert!(matches!(
            stop(403, ""),
            Some(EmbedError::Unauthorized { status: 403, .. })
        ));
        assert!(matches!(
            stop(400, r#"{"error":"input too long"}"#),
            Some(EmbedError::Permanent { detail, .. }) if detail.contains("input too long")
        ));
        for status in [500, 502, 503, 504, 429, 408] {
            assert!(stop(status, "").is_none(), "{status} should be retried");
        }
        // Listing models cannot blame the model.
        assert!(matches!(
            e.classify(
                Call::ListModels,
                StatusCode::NOT_FOUND,
                "model not found",
                None
            ),
            Failure::Stop(EmbedError::Permanent { .. })
        ));
    }

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        let e = OllamaEmbedder::new(OllamaSettings::direct("http://h", "m"))
            .unwrap()
            .with_backoff(Duration::from_millis(200), Duration::from_secs(2));
        for attempt in 0..20 {
            let d = e.backoff(attempt, None);
            let full = Duration::from_millis(200)
                .saturating_mul(2u32.saturating_pow(attempt))
                .min(Duration::from_secs(2));
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
        }
        assert!(e.backoff(0, Some(Duration::from_secs(7))) >= Duration::from_secs(7));
        assert!(e.backoff(0, Some(Duration::from_secs(3600))) <= crate::backoff::MAX_HINT);
    }

    #[test]
    fn server_messages_are_extracted_and_cut() {
        assert_eq!(server_message(r#"{"error":"boom"}"#), "boom");
        assert_eq!(server_message(r#"{"detail":"nope"}"#), "nope");
        assert_eq!(server_message("plain"), "plain");
        assert_eq!(server_message(""), "(empty body)");
        let long = "é".repeat(2000);
        assert_eq!(server_message(&long).chars().count(), MAX_DETAIL_CHARS + 1);
    }

    #[tokio::test]
    async fn embeds_lists_and_probes_against_the_project_server() {
        let srv = server::spawn(
            EmbedServerConfig::single("hash-embed", 24),
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .unwrap();
        let e = embedder(&srv.url(), "hash-embed");
        assert_eq!(e.probe_dimension().await.unwrap(), 24);
        assert_eq!(e.dimension(), Some(24));
        assert_eq!(e.list_models().await.unwrap(), vec!["hash-embed:latest"]);
        assert!(e.embed(&[]).await.unwrap().is_empty());
        let counts = e.stats().snapshot();
        assert_eq!((counts.requests, counts.texts, counts.retries), (1, 1, 0));
    }

    #[tokio::test]
    async fn connection_refused_is_transient_after_retries() {
        // Bind then drop a listener to get a port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut s = OllamaSettings::direct(format!("http://127.0.0.1:{port}"), "m");
        s.max_retries = 2;
        let e = OllamaEmbedder::new(s)
            .unwrap()
            .with_backoff(Duration::from_millis(1), Duration::from_millis(2));
        let err = e.embed(&["x".to_string()]).await.unwrap_err();
        assert!(err.is_transient(), "{err}");
        assert_eq!(e.stats().snapshot().requests, 3);
        assert_eq!(e.stats().snapshot().retries, 2);
    }

    #[tokio::test]
    async fn a_changed_dimension_is_caught() {
        let srv = server::spawn(
            EmbedServerConfig {
                models: vec![("a".into(), 8), ("b".into(), 16)],
                ..EmbedServerConfig::default()
            },
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .unwrap();
        let e = embedder(&srv.url(), "a");
        e.probe_dimension().await.unwrap();
        // Simulate the server swapping the model behind the same name.
        e.dimension.store(16, Ordering::Relaxed);
        let err = e.embed(&["x".to_string()]).await.unwrap_err();
        assert!(matches!(
            err,
            EmbedError::DimensionMismatch {
                expected: 16,
                got: 8,
                ..
            }
        ));
    }

    /// A stand-in for Open WebUI's `/ollama` proxy that insists on what the real one
    /// needs: the bearer key and a JSON content type.
    async fn fake_open_webui(key: &'static str) -> (String, tokio::task::JoinHandle<()>) {
        use axum::http::{HeaderMap, StatusCode as S};
        use axum::routing::{get, post};
        use serde_json::{Value, json};

        fn authorised(headers: &HeaderMap, key: &str) -> bool {
            headers.get("authorization").and_then(|v| v.to_str().ok())
                == Some(format!("Bearer {key}").as_str())
        }
        let app = axum::Router::new()
            .route(
                "/ollama/api/embed",
                post(move |headers: HeaderMap, body: String| async move {
                    if !authorised(&headers, key) {
                        return (
                            S::UNAUTHORIZED,
                            json!({"detail": "Not authenticated"}).to_string(),
                        );
                    }
                    if headers.get("content-type").and_then(|v| v.to_str().ok())
                        != Some("application/json")
                    {
                        return (S::UNPROCESSABLE_ENTITY, "{}".to_string());
                    }
                    let req: Value = serde_json::from_str(&body).unwrap();
                    if req["model"] != "hash-embed" {
                        let detail =
                            format!("Model '{}' was not found", req["model"].as_str().unwrap());
                        return (S::BAD_REQUEST, json!({ "detail": detail }).to_string());
                    }
                    let e = server::HashEmbedder::new(4);
                    let vectors: Vec<Vec<f32>> = req["input"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|t| e.embed_one(t.as_str().unwrap()))
                        .collect();
                    (S::OK, json!({ "embeddings": vectors }).to_string())
                }),
            )
            .route(
                "/ollama/api/tags",
                get(move |headers: HeaderMap| async move {
                    if !authorised(&headers, key) {
                        return (S::UNAUTHORIZED, String::new());
                    }
                    (
                        S::OK,
                        json!({"models": [{"name": "hash-embed:latest"}]}).to_string(),
                    )
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        (url, task)
    }

    #[tokio::test]
    async fn through_open_webui_the_key_and_proxy_path_are_used() {
        let (url, task) = fake_open_webui("sk-test-key").await;
        let settings = |key: &str, model: &str| OllamaSettings {
            via_open_webui: true,
            api_key: Some(key.to_string()),
            ..OllamaSettings::direct(url.clone(), model)
        };

        let good = OllamaEmbedder::new(settings("sk-test-key", "hash-embed")).unwrap();
        assert_eq!(good.probe_dimension().await.unwrap(), 4);
        assert_eq!(good.list_models().await.unwrap(), vec!["hash-embed:latest"]);

        let wrong_key = OllamaEmbedder::new(settings("sk-wrong", "hash-embed")).unwrap();
        let err = wrong_key.embed(&["x".to_string()]).await.unwrap_err();
        assert!(matches!(err, EmbedError::Unauthorized { status: 401, .. }));
        assert!(!format!("{err:?} {err}").contains("sk-wrong"));

        let missing = OllamaEmbedder::new(settings("sk-test-key", "absent")).unwrap();
        let err = missing.embed(&["x".to_string()]).await.unwrap_err();
        assert!(matches!(err, EmbedError::ModelNotFound { ref model, .. } if model == "absent"));
        task.abort();
    }
}
