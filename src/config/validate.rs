//! Raw config → validated config. Pure apart from the `read_secret` callback (for
//! `*_file` keys), and collects every problem before reporting.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use globset::{Glob, GlobSet, GlobSetBuilder};

use super::defaults::*;
use super::raw::*;
use super::{ConfigError, ConfigErrors, Secret};
use crate::extract::isolate::{IsolationLimits, default_worker_exe};
use crate::extract::{OcrMode, OcrSettings};
use crate::open_webui::access::{AccessRule, Permission, Principal};

/// Smallest `limits.extract_memory_mb`: the worker's own binary and libc need
/// some address space before any parser runs.
const MIN_EXTRACT_MEMORY_MB: u64 = 64;

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The `ragd.toml` this came from.
    pub config_path: PathBuf,
    /// Ledger, embedded Qdrant and locks live here.
    pub state_dir: PathBuf,
    pub qdrant: QdrantSettings,
    pub embedding: EmbeddingSettings,
    pub open_webui: Option<OpenWebUiSettings>,
    pub limits: Limits,
    /// The daemon's HTTP endpoint.
    pub listen: SocketAddr,
    /// Extra trusted CA certificates for the HTTP clients (`tls_ca_file`).
    pub tls_ca_file: Option<PathBuf>,
    pub pipelines: Vec<PipelineConfig>,
}

impl Config {
    /// The settings every HTTP client of this config starts from.
    pub fn http(&self) -> crate::http::ClientSettings {
        crate::http::ClientSettings {
            ca_file: self.tls_ca_file.clone(),
            ..Default::default()
        }
    }
}

impl Config {
    /// `(service, url)` of every key this config sends over plain `http://` to
    /// another host ([`crate::http::sends_in_clear`]): the Qdrant key, the Open
    /// WebUI key, and the embedding key (the Open WebUI key again with
    /// `provider = "open-webui"`). `App::open` warns about each once.
    pub fn keys_in_clear(&self) -> Vec<(&'static str, &str)> {
        let mut keyed = Vec::new();
        if let QdrantSettings::Server {
            url,
            api_key: Some(_),
            ..
        } = &self.qdrant
        {
            keyed.push(("qdrant", url.as_str()));
        }
        if let Some(o) = &self.open_webui {
            keyed.push(("open_webui", o.url.as_str()));
        }
        let e = &self.embedding;
        if e.provider != EmbedProvider::Local && e.api_key.is_some() {
            keyed.push(("embedding", e.url.as_str()));
        }
        keyed.retain(|(_, url)| crate::http::sends_in_clear(url));
        keyed
    }

    pub fn pipeline(&self, name: &str) -> Option<&PipelineConfig> {
        self.pipelines.iter().find(|p| p.name == name)
    }
}

/// Where vectors are stored.
#[derive(Debug, Clone, PartialEq)]
pub enum QdrantSettings {
    /// qdrant-edge in `<state_dir>/qdrant`; a collection is vacuumed once it
    /// has `vacuum_min_dead` dead vector slots and no more live points.
    Embedded { path: PathBuf, vacuum_min_dead: u64 },
    /// A Qdrant server over gRPC.
    Server {
        url: String,
        api_key: Option<Secret>,
        options: crate::store::qdrant::ServerOptions,
        /// How long one failing operation is retried while the server is away.
        retry: Duration,
    },
}

/// Which API embeddings are requested from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbedProvider {
    /// `POST {url}/api/embed` on an Ollama(-compatible) server.
    Ollama,
    /// `POST {url}/ollama/api/embed` through Open WebUI.
    OpenWebUi,
    /// A sentence-transformers model folder run in-process on the CPU.
    Local,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingSettings {
    pub provider: EmbedProvider,
    /// The model folder, for [`EmbedProvider::Local`].
    pub model_dir: Option<PathBuf>,
    pub url: String,
    pub api_key: Option<Secret>,
    pub timeout: Duration,
    pub max_retries: u32,
    /// Requests in flight at once per pipeline.
    pub concurrency: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OpenWebUiSettings {
    pub url: String,
    pub api_key: Secret,
    pub concurrency: usize,
    pub process_timeout: Duration,
    pub request_timeout: Duration,
    /// Longest the daemon goes without listing a knowledge base in full while
    /// only files change (startup, schedules and `ragd index` always list).
    pub verify_interval: Duration,
    /// How long the daemon publishes before newer changes waiting to be
    /// indexed go first (publishing then resumes where it stopped).
    pub publish_slice: Duration,
}

/// `[limits]`: what one file may cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Files larger than this are skipped without being read.
    pub max_file_bytes: u64,
    /// Extracted text longer than this is a failure.
    pub max_text_bytes: u64,
    /// More chunks than this is a failure.
    pub max_chunks_per_file: u32,
    /// Files extracted at once per pipeline.
    pub extract_concurrency: usize,
    /// The extraction worker: on/off, timeout, memory limit, executable.
    pub extract: IsolationLimits,
}

/// How chunk sizes are measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkUnit {
    Characters,
    /// Tokens of the given `tokenizer.json`.
    Tokens {
        tokenizer: PathBuf,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkingConfig {
    pub unit: ChunkUnit,
    pub max_size: usize,
    pub overlap: usize,
    pub markdown: bool,
}

/// A knowledge base named in a pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KnowledgeTarget {
    Id(String),
    /// Found by name, created with `description` if missing.
    Name {
        name: String,
        description: String,
    },
}

/// `[knowledge] mode = "external"` (or `"both"`): an Open WebUI external knowledge
/// base whose source is the pipeline's collection alias on the Qdrant server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalKnowledge {
    /// The base's name in Open WebUI; ragd finds it (and its connection) by it.
    pub name: String,
    pub description: String,
    /// Qdrant's REST URL as Open WebUI reaches it (`qdrant_url_for_openwebui`).
    pub qdrant_url: String,
}

/// One validated pipeline.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub name: String,
    /// The pipeline's file.
    pub file: PathBuf,
    /// Absolute or config-relative source folders.
    pub sources: Vec<PathBuf>,
    pub include: GlobSet,
    pub exclude: GlobSet,
    /// The globs as written, for display.
    pub include_patterns: Vec<String>,
    pub exclude_patterns: Vec<String>,
    pub follow_symlinks: bool,
    pub chunking: ChunkingConfig,
    pub model: String,
    pub batch_size: usize,
    pub collection: String,
    /// The knowledge base files are uploaded to (`mode` `files` or `both`).
    pub knowledge: Option<KnowledgeTarget>,
    /// The external knowledge base searching the collection (`mode` `external`
    /// or `both`).
    pub external: Option<ExternalKnowledge>,
    /// Whether the knowledge base mirrors the folder's tree as directories
    /// (`[knowledge] directories`, default true; servers without them stay flat).
    pub kb_directories: bool,
    /// `[knowledge] access`: who may read or write the base; `None` leaves its
    /// access alone.
    pub kb_access: Option<Vec<AccessRule>>,
    pub schedule: Option<cron::Schedule>,
    /// When to rebuild into a new collection behind the alias (`ragd run`).
    pub reindex_schedule: Option<cron::Schedule>,
    /// How `ragd run` watches the sources.
    pub watch: WatchMode,
    /// How long a changed file must stay unchanged before it is indexed.
    pub settle: Duration,
}

