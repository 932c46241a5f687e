//! The full check of a knowledge base against the ledger: every linked file
//! listed (linked again if not), and this installation's marked uploads that no
//! row knows deleted as orphans — in the base's listing always, and among all of
//! the user's uploads on a deep check ([`Verify::Deep`]).

use std::collections::{HashMap, HashSet};

use super::row::KbRow;
use super::{PublishError, PublishSummary, Publisher, UNKNOWN_PLACE, Verify};
use crate::config::PipelineConfig;
use crate::ledger::{KbRecord, KbState, Ledger};
use crate::open_webui::{FileInfo, OwuiError};

impl Publisher {
    /// Check that every linked file is listed by the knowledge base (re-linking
    /// any that is not), and delete uploads with ragd's marker that no row knows.
    /// The listing is read page by page and only ids and text hashes are kept:
    /// at 10,000 files about 2 MB, where the listing as `FileInfo`s was 19 MB
    /// (measured with `mallinfo2`, metadata as ragd uploads it).
    pub(super) async fn verify_and_sweep(
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
            Err(e) if e.stops_pipeline() => return Err(PublishError::Refused(e)),
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
        for r in unlisted {
            let Some(id) = r.file_id.clone() else {
                continue;
            };
            let mut r = KbRow::new(ledger, r);
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
                    r.unlisted(e.to_string(), matches!(e, OwuiError::NotFound { .. }))?;
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
    pub(super) async fn sweep_unlisted_uploads(
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
            Err(e) if e.stops_pipeline() => return Err(PublishError::Refused(e)),
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

/// A 64-bit digest of an extracted-text hash, to count listed files per text.
/// A collision can only make an orphan look like it shares its text, and then
/// it is deleted the careful way (without dropping vectors by hash).
pub(super) fn text_key(content_hash: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    content_hash.hash(&mut h);
    h.finish()
}
