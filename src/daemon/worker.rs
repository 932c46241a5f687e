//! One pipeline's tasks: the worker that runs reconciles, the watcher that feeds
//! it settled paths, and the cron loop.
//!
//! Each pipeline has its own [`TriggerQueue`] and its own worker, so a slow
//! pipeline (a huge PDF, a stalled share) never holds up another. The queue
//! coalesces: whatever arrives while a reconcile runs becomes *one* more
//! reconcile afterwards, because a reconcile looks at everything anyway.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::reindex;
use crate::config::PipelineConfig;
use crate::pipeline::{Pipeline, PipelineError, RunRequest};
use crate::publish::{NewerWork, Verify};
use crate::store::StoreError;
use crate::triggers::schedule::{self, SystemClock};
use crate::triggers::watch::{self, Debouncer, SourceWatcher, WatchEvent};

/// Longest wait between retries of a failing pipeline (embedder down, store full).
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How long to wait before re-arming a watcher that could not start.
const REWATCH_AFTER: Duration = Duration::from_secs(30);

/// Why a worker should look at its folders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The daemon started: catch up on what changed while it was down.
    Startup,
    /// Watched paths settled.
    Settled(usize),
    /// The watcher may have lost events.
    Rescan,
    /// The cron schedule fired.
    Schedule,
    /// Rebuild into a new collection (`ragd reindex`).
    Reindex,
}

/// Triggers waiting for the worker, merged.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pending {
    pub reconcile: bool,
    pub reindex: bool,
    /// Some trigger other than settled files: the knowledge base is listed
    /// in full afterwards whatever the verify interval says.
    pub verify: bool,
    pub settled_paths: usize,
    pub reasons: Vec<&'static str>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        !self.reconcile && !self.reindex
    }
}

/// A pipeline's queue. Pushing never blocks and never grows without bound: it
/// only sets flags and counts.
#[derive(Debug, Default)]
pub struct TriggerQueue {
    pending: Mutex<Pending>,
    notify: Notify,
}

impl TriggerQueue {
    pub fn push(&self, trigger: Trigger) {
        {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            let reason = match trigger {
                Trigger::Startup => "startup",
                Trigger::Settled(n) => {
                    p.settled_paths += n;
                    "files changed"
                }
                Trigger::Rescan => "watcher rescan",
                Trigger::Schedule => "schedule",
                Trigger::Reindex => {
                    p.reindex = true;
                    "reindex requested"
                }
            };
            p.reconcile = true;
            p.verify |= !matches!(trigger, Trigger::Settled(_));
            if !p.reasons.contains(&reason) {
                p.reasons.push(reason);
            }
        }
        self.notify.notify_one();
    }

    /// Whether a trigger waits, without taking it.
    pub fn has_pending(&self) -> bool {
        !self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// Wait for triggers and take them all.
    pub async fn take(&self) -> Pending {
        loop {
            {
                let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                if !p.is_empty() {
                    return std::mem::take(&mut p);
                }
            }
            // A push between the check and here leaves a permit: no lost wake-up.
            self.notify.notified().await;
        }
    }
}

/// Paths the watcher still sees changing; reconciles leave them alone.
pub type Unsettled = Arc<Mutex<HashSet<PathBuf>>>;

/// Settings shared by every worker.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub state_dir: PathBuf,
    /// Overrides every pipeline's `settle_ms` (tests, benchmarks).
    pub settle_override: Option<Duration>,
    pub event_queue: usize,
}

/// Everything one pipeline's tasks share.
pub struct PipelineTasks {
    pub pipeline: Pipeline,
    pub queue: Arc<TriggerQueue>,
    pub unsettled: Unsettled,
    pub settle: Duration,
    pub settings: WorkerSettings,
    /// Other pipelines write to the same collection: no alias rebuilds.
    pub shared_collection: bool,
}

impl PipelineTasks {
    pub fn new(pipeline: Pipeline, settings: WorkerSettings, shared_collection: bool) -> Self {
        let settle = settings.settle_override.unwrap_or(pipeline.config.settle);
        PipelineTasks {
            pipeline,
            queue: Arc::new(TriggerQueue::default()),
            unsettled: Arc::default(),
            settle,
            settings,
            shared_collection,
        }
    }

