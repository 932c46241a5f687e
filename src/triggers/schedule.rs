//! Cron schedules: one loop per scheduled pipeline that sleeps until the next
//! occurrence and then asks the pipeline's worker for a reconcile.
//!
//! The loop has the shape of mini-redis' expiry task: `select! { sleep_until(next),
//! cancelled() }`. Occurrences are computed from a [`Clock`] so tests can run a
//! day of schedule in paused tokio time; the sleep itself is tokio's.
//!
//! A late wake-up (the machine was suspended, the runtime starved) fires once,
//! not once per missed occurrence: a reconcile covers everything since the last.

use chrono::{DateTime, Utc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Wall-clock time, for computing cron occurrences.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A wall clock that starts at `start` and advances with tokio's clock — which,
/// when paused in a test, advances only as the test lets it.
pub struct TokioClock {
    start: DateTime<Utc>,
    anchor: Instant,
}

impl TokioClock {
    pub fn starting_at(start: DateTime<Utc>) -> Self {
        TokioClock {
            start,
            anchor: Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = chrono::Duration::from_std(Instant::now() - self.anchor).unwrap_or_default();
        self.start + elapsed
    }
}

/// Call `fire` with each occurrence of `schedule` as it comes, until `cancel`.
/// Returns when cancelled or when the schedule has no more occurrences.
pub async fn run_schedule(
    schedule: &cron::Schedule,
    clock: &dyn Clock,
    cancel: &CancellationToken,
    mut fire: impl FnMut(DateTime<Utc>),
) {
    loop {
        let now = clock.now();
        let Some(next) = schedule.after(&now).next() else {
            return;
        };
        let wait = (next - now).to_std().unwrap_or_default();
        tokio::select! {
            () = tokio::time::sleep_until(Instant::now() + wait) => {}
            () = cancel.cancelled() => return,
        }
        // A wall clock set back while we slept means `next` is still ahead: the
        // loop recomputes and waits again instead of firing early.
        if clock.now() >= next {
            fire(next);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;
    use std::time::Duration;

    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[tokio::test(start_paused = true)]
    async fn fires_at_each_occurrence_in_paused_time() {
        let schedule = cron::Schedule::from_str("0 */5 * * * *").unwrap();
        let clock = TokioClock::starting_at(at("2030-01-01T00:01:30Z"));
        let cancel = CancellationToken::new();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let task = {
            let cancel = cancel.clone();
            tokio::spawn(async move {
                run_schedule(&schedule, &clock, &cancel, |t| {
                    tx.send((t, Instant::now())).unwrap();
                })
                .await;
            })
        };
        let start = Instant::now();
        // 16 simulated minutes: occurrences at :05, :10, :15.
        tokio::time::sleep(Duration::from_secs(16 * 60)).await;
        cancel.cancel();
        task.await.unwrap();
        let mut fired = Vec::new();
        while let Ok(f) = rx.try_recv() {
            fired.push(f);
        }
        let times: Vec<_> = fired.iter().map(|(t, _)| *t).collect();
        assert_eq!(
            times,
            vec![
                at("2030-01-01T00:05:00Z"),
                at("2030-01-01T00:10:00Z"),
                at("2030-01-01T00:15:00Z")
            ]
        );
        // And each fired when tokio's clock said so, not early.
        assert_eq!(fired[0].1 - start, Duration::from_secs(3 * 60 + 30));
        assert_eq!(fired[2].1 - start, Duration::from_secs(13 * 60 + 30));
    }

    #[tokio::test(start_paused = true)]
    async fn cancelling_stops_a_sleeping_schedule_at_once() {
        let schedule = cron::Schedule::from_str("0 0 3 * * *").unwrap(); // 03:00 daily
        let clock = TokioClock::starting_at(at("2030-01-01T04:00:00Z"));
        let cancel = CancellationToken::new();
        let task = {
            let cancel = cancel.clone();
            tokio::spawn(async move {
                let mut n = 0;
                run_schedule(&schedule, &clock, &cancel, |_| n += 1).await;
                n
            })
        };
        tokio::time::sleep(Duration::from_secs(60)).await;
        let before = Instant::now();
        cancel.cancel();
        assert_eq!(task.await.unwrap(), 0);
        assert_eq!(
            Instant::now(),
            before,
            "no time passes between cancel and return"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_schedule_with_no_future_occurrence_returns() {
        let schedule = cron::Schedule::from_str("0 0 0 1 1 * 2020").unwrap();
        let clock = TokioClock::starting_at(at("2030-01-01T00:00:00Z"));
        run_schedule(&schedule, &clock, &CancellationToken::new(), |_| {
            panic!("fired")
        })
        .await;
    }
}
