//! Retries of transient store failures, as a decorator over any backend.
//!
//! Safe because the [`VectorStore`] contract makes every write idempotent: an
//! upsert lands on the same point ids, a delete by filter deletes what is left.
//! A timeout whose write did apply ("outcome unknown") is therefore simply
//! repeated. Permanent errors (dimension mismatch, bad names) pass straight through.

use std::time::Duration;

use async_trait::async_trait;
use rand::Rng;

use super::{PointFilter, PointKey, SearchHit, StoreError, StoredPoint, VectorStore, WriteOp};
use uuid::Uuid;

/// A store whose transient failures are retried with exponential backoff and jitter.
pub struct Retrying<S> {
    inner: S,
    attempts: u32,
    base: Duration,
    cap: Duration,
}

impl<S: VectorStore> Retrying<S> {
    /// `attempts` tries in all (the first included), backoff from `base` doubling
    /// up to 10 s.
    pub fn new(inner: S, attempts: u32, base: Duration) -> Self {
        Retrying {
            inner,
            attempts: attempts.max(1),
            base,
            cap: Duration::from_secs(10),
        }
    }

    fn delay(&self, attempt: u32) -> Duration {
        let exp = self.base.saturating_mul(1 << attempt.min(16)).min(self.cap);
        // Full jitter: retries of several writers do not march in step.
        exp.mul_f64(rand::rng().random_range(0.5..=1.0))
    }

    async fn run<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let mut attempt = 1;
        loop {
            match op().await {
                Err(e) if e.is_transient() && attempt < self.attempts => {
                    tracing::warn!(operation = what, attempt, error = %e, "vector store failed; retrying");
                    tokio::time::sleep(self.delay(attempt)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

#[async_trait]
impl<S: VectorStore> VectorStore for Retrying<S> {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    async fn ensure_collection(&self, c: &str, dim: usize) -> Result<(), StoreError> {
        self.run("ensure_collection", || self.inner.ensure_collection(c, dim))
            .await
    }
    async fn collection_dim(&self, c: &str) -> Result<Option<usize>, StoreError> {
        self.run("collection_dim", || self.inner.collection_dim(c))
            .await
    }
    async fn upsert(&self, c: &str, points: Vec<StoredPoint>) -> Result<(), StoreError> {
        self.run("upsert", || self.inner.upsert(c, points.clone()))
            .await
    }
    async fn delete(&self, c: &str, f: &PointFilter) -> Result<(), StoreError> {
        self.run("delete", || self.inner.delete(c, f)).await
    }
    async fn delete_points(&self, c: &str, ids: Vec<Uuid>) -> Result<(), StoreError> {
        self.run("delete_points", || self.inner.delete_points(c, ids.clone()))
            .await
    }
    async fn retrieve(
        &self,
        c: &str,
        ids: &[Uuid],
        v: bool,
    ) -> Result<Vec<StoredPoint>, StoreError> {
        self.run("retrieve", || self.inner.retrieve(c, ids, v))
            .await
    }
    async fn write(&self, c: &str, ops: Vec<WriteOp>) -> Result<(), StoreError> {
        // Every op is idempotent, so a group that failed part-way is redone whole.
        self.run("write", || self.inner.write(c, ops.clone())).await
    }
    async fn sync(&self, c: &str) -> Result<(), StoreError> {
        self.run("sync", || self.inner.sync(c)).await
    }
    async fn count(&self, c: &str, f: &PointFilter) -> Result<u64, StoreError> {
        self.run("count", || self.inner.count(c, f)).await
    }
    async fn scroll(
        &self,
        c: &str,
        f: &PointFilter,
        v: bool,
    ) -> Result<Vec<StoredPoint>, StoreError> {
        self.run("scroll", || self.inner.scroll(c, f, v)).await
    }
    async fn scroll_keys(&self, c: &str, f: &PointFilter) -> Result<Vec<PointKey>, StoreError> {
        self.run("scroll_keys", || self.inner.scroll_keys(c, f))
            .await
    }
    async fn search(
        &self,
        c: &str,
        v: Vec<f32>,
        k: usize,
        f: Option<&PointFilter>,
    ) -> Result<Vec<SearchHit>, StoreError> {
        self.run("search", || self.inner.search(c, v.clone(), k, f))
            .await
    }
    async fn list_collections(&self) -> Result<Vec<String>, StoreError> {
        self.run("list_collections", || self.inner.list_collections())
            .await
    }
    async fn delete_collection(&self, c: &str) -> Result<bool, StoreError> {
        self.run("delete_collection", || self.inner.delete_collection(c))
            .await
    }
    async fn set_alias(&self, a: &str, c: &str) -> Result<(), StoreError> {
        self.run("set_alias", || self.inner.set_alias(a, c)).await
    }
    async fn resolve_alias(&self, a: &str) -> Result<Option<String>, StoreError> {
        self.run("resolve_alias", || self.inner.resolve_alias(a))
            .await
    }
}

/// So a shared store can be wrapped too.
#[async_trait]
impl VectorStore for std::sync::Arc<dyn VectorStore> {
    fn backend(&self) -> &'static str {
        (**self).backend()
    }
    async fn ensure_collection(&self, c: &str, dim: usize) -> Result<(), StoreError> {
        (**self).ensure_collection(c, dim).await
    }
    async fn collection_dim(&self, c: &str) -> Result<Option<usize>, StoreError> {
        (**self).collection_dim(c).await
    }
    async fn upsert(&self, c: &str, points: Vec<StoredPoint>) -> Result<(), StoreError> {
        (**self).upsert(c, points).await
    }
    async fn delete(&self, c: &str, f: &PointFilter) -> Result<(), StoreError> {
        (**self).delete(c, f).await
    }
    async fn delete_points(&self, c: &str, ids: Vec<Uuid>) -> Result<(), StoreError> {
        (**self).delete_points(c, ids).await
    }
    async fn retrieve(
        &self,
        c: &str,
        ids: &[Uuid],
        v: bool,
    ) -> Result<Vec<StoredPoint>, StoreError> {
        (**self).retrieve(c, ids, v).await
    }
    async fn write(&self, c: &str, ops: Vec<WriteOp>) -> Result<(), StoreError> {
        (**self).write(c, ops).await
    }
    async fn sync(&self, c: &str) -> Result<(), StoreError> {
        (**self).sync(c).await
    }
    async fn count(&self, c: &str, f: &PointFilter) -> Result<u64, StoreError> {
        (**self).count(c, f).await
    }
    async fn scroll(
        &self,
        c: &str,
        f: &PointFilter,
        v: bool,
    ) -> Result<Vec<StoredPoint>, StoreError> {
        (**self).scroll(c, f, v).await
    }
    async fn scroll_keys(&self, c: &str, f: &PointFilter) -> Result<Vec<PointKey>, StoreError> {
        (**self).scroll_keys(c, f).await
    }
    async fn search(
        &self,
        c: &str,
        v: Vec<f32>,
        k: usize,
        f: Option<&PointFilter>,
    ) -> Result<Vec<SearchHit>, StoreError> {
        (**self).search(c, v, k, f).await
    }
    async fn list_collections(&self) -> Result<Vec<String>, StoreError> {
        (**self).list_collections().await
    }
    async fn delete_collection(&self, c: &str) -> Result<bool, StoreError> {
        (**self).delete_collection(c).await
    }
    async fn set_alias(&self, a: &str, c: &str) -> Result<(), StoreError> {
        (**self).set_alias(a, c).await
    }
    async fn resolve_alias(&self, a: &str) -> Result<Option<String>, StoreError> {
        (**self).resolve_alias(a).await
    }
}
