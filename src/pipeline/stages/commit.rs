//! Commit: write-ahead ledger intent, group writes to the store, one store
//! sync about once a second, `indexed` only after the sync covers the file.

use std::time::Instant;

use tokio::sync::mpsc;

use super::{Embedded, GROUP_MAX_POINTS, LEDGER_BATCH, SYNC_INTERVAL, SYNC_MAX_POINTS};
use crate::document::{Chunk, point_id};
use crate::failpoint;
use crate::ledger::{FailKind, FileRecord, FileState};
use crate::pipeline::plan::Reason;
use crate::pipeline::{FileFailure, Pipeline, PipelineError, Progress, RunSummary, points};
use crate::store::{PointPayload, StoredPoint, WriteOp};
use crate::telemetry::events;

/// Write to Qdrant and the ledger in completion order.
///
/// Group commit in two layers. Writes: while one write group is in the store,
/// the files that become ready gather into the next, so a lone file is written
/// at once and a burst in groups of up to [`GROUP_MAX_POINTS`]. Durability: a
/// written file stays `indexing` in the ledger until a store sync covers it;
/// syncs run when the oldest unsynced write is [`SYNC_INTERVAL`] old, when
/// [`SYNC_MAX_POINTS`] are unsynced, and when the input ends. Only then are the
/// files marked `indexed`, so a crash before the sync redoes them.
pub(super) async fn commit_all(
    pipeline: &Pipeline,
    mut rx: mpsc::Receiver<Embedded>,
    summary: &mut RunSummary,
    progress: &dyn Progress,
) -> Result<Option<usize>, PipelineError> {
    let mut dim: Option<usize> = None;
    let mut pending_rows: Vec<FileRecord> = Vec::new();
    let mut gathered: Vec<ReadyFile> = Vec::new();
    let mut gathered_points = 0;
    let mut unsynced: Vec<WrittenFile> = Vec::new();
    let mut unsynced_points = 0;
    let mut oldest_unsynced: Option<tokio::time::Instant> = None;
    let mut busy: Option<StoreTask<'_>> = None;
    let mut input_open = true;

    loop {
        if busy.is_none() {
            let sync_due = !unsynced.is_empty()
                && (unsynced_points >= SYNC_MAX_POINTS
                    || oldest_unsynced.is_some_and(|t| t.elapsed() >= SYNC_INTERVAL)
                    || (!input_open && gathered.is_empty()));
            if sync_due {
                unsynced_points = 0;
                oldest_unsynced = None;
                busy = Some(sync_task(pipeline, std::mem::take(&mut unsynced)));
            } else if !gathered.is_empty() {
                let files = std::mem::take(&mut gathered);
                gathered_points = 0;
                busy = Some(start_group(pipeline, files, &mut dim).await?);
            } else if !input_open {
                break;
            }
        }
        let store_idle = busy.is_none();
        let in_store = futures::future::OptionFuture::from(busy.as_mut());
        let sync_at = oldest_unsynced.map(|t| t + SYNC_INTERVAL);
        tokio::select! {
            // Back-pressure: a full group stops intake until the store is free.
            received = rx.recv(), if input_open && gathered_points < GROUP_MAX_POINTS => {
                match received {
                    None => input_open = false,
                    Some(Embedded::Settled(record) | Embedded::Failed(record)) => {
                        settle(pipeline, record, summary, &mut pending_rows)?;
                        progress.advanced(1);
                    }
                    Some(Embedded::Ready { record, chunks, vectors, reason }) => {
                        gathered_points += chunks.len();
                        gathered.push(ReadyFile { record, chunks, vectors, reason });
                    }
                }
            }
            Some(done) = in_store => {
                busy = None;
                match done? {
                    StoreDone::Written(files) => {
                        oldest_unsynced.get_or_insert_with(tokio::time::Instant::now);
                        unsynced_points += files.iter().map(|f| f.2).sum::<usize>();
                        unsynced.extend(files);
                    }
                    StoreDone::Synced(files) => {
                        progress.advanced(files.len() as u64);
                        finish_group(pipeline, files, summary, &mut pending_rows);
                    }
                }
            }
            // Nothing arrives and the store is idle: sync what waits.
            () = tokio::time::sleep_until(sync_at.unwrap_or_else(tokio::time::Instant::now)),
                if sync_at.is_some() && store_idle => {}
        }
        if pending_rows.len() >= LEDGER_BATCH {
            pipeline
                .ledger
                .put_many(&std::mem::take(&mut pending_rows))
                .map_err(|e| pipeline.ledger_err(e))?;
        }
    }
    pipeline
        .ledger
        .put_many(&pending_rows)
        .map_err(|e| pipeline.ledger_err(e))?;
    Ok(dim)
}

