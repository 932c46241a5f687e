//! The stage tasks of a run; see the diagram in `pipeline/mod.rs`.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use indicatif::ProgressBar;
use tokio::sync::mpsc;

use super::plan::{Reason, TRANSIENT_KIND, UNSUPPORTED_KIND, WorkItem};
use super::{FileFailure, Pipeline, PipelineError, RunSummary, points};
use crate::document::{Chunk, Document, point_id, sha256_hex};
use crate::embed::EmbedError;
use crate::extract;
use crate::failpoint;
use crate::ledger::{FileRecord, FileState, NO_READER};
use crate::store::{PointPayload, StoredPoint, WriteOp};
use crate::telemetry::events;
use crate::triggers::scan::ReadError;

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
    progress: &ProgressBar,
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

/// Prepare files on the blocking pool, several at once, in plan order.
async fn prepare_all(pipeline: &Pipeline, work: Vec<WorkItem>, tx: mpsc::Sender<Prepared>) {
    let parallel = pipeline.limits.extract_concurrency.max(1);
    let mut results = futures::stream::iter(work.into_iter().map(|item| {
        let p = pipeline.clone();
        async move {
            let path = item.file.rel_path.clone();
            match tokio::task::spawn_blocking(move || prepare(&p, item)).await {
                Ok(prepared) => Some(prepared),
                Err(e) => {
                    // prepare() catches parser panics itself; this is a bug.
                    tracing::error!(%path, error = %e, "prepare task failed");
                    None
                }
            }
        }
    }))
    .buffer_unordered(parallel);
    while let Some(prepared) = results.next().await {
        if let Some(p) = prepared
            && tx.send(p).await.is_err()
        {
            return; // a later stage stopped; the run is failing
        }
    }
}

