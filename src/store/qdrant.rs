//! A Qdrant server (or cluster) over gRPC: `qdrant-client`'s request types and
//! builders, sent through gRPC clients ragd makes itself ([`Grpc`]) so that every
//! answer is capped ([`MAX_MESSAGE_BYTES`]) and the channel trusts `tls_ca_file`.
//!
//! Thin on purpose: the server does the work, this maps types and errors. Every
//! write waits for the server to apply it (`wait=true`), so a successful return
//! is durable; a timeout or lost connection is [`StoreError::Transient`], and
//! retrying the same write (same point ids) is safe.
//!
//! The server resolves aliases itself for point operations and collection info;
//! collection-level operations resolve them here so both backends behave alike.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use qdrant_client::qdrant::alias_operations::Action as AliasAction;
use qdrant_client::qdrant::collections_client::CollectionsClient;
use qdrant_client::qdrant::point_id::PointIdOptions;
use qdrant_client::qdrant::points_client::PointsClient;
use qdrant_client::qdrant::vector_output::Vector as VectorOutputKind;
use qdrant_client::qdrant::vectors_config::Config as VectorsConfigKind;
use qdrant_client::qdrant::with_payload_selector::SelectorOptions;
use qdrant_client::qdrant::{
    AliasOperations, ChangeAliases, CollectionInfo, Condition, CountPointsBuilder, CreateAlias,
    CreateCollectionBuilder, CreateFieldIndexCollectionBuilder, DeleteAlias, DeleteCollection,
    DeletePointsBuilder, Distance, FieldType, Filter, GetCollectionInfoRequest, GetPointsBuilder,
    KeywordIndexParamsBuilder, ListAliasesRequest, ListCollectionsRequest, PayloadIncludeSelector,
    PointId, PointStruct, PointsIdsList, Query, QueryPointsBuilder, RetrievedPoint,
    ScrollPointsBuilder, UpsertPointsBuilder, VectorParamsBuilder, VectorsOutput,
};
use qdrant_client::{Payload, QdrantError};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use uuid::Uuid;

use super::{
    CITATION_FIELD, KEY_FIELDS, PointFilter, PointKey, PointPayload, SearchHit, StoreError,
    StoredPoint, VectorStore,
};

/// Payload fields a server collection indexes. ragd finds a file's points by id,
/// so these serve filters only: `ragd search` by pipeline, `ragd why` and
/// reconcile by path. On a server their RAM is the server's, and a shared
/// cluster may hold many pipelines in one collection, so `pipeline` is a tenant
/// index (Qdrant keeps each tenant's points together); the embedded store,
/// whose RAM is ragd's own, indexes nothing.
const INDEXED_FIELDS: [(&str, bool); 2] = [("pipeline", true), ("path", false)];

/// The mark of a collection ragd created: a keyword index on this field, which
/// no point has. An index, because Qdrant 1.14 keeps no collection metadata (it
/// drops the `metadata` of a create request without a word); the index is
/// created with the collection, replicated with it and dropped with it, on
/// every Qdrant version. Current Qdrant also gets [`OWNER_METADATA`].
pub const OWNER_FIELD: &str = "ragd_owned";

/// The second mark: which installation (state directory) a collection is,
/// `ragd_instance_<id>` (a keyword index, so it works on every version).
pub const INSTANCE_FIELD_PREFIX: &str = "ragd_instance_";

/// `(key, value)` of the collection metadata ragd writes on Qdrant 1.16+.
const OWNER_METADATA: (&str, &str) = ("created_by", "ragd");

/// Points per page of a read that returns payloads (a scroll, a retrieve by
/// id): the page [`MAX_MESSAGE_BYTES`] is sized by.
const READ_PAGE: usize = 512;

/// Ids per read that returns ids only (`existing_ids`): ~50 bytes a point, so
/// a page is ~200 KiB.
const ID_PAGE: usize = 4096;

