//! `ragd doctor`: live checks of everything a run depends on, each with a
//! verdict (ok / warn / FAIL) and one line saying why.
//!
//! Read-only: nothing is created on a server (a missing knowledge base is
//! reported, not created), and the state-directory check removes its probe file.
//! Requests are not retried, so a dead endpoint fails fast.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::{Outcome, View};
use crate::config::{self, Config, EmbedProvider, KnowledgeTarget, PipelineConfig, QdrantSettings};
use crate::embed::local::LocalEmbedder;
use crate::embed::{OllamaEmbedder, OllamaSettings};
use crate::extract::{
    OcrMode, OcrSettings, pdftoppm_version, tesseract_languages, tesseract_version,
};
use crate::open_webui::access::AccessRule;
use crate::open_webui::{OpenWebUi, OwuiError, RetryPolicy};
use crate::store::VectorStore;

/// A check's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    /// Works now, but something deserves a look.
    Warn,
    /// Runs will fail until this is fixed.
    Fail,
}

impl Verdict {
    fn label(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Warn => "warn",
            Verdict::Fail => "FAIL",
        }
    }
}

/// One check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub verdict: Verdict,
    pub detail: String,
}

/// The checks made so far.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    fn push(&mut self, name: impl Into<String>, verdict: Verdict, detail: impl Into<String>) {
        self.checks.push(Check {
            name: name.into(),
            verdict,
            detail: detail.into(),
        });
    }

    fn ok(&mut self, name: impl Into<String>, detail: impl Into<String>) {
        self.push(name, Verdict::Ok, detail);
    }

    fn warn(&mut self, name: impl Into<String>, detail: impl Into<String>) {
        self.push(name, Verdict::Warn, detail);
    }

    fn fail(&mut self, name: impl Into<String>, detail: impl Into<String>) {
        self.push(name, Verdict::Fail, detail);
    }

    /// Any check failed.
    pub fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.verdict == Verdict::Fail)
    }

    /// Write one line per check.
    pub fn render(&self, out: &mut dyn Write) -> std::io::Result<()> {
        for c in &self.checks {
            writeln!(out, "{:<4}  {}: {}", c.verdict.label(), c.name, c.detail)?;
        }
        let (fails, warns) = (
            self.checks
                .iter()
                .filter(|c| c.verdict == Verdict::Fail)
                .count(),
            self.checks
                .iter()
                .filter(|c| c.verdict == Verdict::Warn)
                .count(),
        );
        writeln!(
            out,
            "{} check(s): {} failed, {} warning(s)",
            self.checks.len(),
            fails,
            warns
        )
    }
}

/// How long one live request may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Run every check against the config at `path`.
pub async fn check(path: &Path) -> Report {
    let mut r = Report::default();
    let config = match config::load(path) {
        Ok(c) => {
            r.ok(
                "config",
                format!(
                    "{} valid, {} pipeline(s)",
                    path.display(),
                    c.pipelines.len()
                ),
            );
            c
        }
        Err(errors) => {
            let first = errors.0.first().map(|e| e.to_string()).unwrap_or_default();
            r.fail(
                "config",
                format!(
                    "{} problem(s), first: {first} (`ragd validate` lists all)",
                    errors.0.len()
                ),
            );
            return r;
        }
    };
    state_dir(&mut r, &config);
    ocr(&mut r, &config.limits.extract.ocr);
    let recorded_dims = recorded_dims(&config);
    let collection_dims = qdrant(&mut r, &config, &recorded_dims).await;
    embedding(&mut r, &config, &collection_dims, &recorded_dims).await;
    open_webui(&mut r, &config).await;
    r
}