/// How the daemon notices changes in a pipeline's sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchMode {
    /// The OS's file events (inotify, FSEvents, ReadDirectoryChangesW).
    Notify,
    /// Re-read the tree every `interval`: for network shares, where events from
    /// other machines never arrive.
    Poll { interval: Duration },
}

/// Check raw config; `read_secret` reads `*_file` keys.
pub fn validate(
    config_path: &Path,
    daemon: RawDaemon,
    pipelines: Vec<(PathBuf, RawPipeline)>,
    read_secret: &dyn Fn(&Path) -> std::io::Result<String>,
) -> Result<Config, ConfigErrors> {
    let mut errs = Errors {
        list: Vec::new(),
        file: config_path.to_owned(),
    };
    let base = dir_of(config_path);

    let state_dir = base.join(daemon.state_dir.as_deref().unwrap_or("../.ragd"));

    let mut qdrant = match daemon.qdrant.url.as_deref().map(str::trim) {
        None | Some("") => {
            let vacuum_min_dead = daemon
                .qdrant
                .vacuum_min_dead_points
                .unwrap_or(DEFAULT_VACUUM_MIN_DEAD);
            if vacuum_min_dead == 0 {
                errs.push("qdrant.vacuum_min_dead_points", "must be at least 1");
            }
            QdrantSettings::Embedded {
                path: state_dir.join("qdrant"),
                vacuum_min_dead,
            }
        }
        Some(url) => {
            check_url(&mut errs, "qdrant.url", url);
            let api_key = secret(
                &mut errs,
                &base,
                "qdrant",
                daemon.qdrant.api_key,
                daemon.qdrant.api_key_file,
                read_secret,
            );
            let positive_u32 = |errs: &mut Errors, key: &str, v: Option<u32>| {
                if v == Some(0) {
                    errs.push(key, "must be at least 1");
                }
                v.filter(|n| *n > 0)
            };
            let layout = crate::store::qdrant::Layout {
                shard_number: positive_u32(
                    &mut errs,
                    "qdrant.shard_number",
                    daemon.qdrant.shard_number,
                ),
                replication_factor: positive_u32(
                    &mut errs,
                    "qdrant.replication_factor",
                    daemon.qdrant.replication_factor,
                ),
                write_consistency_factor: positive_u32(
                    &mut errs,
                    "qdrant.write_consistency_factor",
                    daemon.qdrant.write_consistency_factor,
                ),
                on_disk_payload: daemon.qdrant.on_disk_payload,
            };
            if let (Some(w), Some(r)) = (layout.write_consistency_factor, layout.replication_factor)
                && w > r
            {
                errs.push(
                    "qdrant.write_consistency_factor",
                    &format!("{w} is more than qdrant.replication_factor ({r})"),
                );
            }
            let options = crate::store::qdrant::ServerOptions {
                timeout: Duration::from_secs(positive_u64(
                    &mut errs,
                    "qdrant.timeout_secs",
                    daemon.qdrant.timeout_secs,
                    DEFAULT_QDRANT_TIMEOUT_SECS,
                )),
                layout,
                // Filled from the ledger and the state directory when the app opens.
                adoptable: Default::default(),
                instance: None,
                // `tls_ca_file`, set below.
                ca_file: None,
            };
            let retry = Duration::from_secs(
                daemon
                    .qdrant
                    .retry_secs
                    .unwrap_or(DEFAULT_QDRANT_RETRY_SECS),
            );
            QdrantSettings::Server {
                url: url.to_owned(),
                api_key,
                options,
                retry,
            }
        }
    };

    let open_webui = daemon.open_webui.map(|o| {
        let url = match o.url {
            Some(u) => {
                check_url(&mut errs, "open_webui.url", &u);
                u.trim_end_matches('/').to_owned()
            }
            None => {
                errs.push("open_webui.url", "required when [open_webui] is present");
                String::new()
            }
        };
        let api_key = secret(
            &mut errs,
            &base,
            "open_webui",
            o.api_key,
            o.api_key_file,
            read_secret,
        );
        if api_key.is_none() {
            errs.push(
                "open_webui.api_key",
                "required (or open_webui.api_key_file)",
            );
        }
        OpenWebUiSettings {
            url,
            api_key: api_key.unwrap_or_else(|| Secret::new("")),
            concurrency: positive(
                &mut errs,
                "open_webui.concurrency",
                o.concurrency,
                DEFAULT_OWUI_CONCURRENCY,
            ),
            process_timeout: secs(
                &mut errs,
                "open_webui.process_timeout_secs",
                o.process_timeout_secs,
                DEFAULT_OWUI_PROCESS_TIMEOUT_SECS,
            ),
            request_timeout: secs(
                &mut errs,
                "open_webui.request_timeout_secs",
                o.request_timeout_secs,
                DEFAULT_OWUI_REQUEST_TIMEOUT_SECS,
            ),
            verify_interval: secs(
                &mut errs,
                "open_webui.verify_interval_secs",
                o.verify_interval_secs,
                DEFAULT_OWUI_VERIFY_INTERVAL_SECS,
            ),
            publish_slice: secs(
                &mut errs,
                "open_webui.publish_slice_secs",
                o.publish_slice_secs,
                DEFAULT_OWUI_PUBLISH_SLICE_SECS,
            ),
        }
    });

    let e = daemon.embedding;
    let provider = match e.provider.as_deref() {
        None | Some("ollama") => EmbedProvider::Ollama,
        Some("open-webui") => EmbedProvider::OpenWebUi,
        Some("local") => EmbedProvider::Local,
        Some(other) => {
            errs.push(
                "embedding.provider",
                &format!(
                    "unknown provider {other:?}; expected \"ollama\", \"open-webui\" or \"local\""
                ),
            );
            EmbedProvider::Ollama
        }
    };
    let mut embed_key = secret(
        &mut errs,
        &base,
        "embedding",
        e.api_key,
        e.api_key_file,
        read_secret,
    );
    let model_dir = match (provider, e.model_dir) {
        (EmbedProvider::Local, Some(d)) => Some(base.join(d)),
        (EmbedProvider::Local, None) => {
            errs.push(
                "embedding.model_dir",
                "provider \"local\" needs the model folder",
            );
            None
        }
        (_, Some(_)) => {
            errs.push("embedding.model_dir", "only used with provider = \"local\"");
            None
        }
        (_, None) => None,
    };
    let url = match (provider, e.url) {
        (EmbedProvider::Local, _) => String::new(),
        (_, Some(u)) => {
            check_url(&mut errs, "embedding.url", &u);
            u.trim_end_matches('/').to_owned()
        }
        (EmbedProvider::Ollama, None) => DEFAULT_OLLAMA_URL.to_owned(),
        (EmbedProvider::OpenWebUi, None) => match &open_webui {
            Some(o) => o.url.clone(),
            None => {
                errs.push(
                    "embedding.url",
                    "provider \"open-webui\" needs embedding.url or an [open_webui] section",
                );
                String::new()
            }
        },
    };
    if provider == EmbedProvider::OpenWebUi && embed_key.is_none() {
        // The Open WebUI key goes only where Open WebUI is: an embedding url on
        // another origin (scheme, host, port) is another server, which must
        // not receive it.
        embed_key = open_webui
            .as_ref()
            .filter(|o| same_origin(&o.url, &url))
            .map(|o| o.api_key.clone());
        if embed_key.is_none() {
            let why = match &open_webui {
                Some(o) if !same_origin(&o.url, &url) => format!(
                    "provider \"open-webui\" with embedding.url on another server than \
                     [open_webui] url ({}): the Open WebUI key is not sent there; give \
                     embedding.api_key (or api_key_file) for that server",
                    crate::http::redact_url(&o.url)
                ),
                _ => "provider \"open-webui\" needs an API key".to_owned(),
            };
            errs.push("embedding.api_key", &why);
        }
    }
    let local_model = model_dir
        .as_ref()
        .and_then(|d| d.file_name())
        .map(|n| n.to_string_lossy().into_owned());
    let embedding = EmbeddingSettings {
        provider,
        model_dir,
        url,
        api_key: embed_key,
        timeout: secs(
            &mut errs,
            "embedding.timeout_secs",
            e.timeout_secs,
            DEFAULT_EMBED_TIMEOUT_SECS,
        ),
        max_retries: e.max_retries.unwrap_or(DEFAULT_EMBED_MAX_RETRIES),
        concurrency: positive(
            &mut errs,
            "embedding.concurrency",
            e.concurrency,
            DEFAULT_EMBED_CONCURRENCY,
        ),
    };

    let l = daemon.limits;
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let limits = Limits {
        max_file_bytes: l.max_file_bytes.unwrap_or(DEFAULT_MAX_FILE_BYTES),
        max_text_bytes: l.max_text_bytes.unwrap_or(DEFAULT_MAX_TEXT_BYTES),
        max_chunks_per_file: l.max_chunks_per_file.unwrap_or(DEFAULT_MAX_CHUNKS),
        extract_concurrency: positive(
            &mut errs,
            "limits.extract_concurrency",
            l.extract_concurrency,
            cores,
        ),
        extract: IsolationLimits {
            max_reply_bytes: crate::extract::isolate::reply_cap(
                l.max_text_bytes.unwrap_or(DEFAULT_MAX_TEXT_BYTES),
            ),
            isolate: l.isolate.unwrap_or(true),
            timeout: {
                let secs_set = positive_u64(
                    &mut errs,
                    "limits.extract_timeout_secs",
                    l.extract_timeout_secs,
                    DEFAULT_EXTRACT_TIMEOUT.as_secs(),
                );
                secs(
                    &mut errs,
                    "limits.extract_timeout_secs",
                    Some(secs_set),
                    DEFAULT_EXTRACT_TIMEOUT.as_secs(),
                )
            },
            memory_mb: match l.extract_memory_mb {
                // The worker is ragd itself: below this it cannot even start.
                Some(mb) if mb < MIN_EXTRACT_MEMORY_MB => {
                    errs.push(
                        "limits.extract_memory_mb",
                        &format!("must be at least {MIN_EXTRACT_MEMORY_MB}"),
                    );
                    DEFAULT_EXTRACT_MEMORY_MB
                }
                Some(mb) => mb,
                None => DEFAULT_EXTRACT_MEMORY_MB,
            },
            // Reading /proc/self/exe is the one bit of IO here; it cannot fail
            // in a way validation could report.
            worker_exe: default_worker_exe(),
            worker_env: Vec::new(),
            ocr: ocr_settings(&mut errs, daemon.ocr),
        },
    };

    let tls_ca_file = daemon.tls_ca_file.as_deref().map(|f| base.join(f));
    if let Some(f) = &tls_ca_file
        && !f.is_file()
    {
        errs.push(
            "tls_ca_file",
            &format!("{} is not a readable file", f.display()),
        );
    }
    // The Qdrant server's channel trusts it as the HTTP clients do.
    if let QdrantSettings::Server { options, .. } = &mut qdrant {
        options.ca_file = tls_ca_file.clone();
    }
    let listen_text = daemon
        .server
        .listen
        .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
    let listen = listen_text.parse().unwrap_or_else(|_| {
        errs.push(
            "server.listen",
            &format!("{listen_text:?} is not an address like 127.0.0.1:9321"),
        );
        DEFAULT_LISTEN
            .parse()
            .expect("default listen address parses")
    });

    let mut seen_names = HashSet::new();
    let mut validated = Vec::new();
    for (file, raw) in pipelines {
        errs.file = file.clone();
        if let Some(p) = validate_pipeline(
            &mut errs,
            &file,
            raw,
            open_webui.is_some(),
            local_model.as_deref(),
        ) {
            if !seen_names.insert(p.name.clone()) {
                errs.push(
                    "name",
                    &format!("pipeline name {:?} is used by another file", p.name),
                );
            }
            validated.push(p);
        }
    }

    external_knowledge(&mut errs, &qdrant, &mut validated);

    if errs.list.is_empty() {
        Ok(Config {
            config_path: config_path.to_owned(),
            state_dir,
            qdrant,
            embedding,
            open_webui,
            limits,
            listen,
            tls_ca_file,
            pipelines: validated,
        })
    } else {
        Err(ConfigErrors(errs.list))
    }
}

