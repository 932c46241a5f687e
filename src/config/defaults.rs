//! Every default an operator can override, in one place: what `ragd.toml` and a
//! pipeline file mean when they leave a key out. Validation fills each setting
//! from here and hands the values down; the components (store, extraction,
//! OCR) define none of their own. The `Default` impls of their settings types
//! live here too, so a component built without a config (tests, tools) gets the
//! same values an operator gets.

use std::time::Duration;

use crate::extract::isolate::{IsolationLimits, default_worker_exe, reply_cap};
use crate::extract::{OcrMode, OcrSettings};
use crate::store::edge::EdgeTuning;
use crate::store::qdrant::{Layout, ServerOptions};

/// `[embedding] url`: a local Ollama.
pub const DEFAULT_OLLAMA_URL: &str = "http://127.0.0.1:11434";
/// `listen`: the daemon's HTTP endpoint.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9321";
/// `[embedding] timeout_secs`: one request; the local model and a cold
/// Ollama take seconds per batch.
pub const DEFAULT_EMBED_TIMEOUT_SECS: u64 = 120;
/// `[embedding] max_retries` of a transient failure.
pub const DEFAULT_EMBED_MAX_RETRIES: u32 = 5;
/// `[embedding] concurrency`: requests in flight.
pub const DEFAULT_EMBED_CONCURRENCY: usize = 2;
/// `[open_webui] concurrency`: uploads in flight.
pub const DEFAULT_OWUI_CONCURRENCY: usize = 4;
/// `[open_webui] process_timeout_secs`: how long an upload may take to be
/// processed (Open WebUI extracts and embeds it itself).
pub const DEFAULT_OWUI_PROCESS_TIMEOUT_SECS: u64 = 900;
/// `[open_webui] request_timeout_secs`.
pub const DEFAULT_OWUI_REQUEST_TIMEOUT_SECS: u64 = 120;
/// `[open_webui] verify_interval_secs`: how often a daemon lists the whole
/// knowledge base to check it.
pub const DEFAULT_OWUI_VERIFY_INTERVAL_SECS: u64 = 600;
/// `[open_webui] publish_slice_secs`: publishing gives way to newer work after this.
pub const DEFAULT_OWUI_PUBLISH_SLICE_SECS: u64 = 60;
/// `[limits] max_file_bytes`.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;
/// `[limits] max_text_bytes`.
pub const DEFAULT_MAX_TEXT_BYTES: u64 = 64 * 1024 * 1024;
/// `[limits] max_chunks_per_file`.
pub const DEFAULT_MAX_CHUNKS: u32 = 50_000;
/// `[chunking] max_size`, in characters.
pub const DEFAULT_CHUNK_CHARS: usize = 1200;
/// `[chunking] overlap`.
pub const DEFAULT_CHUNK_OVERLAP: usize = 100;
/// `[embedding] batch_size`.
pub const DEFAULT_BATCH: usize = 32;
/// `[qdrant] retry_secs`: a restarted Qdrant loads its collections before it
/// answers, which takes seconds to a minute.
pub const DEFAULT_QDRANT_RETRY_SECS: u64 = 120;
/// `[qdrant] timeout_secs`: a `wait=true` upsert of a batch on a busy server
/// takes seconds; qdrant-client's own 5 s cut such writes off and re-sent them,
/// adding load exactly when the server was slow.
pub const DEFAULT_QDRANT_TIMEOUT_SECS: u64 = 30;
/// `[qdrant] vacuum_min_dead_points`: fewest dead vector slots at which the
/// embedded store's `sync` vacuums a shard; below this a rebuild costs more
/// than the space it frees is worth.
pub const DEFAULT_VACUUM_MIN_DEAD: u64 = 10_000;
/// `settle_ms`: long enough for a local copy to finish writing.
pub const DEFAULT_SETTLE: Duration = Duration::from_millis(1000);
/// `poll_interval_secs`.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(30);
/// `[limits] extract_timeout_secs`: per file, in the worker.
pub const DEFAULT_EXTRACT_TIMEOUT: Duration = Duration::from_secs(60);
/// `[limits] extract_memory_mb`: the worker's address-space limit.
pub const DEFAULT_EXTRACT_MEMORY_MB: u64 = 1024;
/// `[ocr] languages`.
pub const DEFAULT_OCR_LANGUAGES: &[&str] = &["eng"];
/// `[ocr] dpi`: what Tesseract is trained for; below 200 its accuracy drops
/// quickly, above 400 it only gets slower.
pub const DEFAULT_OCR_DPI: u32 = 300;
/// `[ocr] max_pages`: pages OCRed per file. At some 2–5 s a page on one core,
/// more than this would not fit the default extraction timeout anyway.
pub const DEFAULT_OCR_MAX_PAGES: u32 = 50;

impl Default for OcrSettings {
    fn default() -> Self {
        OcrSettings {
            mode: OcrMode::Auto,
            languages: DEFAULT_OCR_LANGUAGES
                .iter()
                .map(|l| (*l).to_owned())
                .collect(),
            dpi: DEFAULT_OCR_DPI,
            max_pages: DEFAULT_OCR_MAX_PAGES,
        }
    }
}

impl Default for IsolationLimits {
    fn default() -> Self {
        IsolationLimits {
            isolate: true,
            timeout: DEFAULT_EXTRACT_TIMEOUT,
            memory_mb: DEFAULT_EXTRACT_MEMORY_MB,
            worker_exe: default_worker_exe(),
            worker_env: Vec::new(),
            ocr: OcrSettings::default(),
            max_reply_bytes: reply_cap(DEFAULT_MAX_TEXT_BYTES),
        }
    }
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            timeout: Duration::from_secs(DEFAULT_QDRANT_TIMEOUT_SECS),
            layout: Layout::default(),
            adoptable: Default::default(),
            instance: None,
            ca_file: None,
        }
    }
}

impl Default for EdgeTuning {
    fn default() -> Self {
        EdgeTuning::with_vacuum_min_dead(DEFAULT_VACUUM_MIN_DEAD)
    }
}
