//! An in-process fake of the Open WebUI endpoints ragd uses, faithful to what Open WebUI
//! 0.12.4 observably does (shared/OPENWEBUI.md, and its routers `files.py`,
//! `knowledge.py`, `retrieval.py`):
//!
//! - uploads answer `pending` at once; processing "runs" while the file is polled and
//!   completes after a configurable number of status polls and/or delay;
//! - `meta.file_hash` is the SHA-256 of the bytes (or the uploader's `file_hash`), the
//!   upload metadata comes back under `meta.data`;
//! - an empty upload is a 400 `The content provided is empty…`; a `.pdf` that is not a
//!   PDF fails processing (`Stream has ended unexpectedly`); text that is only whitespace
//!   fails with the empty-content message; legacy `.doc` and `.ppt` fail processing
//!   unless the server has `open-webui[unstructured]` ([`FakeHandle::set_unstructured`]);
//! - `file/add` of another file whose extracted text is already in the base is a 400
//!   `400: Duplicate content detected…` and marks that file `failed`; adding a file that
//!   was not processed yet is the empty-content 400 (and marks it `failed`);
//! - `file/remove` deletes the base's vectors by file id *and* by text hash, and deletes
//!   the file unless `delete_file=false`;
//! - `metadata.knowledge_id` auto-links on 0.12+ and reports `completed` only once linked
//!   (or `failed` with the duplicate message); its duplicate check is taken when processing
//!   starts and the text is written when it ends, so identical files processing at once
//!   both get in, as on the real server; a file deleted while that processing is
//!   under way still leaves its vectors in the base (see [`delete_file_everywhere`]);
//! - 0.12's directories: `dirs/create` (400 for a name taken at that level, except at the
//!   root, where the real server's unique constraint lets NULL parents through),
//!   `dirs/{id}/update`, `dirs/{id}/delete?move_files=` (the subtree's files go to the
//!   parent, or are unlinked), `file/move`, `files/{id}/rename`, an upload's
//!   `metadata.directory_id` (ignored unless a directory of the base), listings by
//!   `directory_id` with each file's `directory_path` and the level's `directories`, and
//!   `sync/diff` keyed by (directory path, filename) against the stored `file_hash`;
//!   below 0.12 those routes are FastAPI's 404 `Not Found`;
//! - a wrong key is a 401; `GET /api/v1/auths/` refuses API keys with a 403;
//! - `DELETE /knowledge/{id}/delete` drops the base and its vectors, not its files;
//! - missing knowledge bases are 404 on `GET /knowledge/{id}` and the 400
//!   `We could not find what you're looking for :/` on the others; listings paginate
//!   (knowledge 30 a page, files 50).
//!
//! - external knowledge (`retrieval/external.py`, `knowledge.py` `/external/…`, admin
//!   routes): connections kept in a list (listed without their key, `auth_configured`
//!   instead), `external/knowledge/create` makes a base with `meta.source = "external"`
//!   (400 `Content field is required.` without `content_field`), `external/source/{id}`
//!   re-points one after a test query that must find something, and `retrieve-test`
//!   really searches the connection's Qdrant over REST (`points/query`, no filter) with
//!   the question embedded by the fake's RAG embedder ([`FakeHandle::set_rag_embedder`];
//!   the same hashing embedder as ragd's embedding server), mapping `payload.text` and
//!   `payload.metadata` as the server does (`name`, `source`, `document_id` = point id);
//!   `GET /retrieval/embedding` reports that embedder.
//!
//! Fault injection ([`Fault`]) and counters ([`FakeCounters`]) serve the failure tests.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router, middleware};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const NOT_FOUND: &str = "We could not find what you're looking for :/";
const EMPTY_CONTENT: &str = "The content provided is empty. Please ensure that there is text or data present before proceeding.";
const DUPLICATE_CONTENT: &str =
    "Duplicate content detected. Please provide unique content to proceed.";
const INVALID_TOKEN: &str =
    "Your session has expired or the token is invalid. Please sign in again.";
const KNOWLEDGE_PAGE: usize = 30;
const FILES_PAGE: usize = 50;

/// Which endpoint a [`Fault`] applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FakeOp {
    /// `POST /api/v1/files/`.
    Upload,
    /// `POST /api/v1/knowledge/{id}/file/add`.
    Add,
    /// `POST /api/v1/knowledge/{id}/file/remove`.
    Remove,
    /// `DELETE /api/v1/files/{id}`.
    Delete,
    /// `POST /api/v1/knowledge/create`.
    CreateKnowledge,
    /// `GET /api/v1/files/{id}/process/status`.
    Status,
    /// `POST /api/v1/knowledge/{id}/dirs/create`.
    CreateDir,
    /// `POST /api/v1/knowledge/{id}/file/move`.
    Move,
}

/// A failure to inject into the next calls of one endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer 500 without doing anything.
    Http500,
    /// Answer 503 without doing anything.
    Http503,
    /// Answer the upload handler's 400 `{"detail":"Error uploading file"}` (the locked
    /// SQLite database) without doing anything.
    LockedDb,
    /// Do the work, then break the connection instead of answering.
    DropAfterWrite,
}

/// What the fake has done, for assertions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FakeCounters {
    /// Upload requests received (faulted ones included).
    pub upload_requests: u64,
    /// Files stored by uploads.
    pub uploads: u64,
    /// Successful `file/add` calls.
    pub adds: u64,
    /// Successful `file/remove` calls.
    pub removes: u64,
    /// Files deleted (by `DELETE /files/{id}` or `file/remove` with `delete_file`).
    pub deletes: u64,
    /// Status polls answered.
    pub status_polls: u64,
    /// Pages of knowledge-base listings answered (of the whole base, not of one
    /// directory).
    pub listings: u64,
    /// Name searches (`files/search`) answered, one a page.
    pub searches: u64,
    /// Successful `file/move` calls.
    pub moves: u64,
    /// Successful `files/{id}/rename` calls.
    pub renames: u64,
    /// Directories created and deleted.
    pub dir_creates: u64,
    pub dir_deletes: u64,
    /// `knowledge/{id}/access/update` calls answered.
    pub access_updates: u64,
    /// External knowledge connections and bases created.
    pub external_creates: u64,
    /// Queries embedded by the fake's own RAG embedder (retrievals).
    pub rag_embeds: u64,
}

/// A file as the fake stores it.
#[derive(Clone, Debug)]
pub struct FakeFile {
    /// File id.
    pub id: String,
    /// Name it was uploaded under.
    pub filename: String,
    /// The bytes.
    pub bytes: Vec<u8>,
    /// `meta.file_hash`.
    pub file_hash: String,
    /// `meta.data`.
    pub metadata: Value,
    /// `data.status`, when processing was asked for.
    pub status: Option<String>,
    /// `data.error`.
    pub error: Option<String>,
    /// Extracted text, once processed.
    pub content: Option<String>,
    /// SHA-256 of the extracted text (Open WebUI's `hash`).
    pub hash: Option<String>,
    content_type: String,
    created_at: i64,
    polls_left: u32,
    ready_at: Instant,
    /// The auto-link's duplicate check, taken when processing starts (the
    /// upload): the real server checks the base, embeds, and only then writes,
    /// so two identical files processing at once both pass. `None` until taken.
    auto_link_duplicate: Option<bool>,
}

#[derive(Clone, Debug)]
struct FakeKnowledge {
    id: String,
    /// The owner: the key's user (`fake-user`) unless made by [`FakeHandle::add_knowledge_of`].
    user_id: String,
    name: String,
    description: String,
    created_at: i64,
    /// Linked file ids, in link order.
    files: Vec<String>,
    /// The base's vector collection, reduced to (file id, text hash) per file.
    vectors: Vec<(String, String)>,
    /// Its directories by id.
    dirs: BTreeMap<String, FakeDir>,
    /// Each linked file's directory (`knowledge_file.directory_id`); absent: the root.
    file_dirs: HashMap<String, String>,
    /// `access_grant` rows: (principal_type, principal_id, permission), in the
    /// order the last `access/update` gave them, duplicates dropped.
    grants: Vec<(String, String, String)>,
    /// `meta`: `null`, or an external base's `{source: "external", external: {…}}`.
    meta: Value,
}

#[derive(Clone, Debug)]
struct FakeDir {
    id: String,
    name: String,
    parent_id: Option<String>,
    created_at: i64,
}

#[derive(Debug)]
struct Inner {
    version: String,
    files: BTreeMap<String, FakeFile>,
    knowledge: BTreeMap<String, FakeKnowledge>,
    faults: HashMap<FakeOp, Vec<Fault>>,
    counters: FakeCounters,
    polls_to_complete: u32,
    processing_delay: Duration,
    next_seq: u64,
    /// Accounts besides the key's own (`user_json`): (id, name, email).
    users: Vec<(String, String, String)>,
    /// User groups: (id, name).
    groups: Vec<(String, String)>,
    /// External knowledge connections, with their `auth_config`.
    connections: Vec<Value>,
    /// What the server's RAG embedding function is: model name and embedder.
    rag: (String, ragd::embed::server::HashEmbedder),
    /// `RAG_EMBEDDING_QUERY_PREFIX`: put before every question it embeds.
    rag_query_prefix: String,
    /// The server has `open-webui[unstructured]` (and LibreOffice): it reads
    /// legacy doc and ppt files.
    unstructured: bool,
    /// Seconds the server's clock is ahead of ours (negative: behind); its
    /// `created_at` stamps are its own time, as a real server's are.
    clock_offset: i64,
}