/// What external knowledge needs beyond its own pipeline: a Qdrant server (Open
/// WebUI cannot reach the embedded store), a collection no other pipeline writes
/// to (Open WebUI searches it without a filter), and the URL Open WebUI reaches
/// Qdrant at, by default the server's with the REST port for gRPC's.
fn external_knowledge(
    errs: &mut Errors,
    qdrant: &QdrantSettings,
    pipelines: &mut [PipelineConfig],
) {
    let collections: Vec<(String, String)> = pipelines
        .iter()
        .map(|p| (p.name.clone(), p.collection.clone()))
        .collect();
    for p in pipelines.iter_mut() {
        let Some(ext) = &mut p.external else { continue };
        errs.file = p.file.clone();
        let server = match qdrant {
            QdrantSettings::Server { url, .. } => url,
            QdrantSettings::Embedded { .. } => {
                errs.push(
                    "knowledge.mode",
                    "external knowledge needs a Qdrant server: Open WebUI cannot reach the \
                     embedded store; set [qdrant] url in ragd.toml (scripts/qdrant-up.sh starts one) \
                     or use mode = \"files\"",
                );
                continue;
            }
        };
        if let Some((other, _)) = collections
            .iter()
            .find(|(name, c)| *name != p.name && *c == p.collection)
        {
            errs.push(
                "knowledge.mode",
                &format!(
                    "collection {:?} is shared with pipeline {other:?}, but Open WebUI searches an \
                     external source without a filter and would answer from both; give this \
                     pipeline its own [qdrant] collection",
                    p.collection
                ),
            );
        }
        if ext.qdrant_url.is_empty() {
            match rest_url_of(server) {
                Some(url) => ext.qdrant_url = url,
                None => errs.push(
                    "knowledge.qdrant_url_for_openwebui",
                    &format!(
                        "required: [qdrant] url {server:?} is not on gRPC's default port 6334, so \
                         the REST port Open WebUI needs cannot be guessed"
                    ),
                ),
            }
        }
    }
}

