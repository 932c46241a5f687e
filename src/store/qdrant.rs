//! A Qdrant server (or cluster) over gRPC, through `qdrant-client`.
//!
//! Thin on purpose: the server does the work, this maps types and errors. Every
//! write waits for the server to apply it (`wait=true`), so a successful return
//! is durable; a timeout or lost connection is [`StoreError::Transient`], and
//! retrying the same write (same point ids) is safe.
//!
//! The server resolves aliases itself for point operations and collection info;
//! collection-level operations resolve them here so both backends behave alike.

use std::collections::HashMap;

use async_trait::async_trait;
use qdrant_client::qdrant::point_id::PointIdOptions;
use qdrant_client::qdrant::vector_output::Vector as VectorOutputKind;
use qdrant_client::qdrant::vectors_config::Config as VectorsConfigKind;
use qdrant_client::qdrant::with_payload_selector::SelectorOptions;
use qdrant_client::qdrant::{
    CollectionInfo, Condition, CountPointsBuilder, CreateAliasBuilder, CreateCollectionBuilder,
    CreateFieldIndexCollectionBuilder, DeletePointsBuilder, Distance, FieldType, Filter,
    GetPointsBuilder, PayloadIncludeSelector, PointId, PointStruct, PointsIdsList, Query,
    QueryPointsBuilder, RetrievedPoint, ScrollPointsBuilder, UpsertPointsBuilder,
    VectorParamsBuilder, VectorsOutput,
};
use qdrant_client::{Payload, Qdrant, QdrantError};
use uuid::Uuid;

use super::{
    KEY_FIELDS, PointFilter, PointKey, PointPayload, SearchHit, StoreError, StoredPoint,
    VectorStore,
};

/// Payload fields a server collection indexes. ragd finds a file's points by id,
/// so these serve filters only: `ragd search` by pipeline, `ragd why` and
/// reconcile by path. On a server their RAM is the server's, and a shared
/// cluster may hold many pipelines in one collection; the embedded store, whose
/// RAM is ragd's own, indexes nothing.
const INDEXED_FIELDS: [&str; 2] = ["pipeline", "path"];

/// Points per page when scrolling a whole filter.
const SCROLL_PAGE: u32 = 512;

/// gRPC status codes, by number: `tonic` is not a direct dependency of ragd, and
/// these numbers are fixed by the gRPC spec.
mod grpc_code {
    pub const CANCELLED: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    pub const DEADLINE_EXCEEDED: i32 = 4;
    pub const NOT_FOUND: i32 = 5;
    pub const ALREADY_EXISTS: i32 = 6;
    pub const RESOURCE_EXHAUSTED: i32 = 8;
    pub const UNAVAILABLE: i32 = 14;
}

/// Points per upsert request: large enough to amortise the round trip, small
/// enough to keep a request well under gRPC's default 4 MiB message limit at
/// 1024 dims.
const UPSERT_BATCH: usize = 128;

/// A Qdrant server reached over gRPC (usually port 6334).
pub struct QdrantStore {
    client: Qdrant,
}

impl QdrantStore {
    /// Make a client for `url` (e.g. `http://127.0.0.1:6334`).
    ///
    /// Does not contact the server: the connection is made on first use, so a
    /// server that is down shows up as a [`StoreError::Transient`] there.
    pub fn connect(url: &str, api_key: Option<String>) -> Result<Self, StoreError> {
        let client = Qdrant::from_url(url)
            .api_key(api_key)
            // The check prints to stdout and blocks on a side runtime; ragd reports
            // an unreachable server through its own readiness checks instead.
            .skip_compatibility_check()
            .build()
            .map_err(|e| StoreError::Backend(format!("qdrant client for {url}: {e}")))?;
        Ok(QdrantStore { client })
    }

    /// The collection `name` points at, or `name` itself.
    async fn resolve(&self, name: &str) -> Result<String, StoreError> {
        Ok(self
            .resolve_alias(name)
            .await?
            .unwrap_or_else(|| name.to_owned()))
    }

