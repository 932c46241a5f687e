//! Embed: chunk texts batched across files, the embedding cache first,
//! `embedding.concurrency` requests in flight; a file is handed on once all its
//! chunks have vectors (or its embedding failed).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::mpsc;

use super::{CACHE_WRITE_BATCH, EMBED_CACHE_ENTRIES, Embedded, Prepared};
use crate::document::Chunk;
use crate::embed::EmbedError;
use crate::ledger::{FailKind, FileRecord, FileState};
use crate::pipeline::plan::Reason;
use crate::pipeline::{Pipeline, PipelineError};
use crate::telemetry::events;

#[derive(Default)]
pub(super) struct EmbedStats {
    pub(super) texts: usize,
    pub(super) cache_hits: usize,
    pub(super) requests: usize,
    pub(super) busy: Duration,
}

/// A file waiting for its vectors.
pub(super) struct Slot {
    record: FileRecord,
    chunks: Vec<Chunk>,
    vectors: Vec<Option<Vec<f32>>>,
    /// Cache keys of the chunk texts.
    hashes: Vec<[u8; 32]>,
    remaining: usize,
    /// The first embedding failure of the file: its `error_kind` and message.
    error: Option<(FailKind, String)>,
    reason: Reason,
}

/// The embedding cache key of a chunk text.
pub(super) fn text_key(text: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes()).into()
}

/// Fresh vectors not yet written to the embedding cache. Writing them in
/// large batches matters: one small SQLite transaction per embed response cost
/// a quarter of the wall time of a run with a fast embedder.
#[derive(Default)]
pub(super) struct CacheBuffer {
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
pub(super) async fn embed_all(
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

pub(super) async fn embed_loop(
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
                                s.error.get_or_insert_with(|| (e.fail_kind(), e.to_string()));
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
pub(super) fn is_fatal(e: &EmbedError) -> bool {
    matches!(
        e,
        EmbedError::ModelNotFound { .. }
            | EmbedError::Unauthorized { .. }
            | EmbedError::DimensionMismatch { .. }
    )
}

pub(super) fn finish_slot(s: Slot) -> Embedded {
    if let Some((kind, message)) = s.error {
        let mut r = s.record;
        r.state = FileState::Failed;
        r.error_kind = Some(kind);
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
