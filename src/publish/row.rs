//! A file's `kb_files` row and its transitions, each written to the ledger as
//! it is made: the only way publishing changes a row's state. The states and
//! what each must carry (see the diagram in [`super`]):
//!
//! | state | carries |
//! | --- | --- |
//! | `uploading` | the version's text hash (the intent; a lost upload is found by its marker) |
//! | `uploaded` | the upload's file id, the bytes' hash, where the server put it |
//! | `linked` | the upload's file id: it is in the knowledge base |
//! | `failed` | why (kind, message), the attempts made |
//! | `removing` | what is being removed (its ids, if known) |
//!
//! "Uploaded" and "linked" take the file id as an argument and the ledger
//! refuses either state without one ([`Ledger::put_kb`]), so no row is ever
//! linked without the upload it links.

use std::ops::Deref;

use crate::ledger::{FailKind, KbRecord, KbState, Ledger, LedgerError};

/// What follows a failed attempt ([`KbRow::attempt_failed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum After {
    /// The next sync tries again.
    Retry,
    /// Recorded as failed; tried again once the file changes.
    GiveUp,
}

/// A `kb_files` row being published: read freely, changed only by transitions.
pub(super) struct KbRow<'l> {
    ledger: &'l Ledger,
    rec: KbRecord,
}

impl Deref for KbRow<'_> {
    type Target = KbRecord;

    fn deref(&self) -> &KbRecord {
        &self.rec
    }
}

impl<'l> KbRow<'l> {
    /// The row as read (or as planned for a new version): nothing is written.
    pub fn new(ledger: &'l Ledger, rec: KbRecord) -> Self {
        KbRow { ledger, rec }
    }

    fn put(&self) -> Result<(), LedgerError> {
        self.ledger.put_kb(&self.rec)
    }

    /// Write-ahead intent: this version is about to be uploaded (or its lost
    /// upload adopted). From here a crash is resolved by the marker search.
    pub fn intend(&mut self) -> Result<(), LedgerError> {
        self.rec.state = KbState::Uploading;
        self.put()
    }

    /// The upload exists (made now, or adopted): `file_id`, the SHA-256 of
    /// its bytes if known, and where in the base the server put it.
    pub fn uploaded(
        &mut self,
        file_id: String,
        file_hash: Option<String>,
        kb_path: String,
    ) -> Result<(), LedgerError> {
        self.rec.file_id = Some(file_id);
        self.rec.file_hash = file_hash;
        self.rec.kb_path = Some(kb_path);
        self.rec.state = KbState::Uploaded;
        self.put()
    }

    /// Processed and in the knowledge base: failures of earlier attempts are
    /// forgotten.
    pub fn linked(&mut self) -> Result<(), LedgerError> {
        // A change reverted after a crash: the upload found by this version's
        // marker is the replaced version's own, still linked. It is this
        // version; removing it as the old one would empty the file's entry.
        if self.rec.old_file_id.is_some() && self.rec.old_file_id == self.rec.file_id {
            self.rec.old_file_id = None;
        }
        self.rec.state = KbState::Linked;
        self.rec.error = None;
        self.rec.error_kind = None;
        self.rec.attempts = 0;
        self.put()
    }

    /// The replaced version's upload is gone from the server.
    pub fn old_removed(&mut self) -> Result<(), LedgerError> {
        self.rec.old_file_id = None;
        self.put()
    }

    /// This version's upload is gone (vanished on the server, or discarded
    /// after processing failed): it is uploaded again.
    pub fn upload_again(&mut self) -> Result<(), LedgerError> {
        self.rec.file_id = None;
        self.rec.file_hash = None;
        self.rec.state = KbState::Uploading;
        self.put()
    }

    /// Refused without an attempt (a twin already holds the text): not
    /// uploaded until the twin goes.
    pub fn refused(&mut self, kind: FailKind, error: String) -> Result<(), LedgerError> {
        self.rec.state = KbState::Failed;
        self.rec.error_kind = Some(kind);
        self.rec.error = Some(error);
        self.put()
    }