    /// Collection info, `None` if there is no such collection (or alias).
    async fn info(&self, collection: &str) -> Result<Option<CollectionInfo>, StoreError> {
        match self.client.collection_info(collection).await {
            Ok(response) => Ok(response.result),
            Err(e) if status_code(&e) == Some(grpc_code::NOT_FOUND) => Ok(None),
            Err(e) => Err(map_err(collection, e)),
        }
    }

    /// Every point matching `filter`, a page at a time, each mapped by `map`.
    async fn scroll_pages<T>(
        &self,
        collection: &str,
        filter: &PointFilter,
        payload: SelectorOptions,
        with_vectors: bool,
        map: impl Fn(RetrievedPoint) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let filter = to_filter(filter);
        let mut out = Vec::new();
        let mut offset: Option<PointId> = None;
        loop {
            let mut request = ScrollPointsBuilder::new(collection)
                .limit(SCROLL_PAGE)
                .with_payload(payload.clone())
                .with_vectors(with_vectors);
            if let Some(filter) = &filter {
                request = request.filter(filter.clone());
            }
            if let Some(offset) = offset.take() {
                request = request.offset(offset);
            }
            let response = self
                .client
                .scroll(request)
                .await
                .map_err(|e| map_err(collection, e))?;
            for point in response.result {
                out.push(map(point)?);
            }
            match response.next_page_offset {
                Some(next) => offset = Some(next),
                None => return Ok(out),
            }
        }
    }

    async fn ensure_indexes(
        &self,
        collection: &str,
        info: &CollectionInfo,
    ) -> Result<(), StoreError> {
        for field in INDEXED_FIELDS {
            if info.payload_schema.contains_key(field) {
                continue;
            }
            self.client
                .create_field_index(
                    CreateFieldIndexCollectionBuilder::new(collection, field, FieldType::Keyword)
                        .wait(true),
                )
                .await
                .map_err(|e| map_err(collection, e))?;
        }
        Ok(())
    }
}

