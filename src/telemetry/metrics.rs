//! Metric names (all of them, here), the Prometheus recorder and the `/metrics`
//! route.
//!
//! Names follow Prometheus conventions: `ragd_` prefix, `_total` for counters,
//! base units in the name (`_seconds`, `_bytes`). Labels are bounded: `pipeline`
//! (from config), `collection` (from config), `kind` (a failure class from a
//! closed set in the code), `outcome`, `stage` and `target`. Never a path or a
//! message.

use std::sync::OnceLock;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Files indexed (new or changed text written to Qdrant). Labels: pipeline, outcome (added|updated).
pub const FILES_INDEXED: &str = "ragd_files_indexed_total";
/// Files that could not be indexed. Labels: pipeline, kind.
pub const FILES_FAILED: &str = "ragd_files_failed_total";
/// Files read in part: extraction left pages out (OCR failed on them, past
/// `ocr.max_pages` or the deadline) and indexed the rest. Labels: pipeline.
pub const FILES_READ_IN_PART: &str = "ragd_files_read_in_part_total";
/// Files left out on purpose (too large, unsupported type). Labels: pipeline, kind.
pub const FILES_SKIPPED: &str = "ragd_files_skipped_total";
/// Files removed from the index because they left the folder. Labels: pipeline.
pub const FILES_DELETED: &str = "ragd_files_deleted_total";
/// Bytes of source files read. Labels: pipeline.
pub const BYTES_READ: &str = "ragd_bytes_read_total";
/// Chunks written to Qdrant. Labels: pipeline.
pub const CHUNKS_WRITTEN: &str = "ragd_chunks_written_total";
/// Texts embedded. Labels: pipeline.
pub const CHUNKS_EMBEDDED: &str = "ragd_chunks_embedded_total";
/// Embedding requests that failed after the embedder's own retries. Labels: pipeline, kind (transient|permanent).
pub const EMBED_ERRORS: &str = "ragd_embed_errors_total";
/// Extraction time per file. Labels: pipeline.
pub const EXTRACT_SECONDS: &str = "ragd_extract_duration_seconds";
/// Embedding request time (one batch). Labels: pipeline.
pub const EMBED_SECONDS: &str = "ragd_embed_request_duration_seconds";
/// Qdrant upsert time (one batch of points). Labels: pipeline.
pub const UPSERT_SECONDS: &str = "ragd_upsert_duration_seconds";
/// Time Open WebUI took to process one upload. Labels: pipeline, outcome (completed|failed|timed_out|error).
pub const OWUI_PROCESS_SECONDS: &str = "ragd_openwebui_processing_duration_seconds";
/// Files published to a knowledge base, by result. Labels: pipeline, outcome (linked|removed|moved|refused|deferred).
pub const KB_FILES: &str = "ragd_knowledge_files_total";
/// Requests retried after a transient failure (counted by `http::retrying`).
pub const RETRIES: &str = crate::http::RETRIES_METRIC;
/// Deletions a plan held back (nothing deleted). Labels: pipeline, reason
/// (unreadable: under a folder the scan could not read | mass_delete: the rail).
pub const DELETES_HELD_BACK: &str = "ragd_deletes_held_back_total";
/// Files the last plan found to do (adds, updates, retries and deletes). Labels: pipeline.
pub const BACKLOG: &str = "ragd_backlog_files";
/// Completed runs (index or reconcile). Labels: pipeline, outcome (ok|files_failed).
pub const RUNS: &str = "ragd_runs_total";
/// Wall time of a run. Labels: pipeline.
pub const RUN_SECONDS: &str = "ragd_run_duration_seconds";
/// Unix time the last run finished. Labels: pipeline.
pub const LAST_RUN_TIMESTAMP: &str = "ragd_last_run_timestamp_seconds";
/// Embedded Qdrant vacuums (a collection rebuilt without its dead vector
/// slots). Labels: collection, outcome (done|failed).
pub const VACUUMS: &str = "ragd_qdrant_vacuums_total";
/// Dead vector slots dropped by vacuums. Labels: collection.
pub const VACUUMED_SLOTS: &str = "ragd_qdrant_vacuumed_slots_total";
/// Time of one vacuum. Labels: collection.
pub const VACUUM_SECONDS: &str = "ragd_qdrant_vacuum_duration_seconds";

/// Histogram buckets in seconds: from a fast local embed (5 ms) to a slow Open
/// WebUI processing a large PDF (10 min).
const SECONDS_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Install the Prometheus recorder as the process's global metrics recorder (once;
/// later calls return the same handle). Without it, the event functions still log
/// and their counts go nowhere.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
            .map(PrometheusBuilder::build_recorder);
        match recorder {
            Ok(recorder) => {
                let handle = recorder.handle();
                // Fails only if another recorder was installed first (a host
                // embedding ragd as a library): keep ours for rendering anyway.
                let _ = metrics::set_global_recorder(recorder);
                describe();
                handle
            }
            // Only an empty bucket list fails; ours is a constant.
            Err(e) => unreachable!("histogram buckets are valid: {e}"),
        }
    })
}

/// The current metrics in Prometheus text format.
pub fn render() -> String {
    install().render()
}

/// A router serving `GET /metrics`; merge it into the daemon's router.
pub fn metrics_router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/metrics", get(serve_metrics))
}

async fn serve_metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        render(),
    )
}

/// `# HELP` lines, so `curl /metrics` explains itself.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(FILES_INDEXED, "Files whose new text was written to Qdrant");
    describe_counter!(
        FILES_FAILED,
        "Files that could not be indexed, by failure kind"
    );
    describe_counter!(FILES_SKIPPED, "Files left out on purpose, by reason");
    describe_counter!(
        FILES_READ_IN_PART,
        "Files whose text was extracted with pages left out (see `ragd why`)"
    );
    describe_counter!(FILES_DELETED, "Files removed from the index");
    describe_counter!(BYTES_READ, Unit::Bytes, "Bytes of source files read");
    describe_counter!(CHUNKS_WRITTEN, "Chunks written to Qdrant");
    describe_counter!(CHUNKS_EMBEDDED, "Texts embedded");
    describe_counter!(EMBED_ERRORS, "Embedding requests that failed after retries");
    describe_histogram!(
        EXTRACT_SECONDS,
        Unit::Seconds,
        "Text extraction time per file"
    );
    describe_histogram!(
        EMBED_SECONDS,
        Unit::Seconds,
        "Embedding request time per batch"
    );
    describe_histogram!(
        UPSERT_SECONDS,
        Unit::Seconds,
        "Qdrant upsert time per batch"
    );
    describe_histogram!(
        OWUI_PROCESS_SECONDS,
        Unit::Seconds,
        "Time Open WebUI took to process one upload"
    );
    describe_counter!(KB_FILES, "Knowledge-base file results");
    describe_counter!(RETRIES, "Requests retried after a transient failure");
    describe_counter!(DELETES_HELD_BACK, "Deletions a plan held back");
    describe_gauge!(BACKLOG, "Files the last plan found to do");
    describe_counter!(RUNS, "Completed runs");
    describe_histogram!(RUN_SECONDS, Unit::Seconds, "Wall time of a run");
    describe_counter!(VACUUMS, "Embedded Qdrant vacuums");
    describe_counter!(VACUUMED_SLOTS, "Dead vector slots dropped by vacuums");
    describe_histogram!(VACUUM_SECONDS, Unit::Seconds, "Time of one vacuum");
    describe_gauge!(
        LAST_RUN_TIMESTAMP,
        Unit::Seconds,
        "Unix time the last run finished"
    );
}
