//! Retries of transient store failures, as a decorator over any backend.
//!
//! Safe because the [`VectorStore`] contract makes every write idempotent: an
//! upsert lands on the same point ids, a delete by filter deletes what is left.
//! A timeout whose write did apply ("outcome unknown") is therefore simply
//! repeated. Permanent errors (dimension mismatch, bad names) pass straight through.

use std::time::Duration;

use async_trait::async_trait;

use super::{PointFilter, PointKey, SearchHit, StoreError, StoredPoint, VectorStore, WriteOp};
use uuid::Uuid;

/// A store whose transient failures are retried with exponential backoff and
/// jitter, for as long as a time budget allows.
///
/// A budget rather than a count: a Qdrant server that restarts is away for a few
/// seconds to a minute (it loads its collections before it answers), and the
/// retries must outlast that however quickly each attempt fails.
pub struct Retrying<S> {
    inner: S,
    budget: Duration,
    base: Duration,
    cap: Duration,
}

impl<S: VectorStore> Retrying<S> {
    /// Transient failures of one operation are retried until `budget` has
    /// passed since its first attempt, backoff from `base` doubling up to 10 s.
    pub fn new(inner: S, budget: Duration, base: Duration) -> Self {
        Retrying {
            inner,
            budget,
            base,
            cap: Duration::from_secs(10),
        }
    }

    /// The wait before attempt `attempt + 1`: the backoff, or the server's
    /// `retry-after` when it asked for longer.
    fn delay(&self, attempt: u32, error: &StoreError) -> Duration {
        // Jittered: retries of several writers do not march in step.
        crate::backoff::Backoff::new(self.base, self.cap).delay(attempt, error.retry_after())
    }

