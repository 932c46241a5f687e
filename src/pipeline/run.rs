//! The one way a pipeline runs: [`Pipeline::run`] with a [`RunRequest`].
//!
//! `ragd index`, `ragd reconcile`, the daemon's reconciles and a reindex's build
//! all go scan → plan → moves → deletes → extract → chunk → embed → store →
//! ledger → publish through here; they differ only in the request:
//!
//! - **hold-back** (`hold`, `min_age`): paths the watcher still sees changing, and
//!   files modified less than `min_age` ago, are left exactly as the ledger has
//!   them and counted as `deferred`; the caller runs again once they settle. This
//!   is what keeps a half-copied file out of the index when some *other* file
//!   triggered the scan. `ragd index` holds nothing back.
//! - **moves** (`detect_moves`, on unless a caller turns it off): a delete and
//!   an add with the same bytes become a move (see [`super::moves`]): no
//!   re-extraction, no re-embedding. Never in a forced run, whose point is new
//!   vectors: a move would carry the old ones over.
//! - **graceful stop** (`cancel`): work is processed in batches and `cancel` is
//!   checked between them, so a shutdown lets the files in flight finish and
//!   starts no new ones. Files never started keep their ledger rows; the next
//!   start does them.
//! - **progress**: reported to a [`Progress`] observer (the command line's bar);
//!   the pipeline knows nothing of terminals.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;

use super::{Pipeline, PipelineError, RunSummary, moves, stages};
use crate::ledger::Ledger;
use crate::publish::{NewerWork, SyncStop, Verify};
use crate::triggers::key::FileKey;

/// Files per batch between cancellation checks: big enough to keep the embedder
/// busy across files, small enough that a shutdown waits for little.
const BATCH_FILES: usize = 64;

/// Told how far a run is, in files (planned, then handled one by one).
pub trait Progress: Send + Sync {
    /// The run will handle `files` files (deletes and work).
    fn planned(&self, _files: u64) {}
    /// `files` more are handled.
    fn advanced(&self, _files: u64) {}
    /// Indexing is over (publishing may follow).
    fn finished(&self) {}
}

/// Nobody watches: the daemon, tests.
pub struct Unobserved;

impl Progress for Unobserved {}

/// What the `runs` row calls a run (`ragd status` shows it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RunKind {
    /// `ragd index`, `ragd reconcile`.
    #[default]
    Index,
    /// The daemon's runs.
    Reconcile,
}

impl RunKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Index => "index",
            RunKind::Reconcile => "reconcile",
        }
    }
}

/// How to run. The default is `ragd index`'s: everything, now, the knowledge
/// base listed and checked afterwards.
#[derive(Clone)]
pub struct RunRequest {
    pub kind: RunKind,
    /// Re-process every file even if unchanged.
    pub force: bool,
    /// `--allow-mass-delete`: lift the mass-delete safety rail for this run.
    pub allow_mass_delete: bool,
    /// A reindex's build: the live ledger, whose rows the switch replaces with
    /// this run's. The summary's `switch` then says what that would delete.
    pub switch_from: Option<Arc<Ledger>>,
    /// Absolute paths still settling: neither indexed nor deleted this time.
    pub hold: HashSet<PathBuf>,
    /// Files whose mtime is more recent than this are deferred too.
    pub min_age: Duration,
    /// Pair deletes with same-bytes adds and move their points.
    pub detect_moves: bool,
    /// Once cancelled, no new batch starts, and publishing stops.
    pub cancel: CancellationToken,
    /// Whether the knowledge base is listed to check it afterwards.
    pub verify_knowledge: Verify,
    /// Whether newer work waits (the daemon's queue): publishing gives way to
    /// it after its slice.
    pub newer_work: NewerWork,
    pub progress: Arc<dyn Progress>,
}

impl Default for RunRequest {
    fn default() -> Self {
        RunRequest {
            kind: RunKind::Index,
            force: false,
            allow_mass_delete: false,
            switch_from: None,
            hold: HashSet::new(),
            min_age: Duration::ZERO,
            detect_moves: true,
            cancel: CancellationToken::new(),
            verify_knowledge: Verify::Always,
            newer_work: NewerWork::default(),
            progress: Arc::new(Unobserved),
        }
    }
}