/// The state directory exists (or can be made), is writable, and the ledger opens.
fn state_dir(r: &mut Report, config: &Config) {
    let dir = &config.state_dir;
    let probe = dir.join(format!(".doctor-{}", std::process::id()));
    let result = crate::app::create_private_dir(dir)
        .and_then(|()| std::fs::write(&probe, b"ok"))
        .and_then(|()| std::fs::remove_file(&probe));
    match result {
        Ok(()) => r.ok(
            "state dir",
            format!("{} is writable", super::display_path(dir)),
        ),
        Err(e) => {
            r.fail("state dir", format!("{}: {e}", dir.display()));
            return;
        }
    }
    match View::open(config.clone()) {
        Ok(_) => r.ok("ledger", "opens; schema up to date"),
        Err(e) => r.fail("ledger", e.to_string()),
    }
}

/// OCR: tesseract and pdftoppm run, and the configured languages are
/// installed. Missing tools fail only when `[ocr] enabled = true` asked for
/// them; by default they are a warning (scanned pages and images are then
/// reported, not read).
fn ocr(r: &mut Report, settings: &OcrSettings) {
    const NAME: &str = "ocr";
    const PACKAGES: &str = "apt-get install tesseract-ocr tesseract-ocr-eng poppler-utils";
    if settings.mode == OcrMode::Off {
        r.ok(
            NAME,
            "off ([ocr] enabled = false): scanned PDF pages and images are reported, not read",
        );
        return;
    }
    let missing = |r: &mut Report, detail: String| {
        if settings.mode == OcrMode::On {
            r.fail(NAME, detail);
        } else {
            r.warn(NAME, detail);
        }
    };
    let Some(tesseract) = tesseract_version() else {
        missing(
            r,
            format!(
                "tesseract not found on PATH: scanned PDF pages and images are not read ({PACKAGES})"
            ),
        );
        return;
    };
    let installed = tesseract_languages();
    let absent: Vec<&str> = settings
        .languages
        .iter()
        .filter(|l| !installed.contains(l))
        .map(String::as_str)
        .collect();
    if !absent.is_empty() {
        r.fail(
            NAME,
            format!(
                "{tesseract}: no language data for {} (installed: {}; Debian: tesseract-ocr-LANG)",
                absent.join(", "),
                installed.join(", ")
            ),
        );
        return;
    }
    let Some(pdftoppm) = pdftoppm_version() else {
        missing(
            r,
            format!(
                "{tesseract} reads images, but pdftoppm is not on PATH: scanned PDF pages are not read (poppler-utils)"
            ),
        );
        return;
    };
    r.ok(
        NAME,
        format!(
            "on: {tesseract}, {pdftoppm}; languages {}, {} dpi, at most {} pages per file",
            settings.languages.join("+"),
            settings.dpi,
            settings.max_pages
        ),
    );
}

/// Vector dimensions the ledger recorded per pipeline (name → dim).
fn recorded_dims(config: &Config) -> Vec<(String, Option<u32>)> {
    let Ok(view) = View::open(config.clone()) else {
        return Vec::new();
    };
    config
        .pipelines
        .iter()
        .map(|p| {
            let dim = view
                .ledger
                .pipeline_meta(&p.name)
                .ok()
                .flatten()
                .and_then(|m| m.dim);
            (p.name.clone(), dim)
        })
        .collect()
}

