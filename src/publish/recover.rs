//! Finding an upload whose id the ledger never recorded: a crash between the
//! upload and recording it, an answer lost in transit, a file moved or a change
//! reverted since. Only this installation's marked uploads are ever found
//! ([`UploadMarker::is_of`]).

use super::tree::upload_names;
use super::{PublishError, Publisher, UploadMarker};
use crate::ledger::{FailKind, KbRecord, KbState, Ledger};
use crate::open_webui::{FileInfo, OwuiError};

/// One place a lost upload of a version may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Probe {
    /// Under this version's own marker (path, text, base): an upload whose
    /// answer, or whose record, was lost.
    Marker,
    /// The replaced version's upload, when it holds this very text: a change
    /// reverted after a crash, the upload's marker naming another path since
    /// the file moved.
    Replaced,
    /// An upload of this text under another path in the marker that no row
    /// claims: the file moved after it was uploaded, the ledger's row lost.
    Moved,
}

/// The probes left for one publish, tried in order until one finds the
/// upload, each at most once (a publish may be refused twice).
pub(super) struct Probes(std::collections::VecDeque<Probe>);

impl Probes {
    /// All of them; without [`Probe::Marker`] when the upload searched by
    /// marker before it was made.
    pub(super) fn after(searched_by_marker: bool) -> Self {
        Probes(
            [Probe::Marker, Probe::Replaced, Probe::Moved]
                .into_iter()
                .filter(|p| !(searched_by_marker && *p == Probe::Marker))
                .collect(),
        )
    }
}

impl Publisher {
    /// The lost upload of `row`'s version, by the probes left: the first that
    /// finds one ends the search. A server error ends it too, handed back to be
    /// deferred (the outer error is the ledger's).
    pub(super) async fn find_lost(
        &self,
        probes: &mut Probes,
        row: &KbRecord,
        kb: &str,
        ledger: &Ledger,
    ) -> Result<Result<Option<FileInfo>, OwuiError>, PublishError> {
        // The upload just refused is this version's too, and not the one lost.
        let except = row.file_id.as_deref();
        while let Some(probe) = probes.0.pop_front() {
            let found = match probe {
                Probe::Marker => {
                    self.find_upload(&row.pipeline, &row.path, &row.content_hash, kb, except)
                        .await
                }
                Probe::Replaced => self.replaced_holds_this(row).await,
                Probe::Moved => match self.moved_uploads(row, except).await {
                    Ok(candidates) => {
                        let mut unclaimed = None;
                        for f in candidates {
                            let path = UploadMarker::read(&f.metadata)
                                .map(|m| m.path)
                                .unwrap_or_default();
                            if !ledger.kb_claims(&row.pipeline, &f.id, &path)? {
                                unclaimed = Some(f);
                                break;
                            }
                        }
                        Ok(unclaimed)
                    }
                    Err(e) => Err(e),
                },
            };
            match found {
                Ok(None) => continue,
                other => return Ok(other),
            }
        }
        Ok(Ok(None))
    }

    /// Uploads of this pipeline and base with this file's name and text but
    /// another path in their marker, other than `except` (the refused one):
    /// a file moved keeps its upload and its marker keeps the old path, so
    /// when the ledger's rows are lost the marker search misses it. The caller
    /// adopts one only if no row records it or sits at its marker's path (it
    /// could be another copy's, or a resumed intent's).
    pub(super) async fn moved_uploads(
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
    pub(super) async fn replaced_holds_this(
        &self,
        row: &KbRecord,
    ) -> Result<Option<FileInfo>, OwuiError> {
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
    pub(super) async fn find_upload(
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
}

/// Whether an earlier attempt at this row may have uploaded a file without
/// recording its id, so that it must be looked for by its marker: an intent
/// left behind (a crash, or an upload whose answer was lost), a removal under
/// way, or a row that gave up on transient errors. Not a new row, a linked or
/// uploaded one (ids recorded), nor a refusal (its upload was deleted, or
/// never made).
pub(super) fn may_hold_lost_upload(r: &KbRecord) -> bool {
    match r.state {
        KbState::Uploading | KbState::Removing => true,
        KbState::Failed => r.error_kind.as_ref().is_some_and(FailKind::is_transient),
        KbState::Uploaded | KbState::Linked => false,
    }
}
