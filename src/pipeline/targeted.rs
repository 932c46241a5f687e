//! The daemon's reconcile: [`Pipeline::run`] made fit for a long-running process.
//!
//! Same scan → plan → extract → chunk → embed → store → ledger path as `run`
//! (which `ragd index` keeps using unchanged), plus what a daemon needs:
//!
//! - **hold-back**: paths the watcher still sees changing, and files modified less
//!   than `min_age` ago, are left exactly as the ledger has them and counted as
//!   `deferred`; the caller reconciles again once they settle. This is what keeps a
//!   half-copied file out of the index when some *other* file triggered the scan.
//! - **moves**: a delete and an add with the same bytes become a move (see
//!   [`super::moves`]): no re-extraction, no re-embedding.
//! - **graceful stop**: work is processed in batches and `cancel` is checked
//!   between them, so a shutdown lets the files in flight finish and starts no new
//!   ones. Files never started keep their ledger rows; the next start does them.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use indicatif::ProgressBar;
use tokio_util::sync::CancellationToken;

use super::{Pipeline, PipelineError, RunSummary, moves, stages};
use crate::publish::{NewerWork, SyncStop, Verify};
use crate::triggers::key::FileKey;

/// Files per batch between cancellation checks: big enough to keep the embedder
/// busy across files, small enough that a shutdown waits for little.
const BATCH_FILES: usize = 64;

/// How to reconcile.
#[derive(Debug, Clone, Default)]
pub struct ReconcileOptions {
    /// Re-process every file even if unchanged.
    pub force: bool,
    /// Absolute paths still settling: neither indexed nor deleted this time.
    pub hold: HashSet<PathBuf>,
    /// Files whose mtime is more recent than this are deferred too.
    pub min_age: Duration,
    /// Pair deletes with same-bytes adds and move their points.
    pub detect_moves: bool,
    /// Once cancelled, no new batch starts.
    pub cancel: CancellationToken,
    /// Whether the knowledge base is listed to check it afterwards.
    pub verify_knowledge: Verify,
    /// Whether newer work waits (the daemon's queue): publishing gives way to
    /// it after its slice. `cancel` stops publishing too.
    pub newer_work: NewerWork,
}

/// What a reconcile did.
#[derive(Debug, Clone, Default)]
pub struct ReconcileSummary {
    pub run: RunSummary,
    /// Files moved without re-embedding.
    pub moved: usize,
    /// Files left for a later reconcile because they were still changing.
    pub deferred: usize,
    /// Stopped early by `cancel`; some planned work was not started.
    pub interrupted: bool,
}

impl Pipeline {
    /// Bring the collection in line with the folder, daemon-style (see the module doc).
    pub async fn reconcile(
        &self,
        options: &ReconcileOptions,
    ) -> Result<ReconcileSummary, PipelineError> {
        let started = Instant::now();
        let started_at = crate::ledger::unix_now();
        let (mut plan, scan_problems) = self.plan_run(options.force, false).await?;
        let mut out = ReconcileSummary {
            run: RunSummary {
                pipeline: self.name().to_owned(),
                unchanged: plan.unchanged,
                held_back: plan.held_back,
                mass_delete_blocked: plan.mass_delete_blocked,
                scan_problems: scan_problems
                    .iter()
                    .map(|p| format!("{}: {}", p.path.display(), p.message))
                    .collect(),
                ..Default::default()
            },
            ..Default::default()
        };
        for p in &out.run.scan_problems {
            tracing::warn!(pipeline = %self.name(), problem = %p, "scan problem");
        }

        let held: HashSet<FileKey> = options
            .hold
            .iter()
            .filter_map(|p| FileKey::of(&self.config.sources, p).map(|(_, key)| key))
            .collect();
        let now_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        let min_age_ns = options.min_age.as_nanos() as i64;
        let before = plan.work.len() + plan.deletes.len();
        plan.work.retain(|w| {
            !held.contains(&w.file.key) && now_ns.saturating_sub(w.file.mtime_ns) >= min_age_ns
        });
        plan.deletes.retain(|r| !held.contains(r.path.as_str()));
        out.deferred = before - plan.work.len() - plan.deletes.len();

        if options.detect_moves {
            let found = moves::detect(self, &mut plan).await;
            let (moved, fallback) = moves::execute(self, found).await?;
            out.moved += moved;
            for mv in fallback {
                // Old points incomplete: index and delete the ordinary way.
                plan.work.push(mv.to);
                plan.deletes.push(mv.from);
            }
        }

        let progress = ProgressBar::hidden();
        self.delete_files(&plan, &mut out.run, &progress).await?;
        let mut dim = None;
        let mut work = plan.work;
        while !work.is_empty() {
            if options.cancel.is_cancelled() {
                out.interrupted = true;
                tracing::info!(pipeline = %self.name(), left = work.len(),
                    "stopping: files not started are left for the next start");
                break;
            }
            let rest = work.split_off(work.len().min(BATCH_FILES));
            let batch = std::mem::replace(&mut work, rest);
            if let Some(d) = stages::process(self, batch, &mut out.run, &progress).await? {
                dim = Some(d);
            }
        }

        // The fingerprint says "every file reflects these settings": only true
        // when the whole plan ran.
        if !out.interrupted {
            self.record_settings(dim)?;
        }
        // The knowledge base follows the ledger, as in `run`.
        let stop = SyncStop {
            cancel: options.cancel.clone(),
            newer_work: options.newer_work.clone(),
        };
        self.publish(options.verify_knowledge, &stop, &mut out.run)
            .await?;
        out.run.elapsed = started.elapsed();
        self.record_run("reconcile", started_at, &out.run);
        Ok(out)
    }
}
