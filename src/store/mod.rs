//! Vector storage: where embedded chunks live and are searched.
//!
//! [`VectorStore`] is implemented by `edge` (embedded Qdrant, the default when no
//! server is configured) and `qdrant` (a Qdrant server over gRPC). Both are tested
//! by the same suite.

pub mod edge;
pub mod layer;
pub mod qdrant;
pub mod retry;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What ragd stores with every point: enough to cite the chunk and to find all
/// points of one file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointPayload {
    /// Pipeline name.
    pub pipeline: String,
    /// Path relative to the pipeline's source folder, `/`-separated.
    pub path: String,
    /// Position of the chunk in the file, from 0.
    pub chunk_index: u32,
    /// The chunk text.
    pub text: String,
    /// Page of the chunk's start: PDF page, slide or sheet number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
    /// Heading trail (Markdown, Office and e-book headings, a sheet's name),
    /// outermost first.
    #[serde(default)]
    pub headings: Vec<String>,
    /// The text was read by OCR (a scanned page, an image): it may hold
    /// recognition errors. Absent when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ocr: bool,
    /// The programming language of a source file (`rust`, `python`, …),
    /// whose chunks follow its syntax. Absent for other files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Hash of the extracted text of the file version this chunk belongs to.
    pub content_hash: String,
    /// SHA-256 of the file's bytes.
    pub file_hash: String,
    /// File modification time, seconds since the Unix epoch.
    pub modified: i64,
    /// Embedding model that made the vector.
    pub model: String,
}

impl PointPayload {
    /// The JSON object both backends store as a point's payload: the fields
    /// above, plus [`CITATION_FIELD`], what Open WebUI's external knowledge
    /// shows as a citation (`payload.text` is already where it reads the text).
    pub(crate) fn to_json_object(
        &self,
        id: impl std::fmt::Display,
    ) -> Result<serde_json::Map<String, serde_json::Value>, StoreError> {
        let bad = |detail: String| StoreError::BadPayload {
            id: id.to_string(),
            detail,
        };
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(mut map)) => {
                map.insert(CITATION_FIELD.to_owned(), self.citation());
                Ok(map)
            }
            Ok(other) => Err(bad(format!("payload is not a JSON object: {other}"))),
            Err(e) => Err(bad(e.to_string())),
        }
    }

    /// `payload.metadata` as Open WebUI 0.12's external knowledge reads it
    /// (`retrieval/external.py`): `name` and `source` label the citation, `page`
    /// is 0-based as Open WebUI's own loaders give it (its UI shows `page + 1`),
    /// so ragd's 1-based page is shifted and also kept as `page_label`. The rest
    /// helps a reader find the passage: the heading trail, the chunk's place.
    /// Derived from the fields above, never read back: one source of truth.
    pub fn citation(&self) -> serde_json::Value {
        let name = self.path.rsplit('/').next().unwrap_or(&self.path);
        let mut m = serde_json::Map::new();
        m.insert("name".into(), name.into());
        m.insert("source".into(), self.path.clone().into());
        if let Some(page) = self.page {
            m.insert("page".into(), page.saturating_sub(1).into());
            m.insert("page_label".into(), page.to_string().into());
        }
        if !self.headings.is_empty() {
            m.insert("headings".into(), self.headings.clone().into());
            m.insert("heading".into(), self.headings.join(" > ").into());
        }
        m.insert("chunk_index".into(), self.chunk_index.into());
        if self.ocr {
            m.insert("ocr".into(), true.into());
        }
        m.insert("pipeline".into(), self.pipeline.clone().into());
        m.insert("file_hash".into(), self.file_hash.clone().into());
        m.insert("modified".into(), self.modified.into());
        m.insert("created_by".into(), "ragd".into());
        serde_json::Value::Object(m)
    }

    /// Read a stored payload back; a point ragd did not write is a
    /// [`StoreError::BadPayload`].
    pub(crate) fn from_json(
        id: impl std::fmt::Display,
        value: serde_json::Value,
    ) -> Result<Self, StoreError> {
        serde_json::from_value(value).map_err(|e| StoreError::BadPayload {
            id: id.to_string(),
            detail: e.to_string(),
        })
    }
}

/// The payload field holding [`PointPayload::citation`]: `payload.metadata`,
/// Open WebUI's default `metadata_field` for a Qdrant source. Points written
/// by ragd before it existed lack it; [`VectorStore::add_citations`] adds it.
pub const CITATION_FIELD: &str = "metadata";

/// Which file version a point belongs to, read without its text or vector:
/// what `ragd reconcile` compares with the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointKey {
    pub id: Uuid,
    pub path: String,
    pub content_hash: String,
}

/// The payload fields a [`PointKey`] is read from.
pub(crate) const KEY_FIELDS: [&str; 2] = ["path", "content_hash"];

impl PointKey {
    /// From a payload holding at least [`KEY_FIELDS`].
    pub(crate) fn from_json(id: Uuid, value: serde_json::Value) -> Result<Self, StoreError> {
        #[derive(Deserialize)]
        struct Fields {
            path: String,
            content_hash: String,
        }
        let fields: Fields = serde_json::from_value(value).map_err(|e| StoreError::BadPayload {
            id: id.to_string(),
            detail: e.to_string(),
        })?;
        Ok(PointKey {
            id,
            path: fields.path,
            content_hash: fields.content_hash,
        })
    }
}