struct Shared {
    api_key: String,
    inner: Mutex<Inner>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running fake; the server stops when the handle is dropped.
pub struct FakeHandle {
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    /// The key it accepts.
    pub api_key: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeHandle {
    /// A snapshot of the counters.
    pub fn counters(&self) -> FakeCounters {
        self.shared.lock().counters
    }

    /// Makes the next `times` calls of `op` fail with `fault`, after any already queued.
    pub fn inject(&self, op: FakeOp, fault: Fault, times: u32) {
        let mut inner = self.shared.lock();
        let queue = inner.faults.entry(op).or_default();
        queue.extend(std::iter::repeat_n(fault, times as usize));
    }

    /// Next `n` uploads answer 500.
    pub fn fail_uploads_500(&self, n: u32) {
        self.inject(FakeOp::Upload, Fault::Http500, n);
    }

    /// Next `n` uploads answer the locked-database 400.
    pub fn fail_uploads_locked(&self, n: u32) {
        self.inject(FakeOp::Upload, Fault::LockedDb, n);
    }

    /// The server's clock runs `secs` ahead of this machine's (negative:
    /// behind), as on a server that is not this machine.
    pub fn set_clock_offset(&self, secs: i64) {
        self.shared.lock().clock_offset = secs;
    }

    /// Next `n` calls of `op` do their work and then drop the connection.
    pub fn drop_after_write(&self, op: FakeOp, n: u32) {
        self.inject(op, Fault::DropAfterWrite, n);
    }

    /// Processing of files uploaded from now on completes after `polls` status polls
    /// (answered `processing`) and once `delay` has passed since the upload.
    pub fn set_processing(&self, polls: u32, delay: Duration) {
        let mut inner = self.shared.lock();
        inner.polls_to_complete = polls;
        inner.processing_delay = delay;
    }

    /// The version `GET /api/version` reports; below 0.12 `metadata.knowledge_id` is
    /// ignored, as older servers did.
    pub fn set_version(&self, version: &str) {
        self.shared.lock().version = version.to_owned();
    }

    /// A knowledge base named `name` that another user owns (an admin's key
    /// lists it, writable); made a second before any the key makes now, so it
    /// is the oldest of its name. Returns its id.
    pub fn add_knowledge_of(&self, user_id: &str, name: &str) -> String {
        let mut inner = self.shared.lock();
        inner.next_seq += 1;
        let kb = FakeKnowledge {
            id: format!("fake-kb-{:06}", inner.next_seq),
            user_id: user_id.to_owned(),
            name: name.to_owned(),
            description: String::new(),
            created_at: now_secs() - 1,
            files: Vec::new(),
            vectors: Vec::new(),
            dirs: BTreeMap::new(),
            file_dirs: HashMap::new(),
            grants: Vec::new(),
            meta: Value::Null,
        };
        let id = kb.id.clone();
        inner.knowledge.insert(id.clone(), kb);
        id
    }

    /// Whether the server reads legacy doc and ppt files, as one with
    /// `open-webui[unstructured]` and LibreOffice does; off by default, like a
    /// plain `pip install open-webui==0.12.4`.
    pub fn set_unstructured(&self, on: bool) {
        self.shared.lock().unstructured = on;
    }

    /// All stored files.
    pub fn files(&self) -> Vec<FakeFile> {
        self.shared.lock().files.values().cloned().collect()
    }

    /// Each linked file's place in the knowledge base, `dir/name` (`name` at the root),
    /// by file id.
    pub fn knowledge_places(&self, knowledge_id: &str) -> BTreeMap<String, String> {
        let inner = self.shared.lock();
        let Some(kb) = inner.knowledge.get(knowledge_id) else {
            return BTreeMap::new();
        };
        kb.files
            .iter()
            .filter_map(|id| inner.files.get(id))
            .map(|f| {
                let dir = kb.file_dirs.get(&f.id).map(|d| dir_path(kb, d));
                let place = match dir {
                    Some(d) if !d.is_empty() => format!("{d}/{}", f.filename),
                    _ => f.filename.clone(),
                };
                (f.id.clone(), place)
            })
            .collect()
    }

    /// The paths of a knowledge base's directories.
    pub fn knowledge_dirs(&self, knowledge_id: &str) -> Vec<String> {
        let inner = self.shared.lock();
        let Some(kb) = inner.knowledge.get(knowledge_id) else {
            return Vec::new();
        };
        let mut out: Vec<String> = kb.dirs.keys().map(|d| dir_path(kb, d)).collect();
        out.sort();
        out
    }

    /// The model and embedder the server's RAG embedding function uses.
    pub fn set_rag_embedder(&self, model: &str, embedder: ragd::embed::server::HashEmbedder) {
        self.shared.lock().rag = (model.to_owned(), embedder);
    }

    /// `RAG_EMBEDDING_QUERY_PREFIX` (e5-style models want `query: `).
    pub fn set_rag_query_prefix(&self, prefix: &str) {
        self.shared.lock().rag_query_prefix = prefix.to_owned();
    }

    /// Ids of the files linked to a knowledge base, in link order.
    pub fn knowledge_file_ids(&self, knowledge_id: &str) -> Vec<String> {
        self.shared
            .lock()
            .knowledge
            .get(knowledge_id)
            .map(|kb| kb.files.clone())
            .unwrap_or_default()
    }
}

/// Starts a fake Open WebUI on a loopback port, accepting `api_key` as bearer token.
pub async fn spawn_fake(api_key: &str) -> FakeHandle {
    let shared = Arc::new(Shared {
        api_key: api_key.to_owned(),
        inner: Mutex::new(Inner {
            version: "0.12.4".to_owned(),
            files: BTreeMap::new(),
            knowledge: BTreeMap::new(),
            faults: HashMap::new(),
            counters: FakeCounters::default(),
            polls_to_complete: 1,
            processing_delay: Duration::ZERO,
            next_seq: 0,
            users: Vec::new(),
            groups: Vec::new(),
            connections: Vec::new(),
            rag: (
                "hash-embed".to_owned(),
                ragd::embed::server::HashEmbedder::new(384),
            ),
            rag_query_prefix: String::new(),
            unstructured: false,
            clock_offset: 0,
        }),
    });
    let app = Router::new()
        .route("/api/v1/auths/", get(auths))
        .route("/api/v1/users/user/status", get(user_status))
        .route("/api/v1/files/", post(upload).get(list_files))
        .route("/api/v1/files/search", get(search_files))
        .route("/api/v1/files/{id}", get(get_file).delete(delete_file))
        .route("/api/v1/files/{id}/process/status", get(file_status))
        .route("/api/v1/knowledge/", get(list_knowledge))
        .route("/api/v1/knowledge/create", post(create_knowledge))
        .route("/api/v1/knowledge/{id}", get(get_knowledge))
        .route("/api/v1/knowledge/{id}/delete", delete(delete_knowledge))
        .route("/api/v1/knowledge/{id}/files", get(knowledge_files))
        .route("/api/v1/knowledge/{id}/file/add", post(add_file))
        .route("/api/v1/knowledge/{id}/file/remove", post(remove_file))
        .route("/api/v1/knowledge/{id}/file/move", post(move_file))
        .route("/api/v1/knowledge/{id}/dirs/create", post(create_dir))
        .route(
            "/api/v1/knowledge/{id}/dirs/{dir_id}/update",
            post(update_dir),
        )
        .route(
            "/api/v1/knowledge/{id}/dirs/{dir_id}/delete",
            delete(delete_dir),
        )
        .route("/api/v1/knowledge/{id}/sync/diff", post(sync_diff))
        .route("/api/v1/knowledge/{id}/access/update", post(update_access))
        .route("/api/v1/users/search", get(search_users))
        .route("/api/v1/groups/", get(list_groups))
        .route("/api/v1/groups/create", post(create_group))
        .route("/api/v1/auths/add", post(add_user))
        .route("/api/v1/files/{id}/rename", post(rename_file))
        .route(
            "/api/v1/knowledge/external/connections",
            get(list_connections).post(create_connection),
        )
        .route(
            "/api/v1/knowledge/external/connections/{id}",
            axum::routing::patch(update_connection).delete(delete_connection),
        )
        .route(
            "/api/v1/knowledge/external/connections/{id}/retrieve-test",
            post(retrieve_test),
        )
        .route("/api/v1/knowledge/external/source/test", post(test_source))
        .route(
            "/api/v1/knowledge/external/knowledge/create",
            post(create_external_base),
        )
        .route(
            "/api/v1/knowledge/external/source/{id}",
            axum::routing::patch(update_external_source),
        )
        .route("/api/v1/retrieval/embedding", get(rag_embedding))
        // Every API route wants the key, checked before the request is read,
        // as the real server's auth dependency does; the two below do not.
        .route_layer(middleware::from_fn_with_state(shared.clone(), require_key))
        .route("/health", get(|| async { Json(json!({"status": true})) }))
        .route("/api/version", get(version))
        .layer(DefaultBodyLimit::max(256 * 1024 * 1024))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let url = format!("http://{}", listener.local_addr().expect("local addr"));
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .await
            .expect("fake Open WebUI serves");
    });
    FakeHandle {
        url,
        api_key: api_key.to_owned(),
        shared,
        task,
    }
}

/// The handlers' state extractor.
type AppState = State<Arc<Shared>>;

fn detail(status: StatusCode, text: &str) -> Response {
    (status, Json(json!({ "detail": text }))).into_response()
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The bearer key check of every API route.
async fn require_key(
    State(shared): AppState,
    request: axum::extract::Request,
    next: middleware::Next,
) -> Response {
    match reject_unauthorized(&shared, request.headers()) {
        Some(refused) => refused,
        None => next.run(request).await,
    }
}

/// The 401 to answer unless the bearer token is the key, as `get_current_user` does.
fn reject_unauthorized(shared: &Shared, headers: &HeaderMap) -> Option<Response> {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Some(detail(StatusCode::UNAUTHORIZED, "Not authenticated"));
    };
    match value.strip_prefix("Bearer ") {
        Some(token) if token == shared.api_key => None,
        _ => Some(detail(StatusCode::UNAUTHORIZED, INVALID_TOKEN)),
    }
}