/// What a store task finished: a group written (not yet durable), or a sync
/// that made these files durable.
pub(super) enum StoreDone {
    Written(Vec<WrittenFile>),
    Synced(Vec<WrittenFile>),
}

/// The one store task in flight.
type StoreTask<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<StoreDone, PipelineError>> + Send + 'a>,
>;

/// A written file: its record, new text hash, chunk count, reason.
type WrittenFile = (FileRecord, String, usize, Reason);

pub(super) fn sync_task(pipeline: &Pipeline, files: Vec<WrittenFile>) -> StoreTask<'_> {
    Box::pin(async move {
        pipeline
            .store
            .sync(&pipeline.config.collection)
            .await
            .map_err(|e| pipeline.store_err(e))?;
        // Durable in the store, still `indexing` in the ledger.
        for _ in &files {
            failpoint::hit("index.after_sync");
        }
        Ok(StoreDone::Synced(files))
    })
}

/// A file whose vectors are all known.
pub(super) struct ReadyFile {
    record: FileRecord,
    chunks: Vec<Chunk>,
    vectors: Vec<Vec<f32>>,
    reason: Reason,
}

/// Record a file that needs no Qdrant work (touched, skipped or failed).
pub(super) fn settle(
    pipeline: &Pipeline,
    record: FileRecord,
    summary: &mut RunSummary,
    pending_rows: &mut Vec<FileRecord>,
) -> Result<(), PipelineError> {
    let name = pipeline.name();
    if record.state != FileState::Skipped {
        summary.bytes_read += record.size;
    }
    match record.state {
        FileState::Skipped => {
            summary.skipped += 1;
            events::file_skipped(name, &record.path, record.error_kind.as_ref());
        }
        FileState::Failed => {
            summary.failed += 1;
            summary.failures.push(FileFailure {
                path: record.path.clone(),
                // Every failed row names its kind; none reads as an empty one.
                kind: record
                    .error_kind
                    .clone()
                    .unwrap_or_else(|| FailKind::Other(String::new())),
                message: record.error.clone().unwrap_or_default(),
            });
            events::file_failed(
                name,
                &record.path,
                record.error_kind.as_ref(),
                record.error.as_deref().unwrap_or(""),
            );
        }
        _ => summary.touched += 1,
    }
    pending_rows.push(record);
    Ok(())
}

