//! Serde mirrors of the config files, exactly as written. Nothing here is
//! checked beyond TOML types and unknown keys; `validate` turns these into the
//! types the rest of ragd uses.

use serde::Deserialize;

/// `config/ragd.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDaemon {
    /// Where the ledger and embedded Qdrant live. Relative to this file's folder.
    pub state_dir: Option<String>,
    /// Folder of `*.toml` pipeline definitions. Relative to this file's folder.
    pub pipelines_dir: Option<String>,
    #[serde(default)]
    pub qdrant: RawQdrant,
    #[serde(default)]
    pub embedding: RawEmbedding,
    pub open_webui: Option<RawOpenWebUi>,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub ocr: RawOcr,
    #[serde(default)]
    pub server: RawServer,
    /// PEM file of CA certificates to trust besides the system's and the
    /// bundled ones (a private CA in front of Open WebUI, Ollama or an
    /// `https://` Qdrant server). Relative
    /// to this file's folder.
    pub tls_ca_file: Option<String>,
}

/// `[ocr]`: reading scanned PDF pages and images with Tesseract.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOcr {
    /// Default: on when `tesseract` is installed.
    pub enabled: Option<bool>,
    /// Tesseract language codes, default `["eng"]`.
    pub languages: Option<Vec<String>>,
    /// Resolution PDF pages are rendered at for OCR (default 300).
    pub dpi: Option<u32>,
    /// Pages OCRed per file (default 50).
    pub max_pages: Option<u32>,
}

/// `[qdrant]`: no `url` means embedded Qdrant under the state directory.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQdrant {
    /// gRPC URL of a Qdrant server, e.g. `http://127.0.0.1:6334`.
    pub url: Option<String>,
    /// API key for the server.
    pub api_key: Option<super::Secret>,
    /// File holding the API key (takes the first line).
    pub api_key_file: Option<String>,
    /// Embedded only: fewest dead vector slots (deleted or moved points) at
    /// which a collection is vacuumed.
    pub vacuum_min_dead_points: Option<u64>,
    /// Server only: seconds before one request is abandoned (then retried).
    pub timeout_secs: Option<u64>,
    /// Server only: seconds a failing operation is retried while the server is
    /// unreachable, restarting or overloaded, before the operation fails.
    pub retry_secs: Option<u64>,
    /// Server only, for collections ragd creates: shards per collection.
    pub shard_number: Option<u32>,
    /// Server only, for collections ragd creates: copies of each shard.
    pub replication_factor: Option<u32>,
    /// Server only, for collections ragd creates: replicas that must confirm a write.
    pub write_consistency_factor: Option<u32>,
    /// Server only, for collections ragd creates: keep payloads (chunk texts) on
    /// disk rather than in RAM.
    pub on_disk_payload: Option<bool>,
}

/// `[embedding]`: where vectors come from.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEmbedding {
    /// `ollama` (an Ollama API at `url`), `open-webui` (Open WebUI's `/ollama`
    /// proxy) or `local` (a sentence-transformers model run in-process).
    pub provider: Option<String>,
    /// For `local`: the model folder (`config.json`, `tokenizer.json`,
    /// `model.safetensors`). Relative to this file's folder.
    pub model_dir: Option<String>,
    /// Base URL. For `open-webui` defaults to `[open_webui].url`.
    pub url: Option<String>,
    /// Bearer token; for `open-webui` defaults to `[open_webui].api_key`.
    pub api_key: Option<super::Secret>,
    /// File holding the bearer token.
    pub api_key_file: Option<String>,
    /// Seconds before one embedding request is abandoned (then retried).
    pub timeout_secs: Option<u64>,
    /// Retries of a transient failure before a file is marked failed.
    pub max_retries: Option<u32>,
    /// Embedding requests in flight at once, per pipeline.
    pub concurrency: Option<usize>,
}

/// `[open_webui]`: the server knowledge bases live on.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOpenWebUi {
    /// Base URL, e.g. `http://127.0.0.1:8080`.
    pub url: Option<String>,
    /// API key (`sk-…`) or JWT.
    pub api_key: Option<super::Secret>,
    /// File holding the API key.
    pub api_key_file: Option<String>,
    /// Uploads and links in flight at once, per pipeline.
    pub concurrency: Option<usize>,
    /// Seconds to wait for the server to finish processing one file.
    pub process_timeout_secs: Option<u64>,
    /// Seconds before one HTTP request is abandoned.
    pub request_timeout_secs: Option<u64>,
    /// Seconds between the daemon's full checks of a knowledge base when only
    /// files changed (0: every run).
    pub verify_interval_secs: Option<u64>,
    /// Seconds a daemon's publish runs before it pauses for newer changes.
    pub publish_slice_secs: Option<u64>,
}

