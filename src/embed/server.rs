//! The project's own Ollama-API-compatible embedding server.
//!
//! No Ollama binary can be installed where ragd is developed and tested, yet both ragd
//! and Open WebUI (configured with `OLLAMA_BASE_URL`) need an Ollama-API endpoint to
//! embed through. This server answers the part of the Ollama API they use, with
//! vectors from [`HashEmbedder`]: deterministic, dependency-free, and good enough that a
//! query finds the document containing its words.
//!
//! It doubles as a test fake: [`EmbedServerHandle`] counts requests and texts, measures
//! busy time for benchmarks, and injects faults (`fail_next`, `set_fail_rate`) and
//! latency (`set_delay`).

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{EmbedError, Embedder};

/// The version reported by `GET /api/version`; Open WebUI only checks that one answers.
pub const OLLAMA_VERSION: &str = "0.6.0";

/// Request bodies above this are refused. Axum's 2 MB default is too small for the
/// large batches benchmarks send.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// How long [`EmbedServerHandle::shutdown`] lets in-flight requests finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

// Feature weights. Words carry the meaning; bigrams reward shared phrases; character
// trigrams make inflections ("index", "indexing") land near each other, but weigh
// less so they do not drown the word signal.
const WORD_WEIGHT: f32 = 1.0;
const BIGRAM_WEIGHT: f32 = 0.7;
const TRIGRAM_WEIGHT: f32 = 0.2;

/// Deterministic "feature hashing" embedder.
///
/// The text is lowercased and split into words (runs of Unicode alphanumerics). Each
/// word, each pair of adjacent words, and each character trigram of a word is hashed
/// (FNV-1a, then a fixed mixer: stable across runs, platforms and Rust versions) into
/// one of `dim` buckets with a ±1 sign; the vector is then L2-normalised. Texts that
/// share words therefore have a high cosine similarity.
#[derive(Debug, Clone)]
pub struct HashEmbedder {
    dim: usize,
    model: String,
}

impl HashEmbedder {
    /// An embedder producing `dim`-dimensional vectors, named `hash-embed`.
    ///
    /// Panics if `dim` is 0: a zero-dimensional vector cannot be normalised or stored.
    pub fn new(dim: usize) -> Self {
        Self::with_model("hash-embed", dim)
    }

    /// Like [`HashEmbedder::new`], reporting `model` from [`Embedder::model`].
    pub fn with_model(model: impl Into<String>, dim: usize) -> Self {
        assert!(dim > 0, "HashEmbedder dimension must be positive");
        Self {
            dim,
            model: model.into(),
        }
    }

    /// The vector dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The embedding of one text: `dim` floats with unit L2 norm.
    pub fn embed_one(&self, text: &str) -> Vec<f32> {
        let mut v = vec![0.0f32; self.dim];
        let lower = text.to_lowercase();
        let words: Vec<&str> = lower
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .collect();

        for word in &words {
            self.add(&mut v, b'w', &[word], WORD_WEIGHT);
            // Pad with boundary markers so prefixes and suffixes are features too.
            let chars: Vec<char> = std::iter::once('^')
                .chain(word.chars())
                .chain(std::iter::once('$'))
                .collect();
            // The trigram's UTF-8 bytes in a stack buffer: the same feature as
            // hashing a `String` of it, without an allocation per trigram.
            let mut buf = [0u8; 12];
            for tri in chars.windows(3) {
                let mut len = 0;
                for c in tri {
                    len += c.encode_utf8(&mut buf[len..]).len();
                }
                let tri = std::str::from_utf8(&buf[..len]).unwrap_or_default();
                self.add(&mut v, b't', &[tri], TRIGRAM_WEIGHT);
            }
        }
        for pair in words.windows(2) {
            self.add(&mut v, b'b', pair, BIGRAM_WEIGHT);
        }

        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm == 0.0 {
            // No words (empty or punctuation only). A zero vector has no cosine
            // similarity with anything and some stores reject it, so give every such
            // text the same fixed unit vector instead.
            self.add(&mut v, b'e', &[], 1.0);
            return v.into_iter().map(f32::abs).collect();
        }
        v.iter_mut().for_each(|x| *x /= norm);
        v
    }

