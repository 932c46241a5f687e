//! A typed async client for the parts of Open WebUI's HTTP API ragd uses: files,
//! knowledge bases and their processing status.
//!
//! Shapes and error texts were checked against Open WebUI 0.12.4 (its routers and a running
//! server); see `shared/OPENWEBUI.md`. Transient failures are retried here, with
//! exponential backoff and jitter, but only where a retry cannot duplicate work: calls
//! that create something (upload, create knowledge base) are retried blindly only when
//! the server certainly did not carry them out; otherwise the client first looks for what
//! the lost request may have created.

use std::fmt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use reqwest::{Method, RequestBuilder, Url};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::error::OwuiError;

/// The first version whose uploads link themselves to `metadata.knowledge_id` *and* report
/// `completed` only after the link exists (read in 0.12.4's `process_uploaded_file`).
/// Server-side linking itself dates from 0.9.6, but the completion order was not verified
/// there, so older servers get the upload-then-`file/add` flow.
const AUTO_LINK_SINCE: ServerVersion = ServerVersion::new(0, 12, 0);
/// The first version with knowledge-base directories, `file/move` and file renames (read
/// in 0.12.4's `routers/knowledge.py` and `files.py`). A server that answers those routes
/// as unknown is published flat whatever its version says.
const DIRECTORIES_SINCE: ServerVersion = ServerVersion::new(0, 12, 0);
/// Upper bound on pages read from one paginated listing: a guard against a server that
/// keeps answering full pages, not a limit expected to be reached (30 items a page).
const MAX_PAGES: u32 = 100_000;
/// Most bytes of one answer ragd reads. The largest of Open WebUI's are listing
/// pages (at most 1,000 files, a few MB with their metadata).
const MAX_ANSWER_BYTES: usize = 64 << 20;
/// The slowest link an upload is given time for, beyond the request timeout:
/// a large file over a slow line must not time out (and be sent again) only
/// because the timeout was sized for small requests.
const UPLOAD_BYTES_PER_SEC: u64 = 1 << 20;

/// Whether a base found by name is one ragd may publish into for `me`: its
/// own, or — for a user who is not an admin — one shared with it for writing.
/// An admin's key sees every base as writable (admins bypass access control),
/// so by name it takes only its own: another user's base is used only when
/// given by id. A server that names no owner (older than 0.5) is taken as before.
fn usable_by(kb: &KnowledgeBase, me: &Whoami) -> bool {
    match &kb.user_id {
        None => true,
        Some(owner) if *owner == me.id => true,
        Some(_) => me.role != "admin" && kb.write_access == Some(true),
    }
}

/// An upload's deadline: the request timeout plus the time `len` bytes take at
/// [`UPLOAD_BYTES_PER_SEC`].
fn upload_timeout(timeout: Duration, len: usize) -> Duration {
    timeout.saturating_add(Duration::from_secs(len as u64 / UPLOAD_BYTES_PER_SEC))
}
/// Page size asked of `knowledge/{id}/files`; only admins get it, others get 30.
const KNOWLEDGE_FILES_PAGE: u32 = 200;
/// Files asked of `files/search` a request: the most it answers (`limit` ≤ 1000).
const SEARCH_PAGE: usize = 1000;
/// Processing polls: the first wait, its growth per poll, and its cap. A file
/// is linked only at the poll after the server finishes it, so the wait
/// overshoots by up to one interval: intervals grow slowly (a quarter of the
/// time waited so far) so that a short file is not kept waiting for seconds,
/// and are capped so that a long one (a large PDF) is seen within 2 s.
const POLL_FIRST: Duration = Duration::from_millis(100);
const POLL_GROWTH: f64 = 1.25;
const POLL_MAX: Duration = Duration::from_secs(2);

/// The wait after a poll that waited `delay`.
fn next_poll_delay(delay: Duration) -> Duration {
    delay.mul_f64(POLL_GROWTH).min(POLL_MAX)
}

/// How transient failures are retried inside the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per call, the first included; 1 disables retries.
    pub max_attempts: u32,
    /// Delay before the first retry; doubles with each further one.
    pub initial_backoff: Duration,
    /// Ceiling of the delay.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// No retries: every failure goes straight to the caller.
    pub const fn none() -> Self {
        Self {
            max_attempts: 1,
            initial_backoff: Duration::ZERO,
            max_backoff: Duration::ZERO,
        }
    }

    /// The delay before retry number `retry` (1-based): the one
    /// [`crate::backoff::Backoff`], so that parallel workers hitting the same
    /// locked database do not retry in lockstep.
    fn delay(&self, retry: u32) -> Duration {
        crate::backoff::Backoff::new(self.initial_backoff, self.max_backoff)
            .delay(retry.saturating_sub(1), None)
    }
}

/// An Open WebUI release number, as `GET /api/version` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerVersion {
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// Patch version.
    pub patch: u32,
}

impl ServerVersion {
    /// A version from its parts.
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }

    /// Parses `0.12.4`, `v0.12.4` or `0.12.4-dev`; missing parts count as 0.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim().trim_start_matches('v');
        let mut parts = text.split('.').map(|part| {
            let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<u32>().ok()
        });
        let major = parts.next()??;
        let minor = parts.next().flatten().unwrap_or(0);
        let patch = parts.next().flatten().unwrap_or(0);
        Some(Self::new(major, minor, patch))
    }
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The account an API key belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Whoami {
    /// User id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// E-mail address (the login).
    #[serde(default)]
    pub email: String,
    /// `admin`, `user` or `pending`.
    pub role: String,
}

/// A user as `GET /api/v1/users/search` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct UserInfo {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub email: String,
}

/// A user group as `GET /api/v1/groups/` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct GroupInfo {
    pub id: String,
    pub name: String,
}

#[derive(Deserialize)]
struct UserPage {
    users: Vec<UserInfo>,
    #[serde(default)]
    total: Option<u64>,
}

/// Where a file is in Open WebUI's processing (`data.status`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileStatus {
    /// Accepted, not started.
    Pending,
    /// Being extracted and embedded.
    Processing,
    /// Extracted and embedded; with auto-link, also linked to its knowledge base.
    Completed,
    /// Processing failed; the reason is in `data.error`.
    Failed,
    /// A status this client does not know.
    Other(String),
}

impl FileStatus {
    fn parse(text: &str) -> Self {
        match text {
            "pending" => Self::Pending,
            "processing" => Self::Processing,
            "completed" => Self::Completed,
            "failed" => Self::Failed,
            other => Self::Other(other.to_owned()),
        }
    }

    /// Whether processing has ended, well or badly.
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Completed | Self::Failed)
    }
}

impl fmt::Display for FileStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pending => "pending",
            Self::Processing => "processing",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Other(other) => other,
        })
    }
}

