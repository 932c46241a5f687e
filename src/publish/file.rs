//! One file's way into the knowledge base: the `kb_files` row's write-ahead
//! states (intent, uploaded, linked, removing), resumed after a crash, with
//! refusals recorded and transient failures deferred (see the diagram in
//! [`super`]).

use serde_json::{Value, json};

use super::recover::{Probes, may_hold_lost_upload};
use super::row::{After, KbRow};
use super::tree::Place;
use super::{
    MARKER, MAX_PROCESSING_FAILURES, MAX_TRANSIENT_ATTEMPTS, Outcome, PublishError, Publisher,
    UNKNOWN_PLACE,
};
use crate::config::PipelineConfig;
use crate::document::sha256_hex;
use crate::failpoint;
use crate::ledger::{FailKind, FileRecord, KbRecord, KbState, Ledger};
use crate::open_webui::{OwuiError, ProcessOutcome, sanitize_filename};
use crate::triggers::key::FileKey;

impl Publisher {
    pub(super) async fn publish(
        &self,
        file: FileRecord,
        prev: Option<KbRecord>,
        pipeline: &PipelineConfig,
        ledger: &Ledger,
        kb: &str,
    ) -> Result<Outcome, PublishError> {
        let hash = file.content_hash.clone().unwrap_or_default();
        let mut out = Outcome {
            path: file.path.clone(),
            ..Default::default()
        };
        // An intent for this version recorded earlier: a crash may have left
        // its upload unrecorded, to be found by its marker.
        let resumed = prev
            .as_ref()
            .is_some_and(|r| r.content_hash == hash && r.state == KbState::Uploading);
        // Whether to look for a lost upload of this version before uploading.
        // `files/search` matches base names, and a tree can hold thousands of
        // `README.md`: searching before every upload cost O(N²) bytes for
        // them, and a request per file always. A fresh upload that finds its
        // text already in the base (a lost ledger, say) searches then instead.
        let search_first = prev.as_ref().is_some_and(may_hold_lost_upload);
        // Where a lost upload of this version is looked for if the server
        // refuses the upload as a duplicate (of that very upload); the marker
        // was searched already when the upload searched first.
        let mut probes = Probes::after(search_first);
        // The row for this version: resume it, or start it keeping the linked old
        // version to remove once the new one is in.
        let rec = match prev {
            Some(r) if r.content_hash == hash => r,
            Some(r) => {
                // An unlinked upload of an older version is of no use: drop it,
                // found by its marker if its id was never recorded.
                if r.state != KbState::Linked {
                    let id = match &r.file_id {
                        Some(id) => Ok(Some(id.clone())),
                        None if search_first => self
                            .find_upload(&r.pipeline, &r.path, &r.content_hash, &r.kb_id, None)
                            .await
                            .map(|f| f.map(|f| f.id)),
                        None => Ok(None),
                    };
                    let removed = match id {
                        Ok(Some(id)) => self.remove_upload(kb, &id).await,
                        Ok(None) => Ok(()),
                        Err(e) => Err(e),
                    };
                    if let Err(e) = removed {
                        if e.stops_pipeline() {
                            return Err(PublishError::Refused(e));
                        }
                        out.deferred = Some(format!("removing an unfinished older upload: {e}"));
                        return Ok(out);
                    }
                }
                KbRecord {
                    old_file_id: if r.state == KbState::Linked {
                        r.file_id.clone()
                    } else {
                        r.old_file_id.clone()
                    },
                    file_id: None,
                    file_hash: None,
                    content_hash: hash.clone(),
                    state: KbState::Uploading,
                    error_kind: None,
                    error: None,
                    attempts: 0,
                    ..r
                }
            }
            None => KbRecord::uploading(&pipeline.name, &file.path, kb, &hash),
        };
        let mut row = KbRow::new(ledger, rec);
        // A retry after a processing failure: the failed upload is discarded first.
        if row.state == KbState::Failed {
            if let Some(id) = row.file_id.clone()
                && let Err(e) = self.remove_file(kb, &id).await
            {
                if e.stops_pipeline() {
                    return Err(PublishError::Refused(e));
                }
                out.deferred = Some(e.to_string());
                return Ok(out);
            }
            row.upload_again()?;
        }

        // A linked file already holds this text: Open WebUI would refuse the
        // upload as a duplicate, after extracting and embedding it. Refuse it
        // here without the upload; it is published once the twin goes
        // ([`Planned::finish`]). Files of one text take turns ([`TextTurns`]),
        // so a twin published in this sync is seen.
        if row.state == KbState::Uploading
            && !resumed
            && let Some(twin) = ledger.linked_with_text(&pipeline.name, kb, &hash, &file.path)?
        {
            let reason =
                format!("same text as {twin:?}, already in the knowledge base; not uploaded");
            row.refused(FailKind::DuplicateContent, reason.clone())?;
            out.failed = Some(reason);
            return Ok(out);
        }

        // One pass, or two when a fresh upload is refused as a duplicate of
        // this version's own lost upload, which is then adopted instead.
        loop {
            let refused = match self
                .upload_and_link(&mut row, &file, pipeline, ledger, search_first, &mut out)
                .await?
            {
                Step::Linked => break,
                Step::Done => return Ok(out),
                Step::Defer(e) => return self.defer(row, e, out),
                Step::Refused(e) => e,
            };
            let mut lost = None;
            if matches!(refused, OwuiError::DuplicateContent { .. }) {
                match self.find_lost(&mut probes, &row, kb, ledger).await? {
                    Ok(found) => lost = found,
                    Err(e) => return self.defer(row, e, out),
                }
            }
            let Some(found) = lost else {
                return self.refuse_or_defer(row, refused, ledger, out).await;
            };
            // The refused upload is ours and unused: delete it, adopt the other.
            if let Some(id) = row.file_id.clone()
                && let Err(e) = self.remove_file(kb, &id).await
            {
                tracing::warn!(file_id = %id, error = %e, "could not delete a refused upload");
            }
            out.adopted += 1;
            row.uploaded(found.id, found.file_hash, UNKNOWN_PLACE.to_owned())?;
        }
        failpoint::hit("kb.after_link");
        row.linked()?;
        out.linked += 1;

        // Only now may the old version go.
        if let Some(old) = row.old_file_id.clone() {
            failpoint::hit("kb.before_remove_old");
            match self.remove_file(kb, &old).await {
                Ok(()) => {
                    out.removed += 1;
                    row.old_removed()?;
                }
                Err(e) if e.stops_pipeline() => return Err(PublishError::Refused(e)),
                Err(e) => out.deferred = Some(format!("removing the previous version: {e}")),
            }
        }
        Ok(out)
    }