/// Qdrant reachable; each collection's dimension vs the ledger's. Returns the
/// collection dimensions seen (pipeline name → dim).
async fn qdrant(
    r: &mut Report,
    config: &Config,
    recorded: &[(String, Option<u32>)],
) -> Vec<(String, usize)> {
    let mut dims = Vec::new();
    if let QdrantSettings::Embedded { path, .. } = &config.qdrant
        && !path.exists()
    {
        r.ok(
            "qdrant",
            format!("embedded at {} (created on the first run)", path.display()),
        );
        return dims;
    }
    let access = match super::open_store(&config.clone()) {
        Ok(a) => a,
        Err(why) if super::daemon_running(config) => {
            r.warn("qdrant", why);
            return dims;
        }
        Err(why) => {
            r.fail("qdrant", why);
            return dims;
        }
    };
    let store: Arc<dyn VectorStore> = access.store.clone();
    match tokio::time::timeout(TIMEOUT, store.list_collections()).await {
        Ok(Ok(c)) => r.ok(
            "qdrant",
            format!("{} reachable, {} collection(s)", access.location, c.len()),
        ),
        Ok(Err(e)) => {
            r.fail("qdrant", format!("{}: {e}", access.location));
            return dims;
        }
        Err(_) => {
            r.fail(
                "qdrant",
                format!("{}: no answer in {}s", access.location, TIMEOUT.as_secs()),
            );
            return dims;
        }
    }
    for p in &config.pipelines {
        let name = format!("collection {}", p.collection);
        let want = recorded
            .iter()
            .find(|(n, _)| *n == p.name)
            .and_then(|(_, d)| *d);
        match store.collection_dim(&p.collection).await {
            Ok(None) => r.ok(name, "does not exist yet (the first run creates it)"),
            Ok(Some(d)) => {
                dims.push((p.name.clone(), d));
                match want {
                    Some(w) if w as usize != d => r.fail(
                        name,
                        format!(
                            "{d} dims, but the ledger recorded {w} for pipeline {}",
                            p.name
                        ),
                    ),
                    _ => r.ok(name, format!("{d} dims")),
                }
            }
            Err(e) => r.fail(name, e.to_string()),
        }
    }
    dims
}

/// The embedding endpoint answers, each model is there, and its dimension fits
/// the collection.
async fn embedding(
    r: &mut Report,
    config: &Config,
    collection_dims: &[(String, usize)],
    recorded: &[(String, Option<u32>)],
) {
    let e = &config.embedding;
    let models: BTreeSet<&str> = config.pipelines.iter().map(|p| p.model.as_str()).collect();
    let expected = |model: &str| -> Vec<(String, usize)> {
        config
            .pipelines
            .iter()
            .filter(|p| p.model == model)
            .filter_map(|p| {
                let seen = collection_dims
                    .iter()
                    .find(|(n, _)| *n == p.name)
                    .map(|(_, d)| *d);
                let rec = recorded
                    .iter()
                    .find(|(n, _)| *n == p.name)
                    .and_then(|(_, d)| d.map(|d| d as usize));
                seen.or(rec).map(|d| (p.collection.clone(), d))
            })
            .collect()
    };
    if e.provider == EmbedProvider::Local {
        let Some(dir) = e.model_dir.clone() else {
            r.fail("embedding", "provider \"local\" without model_dir");
            return;
        };
        for model in models {
            let name = format!("model {model}");
            let dir2 = dir.clone();
            let model_name = model.to_owned();
            let loaded =
                tokio::task::spawn_blocking(move || LocalEmbedder::load(&dir2, model_name)).await;
            match loaded {
                Ok(Ok(m)) => {
                    dimension_check(r, &name, m.dimension(), &expected(model), "local model")
                }
                Ok(Err(err)) => r.fail(
                    name,
                    format!(
                        "{}: {err} (get one with scripts/fetch-model.sh)",
                        dir.display()
                    ),
                ),
                Err(err) => r.fail(name, format!("loading panicked: {err}")),
            }
        }
        return;
    }
    let settings = |model: &str| OllamaSettings {
        url: e.url.clone(),
        via_open_webui: e.provider == EmbedProvider::OpenWebUi,
        api_key: e.api_key.as_ref().map(|k| k.expose().to_owned()),
        model: model.to_owned(),
        timeout: TIMEOUT,
        max_retries: 0,
        max_batch: 1,
        ca_file: config.tls_ca_file.clone(),
    };
    let Some(first) = models.iter().next() else {
        return;
    };
    let lister = match OllamaEmbedder::new(settings(first)) {
        Ok(c) => c,
        Err(err) => {
            r.fail("embedding", err.to_string());
            return;
        }
    };
    let available = match lister.list_models().await {
        Ok(m) => {
            r.ok(
                "embedding",
                format!("{} reachable, {} model(s)", e.url, m.len()),
            );
            m
        }
        Err(err) => {
            r.fail("embedding", format!("{}: {err}", e.url));
            return;
        }
    };
    for model in models {
        let name = format!("model {model}");
        if !available.iter().any(|m| same_model(m, model)) {
            r.fail(
                name,
                format!(
                    "not offered by {} (has: {}); pull it or fix [embedding] model",
                    e.url,
                    available.join(", ")
                ),
            );
            continue;
        }
        let probe = match OllamaEmbedder::new(settings(model)) {
            Ok(c) => c.probe_dimension().await,
            Err(err) => Err(err),
        };
        match probe {
            Ok(d) => dimension_check(r, &name, d, &expected(model), "present"),
            Err(err) => r.fail(name, format!("present, but embedding failed: {err}")),
        }
    }
}