/// A file record, as the upload, file and knowledge-file endpoints return it.
#[derive(Clone, Debug, PartialEq)]
pub struct FileInfo {
    /// File id.
    pub id: String,
    /// The name it was uploaded under.
    pub filename: String,
    /// `data.status`; `None` for a file uploaded with `process=false`.
    pub status: Option<FileStatus>,
    /// `data.error`: why processing failed.
    pub error: Option<String>,
    /// `meta.file_hash`: SHA-256 (hex) of the uploaded bytes, unless the uploader's
    /// metadata carried its own `file_hash`.
    pub file_hash: Option<String>,
    /// `hash`: SHA-256 of the extracted text, set once processed (and cleared when a
    /// later step fails). This is what duplicate detection compares.
    pub content_hash: Option<String>,
    /// `meta.data`: the metadata given at upload (`Value::Null` if none).
    pub metadata: Value,
    /// `meta.size`: bytes uploaded.
    pub size: Option<u64>,
    /// Creation time, seconds since the epoch (server clock).
    pub created_at: Option<i64>,
    /// Its directory in the knowledge base (`a/b`, `""` at the root), when listed by
    /// `knowledge/{id}/files` on a server with directories (0.12).
    pub directory_path: Option<String>,
}

#[derive(Deserialize)]
struct RawFile {
    id: String,
    #[serde(default)]
    filename: String,
    #[serde(default)]
    hash: Option<String>,
    #[serde(default)]
    data: Option<Value>,
    #[serde(default)]
    meta: Option<RawFileMeta>,
    #[serde(default)]
    created_at: Option<i64>,
    #[serde(default)]
    directory_path: Option<String>,
}

#[derive(Deserialize)]
struct RawFileMeta {
    #[serde(default)]
    file_hash: Option<String>,
    #[serde(default)]
    data: Option<Value>,
    #[serde(default)]
    size: Option<u64>,
}

impl From<RawFile> for FileInfo {
    fn from(raw: RawFile) -> Self {
        let data = raw.data.unwrap_or(Value::Null);
        let text = |key: &str| data.get(key).and_then(Value::as_str).map(str::to_owned);
        let meta = raw.meta;
        Self {
            id: raw.id,
            filename: raw.filename,
            status: text("status").map(|s| FileStatus::parse(&s)),
            error: text("error"),
            file_hash: meta.as_ref().and_then(|m| m.file_hash.clone()),
            content_hash: raw.hash,
            metadata: meta
                .as_ref()
                .and_then(|m| m.data.clone())
                .unwrap_or(Value::Null),
            size: meta.and_then(|m| m.size),
            created_at: raw.created_at,
            directory_path: raw.directory_path,
        }
    }
}

/// A grant as the server stores it: ids, not names.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
pub struct Grant {
    /// `user` or `group` (the server also knows `anyone`, for public bases).
    pub principal_type: String,
    pub principal_id: String,
    pub permission: String,
}

/// A knowledge base.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnowledgeBase {
    /// Knowledge base id (also its vector collection's name).
    pub id: String,
    /// Name shown in Open WebUI; not unique.
    pub name: String,
    /// Description.
    pub description: String,
    /// Ids of its files, when the answer carried them (`file/add`, `file/remove`).
    pub file_ids: Option<Vec<String>>,
    /// Creation time, seconds since the epoch.
    pub created_at: Option<i64>,
    /// The owner's user id, when the answer carried it.
    pub user_id: Option<String>,
    /// Whether the key's user may write to it (listings of 0.6+; an admin's
    /// key reads `true` for every base when admins bypass access control).
    pub write_access: Option<bool>,
    /// Who may read or write it besides its owner (0.12; empty on older servers).
    pub access_grants: Vec<Grant>,
    /// An external knowledge base (`meta.source = "external"`): it searches a vector
    /// collection of its own and takes no files.
    pub external: bool,
}

#[derive(Deserialize)]
struct RawKnowledge {
    id: String,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    write_access: Option<bool>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    files: Option<Vec<RawKnowledgeFileRef>>,
    #[serde(default)]
    created_at: Option<i64>,
    #[serde(default)]
    access_grants: Option<Vec<Grant>>,
    meta: Option<Value>,
}

#[derive(Deserialize)]
struct RawKnowledgeFileRef {
    id: String,
}

impl From<RawKnowledge> for KnowledgeBase {
    fn from(raw: RawKnowledge) -> Self {
        Self {
            id: raw.id,
            name: raw.name,
            description: raw.description.unwrap_or_default(),
            file_ids: raw
                .files
                .map(|files| files.into_iter().map(|f| f.id).collect()),
            created_at: raw.created_at,
            user_id: raw.user_id,
            write_access: raw.write_access,
            access_grants: raw.access_grants.unwrap_or_default(),
            external: raw
                .meta
                .as_ref()
                .and_then(|m| m.get("source"))
                .and_then(Value::as_str)
                == Some("external"),
        }
    }
}

#[derive(Deserialize)]
struct Page<T> {
    items: Vec<T>,
    #[serde(default)]
    total: Option<u64>,
}

/// A directory of a knowledge base (0.12).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct KnowledgeDirectory {
    /// Directory id.
    pub id: String,
    /// Its name within its parent.
    pub name: String,
    /// The parent directory; `None` at the root.
    #[serde(default)]
    pub parent_id: Option<String>,
}

#[derive(Deserialize)]
struct DirectoryListing {
    #[serde(default)]
    directories: Vec<KnowledgeDirectory>,
    #[serde(default)]
    total: u64,
}

/// One file of a folder, as Open WebUI's own folder sync describes it to `sync/diff`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ManifestEntry {
    /// The file's directory, `/`-separated from the folder's root; `""` at the root.
    pub path: String,
    /// Its name.
    pub filename: String,
    /// SHA-256 (hex) of its bytes.
    pub checksum: String,
    /// Its size in bytes.
    pub size: u64,
}

/// The answer of `sync/diff`: what the browser's sync would upload, replace and remove.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct SyncDiff {
    /// Manifest files the base lacks (`{filename, path}`).
    #[serde(default)]
    pub added: Vec<Value>,
    /// Manifest files whose stored `file_hash` differs (`{filename, path, stale_file_id}`).
    #[serde(default)]
    pub modified: Vec<Value>,
    /// Files of the base the manifest lacks (`{file_id, filename}`).
    #[serde(default)]
    pub deleted: Vec<Value>,
    /// Directory paths to create.
    #[serde(default)]
    pub mkdir: Vec<String>,
    /// Directory ids to remove.
    #[serde(default)]
    pub rmdir: Vec<String>,
    /// Files already equal.
    #[serde(default)]
    pub unmodified_count: u64,
    /// Every directory of the base, by path.
    #[serde(default)]
    pub directory_map: std::collections::BTreeMap<String, String>,
}

/// How waiting for a file's processing ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProcessOutcome {
    /// Processed (and, for an auto-linked upload, linked).
    Completed,
    /// Processing failed; `reason` is the file's `data.error`.
    Failed {
        /// Why, in the server's words.
        reason: String,
    },
    /// Still not finished when the wait ran out; ask again later.
    TimedOut {
        /// The last status seen.
        last_status: FileStatus,
    },
}