/// Takes the next queued fault for `op`, if any.
fn take_fault(inner: &mut Inner, op: FakeOp) -> Option<Fault> {
    let queue = inner.faults.get_mut(&op)?;
    (!queue.is_empty()).then(|| queue.remove(0))
}

/// The answer for a fault that acts before the work; `None` for none or drop-after-write.
fn fault_before(fault: Option<Fault>) -> Option<Response> {
    match fault? {
        Fault::Http500 => Some(detail(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error",
        )),
        Fault::Http503 => Some(detail(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable",
        )),
        Fault::LockedDb => Some(detail(StatusCode::BAD_REQUEST, "Error uploading file")),
        Fault::DropAfterWrite => None,
    }
}

/// Sends the status line and then breaks the connection: the client sees a failed body,
/// as when a proxy or the server dies after the work was done.
fn broken_answer() -> Response {
    let stream = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::other(
            "connection dropped by fault injection",
        ))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .expect("static response")
}

fn finish(fault: Option<Fault>, response: Response) -> Response {
    if fault == Some(Fault::DropAfterWrite) {
        broken_answer()
    } else {
        response
    }
}

fn version_at_least(version: &str, major: u32, minor: u32) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (ma, mi) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (ma, mi) >= (major, minor)
}

fn file_json(file: &FakeFile) -> Value {
    let mut data = serde_json::Map::new();
    if let Some(status) = &file.status {
        data.insert("status".into(), json!(status));
    }
    if let Some(content) = &file.content {
        data.insert("content".into(), json!(content));
    }
    if let Some(error) = &file.error {
        data.insert("error".into(), json!(error));
    }
    json!({
        "id": file.id,
        "user_id": "fake-user",
        "hash": file.hash,
        "filename": file.filename,
        "data": data,
        "meta": {
            "name": file.filename,
            "content_type": file.content_type,
            "size": file.bytes.len(),
            "file_hash": file.file_hash,
            "data": file.metadata,
        },
        "created_at": file.created_at,
        "updated_at": file.created_at,
    })
}

fn knowledge_json(kb: &FakeKnowledge, files: Option<&BTreeMap<String, FakeFile>>) -> Value {
    let mut value = json!({
        "id": kb.id,
        "user_id": kb.user_id,
        "name": kb.name,
        "description": kb.description,
        "meta": kb.meta,
        "access_grants": kb.grants.iter().enumerate().map(|(i, (t, p, perm))| json!({
            "id": format!("{}-grant-{i}", kb.id),
            "resource_type": "knowledge",
            "resource_id": kb.id,
            "principal_type": t,
            "principal_id": p,
            "permission": perm,
            "created_at": kb.created_at,
        })).collect::<Vec<_>>(),
        "created_at": kb.created_at,
        "updated_at": kb.created_at,
    });
    if let Some(files) = files {
        value["files"] = kb
            .files
            .iter()
            .filter_map(|id| files.get(id))
            .map(|f| json!({"id": f.id, "hash": f.hash, "meta": file_json(f)["meta"], "created_at": f.created_at, "updated_at": f.created_at}))
            .collect();
    }
    value
}

/// Extracted text the way Open WebUI's loaders would see it, or the failure reason.
/// `unstructured`: whether the server has its optional `unstructured` package.
fn extract(file: &FakeFile, unstructured: bool) -> Result<String, String> {
    let name = file.filename.to_ascii_lowercase();
    if name.ends_with(".pdf") && !file.bytes.starts_with(b"%PDF-") {
        return Err("Stream has ended unexpectedly".to_owned());
    }
    // Open WebUI's PDF loader (pypdf) reads the text layer only, and OCRs
    // nothing unless `PDF_EXTRACT_IMAGES` is on (off by default): an
    // image-only PDF is empty content, as 0.12.4 answers for
    // tests/data/formats/scanned.pdf. ragd's own reader without OCR finds the
    // same text layer.
    if name.ends_with(".pdf")
        && matches!(
            ragd::extract::extract(&file.bytes, ragd::document::Format::Pdf),
            Err(ragd::extract::ExtractError::NoTextLayer { .. })
        )
    {
        return Err(EMPTY_CONTENT.to_owned());
    }
    // Legacy Word files go to `unstructured` only (`loaders/main.py`), which a
    // plain `pip install open-webui` lacks; legacy PowerPoint falls back to
    // python-pptx, which reads only pptx.
    for ext in ["doc", "msg"] {
        if !unstructured && name.ends_with(&format!(".{ext}")) {
            return Err(format!(
                "Processing .{ext} files requires the 'unstructured' package. \
                 Install it with: pip install unstructured"
            ));
        }
    }
    if !unstructured && name.ends_with(".ppt") {
        // Uploads are stored as `<id>_<name>` (seen on 0.12.4).
        return Err(format!(
            "Package not found at '/app/backend/data/uploads/{}_{}'",
            file.id, file.filename
        ));
    }
    let text = String::from_utf8_lossy(&file.bytes).into_owned();
    if text.trim().is_empty() {
        return Err(EMPTY_CONTENT.to_owned());
    }
    Ok(text)
}

/// Whether `hash` is in the base's vectors for a file other than `file_id`
/// (`has_duplicate_content`).
fn has_duplicate(kb: &FakeKnowledge, hash: &str, file_id: &str) -> bool {
    kb.vectors.iter().any(|(id, h)| h == hash && id != file_id)
}

/// Embeds the file into the knowledge base and links it, as `file/add` and auto-link do.
/// `checked`: the duplicate check's answer if it was taken earlier (auto-link).
/// `dir`: the directory to link it in, if it is one of the base's (a file already
/// linked stays where it is).
fn link(
    kb: &mut FakeKnowledge,
    file: &mut FakeFile,
    checked: Option<bool>,
    dir: Option<&str>,
) -> Result<(), String> {
    let Some(hash) = file.content.as_deref().map(|c| sha256_hex(c.as_bytes())) else {
        return Err(EMPTY_CONTENT.to_owned());
    };
    if checked.unwrap_or_else(|| has_duplicate(kb, &hash, &file.id)) {
        return Err(DUPLICATE_CONTENT.to_owned());
    }
    kb.vectors.retain(|(id, _)| id != &file.id);
    kb.vectors.push((file.id.clone(), hash.clone()));
    if !kb.files.contains(&file.id) {
        kb.files.push(file.id.clone());
        if let Some(dir) = dir.filter(|d| kb.dirs.contains_key(*d)) {
            kb.file_dirs.insert(file.id.clone(), dir.to_owned());
        }
    }
    file.hash = Some(hash);
    Ok(())
}

/// Runs a pending file's processing when its polls and delay are used up.
fn settle(inner: &mut Inner, file_id: &str, count_poll: bool) {
    let version = inner.version.clone();
    let unstructured = inner.unstructured;
    let Some(file) = inner.files.get_mut(file_id) else {
        return;
    };
    if !matches!(file.status.as_deref(), Some("pending" | "processing")) {
        return;
    }
    if count_poll && file.polls_left > 0 {
        file.polls_left -= 1;
        file.status = Some("processing".into());
        return;
    }
    if file.polls_left > 0 || Instant::now() < file.ready_at {
        return;
    }
    let outcome = extract(file, unstructured).map(|text| {
        file.content = Some(text);
    });
    let outcome = outcome.and_then(|()| {
        let kb_id = file.metadata.get("knowledge_id").and_then(Value::as_str);
        match kb_id {
            Some(kb_id) if version_at_least(&version, 0, 12) => {
                let dir = file
                    .metadata
                    .get("directory_id")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                match inner.knowledge.get_mut(kb_id) {
                    Some(kb) => link(kb, file, file.auto_link_duplicate, dir.as_deref()),
                    None => Ok(()), // the real server logs and skips an unknown base
                }
            }
            _ => {
                file.hash = file.content.as_deref().map(|c| sha256_hex(c.as_bytes()));
                Ok(())
            }
        }
    });
    match outcome {
        Ok(()) => {
            file.status = Some("completed".into());
            file.error = None;
        }
        Err(reason) => {
            file.status = Some("failed".into());
            file.error = Some(reason);
            file.hash = None;
        }
    }
}

async fn version(State(shared): AppState) -> Response {
    Json(json!({"version": shared.lock().version, "deployment_id": ""})).into_response()
}

fn user_json() -> Value {
    json!({"id": "fake-user", "name": "ragd-fake", "email": "fake@example.com", "role": "admin"})
}

async fn auths(State(shared): AppState) -> Response {
    // 0.12 answers API keys here with a 403; only a browser session (JWT) gets the user.
    if shared.api_key.starts_with("sk-") {
        return detail(StatusCode::FORBIDDEN, "A human session is required.");
    }
    Json(user_json()).into_response()
}

async fn user_status() -> Response {
    Json(user_json()).into_response()
}

/// One part of a multipart body.
struct FormPart {
    name: String,
    filename: Option<String>,
    content_type: Option<String>,
    data: Vec<u8>,
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// A `name="…"` parameter of a Content-Disposition header, unescaping `\"`.
fn disposition_param(header: &str, key: &str) -> Option<String> {
    let start = header.find(&format!("{key}=\""))? + key.len() + 2;
    let mut out = String::new();
    let mut chars = header[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return Some(out),
            c => out.push(c),
        }
    }
    None
}

