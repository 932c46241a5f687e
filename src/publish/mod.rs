//! Keep a knowledge base equal to a pipeline's folder: one Open WebUI file per
//! indexed source file, current content, no leftovers, no duplicates.
//!
//! Open WebUI has no idempotency key, so the ledger is the key. Every step records
//! its intent before the side effect:
//!
//! ```text
//! (none) ──intent──▶ uploading ──upload answers──▶ uploaded ──processed+linked+listed──▶ linked
//!                        │ crash: look for our upload by its metadata marker,
//!                        │ adopt it (or upload if there is none) — never a second copy
//! linked (old text) ──▶ uploading (old_file_id kept) ──▶ … ──▶ linked, then the old file is removed
//! gone from the folder ──▶ removing ──file/remove──▶ (row deleted)
//!                        │ no recorded id: look for our upload by its marker too,
//!                        │ so a crash between upload and record leaves no orphan
//! ```
//!
//! A new version is linked before the old one is removed, so the knowledge base
//! never lacks the file. Permanent refusals (empty content, processing failed
//! twice) are recorded and not retried until the text changes. A duplicate-content
//! refusal is retried once no other linked file of the pipeline holds that text
//! (the twin was deleted or changed: in the same sync), at most
//! [`MAX_DUPLICATE_ATTEMPTS`] times for refusals by the server; a copy of a
//! linked file is refused without an upload.
//! Only files ragd uploaded (recorded ids, or ragd's metadata marker) are ever
//! removed; files people uploaded by hand stay.

mod marker;
mod plan;
pub mod tree;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use serde_json::{Value, json};

use crate::config::{KnowledgeTarget, PipelineConfig};
use crate::document::sha256_hex;
use crate::failpoint;
use crate::ledger::{FileRecord, KbDir, KbRecord, KbState, Ledger, LedgerError};
use crate::open_webui::{FileInfo, OpenWebUi, OwuiError, ProcessOutcome, sanitize_filename};
use crate::triggers::scan::source_path;
use plan::{Action, is_refused_copy, plan, publish_text};
use tree::{Place, ancestry, folder_renames, split_dir, upload_names};

pub use marker::{MARKER, UploadMarker};
/// Processing failures allowed per version before it counts as permanent.
const MAX_PROCESSING_FAILURES: u32 = 2;
/// Transient failures per version before the file waits for a change or `ragd retry`.
const MAX_TRANSIENT_ATTEMPTS: u32 = 8;
/// Duplicate-content refusals after which a file is not retried even with no
/// linked twin left in the ledger: the twin may be a file someone else put in
/// the knowledge base, which ragd cannot see go.
const MAX_DUPLICATE_ATTEMPTS: u32 = 3;
/// `error_kind` of a duplicate-content refusal.
const DUPLICATE_KIND: &str = "duplicate_content";
/// `kb_path` of a row whose upload's place in the knowledge base is not known
/// (adopted after a crash, or linked again at the root): it matches no place,
/// so [`Publisher::place_files`] moves and names it where it belongs.
const UNKNOWN_PLACE: &str = "";

/// A failure that stops publishing for the whole pipeline.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("Open WebUI: {0} — check [open_webui] api_key")]
    Unauthorized(OwuiError),
    #[error("knowledge base {target}: {source}")]
    KnowledgeBase {
        target: String,
        #[source]
        source: OwuiError,
    },
    #[error(transparent)]
    Access(#[from] crate::open_webui::access::AccessError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// What one sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishSummary {
    /// `POST /api/v1/files/` calls made.
    pub uploads: usize,
    /// Files that became linked in this sync.
    pub linked: usize,
    /// Files removed from the knowledge base (deleted, or replaced versions).
    pub removed: usize,
    /// Uploads found again by their marker after a crash and adopted.
    pub adopted: usize,
    /// Linked files moved to another folder or renamed (same text): their
    /// upload was kept, not uploaded and processed again.
    pub moved: usize,
    /// Files put where the folder has them in the knowledge base's tree
    /// (`file/move` and/or a rename; nothing is processed again): moved or
    /// renamed files, and files of a base published flat by an older ragd.
    pub placed: usize,
    /// Linked files uploaded again because their bytes changed but not their
    /// text ([`Action::Replace`]): Open WebUI's folder sync compares bytes.
    pub replaced: usize,
    /// Knowledge-base directories created, and removed once emptied.
    pub dirs_created: usize,
    pub dirs_removed: usize,
    /// Directories renamed or moved whole: a folder renamed or moved with
    /// everything in it is one directory update, not a move per file.
    pub dirs_renamed: usize,
    /// Uploads carrying ragd's marker that no ledger row knew, deleted.
    pub orphans_deleted: usize,
    /// Files refused in this sync (duplicate, empty, processing failed).
    pub failed: usize,
    /// Files left for a later sync after a transient failure.
    pub deferred: usize,
    /// Files not started because the sync was asked to stop ([`SyncStop`]): a
    /// shutdown, or newer changes waiting to be indexed. The next sync takes
    /// them up from the ledger.
    pub postponed: usize,
    /// `(path, reason)` of the failures and deferrals.
    pub problems: Vec<(String, String)>,
    /// The base's access was changed to match `[knowledge] access`.
    pub access_updated: bool,
}

/// Whether a sync lists the knowledge base to check it (see
/// [`Publisher::sync`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Verify {
    /// Always: `ragd index`, `ragd reconcile`, and a daemon's startup,
    /// scheduled and watcher-rescan runs.
    #[default]
    Always,
    /// Only when the last listing is older than the verify interval: a
    /// daemon's runs for files that changed, where the ledger already says
    /// what to publish, and a listing costs every edit as much as the whole
    /// knowledge base holds (measured against Open WebUI 0.12.4 here: 20 ms
    /// and 174 KB a page of 200 files).
    WhenDue,
    /// [`Verify::Always`], and then every upload of the key's user is looked
    /// at too: one carrying this pipeline's and this base's marker that no row
    /// knows and the base does not list is an orphan no other check can see
    /// (from a crash before ragd looked for unrecorded uploads by marker) and
    /// is deleted. `ragd reconcile`: it lists every file the user has.
    Deep,
}

/// Whether newer work waits: the daemon's trigger queue, checked without
/// blocking. `None`: nothing ever waits (`ragd index`).
#[derive(Clone, Default)]
pub struct NewerWork(pub Option<Arc<dyn Fn() -> bool + Send + Sync>>);

impl NewerWork {
    fn waiting(&self) -> bool {
        self.0.as_ref().is_some_and(|f| f())
    }
}