    /// From the intent to the link: upload this version (or adopt its lost
    /// upload), wait until it is processed, and link it. Refusals and transient
    /// errors are handed back for [`Self::publish`] to record.
    #[allow(clippy::too_many_arguments)] // one publish's state, borrowed
    pub(super) async fn upload_and_link(
        &self,
        row: &mut KbRow<'_>,
        file: &FileRecord,
        pipeline: &PipelineConfig,
        ledger: &Ledger,
        search_first: bool,
        out: &mut Outcome,
    ) -> Result<Step, PublishError> {
        let kb = row.kb_id.clone();
        // Whether the server links this upload itself once it is processed
        // (upload metadata `knowledge_id`, 0.12+): then `completed` means linked.
        let mut auto_linked = false;
        if row.state == KbState::Uploading {
            row.intend()?;
            failpoint::hit("kb.after_intent");
            let adopted = if search_first {
                match self
                    .find_upload(&pipeline.name, &file.path, &row.content_hash, &kb, None)
                    .await
                {
                    Ok(found) => found,
                    Err(e) => return Ok(Step::Defer(e)),
                }
            } else {
                None
            };
            if let Some(found) = adopted {
                out.adopted += 1;
                row.uploaded(found.id, found.file_hash, UNKNOWN_PLACE.to_owned())?;
            } else {
                let key = FileKey::stored(file.path.as_str());
                let Some(path) = key.source_path(&pipeline.sources, file.source) else {
                    out.deferred = Some("source folder not in the pipeline any more".into());
                    return Ok(Step::Done);
                };
                // Read the way indexing read it (no swapped-in link), and no
                // more than the indexed size: more is a change, which the hash
                // check below catches as well.
                let (follow, limit) = (pipeline.follow_symlinks, file.size);
                let read = tokio::task::spawn_blocking(move || {
                    crate::triggers::scan::read_source(&path, follow, limit)
                })
                .await;
                let bytes = match read {
                    Ok(Ok(b)) => b,
                    Ok(Err(e)) => {
                        out.deferred = Some(format!("cannot read the file to upload: {e}"));
                        return Ok(Step::Done);
                    }
                    Err(e) => {
                        out.deferred = Some(format!("reading the file to upload: {e}"));
                        return Ok(Step::Done);
                    }
                };
                if sha256_hex(&bytes) != file.file_hash {
                    // Changed since it was indexed: the next index run handles the
                    // new version, and publishes that.
                    out.deferred = Some(
                        "file changed since it was indexed; publishing on the next run".into(),
                    );
                    return Ok(Step::Done);
                }
                // The directory of its path, made first: the server links the
                // upload straight into it.
                let place = Place::of(
                    &file.path,
                    pipeline.kb_directories && self.client.supports_directories(),
                );
                let dir = match self
                    .ensure_dir(ledger, &pipeline.name, &kb, &place.dir, out)
                    .await?
                {
                    Ok(dir) => dir,
                    Err(OwuiError::Unsupported { .. }) => None,
                    Err(e) => return Ok(Step::Defer(e)),
                };
                // `file_hash`: the SHA-256 of the bytes, which Open WebUI's own
                // folder sync (`sync/diff`) compares with the folder's files.
                let mut metadata = json!({
                    MARKER: self.marker(&pipeline.name, &file.path, &row.content_hash, &kb).to_json(),
                    "file_hash": file.file_hash,
                });
                if self.client.supports_auto_link() {
                    metadata["knowledge_id"] = Value::String(kb.clone());
                    if let Some(dir) = &dir {
                        metadata["directory_id"] = Value::String(dir.clone());
                    }
                    auto_linked = true;
                }
                out.uploads += 1;
                // Uploaded under a name a multipart header can carry; renamed
                // to its own by `place_files` when that differs.
                let upload_name = sanitize_filename(&file.path);
                match self
                    .client
                    .upload_file(&upload_name, bytes, metadata, true)
                    .await
                {
                    Ok(info) => {
                        failpoint::hit("kb.after_upload");
                        // `file/add` (older servers) links at the root.
                        let linked_in = match dir {
                            Some(_) if auto_linked => place.dir,
                            _ => String::new(),
                        };
                        let kb_path = Place {
                            dir: linked_in,
                            name: upload_name,
                        }
                        .kb_path();
                        row.uploaded(info.id, Some(file.file_hash.clone()), kb_path)?;
                    }
                    Err(e) => return Ok(Step::Refused(e)),
                }
            }
        }

        // Uploaded: wait for processing, then link.
        let file_id = row.file_id.clone().unwrap_or_default();
        let processing_started = std::time::Instant::now();
        let processed = self
            .client
            .wait_processed(&file_id, self.process_timeout)
            .await;
        crate::telemetry::events::openwebui_processed(
            &pipeline.name,
            &row.path,
            match &processed {
                Ok(ProcessOutcome::Completed) => "completed",
                Ok(ProcessOutcome::Failed { .. }) => "failed",
                Ok(_) => "timed_out",
                Err(_) => "error",
            },
            processing_started.elapsed(),
        );
        match processed {
            Ok(ProcessOutcome::Completed) => {}
            Ok(other) => {
                if let Err(e) = other.into_result() {
                    return Ok(Step::Refused(e));
                }
            }
            Err(OwuiError::NotFound { .. }) => {
                // Our upload vanished (deleted by hand): start this version again.
                row.upload_again()?;
                out.deferred =
                    Some("the uploaded file disappeared; uploading again next run".into());
                return Ok(Step::Done);
            }
            Err(e) => return Ok(Step::Refused(e)),
        }
        // No `file/add` after an auto-link: it would process the file into the
        // base a second time (embedding it again) and answer with every file of
        // the base (628 bytes a file on 0.12.4, O(N²) bytes over a full
        // publish). The auto-link's duplicate check reads the base before it
        // writes, so two identical files processed at once could both get in;
        // [`TextTurns`] keeps them apart, and the second is refused as a
        // duplicate while processing. An adopted or resumed upload (a crash
        // before this point) may have raced a twin then: it gets the explicit
        // add, which checks again.
        if !auto_linked && let Err(e) = self.client.add_file_to_knowledge(&kb, &file_id).await {
            return Ok(Step::Refused(e));
        }
        Ok(Step::Linked)
    }