/// Parses `multipart/form-data` (axum's multipart support is not enabled in this crate).
fn parse_multipart(headers: &HeaderMap, body: &[u8]) -> Option<Vec<FormPart>> {
    let content_type = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let boundary = content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))?
        .trim_matches('"');
    let delimiter = format!("--{boundary}").into_bytes();
    let mut parts = Vec::new();
    let mut pos = find(body, &delimiter, 0)? + delimiter.len();
    loop {
        if body.get(pos..pos + 2) == Some(b"--") {
            return Some(parts);
        }
        pos += 2; // CRLF after the delimiter
        let headers_end = find(body, b"\r\n\r\n", pos)?;
        let head = std::str::from_utf8(&body[pos..headers_end]).ok()?;
        let data_start = headers_end + 4;
        let mut next_delim = delimiter.clone();
        next_delim.splice(0..0, *b"\r\n");
        let data_end = find(body, &next_delim, data_start)?;
        let mut part = FormPart {
            name: String::new(),
            filename: None,
            content_type: None,
            data: body[data_start..data_end].to_vec(),
        };
        for line in head.split("\r\n") {
            let lower = line.to_ascii_lowercase();
            if lower.starts_with("content-disposition:") {
                part.name = disposition_param(line, "name").unwrap_or_default();
                part.filename = disposition_param(line, "filename");
            } else if lower.starts_with("content-type:") {
                part.content_type = Some(line["content-type:".len()..].trim().to_owned());
            }
        }
        parts.push(part);
        pos = data_end + next_delim.len();
    }
}

async fn upload(
    State(shared): AppState,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let mut inner = shared.lock();
    inner.counters.upload_requests += 1;
    let fault = take_fault(&mut inner, FakeOp::Upload);
    if let Some(r) = fault_before(fault) {
        return r;
    }
    let Some(parts) = parse_multipart(&headers, &body) else {
        return detail(StatusCode::UNPROCESSABLE_ENTITY, "malformed multipart body");
    };
    let Some(file_part) = parts
        .iter()
        .find(|p| p.name == "file" && p.filename.is_some())
    else {
        return detail(StatusCode::UNPROCESSABLE_ENTITY, "field required: file");
    };
    let metadata = match parts.iter().find(|p| p.name == "metadata") {
        None => json!({}),
        Some(p) => match serde_json::from_slice::<Value>(&p.data) {
            Ok(Value::Null) => json!({}),
            Ok(v) => v,
            Err(_) => return detail(StatusCode::BAD_REQUEST, "Invalid metadata format"),
        },
    };
    if file_part.data.is_empty() {
        return detail(StatusCode::BAD_REQUEST, EMPTY_CONTENT);
    }
    let process = query.get("process").is_none_or(|v| v != "false");
    inner.next_seq += 1;
    let id = format!(
        "fake-file-{:06}-{}",
        inner.next_seq,
        &sha256_hex(&inner.next_seq.to_le_bytes())[..8]
    );
    let filename = file_part
        .filename
        .as_deref()
        .unwrap_or_default()
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default()
        .to_owned();
    let mut file = FakeFile {
        id: id.clone(),
        filename,
        file_hash: metadata
            .get("file_hash")
            .and_then(Value::as_str)
            .map_or_else(|| sha256_hex(&file_part.data), str::to_owned),
        bytes: file_part.data.clone(),
        metadata,
        status: process.then(|| "pending".to_owned()),
        error: None,
        content: None,
        hash: None,
        content_type: file_part
            .content_type
            .clone()
            .unwrap_or_else(|| "application/octet-stream".into()),
        created_at: now_secs() + inner.clock_offset,
        polls_left: inner.polls_to_complete,
        ready_at: Instant::now() + inner.processing_delay,
        auto_link_duplicate: None,
    };
    if process
        && version_at_least(&inner.version, 0, 12)
        && let Some(kb) = file
            .metadata
            .get("knowledge_id")
            .and_then(Value::as_str)
            .and_then(|id| inner.knowledge.get(id))
    {
        let text = sha256_hex(String::from_utf8_lossy(&file.bytes).as_bytes());
        file.auto_link_duplicate = Some(has_duplicate(kb, &text, &file.id));
    }
    let mut answer = file_json(&file);
    if process {
        answer["status"] = json!(true);
    }
    inner.files.insert(id.clone(), file);
    inner.counters.uploads += 1;
    // With nothing to wait for, processing "finishes" before the first poll.
    settle(&mut inner, &id, false);
    finish(fault, Json(answer).into_response())
}

/// A positive number from the query string (`page`, `limit`): `default` when
/// absent or not a number, 1 at the least.
fn query_number(query: &HashMap<String, String>, key: &str, default: usize) -> usize {
    query
        .get(key)
        .and_then(|p| p.parse().ok())
        .unwrap_or(default)
        .max(1)
}

async fn list_files(
    State(shared): AppState,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let inner = shared.lock();
    let page = query_number(&query, "page", 1);
    let mut all: Vec<&FakeFile> = inner.files.values().collect();
    all.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
    let items: Vec<Value> = all
        .iter()
        .skip((page - 1) * FILES_PAGE)
        .take(FILES_PAGE)
        .map(|f| file_json(f))
        .collect();
    Json(json!({"items": items, "total": all.len()})).into_response()
}