impl std::fmt::Debug for NewerWork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "NewerWork(..)"
        } else {
            "NewerWork(None)"
        })
    }
}

/// When a sync should stop starting uploads (those in flight finish).
#[derive(Clone, Debug, Default)]
pub struct SyncStop {
    /// A shutdown: stop at once.
    pub cancel: tokio_util::sync::CancellationToken,
    /// Whether newer changes wait to be indexed (the daemon's trigger queue).
    /// Once the sync has run for its slice ([`Publisher::new`]'s `slice`), it
    /// stops for them: the first publish of a large folder to a slow server
    /// can take hours, and an edit made meanwhile must not wait that long to
    /// reach the vector index.
    pub newer_work: NewerWork,
}

/// Publishes one pipeline's files to its knowledge base.
pub struct Publisher {
    client: Arc<OpenWebUi>,
    target: KnowledgeTarget,
    /// This installation's id, stamped on every upload's marker; only uploads
    /// that carry it are ever adopted or swept by marker ([`UploadMarker`]).
    instance: Option<String>,
    /// The knowledge base's id once found; see [`Publisher::knowledge_id`].
    kb_id: tokio::sync::Mutex<Option<String>>,
    concurrency: usize,
    process_timeout: Duration,
    verify_interval: Duration,
    /// How long a sync runs before it gives way to newer work ([`SyncStop`]).
    slice: Duration,
    /// When the knowledge base was last listed in full.
    last_verified: std::sync::Mutex<Option<std::time::Instant>>,
    /// Held while a directory is looked up or created: files published at once
    /// into one new directory must not create it twice (at the root Open WebUI
    /// does not refuse a second directory of the same name).
    dirs: tokio::sync::Mutex<()>,
}

/// The outcome of one action, applied to the summary afterwards.
#[derive(Default)]
struct Outcome {
    uploads: usize,
    linked: usize,
    removed: usize,
    adopted: usize,
    moved: usize,
    placed: usize,
    replaced: usize,
    dirs_created: usize,
    failed: Option<String>,
    deferred: Option<String>,
    path: String,
}

impl Publisher {
    pub fn new(
        client: Arc<OpenWebUi>,
        target: KnowledgeTarget,
        instance: Option<String>,
        concurrency: usize,
        process_timeout: Duration,
        verify_interval: Duration,
        slice: Duration,
    ) -> Self {
        Publisher {
            client,
            target,
            instance,
            kb_id: tokio::sync::Mutex::new(None),
            concurrency: concurrency.max(1),
            process_timeout,
            verify_interval,
            slice,
            last_verified: std::sync::Mutex::new(None),
            dirs: tokio::sync::Mutex::new(()),
        }
    }

    /// The marker this installation stamps on an upload of `path` at `content_hash`.
    fn marker(&self, pipeline: &str, path: &str, content_hash: &str, kb: &str) -> UploadMarker {
        UploadMarker {
            pipeline: pipeline.to_owned(),
            path: path.to_owned(),
            content_hash: content_hash.to_owned(),
            kb: kb.to_owned(),
            instance: self.instance.clone(),
        }
    }

    /// An upload's marker, when the upload is this installation's, of `pipeline`.
    fn ours(&self, metadata: &Value, pipeline: &str) -> Option<UploadMarker> {
        UploadMarker::read(metadata).filter(|m| m.is_of(self.instance.as_deref(), pipeline))
    }

    /// The knowledge base id: found (or created) on first use and checked on
    /// each later one, so a base deleted in Open WebUI while ragd runs is found
    /// again (by name: created afresh, and every file published to it) instead
    /// of failing each upload until a restart. The check is one small request.
    pub async fn knowledge_id(&self) -> Result<String, PublishError> {
        let target = &self.target;
        let wrap = |source: OwuiError| match source {
            e @ OwuiError::Unauthorized { .. } => PublishError::Unauthorized(e),
            source => PublishError::KnowledgeBase {
                target: format!("{target:?}"),
                source,
            },
        };
        let mut known = self.kb_id.lock().await;
        if let Some(id) = known.as_ref() {
            match self.client.get_knowledge(id).await {
                Ok(_) => return Ok(id.clone()),
                Err(OwuiError::NotFound { .. }) => {
                    tracing::warn!(knowledge_id = %id, target = ?target,
                        "the knowledge base is gone from Open WebUI; looking it up again");
                    *known = None;
                }
                Err(e) => return Err(wrap(e)),
            }
        }
        // The version decides whether uploads can be linked by the server.
        self.client.version().await.map_err(wrap)?;
        let id = match target {
            KnowledgeTarget::Id(id) => self.client.get_knowledge(id).await.map_err(wrap)?.id,
            KnowledgeTarget::Name { name, description } => {
                self.client
                    .find_or_create_knowledge_by_name(name, description)
                    .await
                    .map_err(wrap)?
                    .id
            }
        };
        *known = Some(id.clone());
        Ok(id)
    }