    fn add(&self, v: &mut [f32], kind: u8, parts: &[&str], weight: f32) {
        let h = feature_hash(kind, parts);
        // `dim` fits in u64 on every platform Rust supports; the remainder fits in usize.
        let bucket = (h % self.dim as u64) as usize;
        let sign = if h >> 63 == 0 { 1.0 } else { -1.0 };
        v[bucket] += sign * weight;
    }
}

#[async_trait]
impl Embedder for HashEmbedder {
    fn model(&self) -> &str {
        &self.model
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        Ok(texts.iter().map(|t| self.embed_one(t)).collect())
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// 64-bit FNV-1a. Written out rather than taken from `std::hash`, whose output is not
/// guaranteed stable across Rust releases.
fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// Hash of a feature: its kind tag, then its parts separated by a byte that never
/// occurs in UTF-8, finished with the murmur3 `fmix64` mixer so the high bit (the sign)
/// and the low bits (the bucket) are both well spread.
fn feature_hash(kind: u8, parts: &[&str]) -> u64 {
    let mut h = fnv1a(FNV_OFFSET, &[kind]);
    for part in parts {
        h = fnv1a(h, &[0xff]);
        h = fnv1a(h, part.as_bytes());
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// What the server serves and how it behaves.
#[derive(Debug, Clone)]
pub struct EmbedServerConfig {
    /// Models as (name, dimension). A name without a tag is served as `name:latest`;
    /// requests match with or without the `:latest` tag.
    pub models: Vec<(String, usize)>,
    /// Simulated model latency: each embed request sleeps `delay_per_text * texts`
    /// (tokio sleep; the runtime is not blocked).
    pub delay_per_text: Duration,
    /// Refuse embed requests with more inputs than this (HTTP 413), to test that
    /// clients split batches. `None`: no limit.
    pub max_batch: Option<usize>,
}

impl EmbedServerConfig {
    /// One model, no delay, no batch limit.
    pub fn single(name: impl Into<String>, dim: usize) -> Self {
        Self {
            models: vec![(name.into(), dim)],
            delay_per_text: Duration::ZERO,
            max_batch: None,
        }
    }
}

impl Default for EmbedServerConfig {
    /// `hash-embed` with 384 dimensions (the size of all-MiniLM-L6-v2).
    fn default() -> Self {
        Self::single("hash-embed", 384)
    }
}

/// Parses a `--model` value of the form `name=dim`, e.g. `hash-embed=384`.
pub fn parse_model_spec(spec: &str) -> Result<(String, usize), String> {
    let (name, dim) = spec
        .split_once('=')
        .ok_or_else(|| format!("model spec {spec:?} is not of the form NAME=DIM"))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("model spec {spec:?} has an empty name"));
    }
    let dim: usize = dim
        .trim()
        .parse()
        .map_err(|e| format!("model spec {spec:?}: dimension: {e}"))?;
    if dim == 0 {
        return Err(format!("model spec {spec:?}: dimension must be positive"));
    }
    Ok((name.to_string(), dim))
}

/// The canonical form of a model name: Ollama treats `name` as `name:latest`.
fn canonical_model_name(name: &str) -> String {
    if name.contains(':') {
        name.to_string()
    } else {
        format!("{name}:latest")
    }
}

/// A point-in-time copy of the server's counters. Subtract two snapshots to measure
/// a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EmbedServerStats {
    /// Embed requests received (`/api/embed` and `/api/embeddings`), including those
    /// answered with an injected or validation failure.
    pub requests: u64,
    /// Texts embedded successfully.
    pub texts: u64,
    /// Wall time during which at least one embed request was being served
    /// (overlapping requests count once).
    pub busy: Duration,
    /// Embed requests being served now.
    pub in_flight: usize,
    /// The most embed requests ever served at the same time.
    pub max_in_flight: usize,
}

struct ServedModel {
    /// Canonical name, with tag.
    name: String,
    embedder: HashEmbedder,
    digest: String,
}

#[derive(Default)]
struct Faults {
    /// The next `fail_next_count` embed requests answer `fail_next_status`.
    fail_next_count: u32,
    fail_next_status: u16,
    /// Share (0..=1) of embed requests answered with 503.
    fail_rate: f64,
}

/// Union of the intervals during which requests were in flight.
#[derive(Default)]
struct BusyClock {
    in_flight: usize,
    max_in_flight: usize,
    since: Option<Instant>,
    total: Duration,
}

struct Shared {
    models: Vec<ServedModel>,
    max_batch: Option<usize>,
    delay_per_text_nanos: AtomicU64,
    faults: Mutex<Faults>,
    busy: Mutex<BusyClock>,
    requests: AtomicU64,
    texts: AtomicU64,
}

/// Locks a mutex, ignoring poisoning: the guarded data are plain counters that a
/// panicking holder cannot leave inconsistent in a way that matters.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn new(config: &EmbedServerConfig) -> io::Result<Self> {
        if config.models.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the embedding server needs at least one model",
            ));
        }
        let mut models: Vec<ServedModel> = Vec::with_capacity(config.models.len());
        for (name, dim) in &config.models {
            if *dim == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("model {name:?}: dimension must be positive"),
                ));
            }
            let canonical = canonical_model_name(name);
            if models.iter().any(|m| m.name == canonical) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("model {canonical:?} configured twice"),
                ));
            }
            let digest = hex::encode(Sha256::digest(format!("{canonical}/{dim}").as_bytes()));
            models.push(ServedModel {
                embedder: HashEmbedder::with_model(canonical.clone(), *dim),
                name: canonical,
                digest,
            });
        }
        Ok(Self {
            models,
            max_batch: config.max_batch,
            delay_per_text_nanos: AtomicU64::new(duration_nanos(config.delay_per_text)),
            faults: Mutex::new(Faults::default()),
            busy: Mutex::new(BusyClock::default()),
            requests: AtomicU64::new(0),
            texts: AtomicU64::new(0),
        })
    }

    fn find_model(&self, requested: &str) -> Option<&ServedModel> {
        let wanted = canonical_model_name(requested);
        self.models.iter().find(|m| m.name == wanted)
    }

    /// The status to answer instead of serving, if a fault is due.
    fn injected_failure(&self) -> Option<StatusCode> {
        let mut faults = lock(&self.faults);
        if faults.fail_next_count > 0 {
            faults.fail_next_count -= 1;
            return Some(
                StatusCode::from_u16(faults.fail_next_status)
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            );
        }
        if faults.fail_rate > 0.0 && rand::random::<f64>() < faults.fail_rate {
            return Some(StatusCode::SERVICE_UNAVAILABLE);
        }
        None
    }

    fn delay_for(&self, texts: usize) -> Duration {
        let per_text = Duration::from_nanos(self.delay_per_text_nanos.load(Ordering::Relaxed));
        per_text.saturating_mul(u32::try_from(texts).unwrap_or(u32::MAX))
    }

    /// Marks a request as in flight until the guard drops. A guard (not explicit
    /// calls) so a request whose client disconnects mid-delay still ends its interval.
    fn begin_request(self: &Arc<Self>) -> BusyGuard {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut busy = lock(&self.busy);
        if busy.in_flight == 0 {
            busy.since = Some(Instant::now());
        }
        busy.in_flight += 1;
        busy.max_in_flight = busy.max_in_flight.max(busy.in_flight);
        BusyGuard(Arc::clone(self))
    }

    fn stats(&self) -> EmbedServerStats {
        let busy = lock(&self.busy);
        let open = match busy.since {
            Some(since) if busy.in_flight > 0 => since.elapsed(),
            _ => Duration::ZERO,
        };
        EmbedServerStats {
            requests: self.requests.load(Ordering::Relaxed),
            texts: self.texts.load(Ordering::Relaxed),
            busy: busy.total + open,
            in_flight: busy.in_flight,
            max_in_flight: busy.max_in_flight,
        }
    }
}