fn glob_matches(pattern: &str, name: &str) -> bool {
    // The common case without collecting chars: a search scans every file, and
    // the benchmark's publish group searches 10,000 times over 10,000 files.
    if !pattern.contains(['*', '?']) && pattern.is_ascii() && name.is_ascii() {
        return pattern.eq_ignore_ascii_case(name);
    }
    fn go(p: &[char], n: &[char]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some('*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some('?'), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) => a.to_lowercase().eq(b.to_lowercase()) && go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

async fn search_files(
    State(shared): AppState,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(pattern) = query.get("filename") else {
        return detail(StatusCode::UNPROCESSABLE_ENTITY, "field required: filename");
    };
    let mut inner = shared.lock();
    inner.counters.searches += 1;
    let mut found: Vec<&FakeFile> = inner
        .files
        .values()
        .filter(|f| glob_matches(pattern, &f.filename))
        .collect();
    if found.is_empty() {
        return detail(
            StatusCode::NOT_FOUND,
            "No files found matching the pattern.",
        );
    }
    found.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
    // `skip`, and `limit` (default 100, at most 1000), as the real endpoint pages.
    let number = |key: &str, default: usize| {
        query
            .get(key)
            .map_or(Some(default), |v| v.parse::<usize>().ok())
    };
    let (Some(skip), Some(limit @ 1..=1000)) = (number("skip", 0), number("limit", 100)) else {
        return detail(StatusCode::UNPROCESSABLE_ENTITY, "invalid skip or limit");
    };
    let page: Vec<Value> = found
        .iter()
        .skip(skip)
        .take(limit)
        .map(|f| file_json(f))
        .collect();
    if page.is_empty() {
        return detail(
            StatusCode::NOT_FOUND,
            "No files found matching the pattern.",
        );
    }
    Json(page).into_response()
}

async fn get_file(State(shared): AppState, Path(id): Path<String>) -> Response {
    let mut inner = shared.lock();
    settle(&mut inner, &id, false);
    match inner.files.get(&id) {
        Some(file) => Json(file_json(file)).into_response(),
        None => detail(StatusCode::NOT_FOUND, NOT_FOUND),
    }
}

async fn file_status(State(shared): AppState, Path(id): Path<String>) -> Response {
    let mut inner = shared.lock();
    let fault = take_fault(&mut inner, FakeOp::Status);
    if let Some(r) = fault_before(fault) {
        return r;
    }
    if !inner.files.contains_key(&id) {
        return detail(StatusCode::NOT_FOUND, NOT_FOUND);
    }
    inner.counters.status_polls += 1;
    settle(&mut inner, &id, true);
    let status = inner.files[&id]
        .status
        .clone()
        .unwrap_or_else(|| "pending".into());
    finish(fault, Json(json!({ "status": status })).into_response())
}

/// Deletes a file and its vectors everywhere, as `DELETE /files/{id}` does.
///
/// A file deleted while its auto-link processing is under way still gets its
/// vectors written into the base: the real server's background task embeds
/// into the base's collection and only then links, and the delete found no link
/// to clean up. Nothing removes those vectors by file any more, so the base
/// refuses every later upload of that text as a duplicate.
fn delete_file_everywhere(inner: &mut Inner, id: &str) -> bool {
    let Some(file) = inner.files.remove(id) else {
        return false;
    };
    let in_flight = matches!(file.status.as_deref(), Some("pending" | "processing"));
    if in_flight
        && file.auto_link_duplicate == Some(false)
        && let Some(kb) = file
            .metadata
            .get("knowledge_id")
            .and_then(Value::as_str)
            .and_then(|kb| inner.knowledge.get_mut(kb))
    {
        let text = sha256_hex(String::from_utf8_lossy(&file.bytes).as_bytes());
        kb.vectors.push((file.id.clone(), text));
    }
    for kb in inner.knowledge.values_mut() {
        if kb.files.contains(&file.id) {
            kb.files.retain(|f| f != &file.id);
            kb.file_dirs.remove(&file.id);
            kb.vectors
                .retain(|(fid, h)| fid != &file.id && Some(h) != file.hash.as_ref());
        }
    }
    inner.counters.deletes += 1;
    true
}

async fn delete_file(State(shared): AppState, Path(id): Path<String>) -> Response {
    let mut inner = shared.lock();
    let fault = take_fault(&mut inner, FakeOp::Delete);
    if let Some(r) = fault_before(fault) {
        return r;
    }
    if !delete_file_everywhere(&mut inner, &id) {
        return detail(StatusCode::NOT_FOUND, NOT_FOUND);
    }
    finish(
        fault,
        Json(json!({"message": "File deleted successfully"})).into_response(),
    )
}

async fn list_knowledge(
    State(shared): AppState,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let inner = shared.lock();
    let page = query_number(&query, "page", 1);
    let mut all: Vec<&FakeKnowledge> = inner.knowledge.values().collect();
    all.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
    let items: Vec<Value> = all
        .iter()
        .skip((page - 1) * KNOWLEDGE_PAGE)
        .take(KNOWLEDGE_PAGE)
        .map(|kb| {
            let mut v = knowledge_json(kb, None);
            v["write_access"] = json!(true);
            v
        })
        .collect();
    Json(json!({"items": items, "total": all.len()})).into_response()
}

async fn create_knowledge(State(shared): AppState, body: Bytes) -> Response {
    let form: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (Some(name), Some(description)) = (
        form.get("name").and_then(Value::as_str),
        form.get("description").and_then(Value::as_str),
    ) else {
        return detail(
            StatusCode::UNPROCESSABLE_ENTITY,
            "name and description are required",
        );
    };
    let mut inner = shared.lock();
    let fault = take_fault(&mut inner, FakeOp::CreateKnowledge);
    if let Some(r) = fault_before(fault) {
        return r;
    }
    inner.next_seq += 1;
    let kb = FakeKnowledge {
        id: format!("fake-kb-{:06}", inner.next_seq),
        user_id: "fake-user".to_owned(),
        name: name.to_owned(),
        description: description.to_owned(),
        created_at: now_secs(),
        files: Vec::new(),
        vectors: Vec::new(),
        dirs: BTreeMap::new(),
        file_dirs: HashMap::new(),
        grants: Vec::new(),
        meta: Value::Null,
    };
    let mut answer = knowledge_json(&kb, None);
    answer["files"] = Value::Null;
    inner.knowledge.insert(kb.id.clone(), kb);
    finish(fault, Json(answer).into_response())
}

async fn get_knowledge(State(shared): AppState, Path(id): Path<String>) -> Response {
    let inner = shared.lock();
    match inner.knowledge.get(&id) {
        Some(kb) => {
            let mut v = knowledge_json(kb, None);
            v["write_access"] = json!(true);
            Json(v).into_response()
        }
        None => detail(StatusCode::NOT_FOUND, NOT_FOUND),
    }
}

/// The base and its vectors go; its files stay (as `knowledge.py` does it). A
/// missing base is the 400 not-found, as there.
async fn delete_knowledge(State(shared): AppState, Path(id): Path<String>) -> Response {
    match shared.lock().knowledge.remove(&id) {
        Some(_) => Json(json!(true)).into_response(),
        None => detail(StatusCode::BAD_REQUEST, NOT_FOUND),
    }
}

async fn knowledge_files(
    State(shared): AppState,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let mut inner = shared.lock();
    // One directory's page (ragd looks for a directory by name) is not a listing.
    if !query.contains_key("directory_id") {
        inner.counters.listings += 1;
    }
    let Some(kb) = inner.knowledge.get(&id) else {
        return detail(StatusCode::BAD_REQUEST, NOT_FOUND);
    };
    let page = query_number(&query, "page", 1);
    // The fake's user is an admin, whose `limit` is honoured.
    let limit = query_number(&query, "limit", KNOWLEDGE_PAGE);
    // `directory_id` present: that directory only (`""`: the root); absent: every file.
    let scope: Option<Option<String>> = query
        .get("directory_id")
        .map(|d| (!d.is_empty()).then(|| d.clone()));
    let files: Vec<&FakeFile> = kb
        .files
        .iter()
        .filter(|f| {
            scope
                .as_ref()
                .is_none_or(|s| kb.file_dirs.get(*f) == s.as_ref())
        })
        .filter_map(|f| inner.files.get(f))
        .collect();
    let items: Vec<Value> = files
        .iter()
        .skip((page - 1) * limit)
        .take(limit)
        .map(|f| {
            let mut v = file_json(f);
            // Listings leave the extracted text out unless `include_content` is asked for.
            v["data"].as_object_mut().map(|d| d.remove("content"));
            let dir = kb.file_dirs.get(&f.id);
            v["directory_id"] = json!(dir);
            v["directory_path"] = json!(dir.map(|d| dir_path(kb, d)).unwrap_or_default());
            v["has_original"] = json!(true);
            v
        })
        .collect();
    // The directories at the listed level (the root when none is given).
    let level = scope.flatten();
    let mut directories: Vec<&FakeDir> = if version_at_least(&inner.version, 0, 12) {
        kb.dirs.values().filter(|d| d.parent_id == level).collect()
    } else {
        Vec::new()
    };
    directories.sort_by(|a, b| a.name.cmp(&b.name));
    let directories: Vec<Value> = directories.iter().map(|d| dir_json(&id, d)).collect();
    let mut answer = json!({"items": items, "total": files.len()});
    if version_at_least(&inner.version, 0, 12) {
        answer["directories"] = json!(directories);
        answer["breadcrumbs"] = json!([]);
    }
    Json(answer).into_response()
}

fn file_id_of(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<Value>(body)
        .ok()?
        .get("file_id")?
        .as_str()
        .map(str::to_owned)
}

async fn add_file(State(shared): AppState, Path(id): Path<String>, body: Bytes) -> Response {
    let Some(file_id) = file_id_of(&body) else {
        return detail(StatusCode::UNPROCESSABLE_ENTITY, "field required: file_id");
    };
    let dir = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("directory_id")?.as_str().map(str::to_owned))
        .filter(|d| !d.is_empty());
    let mut inner = shared.lock();
    let fault = take_fault(&mut inner, FakeOp::Add);
    if let Some(r) = fault_before(fault) {
        return r;
    }
    if !inner.knowledge.contains_key(&id) || !inner.files.contains_key(&file_id) {
        return detail(StatusCode::BAD_REQUEST, NOT_FOUND);
    }
    settle(&mut inner, &file_id, false);
    let Inner {
        knowledge,
        files,
        counters,
        ..
    } = &mut *inner;
    let kb = knowledge.get_mut(&id).expect("checked above");
    if dir.as_ref().is_some_and(|d| !kb.dirs.contains_key(d)) {
        return detail(StatusCode::NOT_FOUND, "Target directory not found.");
    }
    let file = files.get_mut(&file_id).expect("checked above");
    if file.status.is_none() && file.content.is_none() {
        // `not file.data`: uploaded with process=false.
        return detail(
            StatusCode::BAD_REQUEST,
            "Extracted content is not available for this file. Please ensure that the file is processed before proceeding.",
        );
    }
    match link(kb, file, None, dir.as_deref()) {
        Ok(()) => {
            file.status = Some("completed".into());
            file.error = None;
            counters.adds += 1;
            let answer = knowledge_json(kb, Some(files));
            finish(fault, Json(answer).into_response())
        }
        Err(reason) => {
            // index_file marks the file failed and clears its hash before answering.
            file.status = Some("failed".into());
            file.error = Some(reason.clone());
            file.hash = None;
            detail(StatusCode::BAD_REQUEST, &format!("400: {reason}"))
        }
    }
}

async fn remove_file(
    State(shared): AppState,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let Some(file_id) = file_id_of(&body) else {
        return detail(StatusCode::UNPROCESSABLE_ENTITY, "field required: file_id");
    };
    let delete = query.get("delete_file").is_none_or(|v| v != "false");
    let mut inner = shared.lock();
    let fault = take_fault(&mut inner, FakeOp::Remove);
    if let Some(r) = fault_before(fault) {
        return r;
    }
    let linked = inner
        .knowledge
        .get(&id)
        .is_some_and(|kb| kb.files.contains(&file_id));
    if !linked || !inner.files.contains_key(&file_id) {
        return detail(StatusCode::BAD_REQUEST, NOT_FOUND);
    }
    let hash = inner.files[&file_id].hash.clone();
    let kb = inner.knowledge.get_mut(&id).expect("checked above");
    kb.files.retain(|f| f != &file_id);
    kb.file_dirs.remove(&file_id);
    // By file id and by text hash: another file with the same text loses its vectors too.
    kb.vectors
        .retain(|(fid, h)| fid != &file_id && Some(h) != hash.as_ref());
    inner.counters.removes += 1;
    if delete {
        delete_file_everywhere(&mut inner, &file_id);
    }
    let answer = knowledge_json(&inner.knowledge[&id], Some(&inner.files));
    finish(fault, Json(answer).into_response())
}

// ---- directories, moves, renames, folder sync (0.12; `knowledge.py`, `files.py`) ----

/// FastAPI's answer to a route an older server does not have.
fn no_route() -> Response {
    detail(StatusCode::NOT_FOUND, "Not Found")
}

/// The 404s of `_verify_knowledge_write_access`, and the older server's missing route.
fn dirs_gate(inner: &Inner, kb: &str) -> Option<Response> {
    if !version_at_least(&inner.version, 0, 12) {
        return Some(no_route());
    }
    (!inner.knowledge.contains_key(kb)).then(|| detail(StatusCode::NOT_FOUND, NOT_FOUND))
}

fn dir_json(kb: &str, d: &FakeDir) -> Value {
    json!({
        "id": d.id, "knowledge_id": kb, "name": d.name, "parent_id": d.parent_id,
        "user_id": "fake-user", "created_at": d.created_at, "updated_at": d.created_at,
    })
}

/// A directory's path from the root, `a/b/c`.
fn dir_path(kb: &FakeKnowledge, id: &str) -> String {
    let mut segments = Vec::new();
    let mut at = Some(id.to_owned());
    while let Some(id) = at {
        let Some(d) = kb.dirs.get(&id) else { break };
        segments.insert(0, d.name.clone());
        at = d.parent_id.clone();
    }
    segments.join("/")
}

async fn create_dir(State(shared): AppState, Path(id): Path<String>, body: Bytes) -> Response {
    let form: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let Some(name) = form.get("name").and_then(Value::as_str) else {
        return detail(StatusCode::UNPROCESSABLE_ENTITY, "field required: name");
    };
    let parent = form
        .get("parent_id")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let mut inner = shared.lock();
    if let Some(r) = dirs_gate(&inner, &id) {
        return r;
    }
    let fault = take_fault(&mut inner, FakeOp::CreateDir);
    if let Some(r) = fault_before(fault) {
        return r;
    }
    inner.next_seq += 1;
    let dir_id = format!("fake-dir-{:06}", inner.next_seq);
    let kb = inner.knowledge.get_mut(&id).expect("gated above");
    if parent.as_ref().is_some_and(|p| !kb.dirs.contains_key(p)) {
        return detail(StatusCode::NOT_FOUND, "Parent directory not found.");
    }
    // The unique constraint is on (knowledge, parent, name): NULL parents never
    // collide, so the root takes a second directory of the same name.
    let taken = parent.is_some()
        && kb
            .dirs
            .values()
            .any(|d| d.parent_id == parent && d.name == name);
    if taken {
        return detail(
            StatusCode::BAD_REQUEST,
            "Failed to create directory. A directory with this name may already exist at this level.",
        );
    }
    let dir = FakeDir {
        id: dir_id.clone(),
        name: name.to_owned(),
        parent_id: parent,
        created_at: now_secs(),
    };
    let answer = dir_json(&id, &dir);
    kb.dirs.insert(dir_id, dir);
    inner.counters.dir_creates += 1;
    finish(fault, Json(answer).into_response())
}

async fn update_dir(
    State(shared): AppState,
    Path((id, dir_id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let form: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut inner = shared.lock();
    if let Some(r) = dirs_gate(&inner, &id) {
        return r;
    }
    let kb = inner.knowledge.get_mut(&id).expect("gated above");
    let Some(current) = kb.dirs.get(&dir_id).cloned() else {
        return detail(StatusCode::NOT_FOUND, NOT_FOUND);
    };
    let name = form
        .get("name")
        .and_then(Value::as_str)
        .map_or(current.name.clone(), str::to_owned);
    // `"__unset__"` (or absent) keeps the parent, `null` is the root.
    let parent = match form.get("parent_id") {
        None => current.parent_id.clone(),
        Some(Value::String(s)) if s == "__unset__" => current.parent_id.clone(),
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => None,
    };
    let circular = {
        let mut at = parent.clone();
        let mut hit = false;
        while let Some(p) = at {
            if p == dir_id {
                hit = true;
                break;
            }
            at = kb.dirs.get(&p).and_then(|d| d.parent_id.clone());
        }
        hit
    };
    let taken = kb
        .dirs
        .values()
        .any(|d| d.id != dir_id && d.parent_id == parent && d.name == name);
    let parent_ok = parent.as_ref().is_none_or(|p| kb.dirs.contains_key(p));
    if circular || taken || !parent_ok {
        return detail(
            StatusCode::BAD_REQUEST,
            "Failed to update directory. This may be caused by a naming conflict or circular move.",
        );
    }
    let d = kb.dirs.get_mut(&dir_id).expect("checked above");
    d.name = name;
    d.parent_id = parent;
    let answer = dir_json(&id, d);
    Json(answer).into_response()
}

async fn delete_dir(
    State(shared): AppState,
    Path((id, dir_id)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let move_files = query.get("move_files").is_none_or(|v| v != "false");
    let mut inner = shared.lock();
    if let Some(r) = dirs_gate(&inner, &id) {
        return r;
    }
    let kb = inner.knowledge.get_mut(&id).expect("gated above");
    let Some(dir) = kb.dirs.get(&dir_id).cloned() else {
        return detail(StatusCode::NOT_FOUND, NOT_FOUND);
    };
    // The directory and everything under it (its children go by cascade).
    let mut subtree = vec![dir_id.clone()];
    let mut i = 0;
    while i < subtree.len() {
        let at = subtree[i].clone();
        subtree.extend(
            kb.dirs
                .values()
                .filter(|d| d.parent_id.as_deref() == Some(at.as_str()))
                .map(|d| d.id.clone()),
        );
        i += 1;
    }
    let inside: Vec<String> = kb
        .file_dirs
        .iter()
        .filter(|(_, d)| subtree.contains(d))
        .map(|(f, _)| f.clone())
        .collect();
    for f in &inside {
        if move_files {
            match &dir.parent_id {
                Some(p) => kb.file_dirs.insert(f.clone(), p.clone()),
                None => kb.file_dirs.remove(f),
            };
        } else {
            kb.file_dirs.remove(f);
            kb.files.retain(|x| x != f);
            kb.vectors.retain(|(fid, _)| fid != f);
        }
    }
    for d in &subtree {
        kb.dirs.remove(d);
    }
    if !move_files {
        // Deleted too when no other base links them (file retention off).
        for f in &inside {
            if !inner.knowledge.values().any(|k| k.files.contains(f)) {
                delete_file_everywhere(&mut inner, f);
            }
        }
    }
    inner.counters.dir_deletes += 1;
    let unlinked = if move_files { Vec::new() } else { inside };
    Json(json!({"status": true, "file_ids": unlinked})).into_response()
}

async fn move_file(State(shared): AppState, Path(id): Path<String>, body: Bytes) -> Response {
    let form: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let Some(file_id) = form.get("file_id").and_then(Value::as_str) else {
        return detail(StatusCode::UNPROCESSABLE_ENTITY, "field required: file_id");
    };
    let target = form
        .get("directory_id")
        .and_then(Value::as_str)
        .filter(|d| !d.is_empty());
    let mut inner = shared.lock();
    if let Some(r) = dirs_gate(&inner, &id) {
        return r;
    }
    let fault = take_fault(&mut inner, FakeOp::Move);
    if let Some(r) = fault_before(fault) {
        return r;
    }
    let kb = inner.knowledge.get_mut(&id).expect("gated above");
    if !kb.files.iter().any(|f| f == file_id) {
        return detail(StatusCode::NOT_FOUND, NOT_FOUND);
    }
    if target.is_some_and(|d| !kb.dirs.contains_key(d)) {
        return detail(StatusCode::NOT_FOUND, "Target directory not found.");
    }
    match target {
        Some(d) => kb.file_dirs.insert(file_id.to_owned(), d.to_owned()),
        None => kb.file_dirs.remove(file_id),
    };
    inner.counters.moves += 1;
    finish(fault, Json(json!({"status": true})).into_response())
}

async fn rename_file(State(shared): AppState, Path(id): Path<String>, body: Bytes) -> Response {
    let form: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let Some(name) = form.get("filename").and_then(Value::as_str) else {
        return detail(StatusCode::UNPROCESSABLE_ENTITY, "field required: filename");
    };
    let mut inner = shared.lock();
    if !version_at_least(&inner.version, 0, 12) {
        return no_route();
    }
    let Some(file) = inner.files.get_mut(&id) else {
        return detail(StatusCode::NOT_FOUND, NOT_FOUND);
    };
    file.filename = name.to_owned();
    let answer = file_json(file);
    inner.counters.renames += 1;
    Json(answer).into_response()
}

async fn sync_diff(State(shared): AppState, Path(id): Path<String>, body: Bytes) -> Response {
    let form: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let Some(manifest) = form.get("manifest").and_then(Value::as_array) else {
        return detail(StatusCode::UNPROCESSABLE_ENTITY, "field required: manifest");
    };
    let inner = shared.lock();
    if let Some(r) = dirs_gate(&inner, &id) {
        return r;
    }
    let kb = &inner.knowledge[&id];
    let by_path: BTreeMap<String, String> = kb
        .dirs
        .keys()
        .map(|d| (dir_path(kb, d), d.clone()))
        .collect();
    // (directory path, filename) → (file id, stored file_hash); later ones win.
    let mut indexed: BTreeMap<(String, String), (String, String)> = BTreeMap::new();
    for f in kb.files.iter().filter_map(|f| inner.files.get(f)) {
        let path = kb
            .file_dirs
            .get(&f.id)
            .map(|d| dir_path(kb, d))
            .unwrap_or_default();
        indexed.insert(
            (path, f.filename.clone()),
            (f.id.clone(), f.file_hash.clone()),
        );
    }
    let (mut added, mut modified, mut deleted) = (Vec::new(), Vec::new(), Vec::new());
    let mut unmodified = 0;
    let mut keys = std::collections::BTreeSet::new();
    let mut required = std::collections::BTreeSet::new();
    for e in manifest {
        let text = |k: &str| {
            e.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let key = (text("path"), text("filename"));
        keys.insert(key.clone());
        if !key.0.is_empty() {
            let segments: Vec<&str> = key.0.split('/').collect();
            for depth in 1..=segments.len() {
                required.insert(segments[..depth].join("/"));
            }
        }
        match indexed.get(&key) {
            None => added.push(json!({"filename": key.1, "path": key.0})),
            Some((fid, hash)) if *hash != text("checksum") => {
                modified.push(json!({"filename": key.1, "path": key.0, "stale_file_id": fid}))
            }
            Some(_) => unmodified += 1,
        }
    }
    for (key, (fid, _)) in &indexed {
        if !keys.contains(key) {
            deleted.push(json!({"file_id": fid, "filename": key.1}));
        }
    }
    let mut mkdir: Vec<&String> = required
        .iter()
        .filter(|p| !by_path.contains_key(*p))
        .collect();
    mkdir.sort_by_key(|p| p.matches('/').count());
    let rmdir: Vec<&String> = by_path
        .iter()
        .filter(|(p, _)| !required.contains(*p))
        .map(|(_, id)| id)
        .collect();
    Json(json!({
        "added": added, "modified": modified, "deleted": deleted,
        "mkdir": mkdir, "rmdir": rmdir, "unmodified_count": unmodified,
        "directory_map": by_path,
    }))
    .into_response()
}

// ---- access (0.12.4 `routers/knowledge.py`, `users.py`, `groups.py`) -----------------

/// `access/update`: every grant of the base replaced by the valid ones given, as
/// `normalize_access_grants` keeps them (user or group, read or write, a non-empty
/// id, duplicates dropped). Principal ids are not checked against the accounts:
/// the real server does not either.
async fn update_access(State(shared): AppState, Path(id): Path<String>, body: Bytes) -> Response {
    let Ok(form) = serde_json::from_slice::<Value>(&body) else {
        return detail(StatusCode::UNPROCESSABLE_ENTITY, "invalid body");
    };
    let Some(list) = form.get("access_grants").and_then(Value::as_array) else {
        return detail(
            StatusCode::UNPROCESSABLE_ENTITY,
            "access_grants: field required",
        );
    };
    let mut grants: Vec<(String, String, String)> = Vec::new();
    for g in list {
        let text = |k: &str| g.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let (t, p, perm) = (
            text("principal_type"),
            text("principal_id"),
            text("permission"),
        );
        if !matches!(t.as_str(), "user" | "group")
            || !matches!(perm.as_str(), "read" | "write")
            || p.is_empty()
        {
            continue;
        }
        let key = (t, p, perm);
        if !grants.contains(&key) {
            grants.push(key);
        }
    }
    let mut inner = shared.lock();
    let inner = &mut *inner;
    let Some(kb) = inner.knowledge.get_mut(&id) else {
        return detail(StatusCode::NOT_FOUND, NOT_FOUND);
    };
    kb.grants = grants;
    inner.counters.access_updates += 1;
    let v = knowledge_json(kb, Some(&inner.files));
    Json(v).into_response()
}

/// `users/search`: name or e-mail containing `query` (case-insensitive), 30 a page,
/// with `total`.
async fn search_users(
    State(shared): AppState,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let q = query
        .get("query")
        .map(|q| q.to_lowercase())
        .unwrap_or_default();
    let page = query_number(&query, "page", 1);
    let inner = shared.lock();
    let me = user_json();
    let mut all: Vec<Value> = vec![me];
    all.extend(
        inner.users.iter().map(
            |(id, name, email)| json!({"id": id, "name": name, "email": email, "role": "user"}),
        ),
    );
    let matching: Vec<Value> = all
        .into_iter()
        .filter(|u| {
            let field = |k: &str| u[k].as_str().unwrap_or("").to_lowercase();
            field("name").contains(&q) || field("email").contains(&q)
        })
        .collect();
    let total = matching.len();
    let users: Vec<Value> = matching
        .into_iter()
        .skip((page - 1) * 30)
        .take(30)
        .collect();
    Json(json!({"users": users, "total": total})).into_response()
}

/// `groups/`: every group (the key's user is an admin).
async fn list_groups(State(shared): AppState) -> Response {
    let inner = shared.lock();
    let groups: Vec<Value> = inner
        .groups
        .iter()
        .map(|(id, name)| {
            json!({"id": id, "user_id": "fake-user", "name": name, "description": "",
                   "created_at": 0, "updated_at": 0, "member_count": 0})
        })
        .collect();
    Json(Value::Array(groups)).into_response()
}

/// `auths/add` (admin): a new account; 400 if the e-mail address is taken.
async fn add_user(State(shared): AppState, body: Bytes) -> Response {
    let Ok(form) = serde_json::from_slice::<Value>(&body) else {
        return detail(StatusCode::UNPROCESSABLE_ENTITY, "invalid body");
    };
    let text = |k: &str| form.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let (name, email, role) = (text("name"), text("email").to_lowercase(), text("role"));
    let mut inner = shared.lock();
    if inner.users.iter().any(|(_, _, e)| *e == email) {
        return detail(
            StatusCode::BAD_REQUEST,
            "Uh-oh! This email is already registered. Sign in with your existing account or choose another email to start anew.",
        );
    }
    let id = format!("user-{}", inner.users.len() + 1);
    inner.users.push((id.clone(), name.clone(), email.clone()));
    Json(json!({"id": id, "name": name, "email": email, "role": role})).into_response()
}

/// `groups/create` (admin).
async fn create_group(State(shared): AppState, body: Bytes) -> Response {
    let Ok(form) = serde_json::from_slice::<Value>(&body) else {
        return detail(StatusCode::UNPROCESSABLE_ENTITY, "invalid body");
    };
    let name = form
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let mut inner = shared.lock();
    let id = format!("group-{}", inner.groups.len() + 1);
    inner.groups.push((id.clone(), name.clone()));
    Json(
        json!({"id": id, "user_id": "fake-user", "name": name, "description": "",
                "created_at": 0, "updated_at": 0, "member_count": 0}),
    )
    .into_response()
}

// ---- external knowledge (0.12 `knowledge.py` `/external/…`, `retrieval/external.py`) ----

/// The server's `_get_sanitized_external_connection`: the key is never listed.
fn sanitized(connection: &Value) -> Value {
    let mut out = connection.clone();
    let configured = connection
        .get("auth_config")
        .and_then(Value::as_object)
        .is_some_and(|m| !m.is_empty());
    if let Some(map) = out.as_object_mut() {
        map.remove("auth_config");
        map.insert("auth_configured".into(), json!(configured));
    }
    out
}

/// The checks of `_get_external_connection_provider_and_config`.
fn connection_problem(form: &Value) -> Option<Response> {
    let text = |k: &str| {
        form.get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim()
            .to_owned()
    };
    if !["qdrant", "milvus", "pgvector"].contains(&text("provider").to_lowercase().as_str()) {
        return Some(detail(
            StatusCode::BAD_REQUEST,
            "Unsupported external knowledge provider.",
        ));
    }
    if text("name").is_empty() {
        return Some(detail(
            StatusCode::BAD_REQUEST,
            "Knowledge source name is required.",
        ));
    }
    if text("endpoint").is_empty() {
        return Some(detail(
            StatusCode::BAD_REQUEST,
            "Knowledge source endpoint is required.",
        ));
    }
    None
}

/// `_get_normalized_external_source`: the normalized source, or the 400.
// The error is the handler's answer itself, as everywhere in this fake.
#[allow(clippy::result_large_err)]
fn normalized_source(source: Option<&Value>) -> Result<Value, Response> {
    let source = source.cloned().unwrap_or(Value::Null);
    let name = source
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim()
        .to_owned();
    let kind = source
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("collection");
    if kind != "collection" {
        return Err(detail(
            StatusCode::BAD_REQUEST,
            "Only collection sources are supported.",
        ));
    }
    if name.is_empty() {
        return Err(detail(
            StatusCode::BAD_REQUEST,
            "Collection name is required.",
        ));
    }
    let mut config = serde_json::Map::new();
    for key in [
        "content_field",
        "metadata_field",
        "document_id_field",
        "vector_field",
    ] {
        if let Some(v) = source
            .pointer(&format!("/config/{key}"))
            .and_then(Value::as_str)
            && !v.trim().is_empty()
        {
            config.insert(key.into(), json!(v.trim()));
        }
    }
    if !config.contains_key("content_field") {
        return Err(detail(
            StatusCode::BAD_REQUEST,
            "Content field is required.",
        ));
    }
    Ok(json!({"type": "collection", "name": name, "config": config}))
}

fn external_meta(connection_id: &str, source: &Value) -> Value {
    json!({
        "source": "external",
        "read_only": true,
        "external": {
            "connection_id": connection_id,
            "source": source,
            "provider": "qdrant",
            "auth_mode": "service_account",
            "capabilities": {"retrieve": true},
        },
    })
}

async fn list_connections(State(shared): AppState) -> Response {
    let inner = shared.lock();
    let items: Vec<Value> = inner.connections.iter().map(sanitized).collect();
    Json(json!({"items": items, "total": items.len()})).into_response()
}

async fn create_connection(State(shared): AppState, body: Bytes) -> Response {
    let form: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if let Some(r) = connection_problem(&form) {
        return r;
    }
    let mut inner = shared.lock();
    inner.next_seq += 1;
    inner.counters.external_creates += 1;
    let connection = json!({
        "id": format!("fake-conn-{:06}", inner.next_seq),
        "name": form["name"].as_str().unwrap_or("").trim(),
        "provider": form["provider"].as_str().unwrap_or("").trim().to_lowercase(),
        "endpoint": form["endpoint"].as_str().unwrap_or("").trim(),
        "auth_config": form.get("auth_config").cloned().filter(|v| !v.is_null()).unwrap_or(json!({})),
        "config": {},
        "capabilities": {"retrieve": true},
        "health": null,
        "enabled": form.get("enabled").and_then(Value::as_bool).unwrap_or(true),
        "created_by": "fake-user",
        "created_at": now_secs(),
        "updated_at": now_secs(),
    });
    inner.connections.push(connection.clone());
    Json(sanitized(&connection)).into_response()
}

/// Like the server's update: an `auth_config` left out (null) keeps the stored one.
fn apply_connection_form(existing: &mut Value, form: &Value) {
    for key in ["name", "endpoint"] {
        existing[key] = json!(form[key].as_str().unwrap_or("").trim());
    }
    existing["provider"] = json!(
        form["provider"]
            .as_str()
            .unwrap_or("")
            .trim()
            .to_lowercase()
    );
    existing["enabled"] = json!(form.get("enabled").and_then(Value::as_bool).unwrap_or(true));
    if let Some(auth) = form.get("auth_config").filter(|v| !v.is_null()) {
        existing["auth_config"] = auth.clone();
    }
    existing["updated_at"] = json!(now_secs());
}

async fn update_connection(
    State(shared): AppState,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let form: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if let Some(r) = connection_problem(&form) {
        return r;
    }
    let mut inner = shared.lock();
    let Some(existing) = inner.connections.iter_mut().find(|c| c["id"] == id) else {
        return detail(StatusCode::NOT_FOUND, NOT_FOUND);
    };
    apply_connection_form(existing, &form);
    Json(sanitized(existing)).into_response()
}

async fn delete_connection(State(shared): AppState, Path(id): Path<String>) -> Response {
    let mut inner = shared.lock();
    if !inner.connections.iter().any(|c| c["id"] == id) {
        return detail(StatusCode::NOT_FOUND, NOT_FOUND);
    }
    if inner.knowledge.values().any(|kb| {
        kb.meta
            .pointer("/external/connection_id")
            .and_then(Value::as_str)
            == Some(id.as_str())
    }) {
        return detail(
            StatusCode::BAD_REQUEST,
            "External connection is still used by knowledge bases.",
        );
    }
    inner.connections.retain(|c| c["id"] != id);
    Json(json!(true)).into_response()
}

/// `_retrieve_qdrant` and `_normalize_result`: the question embedded by the RAG
/// embedder, `points/query` without a filter on the connection's endpoint, the
/// text and citation read from the configured fields.
async fn retrieve(
    shared: &Shared,
    connection: &Value,
    source: &Value,
    knowledge_name: &str,
    query: &str,
    count: usize,
) -> Result<Value, Response> {
    use ragd::embed::Embedder;
    let (embedder, prefix) = {
        let mut inner = shared.lock();
        inner.counters.rag_embeds += 1;
        (inner.rag.1.clone(), inner.rag_query_prefix.clone())
    };
    // `generate_embeddings`: the prefix is put before the text.
    let vector = embedder
        .embed(&[format!("{prefix}{query}")])
        .await
        .map_err(|e| detail(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))?
        .remove(0);
    let endpoint = connection["endpoint"]
        .as_str()
        .unwrap_or("")
        .trim_end_matches('/');
    let collection = source["name"].as_str().unwrap_or("");
    let mut request = reqwest::Client::new()
        .post(format!("{endpoint}/collections/{collection}/points/query"))
        .json(&json!({"query": vector, "limit": count, "with_payload": true}));
    if let Some(key) = connection
        .pointer("/auth_config/api_key")
        .and_then(Value::as_str)
    {
        request = request.header("api-key", key);
    }
    let failed = |e: String| detail(StatusCode::INTERNAL_SERVER_ERROR, &e);
    let answer = request.send().await.map_err(|e| failed(e.to_string()))?;
    if !answer.status().is_success() {
        return Err(failed(format!("Qdrant answered {}", answer.status())));
    }
    let answer: Value = answer.json().await.map_err(|e| failed(e.to_string()))?;
    let field = |key: &str, default: &str| {
        source
            .pointer(&format!("/config/{key}"))
            .and_then(Value::as_str)
            .unwrap_or(default)
            .to_owned()
    };
    let (content_field, metadata_field) = (
        field("content_field", "payload.text"),
        field("metadata_field", "payload.metadata"),
    );
    let at = |point: &Value, path: &str| {
        path.split('.')
            .try_fold(point, |v, part| v.get(part))
            .cloned()
    };
    let (mut documents, mut metadatas, mut distances) = (Vec::new(), Vec::new(), Vec::new());
    for point in answer
        .pointer("/result/points")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        documents.push(at(point, &content_field).unwrap_or(json!("")));
        let mut metadata = match at(point, &metadata_field) {
            Some(Value::Object(m)) => m,
            Some(Value::Null) | None => serde_json::Map::new(),
            Some(other) => [("external_metadata".to_owned(), other)]
                .into_iter()
                .collect(),
        };
        let source_name = metadata
            .get("source")
            .or(metadata.get("name"))
            .cloned()
            .unwrap_or(json!(knowledge_name));
        let name = metadata.get("name").cloned().unwrap_or(source_name.clone());
        metadata.insert("name".into(), name);
        metadata.insert("source".into(), source_name);
        metadata.insert("url".into(), Value::Null);
        metadata.insert("knowledge_name".into(), json!(knowledge_name));
        metadata.insert("external".into(), json!(true));
        metadata.remove("file_id");
        metadata.insert("document_id".into(), point["id"].clone());
        metadatas.push(Value::Object(metadata));
        distances.push(point["score"].clone());
    }
    Ok(json!({"documents": documents, "metadatas": metadatas, "distances": distances}))
}

async fn retrieve_test(State(shared): AppState, Path(id): Path<String>, body: Bytes) -> Response {
    let form: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let Some(connection) = shared
        .lock()
        .connections
        .iter()
        .find(|c| c["id"] == id)
        .cloned()
    else {
        return detail(StatusCode::NOT_FOUND, NOT_FOUND);
    };
    let query = form["query"].as_str().unwrap_or("").trim().to_owned();
    if query.is_empty() {
        return detail(StatusCode::BAD_REQUEST, "Test query is required.");
    }
    let source = match form.get("source").filter(|s| !s.is_null()) {
        Some(s) => Some(s.clone()),
        None => Some(json!({"name": "test", "config": {"content_field": "payload.text"}})),
    };
    let source = match normalized_source(source.as_ref()) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let count = form["count"].as_u64().unwrap_or(5) as usize;
    let name = connection["name"].as_str().unwrap_or("").to_owned();
    match retrieve(&shared, &connection, &source, &name, &query, count).await {
        Ok(v) => Json(v).into_response(),
        Err(r) => r,
    }
}

async fn create_external_base(State(shared): AppState, body: Bytes) -> Response {
    let form: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let connection_id = form["connection_id"].as_str().unwrap_or("").to_owned();
    let mut inner = shared.lock();
    if !inner.connections.iter().any(|c| c["id"] == connection_id) {
        return detail(StatusCode::NOT_FOUND, NOT_FOUND);
    }
    let name = form["name"].as_str().unwrap_or("").trim().to_owned();
    if name.is_empty() {
        return detail(StatusCode::BAD_REQUEST, "Knowledge name is required.");
    }
    let source = match normalized_source(form.get("source")) {
        Ok(s) => s,
        Err(r) => return r,
    };
    inner.next_seq += 1;
    inner.counters.external_creates += 1;
    let kb = FakeKnowledge {
        id: format!("fake-kb-{:06}", inner.next_seq),
        name,
        description: form["description"].as_str().unwrap_or("").to_owned(),
        created_at: now_secs(),
        files: Vec::new(),
        vectors: Vec::new(),
        dirs: BTreeMap::new(),
        file_dirs: HashMap::new(),
        grants: Vec::new(),
        user_id: "fake-user".to_owned(),
        meta: external_meta(&connection_id, &source),
    };
    let answer = knowledge_json(&kb, None);
    inner.knowledge.insert(kb.id.clone(), kb);
    Json(answer).into_response()
}

async fn update_external_source(
    State(shared): AppState,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let form: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (connection, source) = {
        let inner = shared.lock();
        let Some(kb) = inner
            .knowledge
            .get(&id)
            .filter(|kb| kb.meta["source"] == "external")
        else {
            return detail(StatusCode::NOT_FOUND, NOT_FOUND);
        };
        let connection_id = kb
            .meta
            .pointer("/external/connection_id")
            .cloned()
            .unwrap_or(Value::Null);
        let Some(mut connection) = inner
            .connections
            .iter()
            .find(|c| c["id"] == connection_id)
            .cloned()
        else {
            return detail(StatusCode::NOT_FOUND, "External connection not found.");
        };
        if let Some(r) = connection_problem(&form["connection"]) {
            return r;
        }
        apply_connection_form(&mut connection, &form["connection"]);
        let source = match normalized_source(form.get("source")) {
            Ok(s) => s,
            Err(r) => return r,
        };
        (connection, source)
    };
    let query = form["test_query"].as_str().unwrap_or("").to_owned();
    let name = form["name"].as_str().unwrap_or("").to_owned();
    match retrieve(&shared, &connection, &source, &name, &query, 5).await {
        Ok(found) if found["documents"].as_array().is_some_and(|d| !d.is_empty()) => {}
        Ok(_) => return detail(StatusCode::BAD_REQUEST, "Test query returned no results."),
        Err(r) => return r,
    }
    let mut inner = shared.lock();
    let connection_id = connection["id"].as_str().unwrap_or("").to_owned();
    if let Some(stored) = inner
        .connections
        .iter_mut()
        .find(|c| c["id"] == connection["id"])
    {
        *stored = connection;
    }
    let Some(kb) = inner.knowledge.get_mut(&id) else {
        return detail(StatusCode::NOT_FOUND, NOT_FOUND);
    };
    kb.name = name;
    kb.description = form["description"].as_str().unwrap_or("").to_owned();
    kb.meta = external_meta(&connection_id, &source);
    Json(knowledge_json(kb, None)).into_response()
}

async fn rag_embedding(State(shared): AppState) -> Response {
    let model = shared.lock().rag.0.clone();
    Json(json!({
        "status": true,
        "RAG_EMBEDDING_ENGINE": "ollama",
        "RAG_EMBEDDING_MODEL": model,
        "RAG_EMBEDDING_BATCH_SIZE": 1,
        "ENABLE_ASYNC_EMBEDDING": true,
        "RAG_EMBEDDING_CONCURRENT_REQUESTS": 0,
        "ollama_config": {"url": "http://127.0.0.1:11434", "key": ""},
    }))
    .into_response()
}

/// `external/source/test`: a retrieval through a connection given inline, not stored.
async fn test_source(State(shared): AppState, body: Bytes) -> Response {
    let form: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if let Some(r) = connection_problem(&form["connection"]) {
        return r;
    }
    let mut connection = json!({"id": "external-test"});
    apply_connection_form(&mut connection, &form["connection"]);
    let source = match normalized_source(form.get("source")) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let query = form["query"].as_str().unwrap_or("").trim().to_owned();
    if query.is_empty() {
        return detail(StatusCode::BAD_REQUEST, "Test query is required.");
    }
    let count = form["count"].as_u64().unwrap_or(5) as usize;
    let name = connection["name"].as_str().unwrap_or("").to_owned();
    match retrieve(&shared, &connection, &source, &name, &query, count).await {
        Ok(v) => Json(v).into_response(),
        Err(r) => r,
    }
}