/// The largest gRPC message ragd reads from a Qdrant server (or sends to one).
/// qdrant-client's own clients read answers of any size
/// (`max_decoding_message_size(usize::MAX)`, with no setting), so a server, or
/// whatever answers on its port, could make ragd buffer without end.
///
/// Sized from ragd's largest honest answer, one [`READ_PAGE`] of points with
/// vectors and payload: 512 points × (a 4096-dimensional vector, 16 KiB, the
/// widest dense embedding models give; + the chunk's text, under 32 KiB, as a
/// chunk longer than an embedding model's 8192-token context is not embedded
/// whole; + path, headings, hashes and model, under 4 KiB) ≈ 26 MiB. 64 MiB is
/// more than twice that, so no page ragd asks for reaches it; an upsert
/// ([`UPSERT_BATCH`] points) is a quarter of a page. The embedded store needs no
/// cap: its answers are ragd's own reads of its own files.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// gRPC status codes, by number (fixed by the gRPC spec).
mod grpc_code {
    pub const CANCELLED: i32 = 1;
    pub const INTERNAL: i32 = 13;
    pub const UNKNOWN: i32 = 2;
    pub const DEADLINE_EXCEEDED: i32 = 4;
    pub const NOT_FOUND: i32 = 5;
    pub const ALREADY_EXISTS: i32 = 6;
    pub const RESOURCE_EXHAUSTED: i32 = 8;
    pub const OUT_OF_RANGE: i32 = 11;
    pub const UNAVAILABLE: i32 = 14;
}

/// Points per upsert request: large enough to amortise the round trip, small
/// enough to keep a request well under gRPC's default 4 MiB message limit at
/// 1024 dims.
const UPSERT_BATCH: usize = 128;

/// How ragd talks to a server and lays out the collections it creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerOptions {
    /// One request's deadline. A call that outlives it is transient, retried by
    /// the store's `Retry` layer.
    pub timeout: Duration,
    pub layout: Layout,
    /// Collections the ledger records ragd writing into (names or aliases). One
    /// of them without ragd's mark was made by a ragd from before the mark; it
    /// is marked once its points prove to be ragd's (see [`ADOPT_SAMPLE`]).
    /// Any other unmarked collection stays refused.
    pub adoptable: std::collections::BTreeSet<String>,
    /// This installation's id (its state directory's). Collections it claims
    /// get its mark, and one marked by another installation is refused. `None`
    /// (tools, tests reading a server) claims nothing and checks no instance.
    pub instance: Option<String>,
    /// `tls_ca_file`: PEM certificates an `https://` server's certificate may be
    /// issued by, besides the system's roots.
    pub ca_file: Option<PathBuf>,
}

/// Points read to recognise an unmarked collection as ragd's: every one must
/// carry ragd's payload and the id ragd derives from it (a UUIDv5 of pipeline,
/// path and chunk index, which no other writer produces by chance).
pub const ADOPT_SAMPLE: u32 = 64;

/// The layout of a collection ragd creates; `None` leaves the server's default.
/// Applied only at creation: an existing collection keeps its layout.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    pub shard_number: Option<u32>,
    pub replication_factor: Option<u32>,
    pub write_consistency_factor: Option<u32>,
    pub on_disk_payload: Option<bool>,
}

/// The `api-key` header on every request.
#[derive(Clone)]
struct ApiKey(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for ApiKey {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(key) = &self.0 {
            request.metadata_mut().insert("api-key", key.clone());
        }
        Ok(request)
    }
}

/// Where this installation writes down, before the request, that it is
/// creating a collection (the ledger). Qdrant creates a collection and ragd's
/// mark in two requests; a crash between them leaves an unmarked collection
/// that only this record proves is ragd's own, not somebody else's.
pub trait CreationJournal: Send + Sync {
    fn begin(&self, collection: &str) -> Result<(), String>;
    fn begun(&self, collection: &str) -> Result<bool, String>;
    /// The collection carries its marks: the record is no longer needed.
    fn end(&self, collection: &str) -> Result<(), String>;
}

/// ragd's gRPC clients of one server, which every call goes through: one
/// channel, the API key, [`MAX_MESSAGE_BYTES`] each way, and `tls_ca_file`
/// trusted. Not qdrant-client's `Qdrant`: its clients read answers of any size
/// and trust only the system's roots (its channel pool builds its own TLS
/// settings and takes no certificate), and it sends one alias action per
/// request where the switch needs several in one.
struct Grpc {
    endpoint: Endpoint,
    /// Made on first use (a channel needs a runtime, `connect` does not), and
    /// dropped after a transport failure so that the next call connects anew:
    /// the host's name resolved again, a channel whose runtime has ended
    /// replaced.
    channel: std::sync::Mutex<Option<Channel>>,
    api_key: ApiKey,
    cap: usize,
}

type Service = InterceptedService<Channel, ApiKey>;

impl Grpc {
    fn channel(&self) -> Channel {
        self.channel
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(|| self.endpoint.connect_lazy())
            .clone()
    }

    fn points(&self) -> PointsClient<Service> {
        PointsClient::with_interceptor(self.channel(), self.api_key.clone())
            .max_decoding_message_size(self.cap)
            .max_encoding_message_size(self.cap)
    }

