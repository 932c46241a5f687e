//! One function per notable event: each writes the log line and updates the
//! metrics together, so logs and dashboards never disagree (vector's
//! `internal_events` pattern).
//!
//! Paths go to logs only, never to metric labels. Document text and secrets go
//! nowhere.

use std::time::Duration;

use metrics::{counter, gauge, histogram};

use super::metrics as m;
use crate::ledger::{FailKind, unix_now};

/// A failure kind as a metric label: the closed set [`FailKind::label`] names,
/// `other` for none, so a label can never grow without bound.
fn kind_label(kind: Option<&FailKind>) -> &'static str {
    kind.map_or("other", FailKind::label)
}

/// How far a run is, every few seconds when stderr is not a terminal (a terminal
/// gets a progress bar instead). A log line, not a bare `eprintln!`, so that under
/// `--log-format json` every line on stderr stays a JSON object.
pub fn run_progress(pipeline: &str, done: u64, total: u64) {
    tracing::info!(pipeline, done, total, "progress");
}

/// A file's new text is in Qdrant.
pub fn file_indexed(pipeline: &str, path: &str, chunks: usize, updated: bool) {
    let outcome = if updated { "updated" } else { "added" };
    tracing::debug!(pipeline, path, chunks, outcome, "indexed");
    counter!(m::FILES_INDEXED, "pipeline" => pipeline.to_owned(), "outcome" => outcome)
        .increment(1);
    counter!(m::CHUNKS_WRITTEN, "pipeline" => pipeline.to_owned()).increment(chunks as u64);
}

/// A file's text was extracted with parts left out (`Document::warnings`);
/// the ledger keeps them for `ragd why`.
pub fn file_read_in_part(pipeline: &str, path: &str, warnings: &[String]) {
    for warning in warnings {
        tracing::warn!(pipeline, path, warning, "file read in part");
    }
    counter!(m::FILES_READ_IN_PART, "pipeline" => pipeline.to_owned()).increment(1);
}

/// A file could not be indexed; the ledger keeps `kind` and `error`.
pub fn file_failed(pipeline: &str, path: &str, kind: Option<&FailKind>, error: &str) {
    tracing::warn!(
        pipeline,
        path,
        kind = kind.map_or("", FailKind::as_str),
        error,
        "file failed"
    );
    counter!(m::FILES_FAILED, "pipeline" => pipeline.to_owned(), "kind" => kind_label(kind))
        .increment(1);
}

/// A file was left out on purpose (too large, unsupported type).
pub fn file_skipped(pipeline: &str, path: &str, kind: Option<&FailKind>) {
    tracing::debug!(
        pipeline,
        path,
        kind = kind.map_or("", FailKind::as_str),
        "skipped"
    );
    counter!(m::FILES_SKIPPED, "pipeline" => pipeline.to_owned(), "kind" => kind_label(kind))
        .increment(1);
}

/// A file left the folder and its points are gone.
pub fn file_deleted(pipeline: &str, path: &str) {
    tracing::info!(pipeline, path, "deleted");
    counter!(m::FILES_DELETED, "pipeline" => pipeline.to_owned()).increment(1);
}

/// Embedded Qdrant rebuilt `collection` without its `dead` vector slots,
/// keeping `live` points.
pub fn vacuumed(collection: &str, dead: u64, live: u64, took: Duration) {
    tracing::info!(
        collection,
        dead,
        live,
        secs = took.as_secs_f64(),
        "vacuumed: dead vector slots dropped"
    );
    counter!(m::VACUUMS, "collection" => collection.to_owned(), "outcome" => "done").increment(1);
    counter!(m::VACUUMED_SLOTS, "collection" => collection.to_owned()).increment(dead);
    histogram!(m::VACUUM_SECONDS, "collection" => collection.to_owned()).record(took.as_secs_f64());
}

/// A vacuum of `collection` failed; the collection stays as it was.
pub fn vacuum_failed(collection: &str, error: &dyn std::fmt::Display) {
    tracing::warn!(collection, error = %error, "vacuum failed; not retried until restart");
    counter!(m::VACUUMS, "collection" => collection.to_owned(), "outcome" => "failed").increment(1);
}

/// Text extraction of one file took `took`.
pub fn file_extracted(pipeline: &str, took: Duration) {
    histogram!(m::EXTRACT_SECONDS, "pipeline" => pipeline.to_owned()).record(took.as_secs_f64());
}

/// One embedding request answered with `texts` vectors.
pub fn embed_request(pipeline: &str, texts: usize, took: Duration) {
    tracing::trace!(
        pipeline,
        texts,
        ms = took.as_millis() as u64,
        "embedded batch"
    );
    counter!(m::CHUNKS_EMBEDDED, "pipeline" => pipeline.to_owned()).increment(texts as u64);
    histogram!(m::EMBED_SECONDS, "pipeline" => pipeline.to_owned()).record(took.as_secs_f64());
}

/// One embedding request failed after the embedder's own retries; its files fail.
pub fn embed_failed(pipeline: &str, error: &dyn std::fmt::Display, transient: bool) {
    tracing::warn!(pipeline, error = %error, transient, "embedding batch failed");
    let kind = if transient { "transient" } else { "permanent" };
    counter!(m::EMBED_ERRORS, "pipeline" => pipeline.to_owned(), "kind" => kind).increment(1);
}

