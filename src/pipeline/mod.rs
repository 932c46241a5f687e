//! One run of one pipeline: scan → plan → extract → chunk → embed → store →
//! ledger commit.
//!
//! The stages are tasks joined by bounded channels, so the slow stage sets the
//! pace and memory stays bounded:
//!
//! ```text
//! plan ─▶ prepare (blocking pool: read, hash, extract, chunk; N at once)
//!            │ Prepared                      │ Touch / Skip / Fail
//!            ▼                               │
//!         embed (batches across files,       │
//!                `embedding.concurrency`     │
//!                requests in flight)         │
//!            │ Embedded                      │
//!            ▼                               ▼
//!         commit (write-ahead ledger intent → Qdrant upsert → delete the old
//!                 version's leftovers → ledger `indexed`)
//! ```
//!
//! A file whose text did not change is never re-embedded: the size+mtime fast path
//! skips it without reading, and a changed mtime with the same bytes or the same
//! extracted text only updates the ledger.

pub mod external;
pub mod layout;
pub mod moves;
pub mod plan;
pub mod points;
pub mod reconcile;
mod run;
mod stages;

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::chunk::Chunker;
use crate::config::{ChunkUnit, Limits, PipelineConfig};
use crate::embed::{EmbedError, Embedder};
use crate::ledger::{FailKind, FileRecord, FileState, Ledger, LedgerError, PipelineMeta};
use crate::publish::{PublishSummary, Publisher, SyncStop, Verify};
use crate::store::{PointFilter, SearchHit, StoreError, VectorStore, WriteOp};
use crate::triggers::scan;

pub use plan::{DeleteRail, DeleteVerdict, Plan, Reason, WorkItem};
pub use run::{Progress, RunKind, RunRequest, Unobserved};

/// Deleted files per store sync and ledger transaction.
const DELETE_BATCH: usize = 256;

/// A failure that stops a whole pipeline run (as opposed to one file failing).
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("pipeline {pipeline}: {source}")]
    Embed {
        pipeline: String,
        #[source]
        source: EmbedError,
    },
    #[error("pipeline {pipeline}: {source}")]
    Store {
        pipeline: String,
        #[source]
        source: StoreError,
    },
    #[error("pipeline {pipeline}: {source}")]
    Ledger {
        pipeline: String,
        #[source]
        source: LedgerError,
    },
    #[error("pipeline {pipeline}: {source}")]
    Publish {
        pipeline: String,
        #[source]
        source: crate::publish::PublishError,
    },
    #[error("pipeline {pipeline}: {source}")]
    External {
        pipeline: String,
        #[source]
        source: external::ExternalError,
    },
    #[error("pipeline {pipeline}: {message}")]
    Setup { pipeline: String, message: String },
    #[error("pipeline {pipeline}: a stage stopped unexpectedly: {message}")]
    Internal { pipeline: String, message: String },
}

/// One file that could not be indexed, for the summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileFailure {
    pub path: String,
    pub kind: FailKind,
    pub message: String,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    pub pipeline: String,
    pub added: usize,
    pub updated: usize,
    pub deleted: usize,
    pub unchanged: usize,
    /// Files whose mtime or bytes changed but whose text did not: ledger only.
    pub touched: usize,
    pub skipped: usize,
    pub failed: usize,
    /// Deletions not made because a source folder could not be read or turned
    /// up empty (not those of the mass-delete rail).
    pub held_back: usize,
    /// Set when the mass-delete rail held deletions back: `(would delete, of files)`.
    pub mass_delete_blocked: Option<(usize, usize)>,
    /// For [`RunRequest::switch_from`]: that ledger's rows judged against this
    /// run's scan, i.e. what replacing them with this run's rows would delete.
    pub switch: Option<DeleteVerdict>,
    pub chunks_written: usize,
    pub texts_embedded: usize,
    /// Chunks whose vectors came from the embedding cache.
    pub cache_hits: usize,
    pub embed_requests: usize,
    pub bytes_read: u64,
    /// Time spent waiting for embedding responses (summed over requests).
    pub embed_time: Duration,
    pub elapsed: Duration,
    pub failures: Vec<FileFailure>,
    /// Problems met while scanning (unreadable folders, links outside).
    pub scan_problems: Vec<String>,
    /// What publishing to the knowledge base did, when one is configured.
    pub knowledge: Option<PublishSummary>,
    /// What keeping the external knowledge base registered did, when configured.
    pub external: Option<external::ExternalSummary>,
    /// Files moved without re-embedding.
    pub moved: usize,
    /// Files left for a later run because they were still changing.
    pub deferred: usize,
    /// Stopped early by the request's `cancel`; some planned work was not started.
    pub interrupted: bool,
}