#[async_trait]
impl VectorStore for QdrantStore {
    fn backend(&self) -> &'static str {
        "qdrant"
    }

    async fn ensure_collection(&self, collection: &str, dim: usize) -> Result<(), StoreError> {
        let real = self.resolve(collection).await?;
        if self.info(&real).await?.is_none() {
            let created = self
                .client
                .create_collection(
                    CreateCollectionBuilder::new(&real)
                        .vectors_config(VectorParamsBuilder::new(dim as u64, Distance::Cosine)),
                )
                .await;
            match created {
                Ok(_) => {}
                // Someone else created it meanwhile: check it like an existing one.
                Err(e) if status_code(&e) == Some(grpc_code::ALREADY_EXISTS) => {}
                Err(e) => return Err(map_err(&real, e)),
            }
        }
        let info = self
            .info(&real)
            .await?
            .ok_or_else(|| StoreError::NoSuchCollection(real.clone()))?;
        let existing = dim_of(&real, &info)?;
        if existing != dim {
            return Err(StoreError::DimensionMismatch {
                collection: real,
                existing,
                requested: dim,
            });
        }
        // Also repairs a collection whose creation stopped before its indexes.
        self.ensure_indexes(&real, &info).await
    }

    async fn collection_dim(&self, collection: &str) -> Result<Option<usize>, StoreError> {
        match self.info(collection).await? {
            Some(info) => dim_of(collection, &info).map(Some),
            None => Ok(None),
        }
    }

    async fn upsert(&self, collection: &str, points: Vec<StoredPoint>) -> Result<(), StoreError> {
        if points.is_empty() {
            return Ok(());
        }
        let mut points = points
            .into_iter()
            .map(|p| {
                let payload = to_payload(&p)?;
                Ok(PointStruct::new(p.id.to_string(), p.vector, payload))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        while !points.is_empty() {
            let rest = points.split_off(points.len().min(UPSERT_BATCH));
            self.client
                .upsert_points(UpsertPointsBuilder::new(collection, points).wait(true))
                .await
                .map_err(|e| map_err(collection, e))?;
            points = rest;
        }
        Ok(())
    }

    async fn delete(&self, collection: &str, filter: &PointFilter) -> Result<(), StoreError> {
        // An empty `PointFilter` matches every point, as documented on the trait.
        let filter = to_filter(filter).unwrap_or_default();
        self.client
            .delete_points(
                DeletePointsBuilder::new(collection)
                    .points(filter)
                    .wait(true),
            )
            .await
            .map_err(|e| map_err(collection, e))?;
        Ok(())
    }

    async fn delete_points(&self, collection: &str, ids: Vec<Uuid>) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids = PointsIdsList {
            ids: ids
                .iter()
                .map(|id| PointId::from(id.to_string()))
                .collect::<Vec<_>>(),
        };
        self.client
            .delete_points(DeletePointsBuilder::new(collection).points(ids).wait(true))
            .await
            .map_err(|e| map_err(collection, e))?;
        Ok(())
    }

    async fn retrieve(
        &self,
        collection: &str,
        ids: &[Uuid],
        with_vectors: bool,
    ) -> Result<Vec<StoredPoint>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let request = GetPointsBuilder::new(
            collection,
            ids.iter()
                .map(|id| PointId::from(id.to_string()))
                .collect::<Vec<_>>(),
        )
        .with_payload(true)
        .with_vectors(with_vectors);
        let response = self
            .client
            .get_points(request)
            .await
            .map_err(|e| map_err(collection, e))?;
        let mut found = HashMap::with_capacity(response.result.len());
        for point in response.result {
            let point = from_retrieved(point, with_vectors)?;
            found.insert(point.id, point);
        }
        // The server answers in its own order; the trait promises the caller's.
        Ok(ids.iter().filter_map(|id| found.remove(id)).collect())
    }

    async fn count(&self, collection: &str, filter: &PointFilter) -> Result<u64, StoreError> {
        let mut request = CountPointsBuilder::new(collection).exact(true);
        if let Some(filter) = to_filter(filter) {
            request = request.filter(filter);
        }
        let response = self
            .client
            .count(request)
            .await
            .map_err(|e| map_err(collection, e))?;
        Ok(response.result.map(|r| r.count).unwrap_or(0))
    }

    async fn scroll(
        &self,
        collection: &str,
        filter: &PointFilter,
        with_vectors: bool,
    ) -> Result<Vec<StoredPoint>, StoreError> {
        self.scroll_pages(collection, filter, true.into(), with_vectors, |point| {
            from_retrieved(point, with_vectors)
        })
        .await
    }

    async fn scroll_keys(
        &self,
        collection: &str,
        filter: &PointFilter,
    ) -> Result<Vec<PointKey>, StoreError> {
        let fields: Vec<String> = KEY_FIELDS.iter().map(|f| (*f).to_owned()).collect();
        let payload = PayloadIncludeSelector::new(fields).into();
        self.scroll_pages(collection, filter, payload, false, |point| {
            let id = from_point_id(point.id)?;
            PointKey::from_json(id, serde_json::Value::from(Payload::from(point.payload)))
        })
        .await
    }

    async fn search(
        &self,
        collection: &str,
        vector: Vec<f32>,
        limit: usize,
        filter: Option<&PointFilter>,
    ) -> Result<Vec<SearchHit>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut request = QueryPointsBuilder::new(collection)
            .query(Query::new_nearest(vector))
            .limit(limit as u64)
            .with_payload(true);
        if let Some(filter) = filter.and_then(to_filter) {
            request = request.filter(filter);
        }
        let response = self
            .client
            .query(request)
            .await
            .map_err(|e| map_err(collection, e))?;
        response
            .result
            .into_iter()
            .map(|p| {
                let id = from_point_id(p.id)?;
                Ok(SearchHit {
                    id,
                    score: p.score,
                    payload: from_payload(&id, p.payload)?,
                })
            })
            .collect()
    }

    async fn list_collections(&self) -> Result<Vec<String>, StoreError> {
        let response = self
            .client
            .list_collections()
            .await
            .map_err(|e| map_err("*", e))?;
        let mut names: Vec<String> = response.collections.into_iter().map(|c| c.name).collect();
        names.sort();
        Ok(names)
    }

    async fn delete_collection(&self, collection: &str) -> Result<bool, StoreError> {
        // The server does not resolve aliases here; the trait says names may be
        // aliases, so resolve. The server drops aliases pointing at the collection.
        let real = self.resolve(collection).await?;
        let response = self
            .client
            .delete_collection(real.as_str())
            .await
            .map_err(|e| map_err(&real, e))?;
        Ok(response.result)
    }

    async fn set_alias(&self, alias: &str, collection: &str) -> Result<(), StoreError> {
        // One CreateAlias action on an existing alias re-points it in a single
        // server-side step (the server's alias map insert overwrites), so readers
        // never see the alias missing, unlike delete-then-create.
        self.client
            .create_alias(CreateAliasBuilder::new(collection, alias))
            .await
            .map_err(|e| map_err(collection, e))?;
        Ok(())
    }

    async fn resolve_alias(&self, alias: &str) -> Result<Option<String>, StoreError> {
        let response = self
            .client
            .list_aliases()
            .await
            .map_err(|e| map_err(alias, e))?;
        Ok(response
            .aliases
            .into_iter()
            .find(|a| a.alias_name == alias)
            .map(|a| a.collection_name))
    }
}

