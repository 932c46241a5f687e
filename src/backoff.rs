//! The one backoff every retry loop waits by: the Open WebUI client, the
//! Ollama-API embedder, the vector-store retry layer and the daemon's worker.
//!
//! Exponential, capped, and jittered: each wait is drawn from the upper half of
//! its ceiling, so callers that failed together (parallel uploads hitting one
//! locked database, writers of one restarting Qdrant) do not retry in step,
//! while the wait never falls below half of what the schedule promises. A
//! server's own hint (`Retry-After`, Qdrant's `retry_after_seconds`) is waited
//! for when it asks for longer, up to [`MAX_HINT`].

use std::time::Duration;

use rand::Rng;

/// A server's hint is honoured up to this long: a misconfigured proxy saying
/// "come back in a day" must not park a pipeline for a day.
pub const MAX_HINT: Duration = Duration::from_secs(60);

/// `base · 2^step`, capped at `cap`, jittered into its upper half.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Backoff {
    pub const fn new(base: Duration, cap: Duration) -> Self {
        Backoff { base, cap }
    }

    /// The longest wait of `step` (0 = the first): `base · 2^step`, capped.
    pub fn ceiling(&self, step: u32) -> Duration {
        self.base
            .saturating_mul(2u32.saturating_pow(step.min(30)))
            .min(self.cap)
    }

    /// The wait of `step`: in `[ceiling / 2, ceiling]`, and at least `hint`
    /// (capped at [`MAX_HINT`]) when the server gave one.
    pub fn delay(&self, step: u32, hint: Option<Duration>) -> Duration {
        let jittered = self
            .ceiling(step)
            .mul_f64(rand::rng().random_range(0.5..=1.0));
        match hint {
            Some(h) => jittered.max(h.min(MAX_HINT)),
            None => jittered,
        }
    }
}

/// `Retry-After` in seconds, as APIs send it (the HTTP-date form is rare for
/// them and ignored).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_are_capped_jittered_and_honour_hints() {
        let b = Backoff::new(Duration::from_millis(200), Duration::from_secs(2));
        for step in 0..40 {
            let ceiling = b.ceiling(step);
            let expected = Duration::from_millis(200)
                .saturating_mul(2u32.saturating_pow(step.min(30)))
                .min(Duration::from_secs(2));
            assert_eq!(ceiling, expected, "step {step}");
            let d = b.delay(step, None);
            assert!(d >= ceiling / 2 && d <= ceiling, "step {step}: {d:?}");
        }
        assert!(b.delay(0, Some(Duration::from_secs(7))) >= Duration::from_secs(7));
        assert!(b.delay(0, Some(Duration::from_secs(3600))) <= MAX_HINT);
        // A hint shorter than the backoff changes nothing.
        assert!(b.delay(5, Some(Duration::from_millis(1))) >= Duration::from_secs(1));
    }

    #[test]
    fn retry_after_is_read_in_seconds() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(reqwest::header::RETRY_AFTER, " 12 ".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(12)));
        h.insert(
            reqwest::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), None);
    }
}