/// Read, hash, extract and chunk one file. Blocking.
fn prepare(pipeline: &Pipeline, item: WorkItem) -> Prepared {
    let WorkItem {
        file,
        previous,
        reason,
    } = item;
    let name = pipeline.name();
    let base = previous.as_deref().cloned().unwrap_or_else(|| {
        FileRecord::new(
            name,
            &file.rel_path,
            file.source,
            file.size,
            file.mtime_ns,
            String::new(),
        )
    });
    let settle = |state: FileState, kind: &str, message: String| {
        let mut r = base.clone();
        r.size = file.size;
        r.mtime_ns = file.mtime_ns;
        r.source = file.source;
        // A previously indexed version keeps its points (and `content_hash`):
        // nothing already indexed is lost because a new version is bad.
        r.state = state;
        r.error_kind = Some(kind.to_owned());
        r.error = Some(message);
        r.attempts = if state == FileState::Failed {
            base.attempts + 1
        } else {
            0
        };
        r.target_hash = None;
        r
    };

    if file.size > pipeline.limits.max_file_bytes {
        return Prepared::Settled(settle(
            FileState::Skipped,
            "too_large",
            format!(
                "file is {} bytes, over the limit of {} (limits.max_file_bytes)",
                file.size, pipeline.limits.max_file_bytes
            ),
        ));
    }
    if file.abs_path.to_str().is_none() {
        // Keys, payloads and Open WebUI names are UTF-8: a lossy key would
        // point at no file when the upload reads it back, and deferring it
        // counted no attempt, forever. Refused until it is renamed.
        return Prepared::Settled(settle(
            FileState::Skipped,
            "file_name_not_utf8",
            "the file's path is not valid UTF-8; rename it to index and publish it".to_owned(),
        ));
    }
    let ext = file
        .abs_path
        .extension()
        .map(|e| e.to_string_lossy().into_owned())
        .unwrap_or_default();
    let format = extract::format_for(&file.abs_path);
    if format.is_none() && !extract::published_without_reader(&file.abs_path) {
        return Prepared::Settled(settle(
            FileState::Skipped,
            UNSUPPORTED_KIND,
            format!(
                "unsupported file type {ext:?} (supported: pdf, Office (docx, xlsx, pptx, odt, ods, \
                 odp, xls, rtf), epub, eml, csv, images by OCR, html, md, txt, code and other plain text; \
                 doc, ppt and msg are published to a knowledge base only)"
            ),
        ));
    }
    let read = crate::triggers::scan::read_source(
        &file.abs_path,
        pipeline.config.follow_symlinks,
        pipeline.limits.max_file_bytes,
    );
    let bytes = match read {
        Ok(b) => b,
        Err(ReadError::NotRegular) => {
            return Prepared::Settled(settle(
                FileState::Skipped,
                "not_a_regular_file",
                "not read: it is a symbolic link, device or pipe now (swapped since the scan)"
                    .to_owned(),
            ));
        }
        Err(e @ ReadError::TooLarge { .. }) => {
            return Prepared::Settled(settle(
                FileState::Skipped,
                "too_large",
                format!("file grew since the scan: {e}"),
            ));
        }
        Err(ReadError::Io(e)) => {
            let kind = if e.kind() == std::io::ErrorKind::PermissionDenied {
                "permission_denied"
            } else if e.kind() == std::io::ErrorKind::NotFound {
                // Deleted between scan and read: the next scan sees it gone.
                TRANSIENT_KIND
            } else {
                "read_error"
            };
            return Prepared::Settled(settle(
                FileState::Failed,
                kind,
                format!("cannot read file: {e}"),
            ));
        }
    };
    let file_hash = sha256_hex(&bytes);
    let Some(format) = format else {
        // No reader, but Open WebUI reads it: the knowledge base gets the
        // bytes as they are, their hash standing for the text (a new version
        // is new bytes), and ragd's own index nothing. The hash is kept even
        // without a knowledge base, so that one configured later gets the file.
        let mut r = settle(
            FileState::Skipped,
            NO_READER,
            format!("not in ragd's own index: no reader for .{ext}"),
        );
        r.size = bytes.len() as u64;
        r.file_hash = file_hash.clone();
        r.content_hash = Some(file_hash);
        return Prepared::Settled(r);
    };
    let mut record = base.clone();
    record.size = bytes.len() as u64;
    record.mtime_ns = file.mtime_ns;
    record.source = file.source;

    let unchanged_bytes = reason != Reason::Forced
        && previous
            .as_ref()
            .is_some_and(|p| p.state == FileState::Indexed && p.file_hash == file_hash);
    record.file_hash = file_hash;
    if unchanged_bytes {
        return Prepared::Touch(record);
    }

    let extract_started = Instant::now();
    let extracted = extract::isolate::extract_isolated(
        &file.abs_path,
        &bytes,
        format,
        &pipeline.limits.extract,
    );
    events::file_extracted(name, extract_started.elapsed());
    let doc: Document = match extracted {
        Ok(d) => d,
        Err(e) => {
            // A first timeout may be a busy machine: retried by the next run.
            let kind = if e.gives_up_after(base.attempts + 1) {
                e.kind()
            } else {
                TRANSIENT_KIND
            };
            let mut r = settle(FileState::Failed, kind, e.to_string());
            r.file_hash = record.file_hash;
            return Prepared::Settled(r);
        }
    };
    if doc.text_len() as u64 > pipeline.limits.max_text_bytes {
        let mut r = settle(
            FileState::Failed,
            "text_too_large",
            format!(
                "extracted text is {} bytes, over the limit of {} (limits.max_text_bytes)",
                doc.text_len(),
                pipeline.limits.max_text_bytes
            ),
        );
        r.file_hash = record.file_hash;
        return Prepared::Settled(r);
    }
    let text_hash = doc.text_hash();
    let same_text = reason != Reason::Forced
        && previous.as_ref().is_some_and(|p| {
            p.state == FileState::Indexed && p.content_hash.as_deref() == Some(&text_hash)
        });
    if same_text {
        return Prepared::Touch(record);
    }
    let chunks = pipeline.chunker.chunk(&doc);
    if chunks.is_empty() {
        let mut r = settle(FileState::Failed, "empty", "no text to index".to_owned());
        r.file_hash = record.file_hash;
        return Prepared::Settled(r);
    }
    if chunks.len() > pipeline.limits.max_chunks_per_file as usize {
        let mut r = settle(
            FileState::Failed,
            "too_many_chunks",
            format!(
                "{} chunks, over the limit of {} (limits.max_chunks_per_file)",
                chunks.len(),
                pipeline.limits.max_chunks_per_file
            ),
        );
        r.file_hash = record.file_hash;
        return Prepared::Settled(r);
    }
    record.target_hash = Some(text_hash);
    Prepared::Chunks {
        record,
        chunks,
        reason,
    }
}