struct BusyGuard(Arc<Shared>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        let mut busy = lock(&self.0.busy);
        busy.in_flight -= 1;
        if busy.in_flight == 0
            && let Some(since) = busy.since.take()
        {
            busy.total += since.elapsed();
        }
    }
}

fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// An Ollama-style error: `{"error": "..."}`.
fn ollama_error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

fn model_not_found(name: &str) -> Response {
    ollama_error(
        StatusCode::NOT_FOUND,
        format!("model \"{name}\" not found, try pulling it first"),
    )
}

/// Both `"input": "text"` and `"input": ["a", "b"]` are valid.
#[derive(Deserialize)]
#[serde(untagged)]
enum EmbedInput {
    One(String),
    Many(Vec<String>),
}

/// `POST /api/embed`. Unknown fields (`options`, …) are accepted and ignored, as
/// Ollama does.
#[derive(Deserialize)]
struct EmbedRequest {
    #[serde(default)]
    model: String,
    #[serde(default)]
    input: Option<EmbedInput>,
    /// Accepted for compatibility; texts are never truncated.
    #[serde(default, rename = "truncate")]
    _truncate: Option<bool>,
    /// Accepted for compatibility; there is nothing to keep loaded.
    #[serde(default, rename = "keep_alive")]
    _keep_alive: Option<Value>,
    #[serde(default)]
    dimensions: Option<usize>,
}