    fn collections(&self) -> CollectionsClient<Service> {
        CollectionsClient::with_interceptor(self.channel(), self.api_key.clone())
            .max_decoding_message_size(self.cap)
            .max_encoding_message_size(self.cap)
    }

    /// A failed call's [`StoreError`]; a transport failure also drops the channel.
    fn fail(&self, collection: &str, status: tonic::Status) -> StoreError {
        let err = map_err(collection, QdrantError::from(status));
        if matches!(err, StoreError::Transient(_)) {
            *self.channel.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
        err
    }
}

/// A Qdrant server reached over gRPC (usually port 6334).
pub struct QdrantStore {
    grpc: Grpc,
    /// Collections this store sent a create request for. One whose answer was
    /// lost (a timeout, a restart) exists without the mark, which the retry
    /// then adds instead of refusing ragd's own collection.
    creating: std::sync::Mutex<std::collections::HashSet<String>>,
    layout: Layout,
    adoptable: std::collections::BTreeSet<String>,
    instance: Option<String>,
    journal: Option<std::sync::Arc<dyn CreationJournal>>,
}

impl QdrantStore {
    /// Make a client for `url` (e.g. `http://127.0.0.1:6334`).
    ///
    /// Does not contact the server: the connection is made on first use, so a
    /// server that is down shows up as a [`StoreError::Transient`] there.
    pub fn connect(
        url: &str,
        api_key: Option<String>,
        options: &ServerOptions,
    ) -> Result<Self, StoreError> {
        let shown = crate::http::redact_url(url);
        let bad = |e: String| StoreError::Backend(format!("qdrant client for {shown}: {e}"));
        // Connecting is part of the request's time; a server that does not
        // accept within this is down or unreachable (transient either way).
        let connect_timeout = options.timeout.min(Duration::from_secs(10));
        let key = api_key
            .as_deref()
            .map(|k| {
                k.parse()
                    .map_err(|_| bad("the API key is not a valid header value".into()))
            })
            .transpose()?;
        let url = url.trim();
        let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        if !matches!(scheme.as_deref(), Some("http" | "https")) {
            return Err(bad("the URL must start with http:// or https://".into()));
        }
        let mut endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|e| bad(e.to_string()))?
            .timeout(options.timeout)
            .connect_timeout(connect_timeout)
            .user_agent(concat!("ragd/", env!("CARGO_PKG_VERSION")))
            .map_err(|e| bad(e.to_string()))?;
        if scheme.as_deref() == Some("https") {
            let mut tls = ClientTlsConfig::new().with_native_roots();
            if let Some(path) = &options.ca_file {
                let pem = crate::http::ca_pem(path).map_err(|e| bad(e.to_string()))?;
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            endpoint = endpoint.tls_config(tls).map_err(|e| bad(e.to_string()))?;
        }
        Ok(QdrantStore {
            grpc: Grpc {
                endpoint,
                channel: Default::default(),
                api_key: ApiKey(key),
                cap: MAX_MESSAGE_BYTES,
            },
            creating: Default::default(),
            layout: options.layout.clone(),
            adoptable: options.adoptable.clone(),
            instance: options.instance.clone(),
            journal: None,
        })
    }

    /// Record each creation in `journal` before making it (see
    /// [`CreationJournal`]); without one, a creation a crash cut short before
    /// ragd's mark leaves a collection ragd then refuses.
    pub fn with_journal(mut self, journal: std::sync::Arc<dyn CreationJournal>) -> Self {
        self.journal = Some(journal);
        self
    }

    /// Another message cap than [`MAX_MESSAGE_BYTES`], for the tests that show
    /// an answer over it refused; nothing configures it.
    pub fn with_message_cap(mut self, bytes: usize) -> Self {
        self.grpc.cap = bytes;
        self
    }

    fn journal(
        &self,
        collection: &str,
        step: impl FnOnce(&dyn CreationJournal) -> Result<bool, String>,
    ) -> Result<bool, StoreError> {
        match &self.journal {
            None => Ok(false),
            Some(j) => step(j.as_ref()).map_err(|e| {
                StoreError::Backend(format!("recording the creation of {collection:?}: {e}"))
            }),
        }
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
        let request = GetCollectionInfoRequest {
            collection_name: collection.to_owned(),
        };
        match self.grpc.collections().get(request).await {
            Ok(response) => Ok(response.into_inner().result),
            Err(status) if status.code() as i32 == grpc_code::NOT_FOUND => Ok(None),
            Err(status) => Err(self.grpc.fail(collection, status)),
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
                .limit(READ_PAGE as u32)
                .with_payload(payload.clone())
                .with_vectors(with_vectors);
            if let Some(filter) = &filter {
                request = request.filter(filter.clone());
            }
            if let Some(offset) = offset.take() {
                request = request.offset(offset);
            }
            let response = self
                .grpc
                .points()
                .scroll(request.build())
                .await
                .map_err(|s| self.grpc.fail(collection, s))?
                .into_inner();
            for point in response.result {
                out.push(map(point)?);
            }
            match response.next_page_offset {
                Some(next) => offset = Some(next),
                None => return Ok(out),
            }
        }
    }

