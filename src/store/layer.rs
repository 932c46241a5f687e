//! Wrappers around a store, with one forwarding impl for all of them.
//!
//! A wrapper (retries here; counting and fault injection in the tests) is a
//! [`Layer`]: it sees each call — its name, its collection, what it writes —
//! and runs it, once, several times or not at all. [`Layered`] is the one
//! [`VectorStore`] impl that forwards every method through a layer to the
//! store inside, so adding a method to the trait means adding it here once.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use uuid::Uuid;

use super::{PointFilter, PointKey, SearchHit, StoreError, StoredPoint, VectorStore, WriteOp};

/// One attempt of a call on the inner store.
pub type Attempt<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// What a call does, for a layer that treats writes apart from reads.
#[derive(Debug, Clone, Copy)]
pub enum CallKind<'a> {
    /// Reads points or collection facts; changes nothing.
    Read,
    /// Writes points: an upsert.
    Upsert,
    /// Deletes points, by filter or by id.
    Delete,
    /// A group of writes ([`VectorStore::write`]).
    Write(&'a [WriteOp]),
    /// Makes earlier writes durable.
    Sync,
    /// Creates or drops a collection, moves an alias, rewrites payloads.
    Collection,
}

/// One call as a layer sees it.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// The trait method's name, for logs.
    pub name: &'static str,
    pub kind: CallKind<'a>,
}

/// What a wrapper adds to every call of the store it wraps.
pub trait Layer: Send + Sync {
    /// Run `call`: each `attempt()` makes it on the inner store.
    fn around<'a, T: Send + 'a>(
        &'a self,
        call: Call<'a>,
        attempt: impl Fn() -> Attempt<'a, T> + Send + Sync + 'a,
    ) -> impl Future<Output = Result<T, StoreError>> + Send + 'a;

    /// The backend's name as the wrapped store reports it.
    fn backend(&self, inner: &'static str) -> &'static str {
        inner
    }
}

/// A store seen through a [`Layer`].
pub struct Layered<L> {
    inner: Arc<dyn VectorStore>,
    layer: L,
}

impl<L: Layer> Layered<L> {
    pub fn new(inner: Arc<dyn VectorStore>, layer: L) -> Self {
        Layered { inner, layer }
    }

    /// The layer, for what it counted or recorded.
    pub fn layer(&self) -> &L {
        &self.layer
    }
}

const fn call<'a>(name: &'static str, kind: CallKind<'a>) -> Call<'a> {
    Call { name, kind }
}

#[async_trait]
impl<L: Layer> VectorStore for Layered<L> {
    fn backend(&self) -> &'static str {
        self.layer.backend(self.inner.backend())
    }
    async fn ensure_collection(&self, c: &str, dim: usize) -> Result<(), StoreError> {
        let i = &self.inner;
        self.layer
            .around(call("ensure_collection", CallKind::Collection), || {
                i.ensure_collection(c, dim)
            })
            .await
    }
    async fn collection_dim(&self, c: &str) -> Result<Option<usize>, StoreError> {
        let i = &self.inner;
        self.layer
            .around(call("collection_dim", CallKind::Read), || {
                i.collection_dim(c)
            })
            .await
    }
    async fn upsert(&self, c: &str, points: Vec<StoredPoint>) -> Result<(), StoreError> {
        let i = &self.inner;
        self.layer
            .around(call("upsert", CallKind::Upsert), || {
                i.upsert(c, points.clone())
            })
            .await
    }
    async fn delete(&self, c: &str, f: &PointFilter) -> Result<(), StoreError> {
        let i = &self.inner;
        self.layer
            .around(call("delete", CallKind::Delete), || i.delete(c, f))
            .await
    }
    async fn delete_points(&self, c: &str, ids: Vec<Uuid>) -> Result<(), StoreError> {
        let i = &self.inner;
        self.layer
            .around(call("delete_points", CallKind::Delete), || {
                i.delete_points(c, ids.clone())
            })
            .await
    }
    async fn retrieve(
        &self,
        c: &str,
        ids: &[Uuid],
        v: bool,
    ) -> Result<Vec<StoredPoint>, StoreError> {
        let i = &self.inner;
        self.layer
            .around(call("retrieve", CallKind::Read), || i.retrieve(c, ids, v))
            .await
    }
    async fn write(&self, c: &str, ops: Vec<WriteOp>) -> Result<(), StoreError> {
        let i = &self.inner;
        let kind = CallKind::Write(&ops);
        self.layer
            .around(call("write", kind), || i.write(c, ops.clone()))
            .await
    }
    async fn sync(&self, c: &str) -> Result<(), StoreError> {
        let i = &self.inner;
        self.layer
            .around(call("sync", CallKind::Sync), || i.sync(c))
            .await
    }
    async fn existing_ids(&self, c: &str, ids: &[Uuid]) -> Result<Vec<Uuid>, StoreError> {
        let i = &self.inner;
        self.layer
            .around(call("existing_ids", CallKind::Read), || {
                i.existing_ids(c, ids)
            })
            .await
    }
    async fn count(&self, c: &str, f: &PointFilter) -> Result<u64, StoreError> {
        let i = &self.inner;
        self.layer
            .around(call("count", CallKind::Read), || i.count(c, f))
            .await
    }
    async fn scroll(
        &self,
        c: &str,
        f: &PointFilter,
        v: bool,
    ) -> Result<Vec<StoredPoint>, StoreError> {
        let i = &self.inner;
        self.layer
            .around(call("scroll", CallKind::Read), || i.scroll(c, f, v))
            .await
    }
    async fn scroll_keys(&self, c: &str, f: &PointFilter) -> Result<Vec<PointKey>, StoreError> {
        let i = &self.inner;
        self.layer
            .around(call("scroll_keys", CallKind::Read), || i.scroll_keys(c, f))
            .await
    }
    async fn search(
        &self,
        c: &str,
        v: Vec<f32>,
        k: usize,
        f: Option<&PointFilter>,
    ) -> Result<Vec<SearchHit>, StoreError> {
        let i = &self.inner;
        self.layer
            .around(call("search", CallKind::Read), || {
                i.search(c, v.clone(), k, f)
            })
            .await
    }
    async fn list_collections(&self) -> Result<Vec<String>, StoreError> {
        let i = &self.inner;
        self.layer
            .around(call("list_collections", CallKind::Read), || {
                i.list_collections()
            })
            .await
    }
    async fn delete_collection(&self, c: &str) -> Result<bool, StoreError> {
        let i = &self.inner;
        self.layer
            .around(call("delete_collection", CallKind::Collection), || {
                i.delete_collection(c)
            })
            .await
    }
    async fn set_alias(&self, a: &str, c: &str) -> Result<(), StoreError> {
        let i = &self.inner;
        self.layer
            .around(call("set_alias", CallKind::Collection), || {
                i.set_alias(a, c)
            })
            .await
    }
    async fn resolve_alias(&self, a: &str) -> Result<Option<String>, StoreError> {
        let i = &self.inner;
        self.layer
            .around(call("resolve_alias", CallKind::Read), || i.resolve_alias(a))
            .await
    }
    async fn add_citations(&self, c: &str) -> Result<u64, StoreError> {
        let i = &self.inner;
        self.layer
            .around(call("add_citations", CallKind::Collection), || {
                i.add_citations(c)
            })
            .await
    }
}