    /// Bring the knowledge base in line with the ledger's indexed files. The
    /// ledger decides what to upload, replace and remove; then, as `verify`
    /// says, the knowledge base is listed to re-link files unlinked by hand and
    /// delete orphan uploads.
    pub async fn sync(
        &self,
        pipeline: &PipelineConfig,
        ledger: &Ledger,
        verify: Verify,
        stop: &SyncStop,
    ) -> Result<PublishSummary, PublishError> {
        let started = std::time::Instant::now();
        let stopping = || {
            stop.cancel.is_cancelled()
                || (started.elapsed() >= self.slice && stop.newer_work.waiting())
        };
        let kb = self.knowledge_id().await?;
        let mut summary = PublishSummary::default();
        // Access first: files published to a base whose access is not yet what
        // the configuration says would be seen by the wrong people meanwhile.
        if let Some(rules) = &pipeline.kb_access {
            summary.access_updated =
                crate::open_webui::access::keep_access(&self.client, &kb, rules).await?;
        }

        // A server that renames files makes a moved-and-renamed file a move too.
        let renames = self.client.supports_directories();
        let planned = ledger.with_files_and_kb(&pipeline.name, |files, rows| {
            plan(files, rows, &kb, renames)
        })?;
        let refused_waiting = !planned.refused.is_empty();
        let actions = if refused_waiting {
            ledger.with_kb_files(&pipeline.name, |rows| planned.finish(rows, &kb))?
        } else {
            planned.actions
        };
        let (moves, actions): (Vec<_>, Vec<_>) = actions
            .into_iter()
            .partition(|a| matches!(a, Action::Move { .. }));
        // A replacement removes its old upload itself, then publishes.
        let (removes, publishes): (Vec<_>, Vec<_>) = actions
            .into_iter()
            .partition(|a| matches!(a, Action::Remove(_)));
        // Phases: moves (ledger only), then every removal completes before
        // any publish starts.
        for phase in [moves, removes, publishes] {
            self.run_phase(phase, &stopping, pipeline, ledger, &kb, &mut summary)
                .await?;
        }
        // A refused copy whose twin this sync changed or removed holds the only
        // copy of its text now: publish it in this sync, not whenever the next
        // one comes (in the daemon, the next change).
        if refused_waiting && summary.linked + summary.removed > 0 && summary.postponed == 0 {
            let planned = ledger.with_files_and_kb(&pipeline.name, |files, rows| {
                plan(files, rows, &kb, renames)
            })?;
            if !planned.refused.is_empty() {
                let again: Vec<Action> = ledger
                    .with_kb_files(&pipeline.name, |rows| planned.finish(rows, &kb))?
                    .into_iter()
                    .filter(is_refused_copy)
                    .collect();
                self.run_phase(again, &stopping, pipeline, ledger, &kb, &mut summary)
                    .await?;
            }
        }
        if summary.postponed == 0 {
            self.place_files(pipeline, ledger, &kb, &stopping, &mut summary)
                .await?;
        }
        if summary.postponed > 0 {
            tracing::info!(pipeline = %pipeline.name, postponed = summary.postponed,
                cancelled = stop.cancel.is_cancelled(),
                "publishing paused for newer work or a shutdown; the next sync goes on");
        } else if self.verify_due(verify) {
            self.verify_and_sweep(pipeline, ledger, &kb, verify, &mut summary)
                .await?;
        }
        Ok(summary)
    }

    /// Apply `phase`'s actions, `self.concurrency` at a time (files with one
    /// text one after another), until `stopping` says so.
    async fn run_phase(
        &self,
        phase: Vec<Action>,
        stopping: &(dyn Fn() -> bool + Sync),
        pipeline: &PipelineConfig,
        ledger: &Ledger,
        kb: &str,
        summary: &mut PublishSummary,
    ) -> Result<(), PublishError> {
        let turns = TextTurns::new(&phase);
        let planned = phase.len();
        let results: Vec<Result<Outcome, PublishError>> = stream::iter(phase)
            // Checked as each action is about to start: those in flight finish.
            .take_while(|_| std::future::ready(!stopping()))
            .map(|a| async {
                // Files with one text are published one after another.
                let _turn = match turns.of(&a) {
                    Some(turn) => Some(turn.lock().await),
                    None => None,
                };
                self.apply(a, pipeline, ledger, kb).await
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        summary.postponed += planned - results.len();
        for r in results {
            let o = r?;
            summary.uploads += o.uploads;
            summary.linked += o.linked;
            summary.removed += o.removed;
            summary.adopted += o.adopted;
            summary.moved += o.moved;
            summary.replaced += o.replaced;
            summary.dirs_created += o.dirs_created;
            if let Some(why) = o.failed {
                summary.failed += 1;
                summary.problems.push((o.path.clone(), why));
            }
            if let Some(why) = o.deferred {
                summary.deferred += 1;
                summary.problems.push((o.path, why));
            }
        }
        Ok(())
    }

    fn verify_due(&self, verify: Verify) -> bool {
        let last = *self.last_verified.lock().unwrap_or_else(|e| e.into_inner());
        match (verify, last) {
            (Verify::Always | Verify::Deep, _) | (Verify::WhenDue, None) => true,
            (Verify::WhenDue, Some(at)) => at.elapsed() >= self.verify_interval,
        }
    }

    async fn apply(
        &self,
        action: Action,
        pipeline: &PipelineConfig,
        ledger: &Ledger,
        kb: &str,
    ) -> Result<Outcome, PublishError> {
        match action {
            Action::Remove(row) => self.remove(row, ledger).await,
            Action::Publish { file, prev } => self.publish(*file, prev, pipeline, ledger, kb).await,
            Action::Replace { row, file } => {
                let removed = self.remove(row, ledger).await?;
                if removed.deferred.is_some() {
                    return Ok(removed);
                }
                let mut out = self.publish(*file, None, pipeline, ledger, kb).await?;
                out.removed += removed.removed;
                out.replaced = 1;
                Ok(out)
            }
            Action::Move { row, to } => {
                // The upload stays where it is until `place_files` moves it.
                let at = Place::recorded(row.kb_path.as_deref(), &row.path).kb_path();
                ledger.move_kb(&row.pipeline, &row.path, &to, &at)?;
                Ok(Outcome {
                    path: to,
                    moved: 1,
                    ..Default::default()
                })
            }
        }
    }

    async fn remove(&self, mut row: KbRecord, ledger: &Ledger) -> Result<Outcome, PublishError> {
        let mut out = Outcome {
            path: row.path.clone(),
            ..Default::default()
        };
        let search = may_hold_lost_upload(&row);
        // Only a linked row's upload is known to be processed; any other may
        // still be in the server's hands (a crash before the wait).
        let settled = row.state == KbState::Linked;
        row.state = KbState::Removing;
        ledger.put_kb(&row)?;
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
                Err(e) if e.stops_pipeline() => return Err(PublishError::Unauthorized(e)),
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
                Err(e) if e.stops_pipeline() => return Err(PublishError::Unauthorized(e)),
                Err(e) => {
                    out.deferred = Some(format!("removing from the knowledge base: {e}"));
                    return Ok(out);
                }
            }
        }
        ledger.remove_kb(&row.pipeline, &row.path)?;
        Ok(out)
    }

