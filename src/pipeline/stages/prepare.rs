//! Prepare: read, hash, extract and chunk each file on the blocking pool,
//! several at once, in plan order; files whose text did not change only touch
//! the ledger.

use std::time::Instant;

use futures::stream::StreamExt;
use tokio::sync::mpsc;

use super::Prepared;
use crate::document::{Document, sha256_hex};
use crate::extract;
use crate::ledger::{FailKind, FileRecord, FileState};
use crate::pipeline::Pipeline;
use crate::pipeline::plan::{Reason, WorkItem};
use crate::telemetry::events;
use crate::triggers::scan::ReadError;

/// Prepare files on the blocking pool, several at once, in plan order.
pub(super) async fn prepare_all(
    pipeline: &Pipeline,
    work: Vec<WorkItem>,
    tx: mpsc::Sender<Prepared>,
) {
    let parallel = pipeline.limits.extract_concurrency.max(1);
    let mut results = futures::stream::iter(work.into_iter().map(|item| {
        let p = pipeline.clone();
        async move {
            let path = item.file.key.clone();
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
pub(super) fn prepare(pipeline: &Pipeline, item: WorkItem) -> Prepared {
    let WorkItem {
        file,
        previous,
        reason,
    } = item;
    let name = pipeline.name();
    let base = previous.as_deref().cloned().unwrap_or_else(|| {
        FileRecord::new(
            name,
            file.key.as_str(),
            file.source,
            file.size,
            file.mtime_ns,
            String::new(),
        )
    });
    let settle = |state: FileState, kind: FailKind, message: String| {
        let mut r = base.clone();
        r.size = file.size;
        r.mtime_ns = file.mtime_ns;
        r.source = file.source;
        // A previously indexed version keeps its points (and `content_hash`):
        // nothing already indexed is lost because a new version is bad.
        r.state = state;
        r.error_kind = Some(kind);
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
            FailKind::TooLarge,
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
            FailKind::FileNameNotUtf8,
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
            FailKind::UnsupportedType,
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
                FailKind::NotARegularFile,
                "not read: it is a symbolic link, device or pipe now (swapped since the scan)"
                    .to_owned(),
            ));
        }
        Err(e @ ReadError::TooLarge { .. }) => {
            return Prepared::Settled(settle(
                FileState::Skipped,
                FailKind::TooLarge,
                format!("file grew since the scan: {e}"),
            ));
        }
        Err(ReadError::Io(e)) => {
            let kind = if e.kind() == std::io::ErrorKind::PermissionDenied {
                FailKind::PermissionDenied
            } else if e.kind() == std::io::ErrorKind::NotFound {
                // Deleted between scan and read: the next scan sees it gone.
                FailKind::Transient
            } else {
                FailKind::ReadError
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
            FailKind::NoReader,
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
    // A failure once the bytes are read keeps their hash: the file is not
    // read again until it changes.
    let failed = |kind: FailKind, message: String| {
        let mut r = settle(FileState::Failed, kind, message);
        r.file_hash = record.file_hash.clone();
        Prepared::Settled(r)
    };

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
                FailKind::Transient
            };
            return failed(kind, e.to_string());
        }
    };
    if doc.text_len() as u64 > pipeline.limits.max_text_bytes {
        return failed(
            FailKind::TextTooLarge,
            format!(
                "extracted text is {} bytes, over the limit of {} (limits.max_text_bytes)",
                doc.text_len(),
                pipeline.limits.max_text_bytes
            ),
        );
    }
    let text_hash = doc.text_hash();
    // What this text lacks goes with it; one line per warning.
    record.warning = (!doc.warnings.is_empty()).then(|| doc.warnings.join("\n"));
    if !doc.warnings.is_empty() {
        events::file_read_in_part(name, &record.path, &doc.warnings);
    }
    let same_text = reason != Reason::Forced
        && previous.as_ref().is_some_and(|p| {
            p.state == FileState::Indexed && p.content_hash.as_deref() == Some(&text_hash)
        });
    if same_text {
        return Prepared::Touch(record);
    }
    let chunks = pipeline.chunker.chunk(&doc);
    if chunks.is_empty() {
        return failed(FailKind::Empty, "no text to index".to_owned());
    }
    if chunks.len() > pipeline.limits.max_chunks_per_file as usize {
        return failed(
            FailKind::TooManyChunks,
            format!(
                "{} chunks, over the limit of {} (limits.max_chunks_per_file)",
                chunks.len(),
                pipeline.limits.max_chunks_per_file
            ),
        );
    }
    record.target_hash = Some(text_hash);
    Prepared::Chunks {
        record,
        chunks,
        reason,
    }
}