    /// Hand each of the points of `ids` that exist to `each`, asking for
    /// `page` ids a request so that no answer outgrows [`MAX_MESSAGE_BYTES`];
    /// in the server's order.
    async fn get_pages(
        &self,
        collection: &str,
        ids: &[Uuid],
        page: usize,
        with_payload: bool,
        with_vectors: bool,
        mut each: impl FnMut(RetrievedPoint) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        for page in ids.chunks(page) {
            let request = GetPointsBuilder::new(collection, point_ids(page))
                .with_payload(with_payload)
                .with_vectors(with_vectors);
            let response = self
                .grpc
                .points()
                .get(request.build())
                .await
                .map_err(|s| self.grpc.fail(collection, s))?
                .into_inner();
            response.result.into_iter().try_for_each(&mut each)?;
        }
        Ok(())
    }

    /// Make sure `real` (what `name` resolves to) is ragd's and this
    /// installation's, marking it where that is proven, or refuse it:
    ///
    /// 1. ragd's at all ([`OWNER_FIELD`]): marked when this store just created
    ///    it, or when an older ragd did (the ledger records writing into it and
    ///    its points carry ragd-derived ids), or when the [`CreationJournal`]
    ///    records this installation creating it and it is still empty (a
    ///    crash between the creation and the mark); otherwise
    ///    [`StoreError::Foreign`].
    /// 2. this installation's ([`INSTANCE_FIELD_PREFIX`]): marked when it
    ///    carries no installation's mark yet and this store created it, the
    ///    ledger records it, or it is empty (a creation that stopped before
    ///    its marks); another installation's is [`StoreError::OtherInstallation`].
    async fn claim(&self, name: &str, real: &str, info: &CollectionInfo) -> Result<(), StoreError> {
        let created_here = self
            .creating
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(real);
        let recorded = self.adoptable.contains(name) || self.adoptable.contains(real);
        let begun = self.journal(real, |j| j.begun(real))?;
        if !owned(info) {
            if created_here {
                self.create_keyword_index(real, OWNER_FIELD, false).await?;
            } else if begun && self.is_empty(real).await? {
                tracing::info!(
                    collection = %real,
                    "marking a collection this installation created before a crash cut its creation short"
                );
                self.create_keyword_index(real, OWNER_FIELD, false).await?;
            } else if recorded && self.points_are_ragds(real).await? {
                tracing::info!(
                    collection = %real,
                    "marking a collection an older ragd created (the ledger records writing into it and its point ids are ragd's)"
                );
                self.create_keyword_index(real, OWNER_FIELD, false).await?;
            } else {
                return Err(StoreError::Foreign {
                    collection: real.to_owned(),
                });
            }
        }
        if let Some(me) = &self.instance {
            let marks = instances(info);
            if !marks.iter().any(|m| m == me) {
                if !(marks.is_empty() && (created_here || recorded || self.is_empty(real).await?)) {
                    return Err(StoreError::OtherInstallation {
                        collection: real.to_owned(),
                    });
                }
                self.create_keyword_index(real, &format!("{INSTANCE_FIELD_PREFIX}{me}"), false)
                    .await?;
            }
        }
        if begun {
            self.journal(real, |j| j.end(real).map(|()| true))?;
        }
        Ok(())
    }

    async fn is_empty(&self, collection: &str) -> Result<bool, StoreError> {
        Ok(self.count(collection, &PointFilter::default()).await? == 0)
    }

    /// Whether the first [`ADOPT_SAMPLE`] points of `collection` all carry
    /// ragd's payload under the id ragd derives from it. An empty collection
    /// proves nothing and is not ragd's by this test.
    async fn points_are_ragds(&self, collection: &str) -> Result<bool, StoreError> {
        let request = ScrollPointsBuilder::new(collection)
            .limit(ADOPT_SAMPLE)
            .with_payload(true)
            .with_vectors(false);
        let response = self
            .grpc
            .points()
            .scroll(request.build())
            .await
            .map_err(|s| self.grpc.fail(collection, s))?
            .into_inner();
        if response.result.is_empty() {
            return Ok(false);
        }
        Ok(response.result.into_iter().all(|point| {
            from_retrieved(point, false).is_ok_and(|p| {
                p.id == crate::document::point_id(
                    &p.payload.pipeline,
                    &p.payload.path,
                    p.payload.chunk_index,
                )
            })
        }))
    }