/// Compare a model's dimension with the collections it writes to.
fn dimension_check(
    r: &mut Report,
    name: &str,
    dim: usize,
    expected: &[(String, usize)],
    what: &str,
) {
    let bad: Vec<String> = expected
        .iter()
        .filter(|(_, d)| *d != dim)
        .map(|(c, d)| format!("collection {c} has {d}"))
        .collect();
    if bad.is_empty() {
        r.ok(name, format!("{what}, {dim} dims"));
    } else {
        r.fail(
            name,
            format!(
                "gives {dim} dims but {}: run `ragd reindex` or change the model back",
                bad.join(", ")
            ),
        );
    }
}

/// `nomic-embed-text` is offered as `nomic-embed-text:latest`.
fn same_model(offered: &str, wanted: &str) -> bool {
    offered == wanted || (!wanted.contains(':') && offered.strip_suffix(":latest") == Some(wanted))
}

/// Open WebUI reachable, its version, the key's user and role, each knowledge
/// base found and writable.
async fn open_webui(r: &mut Report, config: &Config) {
    let Some(s) = &config.open_webui else {
        if config.pipelines.iter().any(|p| p.knowledge.is_some()) {
            r.fail(
                "open webui",
                "a pipeline names a knowledge base but [open_webui] is not set",
            );
        }
        return;
    };
    let client = match OpenWebUi::with_http(
        &s.url,
        s.api_key.expose().to_owned(),
        TIMEOUT,
        &config.http(),
    ) {
        Ok(c) => c.with_retry(RetryPolicy {
            max_attempts: 1,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(10),
        }),
        Err(e) => {
            r.fail("open webui", e.to_string());
            return;
        }
    };
    match client.version().await {
        Ok(v) => r.ok("open webui", format!("{} reachable, version {v}", s.url)),
        Err(e) => {
            r.fail("open webui", format!("{}: {e}", s.url));
            return;
        }
    }
    let me = match client.whoami().await {
        Ok(w) if w.role == "pending" => {
            r.fail(
                "api key",
                format!(
                    "user {} is pending approval: an admin must activate the account",
                    w.name
                ),
            );
            return;
        }
        Ok(w) => {
            r.ok(
                "api key",
                format!("valid: user {} <{}>, role {}", w.name, w.email, w.role),
            );
            w
        }
        Err(e @ OwuiError::Unauthorized { .. }) => {
            r.fail("api key", format!("{e}: set [open_webui] api_key"));
            return;
        }
        Err(e) => {
            r.fail("api key", e.to_string());
            return;
        }
    };
    let role = me.role.clone();
    external_knowledge(r, config, &client, &role).await;
    for p in &config.pipelines {
        let Some(target) = &p.knowledge else { continue };
        if let Some(rules) = &p.kb_access {
            access(r, &client, p, rules).await;
        }
        let name = format!("knowledge base for {}", p.name);
        let found = match target {
            KnowledgeTarget::Id(id) => match client.get_knowledge(id).await {
                Ok(kb) => Some(kb),
                Err(OwuiError::NotFound { .. }) => {
                    r.fail(name, format!("no knowledge base with id {id}"));
                    continue;
                }
                Err(e) => {
                    r.fail(name, e.to_string());
                    continue;
                }
            },
            KnowledgeTarget::Name { name: kb_name, .. } => {
                match client.find_knowledge_by_name(kb_name, &me).await {
                    Ok(found) => {
                        match found {
                            Some(kb) => Some(kb),
                            None if role == "admin" || role == "user" => {
                                r.ok(
                                    name,
                                    format!(
                                        "{kb_name:?} does not exist yet for user {} (a base of \
                                         that name another user owns is not used by name: give \
                                         [knowledge] id for it); the first run creates it",
                                        me.name
                                    ),
                                );
                                continue;
                            }
                            None => {
                                r.fail(name, format!("{kb_name:?} does not exist and role {role} may not create it"));
                                continue;
                            }
                        }
                    }
                    Err(e) => {
                        r.fail(name, e.to_string());
                        continue;
                    }
                }
            }
        };
        let Some(kb) = found else { continue };
        let whose = match &kb.user_id {
            Some(owner) if *owner == me.id => "yours",
            Some(_) => "another user's, shared with you",
            None => "owner not reported",
        };
        match write_access(config, &s.url, s.api_key.expose(), &kb.id).await {
            Ok(Some(true)) => r.ok(
                name,
                format!("{:?} ({}, {whose}) exists and is writable", kb.name, kb.id),
            ),
            Ok(Some(false)) => r.fail(
                name,
                format!(
                    "{:?} ({}) exists but this key may not write to it",
                    kb.name, kb.id
                ),
            ),
            Ok(None) if role == "admin" => r.ok(
                name,
                format!("{:?} ({}) exists; writable (admin)", kb.name, kb.id),
            ),
            Ok(None) => r.warn(
                name,
                format!(
                    "{:?} ({}) exists; the server does not report write access",
                    kb.name, kb.id
                ),
            ),
            Err(e) => r.warn(
                name,
                format!(
                    "{:?} ({}) exists; write access unknown: {e}",
                    kb.name, kb.id
                ),
            ),
        }
    }
}