#[derive(Default)]
struct EmbedStats {
    texts: usize,
    cache_hits: usize,
    requests: usize,
    busy: Duration,
}

/// A file waiting for its vectors.
struct Slot {
    record: FileRecord,
    chunks: Vec<Chunk>,
    vectors: Vec<Option<Vec<f32>>>,
    /// Cache keys of the chunk texts.
    hashes: Vec<[u8; 32]>,
    remaining: usize,
    /// The first embedding failure of the file: its `error_kind` and message.
    error: Option<(&'static str, String)>,
    reason: Reason,
}

/// The embedding cache key of a chunk text.
fn text_key(text: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes()).into()
}

/// Fresh vectors not yet written to the embedding cache. Writing them in
/// large batches matters: one small SQLite transaction per embed response cost
/// a quarter of the wall time of a run with a fast embedder.
#[derive(Default)]
struct CacheBuffer {
    vectors: HashMap<[u8; 32], Vec<f32>>,
}

impl CacheBuffer {
    /// Vectors in the cache or in this buffer for `hashes` (`None`: a miss).
    fn lookup(
        &self,
        pipeline: &Pipeline,
        dim: Option<usize>,
        hashes: &[[u8; 32]],
    ) -> Vec<Option<Vec<f32>>> {
        let mut found = pipeline
            .ledger
            .cached_vectors(&pipeline.config.model, dim, hashes)
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "embedding cache unreadable; embedding anew");
                vec![None; hashes.len()]
            });
        for (slot, hash) in found.iter_mut().zip(hashes) {
            if slot.is_none() {
                *slot = self.vectors.get(hash).cloned();
            }
        }
        found
    }

    fn add(&mut self, pipeline: &Pipeline, hash: [u8; 32], vector: Vec<f32>) {
        self.vectors.insert(hash, vector);
        if self.vectors.len() >= CACHE_WRITE_BATCH {
            self.flush(pipeline);
        }
    }

    fn flush(&mut self, pipeline: &Pipeline) {
        if self.vectors.is_empty() {
            return;
        }
        let entries: Vec<([u8; 32], &[f32])> = self
            .vectors
            .iter()
            .map(|(h, v)| (*h, v.as_slice()))
            .collect();
        if let Err(e) =
            pipeline
                .ledger
                .cache_vectors(&pipeline.config.model, &entries, EMBED_CACHE_ENTRIES)
        {
            tracing::warn!(error = %e, "could not write the embedding cache");
        }
        self.vectors.clear();
    }
}

/// Batch chunks across files and keep `embed_concurrency` requests in flight.
async fn embed_all(
    pipeline: &Pipeline,
    rx: mpsc::Receiver<Prepared>,
    tx: mpsc::Sender<Embedded>,
) -> Result<EmbedStats, PipelineError> {
    let mut cache = CacheBuffer::default();
    let result = embed_loop(pipeline, rx, tx, &mut cache).await;
    // Also after an error: what was embedded need not be embedded again.
    cache.flush(pipeline);
    result
}