impl RunSummary {
    /// The totals telemetry reports (its own type: telemetry imports nothing of the
    /// pipeline's).
    fn totals(&self) -> crate::telemetry::events::RunTotals<'_> {
        crate::telemetry::events::RunTotals {
            pipeline: &self.pipeline,
            added: self.added,
            updated: self.updated,
            deleted: self.deleted,
            unchanged: self.unchanged,
            failed: self.failed,
            chunks_written: self.chunks_written,
            bytes_read: self.bytes_read,
            elapsed: self.elapsed,
            knowledge: self.knowledge.as_ref().map(|kb| {
                crate::telemetry::events::KnowledgeTotals {
                    linked: kb.linked,
                    removed: kb.removed,
                    moved: kb.moved,
                    placed: kb.placed,
                    refused: kb.failed,
                    deferred: kb.deferred,
                }
            }),
        }
    }
}

/// Everything one pipeline needs to run.
#[derive(Clone)]
pub struct Pipeline {
    pub config: Arc<PipelineConfig>,
    pub limits: Limits,
    pub chunker: Arc<Chunker>,
    pub embedder: Arc<dyn Embedder>,
    pub store: Arc<dyn VectorStore>,
    pub ledger: Arc<Ledger>,
    /// Embedding requests in flight at once.
    pub embed_concurrency: usize,
    /// Keeps the pipeline's knowledge base in line, when one is configured.
    pub publisher: Option<Arc<Publisher>>,
    /// Keeps the external knowledge base registered (`[knowledge] mode`).
    pub external: Option<Arc<external::ExternalPublisher>>,
    /// Another configured pipeline writes to the same collection.
    pub shares_collection: bool,
}

impl Pipeline {
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Hash of everything that shapes the vectors: a change means every file must
    /// be re-embedded.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.config)
    }

    /// Record a finished run: metrics and log line, and a `runs` row for `ragd
    /// status`. `kind` is `index` or `reconcile`. A failure to write the row is
    /// logged, not returned: the run itself succeeded.
    pub fn record_run(&self, kind: &str, started_at: i64, summary: &RunSummary) {
        crate::telemetry::events::run_finished(&summary.totals());
        let run = crate::ledger::RunRecord {
            pipeline: self.name().to_owned(),
            kind: kind.to_owned(),
            started_at,
            elapsed_ms: summary.elapsed.as_millis() as u64,
            added: summary.added as u64,
            updated: summary.updated as u64,
            deleted: summary.deleted as u64,
            unchanged: summary.unchanged as u64,
            touched: summary.touched as u64,
            skipped: summary.skipped as u64,
            failed: summary.failed as u64,
            chunks_written: summary.chunks_written as u64,
            kb_linked: summary.knowledge.as_ref().map(|k| k.linked as u64),
            kb_failed: summary.knowledge.as_ref().map(|k| k.failed as u64),
        };
        if let Err(e) = self.ledger.record_run(&run) {
            tracing::warn!(pipeline = %self.name(), error = %e, "cannot record the run");
        }
    }
}

/// Hash of everything in `config` that shapes the vectors: a change means every
/// file must be re-embedded. (Free so `ragd plan` can compare without building
/// a pipeline.)
pub fn fingerprint(config: &PipelineConfig) -> String {
    let c = &config.chunking;
    let unit = match &c.unit {
        ChunkUnit::Characters => "chars".to_owned(),
        ChunkUnit::Tokens { tokenizer } => format!("tokens:{}", tokenizer.display()),
    };
    let text = format!(
        "v1|model={}|unit={unit}|max={}|overlap={}|md={}",
        config.model, c.max_size, c.overlap, c.markdown
    );
    hex::encode(&Sha256::digest(text.as_bytes())[..16])
}

impl Pipeline {
    /// What a run would do now, changing nothing.
    pub async fn plan(
        &self,
        force: bool,
        allow_mass_delete: bool,
    ) -> Result<(Plan, Vec<scan::ScanProblem>), PipelineError> {
        let (plan, problems, _) = self.plan_judging(force, allow_mass_delete, None).await?;
        Ok((plan, problems))
    }