/// Qdrant's REST URL next to the gRPC `url` on the default ports (6334 → 6333).
fn rest_url_of(url: &str) -> Option<String> {
    let mut parsed = reqwest::Url::parse(url).ok()?;
    if parsed.port() != Some(6334) {
        return None;
    }
    parsed.set_port(Some(6333)).ok()?;
    Some(parsed.as_str().trim_end_matches('/').to_owned())
}

fn validate_pipeline(
    errs: &mut Errors,
    file: &Path,
    raw: RawPipeline,
    have_open_webui: bool,
    local_model: Option<&str>,
) -> Option<PipelineConfig> {
    let base = dir_of(file);
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = raw.name.unwrap_or(stem);
    check_name(errs, "name", &name);

    if raw.sources.is_empty() {
        errs.push("sources", "at least one source folder is required");
    }
    let sources: Vec<PathBuf> = raw.sources.iter().map(|s| base.join(s)).collect();
    if sources.len() > 1 {
        // Keys are prefixed by the folder's name: `a/docs` and `b/docs` would
        // give their two `x.md` one key and one set of point ids. (The rule is
        // the key's: `triggers/key.rs` is a leaf, importing nothing of ragd.)
        let mut seen: HashMap<String, &str> = HashMap::new();
        for (i, raw_path) in raw.sources.iter().enumerate() {
            let prefix = crate::triggers::key::prefix(&sources, i);
            if let Some(first) = seen.insert(prefix.clone(), raw_path) {
                errs.push(
                    "sources",
                    &format!(
                        "{first:?} and {raw_path:?} have the same folder name {:?}: \
                         their files would share ledger keys; use folders with distinct names \
                         or two pipelines",
                        prefix.trim_end_matches('/')
                    ),
                );
            }
        }
    }
    let include = globs(errs, "include", &raw.include);
    let exclude = globs(errs, "exclude", &raw.exclude);

    let c = raw.chunking;
    let unit = match (c.unit.as_deref(), c.tokenizer) {
        (None | Some("characters"), None) => ChunkUnit::Characters,
        (None | Some("tokens"), Some(t)) => ChunkUnit::Tokens {
            tokenizer: base.join(t),
        },
        (Some("characters"), Some(_)) => {
            errs.push("chunking.tokenizer", "only used with unit = \"tokens\"");
            ChunkUnit::Characters
        }
        (Some("tokens"), None) => {
            errs.push(
                "chunking.tokenizer",
                "unit = \"tokens\" needs a tokenizer.json path",
            );
            ChunkUnit::Characters
        }
        (Some(other), _) => {
            errs.push(
                "chunking.unit",
                &format!("unknown unit {other:?}; expected \"characters\" or \"tokens\""),
            );
            ChunkUnit::Characters
        }
    };
    let default_size = match unit {
        ChunkUnit::Characters => DEFAULT_CHUNK_CHARS,
        ChunkUnit::Tokens { .. } => 256,
    };
    let max_size = positive(errs, "chunking.max_size", c.max_size, default_size);
    let overlap = c.overlap.unwrap_or(match unit {
        ChunkUnit::Characters => DEFAULT_CHUNK_OVERLAP.min(max_size / 2),
        ChunkUnit::Tokens { .. } => (max_size / 10).min(32),
    });
    if overlap >= max_size {
        errs.push(
            "chunking.overlap",
            &format!("{overlap} must be smaller than max_size {max_size}"),
        );
    }

    let model = match (raw.embedding.model, local_model) {
        (Some(m), Some(local)) if m != local => {
            errs.push(
                "embedding.model",
                &format!(
                    "{m:?} is not the local model {local:?} (embedding.model_dir); leave it out"
                ),
            );
            m
        }
        (Some(m), _) if !m.trim().is_empty() => m,
        (None, Some(local)) => local.to_owned(),
        _ => {
            errs.push("embedding.model", "required: the embedding model's name");
            String::new()
        }
    };
    let batch_size = positive(
        errs,
        "embedding.batch_size",
        raw.embedding.batch_size,
        DEFAULT_BATCH,
    );

    let collection = raw.qdrant.collection.unwrap_or_else(|| name.clone());
    check_name(errs, "qdrant.collection", &collection);

    let kb_directories = raw
        .knowledge
        .as_ref()
        .and_then(|k| k.directories)
        .unwrap_or(true);
    let kb_access = raw
        .knowledge
        .as_ref()
        .and_then(|k| k.access.as_ref())
        .map(|list| access_rules(errs, list));
    let mut external = None;
    let knowledge = raw.knowledge.and_then(|k| {
        if !have_open_webui {
            errs.push("knowledge", "needs an [open_webui] section in ragd.toml");
        }
        let (files, external_mode) = match k.mode.as_deref() {
            None | Some("files") => (true, false),
            Some("external") => (false, true),
            Some("both") => (true, true),
            Some(other) => {
                errs.push(
                    "knowledge.mode",
                    &format!(
                        "unknown mode {other:?}; expected \"files\", \"external\" or \"both\""
                    ),
                );
                (true, false)
            }
        };
        if let Some(url) = &k.qdrant_url_for_openwebui {
            check_url(errs, "knowledge.qdrant_url_for_openwebui", url);
            if !external_mode {
                errs.push(
                    "knowledge.qdrant_url_for_openwebui",
                    "only used with mode = \"external\" or \"both\"",
                );
            }
        }
        if external_mode {
            match &k.name {
                Some(base) if !base.trim().is_empty() => {
                    external = Some(ExternalKnowledge {
                        // Both bases are found by name: they must not share one.
                        name: if files {
                            format!("{base} (external)")
                        } else {
                            base.clone()
                        },
                        description: k
                            .description
                            .clone()
                            .unwrap_or_else(|| "Searches ragd's Qdrant index".to_owned()),
                        // Filled in by `external_urls`, which knows `[qdrant]`.
                        qdrant_url: k.qdrant_url_for_openwebui.clone().unwrap_or_default(),
                    });
                }
                _ => errs.push(
                    "knowledge.name",
                    "mode = \"external\" needs name: ragd finds the external base by it",
                ),
            }
        }
        if !files {
            return None;
        }
        match (k.id, k.name) {
            (Some(id), None) => Some(KnowledgeTarget::Id(id)),
            (None, Some(name)) if !name.trim().is_empty() => Some(KnowledgeTarget::Name {
                name,
                description: k
                    .description
                    .unwrap_or_else(|| "Kept in sync by ragd".to_owned()),
            }),
            (Some(_), Some(_)) => {
                errs.push("knowledge", "give either id or name, not both");
                None
            }
            _ => {
                errs.push("knowledge", "needs id or name");
                None
            }
        }
    });

    let schedule = cron_key(errs, "schedule", raw.schedule);
    let reindex_schedule = cron_key(errs, "reindex_schedule", raw.reindex_schedule);

    let poll_interval = match raw.poll_interval_secs {
        Some(0) => {
            errs.push("poll_interval_secs", "must be at least 1");
            DEFAULT_POLL_INTERVAL
        }
        Some(n) => secs(
            errs,
            "poll_interval_secs",
            Some(n),
            DEFAULT_POLL_INTERVAL.as_secs(),
        ),
        None => DEFAULT_POLL_INTERVAL,
    };
    let watch = match raw.watch.as_deref() {
        None | Some("notify") => {
            if raw.poll_interval_secs.is_some() {
                errs.push("poll_interval_secs", "only used with watch = \"poll\"");
            }
            WatchMode::Notify
        }
        Some("poll") => WatchMode::Poll {
            interval: poll_interval,
        },
        Some(other) => {
            errs.push(
                "watch",
                &format!("unknown mode {other:?}; expected \"notify\" or \"poll\""),
            );
            WatchMode::Notify
        }
    };
    let settle = match raw.settle_ms {
        Some(ms) if ms > MAX_DURATION_SECS.saturating_mul(1000) => {
            errs.push(
                "settle_ms",
                &format!("must be at most {}", MAX_DURATION_SECS * 1000),
            );
            DEFAULT_SETTLE
        }
        Some(ms) => Duration::from_millis(ms),
        None => DEFAULT_SETTLE,
    };

    Some(PipelineConfig {
        name,
        file: file.to_owned(),
        sources,
        include,
        exclude,
        include_patterns: raw.include,
        exclude_patterns: raw.exclude,
        follow_symlinks: raw.follow_symlinks.unwrap_or(false),
        chunking: ChunkingConfig {
            unit,
            max_size,
            overlap,
            markdown: c.markdown.unwrap_or(true),
        },
        model,
        batch_size,
        collection,
        knowledge,
        external,
        kb_directories,
        kb_access,
        schedule,
        reindex_schedule,
        watch,
        settle,
    })
}