/// `POST /api/embeddings` (the legacy, one-prompt API).
#[derive(Deserialize)]
struct LegacyEmbedRequest {
    #[serde(default)]
    model: String,
    #[serde(default)]
    prompt: String,
}

/// `POST /api/show`: Ollama takes `model`, older clients send `name`.
#[derive(Deserialize)]
struct ShowRequest {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

type AppState = State<Arc<Shared>>;

async fn root() -> &'static str {
    "Ollama is running"
}

async fn version() -> Response {
    axum::Json(json!({ "version": OLLAMA_VERSION })).into_response()
}

/// `GET /api/ragd/stats` (not Ollama's): the counters, so that a script can tell
/// how many embedding calls a client made through a standalone `ragd embed-server`
/// (scripts/bench-external.sh counts Open WebUI's).
async fn stats(State(shared): AppState) -> Response {
    let s = shared.stats();
    axum::Json(json!({
        "requests": s.requests,
        "texts": s.texts,
        "busy_ms": s.busy.as_millis() as u64,
    }))
    .into_response()
}

/// A fixed timestamp keeps every response deterministic.
const MODIFIED_AT: &str = "2024-01-01T00:00:00Z";

fn model_details(m: &ServedModel) -> Value {
    json!({
        "parent_model": "",
        "format": "gguf",
        "family": "hash-embed",
        "families": ["hash-embed"],
        "parameter_size": "0M",
        "quantization_level": "F32",
        "embedding_length": m.embedder.dim(),
    })
}

async fn tags(State(shared): AppState) -> Response {
    let models: Vec<Value> = shared
        .models
        .iter()
        .map(|m| {
            json!({
                "name": m.name,
                "model": m.name,
                "modified_at": MODIFIED_AT,
                "size": m.embedder.dim() * 4,
                "digest": m.digest,
                "details": model_details(m),
            })
        })
        .collect();
    axum::Json(json!({ "models": models })).into_response()
}

async fn ps(State(shared): AppState) -> Response {
    let models: Vec<Value> = shared
        .models
        .iter()
        .map(|m| {
            json!({
                "name": m.name,
                "model": m.name,
                "size": m.embedder.dim() * 4,
                "digest": m.digest,
                "details": model_details(m),
                "expires_at": "2999-01-01T00:00:00Z",
                "size_vram": 0,
            })
        })
        .collect();
    axum::Json(json!({ "models": models })).into_response()
}

async fn show(State(shared): AppState, body: Bytes) -> Response {
    let req: ShowRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return ollama_error(StatusCode::BAD_REQUEST, format!("invalid request: {e}")),
    };
    let Some(name) = req.model.or(req.name).filter(|n| !n.is_empty()) else {
        return ollama_error(StatusCode::BAD_REQUEST, "model is required");
    };
    let Some(m) = shared.find_model(&name) else {
        return model_not_found(&name);
    };
    axum::Json(json!({
        "license": "",
        "modelfile": format!("# hash-embed: deterministic feature hashing\nFROM {}\n", m.name),
        "parameters": "",
        "template": "",
        "details": model_details(m),
        "model_info": {
            "general.architecture": "hash-embed",
            "hash-embed.embedding_length": m.embedder.dim(),
        },
        "capabilities": ["embedding"],
        "modified_at": MODIFIED_AT,
    }))
    .into_response()
}

