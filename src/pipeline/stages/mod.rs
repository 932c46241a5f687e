//! The stage tasks of a run, one file each (see the diagram in
//! `pipeline/mod.rs`): [`prepare`] → [`embed`] → [`commit`], joined by bounded
//! channels.

mod commit;
mod embed;
mod prepare;

use commit::commit_all;
use embed::embed_all;
use prepare::prepare_all;

use std::time::Duration;

use tokio::sync::mpsc;

use super::plan::{Reason, WorkItem};
use super::{Pipeline, PipelineError, Progress, RunSummary};
use crate::document::Chunk;
use crate::ledger::FileRecord;

/// Ledger rows written per transaction for files that need no Qdrant work.
const LEDGER_BATCH: usize = 256;
/// Vectors kept in the embedding cache (about 1.5 KB each at 384 dims).
const EMBED_CACHE_ENTRIES: usize = 250_000;
/// Fresh vectors gathered before one embedding-cache transaction (about
/// 1.5 MB at 384 dims). 256 saved about 1 MB of peak RSS but cost about 7% of
/// an instant run: each transaction rewrites the index pages its random
/// text hashes touch.
const CACHE_WRITE_BATCH: usize = 1024;
/// Most points gathered into one write group while the store is busy. Writes
/// are cheap without a flush, so a group only has to amortise the per-write
/// overhead; each group exists about three times over at its peak (ragd's
/// points, qdrant-edge's copy, its WAL record), so it is kept small. Groups
/// fill up only while the store is busy (a sync, a compaction), exactly when
/// every queue upstream is full too: 1,024 points put 4–7 MB on the
/// benchmark's peak RSS that 256 do not, at the same speed.
const GROUP_MAX_POINTS: usize = 256;
/// Longest a written file waits for the store sync that makes it durable (and
/// `indexed` in the ledger). Embedded Qdrant's flush costs 10–20 ms however
/// little changed, so a bulk run must not sync per group.
const SYNC_INTERVAL: Duration = Duration::from_secs(1);
/// Most points written but not yet synced: bounds what a crash makes redo.
const SYNC_MAX_POINTS: usize = 32_768;

/// What preparation decided for one file.
enum Prepared {
    /// Only the ledger changes (same bytes, or same text).
    Touch(FileRecord),
    /// Not indexed on purpose, or failed; the record says why.
    Settled(FileRecord),
    /// Chunks ready to embed. `record.target_hash` is the new text hash.
    Chunks {
        record: FileRecord,
        chunks: Vec<Chunk>,
        reason: Reason,
    },
}

/// A file whose chunks all have vectors (or whose embedding failed).
enum Embedded {
    Ready {
        record: FileRecord,
        chunks: Vec<Chunk>,
        vectors: Vec<Vec<f32>>,
        reason: Reason,
    },
    Failed(FileRecord),
    Settled(FileRecord),
}

/// Run the work list through prepare → embed → commit. Returns the vector
/// dimension seen, if anything was embedded.
pub(super) async fn process(
    pipeline: &Pipeline,
    work: Vec<WorkItem>,
    summary: &mut RunSummary,
    progress: &dyn Progress,
) -> Result<Option<usize>, PipelineError> {
    if work.is_empty() {
        return Ok(None);
    }
    let concurrency = pipeline.embed_concurrency.max(1);
    let (prepared_tx, prepared_rx) =
        mpsc::channel::<Prepared>(pipeline.limits.extract_concurrency * 2);
    let (embedded_tx, embedded_rx) = mpsc::channel::<Embedded>(concurrency * 2);

    let prep = {
        let p = pipeline.clone();
        tokio::spawn(async move { prepare_all(&p, work, prepared_tx).await })
    };
    let embed = {
        let p = pipeline.clone();
        tokio::spawn(async move { embed_all(&p, prepared_rx, embedded_tx).await })
    };
    let commit_result = commit_all(pipeline, embedded_rx, summary, progress).await;
    // If commit failed, dropping its receiver unblocks and ends the other stages.
    let embed_result = embed.await.map_err(|e| pipeline.internal(e))?;
    prep.await.map_err(|e| pipeline.internal(e))?;
    let stats = embed_result?;
    summary.texts_embedded += stats.texts;
    summary.cache_hits += stats.cache_hits;
    summary.embed_requests += stats.requests;
    summary.embed_time += stats.busy;
    commit_result
}