async fn embed_loop(
    pipeline: &Pipeline,
    mut rx: mpsc::Receiver<Prepared>,
    tx: mpsc::Sender<Embedded>,
    cache: &mut CacheBuffer,
) -> Result<EmbedStats, PipelineError> {
    let batch_size = pipeline.config.batch_size.max(1);
    let concurrency = pipeline.embed_concurrency.max(1);
    let mut stats = EmbedStats::default();
    let mut slots: HashMap<u64, Slot> = HashMap::new();
    let mut next_slot = 0u64;
    let mut queue: VecDeque<(u64, usize)> = VecDeque::new();
    let mut inflight = FuturesUnordered::new();
    let mut input_open = true;
    // Learned from the first response; cached vectors of another size are misses.
    let mut dim: Option<usize> = None;

    loop {
        // Launch full batches, or a partial one when no more input is waiting, so
        // the embedder never idles while there is text to embed.
        while inflight.len() < concurrency
            && !queue.is_empty()
            && (queue.len() >= batch_size || !input_open || rx.is_empty())
        {
            let take = queue.len().min(batch_size);
            let items: Vec<(u64, usize)> = queue.drain(..take).collect();
            let texts: Vec<String> = items
                .iter()
                .map(|(s, i)| slots[s].chunks[*i].text.clone())
                .collect();
            let embedder = pipeline.embedder.clone();
            inflight.push(async move {
                let started = Instant::now();
                let result = embedder.embed(&texts).await;
                (items, texts.len(), started.elapsed(), result)
            });
        }
        if !input_open && queue.is_empty() && inflight.is_empty() {
            break;
        }
        tokio::select! {
            received = rx.recv(), if input_open && queue.len() < batch_size * (concurrency + 1) => {
                match received {
                    None => input_open = false,
                    Some(Prepared::Touch(r)) | Some(Prepared::Settled(r)) => {
                        if tx.send(Embedded::Settled(r)).await.is_err() {
                            return Ok(stats);
                        }
                    }
                    Some(Prepared::Chunks { record, chunks, reason }) => {
                        let id = next_slot;
                        next_slot += 1;
                        let hashes: Vec<[u8; 32]> = chunks.iter().map(|c| text_key(&c.text)).collect();
                        // Unchanged chunks of an edited file, moved and duplicate
                        // files: their vectors are already known.
                        let cached = cache.lookup(pipeline, dim, &hashes);
                        let misses: Vec<usize> = (0..chunks.len()).filter(|i| cached[*i].is_none()).collect();
                        stats.cache_hits += chunks.len() - misses.len();
                        queue.extend(misses.iter().map(|i| (id, *i)));
                        let slot = Slot {
                            record,
                            remaining: misses.len(),
                            vectors: cached,
                            hashes,
                            chunks,
                            error: None,
                            reason,
                        };
                        if slot.remaining == 0 {
                            if tx.send(finish_slot(slot)).await.is_err() {
                                return Ok(stats);
                            }
                        } else {
                            slots.insert(id, slot);
                        }
                    }
                }
            }
            Some((items, n, took, result)) = inflight.next(), if !inflight.is_empty() => {
                stats.requests += 1;
                stats.busy += took;
                match result {
                    Ok(vectors) => {
                        events::embed_request(pipeline.name(), n, took);
                        stats.texts += n;
                        dim = dim.or_else(|| vectors.first().map(Vec::len));
                        for ((slot, i), v) in items.iter().zip(vectors) {
                            if let Some(s) = slots.get_mut(slot) {
                                cache.add(pipeline, s.hashes[*i], v.clone());
                                s.vectors[*i] = Some(v);
                                s.remaining -= 1;
                            }
                        }
                    }
                    Err(e) if is_fatal(&e) => return Err(pipeline.embed_err(e)),
                    Err(e) => {
                        let transient = e.is_transient();
                        events::embed_failed(pipeline.name(), &e, transient);
                        for (slot, _) in &items {
                            if let Some(s) = slots.get_mut(slot) {
                                s.remaining -= 1;
                                s.error.get_or_insert_with(|| {
                                    let kind = if transient { TRANSIENT_KIND } else { "embed" };
                                    (kind, e.to_string())
                                });
                            }
                        }
                    }
                }
                let done: Vec<u64> = items
                    .iter()
                    .map(|(s, _)| *s)
                    .filter(|s| slots.get(s).is_some_and(|x| x.remaining == 0))
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                for id in done {
                    let Some(s) = slots.remove(&id) else { continue };
                    let out = finish_slot(s);
                    if tx.send(out).await.is_err() {
                        return Ok(stats);
                    }
                }
            }
        }
    }
    Ok(stats)
}