/// `[limits]`: what one file may cost.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Files larger than this many bytes are skipped with a reason.
    pub max_file_bytes: Option<u64>,
    /// Extracted text longer than this many bytes is a failure.
    pub max_text_bytes: Option<u64>,
    /// Files that would give more chunks than this are a failure.
    pub max_chunks_per_file: Option<u32>,
    /// Files extracted at once per pipeline; default: number of cores.
    pub extract_concurrency: Option<usize>,
    /// Seconds one extraction worker may run before it is killed (default 60).
    /// A file that times out twice is left alone until it changes.
    pub extract_timeout_secs: Option<u64>,
    /// Address space of one extraction worker, in MiB (default 1024).
    pub extract_memory_mb: Option<u64>,
    /// Extract risky formats (PDF) in a separate worker process, so a crash,
    /// hang or memory blow-up in a parser cannot take the daemon down
    /// (default true).
    pub isolate: Option<bool>,
}

/// `[server]`: the daemon's HTTP endpoint.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Address for /healthz, /readyz, /metrics, /status.
    pub listen: Option<String>,
}

/// One `pipelines/NAME.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPipeline {
    /// Defaults to the file name without `.toml`.
    pub name: Option<String>,
    /// Folders to index. Relative to this file's folder.
    #[serde(default)]
    pub sources: Vec<String>,
    /// Globs (relative to a source folder) a file must match; empty = every supported file.
    #[serde(default)]
    pub include: Vec<String>,
    /// Globs that exclude files, applied after `include`.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Follow symbolic links (never outside the source folder).
    pub follow_symlinks: Option<bool>,
    #[serde(default)]
    pub chunking: RawChunking,
    #[serde(default)]
    pub embedding: RawPipelineEmbedding,
    #[serde(default)]
    pub qdrant: RawPipelineQdrant,
    /// Open WebUI knowledge base to keep equal to the folder.
    pub knowledge: Option<RawKnowledge>,
    /// Cron expression (with seconds) for a scheduled reconcile.
    pub schedule: Option<String>,
    /// Cron expression (with seconds) for a scheduled full reindex into a new
    /// collection behind the alias (`ragd run`).
    pub reindex_schedule: Option<String>,
    /// How `ragd run` notices changes: `notify` (the OS's file events, the
    /// default) or `poll` (re-read the tree every `poll_interval_secs`; for network
    /// shares and other folders where events do not arrive).
    pub watch: Option<String>,
    /// Seconds between two polls with `watch = "poll"`.
    pub poll_interval_secs: Option<u64>,
    /// Milliseconds a changed file must stay quiet (no events, same size and
    /// mtime) before `ragd run` indexes it, so half-copied files are never read.
    pub settle_ms: Option<u64>,
}

/// `[chunking]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChunking {
    /// `characters` or `tokens`.
    pub unit: Option<String>,
    /// Largest chunk, in `unit`s.
    pub max_size: Option<usize>,
    /// Overlap between neighbouring chunks, in `unit`s.
    pub overlap: Option<usize>,
    /// Split Markdown at headings and blocks first.
    pub markdown: Option<bool>,
    /// `tokenizer.json` for `unit = "tokens"`. Relative to the pipeline file's folder.
    pub tokenizer: Option<String>,
}

/// `[embedding]` of a pipeline.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPipelineEmbedding {
    /// Model name as the endpoint knows it. With the `local` provider it defaults
    /// to the model folder's name.
    pub model: Option<String>,
    /// Texts per embedding request.
    pub batch_size: Option<usize>,
}

/// `[qdrant]` of a pipeline.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPipelineQdrant {
    /// Collection name; defaults to the pipeline name.
    pub collection: Option<String>,
}

/// `[knowledge]` of a pipeline: by `id`, or by `name` (created if missing).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKnowledge {
    pub id: Option<String>,
    pub name: Option<String>,
    /// Description used when ragd creates the knowledge base.
    pub description: Option<String>,
    /// Mirror the source folder's tree as the knowledge base's directories (Open WebUI
    /// 0.12+; default true). `false` keeps every file at the root, as ragd did before.
    pub directories: Option<bool>,
    /// How Open WebUI gets the folder: `files` (uploads it processes and embeds
    /// itself; the default), `external` (an external knowledge base that searches
    /// the pipeline's Qdrant collection; nothing is uploaded or embedded twice) or
    /// `both`.
    pub mode: Option<String>,
    /// Qdrant's REST URL as Open WebUI reaches it, for `external` mode (default:
    /// `[qdrant] url` with the REST port 6333 for gRPC's 6334).
    pub qdrant_url_for_openwebui: Option<String>,
    /// Who may read or write the knowledge base besides its owner, kept equal to this
    /// list on every sync (grants not listed are removed). Left out, ragd leaves the
    /// base's access alone; `[]` makes it private.
    pub access: Option<Vec<RawAccess>>,
}

/// One entry of `[knowledge] access`: `{ group = "Staff", permission = "read" }` or
/// `{ user = "ana@example.com", permission = "write" }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccess {
    /// A user by e-mail address or display name.
    pub user: Option<String>,
    /// A group by name.
    pub group: Option<String>,
    /// `read` or `write` (which includes read).
    pub permission: Option<String>,
}