impl ProcessOutcome {
    /// `Ok` when completed; a failure classified by its reason
    /// ([`OwuiError::from_processing_failure`]); a time-out as a transient error.
    pub fn into_result(self) -> Result<(), OwuiError> {
        match self {
            Self::Completed => Ok(()),
            Self::Failed { reason } => Err(OwuiError::from_processing_failure(reason)),
            Self::TimedOut { last_status } => Err(OwuiError::Transient {
                status: None,
                detail: format!("processing still {last_status} when the wait ended"),
                maybe_applied: true,
            }),
        }
    }
}

/// Which failures a call may retry.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Retry {
    /// Repeating the request is harmless (reads, `file/add`, removals).
    Always,
    /// The request creates something: retry only when it certainly was not carried out.
    IfNotApplied,
}

/// The client. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct OpenWebUi {
    pub(super) http: reqwest::Client,
    base: Url,
    /// Each request's deadline; an upload's grows with its size.
    timeout: Duration,
    retry: RetryPolicy,
    server_version: OnceLock<ServerVersion>,
    /// Set once the server answered a directory route as unknown.
    no_directories: AtomicBool,
}

// By hand, so that the key can never reach a log: it lives only in the HTTP client's
// default headers, marked sensitive.
impl fmt::Debug for OpenWebUi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenWebUi")
            .field("base_url", &crate::http::redact_url(self.base.as_str()))
            .field("api_key", &"<redacted>")
            .field("retry", &self.retry)
            .field("server_version", &self.server_version.get())
            .finish()
    }
}

impl OpenWebUi {
    /// A client for the Open WebUI at `base_url` (e.g. `http://127.0.0.1:8080`), sending
    /// `api_key` as a bearer token. `timeout` bounds each HTTP request (uploads included).
    /// Makes no request.
    pub fn new(base_url: &str, api_key: String, timeout: Duration) -> Result<Self, OwuiError> {
        Self::with_http(
            base_url,
            api_key,
            timeout,
            &crate::http::ClientSettings::default(),
        )
    }