    /// The indexes of [`INDEXED_FIELDS`] that `info` lacks (also repairs a
    /// collection whose creation stopped before them).
    async fn ensure_indexes(
        &self,
        collection: &str,
        info: &CollectionInfo,
    ) -> Result<(), StoreError> {
        for (field, tenant) in INDEXED_FIELDS {
            if info.payload_schema.contains_key(field) {
                continue;
            }
            self.create_keyword_index(collection, field, tenant).await?;
        }
        Ok(())
    }

    async fn create_keyword_index(
        &self,
        collection: &str,
        field: &str,
        tenant: bool,
    ) -> Result<(), StoreError> {
        let mut request =
            CreateFieldIndexCollectionBuilder::new(collection, field, FieldType::Keyword)
                .wait(true);
        if tenant {
            request =
                request.field_index_params(KeywordIndexParamsBuilder::default().is_tenant(true));
        }
        self.grpc
            .points()
            .create_field_index(request.build())
            .await
            .map_err(|s| self.grpc.fail(collection, s))?;
        Ok(())
    }

    /// Create `collection` with ragd's mark and the configured layout.
    async fn create(&self, collection: &str, dim: usize) -> Result<(), StoreError> {
        let metadata: HashMap<String, serde_json::Value> = HashMap::from([(
            OWNER_METADATA.0.to_owned(),
            serde_json::Value::from(OWNER_METADATA.1),
        )]);
        self.creating
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(collection.to_owned());
        self.journal(collection, |j| j.begin(collection).map(|()| true))?;
        let mut request = CreateCollectionBuilder::new(collection)
            .vectors_config(VectorParamsBuilder::new(dim as u64, Distance::Cosine))
            .metadata(metadata);
        let layout = &self.layout;
        if let Some(n) = layout.shard_number {
            request = request.shard_number(n);
        }
        if let Some(n) = layout.replication_factor {
            request = request.replication_factor(n);
        }
        if let Some(n) = layout.write_consistency_factor {
            request = request.write_consistency_factor(n);
        }
        if let Some(on_disk) = layout.on_disk_payload {
            request = request.on_disk_payload(on_disk);
        }
        match self.grpc.collections().create(request.build()).await {
            Ok(_) => {}
            // In practice the retry layer's re-send of our own request whose
            // answer was lost (it stays in `creating`); the caller checks it
            // like an existing one.
            Err(status) if status.code() as i32 == grpc_code::ALREADY_EXISTS => return Ok(()),
            Err(status) => return Err(self.grpc.fail(collection, status)),
        }
        crate::failpoint::hit("qdrant.after_create");
        // The mark right after the creation; a crash in between leaves an empty
        // unmarked collection, which the journal's record lets `claim` mark.
        self.create_keyword_index(collection, OWNER_FIELD, false)
            .await
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
            self.create(&real, dim).await?;
        }
        let info = self
            .info(&real)
            .await?
            .ok_or_else(|| StoreError::NoSuchCollection(real.clone()))?;
        self.claim(collection, &real, &info).await?;
        let (existing, distance) = vectors_of(&real, &info)?;
        if distance != Distance::Cosine {
            return Err(StoreError::Incompatible {
                collection: real,
                detail: format!(
                    "its distance is {}, ragd's vectors need Cosine",
                    distance.as_str_name()
                ),
            });
        }
        if existing != dim {
            return Err(StoreError::DimensionMismatch {
                collection: real,
                existing,
                requested: dim,
            });
        }
        self.ensure_indexes(&real, &info).await
    }

    async fn collection_dim(&self, collection: &str) -> Result<Option<usize>, StoreError> {
        match self.info(collection).await? {
            Some(info) => vectors_of(collection, &info).map(|(dim, _)| Some(dim)),
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
            self.grpc
                .points()
                .upsert(
                    UpsertPointsBuilder::new(collection, points)
                        .wait(true)
                        .build(),
                )
                .await
                .map_err(|s| self.grpc.fail(collection, s))?;
            points = rest;
        }
        Ok(())
    }

    async fn delete(&self, collection: &str, filter: &PointFilter) -> Result<(), StoreError> {
        // An empty `PointFilter` matches every point, as documented on the trait.
        let filter = to_filter(filter).unwrap_or_default();
        self.grpc
            .points()
            .delete(
                DeletePointsBuilder::new(collection)
                    .points(filter)
                    .wait(true)
                    .build(),
            )
            .await
            .map_err(|s| self.grpc.fail(collection, s))?;
        Ok(())
    }