fn keyword(field: &str, value: &str) -> Condition {
    Condition::matches(field, value.to_owned())
}

/// `None` when the filter has no conditions (matches everything).
fn to_filter(filter: &PointFilter) -> Option<Filter> {
    let (must, must_not) = filter.keyword_conditions();
    let must: Vec<Condition> = must.into_iter().map(|(f, v)| keyword(f, v)).collect();
    let must_not: Vec<Condition> = must_not.into_iter().map(|(f, v)| keyword(f, v)).collect();
    if must.is_empty() && must_not.is_empty() {
        return None;
    }
    Some(Filter {
        must,
        must_not,
        ..Default::default()
    })
}

fn dim_of(collection: &str, info: &CollectionInfo) -> Result<usize, StoreError> {
    let config = info
        .config
        .as_ref()
        .and_then(|c| c.params.as_ref())
        .and_then(|p| p.vectors_config.as_ref())
        .and_then(|v| v.config.as_ref());
    match config {
        Some(VectorsConfigKind::Params(params)) => Ok(params.size as usize),
        _ => Err(StoreError::Backend(format!(
            "collection {collection:?} has no single unnamed dense vector; ragd did not create it"
        ))),
    }
}

fn to_payload(point: &StoredPoint) -> Result<Payload, StoreError> {
    let map = point.payload.to_json_object(point.id)?;
    Payload::try_from(serde_json::Value::Object(map)).map_err(|e| StoreError::BadPayload {
        id: point.id.to_string(),
        detail: e.to_string(),
    })
}

fn from_payload(
    id: &Uuid,
    payload: HashMap<String, qdrant_client::qdrant::Value>,
) -> Result<PointPayload, StoreError> {
    PointPayload::from_json(id, serde_json::Value::from(Payload::from(payload)))
}

fn from_retrieved(point: RetrievedPoint, with_vectors: bool) -> Result<StoredPoint, StoreError> {
    let id = from_point_id(point.id)?;
    let vector = if with_vectors {
        dense_vector(&id, point.vectors)?
    } else {
        Vec::new()
    };
    Ok(StoredPoint {
        id,
        vector,
        payload: from_payload(&id, point.payload)?,
    })
}