    pub(super) async fn remove(
        &self,
        row: KbRecord,
        ledger: &Ledger,
    ) -> Result<Outcome, PublishError> {
        let mut row = KbRow::new(ledger, row);
        let mut out = Outcome {
            path: row.path.clone(),
            ..Default::default()
        };
        let search = may_hold_lost_upload(&row);
        // Only a linked row's upload is known to be processed; any other may
        // still be in the server's hands (a crash before the wait).
        let settled = row.state == KbState::Linked;
        row.removing()?;
        let mut ids: Vec<String> = [row.file_id.clone(), row.old_file_id.clone()]
            .into_iter()
            .flatten()
            .collect();
        if row.file_id.is_none() && search {
            // The intent may have been recorded and the upload made, and the run
            // killed before its id was: find it by its marker, or it stays behind
            // (and, once processed and linked, gets the file's text refused as a
            // duplicate wherever the file went).
            match self
                .find_upload(
                    &row.pipeline,
                    &row.path,
                    &row.content_hash,
                    &row.kb_id,
                    None,
                )
                .await
            {
                Ok(Some(found)) => ids.push(found.id),
                Ok(None) => {}
                Err(e) if e.stops_pipeline() => return Err(PublishError::Refused(e)),
                Err(e) => {
                    out.deferred = Some(format!("looking for an unrecorded upload: {e}"));
                    return Ok(out);
                }
            }
        }
        let old_id = row.old_file_id.clone();
        for id in ids {
            let removed = if settled || Some(&id) == old_id.as_ref() {
                self.remove_file(&row.kb_id, &id).await
            } else {
                self.remove_upload(&row.kb_id, &id).await
            };
            match removed {
                Ok(()) => out.removed += 1,
                Err(e) if e.stops_pipeline() => return Err(PublishError::Refused(e)),
                Err(e) => {
                    out.deferred = Some(format!("removing from the knowledge base: {e}"));
                    return Ok(out);
                }
            }
        }
        row.removed()?;
        Ok(out)
    }