    async fn run<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        // tokio's clock, so tests with paused time see the budget too.
        let started = tokio::time::Instant::now();
        let mut attempt = 1;
        loop {
            match op().await {
                Err(e) if e.is_transient() => {
                    let delay = self.delay(attempt, &e);
                    if started.elapsed() + delay > self.budget {
                        tracing::warn!(operation = what, attempt, error = %e,
                            budget_secs = self.budget.as_secs(), "vector store failed; giving up");
                        return Err(e);
                    }
                    tracing::warn!(operation = what, attempt, error = %e,
                        delay_ms = delay.as_millis() as u64, "vector store failed; retrying");
                    tokio::time::sleep(delay).await;
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
    async fn existing_ids(&self, c: &str, ids: &[Uuid]) -> Result<Vec<Uuid>, StoreError> {
        self.run("existing_ids", || self.inner.existing_ids(c, ids))
            .await
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

    async fn add_citations(&self, c: &str) -> Result<u64, StoreError> {
        self.run("add_citations", || self.inner.add_citations(c))
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
    async fn existing_ids(&self, c: &str, ids: &[Uuid]) -> Result<Vec<Uuid>, StoreError> {
        (**self).existing_ids(c, ids).await
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

    async fn add_citations(&self, c: &str) -> Result<u64, StoreError> {
        (**self).add_citations(c).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::store::edge::EdgeStore;

    /// An embedded store whose `count` fails with the queued errors first.
    struct Flaky {
        inner: EdgeStore,
        errors: Mutex<Vec<StoreError>>,
        calls: Mutex<Vec<tokio::time::Instant>>,
    }

    impl Flaky {
        fn new(dir: &std::path::Path, errors: Vec<StoreError>) -> Self {
            Flaky {
                inner: EdgeStore::open(dir).unwrap(),
                errors: Mutex::new(errors),
                calls: Mutex::new(Vec::new()),
            }
        }
    }

    #[async_trait]
    impl VectorStore for Flaky {
        fn backend(&self) -> &'static str {
            "flaky"
        }
        async fn ensure_collection(&self, c: &str, dim: usize) -> Result<(), StoreError> {
            self.inner.ensure_collection(c, dim).await
        }
        async fn collection_dim(&self, c: &str) -> Result<Option<usize>, StoreError> {
            self.inner.collection_dim(c).await
        }
        async fn upsert(&self, c: &str, p: Vec<StoredPoint>) -> Result<(), StoreError> {
            self.inner.upsert(c, p).await
        }
        async fn delete(&self, c: &str, f: &PointFilter) -> Result<(), StoreError> {
            self.inner.delete(c, f).await
        }
        async fn delete_points(&self, c: &str, ids: Vec<Uuid>) -> Result<(), StoreError> {
            self.inner.delete_points(c, ids).await
        }
        async fn retrieve(
            &self,
            c: &str,
            ids: &[Uuid],
            v: bool,
        ) -> Result<Vec<StoredPoint>, StoreError> {
            self.inner.retrieve(c, ids, v).await
        }
        async fn count(&self, c: &str, f: &PointFilter) -> Result<u64, StoreError> {
            self.calls.lock().unwrap().push(tokio::time::Instant::now());
            let queued = self.errors.lock().unwrap().pop();
            match queued {
                Some(e) => Err(e),
                None => self.inner.count(c, f).await,
            }
        }
        async fn scroll(
            &self,
            c: &str,
            f: &PointFilter,
            v: bool,
        ) -> Result<Vec<StoredPoint>, StoreError> {
            self.inner.scroll(c, f, v).await
        }
        async fn scroll_keys(&self, c: &str, f: &PointFilter) -> Result<Vec<PointKey>, StoreError> {
            self.inner.scroll_keys(c, f).await
        }
        async fn search(
            &self,
            c: &str,
            v: Vec<f32>,
            k: usize,
            f: Option<&PointFilter>,
        ) -> Result<Vec<SearchHit>, StoreError> {
            self.inner.search(c, v, k, f).await
        }
        async fn list_collections(&self) -> Result<Vec<String>, StoreError> {
            self.inner.list_collections().await
        }
        async fn delete_collection(&self, c: &str) -> Result<bool, StoreError> {
            self.inner.delete_collection(c).await
        }
        async fn set_alias(&self, a: &str, c: &str) -> Result<(), StoreError> {
            self.inner.set_alias(a, c).await
        }
        async fn resolve_alias(&self, a: &str) -> Result<Option<String>, StoreError> {
            self.inner.resolve_alias(a).await
        }

        async fn add_citations(&self, c: &str) -> Result<u64, StoreError> {
            self.inner.add_citations(c).await
        }
    }

    fn throttled(secs: u64) -> StoreError {
        StoreError::Throttled {
            message: "rate limit".into(),
            retry_after: Duration::from_secs(secs),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_waited_for_and_the_budget_bounds_the_retries() {
        let dir = tempfile::tempdir().unwrap();
        let store = Retrying::new(
            Flaky::new(dir.path(), vec![throttled(7)]),
            Duration::from_secs(60),
            Duration::from_millis(10),
        );
        store.inner.ensure_collection("c", 2).await.unwrap();
        assert_eq!(store.count("c", &PointFilter::default()).await.unwrap(), 0);
        let calls = store.inner.calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 2);
        assert!(
            calls[1] - calls[0] >= Duration::from_secs(7),
            "{:?}",
            calls[1] - calls[0]
        );

        // Transient failures past the budget: given up on, with the last error.
        let store = Retrying::new(
            Flaky::new(
                dir.path().join("b").as_path(),
                (0..100).map(|_| throttled(4)).collect(),
            ),
            Duration::from_secs(30),
            Duration::from_millis(10),
        );
        store.inner.ensure_collection("c", 2).await.unwrap();
        let err = store.count("c", &PointFilter::default()).await.unwrap_err();
        assert!(err.is_transient(), "{err:?}");
        let calls = store.inner.calls.lock().unwrap().clone();
        assert!((7..=9).contains(&calls.len()), "{} calls", calls.len());
        assert!(calls[calls.len() - 1] - calls[0] <= Duration::from_secs(30));

        // A permanent error is not retried.
        let store = Retrying::new(
            Flaky::new(
                dir.path().join("c").as_path(),
                vec![StoreError::Backend("bad request".into())],
            ),
            Duration::from_secs(60),
            Duration::from_millis(10),
        );
        store.inner.ensure_collection("c", 2).await.unwrap();
        assert!(store.count("c", &PointFilter::default()).await.is_err());
        assert_eq!(store.inner.calls.lock().unwrap().len(), 1);
    }
}