async fn embed(State(shared): AppState, body: Bytes) -> Response {
    let _busy = shared.begin_request();
    if let Some(status) = shared.injected_failure() {
        return ollama_error(status, "injected failure");
    }
    let req: EmbedRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return ollama_error(StatusCode::BAD_REQUEST, format!("invalid request: {e}")),
    };
    if req.model.is_empty() {
        return ollama_error(StatusCode::BAD_REQUEST, "model is required");
    }
    let Some(model) = shared.find_model(&req.model) else {
        return model_not_found(&req.model);
    };
    let inputs = match req.input {
        None => Vec::new(),
        Some(EmbedInput::One(s)) => vec![s],
        Some(EmbedInput::Many(v)) => v,
    };
    if let Some(max) = shared.max_batch
        && inputs.len() > max
    {
        return ollama_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "batch of {} inputs exceeds this server's limit of {max}",
                inputs.len()
            ),
        );
    }
    let dim = model.embedder.dim();
    let keep = match req.dimensions {
        None | Some(0) => dim,
        Some(d) if d <= dim => d,
        Some(d) => {
            return ollama_error(
                StatusCode::BAD_REQUEST,
                format!("dimensions {d} exceeds the model's embedding length {dim}"),
            );
        }
    };

    let started = Instant::now();
    let delay = shared.delay_for(inputs.len());
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut words = 0usize;
    let embeddings: Vec<Vec<f32>> = inputs
        .iter()
        .map(|text| {
            words += text.split_whitespace().count();
            let v = model.embedder.embed_one(text);
            if keep == dim {
                v
            } else {
                truncate_normalised(v, keep)
            }
        })
        .collect();
    shared
        .texts
        .fetch_add(embeddings.len() as u64, Ordering::Relaxed);
    // Typed, so the floats are written as f32 (shortest form, as Ollama's Go
    // encoder does), not widened to f64 with twice the digits by `json!`.
    axum::Json(EmbedResponse {
        model: &req.model,
        embeddings,
        total_duration: duration_nanos(started.elapsed()),
        load_duration: 0,
        prompt_eval_count: words,
    })
    .into_response()
}

#[derive(Serialize)]
struct EmbedResponse<'a> {
    model: &'a str,
    embeddings: Vec<Vec<f32>>,
    total_duration: u64,
    load_duration: u64,
    prompt_eval_count: usize,
}

/// Matryoshka-style truncation, as Ollama does for `dimensions`: keep a prefix and
/// renormalise it.
fn truncate_normalised(mut v: Vec<f32>, keep: usize) -> Vec<f32> {
    v.truncate(keep);
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

async fn legacy_embeddings(State(shared): AppState, body: Bytes) -> Response {
    let _busy = shared.begin_request();
    if let Some(status) = shared.injected_failure() {
        return ollama_error(status, "injected failure");
    }
    let req: LegacyEmbedRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return ollama_error(StatusCode::BAD_REQUEST, format!("invalid request: {e}")),
    };
    let Some(model) = shared.find_model(&req.model) else {
        return model_not_found(&req.model);
    };
    let delay = shared.delay_for(1);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let embedding = model.embedder.embed_one(&req.prompt);
    shared.texts.fetch_add(1, Ordering::Relaxed);
    #[derive(Serialize)]
    struct LegacyResponse {
        embedding: Vec<f32>,
    }
    axum::Json(LegacyResponse { embedding }).into_response()
}

/// Ollama answers unknown paths with a plain-text 404.
async fn fallback() -> Response {
    (StatusCode::NOT_FOUND, "404 page not found").into_response()
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/api/version", get(version))
        .route("/api/tags", get(tags))
        .route("/api/ps", get(ps))
        .route("/api/show", post(show))
        .route("/api/embed", post(embed))
        .route("/api/embeddings", post(legacy_embeddings))
        .route("/api/ragd/stats", get(stats))
        .fallback(fallback)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(shared)
}

/// A running embedding server. Dropping the handle stops the server (without waiting);
/// [`EmbedServerHandle::shutdown`] stops it and waits.
pub struct EmbedServerHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl std::fmt::Debug for EmbedServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbedServerHandle")
            .field("addr", &self.addr)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Binds `addr` (use port 0 for tests) and serves in a background task.