/// `[knowledge] access`: every user and group it names exists on the server,
/// once (what each sync resolves them to).
async fn access(r: &mut Report, client: &OpenWebUi, p: &PipelineConfig, rules: &[AccessRule]) {
    let name = format!("knowledge access for {}", p.name);
    match crate::open_webui::access::resolve(client, rules).await {
        Ok(grants) => r.ok(
            name,
            format!(
                "{} rule(s) name existing users and groups ({} grants)",
                rules.len(),
                grants.len()
            ),
        ),
        Err(e) => r.fail(name, format!("{e} in {}", super::display_path(&p.file))),
    }
}

/// How long Open WebUI took to process 1,000 Markdown files in `mode = "files"` with
/// `RAG_EMBEDDING_BATCH_SIZE` 1, measured by `scripts/bench-external.sh`
/// (docs/external-knowledge.md); quoted by the batch-size warning.
const FILES_MODE_COST: &str = "1,000 Markdown files took 501 s to become answerable in mode \"files\" \
    (34,453 embedding requests by Open WebUI) against 16.7 s in mode \"external\" (docs/external-knowledge.md)";

/// The cosine above which Open WebUI's vector for a text is taken to be ragd's
/// (the same model gives 1.0 up to float rounding; another model or a query
/// prefix gives visibly less).
const SAME_VECTORS: f64 = 0.999;