/// A point to write or one read back.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredPoint {
    pub id: Uuid,
    /// Empty when read back without vectors.
    pub vector: Vec<f32>,
    pub payload: PointPayload,
}

/// `(field, value)`: the payload field equals the value.
pub(crate) type KeywordCondition<'a> = (&'static str, &'a str);

/// Which points an operation applies to. All set fields must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PointFilter {
    pub pipeline: Option<String>,
    pub path: Option<String>,
    /// Matches points whose `content_hash` is NOT this value: "the old versions".
    pub content_hash_not: Option<String>,
}

impl PointFilter {
    /// All points of one file.
    pub fn file(pipeline: &str, path: &str) -> Self {
        PointFilter {
            pipeline: Some(pipeline.to_owned()),
            path: Some(path.to_owned()),
            content_hash_not: None,
        }
    }

    /// The filter as keyword conditions, `(must, must_not)` of `(field, value)`;
    /// both empty when it matches everything. Each backend maps these to its
    /// own filter type.
    pub(crate) fn keyword_conditions(
        &self,
    ) -> (Vec<KeywordCondition<'_>>, Vec<KeywordCondition<'_>>) {
        let mut must = Vec::new();
        if let Some(pipeline) = &self.pipeline {
            must.push(("pipeline", pipeline.as_str()));
        }
        if let Some(path) = &self.path {
            must.push(("path", path.as_str()));
        }
        let must_not = self
            .content_hash_not
            .iter()
            .map(|hash| ("content_hash", hash.as_str()))
            .collect();
        (must, must_not)
    }

    /// All points of one pipeline.
    pub fn pipeline(pipeline: &str) -> Self {
        PointFilter {
            pipeline: Some(pipeline.to_owned()),
            ..Default::default()
        }
    }
}

/// One write of a [`VectorStore::write`] group.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOp {
    /// Insert or overwrite points by id.
    Upsert(Vec<StoredPoint>),
    /// Delete every point matching the filter.
    Delete(PointFilter),
    /// Delete these points; ids that do not exist are ignored.
    DeletePoints(Vec<Uuid>),
}

/// One search result.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    pub id: Uuid,
    pub score: f32,
    pub payload: PointPayload,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "collection {collection:?} has vectors of dimension {existing}, but the model gives {requested}"
    )]
    DimensionMismatch {
        collection: String,
        existing: usize,
        requested: usize,
    },
    #[error("collection {0:?} does not exist")]
    NoSuchCollection(String),
    /// The outcome is unknown or the server is unavailable; retrying the same
    /// idempotent write is safe.
    #[error("vector store unavailable: {0}")]
    Transient(String),
    /// The server is overloaded and asked to be called again after `retry_after`.
    #[error("vector store overloaded (retry after {}s): {message}", retry_after.as_secs())]
    Throttled {
        message: String,
        retry_after: std::time::Duration,
    },
    /// The collection exists but ragd did not create it: on a shared server it
    /// is somebody else's, and ragd neither writes to it nor drops it.
    #[error(
        "collection {collection:?} was not created by ragd, so ragd does not touch it: give the pipeline \
         another `[qdrant] collection`; if an older ragd created it, mark it as ragd's with \
         PUT /collections/{collection}/index {{\"field_name\": \"ragd_owned\", \"field_schema\": \"keyword\"}} \
         on the server's REST port"
    )]
    Foreign { collection: String },
    /// The collection is ragd's, but another ragd installation's (another state
    /// directory): two installations in one collection would delete each
    /// other's points in their reconciles.
    #[error(
        "collection {collection:?} belongs to another ragd installation (another state directory), \
         so this one does not touch it: give the pipeline another `[qdrant] collection`; if it is \
         this installation's own from before its state directory was lost, delete the collection \
         and index again"
    )]
    OtherInstallation { collection: String },
    /// An existing collection whose vectors ragd cannot use.
    #[error("collection {collection:?} cannot hold ragd's vectors: {detail}")]
    Incompatible { collection: String, detail: String },
    /// A gRPC message to or from the Qdrant server over ragd's cap
    /// (`qdrant::MAX_MESSAGE_BYTES`): far more than any page ragd asks for, so
    /// the answer is not one, and asking again would only read as much again.
    #[error("a gRPC message for collection {collection:?} is over ragd's limit: {detail}")]
    MessageTooLarge { collection: String, detail: String },
    #[error("vector store error: {0}")]
    Backend(String),
    #[error("stored point {id} has an unreadable payload: {detail}")]
    BadPayload { id: String, detail: String },
}

impl StoreError {
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Transient(_) | StoreError::Throttled { .. }
        )
    }

    /// How long the server asked to be left alone, if it did.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            StoreError::Throttled { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }
}