    /// [`Pipeline::plan`], and with `switch_from` that ledger's rows planned
    /// against the same scan: a reindex's build learns what the switch would
    /// delete from the scan it built from, judged by the same rules (held back
    /// under an unreadable folder or an empty source, and by the rail).
    async fn plan_judging(
        &self,
        force: bool,
        allow_mass_delete: bool,
        switch_from: Option<&Ledger>,
    ) -> Result<(Plan, Vec<scan::ScanProblem>, Option<DeleteVerdict>), PipelineError> {
        let config = self.config.clone();
        let scanned = tokio::task::spawn_blocking(move || scan::scan(&config))
            .await
            .map_err(|e| self.internal(e))?;
        let force = force || self.settings_changed()?;
        let rail = DeleteRail {
            allow: allow_mass_delete,
            ..DeleteRail::default()
        };
        let plan = self
            .ledger
            .with_files(self.name(), |rows| plan::plan(&scanned, rows, force, rail))
            .map_err(|e| self.ledger_err(e))?;
        let switch = match switch_from {
            Some(live) => Some(
                live.with_files(self.name(), |rows| {
                    plan::plan(&scanned, rows, false, rail).verdict()
                })
                .map_err(|e| self.ledger_err(e))?,
            ),
            None => None,
        };
        // Only the problems outlive planning: the file list (about 120 bytes a
        // file) would otherwise be held for the whole run.
        Ok((plan, scanned.problems, switch))
    }

    /// [`Pipeline::plan_judging`] for a run that acts on it: deletions held back are logged and
    /// counted, and the backlog reported.
    pub(crate) async fn plan_run(
        &self,
        request: &RunRequest,
    ) -> Result<(Plan, Vec<scan::ScanProblem>, Option<DeleteVerdict>), PipelineError> {
        let (plan, problems, switch) = self
            .plan_judging(
                request.force,
                request.allow_mass_delete,
                request.switch_from.as_deref(),
            )
            .await?;
        crate::telemetry::events::deletes_held_back(
            self.name(),
            plan.held_back,
            plan.mass_delete_blocked,
        );
        crate::telemetry::events::backlog(self.name(), plan.work.len() + plan.deletes.len());
        Ok((plan, problems, switch))
    }

    fn settings_changed(&self) -> Result<bool, PipelineError> {
        let meta = self
            .ledger
            .pipeline_meta(self.name())
            .map_err(|e| self.ledger_err(e))?;
        Ok(meta.is_some_and(|m| {
            m.fingerprint != self.fingerprint() || m.collection != self.config.collection
        }))
    }

    /// Record that every file now reflects the current settings (fingerprint,
    /// collection, and the dimension seen, if any).
    pub(crate) fn record_settings(&self, dim: Option<usize>) -> Result<(), PipelineError> {
        let previous = self
            .ledger
            .pipeline_meta(self.name())
            .map_err(|e| self.ledger_err(e))?;
        let dim = dim.map(|d| d as u32).or(previous.and_then(|m| m.dim));
        self.ledger
            .set_pipeline_meta(&PipelineMeta {
                name: self.name().to_owned(),
                fingerprint: self.fingerprint(),
                collection: self.config.collection.clone(),
                dim,
            })
            .map_err(|e| self.ledger_err(e))
    }

    /// Bring Open WebUI in line: the external base first (it makes the folder
    /// answerable at once), then the knowledge base of uploads. Runs after the
    /// Qdrant side is done: Open WebUI's (slow) processing never holds up the
    /// vector index.
    pub(crate) async fn publish(
        &self,
        verify: Verify,
        stop: &SyncStop,
        summary: &mut RunSummary,
    ) -> Result<(), PipelineError> {
        if let Some(external) = &self.external {
            let done =
                external
                    .sync(&*self.store)
                    .await
                    .map_err(|source| PipelineError::External {
                        pipeline: self.name().to_owned(),
                        source,
                    })?;
            summary.external = Some(done);
        }
        let Some(publisher) = &self.publisher else {
            return Ok(());
        };
        summary.knowledge = Some(
            publisher
                .sync(&self.config, &self.ledger, verify, stop)
                .await
                .map_err(|source| PipelineError::Publish {
                    pipeline: self.name().to_owned(),
                    source,
                })?,
        );
        Ok(())
    }