    /// One more failed attempt at this version, and why; `upload_removed`
    /// when its upload was deleted from the server. The row is `failed` on
    /// [`After::GiveUp`]; on [`After::Retry`] the next sync goes on from
    /// `uploaded` if the upload is still there, else from `uploading`.
    /// Returns the attempts made so far.
    pub fn attempt_failed(
        &mut self,
        kind: FailKind,
        error: String,
        after: After,
        upload_removed: bool,
    ) -> Result<u32, LedgerError> {
        self.rec.attempts += 1;
        self.rec.error_kind = Some(kind);
        self.rec.error = Some(error);
        if upload_removed {
            self.rec.file_id = None;
            self.rec.file_hash = None;
        }
        self.rec.state = match after {
            After::GiveUp => KbState::Failed,
            After::Retry if self.rec.file_id.is_some() => KbState::Uploaded,
            After::Retry => KbState::Uploading,
        };
        self.put()?;
        Ok(self.rec.attempts)
    }

    /// Linked, but the base no longer lists it and linking it again failed:
    /// the next sync links it from `uploaded`, or uploads it again when the
    /// upload itself is gone.
    pub fn unlisted(&mut self, error: String, upload_gone: bool) -> Result<(), LedgerError> {
        if upload_gone {
            self.rec.file_id = None;
            self.rec.file_hash = None;
            self.rec.state = KbState::Uploading;
        } else {
            self.rec.state = KbState::Uploaded;
        }
        self.rec.error = Some(error);
        self.put()
    }

    /// Intent to remove the file from the knowledge base (its uploads by id,
    /// or by marker when an upload's id was never recorded).
    pub fn removing(&mut self) -> Result<(), LedgerError> {
        self.rec.state = KbState::Removing;
        self.put()
    }

    /// The file is out of the knowledge base: the row goes.
    pub fn removed(self) -> Result<(), LedgerError> {
        self.ledger.remove_kb(&self.rec.pipeline, &self.rec.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(l: &Ledger) -> KbRecord {
        l.kb_files("p").unwrap().remove("a.md").unwrap()
    }

    /// Every transition is in the ledger when it returns, and a failed
    /// attempt goes back to where its upload is: `uploaded` while the server
    /// still holds it, `uploading` once it is deleted — never `uploaded`
    /// without one.
    #[test]
    fn transitions_persist_and_a_retry_starts_where_the_upload_is() {
        let l = Ledger::in_memory().unwrap();
        let mut row = KbRow::new(&l, KbRecord::uploading("p", "a.md", "kb", "t"));
        row.intend().unwrap();
        assert_eq!(stored(&l).state, KbState::Uploading);
        row.uploaded("f1".into(), Some("b1".into()), "a.md".into())
            .unwrap();
        assert_eq!(stored(&l).file_id.as_deref(), Some("f1"));

        let fail = |row: &mut KbRow, after, removed| {
            row.attempt_failed(FailKind::ProcessingFailed, "x".into(), after, removed)
                .unwrap()
        };
        assert_eq!(fail(&mut row, After::Retry, false), 1);
        assert_eq!(stored(&l).state, KbState::Uploaded);
        assert_eq!(fail(&mut row, After::Retry, true), 2);
        let r = stored(&l);
        assert_eq!((r.state, r.file_id), (KbState::Uploading, None));
        // Nothing uploaded and nothing to remove: still from `uploading`.
        assert_eq!(fail(&mut row, After::Retry, false), 3);
        assert_eq!(stored(&l).state, KbState::Uploading);
        assert_eq!(fail(&mut row, After::GiveUp, false), 4);
        let r = stored(&l);
        assert_eq!(
            (r.state, r.error_kind, r.attempts),
            (KbState::Failed, Some(FailKind::ProcessingFailed), 4)
        );

        row.upload_again().unwrap();
        row.uploaded("f2".into(), None, "a.md".into()).unwrap();
        row.linked().unwrap();
        let r = stored(&l);
        assert_eq!(
            (r.state, r.file_id.as_deref(), r.attempts, r.error),
            (KbState::Linked, Some("f2"), 0, None)
        );
        row.removing().unwrap();
        row.removed().unwrap();
        assert!(l.kb_files("p").unwrap().is_empty());
    }
}