/// `[knowledge] access` entries: each names one user or one group, and `read` or
/// `write`. Names are checked against the server by `ragd doctor` and each sync.
fn access_rules(errs: &mut Errors, list: &[RawAccess]) -> Vec<AccessRule> {
    let mut rules = Vec::new();
    for (i, a) in list.iter().enumerate() {
        let key = format!("knowledge.access[{i}]");
        let principal = match (&a.user, &a.group) {
            (Some(u), None) if !u.trim().is_empty() => Principal::User(u.trim().to_owned()),
            (None, Some(g)) if !g.trim().is_empty() => Principal::Group(g.trim().to_owned()),
            (Some(_), Some(_)) => {
                errs.push(&key, "give either user or group, not both");
                continue;
            }
            _ => {
                errs.push(&key, "needs user = \"…\" or group = \"…\"");
                continue;
            }
        };
        let permission = match a.permission.as_deref() {
            Some("read") => Permission::Read,
            Some("write") => Permission::Write,
            Some(other) => {
                errs.push(
                    &format!("{key}.permission"),
                    &format!("{other:?}: must be \"read\" or \"write\""),
                );
                continue;
            }
            None => {
                errs.push(
                    &format!("{key}.permission"),
                    "required: \"read\" or \"write\"",
                );
                continue;
            }
        };
        rules.push(AccessRule {
            principal,
            permission,
        });
    }
    rules
}

fn cron_key(errs: &mut Errors, key: &str, text: Option<String>) -> Option<cron::Schedule> {
    let text = text?;
    match text.parse::<cron::Schedule>() {
        Ok(sch) => Some(sch),
        Err(e) => {
            errs.push(
                key,
                &format!("{text:?} is not a cron expression (sec min hour day month weekday): {e}"),
            );
            None
        }
    }
}

/// Collects problems for the file being checked.
struct Errors {
    list: Vec<ConfigError>,
    file: PathBuf,
}

impl Errors {
    fn push(&mut self, key: &str, message: &str) {
        self.list.push(ConfigError {
            file: self.file.clone(),
            key: key.to_owned(),
            message: message.to_owned(),
        });
    }
}

fn dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

fn positive(errs: &mut Errors, key: &str, v: Option<usize>, default: usize) -> usize {
    match v {
        Some(0) => {
            errs.push(key, "must be at least 1");
            default
        }
        Some(n) => n,
        None => default,
    }
}

/// The longest timeout, interval or wait a config may set: 30 days. Beyond
/// that a deadline (`now + timeout`) can overflow the clock and panic, and no
/// operator means it.
pub const MAX_DURATION_SECS: u64 = 30 * 24 * 3600;

/// A duration in seconds, `default` when unset, at most [`MAX_DURATION_SECS`].
fn secs(errs: &mut Errors, key: &str, v: Option<u64>, default: u64) -> Duration {
    match v {
        Some(n) if n > MAX_DURATION_SECS => {
            errs.push(
                key,
                &format!("must be at most {MAX_DURATION_SECS} (30 days)"),
            );
            Duration::from_secs(default)
        }
        Some(n) => Duration::from_secs(n),
        None => Duration::from_secs(default),
    }
}

/// `[ocr]`. Whether tesseract is installed is found out where OCR runs (and
/// by `ragd doctor`), not here: validation does no IO.
fn ocr_settings(errs: &mut Errors, raw: RawOcr) -> OcrSettings {
    let defaults = OcrSettings::default();
    let languages = match raw.languages {
        Some(langs) if langs.is_empty() => {
            errs.push(
                "ocr.languages",
                "must name at least one language (e.g. \"eng\")",
            );
            defaults.languages
        }
        Some(langs) => {
            // Tesseract's codes: eng, chi_sim, deu_latf, script/Latin.
            for lang in &langs {
                let ok = !lang.is_empty()
                    && lang
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '/');
                if !ok {
                    errs.push(
                        "ocr.languages",
                        &format!("{lang:?} is not a Tesseract language code such as \"eng\""),
                    );
                }
            }
            langs
        }
        None => defaults.languages,
    };
    let dpi = match raw.dpi {
        Some(d) if !(70..=1200).contains(&d) => {
            errs.push("ocr.dpi", "must be between 70 and 1200");
            DEFAULT_OCR_DPI
        }
        Some(d) => d,
        None => DEFAULT_OCR_DPI,
    };
    OcrSettings {
        mode: match raw.enabled {
            None => OcrMode::Auto,
            Some(true) => OcrMode::On,
            Some(false) => OcrMode::Off,
        },
        languages,
        dpi,
        max_pages: match raw.max_pages {
            // No page at all would still OCR images and make every scanned
            // PDF a failure that blames OCR: say what turns it off.
            Some(0) => {
                errs.push(
                    "ocr.max_pages",
                    "must be at least 1 (to read no scanned pages, set enabled = false)",
                );
                DEFAULT_OCR_MAX_PAGES
            }
            Some(n) => n,
            None => DEFAULT_OCR_MAX_PAGES,
        },
    }
}

fn positive_u64(errs: &mut Errors, key: &str, v: Option<u64>, default: u64) -> u64 {
    match v {
        Some(0) => {
            errs.push(key, "must be at least 1");
            default
        }
        Some(n) => n,
        None => default,
    }
}

fn check_url(errs: &mut Errors, key: &str, url: &str) {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        errs.push(key, &format!("{url:?} is not an http(s) URL"));
    }
}