///
/// Fails if the config is invalid (no models, a zero dimension, a duplicate name) or
/// the address cannot be bound.
pub async fn spawn(config: EmbedServerConfig, addr: SocketAddr) -> io::Result<EmbedServerHandle> {
    let shared = Arc::new(Shared::new(&config)?);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let cancel = CancellationToken::new();
    let app = router(Arc::clone(&shared));
    let stop = cancel.clone();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
    });
    tracing::debug!(%addr, models = config.models.len(), "embedding server listening");
    Ok(EmbedServerHandle {
        addr,
        shared,
        cancel,
        task: Some(task),
    })
}

/// Runs the server until ctrl-c, then drains and returns. Entry point for
/// `ragd embed-server`.
pub async fn serve_forever(config: EmbedServerConfig, addr: SocketAddr) -> io::Result<()> {
    let names: Vec<String> = config
        .models
        .iter()
        .map(|(n, d)| format!("{}={d}", canonical_model_name(n)))
        .collect();
    let handle = spawn(config, addr).await?;
    tracing::info!(addr = %handle.addr(), models = ?names, "embedding server listening");
    tokio::signal::ctrl_c().await?;
    tracing::info!("ctrl-c received, stopping the embedding server");
    handle.shutdown().await
}

impl EmbedServerHandle {
    /// The bound address (the real port when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL, e.g. `http://127.0.0.1:41234` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> EmbedServerStats {
        self.shared.stats()
    }

    /// The next `n` embed requests answer `status` (with an Ollama-style error body)
    /// instead of embedding. An invalid status code becomes 500. Replaces any pending
    /// `fail_next`.
    pub fn fail_next(&self, n: u32, status: u16) {
        let mut faults = lock(&self.shared.faults);
        faults.fail_next_count = n;
        faults.fail_next_status = status;
    }

    /// A random share `rate` (clamped to 0..=1) of embed requests answer 503.
    pub fn set_fail_rate(&self, rate: f64) {
        lock(&self.shared.faults).fail_rate = if rate.is_nan() {
            0.0
        } else {
            rate.clamp(0.0, 1.0)
        };
    }

    /// Changes the simulated latency per text for requests that start from now on.
    pub fn set_delay(&self, delay_per_text: Duration) {
        self.shared
            .delay_per_text_nanos
            .store(duration_nanos(delay_per_text), Ordering::Relaxed);
    }

    /// Stops accepting, lets in-flight requests finish (at most 10 s, then aborts),
    /// and waits for the server task.
    pub async fn shutdown(mut self) -> io::Result<()> {
        self.cancel.cancel();
        let Some(mut task) = self.task.take() else {
            return Ok(());
        };
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(io::Error::other(join)),
            Err(_) => {
                task.abort();
                Ok(())
            }
        }
    }
}