    /// [`OpenWebUi::new`] over `http` (trusted CAs; the timeouts and the key's
    /// header are set here).
    pub fn with_http(
        base_url: &str,
        api_key: String,
        timeout: Duration,
        http: &crate::http::ClientSettings,
    ) -> Result<Self, OwuiError> {
        let mut base = Url::parse(base_url.trim())
            .map_err(|e| OwuiError::InvalidInput(format!("base URL {base_url:?}: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(OwuiError::InvalidInput(format!(
                "base URL {base_url:?} is not an http(s) URL"
            )));
        }
        // Joining relative paths needs a trailing slash, or the last segment is replaced.
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let api_key = api_key.trim();
        if api_key.is_empty() {
            return Err(OwuiError::InvalidInput("the API key is empty".into()));
        }
        let mut auth = HeaderValue::from_str(&format!("Bearer {api_key}")).map_err(|_| {
            OwuiError::InvalidInput("the API key has characters not allowed in a header".into())
        })?;
        auth.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, auth);
        let http = crate::http::client(&crate::http::ClientSettings {
            timeout: Some(timeout),
            connect_timeout: Some(timeout.min(Duration::from_secs(10))),
            default_headers: headers,
            ..http.clone()
        })
        .map_err(|e| OwuiError::InvalidInput(e.to_string()))?;
        Ok(Self {
            http,
            base,
            timeout,
            retry: RetryPolicy::default(),
            server_version: OnceLock::new(),
            no_directories: AtomicBool::new(false),
        })
    }

    /// Replaces the retry policy for transient failures.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The base URL requests go to.
    pub fn base_url(&self) -> &str {
        self.base.as_str()
    }

    /// `GET /api/version`. Remembers the answer for [`Self::supports_auto_link`].
    pub async fn version(&self) -> Result<ServerVersion, OwuiError> {
        #[derive(Deserialize)]
        struct Raw {
            version: String,
        }
        let raw: Raw = self.get_json("version", "api/version", &[]).await?;
        let version =
            ServerVersion::parse(&raw.version).ok_or_else(|| OwuiError::UnexpectedResponse {
                operation: "version",
                detail: format!("version {:?} is not a version number", raw.version),
            })?;
        // A server does not change version under a running client; the first answer wins.
        let _ = self.server_version.set(version);
        Ok(version)
    }

    /// The version seen by the last [`Self::version`] call, if any.
    pub fn server_version(&self) -> Option<ServerVersion> {
        self.server_version.get().copied()
    }

    /// Whether uploads may carry `metadata.knowledge_id` to be linked by the server, with
    /// `completed` reported only once linked (0.12+). `false` until [`Self::version`] has
    /// answered.
    pub fn supports_auto_link(&self) -> bool {
        self.server_version().is_some_and(|v| v >= AUTO_LINK_SINCE)
    }

    /// Who the API key belongs to.
    ///
    /// `GET /api/v1/auths/` refuses API keys on 0.12 (403 "A human session is required."),
    /// so on that refusal this falls back to `GET /api/v1/users/user/status`, which returns
    /// the same user record to any verified caller.
    pub async fn whoami(&self) -> Result<Whoami, OwuiError> {
        match self
            .get_json::<Whoami>("whoami", "api/v1/auths/", &[])
            .await
        {
            Err(OwuiError::Unauthorized {
                status: 403,
                detail,
            }) if detail.contains("human session") => {
                self.get_json("whoami", "api/v1/users/user/status", &[])
                    .await
            }
            other => other,
        }
    }

    /// `POST /api/v1/files/`: uploads `bytes` as `filename` (see
    /// [`super::sanitize_filename`]), with `metadata` (a JSON object, or `Null`) stored
    /// under `meta.data`. With `process`, Open WebUI extracts and embeds the file in the
    /// background: the answer says `pending`; follow with [`Self::wait_processed`].
    ///
    /// Two metadata keys mean something to the server: `knowledge_id` makes a 0.12 server
    /// link the file itself after processing ([`Self::supports_auto_link`]), and
    /// `file_hash` replaces the server's own SHA-256 of the bytes.
    ///
    /// An empty file is refused at once ([`OwuiError::EmptyContent`]). If the answer is
    /// lost after the server may have stored the file, the client looks for a file it
    /// created in the meantime (same name, bytes hash and metadata) before uploading
    /// again, so a retry does not leave a second copy behind.
    pub async fn upload_file(
        &self,
        filename: &str,
        bytes: Vec<u8>,
        metadata: Value,
        process: bool,
    ) -> Result<FileInfo, OwuiError> {
        if !(metadata.is_object() || metadata.is_null()) {
            return Err(OwuiError::InvalidInput(
                "upload metadata must be a JSON object".into(),
            ));
        }
        let url = self.url("api/v1/files/")?;
        let process = if process { "true" } else { "false" };
        let mime = mime_for(filename);
        let metadata_text = (!metadata.is_null()).then(|| metadata.to_string());
        // One buffer, shared by every attempt's request body (a `Vec` part
        // would be a second copy of the file per attempt).
        let bytes = bytes::Bytes::from(bytes);
        let timeout = upload_timeout(self.timeout, bytes.len());
        let build = || {
            let part = reqwest::multipart::Part::stream_with_length(
                reqwest::Body::from(bytes.clone()),
                bytes.len() as u64,
            )
            .file_name(filename.to_owned())
            .mime_str(mime)
            .expect("static MIME types parse");
            // Raw UTF-8 in the quoted filename, as browsers send it; reqwest's default
            // percent-encoding would reach Open WebUI as a literal `%C3%A9…` name.
            let mut form = reqwest::multipart::Form::new()
                .percent_encode_noop()
                .part("file", part);
            if let Some(text) = &metadata_text {
                form = form.text("metadata", text.clone());
            }
            self.http
                .post(url.clone())
                .timeout(timeout)
                .query(&[("process", process), ("process_in_background", "true")])
                .multipart(form)
        };

        let attempts = self.retry.max_attempts.max(1);
        let mut last_lost: Option<OwuiError> = None;
        for attempt in 1..=attempts {
            if last_lost.is_some() {
                // The previous attempt's answer was lost: it may have stored the file.
                if let Some(found) = self.find_lost_upload(filename, &bytes, &metadata).await? {
                    tracing::info!(file_id = %found.id, "recovered an upload whose answer was lost");
                    return Ok(found);
                }
            }
            match self.send_once(&build).await {
                Ok(body) => return decode::<RawFile>("upload", &body).map(FileInfo::from),
                Err(err) if err.is_transient() && attempt < attempts => {
                    let delay = self.retry.delay(attempt);
                    crate::http::retrying(
                        "open_webui",
                        &crate::http::redact_url(self.base.as_str()),
                        attempt,
                        delay,
                        &err,
                    );
                    last_lost = err.maybe_applied().then_some(err);
                    tokio::time::sleep(delay).await;
                }
                Err(err) => return Err(err),
            }
        }
        unreachable!("the last attempt returns")
    }

    /// Files with exactly this name, newest first (`GET /api/v1/files/search`, without
    /// their extracted text). Useful to find an upload whose id was never recorded.
    /// Names are base names, so a tree can hold thousands of `README.md`: the search
    /// answers at most [`SEARCH_PAGE`] a request, and is paged with `skip`.
    pub async fn find_files_by_name(&self, filename: &str) -> Result<Vec<FileInfo>, OwuiError> {
        let limit = SEARCH_PAGE.to_string();
        let mut found = Vec::new();
        for page in 0..MAX_PAGES as usize {
            let skip = (page * SEARCH_PAGE).to_string();
            let query = [
                ("filename", filename),
                ("content", "false"),
                ("limit", limit.as_str()),
                ("skip", skip.as_str()),
            ];
            let files = match self
                .get_json::<Vec<RawFile>>("find files", "api/v1/files/search", &query)
                .await
            {
                Ok(files) => files,
                // The endpoint answers 404 when nothing (more) matches.
                Err(OwuiError::NotFound { .. }) => Vec::new(),
                Err(err) => return Err(err),
            };
            let full = files.len() >= SEARCH_PAGE;
            found.extend(
                files
                    .into_iter()
                    .map(FileInfo::from)
                    .filter(|f| f.filename == filename),
            );
            if !full {
                break;
            }
        }
        Ok(found)
    }

    /// The upload a lost answer may have stored: same name, same bytes, and the
    /// same metadata — which ragd's marker makes unique to this version of this
    /// file of this installation. Matched by that alone, never by time: the
    /// server's `created_at` is its clock, not ours (a skewed clock made a
    /// window compared with the local time miss the upload, and upload again).
    /// An upload without metadata has nothing to tell it from someone else's
    /// identical file, so it is not looked for.
    async fn find_lost_upload(
        &self,
        filename: &str,
        bytes: &[u8],
        metadata: &Value,
    ) -> Result<Option<FileInfo>, OwuiError> {
        if metadata.as_object().is_none_or(|m| m.is_empty()) {
            return Ok(None);
        }
        let expected_hash = metadata
            .get("file_hash")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| hex::encode(Sha256::digest(bytes)));
        let candidates = self.find_files_by_name(filename).await?;
        Ok(candidates.into_iter().find(|f| {
            f.file_hash.as_deref() == Some(expected_hash.as_str()) && &f.metadata == metadata
        }))
    }

    /// `GET /api/v1/files/{id}/process/status`. A file uploaded with `process=false` reads
    /// as `pending` forever.
    pub async fn file_status(&self, file_id: &str) -> Result<FileStatus, OwuiError> {
        #[derive(Deserialize)]
        struct Raw {
            status: String,
        }
        let path = format!("api/v1/files/{}/process/status", seg(file_id));
        let raw: Raw = self.get_json("file status", &path, &[]).await?;
        Ok(FileStatus::parse(&raw.status))
    }

    /// `GET /api/v1/files/{id}`: the record with status and `data.error`.
    pub async fn get_file(&self, file_id: &str) -> Result<FileInfo, OwuiError> {
        let path = format!("api/v1/files/{}", seg(file_id));
        self.get_json::<RawFile>("get file", &path, &[])
            .await
            .map(FileInfo::from)
    }

    /// `DELETE /api/v1/files/{id}`: deletes the file, its vectors and its links to
    /// knowledge bases. Idempotent across retries: a file already gone after a lost
    /// answer counts as deleted; on the first attempt it is [`OwuiError::NotFound`].
    pub async fn delete_file(&self, file_id: &str) -> Result<(), OwuiError> {
        let url = self.url(&format!("api/v1/files/{}", seg(file_id)))?;
        self.send(Retry::Always, true, || {
            self.http.request(Method::DELETE, url.clone())
        })
        .await
        .map(drop)
    }

    /// Every file the key's user can see (`GET /api/v1/files/`, 50 a page, without their
    /// extracted text).
    pub async fn list_files(&self) -> Result<Vec<FileInfo>, OwuiError> {
        let mut out = Vec::new();
        self.for_each_file(|f| out.push(f)).await?;
        Ok(out)
    }

    /// [`Self::list_files`] one page at a time, handing each file to `f`.
    pub async fn for_each_file(&self, mut f: impl FnMut(FileInfo)) -> Result<(), OwuiError> {
        self.for_each_page(
            "list files",
            "api/v1/files/",
            &[("content", "false".into())],
            |raw: RawFile| f(FileInfo::from(raw)),
        )
        .await
    }

    /// Every knowledge base the key's user can see (`GET /api/v1/knowledge/`, all pages).
    pub async fn list_knowledge(&self) -> Result<Vec<KnowledgeBase>, OwuiError> {
        self.paginate("list knowledge", "api/v1/knowledge/", &[])
            .await
            .map(|raw: Vec<RawKnowledge>| raw.into_iter().map(KnowledgeBase::from).collect())
    }

    /// `POST /api/v1/knowledge/create`. Not idempotent (names are not unique): prefer
    /// [`Self::find_or_create_knowledge_by_name`].
    pub async fn create_knowledge(
        &self,
        name: &str,
        description: &str,
    ) -> Result<KnowledgeBase, OwuiError> {
        let url = self.url("api/v1/knowledge/create")?;
        let body = json!({ "name": name, "description": description });
        let bytes = self
            .send(Retry::IfNotApplied, false, || {
                self.http.post(url.clone()).json(&body)
            })
            .await?;
        decode::<RawKnowledge>("create knowledge", &bytes).map(KnowledgeBase::from)
    }

    /// The knowledge base named exactly `name` that the key's user may use
    /// ([`usable_by`]; the oldest, if several), created with `description` when
    /// there is none. A creation whose answer was lost is found by listing again
    /// before trying a second time.
    pub async fn find_or_create_knowledge_by_name(
        &self,
        name: &str,
        description: &str,
    ) -> Result<KnowledgeBase, OwuiError> {
        let me = self.whoami().await?;
        let attempts = self.retry.max_attempts.max(1);
        for attempt in 1..=attempts {
            if let Some(kb) = self.find_knowledge_by_name(name, &me).await? {
                return Ok(kb);
            }
            match self.create_knowledge(name, description).await {
                Err(err) if err.is_transient() && attempt < attempts => {
                    tracing::warn!(attempt, error = %err, "creating the knowledge base failed; retrying");
                    tokio::time::sleep(self.retry.delay(attempt)).await;
                }
                other => return other,
            }
        }
        unreachable!("the last attempt returns")
    }

    /// The oldest knowledge base named exactly `name` that `me` may publish
    /// into by name ([`usable_by`]), if any.
    pub async fn find_knowledge_by_name(
        &self,
        name: &str,
        me: &Whoami,
    ) -> Result<Option<KnowledgeBase>, OwuiError> {
        let mut matching: Vec<_> = self
            .list_knowledge()
            .await?
            .into_iter()
            .filter(|kb| kb.name == name && !kb.external && usable_by(kb, me))
            .collect();
        matching.sort_by_key(|kb| (kb.created_at, kb.id.clone()));
        Ok(matching.into_iter().next())
    }

    /// `GET /api/v1/knowledge/{id}`.
    pub async fn get_knowledge(&self, knowledge_id: &str) -> Result<KnowledgeBase, OwuiError> {
        let path = format!("api/v1/knowledge/{}", seg(knowledge_id));
        self.get_json::<RawKnowledge>("get knowledge", &path, &[])
            .await
            .map(KnowledgeBase::from)
    }

    /// `DELETE /api/v1/knowledge/{id}/delete`: the base and its vectors (its files
    /// stay). ragd never deletes a knowledge base; operators and tests do. Already
    /// gone after a lost answer counts as deleted; on the first attempt it is
    /// [`OwuiError::NotFound`].
    pub async fn delete_knowledge(&self, knowledge_id: &str) -> Result<(), OwuiError> {
        let url = self.url(&format!("api/v1/knowledge/{}/delete", seg(knowledge_id)))?;
        self.send(Retry::Always, true, || {
            self.http.request(Method::DELETE, url.clone())
        })
        .await
        .map(drop)
    }

    /// Every file linked to the knowledge base, with name, hashes and upload metadata
    /// (`GET /api/v1/knowledge/{id}/files`, all pages, oldest first).
    pub async fn knowledge_files(&self, knowledge_id: &str) -> Result<Vec<FileInfo>, OwuiError> {
        // Pages are offsets: a file linked while paging can shift one into the next page.
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        self.for_each_knowledge_file(knowledge_id, |f| {
            if seen.insert(f.id.clone()) {
                out.push(f);
            }
        })
        .await?;
        Ok(out)
    }

    /// [`Self::knowledge_files`] one page at a time, handing each file to `f`
    /// instead of collecting them: a knowledge base of 10,000 files is about
    /// 19 MB as `FileInfo`s. Pages are offsets, so a file linked while paging
    /// can come twice; `f` must allow for that.
    pub async fn for_each_knowledge_file(
        &self,
        knowledge_id: &str,
        mut f: impl FnMut(FileInfo),
    ) -> Result<(), OwuiError> {
        let path = format!("api/v1/knowledge/{}/files", seg(knowledge_id));
        let query = [
            ("order_by", "created_at".to_owned()),
            ("direction", "asc".to_owned()),
            ("limit", KNOWLEDGE_FILES_PAGE.to_string()),
        ];
        self.for_each_page("knowledge files", &path, &query, |raw: RawFile| {
            f(FileInfo::from(raw))
        })
        .await
    }

    /// `POST /api/v1/knowledge/{id}/file/add`: embeds the processed file into the knowledge
    /// base and links it. Idempotent for the same file id. Returns the knowledge base with
    /// its file ids. Another file with the same extracted text already there →
    /// [`OwuiError::DuplicateContent`] (and the server marks this file `failed`); a file
    /// not yet processed → [`OwuiError::EmptyContent`]: wait for `completed` first.
    pub async fn add_file_to_knowledge(
        &self,
        knowledge_id: &str,
        file_id: &str,
    ) -> Result<KnowledgeBase, OwuiError> {
        let url = self.url(&format!("api/v1/knowledge/{}/file/add", seg(knowledge_id)))?;
        let body = json!({ "file_id": file_id });
        let bytes = self
            .send(Retry::Always, false, || {
                self.http.post(url.clone()).json(&body)
            })
            .await?;
        decode::<RawKnowledge>("add file to knowledge", &bytes).map(KnowledgeBase::from)
    }

    /// `POST /api/v1/knowledge/{id}/file/remove?delete_file=…`: unlinks the file and
    /// deletes its vectors from the knowledge base — by file id *and* by content hash, so
    /// another file with identical text loses its vectors too. With `delete_file` the file
    /// itself is deleted as well. Idempotent across retries (gone after a lost answer
    /// counts as done); a file not in the base on the first attempt is
    /// [`OwuiError::NotFound`].
    pub async fn remove_file_from_knowledge(
        &self,
        knowledge_id: &str,
        file_id: &str,
        delete_file: bool,
    ) -> Result<(), OwuiError> {
        let url = self.url(&format!(
            "api/v1/knowledge/{}/file/remove",
            seg(knowledge_id)
        ))?;
        let body = json!({ "file_id": file_id });
        let delete = if delete_file { "true" } else { "false" };
        self.send(Retry::Always, true, || {
            self.http
                .post(url.clone())
                .query(&[("delete_file", delete)])
                .json(&body)
        })
        .await
        .map(drop)
    }

    /// Polls the file's processing status until it is `completed` or `failed`, or
    /// `max_wait` has passed. Polls start 100 ms apart, grow ×1.25, capped at 2 s
    /// ([`POLL_FIRST`]). On `failed` the reason is read from the file's `data.error`. Transient
    /// failures of a poll are tolerated until the deadline; the last one is returned if
    /// the deadline passes without any answer.
    pub async fn wait_processed(
        &self,
        file_id: &str,
        max_wait: Duration,
    ) -> Result<ProcessOutcome, OwuiError> {
        let deadline = tokio::time::Instant::now() + max_wait;
        let mut delay = POLL_FIRST;
        loop {
            let last = match self.file_status(file_id).await {
                Ok(FileStatus::Completed) => return Ok(ProcessOutcome::Completed),
                Ok(FileStatus::Failed) => {
                    let file = self.get_file(file_id).await?;
                    let reason = file
                        .error
                        .unwrap_or_else(|| "processing failed (no reason given)".to_owned());
                    return Ok(ProcessOutcome::Failed { reason });
                }
                Ok(status) => Ok(status),
                Err(err) if err.is_transient() => Err(err),
                Err(err) => return Err(err),
            };
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return last.map(|last_status| ProcessOutcome::TimedOut { last_status });
            }
            tokio::time::sleep(delay.min(deadline - now)).await;
            delay = next_poll_delay(delay);
        }
    }

    // ---- directories, moves and renames (0.12) ------------------------------------

    /// Whether the knowledge base's directory tree, `file/move` and `files/{id}/rename`
    /// can be used: the server is 0.12+ ([`DIRECTORIES_SINCE`]) and has not answered a
    /// directory call as an unknown route. `false` until [`Self::version`] has answered.
    pub fn supports_directories(&self) -> bool {
        self.server_version()
            .is_some_and(|v| v >= DIRECTORIES_SINCE)
            && !self.no_directories.load(Ordering::Relaxed)
    }

    /// Turns FastAPI's answer to a route the server does not have into
    /// [`OwuiError::Unsupported`], and remembers it: from then on
    /// [`Self::supports_directories`] is `false` and publishing is flat.
    fn directory_call<T>(&self, result: Result<T, OwuiError>) -> Result<T, OwuiError> {
        let unknown_route = match &result {
            // A missing knowledge base or directory says ERROR_MESSAGES.NOT_FOUND instead.
            Err(OwuiError::NotFound { detail }) => detail == "Not Found",
            Err(OwuiError::Permanent { status: 405, .. }) => true,
            _ => false,
        };
        if !unknown_route {
            return result;
        }
        if !self.no_directories.swap(true, Ordering::Relaxed) {
            tracing::warn!(base_url = %crate::http::redact_url(self.base.as_str()),
                "this Open WebUI has no knowledge-base directories; files are published flat");
        }
        Err(OwuiError::Unsupported {
            what: "knowledge-base directories",
        })
    }

    /// The directories directly under `parent_id` (`None`: the root), as one page of
    /// `GET /api/v1/knowledge/{id}/files?directory_id=…` lists them next to its files.
    pub async fn subdirectories(
        &self,
        knowledge_id: &str,
        parent_id: Option<&str>,
    ) -> Result<Vec<KnowledgeDirectory>, OwuiError> {
        self.directory_listing(knowledge_id, parent_id)
            .await
            .map(|l| l.directories)
    }

    /// Whether the directory holds neither files nor directories.
    pub async fn directory_is_empty(
        &self,
        knowledge_id: &str,
        directory_id: &str,
    ) -> Result<bool, OwuiError> {
        let l = self
            .directory_listing(knowledge_id, Some(directory_id))
            .await?;
        Ok(l.total == 0 && l.directories.is_empty())
    }

    async fn directory_listing(
        &self,
        knowledge_id: &str,
        directory_id: Option<&str>,
    ) -> Result<DirectoryListing, OwuiError> {
        let path = format!("api/v1/knowledge/{}/files", seg(knowledge_id));
        let query = [
            ("directory_id", directory_id.unwrap_or("")),
            ("limit", "1"),
            ("page", "1"),
        ];
        let result = self.get_json("list directory", &path, &query).await;
        self.directory_call(result)
    }

    /// `POST /api/v1/knowledge/{id}/dirs/create`: a directory `name` under `parent_id`
    /// (`None`: the root). Not idempotent, and at the root the server does not even
    /// refuse a second directory of the same name: look first ([`Self::subdirectories`]).
    /// Not retried once it may have been carried out.
    pub async fn create_directory(
        &self,
        knowledge_id: &str,
        name: &str,
        parent_id: Option<&str>,
    ) -> Result<KnowledgeDirectory, OwuiError> {
        let url = self.url(&format!(
            "api/v1/knowledge/{}/dirs/create",
            seg(knowledge_id)
        ))?;
        let body = json!({ "name": name, "parent_id": parent_id });
        let result = self
            .send(Retry::IfNotApplied, false, || {
                self.http.post(url.clone()).json(&body)
            })
            .await;
        let bytes = self.directory_call(result)?;
        decode("create directory", &bytes)
    }

    /// `POST /api/v1/knowledge/{id}/dirs/{dir_id}/update`: renames the directory, or
    /// (with `parent`) moves it: `Some(None)` to the root, `Some(Some(id))` under `id`.
    pub async fn update_directory(
        &self,
        knowledge_id: &str,
        directory_id: &str,
        name: Option<&str>,
        parent: Option<Option<&str>>,
    ) -> Result<KnowledgeDirectory, OwuiError> {
        let url = self.url(&format!(
            "api/v1/knowledge/{}/dirs/{}/update",
            seg(knowledge_id),
            seg(directory_id)
        ))?;
        let mut body = json!({ "name": name, "parent_id": "__unset__" });
        if let Some(parent) = parent {
            body["parent_id"] = json!(parent);
        }
        let result = self
            .send(Retry::Always, false, || {
                self.http.post(url.clone()).json(&body)
            })
            .await;
        let bytes = self.directory_call(result)?;
        decode("update directory", &bytes)
    }

    /// `DELETE /api/v1/knowledge/{id}/dirs/{dir_id}/delete`. With `move_files`, what
    /// the directory holds (files of its whole subtree) goes to its parent; without,
    /// those files are unlinked and deleted. Already gone after a lost answer counts
    /// as done.
    pub async fn delete_directory(
        &self,
        knowledge_id: &str,
        directory_id: &str,
        move_files: bool,
    ) -> Result<(), OwuiError> {
        let url = self.url(&format!(
            "api/v1/knowledge/{}/dirs/{}/delete",
            seg(knowledge_id),
            seg(directory_id)
        ))?;
        let move_files = if move_files { "true" } else { "false" };
        let result = self
            .send(Retry::Always, true, || {
                self.http
                    .request(Method::DELETE, url.clone())
                    .query(&[("move_files", move_files)])
            })
            .await;
        self.directory_call(result).map(drop)
    }

    /// `POST /api/v1/knowledge/{id}/file/move`: puts a linked file in another directory
    /// (`None`: the root). Changes only the link: nothing is extracted or embedded
    /// again. Idempotent.
    pub async fn move_file(
        &self,
        knowledge_id: &str,
        file_id: &str,
        directory_id: Option<&str>,
    ) -> Result<(), OwuiError> {
        let url = self.url(&format!("api/v1/knowledge/{}/file/move", seg(knowledge_id)))?;
        let body = json!({ "file_id": file_id, "directory_id": directory_id });
        let result = self
            .send(Retry::Always, false, || {
                self.http.post(url.clone()).json(&body)
            })
            .await;
        self.directory_call(result).map(drop)
    }

    /// `POST /api/v1/files/{id}/rename`: the file's name (and `meta.name`). Nothing is
    /// processed again. Idempotent.
    pub async fn rename_file(&self, file_id: &str, filename: &str) -> Result<(), OwuiError> {
        let url = self.url(&format!("api/v1/files/{}/rename", seg(file_id)))?;
        let body = json!({ "filename": filename });
        let result = self
            .send(Retry::Always, false, || {
                self.http.post(url.clone()).json(&body)
            })
            .await;
        self.directory_call(result).map(drop)
    }

    /// `POST /api/v1/knowledge/{id}/sync/diff`: what Open WebUI's own folder sync would
    /// do to make the base equal to `manifest`.
    pub async fn sync_diff(
        &self,
        knowledge_id: &str,
        manifest: &[ManifestEntry],
    ) -> Result<SyncDiff, OwuiError> {
        let url = self.url(&format!("api/v1/knowledge/{}/sync/diff", seg(knowledge_id)))?;
        let body = json!({ "manifest": manifest });
        let result = self
            .send(Retry::Always, false, || {
                self.http.post(url.clone()).json(&body)
            })
            .await;
        let bytes = self.directory_call(result)?;
        decode("sync diff", &bytes)
    }

    // ---- access ---------------------------------------------------------------------

    /// Users whose name or e-mail address contains `query` (`GET /api/v1/users/search`,
    /// every page of 30). Any verified user may ask.
    pub async fn search_users(&self, query: &str) -> Result<Vec<UserInfo>, OwuiError> {
        let mut found = Vec::new();
        for page in 1..=MAX_PAGES {
            let page_text = page.to_string();
            let batch: UserPage = self
                .get_json(
                    "search users",
                    "api/v1/users/search",
                    &[("query", query), ("page", &page_text)],
                )
                .await?;
            let got = batch.users.len();
            found.extend(batch.users);
            if got == 0 || batch.total.is_none_or(|t| found.len() as u64 >= t) {
                return Ok(found);
            }
        }
        Err(OwuiError::UnexpectedResponse {
            operation: "search users",
            detail: format!("more than {MAX_PAGES} pages"),
        })
    }

    /// The groups the key may share with (`GET /api/v1/groups/`: all of them for an
    /// admin, its own groups for a user).
    pub async fn groups(&self) -> Result<Vec<GroupInfo>, OwuiError> {
        self.get_json("list groups", "api/v1/groups/", &[]).await
    }

    /// `POST /api/v1/knowledge/{id}/access/update`: replaces every grant of the base
    /// (see [`super::access::keep_access`]). Idempotent.
    pub async fn update_access(
        &self,
        knowledge_id: &str,
        grants: &std::collections::BTreeSet<Grant>,
    ) -> Result<(), OwuiError> {
        let url = self.url(&format!(
            "api/v1/knowledge/{}/access/update",
            seg(knowledge_id)
        ))?;
        let body = json!({
            "access_grants": grants
                .iter()
                .map(|g| json!({
                    "principal_type": g.principal_type,
                    "principal_id": g.principal_id,
                    "permission": g.permission,
                }))
                .collect::<Vec<_>>(),
        });
        self.send(Retry::Always, false, || {
            self.http.post(url.clone()).json(&body)
        })
        .await
        .map(drop)
    }

    // ---- plumbing -------------------------------------------------------------------

    pub(super) fn url(&self, path: &str) -> Result<Url, OwuiError> {
        self.base
            .join(path)
            .map_err(|e| OwuiError::InvalidInput(format!("path {path:?}: {e}")))
    }

    pub(super) async fn get_json<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, OwuiError> {
        let url = self.url(path)?;
        let body = self
            .send(Retry::Always, false, || {
                self.http.get(url.clone()).query(query)
            })
            .await?;
        decode(operation, &body)
    }

    /// Reads `?page=1,2,…` until a short or empty page, or `total` items.
    pub(super) async fn paginate<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Vec<T>, OwuiError> {
        let mut items = Vec::new();
        self.for_each_page(operation, path, query, |item| items.push(item))
            .await?;
        Ok(items)
    }

    /// Every item of a paginated listing, page after page, handed to `f`.
    async fn for_each_page<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        path: &str,
        query: &[(&str, String)],
        mut f: impl FnMut(T),
    ) -> Result<(), OwuiError> {
        let mut seen = 0u64;
        for page in 1..=MAX_PAGES {
            let page_text = page.to_string();
            let mut q: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
            q.push(("page", &page_text));
            let batch: Page<T> = self.get_json(operation, path, &q).await?;
            let got = batch.items.len();
            seen += got as u64;
            batch.items.into_iter().for_each(&mut f);
            // Without a `total`, read on until an empty page.
            if got == 0 || batch.total.is_some_and(|total| seen >= total) {
                return Ok(());
            }
        }
        Err(OwuiError::UnexpectedResponse {
            operation,
            detail: format!("more than {MAX_PAGES} pages"),
        })
    }

    /// One attempt: the body of a 2xx answer, or the classified failure.
    async fn send_once(&self, build: &impl Fn() -> RequestBuilder) -> Result<Vec<u8>, OwuiError> {
        let response = build()
            .send()
            .await
            .map_err(|e| OwuiError::from_transport(&e))?;
        let status = response.status();
        let body = match crate::http::read_capped(response, MAX_ANSWER_BYTES).await {
            Ok(body) => body,
            // An answer that big is not one of Open WebUI's: asking again
            // would only read it again.
            Err(e @ crate::http::HttpError::TooLarge { .. }) => {
                return Err(OwuiError::UnexpectedResponse {
                    operation: "read the answer",
                    detail: e.to_string(),
                });
            }
            Err(e) => {
                return Err(OwuiError::Transient {
                    status: None,
                    detail: format!("the answer broke off: {e}"),
                    maybe_applied: true,
                });
            }
        };
        if status.is_success() {
            Ok(body)
        } else {
            Err(OwuiError::from_response(status, &body))
        }
    }

    /// Sends with retries per the policy. With `gone_means_done`, a [`OwuiError::NotFound`]
    /// on a retry that followed a possibly-applied failure counts as success (empty body):
    /// the lost attempt already removed the thing.
    pub(super) async fn send(
        &self,
        retry: Retry,
        gone_means_done: bool,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Vec<u8>, OwuiError> {
        let attempts = self.retry.max_attempts.max(1);
        let mut previous_maybe_applied = false;
        for attempt in 1..=attempts {
            match self.send_once(&build).await {
                Ok(body) => return Ok(body),
                Err(OwuiError::NotFound { .. }) if gone_means_done && previous_maybe_applied => {
                    return Ok(Vec::new());
                }
                Err(err)
                    if err.is_transient()
                        && attempt < attempts
                        && (retry == Retry::Always || !err.maybe_applied()) =>
                {
                    let delay = self.retry.delay(attempt);
                    crate::http::retrying(
                        "open_webui",
                        &crate::http::redact_url(self.base.as_str()),
                        attempt,
                        delay,
                        &err,
                    );
                    previous_maybe_applied |= err.maybe_applied();
                    tokio::time::sleep(delay).await;
                }
                Err(err) => return Err(err),
            }
        }
        unreachable!("the last attempt returns")
    }
}

