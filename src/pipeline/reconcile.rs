//! `ragd reconcile` and `ragd retry`: compare the ledger with Qdrant (and, through
//! the publisher, with the knowledge base), repair the drift, and put quarantined
//! files back in line.
//!
//! Drift has three sources: a crash between side effects that the write-ahead
//! states did not cover (a power cut losing the last ledger commits), changes made
//! behind ragd's back (points or files deleted by hand), and bugs. Repairs reuse
//! the normal machinery: a file whose points are wrong is marked `indexing`, and
//! the run that follows redoes it idempotently.

use std::collections::HashMap;

use super::{Pipeline, PipelineError, RunRequest, RunSummary, Verify};
use crate::ledger::{FailKind, FileState, KbState};
use crate::store::PointFilter;
use uuid::Uuid;

/// What a reconcile found (and then fixed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Points of files the ledger does not know (deleted).
    pub orphan_points: usize,
    /// Points of an older version of a known file (deleted).
    pub stale_points: usize,
    /// Indexed files whose points were missing or incomplete (re-indexed).
    pub missing_vectors: usize,
    /// Paths concerned, for the report.
    pub details: Vec<String>,
}

impl Pipeline {
    /// Compare the ledger with the collection, repair, then run (which also
    /// re-checks the knowledge base).
    pub async fn repair(
        &self,
        request: RunRequest,
    ) -> Result<(ReconcileReport, RunSummary), PipelineError> {
        let report = self.repair_vectors().await?;
        // Deep: also the uploads the knowledge base does not list.
        let summary = self
            .run(&RunRequest {
                verify_knowledge: Verify::Deep,
                ..request
            })
            .await?;
        Ok((report, summary))
    }

    async fn repair_vectors(&self) -> Result<ReconcileReport, PipelineError> {
        let mut report = ReconcileReport::default();
        let collection = &self.config.collection;
        let files = self
            .ledger
            .files(self.name())
            .map_err(|e| self.ledger_err(e))?;
        if self
            .store
            .collection_dim(collection)
            .await
            .map_err(|e| self.store_err(e))?
            .is_none()
        {
            // No collection: every indexed file is missing its vectors.
            for r in files.values().filter(|r| r.state == FileState::Indexed) {
                report.missing_vectors += 1;
                report.details.push(format!("missing vectors: {}", r.path));
                self.mark_for_reindex(r.clone())?;
            }
            return Ok(report);
        }
        // Keys only: the chunk texts of a whole collection would not fit the
        // memory ragd means to use (measured: 368 MB at 131k points).
        let points = self
            .store
            .scroll_keys(collection, &PointFilter::pipeline(self.name()))
            .await
            .map_err(|e| self.store_err(e))?;
        // path → (points of the recorded version, ids of other versions' points)
        let mut seen: HashMap<&str, (usize, Vec<Uuid>)> = HashMap::new();
        for p in &points {
            let entry = seen.entry(p.path.as_str()).or_default();
            let current = files
                .get(&p.path)
                .and_then(|r| r.content_hash.as_deref())
                .is_some_and(|h| h == p.content_hash);
            if current {
                entry.0 += 1;
            } else {
                entry.1.push(p.id);
            }
        }
        for (path, (_, other)) in &mut seen {
            let indexed = files.get(*path).is_some_and(|r| r.content_hash.is_some());
            if other.is_empty() {
                continue;
            }
            // A file the ledger has no indexed version of counts nothing as
            // current, so `other` is all its points.
            if indexed {
                report.stale_points += other.len();
                report.details.push(format!("stale points: {path}"));
            } else {
                report.orphan_points += other.len();
                report.details.push(format!("orphan points: {path}"));
            }
            // Exactly the points seen go, by id.
            self.store
                .delete_points(collection, std::mem::take(other))
                .await
                .map_err(|e| self.store_err(e))?;
        }
        for r in files.values() {
            if r.state != FileState::Indexed {
                continue;
            }
            let have = seen.get(r.path.as_str()).map_or(0, |(c, _)| *c);
            if have != r.chunk_count as usize {
                report.missing_vectors += 1;
                report
                    .details
                    .push(format!("{} of {} points: {}", have, r.chunk_count, r.path));
                self.mark_for_reindex(r.clone())?;
            }
        }
        Ok(report)
    }

    /// `indexing` makes the next run redo the file from its bytes.
    fn mark_for_reindex(&self, mut r: crate::ledger::FileRecord) -> Result<(), PipelineError> {
        r.target_hash = r.content_hash.clone();
        r.state = FileState::Indexing;
        self.ledger.put(&r).map_err(|e| self.ledger_err(e))
    }

    /// Put failed files back in the queue: `path`, or every failed file. Returns
    /// how many files and knowledge-base entries were reset.
    pub fn retry(&self, path: Option<&str>) -> Result<(usize, usize), PipelineError> {
        let mut files = 0;
        for mut r in self
            .ledger
            .files(self.name())
            .map_err(|e| self.ledger_err(e))?
            .into_values()
        {
            if r.state != FileState::Failed || path.is_some_and(|p| p != r.path) {
                continue;
            }
            // A transient kind with no attempts is what the planner retries.
            r.error_kind = Some(FailKind::Transient);
            r.attempts = 0;
            self.ledger.put(&r).map_err(|e| self.ledger_err(e))?;
            files += 1;
        }
        let mut kb = 0;
        for r in self
            .ledger
            .kb_files(self.name())
            .map_err(|e| self.ledger_err(e))?
            .into_values()
        {
            if r.state != KbState::Failed || path.is_some_and(|p| p != r.path) {
                continue;
            }
            // Forgetting the refusal publishes the file afresh on the next run; a
            // refused upload still in Open WebUI is found by the orphan sweep.
            self.ledger
                .remove_kb(&r.pipeline, &r.path)
                .map_err(|e| self.ledger_err(e))?;
            kb += 1;
        }
        Ok((files, kb))
    }
}