    async fn delete_points(&self, collection: &str, ids: Vec<Uuid>) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids = PointsIdsList {
            ids: point_ids(&ids),
        };
        self.grpc
            .points()
            .delete(
                DeletePointsBuilder::new(collection)
                    .points(ids)
                    .wait(true)
                    .build(),
            )
            .await
            .map_err(|s| self.grpc.fail(collection, s))?;
        Ok(())
    }

    async fn retrieve(
        &self,
        collection: &str,
        ids: &[Uuid],
        with_vectors: bool,
    ) -> Result<Vec<StoredPoint>, StoreError> {
        // A page at a time: a file's points are asked for all at once, and a
        // file may have thousands.
        let mut found = HashMap::with_capacity(ids.len());
        self.get_pages(collection, ids, READ_PAGE, true, with_vectors, |point| {
            let point = from_retrieved(point, with_vectors)?;
            found.insert(point.id, point);
            Ok(())
        })
        .await?;
        // The server answers in its own order; the trait promises the caller's.
        Ok(ids.iter().filter_map(|id| found.remove(id)).collect())
    }

    async fn existing_ids(&self, collection: &str, ids: &[Uuid]) -> Result<Vec<Uuid>, StoreError> {
        // No payload, no vector: only the ids come back.
        let mut found = std::collections::HashSet::with_capacity(ids.len());
        self.get_pages(collection, ids, ID_PAGE, false, false, |point| {
            found.insert(from_point_id(point.id)?);
            Ok(())
        })
        .await?;
        Ok(ids
            .iter()
            .filter(|id| found.contains(id))
            .copied()
            .collect())
    }

    async fn count(&self, collection: &str, filter: &PointFilter) -> Result<u64, StoreError> {
        let mut request = CountPointsBuilder::new(collection).exact(true);
        if let Some(filter) = to_filter(filter) {
            request = request.filter(filter);
        }
        let response = self
            .grpc
            .points()
            .count(request.build())
            .await
            .map_err(|s| self.grpc.fail(collection, s))?
            .into_inner();
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
            .grpc
            .points()
            .query(request.build())
            .await
            .map_err(|s| self.grpc.fail(collection, s))?
            .into_inner();
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
            .grpc
            .collections()
            .list(ListCollectionsRequest {})
            .await
            .map_err(|s| self.grpc.fail("*", s))?
            .into_inner();
        let mut names: Vec<String> = response.collections.into_iter().map(|c| c.name).collect();
        names.sort();
        Ok(names)
    }

    async fn delete_collection(&self, collection: &str) -> Result<bool, StoreError> {
        // The server does not resolve aliases here; the trait says names may be
        // aliases, so resolve. The server drops aliases pointing at the collection.
        let real = self.resolve(collection).await?;
        let Some(info) = self.info(&real).await? else {
            return Ok(false);
        };
        // Somebody else's data on a shared server is never ragd's to drop, nor
        // another installation's.
        check_owned(&real, &info)?;
        if let Some(me) = &self.instance {
            let marks = instances(&info);
            if !marks.is_empty() && !marks.contains(me) {
                return Err(StoreError::OtherInstallation { collection: real });
            }
        }
        let request = DeleteCollection {
            collection_name: real.clone(),
            timeout: None,
        };
        let response = self
            .grpc
            .collections()
            .delete(request)
            .await
            .map_err(|s| self.grpc.fail(&real, s))?
            .into_inner();
        Ok(response.result)
    }

    async fn set_alias(&self, alias: &str, collection: &str) -> Result<(), StoreError> {
        // Qdrant applies the actions of one request together, so readers see the
        // old target or the new one, never the alias missing (its documented way
        // to switch a collection). Checked first: a batch whose create failed
        // after its delete must never be sent.
        if self.info(collection).await?.is_none() {
            return Err(StoreError::NoSuchCollection(collection.to_owned()));
        }
        let current = self.resolve_alias(alias).await?;
        if current.as_deref() == Some(collection) {
            return Ok(());
        }
        let mut actions = Vec::new();
        if current.is_some() {
            actions.push(AliasAction::DeleteAlias(DeleteAlias {
                alias_name: alias.to_owned(),
            }));
        }
        actions.push(AliasAction::CreateAlias(CreateAlias {
            collection_name: collection.to_owned(),
            alias_name: alias.to_owned(),
        }));
        let request = ChangeAliases {
            actions: actions
                .into_iter()
                .map(|action| AliasOperations {
                    action: Some(action),
                })
                .collect(),
            timeout: None,
        };
        self.grpc
            .collections()
            .update_aliases(request)
            .await
            .map_err(|s| self.grpc.fail(collection, s))?;
        Ok(())
    }

    async fn resolve_alias(&self, alias: &str) -> Result<Option<String>, StoreError> {
        let response = self
            .grpc
            .collections()
            .list_aliases(ListAliasesRequest {})
            .await
            .map_err(|s| self.grpc.fail(alias, s))?
            .into_inner();
        Ok(response
            .aliases
            .into_iter()
            .find(|a| a.alias_name == alias)
            .map(|a| a.collection_name))
    }

    async fn add_citations(&self, collection: &str) -> Result<u64, StoreError> {
        // Points that gained the field no longer match, so every round asks for
        // the first page again; no payload index is needed (the server scans).
        let missing = Filter::must([Condition::is_empty(CITATION_FIELD)]);
        let mut done = 0u64;
        loop {
            let request = ScrollPointsBuilder::new(collection)
                .limit(READ_PAGE as u32)
                .filter(missing.clone())
                .with_payload(true)
                .with_vectors(true);
            let response = self
                .grpc
                .points()
                .scroll(request.build())
                .await
                .map_err(|s| self.grpc.fail(collection, s))?
                .into_inner();
            if response.result.is_empty() {
                return Ok(done);
            }
            let points = response
                .result
                .into_iter()
                .map(|point| from_retrieved(point, true))
                .collect::<Result<Vec<_>, _>>()?;
            done += points.len() as u64;
            // Rewritten whole with the same vector: `to_payload` adds the field.
            self.upsert(collection, points).await?;
        }
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

/// The vector size and distance of a collection of one unnamed dense vector.
fn vectors_of(collection: &str, info: &CollectionInfo) -> Result<(usize, Distance), StoreError> {
    let config = info
        .config
        .as_ref()
        .and_then(|c| c.params.as_ref())
        .and_then(|p| p.vectors_config.as_ref())
        .and_then(|v| v.config.as_ref());
    match config {
        Some(VectorsConfigKind::Params(params)) => Ok((
            params.size as usize,
            Distance::try_from(params.distance).unwrap_or(Distance::UnknownDistance),
        )),
        _ => Err(StoreError::Incompatible {
            collection: collection.to_owned(),
            detail: "it has no single unnamed dense vector".to_owned(),
        }),
    }
}

/// Whether ragd created the collection: its marker index, or (Qdrant 1.16+) its
/// metadata.
fn owned(info: &CollectionInfo) -> bool {
    let by_metadata = info
        .config
        .as_ref()
        .and_then(|c| c.metadata.get(OWNER_METADATA.0))
        .and_then(|v| match &v.kind {
            Some(qdrant_client::qdrant::value::Kind::StringValue(s)) => Some(s.as_str()),
            _ => None,
        })
        == Some(OWNER_METADATA.1);
    by_metadata || info.payload_schema.contains_key(OWNER_FIELD)
}

/// The installations whose mark `info` carries.
fn instances(info: &CollectionInfo) -> Vec<String> {
    info.payload_schema
        .keys()
        .filter_map(|k| k.strip_prefix(INSTANCE_FIELD_PREFIX))
        .map(str::to_owned)
        .collect()
}

fn check_owned(collection: &str, info: &CollectionInfo) -> Result<(), StoreError> {
    if owned(info) {
        Ok(())
    } else {
        Err(StoreError::Foreign {
            collection: collection.to_owned(),
        })
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

/// ragd's ids as Qdrant's (UUIDs in their text form).
fn point_ids(ids: &[Uuid]) -> Vec<PointId> {
    ids.iter().map(|id| PointId::from(id.to_string())).collect()
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
/// Transient: the server is unreachable, restarting, overloaded or did not
/// answer in time — the write may or may not have happened, and retrying it is
/// safe. Everything else (bad request, wrong dimension) is permanent.
fn map_err(collection: &str, err: QdrantError) -> StoreError {
    if status_code(&err) == Some(grpc_code::NOT_FOUND) {
        return StoreError::NoSuchCollection(collection.to_owned());
    }
    // tonic's own refusal of a message over the cap, before reading it
    // ("decoded message length too large: found N bytes, the limit is: M
    // bytes"); the server does not use this code for ragd's requests.
    if let QdrantError::ResponseError { status } = &err
        && status.code() as i32 == grpc_code::OUT_OF_RANGE
        && status.message().contains("message length too large")
    {
        let hint = if status.message().contains("decoded") {
            "the server's answer is far larger than any page ragd asks for, so it is not an \
             answer to ragd's request: check that the url is a Qdrant server's"
                .to_owned()
        } else {
            format!(
                "ragd's own request of at most {UPSERT_BATCH} points: a smaller \
                 chunking.max_size makes it smaller"
            )
        };
        return StoreError::MessageTooLarge {
            collection: collection.to_owned(),
            detail: format!("{} ({hint})", status.message()),
        };
    }
    let mut message = format!("collection {collection:?}: {err}");
    // Permanent: the next attempt meets the same certificate.
    if let Some(hint) = crate::http::untrusted_certificate_hint(&message) {
        message.push_str(" (");
        message.push_str(hint);
        message.push(')');
        return StoreError::Backend(message);
    }
    if let QdrantError::ResourceExhaustedError {
        retry_after_seconds,
        ..
    } = &err
    {
        return StoreError::Throttled {
            message,
            retry_after: Duration::from_secs(*retry_after_seconds),
        };
    }
    let transient = match &err {
        QdrantError::Io(_) => true,
        QdrantError::ResponseError { status } => {
            transient_status(status.code() as i32, status.message())
        }
        _ => false,
    };
    if transient {
        StoreError::Transient(message)
    } else {
        StoreError::Backend(message)
    }
}

/// Classified by code and message: qdrant-client reports a connection it could
/// not make as `Internal` ("Failed to connect to …"), the code the server also
/// uses for its own failures, which are not all transient.
fn transient_status(code: i32, message: &str) -> bool {
    let text = message.to_ascii_lowercase();
    let transport = [
        "failed to connect",
        "transport error",
        "connection",
        "broken pipe",
        "timeout expired",
        "timed out",
    ]
    .iter()
    .any(|needle| text.contains(needle));
    match code {
        // Cancelled is what tonic reports when the client-side timeout fires.
        grpc_code::UNAVAILABLE
        | grpc_code::DEADLINE_EXCEEDED
        | grpc_code::RESOURCE_EXHAUSTED
        | grpc_code::CANCELLED => true,
        // Transport failures: qdrant-client's own (Internal), and what tonic
        // could not classify (Unknown).
        grpc_code::INTERNAL | grpc_code::UNKNOWN => transport,
        _ => false,
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
                language: None,
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

    #[test]
    fn connect_failures_are_transient_by_code_and_message() {
        let internal = |m: &str| QdrantError::ResponseError {
            status: tonic::Status::internal(m.to_owned()),
        };
        // What qdrant-client reports when the server is down or restarting.
        let down = map_err(
            "c",
            internal(
                "Failed to connect to http://127.0.0.1:6334/: tonic::transport::Error(Transport, ConnectError(...))",
            ),
        );
        assert!(down.is_transient(), "{down:?}");
        // The server's own internal errors stay permanent.
        let bug = map_err("c", internal("Service internal error: wrong input"));
        assert!(!bug.is_transient(), "{bug:?}");
        for status in [
            tonic::Status::unavailable("x"),
            tonic::Status::cancelled("Timeout expired"),
            tonic::Status::deadline_exceeded("x"),
            tonic::Status::unknown("transport error"),
        ] {
            let e = map_err("c", QdrantError::ResponseError { status });
            assert!(e.is_transient(), "{e:?}");
        }
        let e = map_err(
            "c",
            QdrantError::ResourceExhaustedError {
                status: tonic::Status::resource_exhausted("slow down"),
                retry_after_seconds: 3,
            },
        );
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
        assert!(e.is_transient());
        let e = map_err(
            "c",
            QdrantError::ResponseError {
                status: tonic::Status::invalid_argument("bad"),
            },
        );
        assert!(!e.is_transient());
    }

    /// Nothing listens on the port: the real client's error must be transient.
    #[tokio::test]
    async fn a_server_that_is_down_is_transient() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let store = QdrantStore::connect(
            &format!("http://127.0.0.1:{port}"),
            None,
            &ServerOptions::default(),
        )
        .unwrap();
        let err = store.count("c", &PointFilter::default()).await.unwrap_err();
        assert!(err.is_transient(), "{err:?}");
        let err = store
            .upsert(
                "c",
                vec![StoredPoint {
                    id: Uuid::new_v4(),
                    vector: vec![1.0],
                    payload: PointPayload {
                        pipeline: "p".into(),
                        path: "a".into(),
                        chunk_index: 0,
                        text: "t".into(),
                        page: None,
                        headings: vec![],
                        content_hash: "c".into(),
                        file_hash: "f".into(),
                        modified: 0,
                        model: "m".into(),
                        ocr: false,
                        language: None,
                    },
                }],
            )
            .await
            .unwrap_err();
        assert!(err.is_transient(), "{err:?}");
    }
}