    pub(super) fn defer(
        &self,
        mut row: KbRow<'_>,
        e: OwuiError,
        mut out: Outcome,
    ) -> Result<Outcome, PublishError> {
        if e.stops_pipeline() {
            return Err(PublishError::Refused(e));
        }
        let give_up = row.attempts + 1 >= MAX_TRANSIENT_ATTEMPTS;
        let after = if give_up { After::GiveUp } else { After::Retry };
        let attempts = row.attempt_failed(FailKind::Transient, e.to_string(), after, false)?;
        if give_up {
            out.failed = Some(format!("gave up after {attempts} attempts: {e}"));
        } else {
            out.deferred = Some(e.to_string());
        }
        Ok(out)
    }

    /// Record a permanent refusal (deleting our rejected upload), or defer a
    /// transient failure to the next sync.
    pub(super) async fn refuse_or_defer(
        &self,
        mut row: KbRow<'_>,
        e: OwuiError,
        ledger: &Ledger,
        mut out: Outcome,
    ) -> Result<Outcome, PublishError> {
        if !e.is_permanent_for_file() {
            return self.defer(row, e, out);
        }
        let (kind, reason) = match &e {
            OwuiError::DuplicateContent { .. } => {
                // Read now: the twin may have been linked during this sync.
                let linked = ledger.linked_with_text(
                    &row.pipeline,
                    &row.kb_id,
                    &row.content_hash,
                    &row.path,
                )?;
                let twin = linked
                    // Both may be in flight at once: any other file with this text.
                    .or_else(|| {
                        ledger
                            .file_with_text(&row.pipeline, &row.content_hash, &row.path)
                            .ok()
                            .flatten()
                    })
                    .map(|p| format!("same text as {p:?}"))
                    .unwrap_or_else(|| {
                        "same text as another file in the knowledge base".to_owned()
                    });
                (FailKind::DuplicateContent, format!("{twin} ({e})"))
            }
            OwuiError::EmptyContent { .. } => (FailKind::EmptyContent, e.to_string()),
            _ => (FailKind::ProcessingFailed, e.to_string()),
        };
        // Processing may fail once by chance; a refusal of the content is final.
        let processing = kind == FailKind::ProcessingFailed;
        let permanent = !processing || row.attempts + 1 >= MAX_PROCESSING_FAILURES;
        // A refused upload is deleted at once so it cannot linger as an orphan.
        let mut removed = false;
        if let Some(id) = row.file_id.clone() {
            match self.remove_file(&row.kb_id, &id).await {
                Ok(()) => removed = true,
                Err(err) => {
                    tracing::warn!(file_id = %id, error = %err, "could not delete a refused upload")
                }
            }
        }
        let after = if permanent {
            After::GiveUp
        } else {
            After::Retry
        };
        row.attempt_failed(kind, reason.clone(), after, removed)?;
        if permanent {
            out.failed = Some(reason);
        } else {
            out.deferred = Some(reason);
        }
        Ok(out)
    }
}

/// How [`Publisher::upload_and_link`] ended.
pub(super) enum Step {
    /// Processed and linked.
    Linked,
    /// Deferred or restarted, recorded in the row and the outcome.
    Done,
    /// A transient error before any upload: deferred, counted as an attempt.
    Defer(OwuiError),
    /// Refused by the server (or a transient error after the upload).
    Refused(OwuiError),
}