/// Whether two URLs have one origin (scheme, host, port; default ports
/// filled in). Unparseable URLs are reported elsewhere and share no origin.
fn same_origin(a: &str, b: &str) -> bool {
    match (reqwest::Url::parse(a), reqwest::Url::parse(b)) {
        (Ok(a), Ok(b)) => a.origin() == b.origin(),
        _ => false,
    }
}

/// Pipeline and collection names become directory names and metric labels.
fn check_name(errs: &mut Errors, key: &str, name: &str) {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok {
        errs.push(
            key,
            &format!("{name:?} must be 1-64 characters of A-Z a-z 0-9 - _"),
        );
    }
}

fn globs(errs: &mut Errors, key: &str, patterns: &[String]) -> GlobSet {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        match Glob::new(p) {
            Ok(g) => {
                b.add(g);
            }
            Err(e) => errs.push(key, &format!("bad glob {p:?}: {e}")),
        }
    }
    b.build().unwrap_or_else(|e| {
        errs.push(key, &e.to_string());
        GlobSet::empty()
    })
}

fn secret(
    errs: &mut Errors,
    base: &Path,
    section: &str,
    value: Option<Secret>,
    file: Option<String>,
    read: &dyn Fn(&Path) -> std::io::Result<String>,
) -> Option<Secret> {
    match (value, file) {
        (Some(_), Some(_)) => {
            errs.push(
                &format!("{section}.api_key"),
                "give api_key or api_key_file, not both",
            );
            None
        }
        (Some(v), None) => clean_key(errs, &format!("{section}.api_key"), v.expose()),
        (None, Some(f)) => match read(&base.join(&f)) {
            Ok(text) => clean_key(
                errs,
                &format!("{section}.api_key_file"),
                text.lines().next().unwrap_or(""),
            ),
            Err(e) => {
                errs.push(
                    &format!("{section}.api_key_file"),
                    &format!("cannot read {f:?}: {e}"),
                );
                None
            }
        },
        (None, None) => None,
    }
}