/// Open WebUI's RAG embedding against ragd's, for the pipelines Open WebUI searches
/// itself (`mode = "external"`): a chunk ragd stored is asked for with its own text
/// through Open WebUI (`external/source/test`, nothing stored), which embeds it
/// with its RAG embedding and query prefix; the same model gives back that very
/// point with a cosine of 1. Also warns when uploads are embedded one chunk per
/// request (`mode = "files"`).
async fn external_knowledge(r: &mut Report, config: &Config, client: &OpenWebUi, role: &str) {
    let external: Vec<_> = config
        .pipelines
        .iter()
        .filter(|p| p.external.is_some())
        .collect();
    let files_mode = config.pipelines.iter().any(|p| p.knowledge.is_some());
    if external.is_empty() && !files_mode {
        return;
    }
    if role != "admin" {
        if !external.is_empty() {
            r.fail(
                "external knowledge",
                format!(
                    "the key's user has role {role}; Open WebUI's external knowledge and its \
                     embedding settings are admin only: use an admin's API key"
                ),
            );
        }
        return;
    }
    let rag = match client.rag_embedding().await {
        Ok(rag) => rag,
        Err(e) => {
            r.fail("open webui embedding", e.to_string());
            return;
        }
    };
    let engine = if rag.engine.is_empty() {
        "built-in sentence-transformers"
    } else {
        rag.engine.as_str()
    };
    r.ok(
        "open webui embedding",
        format!(
            "engine {engine}, model {:?}{}, batch size {}; query prefix: Open WebUI's \
             RAG_EMBEDDING_QUERY_PREFIX is not shown by its API, ragd embeds without a prefix \
             (the vector check below sees any difference it makes)",
            rag.model,
            rag.ollama_url
                .as_deref()
                .map(|u| format!(" at {u}"))
                .unwrap_or_default(),
            rag.batch_size
                .map_or_else(|| "unknown".to_owned(), |b| b.to_string()),
        ),
    );
    if files_mode && rag.batch_size == Some(1) {
        r.warn(
            "open webui embedding",
            format!(
                "RAG_EMBEDDING_BATCH_SIZE is 1: Open WebUI embeds uploaded files one chunk per \
                 request; {FILES_MODE_COST}. Raise it (Admin > Settings > Documents), or use \
                 [knowledge] mode = \"external\""
            ),
        );
    }
    if external.is_empty() {
        return;
    }
    let access = match super::open_store(config) {
        Ok(a) => a,
        Err(why) => {
            r.warn("external knowledge", format!("vectors not compared: {why}"));
            return;
        }
    };
    let api_key = match &config.qdrant {
        QdrantSettings::Server { api_key, .. } => api_key.as_ref().map(|k| k.expose().to_owned()),
        QdrantSettings::Embedded { .. } => None,
    };
    for p in external {
        let Some(ext) = &p.external else { continue };
        let name = format!("external knowledge for {}", p.name);
        let probe = match probe_point(&*access.store, &p.collection).await {
            Ok(Some(point)) => point,
            Ok(None) => {
                r.ok(
                    name,
                    format!(
                        "collection {:?} has no points yet: vectors compared once it has",
                        p.collection
                    ),
                );
                continue;
            }
            Err(e) => {
                r.fail(name, e.to_string());
                continue;
            }
        };
        let answer = client
            .test_external_source(
                &ext.qdrant_url,
                api_key.as_deref(),
                &p.collection,
                &probe.1,
                5,
            )
            .await;
        let found = match answer {
            Ok(found) => found,
            Err(e) => {
                r.fail(
                    name,
                    format!(
                        "Open WebUI could not search {:?} at {}: {e}. It needs `qdrant-client` in \
                         its Python environment (pip install qdrant-client==1.18.0; docker: an \
                         image with it) and must reach Qdrant's REST port at that URL \
                         ([knowledge] qdrant_url_for_openwebui)",
                        p.collection, ext.qdrant_url
                    ),
                );
                continue;
            }
        };
        let score = found
            .metadatas
            .iter()
            .zip(&found.distances)
            .find(|(m, _)| m.get("document_id").and_then(|v| v.as_str()) == Some(probe.0.as_str()))
            .and_then(|(_, d)| *d);
        match score {
            Some(s) if s >= SAME_VECTORS => r.ok(
                name,
                format!(
                    "Open WebUI embeds like ragd: a stored chunk asked for with its own text comes \
                     back with cosine {s:.4} ({:?} at {})",
                    p.collection, ext.qdrant_url
                ),
            ),
            other => r.fail(
                name,
                format!(
                    "Open WebUI's RAG embedding ({engine} {:?}) gives other vectors than ragd's \
                     ({:?}): a stored chunk asked for with its own text {}. Fix: in Open WebUI \
                     (Admin > Settings > Documents) {}, and leave RAG_EMBEDDING_QUERY_PREFIX unset",
                    rag.model,
                    p.model,
                    match other {
                        Some(s) => format!("scores only {s:.4}"),
                        None => "is not among the top 5".to_owned(),
                    },
                    same_model_advice(&config.embedding.provider, &p.model),
                ),
            ),
        }
    }
}