fn from_point_id(id: Option<PointId>) -> Result<Uuid, StoreError> {
    match id.and_then(|id| id.point_id_options) {
        Some(PointIdOptions::Uuid(s)) => Uuid::parse_str(&s).map_err(|e| StoreError::BadPayload {
            id: s.clone(),
            detail: format!("point id is not a UUID: {e}"),
        }),
        Some(PointIdOptions::Num(n)) => Err(StoreError::BadPayload {
            id: n.to_string(),
            detail: "numeric point id; ragd writes only UUIDs".to_owned(),
        }),
        None => Err(StoreError::Backend(
            "server returned a point without id".to_owned(),
        )),
    }
}

fn dense_vector(id: &Uuid, vectors: Option<VectorsOutput>) -> Result<Vec<f32>, StoreError> {
    match vectors.as_ref().and_then(VectorsOutput::get_vector) {
        Some(VectorOutputKind::Dense(dense)) => Ok(dense.data),
        _ => Err(StoreError::BadPayload {
            id: id.to_string(),
            detail: "stored vector is not a single dense vector".to_owned(),
        }),
    }
}

/// The gRPC status code of a server answer, if the error carries one.
fn status_code(err: &QdrantError) -> Option<i32> {
    match err {
        QdrantError::ResponseError { status } => Some(status.code() as i32),
        QdrantError::ResourceExhaustedError { .. } => Some(grpc_code::RESOURCE_EXHAUSTED),
        _ => None,
    }
}

/// A missing collection (or alias) is [`StoreError::NoSuchCollection`].
/// Transient: the server is unreachable, overloaded or did not answer in time —
/// the write may or may not have happened, and retrying it is safe. Everything
/// else (bad request, missing collection, wrong dimension) is permanent.
fn map_err(collection: &str, err: QdrantError) -> StoreError {
    if status_code(&err) == Some(grpc_code::NOT_FOUND) {
        return StoreError::NoSuchCollection(collection.to_owned());
    }
    let message = format!("collection {collection:?}: {err}");
    let transient = match &err {
        QdrantError::ResourceExhaustedError { .. } | QdrantError::Io(_) => true,
        QdrantError::ResponseError { status } => match status.code() as i32 {
            // Cancelled is what tonic reports when the client-side timeout fires.
            grpc_code::UNAVAILABLE
            | grpc_code::DEADLINE_EXCEEDED
            | grpc_code::RESOURCE_EXHAUSTED
            | grpc_code::CANCELLED => true,
            // Transport failures that tonic could not classify.
            grpc_code::UNKNOWN => {
                let text = status.message().to_ascii_lowercase();
                text.contains("transport")
                    || text.contains("connect")
                    || text.contains("broken pipe")
            }
            _ => false,
        },
        _ => false,
    };
    if transient {
        StoreError::Transient(message)
    } else {
        StoreError::Backend(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_filter_matches_everything() {
        assert!(to_filter(&PointFilter::default()).is_none());
    }

    #[test]
    fn file_filter_with_old_versions() {
        let filter = to_filter(&PointFilter {
            content_hash_not: Some("h2".into()),
            ..PointFilter::file("docs", "a.md")
        })
        .unwrap();
        assert_eq!(filter.must.len(), 2);
        assert_eq!(filter.must_not.len(), 1);
        assert!(filter.should.is_empty());
        let shown = format!("{filter:?}");
        for needle in ["pipeline", "docs", "path", "a.md", "content_hash", "h2"] {
            assert!(shown.contains(needle), "{needle} missing from {shown}");
        }
    }

    #[test]
    fn payload_round_trips_through_qdrant_values() {
        let point = StoredPoint {
            id: Uuid::new_v4(),
            vector: vec![1.0],
            payload: PointPayload {
                pipeline: "docs".into(),
                path: "a/b.pdf".into(),
                chunk_index: 3,
                text: "hello".into(),
                page: Some(7),
                headings: vec!["H1".into(), "H2".into()],
                ocr: false,
                content_hash: "c".into(),
                file_hash: "f".into(),
                modified: -5,
                model: "m".into(),
            },
        };
        let payload = to_payload(&point).unwrap();
        let back = from_payload(&point.id, payload.into()).unwrap();
        assert_eq!(back, point.payload);
    }
}