/// Errors that no other file would escape: stop the pipeline with the reason.
fn is_fatal(e: &EmbedError) -> bool {
    matches!(
        e,
        EmbedError::ModelNotFound { .. }
            | EmbedError::Unauthorized { .. }
            | EmbedError::DimensionMismatch { .. }
    )
}

fn finish_slot(s: Slot) -> Embedded {
    if let Some((kind, message)) = s.error {
        let mut r = s.record;
        r.state = FileState::Failed;
        r.error_kind = Some(kind.to_owned());
        r.error = Some(message);
        r.attempts += 1;
        r.target_hash = None;
        return Embedded::Failed(r);
    }
    Embedded::Ready {
        record: s.record,
        chunks: s.chunks,
        vectors: s
            .vectors
            .into_iter()
            .map(|v| v.unwrap_or_default())
            .collect(),
        reason: s.reason,
    }
}

/// Write to Qdrant and the ledger in completion order.
///
/// Group commit in two layers. Writes: while one write group is in the store,
/// the files that become ready gather into the next, so a lone file is written
/// at once and a burst in groups of up to [`GROUP_MAX_POINTS`]. Durability: a
/// written file stays `indexing` in the ledger until a store sync covers it;
/// syncs run when the oldest unsynced write is [`SYNC_INTERVAL`] old, when
/// [`SYNC_MAX_POINTS`] are unsynced, and when the input ends. Only then are the
/// files marked `indexed`, so a crash before the sync redoes them.
async fn commit_all(
    pipeline: &Pipeline,
    mut rx: mpsc::Receiver<Embedded>,
    summary: &mut RunSummary,
    progress: &ProgressBar,
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
                        progress.inc(1);
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
                        progress.inc(files.len() as u64);
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
enum StoreDone {
    Written(Vec<WrittenFile>),
    Synced(Vec<WrittenFile>),
}

/// The one store task in flight.
type StoreTask<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<StoreDone, PipelineError>> + Send + 'a>,
>;

/// A written file: its record, new text hash, chunk count, reason.
type WrittenFile = (FileRecord, String, usize, Reason);

fn sync_task(pipeline: &Pipeline, files: Vec<WrittenFile>) -> StoreTask<'_> {
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
struct ReadyFile {
    record: FileRecord,
    chunks: Vec<Chunk>,
    vectors: Vec<Vec<f32>>,
    reason: Reason,
}

/// Record a file that needs no Qdrant work (touched, skipped or failed).
fn settle(
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
            events::file_skipped(
                name,
                &record.path,
                record.error_kind.as_deref().unwrap_or(""),
            );
        }
        FileState::Failed => {
            summary.failed += 1;
            summary.failures.push(FileFailure {
                path: record.path.clone(),
                kind: record.error_kind.clone().unwrap_or_default(),
                message: record.error.clone().unwrap_or_default(),
            });
            events::file_failed(
                name,
                &record.path,
                record.error_kind.as_deref().unwrap_or(""),
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
async fn start_group<'a>(
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
fn finish_group(
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