    /// Wait (at most the process timeout) until the server is done processing
    /// `file_id`. Open WebUI 0.12.4 processes an upload for a base by writing
    /// its vectors into the base's collection and only then linking it: an
    /// upload deleted in between still writes them, no file is left to remove
    /// them by, and every later upload of that text is refused as a duplicate
    /// (`has_duplicate_content` reads the collection). So an upload that may
    /// be in flight is removed only once it has settled.
    /// Only an upload the server links itself (`knowledge_id` in its
    /// metadata) whose processing has not ended is waited for: one uploaded
    /// with `process=false` reads `pending` forever and writes nothing.
    async fn settle(&self, file: &FileInfo) -> Result<(), OwuiError> {
        let in_flight = file.status.as_ref().is_some_and(|s| !s.is_final());
        if !in_flight || file.metadata.get("knowledge_id").is_none() {
            return Ok(());
        }
        match self
            .client
            .wait_processed(&file.id, self.process_timeout)
            .await
        {
            // Timed out: the server is not processing it any more in any way
            // that ends; removing it is the best left to do.
            Ok(_) | Err(OwuiError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// [`Self::remove_file`] for an upload that may still be processing.
    async fn remove_upload(&self, kb: &str, file_id: &str) -> Result<(), OwuiError> {
        match self.client.get_file(file_id).await {
            Ok(file) => self.settle(&file).await?,
            Err(OwuiError::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        }
        self.remove_file(kb, file_id).await
    }

    /// [`OpenWebUi::delete_file`] for an upload that may still be processing.
    async fn delete_upload(&self, file: &FileInfo) -> Result<(), OwuiError> {
        self.settle(file).await?;
        self.client.delete_file(&file.id).await
    }

    /// Unlink and delete one of ragd's files whose processing is over; already
    /// gone counts as done.
    async fn remove_file(&self, kb: &str, file_id: &str) -> Result<(), OwuiError> {
        match self
            .client
            .remove_file_from_knowledge(kb, file_id, true)
            .await
        {
            Ok(()) | Err(OwuiError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        // Unlinked but somehow kept (e.g. file retention on): delete it too.
        match self.client.delete_file(file_id).await {
            Ok(()) | Err(OwuiError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn publish(
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
        let mut searched = prev.as_ref().is_some_and(may_hold_lost_upload);
        let search_first = searched;
        let mut checked_replaced = false;
        let mut checked_moved = false;
        // The row for this version: resume it, or start it keeping the linked old
        // version to remove once the new one is in.
        let mut row = match prev {
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
                            return Err(PublishError::Unauthorized(e));
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
        // A retry after a processing failure: the failed upload is discarded first.
        if row.state == KbState::Failed {
            if let Some(id) = row.file_id.take()
                && let Err(e) = self.remove_file(kb, &id).await
            {
                if e.stops_pipeline() {
                    return Err(PublishError::Unauthorized(e));
                }
                out.deferred = Some(e.to_string());
                return Ok(out);
            }
            row.state = KbState::Uploading;
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
            row.state = KbState::Failed;
            row.error_kind = Some(DUPLICATE_KIND.to_owned());
            row.error = Some(reason.clone());
            ledger.put_kb(&row)?;
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
                Step::Defer(e) => return self.defer(row, e, ledger, out),
                Step::Refused(e) => e,
            };
            let mut lost = None;
            if matches!(refused, OwuiError::DuplicateContent { .. }) {
                if !searched {
                    searched = true;
                    let except = row.file_id.as_deref();
                    match self
                        .find_upload(&pipeline.name, &file.path, &hash, kb, except)
                        .await
                    {
                        Ok(found) => lost = found,
                        Err(e) => return self.defer(row, e, ledger, out),
                    }
                }
                if lost.is_none() && !checked_replaced {
                    checked_replaced = true;
                    match self.replaced_holds_this(&row).await {
                        Ok(found) => lost = found,
                        Err(e) => return self.defer(row, e, ledger, out),
                    }
                }
                if lost.is_none() && !checked_moved {
                    checked_moved = true;
                    let except = row.file_id.as_deref();
                    let candidates = match self.moved_uploads(&row, except).await {
                        Ok(c) => c,
                        Err(e) => return self.defer(row, e, ledger, out),
                    };
                    for f in candidates {
                        let path = UploadMarker::read(&f.metadata)
                            .map(|m| m.path)
                            .unwrap_or_default();
                        if !ledger.kb_claims(&row.pipeline, &f.id, &path)? {
                            lost = Some(f);
                            break;
                        }
                    }
                }
            }
            let Some(found) = lost else {
                return self.refuse_or_defer(row, refused, ledger, out).await;
            };
            // The refused upload is ours and unused: delete it, adopt the other.
            if let Some(id) = row.file_id.take()
                && let Err(e) = self.remove_file(kb, &id).await
            {
                tracing::warn!(file_id = %id, error = %e, "could not delete a refused upload");
            }
            out.adopted += 1;
            row.file_hash = found.file_hash.clone();
            row.file_id = Some(found.id);
            row.state = KbState::Uploaded;
            row.kb_path = Some(UNKNOWN_PLACE.to_owned());
            ledger.put_kb(&row)?;
        }
        failpoint::hit("kb.after_link");
        // A change reverted after a crash: the upload found by this version's
        // marker is the replaced version's own, still linked. It is this
        // version; removing it as the old one would empty the file's entry.
        if row.old_file_id.is_some() && row.old_file_id == row.file_id {
            row.old_file_id = None;
        }
        row.state = KbState::Linked;
        row.error = None;
        row.error_kind = None;
        row.attempts = 0;
        ledger.put_kb(&row)?;
        out.linked += 1;

        // Only now may the old version go.
        if let Some(old) = row.old_file_id.clone() {
            failpoint::hit("kb.before_remove_old");
            match self.remove_file(kb, &old).await {
                Ok(()) => {
                    out.removed += 1;
                    row.old_file_id = None;
                    ledger.put_kb(&row)?;
                }
                Err(e) if e.stops_pipeline() => return Err(PublishError::Unauthorized(e)),
                Err(e) => out.deferred = Some(format!("removing the previous version: {e}")),
            }
        }
        Ok(out)
    }

    /// From the intent to the link: upload this version (or adopt its lost
    /// upload), wait until it is processed, and link it. Refusals and transient
    /// errors are handed back for [`Self::publish`] to record.
    #[allow(clippy::too_many_arguments)] // one publish's state, borrowed
    async fn upload_and_link(
        &self,
        row: &mut KbRecord,
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
            // Intent first: from here a crash is resolved by the marker search.
            ledger.put_kb(row)?;
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
                row.file_hash = found.file_hash.clone();
                row.file_id = Some(found.id);
                row.kb_path = Some(UNKNOWN_PLACE.to_owned());
            } else {
                let Some(path) = source_path(pipeline, file.source, &file.path) else {
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
                        row.file_id = Some(info.id);
                        row.file_hash = Some(file.file_hash.clone());
                        // `file/add` (older servers) links at the root.
                        let linked_in = match dir {
                            Some(_) if auto_linked => place.dir,
                            _ => String::new(),
                        };
                        row.kb_path = Some(
                            Place {
                                dir: linked_in,
                                name: upload_name,
                            }
                            .kb_path(),
                        );
                    }
                    Err(e) => return Ok(Step::Refused(e)),
                }
            }
            row.state = KbState::Uploaded;
            ledger.put_kb(row)?;
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
                row.state = KbState::Uploading;
                row.file_id = None;
                ledger.put_kb(row)?;
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

    /// The id of the knowledge-base directory `dir` (`a/b`), made with its parents
    /// as needed and recorded in the ledger; `None` for the root. Each level is
    /// looked for before it is created: a creation whose answer was lost, one
    /// made by another pipeline or by hand (used, but never removed by ragd), since
    /// Open WebUI accepts a second root directory of the same name. An intent is
    /// recorded before each creation, so that the one a crash leaves unrecorded is
    /// known as ragd's when it is found.
    async fn ensure_dir(
        &self,
        ledger: &Ledger,
        pipeline: &str,
        kb: &str,
        dir: &str,
        out: &mut Outcome,
    ) -> Result<Result<Option<String>, OwuiError>, PublishError> {
        if dir.is_empty() {
            return Ok(Ok(None));
        }
        // The common case, a directory made before: one lookup by key.
        if let Some(d) = ledger.kb_dir(pipeline, kb, dir)?
            && !d.dir_id.is_empty()
        {
            return Ok(Ok(Some(d.dir_id)));
        }
        let _one_at_a_time = self.dirs.lock().await;
        let known = ledger.kb_dirs(pipeline, kb)?;
        let mut parent: Option<String> = None;
        let mut parent_path = "";
        for path in ancestry(dir) {
            let intended = match known.get(path) {
                Some(d) if !d.dir_id.is_empty() => {
                    parent = Some(d.dir_id.clone());
                    parent_path = path;
                    continue;
                }
                Some(_) => true,
                None => false,
            };
            let (_, name) = split_dir(path);
            let found = match self.client.subdirectories(kb, parent.as_deref()).await {
                Ok(dirs) => dirs.into_iter().find(|d| d.name == name),
                Err(e) if e.stops_pipeline() => return Err(PublishError::Unauthorized(e)),
                Err(e) => return Ok(Err(e)),
            };
            let (dir_id, made) = match found {
                Some(d) => (d.id, intended),
                None => {
                    let intent = KbDir {
                        path: path.to_owned(),
                        dir_id: String::new(),
                        made: true,
                    };
                    ledger.put_kb_dir(pipeline, kb, &intent)?;
                    match self
                        .client
                        .create_directory(kb, name, parent.as_deref())
                        .await
                    {
                        Ok(d) => {
                            out.dirs_created += 1;
                            (d.id, true)
                        }
                        Err(e) if e.stops_pipeline() => {
                            return Err(PublishError::Unauthorized(e));
                        }
                        Err(e) => {
                            if matches!(&e, OwuiError::NotFound { detail } if detail.contains("directory"))
                            {
                                // The parent was deleted in Open WebUI since ragd
                                // made it: made again on the next try.
                                ledger.forget_kb_dirs(pipeline, kb, parent_path)?;
                            }
                            return Ok(Err(e));
                        }
                    }
                }
            };
            ledger.put_kb_dir(
                pipeline,
                kb,
                &KbDir {
                    path: path.to_owned(),
                    dir_id: dir_id.clone(),
                    made,
                },
            )?;
            parent = Some(dir_id);
            parent_path = path;
        }
        Ok(Ok(parent))
    }

    /// Put every linked file where the folder has it in the knowledge base: in
    /// the directory of its path, under its own name. This moves and renames what
    /// [`Action::Move`] moved in the ledger, and, on the first run over a base an
    /// older ragd published flat, every file into its directory: `file/move` and
    /// `files/{id}/rename` only, nothing uploaded or processed again. Then the
    /// directories ragd made that nothing needs any more are removed.
    async fn place_files(
        &self,
        pipeline: &PipelineConfig,
        ledger: &Ledger,
        kb: &str,
        stopping: &(dyn Fn() -> bool + Sync),
        summary: &mut PublishSummary,
    ) -> Result<(), PublishError> {
        if !self.client.supports_directories() {
            return Ok(());
        }
        let tree = pipeline.kb_directories;
        let misplaced_rows = || {
            ledger.with_kb_files(&pipeline.name, |rows| {
                rows.filter(|r| r.kb_id == kb && r.state == KbState::Linked && r.file_id.is_some())
                    .filter_map(|r| {
                        let want = Place::of(&r.path, tree);
                        (Place::recorded(r.kb_path.as_deref(), &r.path) != want)
                            .then_some((r, want))
                    })
                    .collect::<Vec<_>>()
            })
        };
        let mut misplaced = misplaced_rows()?;
        if misplaced.len() > 1
            && self
                .rename_folders(pipeline, ledger, kb, &misplaced, summary)
                .await?
        {
            misplaced = misplaced_rows()?;
        }
        let planned = misplaced.len();
        let results: Vec<Result<Outcome, PublishError>> = stream::iter(misplaced)
            .take_while(|_| std::future::ready(!stopping()))
            .map(|(row, want)| self.place(row, want, ledger, kb))
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        summary.postponed += planned - results.len();
        let mut settled = planned == results.len();
        for r in results {
            let o = r?;
            summary.placed += o.placed;
            summary.dirs_created += o.dirs_created;
            if let Some(why) = o.deferred {
                settled = false;
                summary.deferred += 1;
                summary.problems.push((o.path, why));
            }
        }
        if settled {
            self.prune_dirs(pipeline, ledger, kb, summary).await?;
        }
        Ok(())
    }

    /// Rename (or move) in Open WebUI each directory ragd made whose folder was
    /// renamed or moved whole ([`folder_renames`]): one request where moving the
    /// files would take one a file. Whether any was; a folder this cannot do
    /// (a name taken there, say) is left to the moves file by file.
    async fn rename_folders(
        &self,
        pipeline: &PipelineConfig,
        ledger: &Ledger,
        kb: &str,
        misplaced: &[(KbRecord, Place)],
        summary: &mut PublishSummary,
    ) -> Result<bool, PublishError> {
        let moving: HashSet<&str> = misplaced.iter().map(|(r, _)| r.path.as_str()).collect();
        let moves: Vec<(Place, Place)> = misplaced
            .iter()
            .map(|(r, want)| (Place::recorded(r.kb_path.as_deref(), &r.path), want.clone()))
            .collect();
        let settled: Vec<Place> = ledger.with_kb_files(&pipeline.name, |rows| {
            rows.filter(|r| r.kb_id == kb && !moving.contains(r.path.as_str()))
                .map(|r| Place::recorded(r.kb_path.as_deref(), &r.path))
                .collect()
        })?;
        let mut renamed = false;
        for (from, to) in folder_renames(&moves, settled.iter()) {
            let dirs = ledger.kb_dirs(&pipeline.name, kb)?;
            let Some(dir) = dirs.get(&from).filter(|d| d.made && !d.dir_id.is_empty()) else {
                continue;
            };
            if dirs.contains_key(&to) {
                continue;
            }
            let (parent, name) = split_dir(&to);
            let mut out = Outcome::default();
            let parent_id = match self
                .ensure_dir(ledger, &pipeline.name, kb, parent, &mut out)
                .await?
            {
                Ok(id) => id,
                Err(_) => continue,
            };
            summary.dirs_created += out.dirs_created;
            match self
                .client
                .update_directory(kb, &dir.dir_id, Some(name), Some(parent_id.as_deref()))
                .await
            {
                Ok(_) => {}
                Err(e) if e.stops_pipeline() => return Err(PublishError::Unauthorized(e)),
                Err(e) => {
                    tracing::info!(pipeline = %pipeline.name, from = %from, to = %to, error = %e,
                        "could not rename the directory; moving its files one by one");
                    continue;
                }
            }
            ledger.rename_kb_dirs(&pipeline.name, kb, &from, &to)?;
            summary.dirs_renamed += 1;
            renamed = true;
        }
        Ok(renamed)
    }

    /// Move and rename one linked file to `want`; see [`Self::place_files`].
    async fn place(
        &self,
        row: KbRecord,
        want: Place,
        ledger: &Ledger,
        kb: &str,
    ) -> Result<Outcome, PublishError> {
        let at = Place::recorded(row.kb_path.as_deref(), &row.path);
        let file_id = row.file_id.clone().unwrap_or_default();
        let mut out = Outcome {
            path: row.path.clone(),
            ..Default::default()
        };
        let defer = |e: OwuiError, what: &str, mut out: Outcome| {
            if e.stops_pipeline() {
                return Err(PublishError::Unauthorized(e));
            }
            out.deferred = Some(format!("{what}: {e}"));
            Ok(out)
        };
        if at.dir != want.dir {
            let dir = match self
                .ensure_dir(ledger, &row.pipeline, kb, &want.dir, &mut out)
                .await?
            {
                Ok(dir) => dir,
                Err(OwuiError::Unsupported { .. }) => return Ok(out),
                Err(e) => return defer(e, "making its directory", out),
            };
            match self.client.move_file(kb, &file_id, dir.as_deref()).await {
                Ok(()) => {}
                Err(OwuiError::NotFound { detail }) if detail.contains("directory") => {
                    // Deleted in Open WebUI since ragd made it: made again next time.
                    ledger.forget_kb_dirs(&row.pipeline, kb, &want.dir)?;
                    out.deferred = Some(format!(
                        "its directory {:?} is gone from the knowledge base; made again on the next sync",
                        want.dir
                    ));
                    return Ok(out);
                }
                Err(e) => return defer(e, "moving it in the knowledge base", out),
            }
        }
        if at.name != want.name
            && let Err(e) = self.client.rename_file(&file_id, &want.name).await
        {
            return defer(e, "renaming it in the knowledge base", out);
        }
        ledger.set_kb_path(&row.pipeline, &row.path, &want.kb_path())?;
        out.placed = 1;
        Ok(out)
    }

    /// Remove the directories ragd made that no file of the pipeline is in or
    /// goes to any more, deepest first, and only once Open WebUI lists nothing in
    /// them: a directory someone put a file in stays (ragd forgets it). Removed
    /// with `move_files`, so that a file put there meanwhile goes up a level
    /// instead of being deleted.
    async fn prune_dirs(
        &self,
        pipeline: &PipelineConfig,
        ledger: &Ledger,
        kb: &str,
        summary: &mut PublishSummary,
    ) -> Result<(), PublishError> {
        let dirs = ledger.kb_dirs(&pipeline.name, kb)?;
        if dirs.is_empty() {
            return Ok(());
        }
        let tree = pipeline.kb_directories;
        let needed: HashSet<String> = ledger.with_kb_files(&pipeline.name, |rows| {
            let mut needed = HashSet::new();
            for r in rows.filter(|r| r.kb_id == kb) {
                // Where it goes, and where it is until it is moved there.
                let at = Place::recorded(r.kb_path.as_deref(), &r.path);
                for place in [Place::of(&r.path, tree), at] {
                    for dir in ancestry(&place.dir) {
                        if !needed.contains(dir) {
                            needed.insert(dir.to_owned());
                        }
                    }
                }
            }
            needed
        })?;
        let mut unused: Vec<&KbDir> = dirs
            .values()
            .filter(|d| !needed.contains(&d.path))
            .collect();
        unused.sort_by_key(|d| std::cmp::Reverse(d.path.matches('/').count()));
        let _one_at_a_time = self.dirs.lock().await;
        for d in unused {
            if d.made && !d.dir_id.is_empty() {
                let empty = match self.client.directory_is_empty(kb, &d.dir_id).await {
                    Ok(empty) => empty,
                    Err(e) if e.stops_pipeline() => return Err(PublishError::Unauthorized(e)),
                    Err(e) => {
                        summary
                            .problems
                            .push((d.path.clone(), format!("checking an unused directory: {e}")));
                        continue;
                    }
                };
                if empty {
                    match self.client.delete_directory(kb, &d.dir_id, true).await {
                        Ok(()) | Err(OwuiError::NotFound { .. }) => summary.dirs_removed += 1,
                        Err(e) if e.stops_pipeline() => {
                            return Err(PublishError::Unauthorized(e));
                        }
                        Err(e) => {
                            summary.problems.push((
                                d.path.clone(),
                                format!("removing an emptied directory: {e}"),
                            ));
                            continue;
                        }
                    }
                } else {
                    tracing::info!(pipeline = %pipeline.name, directory = %d.path,
                        "a directory ragd made and no longer needs holds files it did not put there; left in place");
                }
            }
            ledger.forget_kb_dirs(&pipeline.name, kb, &d.path)?;
        }
        Ok(())
    }

    /// Uploads of this pipeline and base with this file's name and text but
    /// another path in their marker, other than `except` (the refused one):
    /// a file moved keeps its upload and its marker keeps the old path, so
    /// when the ledger's rows are lost the marker search misses it. The caller
    /// adopts one only if no row records it or sits at its marker's path (it
    /// could be another copy's, or a resumed intent's).
    async fn moved_uploads(
        &self,
        row: &KbRecord,
        except: Option<&str>,
    ) -> Result<Vec<FileInfo>, OwuiError> {
        let mut found = Vec::new();
        for name in upload_names(&row.path) {
            found.extend(self.client.find_files_by_name(&name).await?);
        }
        Ok(found
            .into_iter()
            .filter(|f| {
                Some(f.id.as_str()) != except
                    && self.ours(&f.metadata, &row.pipeline).is_some_and(|m| {
                        m.kb == row.kb_id
                            && m.content_hash == row.content_hash
                            && m.path != row.path
                    })
            })
            .collect())
    }

    /// The replaced version's upload, when it holds this very version: a
    /// change reverted after a crash, where the upload's marker no longer
    /// names this path (the file was moved since it was uploaded), so the
    /// marker search misses it and the server refuses the new upload as its
    /// duplicate. Matched by the marker's pipeline, base and text, not path.
    async fn replaced_holds_this(&self, row: &KbRecord) -> Result<Option<FileInfo>, OwuiError> {
        let Some(old) = row.old_file_id.as_deref() else {
            return Ok(None);
        };
        if row.file_id.as_deref() == Some(old) {
            return Ok(None);
        }
        let found = match self.client.get_file(old).await {
            Ok(f) => f,
            Err(OwuiError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let same = self
            .ours(&found.metadata, &row.pipeline)
            .is_some_and(|m| m.kb == row.kb_id && m.content_hash == row.content_hash);
        Ok(same.then_some(found))
    }

    /// An upload of this version made earlier whose id was never recorded.
    /// `except`: an upload of this version just refused, not to be found.
    async fn find_upload(
        &self,
        pipeline: &str,
        path: &str,
        content_hash: &str,
        kb: &str,
        except: Option<&str>,
    ) -> Result<Option<FileInfo>, OwuiError> {
        let marker = self.marker(pipeline, path, content_hash, kb);
        // Under the name it was uploaded under, or (placed, then the row
        // lost) its own.
        let mut listed = Vec::new();
        for name in upload_names(path) {
            listed.extend(self.client.find_files_by_name(&name).await?);
        }
        let mut found = listed
            .into_iter()
            .filter(|f| UploadMarker::read(&f.metadata).as_ref() == Some(&marker))
            .filter(|f| Some(f.id.as_str()) != except);
        let first = found.next();
        // More than one (a crash during a retry): keep one, delete the rest.
        for extra in found {
            if let Err(e) = self.delete_upload(&extra).await {
                tracing::warn!(file_id = %extra.id, error = %e, "could not delete a duplicate upload");
            }
        }
        Ok(first)
    }

    fn defer(
        &self,
        mut row: KbRecord,
        e: OwuiError,
        ledger: &Ledger,
        mut out: Outcome,
    ) -> Result<Outcome, PublishError> {
        if e.stops_pipeline() {
            return Err(PublishError::Unauthorized(e));
        }
        row.attempts += 1;
        row.error_kind = Some("transient".into());
        row.error = Some(e.to_string());
        if row.attempts >= MAX_TRANSIENT_ATTEMPTS {
            row.state = KbState::Failed;
            out.failed = Some(format!("gave up after {} attempts: {e}", row.attempts));
        } else {
            out.deferred = Some(e.to_string());
        }
        ledger.put_kb(&row)?;
        Ok(out)
    }

    /// Record a permanent refusal (deleting our rejected upload), or defer a
    /// transient failure to the next sync.
    async fn refuse_or_defer(
        &self,
        mut row: KbRecord,
        e: OwuiError,
        ledger: &Ledger,
        mut out: Outcome,
    ) -> Result<Outcome, PublishError> {
        if !e.is_permanent_for_file() {
            return self.defer(row, e, ledger, out);
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
                (DUPLICATE_KIND, format!("{twin} ({e})"))
            }
            OwuiError::EmptyContent { .. } => ("empty_content", e.to_string()),
            _ => ("processing_failed", e.to_string()),
        };
        row.attempts += 1;
        let permanent = kind != "processing_failed" || row.attempts >= MAX_PROCESSING_FAILURES;
        row.state = if permanent {
            KbState::Failed
        } else {
            KbState::Uploaded
        };
        row.error_kind = Some(kind.to_owned());
        row.error = Some(reason.clone());
        // A refused upload is deleted at once so it cannot linger as an orphan.
        if let Some(id) = row.file_id.clone()
            && (permanent || kind == "processing_failed")
        {
            match self.remove_file(&row.kb_id, &id).await {
                Ok(()) => row.file_id = None,
                Err(err) => {
                    tracing::warn!(file_id = %id, error = %err, "could not delete a refused upload")
                }
            }
            if !permanent {
                row.state = KbState::Uploading;
            }
        }
        ledger.put_kb(&row)?;
        if permanent {
            out.failed = Some(reason);
        } else {
            out.deferred = Some(reason);
        }
        Ok(out)
    }

    /// Check that every linked file is listed by the knowledge base (re-linking
    /// any that is not), and delete uploads with ragd's marker that no row knows.
    /// The listing is read page by page and only ids and text hashes are kept:
    /// at 10,000 files about 2 MB, where the listing as `FileInfo`s was 19 MB
    /// (measured with `mallinfo2`, metadata as ragd uploads it).
    async fn verify_and_sweep(
        &self,
        pipeline: &PipelineConfig,
        ledger: &Ledger,
        kb: &str,
        verify: Verify,
        summary: &mut PublishSummary,
    ) -> Result<(), PublishError> {
        // Every id a row knows: its version, and a replaced one not yet removed.
        let known: HashSet<String> = ledger.with_kb_files(&pipeline.name, |rows| {
            rows.flat_map(|r| [r.file_id, r.old_file_id])
                .flatten()
                .collect()
        })?;
        let mut listed: HashSet<String> = HashSet::new();
        // Listed files per extracted-text hash (hashed: only counts are needed).
        let mut texts: HashMap<u64, u32> = HashMap::new();
        let mut unknown: Vec<FileInfo> = Vec::new();
        let deep = verify == Verify::Deep;
        let listing = self
            .client
            .for_each_knowledge_file(kb, |f| {
                if !listed.insert(f.id.clone()) {
                    return; // the same file on two pages
                }
                if let Some(h) = &f.content_hash {
                    *texts.entry(text_key(h)).or_default() += 1;
                }
                let ours = self.ours(&f.metadata, &pipeline.name).is_some();
                if ours && !known.contains(&f.id) {
                    unknown.push(f);
                }
            })
            .await;
        match listing {
            Ok(()) => {}
            Err(e) if e.stops_pipeline() => return Err(PublishError::Unauthorized(e)),
            Err(e) => {
                summary.problems.push((
                    "-".into(),
                    format!("could not list the knowledge base: {e}"),
                ));
                return Ok(());
            }
        }
        *self.last_verified.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(std::time::Instant::now());
        if deep {
            self.sweep_unlisted_uploads(pipeline, kb, &known, &listed, summary)
                .await?;
        }
        drop(known);
        let unlisted: Vec<KbRecord> = ledger.with_kb_files(&pipeline.name, |rows| {
            rows.filter(|r| {
                r.state == KbState::Linked
                    && r.file_id.as_deref().is_some_and(|id| !listed.contains(id))
            })
            .collect()
        })?;
        drop(listed);
        for mut r in unlisted {
            let Some(id) = r.file_id.clone() else {
                continue;
            };
            // Linked by us but not listed (unlinked by hand, or a lost link):
            // link again; if that fails, the next sync retries from `uploaded`.
            match self.client.add_file_to_knowledge(kb, &id).await {
                Ok(_) => {
                    summary.linked += 1;
                    // Linked at the root again: placed on the next sync.
                    if self.client.supports_directories() {
                        ledger.set_kb_path(&r.pipeline, &r.path, UNKNOWN_PLACE)?;
                    }
                }
                Err(e) => {
                    r.state = if matches!(e, OwuiError::NotFound { .. }) {
                        KbState::Uploading
                    } else {
                        KbState::Uploaded
                    };
                    if r.state == KbState::Uploading {
                        r.file_id = None;
                    }
                    r.error = Some(e.to_string());
                    ledger.put_kb(&r)?;
                    summary.deferred += 1;
                    summary.problems.push((
                        r.path.clone(),
                        format!("not listed by the knowledge base: {e}"),
                    ));
                }
            }
        }
        for f in &unknown {
            // Ours by marker but unknown to the ledger: an orphan from a crash
            // between upload and recording (and not adopted since). Remove it —
            // unless it shares its text with another listed file, where
            // `file/remove` would also drop that file's vectors (Open WebUI
            // deletes by hash).
            let shares_text = f
                .content_hash
                .as_ref()
                .is_some_and(|h| texts.get(&text_key(h)).is_some_and(|n| *n > 1));
            let result = if shares_text {
                self.client.delete_file(&f.id).await
            } else {
                self.remove_file(kb, &f.id).await
            };
            match result {
                Ok(()) | Err(OwuiError::NotFound { .. }) => summary.orphans_deleted += 1,
                Err(e) => summary.problems.push((
                    f.filename.clone(),
                    format!("could not delete orphan upload: {e}"),
                )),
            }
        }
        Ok(())
    }

    /// Delete the uploads carrying this pipeline's and this base's marker that
    /// no row knows (`known`) and the base does not list (`listed`); see
    /// [`Verify::Deep`]. Listed unknown ones are the ordinary orphan sweep's.
    async fn sweep_unlisted_uploads(
        &self,
        pipeline: &PipelineConfig,
        kb: &str,
        known: &HashSet<String>,
        listed: &HashSet<String>,
        summary: &mut PublishSummary,
    ) -> Result<(), PublishError> {
        let mut orphans: Vec<FileInfo> = Vec::new();
        let listing = self
            .client
            .for_each_file(|f| {
                if self
                    .ours(&f.metadata, &pipeline.name)
                    .is_some_and(|m| m.kb == kb)
                    && !known.contains(&f.id)
                    && !listed.contains(&f.id)
                {
                    orphans.push(f);
                }
            })
            .await;
        match listing {
            Ok(()) => {}
            Err(e) if e.stops_pipeline() => return Err(PublishError::Unauthorized(e)),
            Err(e) => {
                summary
                    .problems
                    .push(("-".into(), format!("could not list the uploads: {e}")));
                return Ok(());
            }
        }
        for f in orphans {
            // Not in the base, so no vectors of another file can go with it;
            // but it may be on its way in.
            match self.delete_upload(&f).await {
                Ok(()) | Err(OwuiError::NotFound { .. }) => summary.orphans_deleted += 1,
                Err(e) => summary.problems.push((
                    f.filename.clone(),
                    format!("could not delete orphan upload: {e}"),
                )),
            }
        }
        Ok(())
    }
}

/// One lock per text that more than one publish of a sync carries, so files
/// with identical text are uploaded and processed one after another. Open
/// WebUI's duplicate check (`has_duplicate_content`) looks for the text in the
/// base and only later writes it: two identical files processed at once can
/// both pass it (then both are linked, or, with `file/add` after the
/// auto-link, both refused). One at a time, the first is linked and the rest
/// are refused as duplicates, every time.
struct TextTurns(HashMap<String, tokio::sync::Mutex<()>>);

impl TextTurns {
    fn new(publishes: &[Action]) -> Self {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for a in publishes {
            if let Some(text) = publish_text(a) {
                *seen.entry(text).or_default() += 1;
            }
        }
        TextTurns(
            seen.into_iter()
                .filter(|&(_, n)| n > 1)
                .map(|(text, _)| (text.to_owned(), Default::default()))
                .collect(),
        )
    }

    /// The lock `a` must hold, if its text is shared.
    fn of(&self, a: &Action) -> Option<&tokio::sync::Mutex<()>> {
        publish_text(a).and_then(|t| self.0.get(t))
    }
}

/// A 64-bit digest of an extracted-text hash, to count listed files per text.
/// A collision can only make an orphan look like it shares its text, and then
/// it is deleted the careful way (without dropping vectors by hash).
fn text_key(content_hash: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    content_hash.hash(&mut h);
    h.finish()
}

/// How [`Publisher::upload_and_link`] ended.
enum Step {
    /// Processed and linked.
    Linked,
    /// Deferred or restarted, recorded in the row and the outcome.
    Done,
    /// A transient error before any upload: deferred, counted as an attempt.
    Defer(OwuiError),
    /// Refused by the server (or a transient error after the upload).
    Refused(OwuiError),
}

/// Whether an earlier attempt at this row may have uploaded a file without
/// recording its id, so that it must be looked for by its marker: an intent
/// left behind (a crash, or an upload whose answer was lost), a removal under
/// way, or a row that gave up on transient errors. Not a new row, a linked or
/// uploaded one (ids recorded), nor a refusal (its upload was deleted, or
/// never made).
fn may_hold_lost_upload(r: &KbRecord) -> bool {
    match r.state {
        KbState::Uploading | KbState::Removing => true,
        KbState::Failed => r.error_kind.as_deref() == Some("transient"),
        KbState::Uploaded | KbState::Linked => false,
    }
}