    /// Remove the points of files that are gone, then forget them, a batch of
    /// files at a time: one store sync and two ledger transactions per batch
    /// rather than per file (a durable store write costs a flush; measured,
    /// deleting 2,000 files one by one took 7 s of a 9 s run).
    async fn delete_files(
        &self,
        plan: &Plan,
        summary: &mut RunSummary,
        progress: &dyn Progress,
    ) -> Result<(), PipelineError> {
        if plan.deletes.is_empty() {
            return Ok(());
        }
        let collection = &self.config.collection;
        let exists = self
            .store
            .collection_dim(collection)
            .await
            .map_err(|e| self.store_err(e))?
            .is_some();
        for batch in plan.deletes.chunks(DELETE_BATCH) {
            // Intent first: a crash between here and `remove` redoes the deletes.
            let intents: Vec<FileRecord> = batch
                .iter()
                .map(|record| FileRecord {
                    state: FileState::Deleting,
                    ..record.clone()
                })
                .collect();
            self.ledger
                .put_many(&intents)
                .map_err(|e| self.ledger_err(e))?;
            crate::failpoint::hit("delete.after_intent");
            if exists {
                let probes: Vec<points::Probe> = batch
                    .iter()
                    .map(|record| points::Probe {
                        path: &record.path,
                        from: 0,
                        known: record.chunk_count,
                    })
                    .collect();
                let ids = points::files_ids(&*self.store, collection, self.name(), &probes)
                    .await
                    .map_err(|e| self.store_err(e))?;
                if !ids.is_empty() {
                    self.store
                        .write(collection, vec![WriteOp::DeletePoints(ids)])
                        .await
                        .map_err(|e| self.store_err(e))?;
                    self.store
                        .sync(collection)
                        .await
                        .map_err(|e| self.store_err(e))?;
                }
            }
            crate::failpoint::hit("delete.after_store");
            let paths: Vec<&str> = batch.iter().map(|r| r.path.as_str()).collect();
            self.ledger
                .remove_many(self.name(), &paths)
                .map_err(|e| self.ledger_err(e))?;
            for record in batch {
                summary.deleted += 1;
                progress.advanced(1);
                crate::telemetry::events::file_deleted(self.name(), &record.path);
            }
        }
        Ok(())
    }

    /// Embed `query` and return the `k` best chunks of this pipeline.
    pub async fn search(&self, query: &str, k: usize) -> Result<Vec<SearchHit>, PipelineError> {
        let mut vectors = self
            .embedder
            .embed(&[query.to_owned()])
            .await
            .map_err(|e| self.embed_err(e))?;
        let vector = vectors
            .pop()
            .ok_or_else(|| self.internal("no vector for the query"))?;
        if self
            .store
            .collection_dim(&self.config.collection)
            .await
            .map_err(|e| self.store_err(e))?
            .is_none()
        {
            return Err(PipelineError::Setup {
                pipeline: self.name().to_owned(),
                message: format!(
                    "collection {:?} does not exist yet: run `ragd index --pipeline {}` first",
                    self.config.collection,
                    self.name()
                ),
            });
        }
        // The embedded store keeps no payload index, so a filter on `pipeline`
        // reads every point's payload (measured: 0.65 s and 370 MB resident at
        // 131k points, against 200 MB for the vectors alone). Skip it when no
        // other pipeline, configured or on record, writes to this collection:
        // the default, where the collection is named after the pipeline.
        let shared = self.shares_collection
            || self
                .ledger
                .pipelines_using(&self.config.collection)
                .map_err(|e| self.ledger_err(e))?
                .iter()
                .any(|name| name != self.name());
        let filter = shared.then(|| PointFilter::pipeline(self.name()));
        self.store
            .search(&self.config.collection, vector, k, filter.as_ref())
            .await
            .map_err(|e| self.store_err(e))
    }

    fn ledger_err(&self, source: LedgerError) -> PipelineError {
        PipelineError::Ledger {
            pipeline: self.name().to_owned(),
            source,
        }
    }

    fn store_err(&self, source: StoreError) -> PipelineError {
        PipelineError::Store {
            pipeline: self.name().to_owned(),
            source,
        }
    }

    fn embed_err(&self, source: EmbedError) -> PipelineError {
        PipelineError::Embed {
            pipeline: self.name().to_owned(),
            source,
        }
    }

    fn internal(&self, e: impl std::fmt::Display) -> PipelineError {
        PipelineError::Internal {
            pipeline: self.name().to_owned(),
            message: e.to_string(),
        }
    }
}
