//! Retries of transient store failures, as a [`Layer`] over any backend.
//!
//! Safe because the [`VectorStore`] contract makes every write idempotent: an
//! upsert lands on the same point ids, a delete by filter deletes what is left.
//! A timeout whose write did apply ("outcome unknown") is therefore simply
//! repeated. Permanent errors (dimension mismatch, bad names) pass straight through.
//!
//! [`VectorStore`]: super::VectorStore

use std::time::Duration;

use super::StoreError;
use super::layer::{Attempt, Call, Layer, Layered};

/// A store whose transient failures are retried (see [`Retry`]).
pub type Retrying = Layered<Retry>;

/// Transient failures retried with exponential backoff and jitter, for as long
/// as a time budget allows.
///
/// A budget rather than a count: a Qdrant server that restarts is away for a few
/// seconds to a minute (it loads its collections before it answers), and the
/// retries must outlast that however quickly each attempt fails.
pub struct Retry {
    budget: Duration,
    base: Duration,
    cap: Duration,
}

impl Retry {
    /// Transient failures of one operation are retried until `budget` has
    /// passed since its first attempt, backoff from `base` doubling up to 10 s.
    pub fn new(budget: Duration, base: Duration) -> Self {
        Retry {
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
}

impl Layer for Retry {
    async fn around<'a, T: Send + 'a>(
        &'a self,
        call: Call<'a>,
        attempt: impl Fn() -> Attempt<'a, T> + Send + Sync + 'a,
    ) -> Result<T, StoreError> {
        // A group of writes that failed part-way is redone whole: every op in
        // it is idempotent.
        let what = call.name;
        // tokio's clock, so tests with paused time see the budget too.
        let started = tokio::time::Instant::now();
        let mut tries = 1;
        loop {
            match attempt().await {
                Err(e) if e.is_transient() => {
                    let delay = self.delay(tries, &e);
                    if started.elapsed() + delay > self.budget {
                        tracing::warn!(operation = what, attempt = tries, error = %e,
                            budget_secs = self.budget.as_secs(), "vector store failed; giving up");
                        return Err(e);
                    }
                    tracing::warn!(operation = what, attempt = tries, error = %e,
                        delay_ms = delay.as_millis() as u64, "vector store failed; retrying");
                    tokio::time::sleep(delay).await;
                    tries += 1;
                }
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::store::edge::EdgeStore;
    use crate::store::layer::CallKind;
    use crate::store::{PointFilter, VectorStore};

    /// `count` fails with the queued errors first; every `count` is timed.
    #[derive(Default)]
    struct Flaky {
        errors: Mutex<Vec<StoreError>>,
        calls: Mutex<Vec<tokio::time::Instant>>,
    }

    impl Layer for Flaky {
        async fn around<'a, T: Send + 'a>(
            &'a self,
            call: Call<'a>,
            attempt: impl Fn() -> Attempt<'a, T> + Send + Sync + 'a,
        ) -> Result<T, StoreError> {
            if call.name == "count" && matches!(call.kind, CallKind::Read) {
                self.calls.lock().unwrap().push(tokio::time::Instant::now());
                if let Some(e) = self.errors.lock().unwrap().pop() {
                    return Err(e);
                }
            }
            attempt().await
        }
    }

    /// Retries over a flaky embedded store in `dir`: the retrying store and
    /// the flaky one under it.
    fn retrying(
        dir: &std::path::Path,
        errors: Vec<StoreError>,
        budget: Duration,
    ) -> (Retrying, Arc<Layered<Flaky>>) {
        let flaky = Arc::new(Layered::new(
            Arc::new(EdgeStore::open(dir).unwrap()),
            Flaky {
                errors: Mutex::new(errors),
                ..Default::default()
            },
        ));
        let store = Layered::new(flaky.clone(), Retry::new(budget, Duration::from_millis(10)));
        (store, flaky)
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
        let (store, flaky) = retrying(dir.path(), vec![throttled(7)], Duration::from_secs(60));
        flaky.ensure_collection("c", 2).await.unwrap();
        assert_eq!(store.count("c", &PointFilter::default()).await.unwrap(), 0);
        let calls = flaky.layer().calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 2);
        assert!(
            calls[1] - calls[0] >= Duration::from_secs(7),
            "{:?}",
            calls[1] - calls[0]
        );

        // Transient failures past the budget: given up on, with the last error.
        let (store, flaky) = retrying(
            dir.path().join("b").as_path(),
            (0..100).map(|_| throttled(4)).collect(),
            Duration::from_secs(30),
        );
        flaky.ensure_collection("c", 2).await.unwrap();
        let err = store.count("c", &PointFilter::default()).await.unwrap_err();
        assert!(err.is_transient(), "{err:?}");
        let calls = flaky.layer().calls.lock().unwrap().clone();
        assert!((7..=9).contains(&calls.len()), "{} calls", calls.len());
        assert!(calls[calls.len() - 1] - calls[0] <= Duration::from_secs(30));

        // A permanent error is not retried.
        let (store, flaky) = retrying(
            dir.path().join("c").as_path(),
            vec![StoreError::Backend("bad request".into())],
            Duration::from_secs(60),
        );
        flaky.ensure_collection("c", 2).await.unwrap();
        assert!(store.count("c", &PointFilter::default()).await.is_err());
        assert_eq!(flaky.layer().calls.lock().unwrap().len(), 1);
    }
}