    /// The worker loop: take triggers, reconcile, retry failures with backoff.
    /// Returns once `cancel` fires and the reconcile in flight (if any) stopped
    /// at a batch boundary.
    pub async fn run_worker(self: Arc<Self>, cancel: CancellationToken) {
        let name = self.pipeline.name().to_owned();
        let mut retry_at: Option<Instant> = None;
        // Failed reconciles in a row, for the one backoff schedule.
        let backoff = crate::backoff::Backoff::new(Duration::from_secs(1), MAX_BACKOFF);
        let mut failures: u32 = 0;
        let mut first = true;
        loop {
            let pending = tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                p = self.queue.take() => p,
                () = sleep_until_opt(retry_at), if retry_at.is_some() => Pending {
                    reconcile: true,
                    reasons: vec!["retry"],
                    ..Default::default()
                },
            };
            if cancel.is_cancelled() {
                break;
            }
            retry_at = None;
            tracing::debug!(pipeline = %name, reasons = ?pending.reasons, paths = pending.settled_paths,
                "reconciling");
            if first && !self.shared_collection {
                first = false;
                if let Err(e) = self.pipeline.ensure_layout().await {
                    tracing::warn!(pipeline = %name, error = %e, "could not set up a versioned collection");
                }
            }
            match self.handle(&pending, &cancel).await {
                Ok(deferred) => {
                    failures = 0;
                    if deferred > 0 {
                        // Still being written: look again once they could have settled.
                        retry_at = Some(Instant::now() + self.settle);
                    }
                }
                Err(e) if cancel.is_cancelled() => {
                    tracing::info!(pipeline = %name, error = %e, "stopped");
                }
                Err(e) => {
                    let wait = backoff.delay(failures, None);
                    failures = failures.saturating_add(1);
                    tracing::error!(pipeline = %name, error = %e, retry_in = ?wait, "reconcile failed");
                    retry_at = Some(Instant::now() + wait);
                    if pending.reindex {
                        self.queue.push(Trigger::Reindex);
                    }
                }
            }
        }
    }

    /// One coalesced batch of triggers. Returns the number of deferred files.
    async fn handle(
        &self,
        pending: &Pending,
        cancel: &CancellationToken,
    ) -> Result<usize, WorkerError> {
        let p = &self.pipeline;
        let auto = reindex::needed(p, &self.settings.state_dir)?;
        if pending.reindex || auto.is_some() {
            self.full_rebuild(auto.unwrap_or("requested"), cancel)
                .await?;
        }
        let request = RunRequest {
            hold: self
                .unsettled
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            min_age: self.settle,
            cancel: cancel.clone(),
            // Settled files alone: the ledger says what to publish; the full
            // listing of the knowledge base waits for its interval.
            verify_knowledge: if pending.verify {
                Verify::Always
            } else {
                Verify::WhenDue
            },
            // A long publish gives way to changes that arrive meanwhile: they
            // are indexed by the next reconcile, whose publish goes on.
            newer_work: {
                let queue = self.queue.clone();
                NewerWork(Some(Arc::new(move || queue.has_pending())))
            },
            ..RunRequest::reconcile()
        };
        let s = match p.run(&request).await {
            Err(PipelineError::Store {
                source: StoreError::DimensionMismatch { .. },
                ..
            }) if !self.shared_collection => {
                self.full_rebuild("the vector dimension changed", cancel)
                    .await?;
                p.run(&request).await?
            }
            other => other?,
        };
        let changed = s.added + s.updated + s.deleted + s.touched + s.failed + s.moved;
        if changed > 0 || s.deferred > 0 {
            tracing::info!(pipeline = %p.name(), added = s.added, updated = s.updated, deleted = s.deleted,
                moved = s.moved, metadata_only = s.touched, failed = s.failed,
                deferred = s.deferred, elapsed_ms = s.elapsed.as_millis() as u64, "reconciled");
        }
        // Publishing that paused for newer work resumes with the next reconcile
        // (that work's trigger is already queued; this covers a shutdown race).
        let postponed = s.knowledge.as_ref().map_or(0, |k| k.postponed);
        Ok(s.deferred + postponed)
    }

    async fn full_rebuild(&self, why: &str, cancel: &CancellationToken) -> Result<(), WorkerError> {
        let p = &self.pipeline;
        if self.shared_collection {
            // See reindex's module doc: re-embed in place instead.
            tracing::warn!(pipeline = %p.name(), reason = why,
                "collection shared with another pipeline: re-embedding in place");
            p.run(&RunRequest {
                force: true,
                min_age: self.settle,
                cancel: cancel.clone(),
                ..RunRequest::reconcile()
            })
            .await?;
            return Ok(());
        }
        tracing::info!(pipeline = %p.name(), reason = why, "full reindex");
        // Unattended: a rebuild that lacks most of the live files is held
        // back; only an operator's `ragd reindex --allow-mass-delete` switches it.
        reindex::reindex(p, &self.settings.state_dir, self.settle, false, cancel).await?;
        Ok(())
    }

    /// Watch the sources; push settled paths and rescans. Pushes `Startup` once the
    /// watcher is armed (or could not be), so no change falls between the startup
    /// scan and the first event.
    pub async fn run_watcher(self: Arc<Self>, cancel: CancellationToken) {
        let config = self.pipeline.config.clone();
        let mut started = false;
        loop {
            let roots = config.sources.clone();
            let mode = config.watch;
            let capacity = self.settings.event_queue;
            let watcher =
                tokio::task::spawn_blocking(move || SourceWatcher::start(&roots, mode, capacity))
                    .await;
            let watcher = match watcher {
                Ok(Ok(w)) => Some(w),
                Ok(Err(e)) => {
                    tracing::warn!(pipeline = %config.name, error = %e, retry_in = ?REWATCH_AFTER,
                        "not watching; scheduled and startup reconciles still run");
                    None
                }
                Err(e) => {
                    tracing::error!(pipeline = %config.name, error = %e, "watcher start panicked");
                    None
                }
            };
            self.queue.push(if started {
                Trigger::Rescan
            } else {
                Trigger::Startup
            });
            started = true;
            match watcher {
                Some(w) => {
                    self.debounce(w, &config, &cancel).await;
                    return;
                }
                None => {
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(REWATCH_AFTER) => {}
                    }
                }
            }
        }
    }

    async fn debounce(
        &self,
        mut watcher: SourceWatcher,
        config: &PipelineConfig,
        cancel: &CancellationToken,
    ) {
        let mut debouncer = Debouncer::new(self.settle, Box::new(watch::stat));
        loop {
            let next = debouncer.next_check();
            tokio::select! {
                () = cancel.cancelled() => return,
                event = watcher.events.next() => match event {
                    Some(WatchEvent::Changed(path)) => {
                        if watch::relevant(config, &path) {
                            self.unsettled.lock().unwrap_or_else(|e| e.into_inner()).insert(path.clone());
                            debouncer.event(path, Instant::now());
                        }
                    }
                    Some(WatchEvent::Rescan) => {
                        tracing::info!(pipeline = %config.name, "watcher may have lost events: rescanning");
                        self.queue.push(Trigger::Rescan);
                    }
                    None => return,
                },
                () = sleep_until_opt(next), if next.is_some() => {
                    let settled = debouncer.poll(Instant::now());
                    if !settled.is_empty() {
                        {
                            let mut u = self.unsettled.lock().unwrap_or_else(|e| e.into_inner());
                            for p in &settled {
                                u.remove(p);
                            }
                        }
                        self.queue.push(Trigger::Settled(settled.len()));
                    }
                }
            }
        }
    }

    /// The cron loop, if the pipeline has a schedule.
    pub async fn run_schedule(self: Arc<Self>, cancel: CancellationToken) {
        let Some(schedule) = self.pipeline.config.schedule.clone() else {
            return;
        };
        schedule::run_schedule(&schedule, &SystemClock, &cancel, |at| {
            tracing::info!(pipeline = %self.pipeline.name(), %at, "scheduled reconcile");
            self.queue.push(Trigger::Schedule);
        })
        .await;
    }

    /// The cron loop of scheduled full reindexes, if the pipeline has one.
    pub async fn run_reindex_schedule(self: Arc<Self>, cancel: CancellationToken) {
        let Some(schedule) = self.pipeline.config.reindex_schedule.clone() else {
            return;
        };
        schedule::run_schedule(&schedule, &SystemClock, &cancel, |at| {
            tracing::info!(pipeline = %self.pipeline.name(), %at, "scheduled reindex");
            self.queue.push(Trigger::Reindex);
        })
        .await;
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// A failed reconcile or reindex; the worker logs it and retries with backoff.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error(transparent)]
    Reindex(#[from] reindex::ReindexError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn triggers_pushed_during_a_run_coalesce_into_one() {
        let q = TriggerQueue::default();
        q.push(Trigger::Startup);
        let first = q.take().await;
        assert!(first.reconcile && !first.reindex && first.verify);
        // While "running": many triggers arrive.
        for _ in 0..1000 {
            q.push(Trigger::Settled(2));
        }
        q.push(Trigger::Rescan);
        let second = q.take().await;
        assert_eq!(second.settled_paths, 2000);
        assert!(
            second.verify,
            "a rescan among the triggers lists the knowledge base"
        );
        assert_eq!(second.reasons, vec!["files changed", "watcher rescan"]);
        // Nothing left: take waits.
        let third = tokio::time::timeout(Duration::from_secs(5), q.take()).await;
        assert!(third.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_reindex_request_survives_coalescing() {
        let q = TriggerQueue::default();
        q.push(Trigger::Settled(1));
        q.push(Trigger::Reindex);
        q.push(Trigger::Schedule);
        let p = q.take().await;
        assert!(p.reindex && p.reconcile);
    }

    #[tokio::test(start_paused = true)]
    async fn settled_files_alone_leave_the_knowledge_base_check_to_its_interval() {
        let q = TriggerQueue::default();
        q.push(Trigger::Settled(3));
        q.push(Trigger::Settled(1));
        let p = q.take().await;
        assert!(p.reconcile && !p.verify);
        for t in [Trigger::Startup, Trigger::Rescan, Trigger::Schedule] {
            q.push(Trigger::Settled(1));
            q.push(t);
            assert!(q.take().await.verify, "{t:?}");
        }
    }
}