/// A batch of `points` was written to Qdrant in `took`.
pub fn upserted(pipeline: &str, points: usize, took: Duration) {
    tracing::trace!(pipeline, points, ms = took.as_millis() as u64, "upserted");
    histogram!(m::UPSERT_SECONDS, "pipeline" => pipeline.to_owned()).record(took.as_secs_f64());
}

/// Open WebUI finished (or gave up) processing one upload after `took`.
/// `outcome` is one of `completed`, `failed`, `timed_out`, `error`.
pub fn openwebui_processed(pipeline: &str, path: &str, outcome: &'static str, took: Duration) {
    tracing::debug!(
        pipeline,
        path,
        outcome,
        secs = took.as_secs_f64(),
        "Open WebUI processing"
    );
    histogram!(m::OWUI_PROCESS_SECONDS, "pipeline" => pipeline.to_owned(), "outcome" => outcome)
        .record(took.as_secs_f64());
}

// A retried HTTP request is reported by `crate::http::retrying`: the HTTP
// clients (Open WebUI, Ollama) depend on nothing of ragd's but `http`.

/// A plan held deletions back: `unreadable` under folders or files the scan
/// could not read, and `mass` (would delete, of files) by the mass-delete rail.
/// Nothing is deleted for them; an operator must look.
pub fn deletes_held_back(pipeline: &str, unreadable: usize, mass: Option<(usize, usize)>) {
    if unreadable > 0 {
        tracing::warn!(
            pipeline,
            files = unreadable,
            "deletions held back: their folders could not be read this time (see the scan problems)"
        );
        counter!(m::DELETES_HELD_BACK, "pipeline" => pipeline.to_owned(), "reason" => "unreadable")
            .increment(unreadable as u64);
    }
    if let Some((n, total)) = mass {
        tracing::warn!(
            pipeline,
            would_delete = n,
            files = total,
            "mass delete held back: more than half of the pipeline's files are gone; \
             check the source folders, then run `ragd index --allow-mass-delete`"
        );
        counter!(m::DELETES_HELD_BACK, "pipeline" => pipeline.to_owned(), "reason" => "mass_delete")
            .increment(n as u64);
    }
}

/// The plan found `files` to do (adds, updates, retries and deletes).
pub fn backlog(pipeline: &str, files: usize) {
    tracing::debug!(pipeline, files, "backlog");
    gauge!(m::BACKLOG, "pipeline" => pipeline.to_owned()).set(files as f64);
}

/// A finished run's totals as telemetry reports them. Telemetry's own type, filled in
/// by the pipeline, so that telemetry imports nothing of the pipeline's (its import of
/// `pipeline::RunSummary` closed a cycle through most of the crate).
#[derive(Debug, Clone, Copy)]
pub struct RunTotals<'a> {
    pub pipeline: &'a str,
    pub added: usize,
    pub updated: usize,
    pub deleted: usize,
    pub unchanged: usize,
    pub failed: usize,
    pub chunks_written: usize,
    pub bytes_read: u64,
    pub elapsed: Duration,
    /// What publishing did, when the pipeline has a knowledge base.
    pub knowledge: Option<KnowledgeTotals>,
}

/// A run's knowledge-base results, one count per `ragd_knowledge_files_total` outcome.
#[derive(Debug, Clone, Copy)]
pub struct KnowledgeTotals {
    pub linked: usize,
    pub removed: usize,
    pub moved: usize,
    pub placed: usize,
    pub refused: usize,
    pub deferred: usize,
}

/// A run (index or reconcile) finished: its totals, and the backlog is done.
pub fn run_finished(summary: &RunTotals<'_>) {
    let pipeline = summary.pipeline;
    let outcome = if summary.failed > 0 {
        "files_failed"
    } else {
        "ok"
    };
    tracing::info!(
        pipeline,
        added = summary.added,
        updated = summary.updated,
        deleted = summary.deleted,
        unchanged = summary.unchanged,
        failed = summary.failed,
        chunks = summary.chunks_written,
        secs = summary.elapsed.as_secs_f64(),
        "run finished"
    );
    counter!(m::RUNS, "pipeline" => pipeline.to_owned(), "outcome" => outcome).increment(1);
    counter!(m::BYTES_READ, "pipeline" => pipeline.to_owned()).increment(summary.bytes_read);
    histogram!(m::RUN_SECONDS, "pipeline" => pipeline.to_owned())
        .record(summary.elapsed.as_secs_f64());
    gauge!(m::LAST_RUN_TIMESTAMP, "pipeline" => pipeline.to_owned()).set(unix_now() as f64);
    gauge!(m::BACKLOG, "pipeline" => pipeline.to_owned()).set(0.0);
    if let Some(kb) = &summary.knowledge {
        for (outcome, n) in [
            ("linked", kb.linked),
            ("removed", kb.removed),
            ("moved", kb.moved),
            ("placed", kb.placed),
            ("refused", kb.refused),
            ("deferred", kb.deferred),
        ] {
            counter!(m::KB_FILES, "pipeline" => pipeline.to_owned(), "outcome" => outcome)
                .increment(n as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::kind_label;
    use crate::ledger::FailKind;

    #[test]
    fn kind_labels_stay_bounded() {
        assert_eq!(kind_label(Some(&FailKind::Encrypted)), "encrypted");
        assert_eq!(kind_label(Some(&FailKind::TooLarge)), "too_large");
        // A ledger's unknown text is not a label.
        let stray = FailKind::parse("/srv/docs/secret.pdf");
        assert_eq!(kind_label(Some(&stray)), "other");
        assert_eq!(kind_label(None), "other");
    }
}