/// A place to keep vectors.
///
/// Contract: every write is idempotent by point id. `upsert` and `delete` are
/// durable when the call returns (server: `wait=true`; embedded: WAL and
/// segments flushed); `write` groups are durable after the next `sync`. Collection names
/// passed in may be aliases; reads and writes go to what the alias points at.
#[async_trait]
pub trait VectorStore: Send + Sync {
    /// "edge" or "qdrant", for messages.
    fn backend(&self) -> &'static str;

    /// Create `collection` (cosine distance, `dim`) unless it exists. An existing
    /// one with another dimension is a [`StoreError::DimensionMismatch`], one
    /// with another distance [`StoreError::Incompatible`], and one this store
    /// did not create [`StoreError::Foreign`]. Whether
    /// payload fields get an index is the backend's choice: filters work either
    /// way, and ragd finds a file's points by id (see `pipeline::points`).
    async fn ensure_collection(&self, collection: &str, dim: usize) -> Result<(), StoreError>;

    /// The vector dimension of `collection`, or `None` if it does not exist.
    async fn collection_dim(&self, collection: &str) -> Result<Option<usize>, StoreError>;

    /// Insert or overwrite points by id.
    async fn upsert(&self, collection: &str, points: Vec<StoredPoint>) -> Result<(), StoreError>;

    /// Delete every point matching `filter`.
    async fn delete(&self, collection: &str, filter: &PointFilter) -> Result<(), StoreError>;

    /// Delete the points with these ids; missing ones are ignored.
    async fn delete_points(&self, collection: &str, ids: Vec<Uuid>) -> Result<(), StoreError>;

    /// The points among `ids` that exist, in the order asked, vectors included
    /// if asked.
    async fn retrieve(
        &self,
        collection: &str,
        ids: &[Uuid],
        with_vectors: bool,
    ) -> Result<Vec<StoredPoint>, StoreError>;

    /// Apply `ops` in order. They are visible to reads when the call returns, but
    /// durable only once [`VectorStore::sync`] has returned after it.
    ///
    /// The group is not atomic, but each op is idempotent, so after an error the
    /// whole group can be applied again. This lets a backend whose durability
    /// has a fixed cost (embedded Qdrant flushes every segment) pay it once for
    /// many groups; the default applies the ops one durable call each.
    async fn write(&self, collection: &str, ops: Vec<WriteOp>) -> Result<(), StoreError> {
        for op in ops {
            match op {
                WriteOp::Upsert(points) => self.upsert(collection, points).await?,
                WriteOp::Delete(filter) => self.delete(collection, &filter).await?,
                WriteOp::DeletePoints(ids) => self.delete_points(collection, ids).await?,
            }
        }
        Ok(())
    }

    /// Make every [`VectorStore::write`] to `collection` that returned before
    /// this call durable. Nothing to do where writes are durable anyway.
    async fn sync(&self, collection: &str) -> Result<(), StoreError> {
        let _ = collection;
        Ok(())
    }

    /// Which of `ids` exist, in the order asked: no payload or vector is read
    /// where the backend can avoid it.
    async fn existing_ids(&self, collection: &str, ids: &[Uuid]) -> Result<Vec<Uuid>, StoreError> {
        Ok(self
            .retrieve(collection, ids, false)
            .await?
            .into_iter()
            .map(|p| p.id)
            .collect())
    }

    /// Exact count of points matching `filter`.
    async fn count(&self, collection: &str, filter: &PointFilter) -> Result<u64, StoreError>;

    /// All points matching `filter` (paged internally), vectors included if asked.
    async fn scroll(
        &self,
        collection: &str,
        filter: &PointFilter,
        with_vectors: bool,
    ) -> Result<Vec<StoredPoint>, StoreError>;

    /// Every point matching `filter` as a [`PointKey`] (paged internally):
    /// no chunk text and no vector is held, so this scales to the whole
    /// collection.
    async fn scroll_keys(
        &self,
        collection: &str,
        filter: &PointFilter,
    ) -> Result<Vec<PointKey>, StoreError>;

    /// The `limit` nearest points to `vector`, best first.
    async fn search(
        &self,
        collection: &str,
        vector: Vec<f32>,
        limit: usize,
        filter: Option<&PointFilter>,
    ) -> Result<Vec<SearchHit>, StoreError>;

    /// Real collections (not aliases).
    async fn list_collections(&self) -> Result<Vec<String>, StoreError>;

    /// Delete a collection; `false` if it did not exist. One this store did not
    /// create is refused ([`StoreError::Foreign`]) and left as it is.
    async fn delete_collection(&self, collection: &str) -> Result<bool, StoreError>;

    /// Atomically point `alias` at `collection`: a reader sees either the old
    /// target or the new one, never neither.
    async fn set_alias(&self, alias: &str, collection: &str) -> Result<(), StoreError>;

    /// The collection `alias` points at, if it is an alias.
    async fn resolve_alias(&self, alias: &str) -> Result<Option<String>, StoreError>;

    /// Give every point of `collection` that lacks [`CITATION_FIELD`] (written by
    /// a ragd before it existed) its citation metadata, vectors unchanged; the
    /// number of points given it. Idempotent, and cheap once done: only points
    /// without the field are read.
    async fn add_citations(&self, collection: &str) -> Result<u64, StoreError>;
}