/// What to set in Open WebUI so that it embeds like ragd's `provider` and `model`.
fn same_model_advice(provider: &EmbedProvider, model: &str) -> String {
    match provider {
        // ragd runs the sentence-transformers folder in-process; Open WebUI's
        // built-in engine runs the same model by its hub name.
        EmbedProvider::Local => format!(
            "set RAG_EMBEDDING_ENGINE empty (its built-in sentence-transformers) and \
             RAG_EMBEDDING_MODEL to the hub name of the model in ragd's model_dir \
             (sentence-transformers/{model}), or serve one model to both through an Ollama API"
        ),
        EmbedProvider::Ollama | EmbedProvider::OpenWebUi => format!(
            "set RAG_EMBEDDING_ENGINE=ollama and RAG_EMBEDDING_MODEL={model} on the same server \
             as ragd's [embedding] url"
        ),
    }
}

/// Some stored point of `collection`: its id and text.
async fn probe_point(
    store: &dyn VectorStore,
    collection: &str,
) -> Result<Option<(String, String)>, crate::store::StoreError> {
    let Some(dim) = store.collection_dim(collection).await? else {
        return Ok(None);
    };
    // Any non-zero vector has a nearest point.
    let hits = store
        .search(collection, vec![1.0 / (dim as f32).sqrt(); dim], 1, None)
        .await?;
    Ok(hits
        .into_iter()
        .next()
        .map(|h| (h.id.to_string(), h.payload.text)))
}

/// `write_access` of `GET /api/v1/knowledge/{id}` (Open WebUI 0.6+ reports it;
/// older servers do not).
async fn write_access(
    config: &Config,
    base: &str,
    key: &str,
    id: &str,
) -> Result<Option<bool>, String> {
    let url = format!("{}/api/v1/knowledge/{id}", base.trim_end_matches('/'));
    let client = crate::http::client(&crate::http::ClientSettings {
        timeout: Some(TIMEOUT),
        ..config.http()
    })
    .map_err(|e| e.to_string())?;
    let response = client
        .get(url)
        .bearer_auth(key)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| e.without_url().to_string())?;
    // One knowledge base's record; its file list can be long, not endless.
    let body = crate::http::read_capped(response, 64 << 20)
        .await
        .map_err(|e| e.to_string())?;
    let body: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    Ok(body
        .get("write_access")
        .and_then(serde_json::Value::as_bool))
}

/// `ragd doctor`: [`Outcome::ChecksFailed`] when any check fails,
/// [`Outcome::ConfigInvalid`] when the config itself is invalid.
pub async fn run(path: &Path, json: bool) -> Result<Outcome, super::OpsError> {
    let report = check(path).await;
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        report.render(&mut out)?;
    }
    let config_failed = report
        .checks
        .first()
        .is_some_and(|c| c.name == "config" && c.verdict == Verdict::Fail);
    Ok(if config_failed {
        Outcome::ConfigInvalid
    } else if report.failed() {
        Outcome::ChecksFailed
    } else {
        Outcome::Done
    })
}

#[cfg(test)]
mod tests {
    use super::same_model;

    #[test]
    fn latest_tag_is_implied() {
        assert!(same_model("nomic-embed-text:latest", "nomic-embed-text"));
        assert!(same_model("bge:v1", "bge:v1"));
        assert!(!same_model("bge:v2", "bge:v1"));
        assert!(!same_model("other:latest", "nomic-embed-text"));
    }
}
