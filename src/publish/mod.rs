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

mod file;
mod place;
mod plan;
mod recover;
mod row;
pub mod tree;
mod verify;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use serde_json::Value;

use crate::config::{KnowledgeTarget, PipelineConfig};
use crate::ledger::{Ledger, LedgerError, MAX_TRANSIENT_ATTEMPTS};
use crate::open_webui::{FileInfo, OpenWebUi, OwuiError};
use plan::{Action, is_refused_copy, plan, publish_text};
use tree::Place;

use crate::open_webui::{MARKER, UploadMarker};
/// Processing failures allowed per version before it counts as permanent.
const MAX_PROCESSING_FAILURES: u32 = 2;
/// Duplicate-content refusals after which a file is not retried even with no
/// linked twin left in the ledger: the twin may be a file someone else put in
/// the knowledge base, which ragd cannot see go.
const MAX_DUPLICATE_ATTEMPTS: u32 = 3;
/// `kb_path` of a row whose upload's place in the knowledge base is not known
/// (adopted after a crash, or linked again at the root): it matches no place,
/// so [`Publisher::place_files`] moves and names it where it belongs.
const UNKNOWN_PLACE: &str = "";

/// A failure that stops publishing for the whole pipeline.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The key or the server's certificate is refused: nothing will work
    /// until the configuration changes (the error says what to check).
    #[error("Open WebUI: {0}")]
    Refused(OwuiError),
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
            e if e.stops_pipeline() => PublishError::Refused(e),
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