impl RunRequest {
    /// A daemon's run: recorded as a reconcile; the caller sets what it
    /// holds back.
    pub fn reconcile() -> Self {
        RunRequest {
            kind: RunKind::Reconcile,
            ..Default::default()
        }
    }
}

impl Pipeline {
    /// Bring the collection, then the knowledge base, in line with the folder,
    /// as `request` says (see the module doc).
    pub async fn run(&self, request: &RunRequest) -> Result<RunSummary, PipelineError> {
        let started = Instant::now();
        let started_at = crate::ledger::unix_now();
        if self.external.is_some() {
            // Open WebUI searches the name `C`: make it an alias of `C_v1` before the
            // first write, so no reindex ever has to drop a real `C` (the moment
            // Open WebUI would find no collection).
            self.ensure_layout().await?;
        }
        let (mut plan, scan_problems, switch) = self.plan_run(request).await?;
        let mut summary = RunSummary {
            pipeline: self.name().to_owned(),
            unchanged: plan.unchanged,
            held_back: plan.held_back,
            mass_delete_blocked: plan.mass_delete_blocked,
            switch,
            scan_problems: scan_problems
                .iter()
                .map(|p| format!("{}: {}", p.path.display(), p.message))
                .collect(),
            ..Default::default()
        };
        for p in &summary.scan_problems {
            tracing::warn!(pipeline = %self.name(), problem = %p, "scan problem");
        }
        summary.deferred = self.hold_back(&mut plan, request);

        if request.detect_moves && !request.force {
            let found = moves::detect(self, &mut plan).await;
            let (moved, fallback) = moves::execute(self, found).await?;
            summary.moved += moved;
            for mv in fallback {
                // Old points incomplete: index and delete the ordinary way.
                plan.work.push(mv.to);
                plan.deletes.push(mv.from);
            }
        }

        let progress = &*request.progress;
        progress.planned((plan.work.len() + plan.deletes.len()) as u64);
        self.delete_files(&plan, &mut summary, progress).await?;
        let mut dim = None;
        let mut work = plan.work;
        while !work.is_empty() {
            if request.cancel.is_cancelled() {
                summary.interrupted = true;
                tracing::info!(pipeline = %self.name(), left = work.len(),
                    "stopping: files not started are left for the next start");
                break;
            }
            let rest = work.split_off(work.len().min(BATCH_FILES));
            let batch = std::mem::replace(&mut work, rest);
            if let Some(d) = stages::process(self, batch, &mut summary, progress).await? {
                dim = Some(d);
            }
        }
        progress.finished();

        // The fingerprint says "every file reflects these settings": only true
        // when the whole plan ran.
        if !summary.interrupted {
            self.record_settings(dim)?;
        }
        // The knowledge base follows the ledger.
        let stop = SyncStop {
            cancel: request.cancel.clone(),
            newer_work: request.newer_work.clone(),
        };
        self.publish(request.verify_knowledge, &stop, &mut summary)
            .await?;
        summary.elapsed = started.elapsed();
        self.record_run(request.kind.as_str(), started_at, &summary);
        Ok(summary)
    }

    /// Take out of `plan` what `request` holds back (still settling, or too
    /// recently modified); returns how many.
    fn hold_back(&self, plan: &mut super::Plan, request: &RunRequest) -> usize {
        if request.hold.is_empty() && request.min_age.is_zero() {
            return 0;
        }
        let held: HashSet<FileKey> = request
            .hold
            .iter()
            .filter_map(|p| FileKey::of(&self.config.sources, p).map(|(_, key)| key))
            .collect();
        let now_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        let min_age_ns = request.min_age.as_nanos() as i64;
        let before = plan.work.len() + plan.deletes.len();
        plan.work.retain(|w| {
            !held.contains(&w.file.key) && now_ns.saturating_sub(w.file.mtime_ns) >= min_age_ns
        });
        plan.deletes.retain(|r| !held.contains(r.path.as_str()));
        before - plan.work.len() - plan.deletes.len()
    }
}