impl Drop for EmbedServerHandle {
    fn drop(&mut self) {
        // Tests drop handles without calling shutdown; do not leave servers behind.
        self.cancel.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Number of buckets used, to check the hashing spreads.
    fn nonzero(v: &[f32]) -> usize {
        v.iter().filter(|x| **x != 0.0).count()
    }

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn fnv1a_matches_the_published_test_vectors() {
        // Pins the hash: vectors stored by one build must match queries from another.
        assert_eq!(fnv1a(FNV_OFFSET, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(FNV_OFFSET, b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn embedding_is_pinned_across_builds() {
        // If this changes, every stored hash-embed vector is invalidated.
        let v = HashEmbedder::new(8).embed_one("Hello, world");
        let rounded: Vec<i32> = v.iter().map(|x| (x * 1000.0).round() as i32).collect();
        let again: Vec<i32> = HashEmbedder::new(8)
            .embed_one("hello WORLD")
            .iter()
            .map(|x| (x * 1000.0).round() as i32)
            .collect();
        assert_eq!(rounded, again, "case and punctuation must not matter");
        assert_eq!(
            feature_hash(b'w', &["hello"]),
            feature_hash(b'w', &["hello"])
        );
        assert_ne!(
            feature_hash(b'w', &["ab", "c"]),
            feature_hash(b'w', &["a", "bc"])
        );
        assert_ne!(feature_hash(b'w', &["x"]), feature_hash(b't', &["x"]));
    }

    #[test]
    fn vectors_are_unit_length_and_deterministic() {
        let e = HashEmbedder::new(384);
        for text in [
            "the quick brown fox",
            "",
            "  ...  ",
            "Ünïcödé wörds 日本語 テキスト",
        ] {
            let v = e.embed_one(text);
            assert_eq!(v.len(), 384);
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5, "{text:?}: norm {norm}");
            assert_eq!(v, e.embed_one(text));
        }
        assert!(nonzero(&e.embed_one("the quick brown fox")) > 10);
    }

    #[test]
    fn shared_words_mean_high_similarity() {
        let e = HashEmbedder::new(384);
        let q = e.embed_one("the quick brown fox");
        let doc = e.embed_one("A story: the quick brown fox jumps over the lazy dog.");
        let other = e.embed_one("Quarterly revenue grew by seven percent in Europe.");
        let (near, far) = (cosine(&q, &doc), cosine(&q, &other));
        assert!(near > 0.5, "near {near}");
        assert!(far < 0.2, "far {far}");
        // Trigrams weigh little, but enough to put inflections nearer than strangers.
        let inflected = cosine(&e.embed_one("indexing"), &e.embed_one("index"));
        let stranger = cosine(&e.embed_one("indexing"), &e.embed_one("banana"));
        assert!(inflected > stranger + 0.1, "{inflected} vs {stranger}");
    }

    #[test]
    fn model_names_match_with_and_without_latest() {
        assert_eq!(canonical_model_name("hash-embed"), "hash-embed:latest");
        assert_eq!(
            canonical_model_name("hash-embed:latest"),
            "hash-embed:latest"
        );
        assert_eq!(canonical_model_name("m:v1"), "m:v1");
        let shared = Shared::new(&EmbedServerConfig::single("hash-embed", 4)).unwrap();
        assert!(shared.find_model("hash-embed").is_some());
        assert!(shared.find_model("hash-embed:latest").is_some());
        assert!(shared.find_model("hash-embed:v2").is_none());
        assert!(shared.find_model("other").is_none());
    }

    #[test]
    fn invalid_configs_are_refused() {
        let mut c = EmbedServerConfig::single("a", 0);
        assert!(Shared::new(&c).is_err());
        c.models = vec![];
        assert!(Shared::new(&c).is_err());
        c.models = vec![("a".into(), 4), ("a:latest".into(), 8)];
        assert!(Shared::new(&c).is_err());
    }

    #[test]
    fn model_specs_parse() {
        assert_eq!(
            parse_model_spec("hash-embed=384"),
            Ok(("hash-embed".to_string(), 384))
        );
        assert!(parse_model_spec("hash-embed").is_err());
        assert!(parse_model_spec("=3").is_err());
        assert!(parse_model_spec("a=0").is_err());
        assert!(parse_model_spec("a=x").is_err());
    }

    #[test]
    fn request_input_may_be_a_string_or_a_list() {
        let one: EmbedRequest =
            serde_json::from_str(r#"{"model":"m","input":"hi","keep_alive":"5m","options":{}}"#)
                .unwrap();
        assert!(matches!(one.input, Some(EmbedInput::One(ref s)) if s == "hi"));
        let many: EmbedRequest =
            serde_json::from_str(r#"{"model":"m","input":["a","b"],"truncate":true}"#).unwrap();
        assert!(matches!(many.input, Some(EmbedInput::Many(ref v)) if v.len() == 2));
    }

    #[test]
    fn truncation_renormalises() {
        let v = truncate_normalised(HashEmbedder::new(64).embed_one("some words here"), 16);
        assert_eq!(v.len(), 16);
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5 || norm == 0.0);
    }

    #[tokio::test]
    async fn busy_time_counts_overlapping_requests_once() {
        let shared = Arc::new(Shared::new(&EmbedServerConfig::default()).unwrap());
        let a = shared.begin_request();
        let b = shared.begin_request();
        assert_eq!(shared.stats().in_flight, 2);
        drop(a);
        drop(b);
        let s = shared.stats();
        assert_eq!((s.requests, s.in_flight, s.max_in_flight), (2, 0, 2));
        let before = s.busy;
        // Idle time does not count.
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(shared.stats().busy, before);
    }

    #[tokio::test]
    async fn serves_the_ollama_endpoints_open_webui_calls() {
        let server = spawn(
            EmbedServerConfig::single("hash-embed", 16),
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .unwrap();
        let http = reqwest::Client::new();
        let url = server.url();

        let root = http.get(&url).send().await.unwrap().text().await.unwrap();
        assert_eq!(root, "Ollama is running");
        let v: Value = http
            .get(format!("{url}/api/version"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["version"], OLLAMA_VERSION);
        let tags: Value = http
            .get(format!("{url}/api/tags"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(tags["models"][0]["name"], "hash-embed:latest");
        assert_eq!(tags["models"][0]["digest"].as_str().unwrap().len(), 64);
        assert_eq!(tags["models"][0]["details"]["family"], "hash-embed");
        let ps = http.get(format!("{url}/api/ps")).send().await.unwrap();
        assert!(ps.status().is_success());
        let show: Value = http
            .post(format!("{url}/api/show"))
            .json(&json!({"model": "hash-embed"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(show["model_info"]["hash-embed.embedding_length"], 16);

        // A bare string input, no content type: Ollama accepts both.
        let r: Value = http
            .post(format!("{url}/api/embed"))
            .body(r#"{"model":"hash-embed:latest","input":"hello"}"#)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(r["model"], "hash-embed:latest");
        assert_eq!(r["embeddings"].as_array().unwrap().len(), 1);
        assert_eq!(r["embeddings"][0].as_array().unwrap().len(), 16);
        assert_eq!(r["prompt_eval_count"], 1);

        let legacy: Value = http
            .post(format!("{url}/api/embeddings"))
            .json(&json!({"model": "hash-embed", "prompt": "hello"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(legacy["embedding"], r["embeddings"][0]);
        // The counters a script reads: the two embed calls above.
        let stats: Value = http
            .get(format!("{url}/api/ragd/stats"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            (stats["requests"].as_u64(), stats["texts"].as_u64()),
            (Some(2), Some(2))
        );

        let missing = http
            .post(format!("{url}/api/embed"))
            .json(&json!({"model": "nope", "input": ["x"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        let body: Value = missing.json().await.unwrap();
        assert_eq!(
            body["error"],
            "model \"nope\" not found, try pulling it first"
        );

        let s = server.stats();
        assert_eq!((s.requests, s.texts), (3, 2));
        server.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn batch_limit_and_dimensions_are_enforced() {
        let mut config = EmbedServerConfig::single("m", 8);
        config.max_batch = Some(2);
        let server = spawn(config, "127.0.0.1:0".parse().unwrap()).await.unwrap();
        let http = reqwest::Client::new();
        let embed = format!("{}/api/embed", server.url());
        let too_many = http
            .post(&embed)
            .json(&json!({"model": "m", "input": ["a", "b", "c"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(too_many.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let short: Value = http
            .post(&embed)
            .json(&json!({"model": "m", "input": ["a b"], "dimensions": 4}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(short["embeddings"][0].as_array().unwrap().len(), 4);
        let too_wide = http
            .post(&embed)
            .json(&json!({"model": "m", "input": ["a"], "dimensions": 9}))
            .send()
            .await
            .unwrap();
        assert_eq!(too_wide.status(), StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn injected_faults_answer_the_given_status() {
        let server = spawn(
            EmbedServerConfig::single("m", 8),
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .unwrap();
        let http = reqwest::Client::new();
        let embed = format!("{}/api/embed", server.url());
        let body = json!({"model": "m", "input": ["a"]});
        server.fail_next(2, 503);
        for expected in [503, 503, 200] {
            let r = http.post(&embed).json(&body).send().await.unwrap();
            assert_eq!(r.status().as_u16(), expected);
        }
        server.set_fail_rate(1.0);
        let r = http.post(&embed).json(&body).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        server.set_fail_rate(0.0);
        let s = server.stats();
        assert_eq!((s.requests, s.texts), (4, 1));
    }

    #[tokio::test]
    async fn in_process_embedder_matches_the_server() {
        let e = HashEmbedder::with_model("m", 32);
        let out = e
            .embed(&["a b".to_string(), "c".to_string()])
            .await
            .unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0], e.embed_one("a b"));
        assert_eq!(e.model(), "m");
    }
}