pub(super) fn decode<T: DeserializeOwned>(
    operation: &'static str,
    body: &[u8],
) -> Result<T, OwuiError> {
    serde_json::from_slice(body).map_err(|e| OwuiError::UnexpectedResponse {
        operation,
        detail: e.to_string(),
    })
}

/// Percent-encodes an id for use as one path segment (ids are UUIDs, but a caller's
/// string must not be able to walk to another endpoint).
pub(super) fn seg(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for byte in id.bytes() {
        // '.' is encoded too: a bare `..` segment would climb a level.
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The MIME type sent with an upload. Open WebUI routes `image/`, `video/` and audio
/// types away from text extraction, so only types that lead to the right loader are named;
/// everything else goes as `application/octet-stream` and is picked by extension.
fn mime_for(filename: &str) -> &'static str {
    let ext = filename
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "txt" => "text/plain",
        "md" | "markdown" => "text/markdown",
        "html" | "htm" => "text/html",
        "csv" => "text/csv",
        "json" => "application/json",
        "pdf" => "application/pdf",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file is seen done only at the first poll after the server finishes it.
    /// Measured against the real Open WebUI 0.12.4 here, 200 small files: polls
    /// growing ×1.5 from 250 ms to 5 s waited 1.5–1.7 s a file for about 1 s of
    /// processing. The overshoot is now at most a quarter of the time waited,
    /// plus the first interval, and at most the 2 s cap for long files.
    #[test]
    fn processing_polls_overshoot_little() {
        let mut polls = vec![Duration::ZERO];
        let mut delay = POLL_FIRST;
        while *polls.last().unwrap() < Duration::from_secs(120) {
            polls.push(*polls.last().unwrap() + delay);
            delay = next_poll_delay(delay);
        }
        for ms in (1..120_000).step_by(7) {
            let done = Duration::from_millis(ms);
            let seen = polls.iter().find(|p| **p >= done).unwrap();
            let overshoot = *seen - done;
            assert!(
                overshoot <= (done / 4 + POLL_FIRST).min(POLL_MAX),
                "done at {done:?}, seen at {seen:?}"
            );
        }
        // And a long file does not poll more than about once a second.
        let first_minute = polls
            .iter()
            .filter(|p| **p <= Duration::from_secs(60))
            .count();
        assert!(
            first_minute <= 50,
            "{first_minute} polls in the first minute"
        );
    }

    #[test]
    fn versions_parse_and_order() {
        assert_eq!(
            ServerVersion::parse("0.12.4"),
            Some(ServerVersion::new(0, 12, 4))
        );
        assert_eq!(
            ServerVersion::parse("v0.6.5-dev"),
            Some(ServerVersion::new(0, 6, 5))
        );
        assert_eq!(ServerVersion::parse("1"), Some(ServerVersion::new(1, 0, 0)));
        assert_eq!(ServerVersion::parse("dev"), None);
        assert!(ServerVersion::new(0, 12, 0) > ServerVersion::new(0, 9, 6));
    }

    #[test]
    fn debug_never_prints_the_key() {
        let client = OpenWebUi::new(
            "http://127.0.0.1:1",
            "sk-secret-123".into(),
            Duration::from_secs(1),
        )
        .unwrap();
        let printed = format!("{client:?}");
        assert!(!printed.contains("sk-secret"), "{printed}");
        assert!(printed.contains("<redacted>"));
    }

    #[test]
    fn a_base_found_by_name_is_the_users_own_or_shared_for_writing() {
        let kb = |owner: Option<&str>, write: Option<bool>| KnowledgeBase {
            id: "k".into(),
            name: "Docs".into(),
            description: String::new(),
            file_ids: None,
            created_at: None,
            user_id: owner.map(str::to_owned),
            write_access: write,
            access_grants: Vec::new(),
            external: false,
        };
        let who = |id: &str, role: &str| Whoami {
            id: id.into(),
            name: String::new(),
            email: String::new(),
            role: role.into(),
        };
        let (admin, user) = (who("a", "admin"), who("u", "user"));
        assert!(usable_by(&kb(Some("a"), Some(true)), &admin));
        // Another user's base: an admin sees it writable, and must not take it.
        assert!(!usable_by(&kb(Some("u"), Some(true)), &admin));
        // Shared with a plain user for writing: that is a grant, taken.
        assert!(usable_by(&kb(Some("a"), Some(true)), &user));
        assert!(!usable_by(&kb(Some("a"), Some(false)), &user));
        assert!(!usable_by(&kb(Some("a"), None), &user));
        assert!(usable_by(&kb(None, None), &user));
    }

    #[test]
    fn an_uploads_deadline_grows_with_its_size() {
        let t = Duration::from_secs(60);
        assert_eq!(upload_timeout(t, 10_000), t);
        assert_eq!(upload_timeout(t, 200 << 20), t + Duration::from_secs(200));
        assert_eq!(upload_timeout(Duration::MAX, usize::MAX), Duration::MAX);
    }

    #[test]
    fn base_urls_keep_their_path() {
        let client = OpenWebUi::new("http://h:1/owui", "k".into(), Duration::from_secs(1)).unwrap();
        assert_eq!(
            client.url("api/version").unwrap().as_str(),
            "http://h:1/owui/api/version"
        );
        assert!(OpenWebUi::new("ftp://h", "k".into(), Duration::from_secs(1)).is_err());
        assert!(OpenWebUi::new("http://h", " ".into(), Duration::from_secs(1)).is_err());
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let policy = RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
        };
        for retry in 1..10 {
            let delay = policy.delay(retry);
            let ceiling =
                (Duration::from_millis(100) * (1 << (retry - 1))).min(Duration::from_secs(1));
            assert!(
                delay >= ceiling / 2 && delay <= ceiling,
                "{retry}: {delay:?}"
            );
        }
    }

    #[test]
    fn ids_cannot_escape_their_segment() {
        assert_eq!(seg("../x"), "%2E%2E%2Fx");
        assert_eq!(seg("4d9fb4e3-2023"), "4d9fb4e3-2023");
    }
}