/// Start writing a group of ready files: record their intents, then return the
/// store write (one upsert for all their points, then the old versions'
/// leftovers) for the caller to await.
pub(super) async fn start_group<'a>(
    pipeline: &'a Pipeline,
    files: Vec<ReadyFile>,
    dim: &mut Option<usize>,
) -> Result<StoreTask<'a>, PipelineError> {
    let name = pipeline.name();
    let collection = &pipeline.config.collection;
    if dim.is_none() {
        let d = files[0].vectors.first().map_or(0, Vec::len);
        pipeline
            .store
            .ensure_collection(collection, d)
            .await
            .map_err(|e| pipeline.store_err(e))?;
        *dim = Some(d);
    }
    // Write-ahead intent for the whole group in one transaction: a crash from
    // here on leaves `indexing`, and the next run redoes these files (upserts
    // are idempotent by id).
    let intents: Vec<FileRecord> = files
        .iter()
        .map(|f| {
            let mut r = f.record.clone();
            r.state = FileState::Indexing;
            r
        })
        .collect();
    pipeline
        .ledger
        .put_many(&intents)
        .map_err(|e| pipeline.ledger_err(e))?;
    // Failpoints count files, not batches, so "the Nth file" stays meaningful.
    for _ in &intents {
        failpoint::hit("index.after_intent");
    }

    let mut points = Vec::new();
    let mut written = Vec::with_capacity(files.len());
    for f in files {
        let ReadyFile {
            record,
            chunks,
            vectors,
            reason,
        } = f;
        let target = record.target_hash.clone().unwrap_or_default();
        let modified = record.mtime_ns / 1_000_000_000;
        let n = chunks.len();
        for (chunk, vector) in chunks.into_iter().zip(vectors) {
            points.push(StoredPoint {
                id: point_id(name, &record.path, chunk.index),
                vector,
                payload: PointPayload {
                    pipeline: name.to_owned(),
                    path: record.path.clone(),
                    chunk_index: chunk.index,
                    text: chunk.text,
                    page: chunk.page,
                    headings: chunk.headings,
                    ocr: chunk.ocr,
                    language: chunk.language.map(|l| l.as_str().to_owned()),
                    content_hash: target.clone(),
                    file_hash: record.file_hash.clone(),
                    modified,
                    model: pipeline.config.model.clone(),
                },
            });
        }
        written.push((record, target, n, reason));
    }
    let point_count = points.len();
    Ok(Box::pin(async move {
        let started = Instant::now();
        // The old versions' leftovers: ids from each file's new chunk count on
        // (`points` module). Found before the upsert, which only writes ids
        // below that count, so the answer is the same after it.
        let probes: Vec<points::Probe> = written
            .iter()
            .filter(|(record, _, _, reason)| {
                record.content_hash.is_some() || *reason != Reason::New
            })
            .map(|(record, _, n, _)| points::Probe {
                path: &record.path,
                from: *n as u32,
                known: record.chunk_count,
            })
            .collect();
        let leftovers = points::files_ids(&*pipeline.store, collection, name, &probes)
            .await
            .map_err(|e| pipeline.store_err(e))?;
        // New versions first (same ids overwrite in place), then the leftovers,
        // so a file is never without vectors: one write group, durable at the
        // next sync.
        let mut ops = vec![WriteOp::Upsert(points)];
        if !leftovers.is_empty() {
            ops.push(WriteOp::DeletePoints(leftovers));
        }
        pipeline
            .store
            .write(collection, ops)
            .await
            .map_err(|e| pipeline.store_err(e))?;
        events::upserted(name, point_count, started.elapsed());
        for _ in &written {
            failpoint::hit("index.after_upsert");
        }
        for _ in &written {
            failpoint::hit("index.after_delete_old");
        }
        Ok(StoreDone::Written(written))
    }))
}

/// Files a sync made durable: mark them `indexed`, committed with the next
/// ledger batch; until then the `indexing` intent makes a crash redo the
/// (idempotent) work.
pub(super) fn finish_group(
    pipeline: &Pipeline,
    files: Vec<WrittenFile>,
    summary: &mut RunSummary,
    pending_rows: &mut Vec<FileRecord>,
) {
    let name = pipeline.name();
    for (mut record, target, n, _) in files {
        let was_indexed = record.content_hash.is_some();
        summary.bytes_read += record.size;
        record.state = FileState::Indexed;
        record.content_hash = Some(target);
        record.target_hash = None;
        record.chunk_count = n as u32;
        record.error_kind = None;
        record.error = None;
        record.attempts = 0;
        events::file_indexed(name, &record.path, n, was_indexed);
        pending_rows.push(record);
        summary.chunks_written += n;
        if was_indexed {
            summary.updated += 1;
        } else {
            summary.added += 1;
        }
    }
}