/// A key as written, without what files and environment variables add (a
/// byte-order mark, a trailing newline, spaces); `None` if nothing is left.
/// Anything but visible ASCII is refused here, naming the position and never
/// the key: a client would otherwise fail later and echo it in its error text
/// (qdrant-client's "Malformed API key or token: …"), into logs and `why`.
fn clean_key(errs: &mut Errors, key: &str, raw: &str) -> Option<Secret> {
    let v = raw.trim_start_matches('\u{feff}').trim();
    if v.is_empty() {
        return None;
    }
    if let Some(pos) = v.chars().position(|c| !c.is_ascii_graphic()) {
        errs.push(
            key,
            &format!(
                "the key has a character that is not visible ASCII at position {}; check the file or variable it comes from",
                pos + 1
            ),
        );
        return None;
    }
    Some(Secret::new(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_lose_what_files_and_variables_add_and_bad_ones_are_not_echoed() {
        let mut errs = Errors {
            file: PathBuf::from("ragd.toml"),
            list: Vec::new(),
        };
        let k = clean_key(&mut errs, "k", "\u{feff}sk-abc123\n").unwrap();
        assert_eq!(k.expose(), "sk-abc123");
        assert!(clean_key(&mut errs, "k", "  \n").is_none());
        assert!(errs.list.is_empty());
        assert!(clean_key(&mut errs, "k", "sk-abc\u{00e9}123").is_none());
        let text = format!("{:?}", errs.list);
        assert!(
            text.contains("position 7") && !text.contains("sk-abc"),
            "{text}"
        );
    }

    fn pipeline(text: &str) -> RawPipeline {
        toml::from_str(text).unwrap()
    }

    fn no_files(_: &Path) -> std::io::Result<String> {
        Err(std::io::Error::new(std::io::ErrorKind::NotFound, "none"))
    }

    #[test]
    fn reports_every_problem_with_file_and_key() {
        let daemon: RawDaemon = toml::from_str("[embedding]\nprovider = \"nope\"\n").unwrap();
        let p = pipeline("sources = []\n[chunking]\nmax_size = 10\noverlap = 10\n");
        let errs = validate(
            Path::new("c/ragd.toml"),
            daemon,
            vec![("p/a b.toml".into(), p)],
            &no_files,
        )
        .unwrap_err();
        let keys: Vec<_> = errs
            .0
            .iter()
            .map(|e| (e.file.display().to_string(), e.key.clone()))
            .collect();
        assert!(
            keys.contains(&("c/ragd.toml".into(), "embedding.provider".into())),
            "{keys:?}"
        );
        assert!(
            keys.contains(&("p/a b.toml".into(), "name".into())),
            "{keys:?}"
        );
        assert!(
            keys.contains(&("p/a b.toml".into(), "sources".into())),
            "{keys:?}"
        );
        assert!(
            keys.contains(&("p/a b.toml".into(), "chunking.overlap".into())),
            "{keys:?}"
        );
        assert!(
            keys.contains(&("p/a b.toml".into(), "embedding.model".into())),
            "{keys:?}"
        );
    }

    #[test]
    fn defaults_to_embedded_qdrant_under_state_dir() {
        let p = pipeline("sources = [\"docs\"]\n[embedding]\nmodel = \"m\"\n");
        let c = validate(
            Path::new("cfg/ragd.toml"),
            RawDaemon::default(),
            vec![("pl/docs.toml".into(), p)],
            &no_files,
        )
        .unwrap();
        assert_eq!(c.state_dir, PathBuf::from("cfg/../.ragd"));
        assert_eq!(
            c.qdrant,
            QdrantSettings::Embedded {
                path: PathBuf::from("cfg/../.ragd/qdrant"),
                vacuum_min_dead: DEFAULT_VACUUM_MIN_DEAD,
            }
        );
        let p = &c.pipelines[0];
        assert_eq!(p.name, "docs");
        assert_eq!(p.collection, "docs");
        assert_eq!(p.sources, vec![PathBuf::from("pl/docs")]);
    }

    #[test]
    fn timeouts_past_thirty_days_are_refused_not_overflowed() {
        let daemon: RawDaemon = toml::from_str(
            "[embedding]\ntimeout_secs = 18446744073709551615\n[limits]\nextract_timeout_secs = 99999999999\n",
        )
        .unwrap();
        let p = pipeline(
            "sources = [\"d\"]\nsettle_ms = 18446744073709551615\n[embedding]\nmodel = \"m\"\n",
        );
        let text = validate(
            Path::new("cfg/ragd.toml"),
            daemon,
            vec![("pl/p.toml".into(), p)],
            &no_files,
        )
        .unwrap_err()
        .to_string();
        for key in [
            "embedding.timeout_secs",
            "limits.extract_timeout_secs",
            "settle_ms",
        ] {
            assert!(text.contains(key), "{key}: {text}");
        }
    }

    #[test]
    fn two_sources_with_one_folder_name_are_refused() {
        // `a/docs/x.md` and `b/docs/x.md` would both be `docs/x.md`.
        let p = pipeline("sources = [\"a/docs\", \"b/docs/\"]\n[embedding]\nmodel = \"m\"\n");
        let errs = validate(
            Path::new("cfg/ragd.toml"),
            RawDaemon::default(),
            vec![("pl/p.toml".into(), p)],
            &no_files,
        )
        .unwrap_err();
        let text = errs.to_string();
        assert!(
            text.contains("sources") && text.contains("\"docs\""),
            "{text}"
        );

        let p = pipeline("sources = [\"a/docs\", \"b/notes\"]\n[embedding]\nmodel = \"m\"\n");
        let c = validate(
            Path::new("cfg/ragd.toml"),
            RawDaemon::default(),
            vec![("pl/p.toml".into(), p)],
            &no_files,
        )
        .unwrap();
        let p = &c.pipelines[0];
        let prefix = |i| crate::triggers::key::prefix(&p.sources, i);
        assert_eq!((prefix(0), prefix(1)), ("docs/".into(), "notes/".into()));
    }

    #[test]
    fn server_settings_reach_the_store_and_bad_ones_are_named() {
        let daemon: RawDaemon = toml::from_str(
            "[qdrant]\nurl = \"http://q:6334\"\ntimeout_secs = 7\nretry_secs = 9\n\
             shard_number = 3\nreplication_factor = 2\non_disk_payload = true\n",
        )
        .unwrap();
        let c = validate(Path::new("c/ragd.toml"), daemon, vec![], &no_files).unwrap();
        let QdrantSettings::Server { options, retry, .. } = &c.qdrant else {
            panic!("{:?}", c.qdrant);
        };
        assert_eq!(options.timeout, Duration::from_secs(7));
        assert_eq!(*retry, Duration::from_secs(9));
        assert_eq!(
            options.layout,
            crate::store::qdrant::Layout {
                shard_number: Some(3),
                replication_factor: Some(2),
                write_consistency_factor: None,
                on_disk_payload: Some(true),
            }
        );

        let daemon: RawDaemon = toml::from_str(
            "[qdrant]\nurl = \"http://q:6334\"\ntimeout_secs = 0\nshard_number = 0\n\
             replication_factor = 1\nwrite_consistency_factor = 2\n",
        )
        .unwrap();
        let errs = validate(Path::new("c/ragd.toml"), daemon, vec![], &no_files).unwrap_err();
        let mut keys: Vec<_> = errs.0.iter().map(|e| e.key.clone()).collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "qdrant.shard_number",
                "qdrant.timeout_secs",
                "qdrant.write_consistency_factor"
            ]
        );
    }

    #[test]
    fn api_key_file_is_read_and_redacted() {
        let daemon: RawDaemon = toml::from_str(
            "[open_webui]\nurl = \"http://127.0.0.1:8080\"\napi_key_file = \"key\"\n[embedding]\nprovider = \"open-webui\"\n",
        )
        .unwrap();
        let read = |p: &Path| {
            assert_eq!(p, Path::new("c/key"));
            Ok("sk-secret\n".to_owned())
        };
        let c = validate(Path::new("c/ragd.toml"), daemon, vec![], &read).unwrap();
        let o = c.open_webui.as_ref().unwrap();
        assert_eq!(o.api_key.expose(), "sk-secret");
        assert_eq!(c.embedding.url, "http://127.0.0.1:8080");
        assert_eq!(c.embedding.api_key.as_ref().unwrap().expose(), "sk-secret");
        assert!(!format!("{c:?}").contains("sk-secret"));
    }

    /// The Open WebUI key is sent for embeddings only to Open WebUI itself.
    #[test]
    fn the_open_webui_key_does_not_go_to_another_embedding_server() {
        let read = |_: &Path| Ok("sk-secret".to_owned());
        let with_url = |url: &str| -> RawDaemon {
            toml::from_str(&format!(
                "[open_webui]\nurl = \"http://127.0.0.1:8080\"\napi_key_file = \"key\"\n\
                 [embedding]\nprovider = \"open-webui\"\nurl = \"{url}\"\n"
            ))
            .unwrap()
        };
        // The same server, written another way: the key goes with it.
        let c = validate(
            Path::new("c/ragd.toml"),
            with_url("http://127.0.0.1:8080/"),
            vec![],
            &read,
        )
        .unwrap();
        assert_eq!(c.embedding.api_key.as_ref().unwrap().expose(), "sk-secret");
        // Another port, another host: refused with the reason, never sent.
        for other in [
            "http://127.0.0.1:9000",
            "http://embed.internal:8080",
            "https://127.0.0.1:8080",
        ] {
            let errs =
                validate(Path::new("c/ragd.toml"), with_url(other), vec![], &read).unwrap_err();
            let e = errs
                .0
                .iter()
                .find(|e| e.key == "embedding.api_key")
                .expect("an error");
            assert!(e.message.contains("not sent there"), "{}", e.message);
        }
    }

    /// Which keys `App::open` warns about: each service's key going over plain
    /// http to another host, and nothing else.
    #[test]
    fn keys_over_plain_http_to_another_host_are_the_ones_warned_about() {
        let read = |_: &Path| Ok("sk-secret".to_owned());
        let warned = |toml: &str| -> Vec<String> {
            let c = validate(
                Path::new("c/ragd.toml"),
                toml::from_str(toml).unwrap(),
                vec![],
                &read,
            )
            .unwrap();
            c.keys_in_clear()
                .into_iter()
                .map(|(service, url)| format!("{service} {url}"))
                .collect()
        };
        // Every key over http to other hosts.
        assert_eq!(
            warned(
                "[qdrant]\nurl = \"http://qdrant.lan:6334\"\napi_key = \"k\"\n\
                 [open_webui]\nurl = \"http://owui.lan:8080\"\napi_key = \"k\"\n\
                 [embedding]\nprovider = \"ollama\"\nurl = \"http://10.0.0.5:11434\"\napi_key = \"k\"\n"
            ),
            [
                "qdrant http://qdrant.lan:6334",
                "open_webui http://owui.lan:8080",
                "embedding http://10.0.0.5:11434",
            ]
        );
        // The Open WebUI key also goes out with embeddings through Open WebUI.
        assert_eq!(
            warned(
                "[open_webui]\nurl = \"http://owui.lan:8080\"\napi_key = \"k\"\n\
                 [embedding]\nprovider = \"open-webui\"\n"
            ),
            [
                "open_webui http://owui.lan:8080",
                "embedding http://owui.lan:8080"
            ]
        );
        // https, loopback, or no key at all: nothing to say.
        assert!(
            warned(
                "[qdrant]\nurl = \"https://qdrant.lan:6334\"\napi_key = \"k\"\n\
                 [open_webui]\nurl = \"http://127.0.0.1:8080\"\napi_key = \"k\"\n\
                 [embedding]\nprovider = \"ollama\"\nurl = \"http://ollama.lan:11434\"\n"
            )
            .is_empty()
        );
        assert!(
            warned(
                "[qdrant]\nurl = \"http://qdrant.lan:6334\"\n\
                 [open_webui]\nurl = \"https://owui.lan\"\napi_key = \"k\"\n\
                 [embedding]\nprovider = \"ollama\"\nurl = \"http://localhost:11434\"\napi_key = \"k\"\n"
            )
            .is_empty()
        );
    }

    #[test]
    fn bad_cron_and_knowledge_without_server_are_errors() {
        let p = pipeline(
            "sources = [\"d\"]\nschedule = \"every day\"\nreindex_schedule = \"weekly\"\n[embedding]\nmodel = \"m\"\n[knowledge]\nname = \"K\"\n",
        );
        let errs = validate(
            Path::new("ragd.toml"),
            RawDaemon::default(),
            vec![("x.toml".into(), p)],
            &no_files,
        )
        .unwrap_err();
        let keys: Vec<_> = errs.0.iter().map(|e| e.key.as_str()).collect();
        assert!(keys.contains(&"schedule"));
        assert!(keys.contains(&"reindex_schedule"));
        assert!(keys.contains(&"knowledge"));
    }

    #[test]
    fn knowledge_access_names_one_user_or_group_and_read_or_write() {
        let daemon: RawDaemon =
            toml::from_str("[open_webui]\nurl = \"http://127.0.0.1:8080\"\napi_key = \"sk-k\"\n")
                .unwrap();
        let good = pipeline(
            "sources = [\"d\"]\n[embedding]\nmodel = \"m\"\n[knowledge]\nname = \"K\"\n\
             access = [{ group = \"Staff\", permission = \"read\" }, \
             { user = \"ana@example.com\", permission = \"write\" }]\n",
        );
        let c = validate(
            Path::new("ragd.toml"),
            daemon,
            vec![("x.toml".into(), good)],
            &no_files,
        )
        .unwrap();
        assert_eq!(
            c.pipelines[0].kb_access.as_deref(),
            Some(
                &[
                    AccessRule {
                        principal: Principal::Group("Staff".into()),
                        permission: Permission::Read,
                    },
                    AccessRule {
                        principal: Principal::User("ana@example.com".into()),
                        permission: Permission::Write,
                    },
                ][..]
            )
        );

        let daemon: RawDaemon =
            toml::from_str("[open_webui]\nurl = \"http://127.0.0.1:8080\"\napi_key = \"sk-k\"\n")
                .unwrap();
        let bad = pipeline(
            "sources = [\"d\"]\n[embedding]\nmodel = \"m\"\n[knowledge]\nname = \"K\"\n\
             access = [{ user = \"a\", group = \"g\", permission = \"read\" }, \
             { permission = \"read\" }, { group = \"g\", permission = \"admin\" }, \
             { group = \"g\" }]\n",
        );
        let errs = validate(
            Path::new("ragd.toml"),
            daemon,
            vec![("x.toml".into(), bad)],
            &no_files,
        )
        .unwrap_err();
        let keys: Vec<_> = errs.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "knowledge.access[0]",
                "knowledge.access[1]",
                "knowledge.access[2].permission",
                "knowledge.access[3].permission"
            ]
        );
    }

    fn external_setup(
        daemon: &str,
        knowledge: &str,
        more: &[(&str, &str)],
    ) -> Result<Config, ConfigErrors> {
        let daemon: RawDaemon = toml::from_str(&format!(
            "[open_webui]\nurl = \"http://o:8080\"\napi_key = \"sk-1\"\n{daemon}"
        ))
        .unwrap();
        let mut pipelines = vec![(
            PathBuf::from("p/docs.toml"),
            pipeline(&format!(
                "sources = [\"d\"]\n[embedding]\nmodel = \"m\"\n[knowledge]\n{knowledge}"
            )),
        )];
        for (file, text) in more {
            pipelines.push((PathBuf::from(file), pipeline(text)));
        }
        validate(Path::new("c/ragd.toml"), daemon, pipelines, &no_files)
    }

    #[test]
    fn external_knowledge_needs_the_qdrant_server_and_a_name() {
        let server = "[qdrant]\nurl = \"http://q:6334\"\n";
        // Files mode is the default; external defaults the URL to Qdrant's REST port.
        let c = external_setup(server, "name = \"K\"\n", &[]).unwrap();
        assert!(c.pipelines[0].knowledge.is_some() && c.pipelines[0].external.is_none());
        let c = external_setup(server, "name = \"K\"\nmode = \"external\"\n", &[]).unwrap();
        let p = &c.pipelines[0];
        assert!(p.knowledge.is_none());
        assert_eq!(
            p.external.as_ref().unwrap(),
            &ExternalKnowledge {
                name: "K".into(),
                description: "Searches ragd's Qdrant index".into(),
                qdrant_url: "http://q:6333".into(),
            }
        );
        // Both: two bases, told apart by name (both are found by it).
        let c = external_setup(
            server,
            "name = \"K\"\nmode = \"both\"\nqdrant_url_for_openwebui = \"http://qdrant:6333\"\n",
            &[],
        )
        .unwrap();
        let p = &c.pipelines[0];
        assert!(matches!(&p.knowledge, Some(KnowledgeTarget::Name { name, .. }) if name == "K"));
        let ext = p.external.as_ref().unwrap();
        assert_eq!(
            (ext.name.as_str(), ext.qdrant_url.as_str()),
            ("K (external)", "http://qdrant:6333")
        );

        let problems = |r: Result<Config, ConfigErrors>| -> Vec<String> {
            r.unwrap_err()
                .0
                .iter()
                .map(|e| format!("{}: {}", e.key, e.message))
                .collect()
        };
        // The embedded store: Open WebUI cannot reach it.
        let errs = problems(external_setup(
            "",
            "name = \"K\"\nmode = \"external\"\n",
            &[],
        ));
        assert!(
            errs.iter().any(|e| e.contains("needs a Qdrant server")),
            "{errs:?}"
        );
        // By id only: the external base is found by name.
        let errs = problems(external_setup(
            server,
            "id = \"abc\"\nmode = \"external\"\n",
            &[],
        ));
        assert!(
            errs.iter().any(|e| e.starts_with("knowledge.name")),
            "{errs:?}"
        );
        // A non-default gRPC port: the REST URL cannot be guessed.
        let errs = problems(external_setup(
            "[qdrant]\nurl = \"http://q:7334\"\n",
            "name = \"K\"\nmode = \"external\"\n",
            &[],
        ));
        assert!(
            errs.iter()
                .any(|e| e.starts_with("knowledge.qdrant_url_for_openwebui")),
            "{errs:?}"
        );
        // A collection another pipeline writes to: Open WebUI would answer from both.
        let errs = problems(external_setup(
            server,
            "name = \"K\"\nmode = \"external\"\n",
            &[(
                "p/other.toml",
                "sources = [\"e\"]\n[embedding]\nmodel = \"m\"\n[qdrant]\ncollection = \"docs\"\n",
            )],
        ));
        assert!(
            errs.iter()
                .any(|e| e.contains("shared with pipeline \"other\"")),
            "{errs:?}"
        );
        // Unknown modes and a URL without external mode.
        let errs = problems(external_setup(
            server,
            "name = \"K\"\nmode = \"mirror\"\nqdrant_url_for_openwebui = \"http://q:6333\"\n",
            &[],
        ));
        assert!(
            errs.iter()
                .any(|e| e.starts_with("knowledge.mode: unknown mode")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.starts_with("knowledge.qdrant_url_for_openwebui: only used")),
            "{errs:?}"
        );
    }
}
